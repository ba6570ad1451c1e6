#!/bin/bash
# /docker/entrypoint.sh of saladtechnologies/a1111 (AbdBarho/stable-diffusion-webui-docker,
# services/AUTOMATIC1111), reproduced for the stand-in base: the part that decides where the
# webui sees its files (links from the webui tree into /data), then `exec "$@"`. Upstream's
# config.json merge, rsync of VAE-approx and extension install.py runs are left out.
set -Eeuo pipefail

mkdir -p /data/config/auto/scripts/

declare -A MOUNTS
MOUNTS["/root/.cache"]="/data/.cache"
MOUNTS["${ROOT}/models"]="/data/models"
MOUNTS["${ROOT}/embeddings"]="/data/embeddings"
MOUNTS["${ROOT}/extensions"]="/data/config/auto/extensions"

for to_path in "${!MOUNTS[@]}"; do
  set -Eeuo pipefail
  from_path="${MOUNTS[${to_path}]}"
  rm -rf "${to_path}"
  if [ ! -f "$from_path" ]; then
    mkdir -vp "$from_path"
  fi
  mkdir -vp "$(dirname "${to_path}")"
  ln -sT "${from_path}" "${to_path}"
  echo Mounted $(basename "${from_path}")
done

exec "$@"
