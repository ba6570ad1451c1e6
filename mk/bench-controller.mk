.PHONY: bench-controller
## Controller benchmark (release build): spec change → SaladCloud PATCH latency, steady-state
## requests per resource per poll, RSS with 1,000 resources and 5,000 unrelated 4 KiB Secrets
## (watched by metadata only, as the operator does; BENCH_SECRETS_FULL=1 watches them with their
## data for comparison), 429s with one API key at the default poll. Simulator in a child process, Kubernetes API stood in for in-process. Ends with
## one JSON line. Needs /usr/bin/docker-registry (make deps).
bench-controller:
	$(CARGO) build --release -q -p salad-sd-controller --example bench_controller
	ulimit -n $$(ulimit -Hn) && target/release/examples/bench_controller
