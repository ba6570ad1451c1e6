# salad-sd-operator — the two commands a newcomer needs:
#   make demo   the whole flow end to end on this machine (simulated SaladCloud, real registry)
#   make test   every test
SHELL := /bin/bash
CARGO ?= cargo
BIN := target/debug/salad-sd
SPEC ?= $(abspath ../shared/saladcloud/openapi.yaml)

.PHONY: all build test test-unit crds check-crds lint fmt deps ci
all: build

build:
	$(CARGO) build --workspace

## Install what `make test` needs (Debian docker-registry, lua5.4, python3), when missing; `make test-runtime`
## installs its own (runc, socat, python3.11).
deps:
	@scripts/ensure-deps.sh test

test: deps
	$(CARGO) test --workspace

## The fast lane: every test that needs no root, no apt package and no service outside the test
## process (pure code, the in-memory SaladCloud, the mocked Kubernetes API, the in-process
## simulator). `make test` stays the whole suite.
test-unit:
	$(CARGO) test --workspace --lib --bins \
	  --test crd --test manifests \
	  --test planner --test engine_fake --test engine_smoke --test lease --test operator_run \
	  --test model --test client --test api

## Regenerate the committed CRD YAML from the Rust types.
crds:
	$(CARGO) run -q -p salad-sd-api --example crdgen > crds/salad-sd.dev_stablediffusiondeployments.yaml

## Fail when crds/ differs from what the code generates.
check-crds:
	@tmp=$$(mktemp); $(CARGO) run -q -p salad-sd-api --example crdgen > $$tmp; \
	if ! diff -u crds/salad-sd.dev_stablediffusiondeployments.yaml $$tmp; then \
	  echo "crds/ is stale: run 'make crds' and commit the result" >&2; rm -f $$tmp; exit 1; fi; \
	rm -f $$tmp; echo "crds/ matches the code"

fmt:
	$(CARGO) fmt --all

## fmt, clippy (also the operator build without the simulator), unused dependencies
## (cargo-machete, installed when missing).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p salad-sd-cli --no-default-features -- -D warnings
	@command -v cargo-machete >/dev/null || $(CARGO) install --locked cargo-machete
	$(CARGO) machete --with-metadata

ci: lint check-crds test

-include mk/*.mk
