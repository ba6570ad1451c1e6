.PHONY: bench-scaling
## Scaling benchmark (release build): one seeded day of bursty txt2img demand through the
## simulator's job queue on its virtual clock, for fixed 3 replicas, a schedule and the queue
## autoscaler at minimum 0 and 1; GPU-hours, cost and p50/p95 job latency as one JSON object.
## BENCH_SCALING_SEED picks the day (default 1).
bench-scaling:
	$(CARGO) build --release -q -p salad-sd-controller --example bench_scaling
	target/release/examples/bench_scaling
