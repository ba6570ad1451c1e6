//! `make bench-fleet`: many seeded rollouts on the simulator's virtual clock (hours pass in
//! milliseconds), with and without slow-node reallocation, decided by the operator's own
//! [`fleet::decide`]. Node speeds follow the simulator's model calibrated to SaladCloud's
//! published figures (2 min/GB on the average node; 100 × 5.53 GB: 50 % by 10 min, 90 % by 40).
//!
//! Prints one JSON object: per case (replicas × image size × reallocation), time to
//! minReadyReplicas and to all ready (p50, p90, minutes) and SaladCloud calls per minute.

use std::collections::BTreeMap;
use std::time::Duration;

use salad_sd_api::FleetSpec;
use salad_sd_controller::fleet::{self, FleetFacts, Groups};
use salad_sd_controller::plan::ObservedGroup;
use saladcloud::model::{ContainerGroup, ContainerGroupInstanceCollection};
use saladcloud_sim::{FleetModel, SimConfig, Timings, VirtualCloud};
use serde_json::{Value, json};

const ORG: &str = "bench-org";
const PROJECT: &str = "bench";
const GPU: &str = "cb6c1931-89b6-4f76-976f-54047320ccc6";
/// The operator's poll while a rollout is in progress (virtual).
const POLL: Duration = Duration::from_secs(15);
/// A rollout that is not done by then counts as this long.
const GIVE_UP: Duration = Duration::from_secs(6 * 3600);

struct Run {
    to_min_ready: f64,
    to_all_ready: f64,
    calls: u64,
    reallocations: u64,
}

fn body(replicas: u32) -> Value {
    let probe = json!({
        "http": {"path": "/", "port": 7860, "scheme": "http", "headers": []},
        "initial_delay_seconds": 0, "period_seconds": 3, "timeout_seconds": 10,
        "success_threshold": 1, "failure_threshold": 20,
    });
    json!({
        "name": "bench-group",
        "container": {
            "image": "registry.example/sdnext@sha256:bench",
            "resources": {"cpu": 4, "memory": 12288, "gpu_classes": [GPU]},
        },
        "autostart_policy": true,
        "replicas": replicas,
        "restart_policy": "always",
        "startup_probe": probe,
        "readiness_probe": probe,
        "networking": {"protocol": "http", "port": 7860, "auth": false},
    })
}

fn run(seed: u64, replicas: u32, min_ready: u32, bytes: u64, reallocate: bool) -> Run {
    let mut cloud = VirtualCloud::new(SimConfig {
        timings: Timings::virtual_node(),
        fleet: FleetModel::calibrated(Duration::from_secs(120), seed),
        replicas_quota: 10_000,
        reallocations_per_minute: 10,
        rate_limit_per_minute: 0,
        ..SimConfig::default()
    });
    cloud.set_image_size("sdnext", bytes);
    cloud.create(ORG, PROJECT, &body(replicas)).expect("create");
    let mut spec = bench_spec();
    spec.slow_node_reallocation.enabled = reallocate;
    let mut facts = FleetFacts {
        reallocations_per_minute: Some(10),
        ..FleetFacts::default()
    };
    let mut calls = 2u64; // create, quota
    let mut reallocations = 0u64;
    let mut to_min = None;
    let mut prev = None;
    loop {
        cloud.advance(POLL);
        let elapsed = cloud.elapsed();
        let group: ContainerGroup =
            serde_json::from_value(cloud.get(ORG, PROJECT, "bench-group").unwrap()).unwrap();
        let list: ContainerGroupInstanceCollection =
            serde_json::from_value(cloud.instances(ORG, PROJECT, "bench-group").unwrap()).unwrap();
        calls += 3; // the group, its instances, its system logs
        let ready = list
            .instances
            .iter()
            .filter(|i| i.ready == Some(true))
            .count() as u32;
        if ready >= min_ready && to_min.is_none() {
            to_min = Some(elapsed);
        }
        if ready >= replicas || elapsed >= GIVE_UP {
            return Run {
                to_min_ready: to_min.unwrap_or(elapsed).as_secs_f64() / 60.0,
                to_all_ready: elapsed.as_secs_f64() / 60.0,
                calls,
                reallocations,
            };
        }
        let observed = ObservedGroup {
            group,
            instances: Some(list.instances),
        };
        facts.observed_at = Some(cloud.timestamp());
        let decision = fleet::decide(
            &spec,
            prev.as_ref(),
            &Groups {
                target: Some(&observed),
                previous: None,
                min_ready,
            },
            None,
            &facts,
        );
        prev = decision.status.clone();
        for r in &decision.reallocate {
            calls += 1;
            match cloud.reallocate(ORG, PROJECT, &r.group, &r.instance) {
                Ok(()) => {
                    reallocations += 1;
                    facts.recent.push((r.instance.clone(), cloud.timestamp()));
                }
                Err(_) => {
                    facts.blocked = Some((
                        cloud.timestamp() + jiff::SignedDuration::from_secs(60),
                        "429".into(),
                    ));
                    break;
                }
            }
        }
    }
}

/// The default rule, or one set by `BENCH_FLEET_GRACE` / `BENCH_FLEET_SECONDS_PER_GB`.
fn bench_spec() -> FleetSpec {
    let mut spec = FleetSpec::default();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<i32>().ok());
    if let Some(g) = env("BENCH_FLEET_GRACE") {
        spec.slow_node_reallocation.grace_period_seconds = g;
    }
    if let Some(t) = env("BENCH_FLEET_SECONDS_PER_GB") {
        spec.slow_node_reallocation.seconds_per_gb = t;
    }
    spec
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() as f64 - 1.0) * q).round() as usize;
    (v[idx] * 10.0).round() / 10.0
}

fn main() {
    let runs_small: u64 = std::env::var("BENCH_FLEET_RUNS_3")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runs_large: u64 = std::env::var("BENCH_FLEET_RUNS_100")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut cases = BTreeMap::new();
    for (replicas, min_ready, runs) in [(3u32, 2u32, runs_small), (100, 50, runs_large)] {
        for (gb, bytes) in [("2GB", 2_000_000_000u64), ("7GB", 7_000_000_000)] {
            let mut p90_all = [0.0; 2];
            for (k, reallocate) in [false, true].into_iter().enumerate() {
                let results: Vec<Run> = (0..runs)
                    .map(|seed| run(seed + 1, replicas, min_ready, bytes, reallocate))
                    .collect();
                let mut min: Vec<f64> = results.iter().map(|r| r.to_min_ready).collect();
                let mut all: Vec<f64> = results.iter().map(|r| r.to_all_ready).collect();
                let minutes: f64 = all.iter().sum();
                let calls: u64 = results.iter().map(|r| r.calls).sum();
                let reallocs: u64 = results.iter().map(|r| r.reallocations).sum();
                p90_all[k] = percentile(&mut all, 0.9);
                cases.insert(
                    format!(
                        "replicas={replicas} image={gb} reallocation={}",
                        if reallocate { "on" } else { "off" }
                    ),
                    json!({
                        "runs": runs,
                        "min_ready_replicas": min_ready,
                        "minutes_to_min_ready": {"p50": percentile(&mut min, 0.5), "p90": percentile(&mut min, 0.9)},
                        "minutes_to_all_ready": {"p50": percentile(&mut all, 0.5), "p90": p90_all[k]},
                        "saladcloud_calls_per_minute": ((calls as f64 / minutes.max(1e-9)) * 10.0).round() / 10.0,
                        "reallocations_per_run": ((reallocs as f64 / runs as f64) * 10.0).round() / 10.0,
                    }),
                );
            }
            cases.insert(
                format!("replicas={replicas} image={gb} p90_all_ready_reduction"),
                json!(format!("{:.0}%", (1.0 - p90_all[1] / p90_all[0]) * 100.0)),
            );
        }
    }
    let out = json!({
        "model": "sim FleetModel::calibrated(120 s/GB, seed 1..=runs): log-normal median 0.9, sigma 1.0, cap 7.25",
        "poll_seconds": POLL.as_secs(),
        "slow_node_rule": bench_spec().slow_node_reallocation,
        "api_budget_per_minute": 240,
        "cases": cases,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
