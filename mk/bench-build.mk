.PHONY: bench-build
## Image builder benchmark: 2 GiB synthetic model into a local registry vs `curl -T` (one JSON line).
## BENCH_MODEL_MIB=2048 BENCH_SMALL_MIB=256 BENCH_SECOND_MIB=64 can be overridden.
bench-build:
	@scripts/bench-build.sh
