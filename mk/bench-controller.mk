.PHONY: bench-controller bench-operator-memory
## Controller benchmark (release build): spec change → SaladCloud PATCH latency, steady-state
## requests per resource per poll, RSS with 1,000 resources and 5,000 unrelated 4 KiB Secrets
## (watched by metadata only, as the operator does; BENCH_SECRETS_FULL=1 watches them with their
## data for comparison), 429s with one API key at the default poll. Simulator in a child process, Kubernetes API stood in for in-process. Ends with
## one JSON line. Then the operator's own memory (bench-operator-memory). Installs
## what it needs (docker-registry; musl-tools and the musl target for the image's build).
bench-controller: deps
	$(CARGO) build --release -q -p salad-sd-controller --example bench_controller
	ulimit -n $$(ulimit -Hn) && target/release/examples/bench_controller
	$(MAKE) --no-print-directory bench-operator-memory

## The operator as its own process (tests/examples/bench_operator.rs): the shipped binary
## (`salad-sd operator`, no simulator) against a mocked Kubernetes API server with 1,000
## resources and 5,000 unrelated Secrets, the simulator, a registry and a model server, all in
## the benchmark's process. Prints the operator's RSS in steady state as JSON, for the static
## musl build of the image (`make image`) and for the host's glibc build.
bench-operator-memory:
	@scripts/ensure-deps.sh test && scripts/ensure-deps.sh image
	$(CARGO) build --release -q -p salad-sd-e2e --example bench_operator
	$(CARGO) build --release -q -p salad-sd-cli --no-default-features
	$(CARGO) build --release -q --target x86_64-unknown-linux-musl -p salad-sd-cli --no-default-features
	ulimit -n $$(ulimit -Hn) && SALAD_SD_BIN=$(CURDIR)/target/x86_64-unknown-linux-musl/release/salad-sd \
	  target/release/examples/bench_operator
	ulimit -n $$(ulimit -Hn) && SALAD_SD_BIN=$(CURDIR)/target/release/salad-sd target/release/examples/bench_operator
