//! `make bench-scaling`: one seeded day of bursty txt2img demand on the simulator's virtual
//! clock, served four ways: fixed 3 replicas, a schedule (3 in business hours, 1 at night),
//! and SaladCloud's queue autoscaler with a minimum of 0 and of 1. Every job goes through the
//! simulator's job queue to a worker on a running instance; instances start with the documented
//! cold start (the calibrated per-node download of a 5 GB image, about 2 minutes per GB).
//!
//! Prints one JSON object: per strategy GPU-hours (instances that exist and are not stopping,
//! billed from allocation), cost at the GPU class's price, p50/p95 job latency (enqueued →
//! answered) and jobs done; and the goal: the autoscaler at minimum 1 costs at least 50 % less
//! than fixed 3 replicas.

use std::time::Duration;

use saladcloud_sim::{FleetModel, SimConfig, Timings, VirtualCloud};
use serde_json::{Value, json};

const ORG: &str = "bench-org";
const PROJECT: &str = "bench";
const GROUP: &str = "bench-group";
const QUEUE: &str = "bench-jobs";
/// RTX 3060 Ti (8 GB) in the simulator, high priority: $0.080 an hour.
const GPU: &str = "cb6c1931-89b6-4f76-976f-54047320ccc6";
const PRICE_PER_HOUR: f64 = 0.080;
const IMAGE_BYTES: u64 = 5_000_000_000;
const JOB_SECONDS: u64 = 6;
const STEP: Duration = Duration::from_secs(10);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A small deterministic generator (xorshift64*), so a seed is a day.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Poisson-distributed count with mean `m` (Knuth).
    fn poisson(&mut self, m: f64) -> u32 {
        let l = (-m).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.next();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

/// The day's jobs: (second of the day, count). Bursts arrive as a Poisson process, one every
/// 20 minutes on average from 08:00 to 20:00 UTC and one every 3 hours at night; a burst is
/// 1 + Poisson(14) jobs spread over two minutes.
fn demand(seed: u64) -> Vec<(u64, u32)> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut jobs = Vec::new();
    let mut t = 0.0;
    while t < DAY.as_secs_f64() {
        let hour = (t / 3600.0) as u32;
        let mean_gap = if (8..20).contains(&hour) {
            1200.0
        } else {
            3.0 * 3600.0
        };
        t += -mean_gap * (1.0 - rng.next()).ln();
        if t >= DAY.as_secs_f64() {
            break;
        }
        let n = 1 + rng.poisson(14.0);
        for _ in 0..n {
            jobs.push(((t + rng.next() * 120.0) as u64, 1));
        }
    }
    jobs.sort();
    jobs
}

fn group(replicas: u32, extra: Value) -> Value {
    let probe = json!({
        "http": {"path": "/", "port": 7860, "scheme": "http", "headers": []},
        "initial_delay_seconds": 0, "period_seconds": 3, "timeout_seconds": 10,
        "success_threshold": 1, "failure_threshold": 20,
    });
    let mut g = json!({
        "name": GROUP,
        "container": {
            "image": "registry.example/sdnext@sha256:bench",
            "resources": {"cpu": 4, "memory": 12288, "gpu_classes": [GPU]},
        },
        "autostart_policy": true,
        "replicas": replicas,
        "restart_policy": "always",
        "startup_probe": probe,
        "queue_connection": {"path": "/sdapi/v1/txt2img", "port": 7860, "queue_name": QUEUE},
    });
    if let (Value::Object(g), Value::Object(e)) = (&mut g, extra) {
        g.extend(e);
    }
    g
}

struct Day {
    gpu_hours: f64,
    latencies: Vec<f64>,
    done: usize,
    failed: usize,
    submitted: usize,
    peak_instances: usize,
}

fn run(seed: u64, replicas: u32, extra: Value) -> Day {
    let mut cloud = VirtualCloud::new(SimConfig {
        timings: Timings::virtual_node(),
        fleet: FleetModel::calibrated(Duration::from_secs(120), seed),
        replicas_quota: 10_000,
        rate_limit_per_minute: 0,
        job_time: Duration::from_secs(JOB_SECONDS),
        ..SimConfig::default()
    });
    cloud.set_image_size("sdnext", IMAGE_BYTES);
    cloud
        .create_queue(ORG, PROJECT, &json!({"name": QUEUE}))
        .expect("queue");
    cloud
        .create(ORG, PROJECT, &group(replicas, extra))
        .expect("group");
    let jobs = demand(seed);
    let mut next = 0;
    let mut instance_seconds = 0.0;
    let mut peak = 0;
    // The day, then time for the last jobs to finish (billed too: the group keeps running).
    let end = DAY + Duration::from_secs(3600);
    while cloud.elapsed() < end {
        cloud.advance(STEP);
        let now = cloud.elapsed().as_secs();
        while next < jobs.len() && jobs[next].0 <= now {
            cloud
                .create_job(
                    ORG,
                    PROJECT,
                    QUEUE,
                    &json!({"input": {"prompt": "a red apple", "steps": 20, "width": 512, "height": 512}}),
                )
                .expect("job");
            next += 1;
        }
        let list = cloud.instances(ORG, PROJECT, GROUP).expect("instances");
        let billed = list["instances"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|i| i["state"] != "stopping").count());
        peak = peak.max(billed);
        instance_seconds += billed as f64 * STEP.as_secs_f64();
    }
    let mut day = Day {
        gpu_hours: instance_seconds / 3600.0,
        latencies: Vec::new(),
        done: 0,
        failed: 0,
        submitted: jobs.len(),
        peak_instances: peak,
    };
    for page in 1.. {
        let list = cloud
            .list_jobs(ORG, PROJECT, QUEUE, page, 100)
            .expect("jobs");
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        for j in items {
            match j["status"].as_str() {
                Some("succeeded") => {
                    let ts = |k: &str| {
                        j[k].as_str()
                            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                            .expect("timestamp")
                    };
                    day.latencies.push(
                        ts("update_time")
                            .duration_since(ts("create_time"))
                            .as_secs_f64(),
                    );
                    day.done += 1;
                }
                Some("failed") => day.failed += 1,
                _ => {}
            }
        }
    }
    day.latencies.sort_by(f64::total_cmp);
    day
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i] * 10.0).round() / 10.0
}

fn report(d: &Day) -> Value {
    json!({
        "gpu_hours": (d.gpu_hours * 100.0).round() / 100.0,
        "cost_usd": (d.gpu_hours * PRICE_PER_HOUR * 1000.0).round() / 1000.0,
        "latency_seconds": {"p50": pct(&d.latencies, 0.5), "p95": pct(&d.latencies, 0.95)},
        "jobs": {"submitted": d.submitted, "succeeded": d.done, "failed": d.failed},
        "peak_instances": d.peak_instances,
    })
}

fn main() {
    let seed = std::env::var("BENCH_SCALING_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u64);
    let autoscaler = |min: u32| {
        json!({"queue_autoscaler": {"min_replicas": min, "max_replicas": 5,
            "desired_queue_length": 10, "polling_period": 30}})
    };
    let fixed = run(seed, 3, json!({}));
    let schedule = run(
        seed,
        1,
        json!({"scheduled-scaling-enabled": true, "scaling-actions": [
            {"schedule": "45 7 * * *", "replicas": 3},
            {"schedule": "0 20 * * *", "replicas": 1},
        ]}),
    );
    let min0 = run(seed, 0, autoscaler(0));
    let min1 = run(seed, 1, autoscaler(1));
    let saving = 1.0 - min1.gpu_hours / fixed.gpu_hours;
    println!(
        "{}",
        json!({
            "seed": seed,
            "day": "24 h UTC: bursts every ~20 min 08-20, every ~3 h at night; 1+Poisson(14) jobs a burst over 2 min; then 1 h to drain",
            "job_seconds": JOB_SECONDS,
            "image_gb": IMAGE_BYTES as f64 / 1e9,
            "cold_start": "sim FleetModel::calibrated(120 s/GB): per-node download, + allocate 45 s, create 20 s, startup 60 s",
            "gpu_class": "RTX 3060 Ti (8 GB), high priority",
            "price_usd_per_hour": PRICE_PER_HOUR,
            "billing": "instances that exist and are not stopping, from allocation, sampled every 10 s",
            "autoscaler": {"max_replicas": 5, "desired_queue_length": 10, "polling_period_seconds": 30},
            "strategies": {
                "fixed 3 replicas": report(&fixed),
                "schedule 3 (07:45-20:00) / 1": report(&schedule),
                "queue autoscaler min 0": report(&min0),
                "queue autoscaler min 1": report(&min1),
            },
            "goal": {
                "autoscaler_min1_cost_saving_vs_fixed3": format!("{:.0}%", saving * 100.0),
                "met": saving >= 0.5,
                "autoscaler_min1_p95_latency_seconds": pct(&min1.latencies, 0.95),
            },
        })
    );
}
