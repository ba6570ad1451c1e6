.PHONY: bench-build
## Image builder benchmark: 2 GiB synthetic model into a local registry vs `curl -T`; the same
## model from a source capped at BENCH_CAP_MIB_S (50) MiB/s per connection (parallel ranges);
## three new models (BENCH_THREE_MIB=1024, 512, 256 MiB) at once vs the largest alone, and vs
## plain curl uploads of the same sizes (the registry's ceiling); the three again from a source
## capped at BENCH_SLOW_CAP_MIB_S (10) MiB/s per connection (one JSON line). The sources run in a
## child process, the registry on tmpfs when it has room. BENCH_REGISTRY_GO_PROCS=N runs the
## registry with GOMAXPROCS=N (0, the default: Go's own choice, one per core). The two goal ratios
## (capped vs curl, three vs the largest) are taken BENCH_ROUNDS (3) times, interleaved, with
## each round's figures and the medians.
## BENCH_MODEL_MIB=2048 BENCH_SMALL_MIB=256 BENCH_SECOND_MIB=64 can be overridden.
bench-build:
	@scripts/bench-build.sh
