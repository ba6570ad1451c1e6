#!/usr/bin/env bash
# saladtechnologies/sdnext:base's entrypoint.sh (SaladTechnologies/sdnext, branch docker-build),
# reproduced for the stand-in base: the recursive chown at every start is the point.
set -Eeuo pipefail
source $INSTALLDIR/venv/bin/activate

if [ -z $DATA_DIR ]; then
  echo "Must specify data directory for application state"
  exit 1
fi

chown -R $RUN_UID:$RUN_UID $DATA_DIR
mkdir /tmp/gradio
chown -R $RUN_UID:$RUN_UID /tmp/gradio

exec runuser -u $(id -un $RUN_UID) -- python "$INSTALLDIR"/launch.py --data-dir="$DATA_DIR" "$@"
