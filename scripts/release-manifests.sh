#!/usr/bin/env bash
# manifests/ and crds/ for a release, with the operator image pinned by digest:
#   scripts/release-manifests.sh VERSION IMAGE PUSHED
# IMAGE is the tag pushed (ghcr.io/salad-sd/salad-sd-operator:0.1.0), PUSHED what the registry
# named it by (ghcr.io/salad-sd/salad-sd-operator@sha256:…). Writes
# dist/salad-sd-operator-VERSION-manifests.tar.gz and fails when the Deployment does not name
# the image of this version.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$1 image=$2 pushed=$3
digest=${pushed##*@}
case "$digest" in sha256:[0-9a-f]*) ;; *) echo "not a digest reference: $pushed" >&2; exit 1 ;; esac
[ "${#digest}" -eq 71 ] || { echo "not a sha256 digest: $digest" >&2; exit 1; }
repo=${image%:*}
grep -q "image: ${repo}:${version}\$" manifests/base/deployment.yaml || {
  echo "manifests/base/deployment.yaml does not name ${repo}:${version}; bump it with the version" >&2; exit 1; }
out=dist/salad-sd-operator-${version}
rm -rf "$out" && mkdir -p "$out"
cp -r manifests crds "$out/"
sed -i "s|image: ${repo}:${version}\$|image: ${repo}:${version}@${digest}|" "$out/manifests/base/deployment.yaml"
grep -q "@${digest}" "$out/manifests/base/deployment.yaml"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C dist -czf "$out-manifests.tar.gz" "salad-sd-operator-${version}"
echo "$out-manifests.tar.gz: ${repo}:${version}@${digest}"
