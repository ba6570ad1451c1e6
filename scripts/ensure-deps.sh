#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, when they are missing:
# docker-registry (the CNCF distribution registry, run on 127.0.0.1 by the tests), lua5.4
# (runs the Argo CD health check in its test), python3 (runs the model fetcher a container
# runs before its server, in crates/controller/tests/fetch_script.rs), and for
# `make test-runtime` runc (runs the built images) with socat and Debian's python3.11 (copied
# into the stand-in base images), containerd and docker.io (pull and run the same images, to hold
# the test node to real runtimes), and for `make image` musl-tools, ca-certificates and the Rust
# musl target.
#
# Usage: scripts/ensure-deps.sh [MODE]
#   test     what `make test` needs: docker-registry, lua5.4, python3 (and python3-venv for
#            `make sdk-check`, curl for `make bench-build`)
#   image    what `make image` (and `make bench-operator-memory`, which runs its binary) needs:
#            musl-tools, ca-certificates and the musl target
#   runtime  what `make test-runtime` needs: docker-registry, runc, containerd, docker.io, socat,
#            python3.11,
#            and what `make image` needs (it runs the operator image too)
#   all      test and runtime (the default, as `.ci/run` and the demo call it)
set -euo pipefail
mode=${1:-all}
case "$mode" in
  test | image | runtime | all) ;;
  *) echo "usage: $0 [test|image|runtime|all]; unknown mode \`$mode\`" >&2; exit 2 ;;
esac
missing=()
[ "$mode" = image ] || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
if [ "$mode" = test ] || [ "$mode" = all ]; then
  command -v lua5.4 >/dev/null 2>&1 || missing+=(lua5.4)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  # `make bench-build` times a plain `curl -T` upload against the builder's.
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  # `make sdk-check`: a venv for SaladCloud's official Python SDK.
  python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
fi
if [ "$mode" = runtime ] || [ "$mode" = all ]; then
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  # containerd pulls and runs the built images beside the test node, to hold it to a real one.
  [ -x /usr/bin/containerd ] && [ -x /usr/bin/ctr ] || missing+=(containerd)
  # Docker Engine pulls (moby's own code) and runs one of them too.
  [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing+=(docker.io)
  [ -x /usr/bin/socat ] || missing+=(socat)
  [ -x /usr/bin/python3.11 ] || missing+=(python3.11)
fi
if [ "$mode" != test ]; then
  # `make image`: the static operator binary (musl-gcc for the C parts of aws-lc-sys) and the CA
  # certificates the image carries.
  [ -x /usr/bin/musl-gcc ] || missing+=(musl-tools)
  [ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
  if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
    echo "adding the Rust target x86_64-unknown-linux-musl (rustup)" >&2
    rustup target add x86_64-unknown-linux-musl
  fi
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} (apt)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
