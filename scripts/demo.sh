#!/usr/bin/env bash
# make demo: the whole salad-sd flow on this machine, no cluster and no SaladCloud account.
#
# Real: the reconcile engine (`salad-sd apply/diff/delete`, the same code the operator runs),
# the daemonless image builder, and a real OCI registry (Debian docker-registry on 127.0.0.1).
# Simulated: SaladCloud (the saladcloud-sim API, lifecycle and a fake SD.Next behind each
# container gateway), the model files (generated) and the base image (two tiny layers).
#
# Everything listens on 127.0.0.1, lives under demo/out/ and is stopped on exit (by PID).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CARGO=${CARGO:-cargo}
OUT=demo/out
RUN=$OUT/run
BIN=target/debug/salad-sd
# Demo scaffolding (local registry, model server, base image, txt2img): crates/testkit, not the
# product binary.
DEV=target/debug/salad-sd-dev
PIDS=()

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

cleanup() {
  local code=$?
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$RUN/registry/data"
  if [ "$code" -ne 0 ]; then
    echo "demo FAILED (exit $code); logs are in $RUN/" >&2
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN: the first line of FILE matching PATTERN, within 30 s.
wait_for() {
  local line
  for _ in $(seq 300); do
    line=$(grep -m1 -E "$2" "$1" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "$line"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2
  cat "$1" >&2
  return 1
}

bold "salad-sd demo: SaladCloud is SIMULATED; the engine, the image builder and the registry are real"
T0=$(now)

if [ ! -x /usr/bin/docker-registry ]; then
  note "installing the Debian docker-registry package (scripts/ensure-deps.sh)"
  scripts/ensure-deps.sh
fi

bold "building salad-sd"
TB=$(now)
$CARGO build -q -p salad-sd-cli -p salad-sd-testkit
note "built $BIN and $DEV in $(since "$TB")s"
T1=$(now)

rm -rf "$RUN"
mkdir -p "$RUN"

bold "starting the SaladCloud simulator, a local registry and a model server (127.0.0.1 only)"
# Nodes download at seeded speeds around 2 s per GB (SaladCloud's 2 min/GB, 60 times fast) of a
# 2 GB image; the first node of each group is a slow one, to be reallocated.
"$BIN" sim --listen 127.0.0.1:0 --demo-timings --download-per-gb-ms 2000 --image-bytes 2000000000 \
  --slow-first-nodes 1 >"$RUN/sim.log" 2>&1 &
PIDS+=($!)
"$DEV" registry --dir "$RUN/registry" >"$RUN/registry.log" 2>&1 &
PIDS+=($!)
"$DEV" serve-models \
  --generate dreamshaper_8.safetensors:48:8 \
  --generate detail-tweaker.safetensors:8:9 >"$RUN/models.log" 2>&1 &
PIDS+=($!)

SIM_API=$(wait_for "$RUN/sim.log" 'listening on' | awk '{print $NF}')
SIM=${SIM_API%/api/public}
REGISTRY=$(wait_for "$RUN/registry.log" 'listening on' | awk '{print $NF}')
MODELS=$(wait_for "$RUN/models.log" 'listening on' | awk '{print $NF}')
wait_for "$RUN/models.log" 'detail-tweaker' >/dev/null
CKPT_SHA=$(grep ' .*/dreamshaper_8.safetensors ' "$RUN/models.log" | awk '{print $4}')
LORA_SHA=$(grep ' .*/detail-tweaker.safetensors ' "$RUN/models.log" | awk '{print $4}')
note "SaladCloud API (simulated): $SIM_API"
note "registry (real, docker-registry): $REGISTRY"
note "models (generated files): $MODELS  dreamshaper_8.safetensors 48 MiB, detail-tweaker.safetensors 8 MiB"

BASE=$("$DEV" push-base-image --registry "$REGISTRY" demo/sdnext:base)
note "base image made for the demo: $BASE"

for f in dreamshaper dreamshaper-lora; do
  sed -e "s#@REGISTRY@#$REGISTRY#g" -e "s#@MODELS@#$MODELS#g" \
      -e "s#@CKPT_SHA256@#$CKPT_SHA#g" -e "s#@LORA_SHA256@#$LORA_SHA#g" \
      "demo/$f.yaml" >"$OUT/$f.yaml"
done
note "specs: $OUT/dreamshaper.yaml (from manifests/examples/sdnext-dreamshaper.yaml) and $OUT/dreamshaper-lora.yaml"

# Credentials come from the environment, never from arguments.
export SALAD_API_KEY=demo-key-for-the-simulator
export SALAD_API_URL=$SIM_API
FLAGS=(--insecure-registry "$REGISTRY" --allow-private-sources --gateway-url "$SIM")

run_step() { # run_step EXPECTED_EXIT LOG cmd...
  local expected=$1 log=$2 code=0
  shift 2
  "$@" 2>&1 | tee "$log" || code=${PIPESTATUS[0]}
  if [ "$code" -ne "$expected" ]; then
    echo "expected exit $expected from: $*, got $code" >&2
    exit 1
  fi
}

bold "1/5 salad-sd diff: what would change (exit 2 = changes)"
TS=$(now)
run_step 2 "$RUN/1-diff.log" "$BIN" diff -f "$OUT/dreamshaper.yaml" "${FLAGS[@]}"
S1=$(since "$TS")

bold "2/5 salad-sd apply --wait: build the image, create the container group, follow the rollout"
TS=$(now)
run_step 0 "$RUN/2-apply.log" "$BIN" apply --wait --timeout 3m -f "$OUT/dreamshaper.yaml" "${FLAGS[@]}"
S2=$(since "$TS")
URL1=$(grep '^access URL:' "$RUN/2-apply.log" | tail -n1 | awk '{print $3}')
GROUP1=$(grep -o "in container group \`[^\`]*\`" "$RUN/2-apply.log" | tail -n1 | tr -d '`' | awk '{print $4}')
note "txt2img through the container gateway of $URL1:"
"$DEV" txt2img --access-url "$URL1" --gateway-url "$SIM" \
  --prompt "a lighthouse on a cliff at sunset" --out "$OUT/dreamshaper.png" | sed 's/^/   /'

bold "logs: salad-sd logs (SaladCloud's log query; in a cluster: kubectl sdd logs NAME)"
note "SlowNodeReallocated above: the operator moved the slow node; Instance*: SaladCloud's system"
note "events, each published once per run (a file-driven run keeps no status between runs)"
"$BIN" logs --filename "$OUT/dreamshaper.yaml" --tail 6 | sed 's/^/   /'

bold "3/5 spec change: add a LoRA (diff, then apply --wait: only the LoRA's layer is built)"
TS=$(now)
run_step 2 "$RUN/3-diff.log" "$BIN" diff -f "$OUT/dreamshaper-lora.yaml" "${FLAGS[@]}"
run_step 0 "$RUN/3-apply.log" "$BIN" apply --wait --timeout 3m -f "$OUT/dreamshaper-lora.yaml" "${FLAGS[@]}"
S3=$(since "$TS")
URL2=$(grep '^access URL:' "$RUN/3-apply.log" | tail -n1 | awk '{print $3}')
GROUP2=$(grep -o "in container group \`[^\`]*\`" "$RUN/3-apply.log" | tail -n1 | tr -d '`' | awk '{print $4}')
"$DEV" txt2img --access-url "$URL2" --gateway-url "$SIM" \
  --prompt "a lighthouse on a cliff at sunset, detailed" --out "$OUT/dreamshaper-lora.png" | sed 's/^/   /'

bold "4/5 salad-sd diff again: in sync (exit 0)"
run_step 0 "$RUN/4-diff.log" "$BIN" diff -f "$OUT/dreamshaper-lora.yaml" "${FLAGS[@]}"

bold "5/5 salad-sd delete: remove the container group"
TS=$(now)
run_step 0 "$RUN/5-delete.log" "$BIN" delete -f "$OUT/dreamshaper-lora.yaml" "${FLAGS[@]}"
S5=$(since "$TS")

LAYERS2=$(grep -E '^image .*layer\(s\) pushed' "$RUN/3-apply.log" | sed -E 's/.*: ([0-9]+ layer\(s\) pushed, [0-9]+ reused; [^;]* uploaded).*/\1/')
bold "summary"
note "SaladCloud was simulated; the engine, the image builder and the registry were real."
note "first rollout:  group $GROUP1 Ready in ${S2}s (build + create + 3 instances + smoke test)"
note "LoRA change:    $LAYERS2; new group $GROUP2 (BlueGreen) Ready, old one retired, ${S3}s"
note "delete:         groups removed in ${S5}s"
note "images saved:   $OUT/dreamshaper.png, $OUT/dreamshaper-lora.png"
note "diff ${S1}s; whole demo $(since "$T1")s after the build ($(since "$T0")s with it); logs in $RUN/"
