## The operator image, built here without a Docker daemon and reproducibly (`make image`): the
## release binary without the simulator (static musl, `-p salad-sd-cli --no-default-features`,
## source paths remapped so the checkout's location does not enter it) on a base of nothing but
## Debian's CA certificates and the non-root user 65532, assembled into an OCI image layout in
## $(IMAGE_DIR) by crates/image (examples/operator_image.rs). `make test-runtime` runs that
## layout as the Deployment runs it; `make push-image` pushes the same bytes, so the digest that
## was tested is the digest that is released (.github/workflows/release.yml).
.PHONY: image push-image release-manifests
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
IMAGE_REPOSITORY ?= ghcr.io/salad-sd/salad-sd-operator
IMAGE ?= $(IMAGE_REPOSITORY):$(VERSION)
IMAGE_DIR ?= $(CURDIR)/target/image/salad-sd-operator
MUSL_TARGET := x86_64-unknown-linux-musl
OPERATOR_BIN := target/$(MUSL_TARGET)/release/salad-sd
CARGO_HOME_DIR ?= $(or $(CARGO_HOME),$(HOME)/.cargo)
RUSTUP_HOME_DIR ?= $(or $(RUSTUP_HOME),$(HOME)/.rustup)
# Only the musl target's flags: the host build (build scripts, tests) keeps its cache.
IMAGE_RUSTFLAGS := --remap-path-prefix=$(CURDIR)=/src --remap-path-prefix=$(CARGO_HOME_DIR)=/cargo --remap-path-prefix=$(RUSTUP_HOME_DIR)=/rustup

image:
	@scripts/ensure-deps.sh image
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(IMAGE_RUSTFLAGS)" \
	  $(CARGO) build --release --locked --target $(MUSL_TARGET) -p salad-sd-cli --no-default-features
	$(CARGO) run -q --locked -p salad-sd-image --example operator_image -- assemble \
	  --binary $(OPERATOR_BIN) --version $(VERSION) --out $(IMAGE_DIR) \
	  --ca-certificates /etc/ssl/certs/ca-certificates.crt

## Push the image `make image` assembled to $(IMAGE) (REGISTRY_USERNAME / REGISTRY_PASSWORD from
## the environment; INSECURE_REGISTRY=HOST:PORT for a plain-http test registry). Prints
## HOST/REPO@sha256:… and keeps it in target/image/pushed.
push-image:
	@test -f $(IMAGE_DIR)/index.json || { echo "no image in $(IMAGE_DIR): run make image" >&2; exit 1; }
	$(CARGO) run -q --locked -p salad-sd-image --example operator_image -- push \
	  --from $(IMAGE_DIR) --to $(IMAGE) $(if $(INSECURE_REGISTRY),--insecure-registry $(INSECURE_REGISTRY)) \
	  | tee target/image/pushed

## manifests/ and crds/ with the operator image pinned by the digest `make push-image` pushed,
## as dist/salad-sd-operator-$(VERSION)-manifests.tar.gz (what a release publishes).
release-manifests:
	scripts/release-manifests.sh "$(VERSION)" "$(IMAGE)" "$$(tail -1 target/image/pushed)"
