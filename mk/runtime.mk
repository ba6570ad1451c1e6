## Run the images we build as a SaladCloud node would (runc + overlayfs, as root): one stand-in
## base per server kind, the group's probes, bytes written at start; and the operator image
## (`make image`) as its Deployment runs it (uid 65532, read-only root, no capabilities) against
## a mocked Kubernetes API and the simulator. Debian's containerd pulls every one of those images
## too and must unpack the root filesystem the test node unpacks, path by path; SD.Next and
## ComfyUI also run under containerd (`ctr run`) and pass their probes. Docker Engine (moby's own
## pull and overlay2) pulls SD.Next's and ComfyUI's images, must unpack the same root
## filesystems, and runs them through their probes. Skipped (not passed) where runc, overlayfs or root is missing; CI
## installs them and fails instead of skipping.
.PHONY: test-runtime deps-runtime
## What test-runtime needs (Debian docker-registry, runc, containerd, docker.io, socat, python3.11, and for the operator
## image musl-tools, ca-certificates and the Rust musl target), when missing.
deps-runtime:
	@scripts/ensure-deps.sh runtime

test-runtime: deps-runtime
	@if [ "$$(id -u)" -ne 0 ] || ! command -v runc >/dev/null || ! grep -qw overlay /proc/filesystems; then \
	  if [ -n "$$CI" ]; then echo "test-runtime: needs root, runc and overlayfs in CI" >&2; exit 1; fi; \
	  echo "SKIPPED test-runtime: needs root, runc (apt-get install runc) and overlayfs"; exit 0; \
	fi; \
	$(MAKE) --no-print-directory image && \
	SALAD_SD_OPERATOR_IMAGE=$(IMAGE_DIR) $(CARGO) test -p salad-sd-e2e --test runtime --test operator_image -- --include-ignored --nocapture --test-threads=8
