.PHONY: bench-fleet
## Fleet benchmark (release build): seeded rollouts of 3 and 100 replicas, 2 GB and 7 GB images,
## on the simulator's virtual clock, with and without slow-node reallocation (one JSON object).
## BENCH_FLEET_RUNS_3 / BENCH_FLEET_RUNS_100 set the number of runs (200 / 20).
bench-fleet:
	$(CARGO) build --release -q -p salad-sd-controller --example bench_fleet
	target/release/examples/bench_fleet
