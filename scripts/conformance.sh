#!/usr/bin/env bash
# Runs the saladcloud conformance check (see mk/conformance.mk). Needs node/npm and cargo.
set -euo pipefail

cd "$(dirname "$0")/.."
PRISM_VERSION="${PRISM_VERSION:-5.16.0}"
PRISM_DIR="${PRISM_DIR:-.scratch/prism}"
CARGO="${CARGO:-cargo}"

# The spec: ../shared in CI, else the pinned version fetched and checked (scripts/spec.sh).
SPEC="$(SPEC="${SPEC:-}" scripts/spec.sh)"
command -v npm >/dev/null || { echo "conformance: npm is required (apt-get install nodejs npm)" >&2; exit 2; }

# 1. Prism, installed once into a scratch folder.
PRISM="$PRISM_DIR/node_modules/.bin/prism"
installed="$(node -p "require('./$PRISM_DIR/node_modules/@stoplight/prism-cli/package.json').version" 2>/dev/null || true)"
if [[ "$installed" != "$PRISM_VERSION" ]]; then
  echo "conformance: installing @stoplight/prism-cli@$PRISM_VERSION into $PRISM_DIR"
  mkdir -p "$PRISM_DIR"
  [[ -f "$PRISM_DIR/package.json" ]] || (cd "$PRISM_DIR" && npm init -y >/dev/null)
  (cd "$PRISM_DIR" && npm install --no-audit --no-fund --loglevel=error "@stoplight/prism-cli@$PRISM_VERSION" >/dev/null)
fi

# 2. Build the corpus runner before Prism starts, so Prism lives only as long as needed.
"$CARGO" build -q -p saladcloud --example conformance
RUNNER="$("$CARGO" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/examples/conformance"

# 3. Start Prism on a free port and wait (bounded) until it answers.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
LOG="$(mktemp -t prism.XXXXXX.log)"
SCARF_ANALYTICS=false setsid "$PRISM" mock -h 127.0.0.1 -p "$PORT" "$SPEC" >"$LOG" 2>&1 &
PRISM_PID=$!
cleanup() {
  kill -TERM -- "-$PRISM_PID" 2>/dev/null || kill -TERM "$PRISM_PID" 2>/dev/null || true
  wait "$PRISM_PID" 2>/dev/null || true
  rm -f "$LOG"
}
trap cleanup EXIT

for _ in $(seq 1 120); do
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/organizations/acme/quotas"; then break; fi
  if ! kill -0 "$PRISM_PID" 2>/dev/null; then
    echo "conformance: Prism exited early:" >&2; cat "$LOG" >&2; exit 2
  fi
  sleep 0.5
done
curl -s -o /dev/null "http://127.0.0.1:$PORT/organizations/acme/quotas" || {
  echo "conformance: Prism did not answer within 60 s:" >&2; tail -20 "$LOG" >&2; exit 2; }

# 4. Run the corpus through the real client.
extra=(); [[ "${STRICT_SIM:-}" == 1 ]] && extra+=(--strict-sim)
"$RUNNER" --base-url "http://127.0.0.1:$PORT" --spec "$SPEC" "${extra[@]}"
