# make conformance: send the saladcloud client's full request corpus to Stoplight Prism (mocking
# the official OpenAPI spec) and count request-side spec violations; then validate the
# simulator's response bodies against the spec's response schemas.
#   SPEC=path/to/openapi.yaml   spec to check against (default ../shared/saladcloud/openapi.yaml;
#                               where that is absent, the pinned version named in its SOURCE.md is
#                               fetched into .scratch/ and used only if its sha256 matches)
#   PRISM_VERSION, PRISM_DIR    Prism npm version and install folder (reused when present)
#   STRICT_SIM=1                also fail when simulator responses violate the spec
SPEC ?= $(abspath ../shared/saladcloud/openapi.yaml)
PRISM_VERSION ?= 5.16.0
PRISM_DIR ?= .scratch/prism

.PHONY: conformance
conformance:
	@SPEC="$(SPEC)" PRISM_VERSION="$(PRISM_VERSION)" PRISM_DIR="$(PRISM_DIR)" CARGO="$(CARGO)" \
	  STRICT_SIM="$(STRICT_SIM)" bash scripts/conformance.sh
