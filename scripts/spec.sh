#!/usr/bin/env bash
# Prints the path of the SaladCloud OpenAPI spec the conformance check uses.
#   SPEC set and present:  that file (CI: ../shared/saladcloud/openapi.yaml).
#   SPEC unset, or the default ../shared path that a clone elsewhere lacks: the pinned version
#     (../shared/saladcloud/SOURCE.md) fetched once into .scratch/ and used only when its sha256
#     matches; a clear error (exit 2) when it cannot be had.
#   SPEC set to another path that does not exist: an error, no download.
# Knobs for tests and mirrors: SPEC_URL, SPEC_SHA256, SPEC_CACHE, SHARED_SPEC.
set -euo pipefail

cd "$(dirname "$0")/.."
SPEC_COMMIT=e6dba327c7f83e609a231309c1e5cded5d194964   # salad-cloud-docs, 0.9.0-alpha.17
SPEC_URL="${SPEC_URL:-https://github.com/SaladTechnologies/salad-cloud-docs/raw/$SPEC_COMMIT/api-specs/salad-cloud.yaml}"
SPEC_SHA256="${SPEC_SHA256:-0cc245ccf2c497e664b49c9e5352f833f80c43459b3c34b3b75502f4334a0797}"
SPEC_CACHE="${SPEC_CACHE:-.scratch/saladcloud-openapi-$SPEC_COMMIT.yaml}"
SHARED_SPEC="$(realpath -m "${SHARED_SPEC:-../shared/saladcloud/openapi.yaml}")"
SPEC="${SPEC:-}"

if [[ -n "$SPEC" && -f "$SPEC" ]]; then
  realpath "$SPEC"; exit 0
fi
if [[ -n "$SPEC" && "$(realpath -m "$SPEC")" != "$SHARED_SPEC" ]]; then
  echo "conformance: spec not found at $SPEC (unset SPEC to fetch the pinned version)" >&2
  exit 2
fi
if [[ -f "$SHARED_SPEC" ]]; then
  echo "$SHARED_SPEC"; exit 0
fi

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
if [[ -f "$SPEC_CACHE" && "$(sha_of "$SPEC_CACHE")" == "$SPEC_SHA256" ]]; then
  realpath "$SPEC_CACHE"; exit 0
fi
command -v curl >/dev/null || { echo "conformance: curl is required to fetch the spec (or set SPEC=path/to/openapi.yaml)" >&2; exit 2; }
mkdir -p "$(dirname "$SPEC_CACHE")"
tmp="$(mktemp "$SPEC_CACHE.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
echo "conformance: $SHARED_SPEC is absent; fetching the pinned spec from $SPEC_URL" >&2
if ! curl -fsSL --max-time 120 -o "$tmp" "$SPEC_URL"; then
  echo "conformance: cannot download the SaladCloud spec from $SPEC_URL; set SPEC=path/to/openapi.yaml (sha256 $SPEC_SHA256)" >&2
  exit 2
fi
got="$(sha_of "$tmp")"
if [[ "$got" != "$SPEC_SHA256" ]]; then
  echo "conformance: sha256 mismatch for $SPEC_URL: got $got, expected $SPEC_SHA256; not using it" >&2
  exit 2
fi
mv "$tmp" "$SPEC_CACHE"
realpath "$SPEC_CACHE"
