#!/usr/bin/env bash
# Benchmark of crates/image: builds a synthetic model (generated on the fly, no disk file) into a
# throwaway local registry, times a plain `curl -T` of the same bytes, and prints one JSON line.
# Extra arguments go to the benchmark (e.g. --registry-dir DIR to keep the registry off tmpfs).
set -euo pipefail
cd "$(dirname "$0")/.."
# The registry and curl (its plain-upload baseline), installed when missing as `make test` does.
scripts/ensure-deps.sh test
cargo build -q --release -p salad-sd-image --example bench_build
exec target/release/examples/bench_build \
  --model-mib "${BENCH_MODEL_MIB:-2048}" \
  --small-mib "${BENCH_SMALL_MIB:-256}" \
  --second-mib "${BENCH_SECOND_MIB:-64}" \
  --cap-mib-s "${BENCH_CAP_MIB_S:-50}" \
  --three-mib "${BENCH_THREE_MIB:-1024}" \
  --slow-cap-mib-s "${BENCH_SLOW_CAP_MIB_S:-10}" \
  --registry-go-procs "${BENCH_REGISTRY_GO_PROCS:-0}" \
  --rounds "${BENCH_ROUNDS:-3}" \
  "$@"
