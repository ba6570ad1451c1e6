.PHONY: bench-build
## Image builder benchmark: 2 GiB synthetic model into a local registry vs `curl -T`; the same
## model from a source capped at BENCH_CAP_MIB_S (50) MiB/s per connection (parallel ranges);
## three new models (BENCH_THREE_MIB=1024, 512, 256 MiB) at once vs the largest alone, and vs
## plain curl uploads of the same sizes (the registry's ceiling); the three again from a source
## capped at BENCH_SLOW_CAP_MIB_S (10) MiB/s per connection (one JSON line). The sources run in a
## child process, the registry on tmpfs when it has room. BENCH_REGISTRY_GO_PROCS=N runs the
## registry with GOMAXPROCS=N (0, the default: Go's own choice, one per core).
## BENCH_MODEL_MIB=2048 BENCH_SMALL_MIB=256 BENCH_SECOND_MIB=64 can be overridden.
bench-build:
	@scripts/bench-build.sh

.PHONY: bench-gzip
## The layer encoder decision: stored-block gzip writer vs flate2 level 0 on the same data,
## BENCH_GZIP_RUNS runs each (default 9), min/median/max MiB/s, one JSON line.
bench-gzip:
	$(CARGO) build -q --release -p salad-sd-image --example bench_gzip
	target/release/examples/bench_gzip --mib "$${BENCH_GZIP_MIB:-256}" --runs "$${BENCH_GZIP_RUNS:-9}"
