//! Prometheus metrics, prefixed `salad_sd_`. Per-resource values are kept in maps and summed,
//! so no metric carries a per-resource label (cardinality stays flat at 1,000 resources).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use salad_sd_image::BuiltImage;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabel {
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Default)]
struct PerResource {
    phase: HashMap<String, String>,
    ready: HashMap<String, i64>,
    cost: HashMap<String, f64>,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    errors: Family<CategoryLabel, Counter>,
    reconcile_duration: Histogram,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histogram,
    build_bytes: Family<DirectionLabel, Counter>,
    build_duration: Histogram,
    /// Builds running now.
    pub builds_in_progress: Gauge,
    /// 1 while this replica holds the leader Lease (or runs without leader election), else 0.
    pub leader: Gauge,
    deployments: Family<PhaseLabel, Gauge>,
    ready_replicas: Gauge,
    cost: Gauge<f64, AtomicU64>,
    per_resource: Mutex<PerResource>,
    fleet: FleetMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers everything.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("salad_sd");
        let m = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            requests: Family::default(),
            request_duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            build_bytes: Family::default(),
            build_duration: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            builds_in_progress: Gauge::default(),
            leader: Gauge::default(),
            deployments: Family::default(),
            ready_replicas: Gauge::default(),
            cost: Gauge::default(),
            per_resource: Mutex::default(),
            fleet: FleetMetrics::default(),
            registry: Registry::default(),
        };
        m.fleet.register(&mut registry);
        registry.register(
            "reconcile",
            "Reconciles by result (success, error, stalled)",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by category",
            m.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "saladcloud_requests",
            "SaladCloud API requests by operation and status code",
            m.requests.clone(),
        );
        registry.register(
            "saladcloud_request_duration_seconds",
            "SaladCloud API request duration",
            m.request_duration.clone(),
        );
        registry.register(
            "build_bytes",
            "Bytes moved by image builds, by direction",
            m.build_bytes.clone(),
        );
        registry.register(
            "build_duration_seconds",
            "Image build duration",
            m.build_duration.clone(),
        );
        registry.register(
            "builds_in_progress",
            "Image builds running",
            m.builds_in_progress.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease and reconciles, 0 on a standby",
            m.leader.clone(),
        );
        registry.register(
            "deployments",
            "StableDiffusionDeployments by phase",
            m.deployments.clone(),
        );
        registry.register(
            "ready_replicas",
            "Ready instances across all deployments",
            m.ready_replicas.clone(),
        );
        registry.register(
            "estimated_hourly_cost_usd",
            "Estimated USD per hour across all deployments",
            m.cost.clone(),
        );
        Self { registry, ..m }
    }

    /// One reconcile finished.
    pub fn record_reconcile(&self, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// One error, by category.
    pub fn record_error(&self, category: &str) {
        self.errors
            .get_or_create(&CategoryLabel {
                category: category.into(),
            })
            .inc();
    }

    /// One SaladCloud request attempt.
    pub fn record_request(&self, operation: &str, status: Option<u16>, took: Duration) {
        let status = status.map_or_else(|| "none".to_string(), |s| s.to_string());
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.into(),
                status,
            })
            .inc();
        self.request_duration.observe(took.as_secs_f64());
    }

    /// A finished build.
    pub fn record_build(&self, image: &BuiltImage, took: Duration) {
        self.build_bytes
            .get_or_create(&DirectionLabel {
                direction: "uploaded".into(),
            })
            .inc_by(image.bytes_uploaded);
        self.build_bytes
            .get_or_create(&DirectionLabel {
                direction: "downloaded".into(),
            })
            .inc_by(image.bytes_downloaded);
        self.build_duration.observe(took.as_secs_f64());
    }

    /// The latest state of one resource (`None` when it is gone).
    pub fn record_resource(&self, uid: &str, state: Option<(&str, i64, f64)>) {
        let mut pr = self.per_resource.lock().unwrap();
        match state {
            Some((phase, ready, cost)) => {
                pr.phase.insert(uid.into(), phase.into());
                pr.ready.insert(uid.into(), ready);
                pr.cost.insert(uid.into(), cost);
            }
            None => {
                pr.phase.remove(uid);
                pr.ready.remove(uid);
                pr.cost.remove(uid);
            }
        }
        let mut by_phase: HashMap<&str, i64> = HashMap::new();
        for p in pr.phase.values() {
            *by_phase.entry(p.as_str()).or_default() += 1;
        }
        for phase in [
            "Pending",
            "Building",
            "Deploying",
            "Running",
            "Updating",
            "Stopped",
            "Failed",
            "Deleting",
        ] {
            self.deployments
                .get_or_create(&PhaseLabel {
                    phase: phase.into(),
                })
                .set(by_phase.get(phase).copied().unwrap_or(0));
        }
        self.ready_replicas.set(pr.ready.values().sum());
        self.cost.set(pr.cost.values().sum());
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode");
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatLabel {
    stat: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByLabel {
    by: String,
}

/// What one resource's instances last reported.
#[derive(Clone, Debug, Default)]
struct FleetSample {
    counts: [i64; 6],
    cpu: Vec<f64>,
    memory_mb: Vec<f64>,
    progress: Vec<f64>,
}

const FLEET_STATES: [&str; 6] = [
    "allocating",
    "downloading",
    "creating",
    "running",
    "stopping",
    "ready",
];

/// The fleet's gauges and counters. Per-instance usage is summarised across every resource
/// (mean, max, sum) instead of labelled by instance: instance ids churn with every reallocation,
/// and a label per instance (or per resource) would grow without bound.
#[derive(Default)]
struct FleetMetrics {
    instances: Family<StateLabel, Gauge>,
    cpu_percent: Family<StatLabel, Gauge<f64, AtomicU64>>,
    memory_mb: Family<StatLabel, Gauge<f64, AtomicU64>>,
    download_percent: Family<StatLabel, Gauge<f64, AtomicU64>>,
    interruptions: Counter,
    reallocations: Family<ByLabel, Counter>,
    samples: Mutex<HashMap<String, FleetSample>>,
}

impl FleetMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "fleet_instances",
            "SaladCloud instances across all deployments, by state (ready: passing readiness)",
            self.instances.clone(),
        );
        registry.register(
            "fleet_instance_cpu_percent",
            "CPU use of running instances (SaladCloud's cpu_percent, updated every minute): mean and max",
            self.cpu_percent.clone(),
        );
        registry.register(
            "fleet_instance_memory_mb",
            "Memory use of running instances (SaladCloud's memory_usage_mb): sum and max",
            self.memory_mb.clone(),
        );
        registry.register(
            "fleet_download_progress_percent",
            "Image download progress of downloading instances (pulling_progress): mean and min",
            self.download_percent.clone(),
        );
        registry.register(
            "fleet_interruptions",
            "SaladCloud instance interruptions seen in system logs",
            self.interruptions.clone(),
        );
        registry.register(
            "fleet_reallocations",
            "Instance reallocations, by who asked (operator: slow nodes; saladcloud: system logs)",
            self.reallocations.clone(),
        );
    }

    fn publish(&self) {
        let samples = self.samples.lock().unwrap();
        for (i, state) in FLEET_STATES.iter().enumerate() {
            self.instances
                .get_or_create(&StateLabel {
                    state: (*state).into(),
                })
                .set(samples.values().map(|s| s.counts[i]).sum());
        }
        let all = |f: fn(&FleetSample) -> &Vec<f64>| -> Vec<f64> {
            samples
                .values()
                .flat_map(|s| f(s).iter().copied())
                .collect()
        };
        let set = |family: &Family<StatLabel, Gauge<f64, AtomicU64>>, stat: &str, v: f64| {
            family
                .get_or_create(&StatLabel { stat: stat.into() })
                .set(v);
        };
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let cpu = all(|s| &s.cpu);
        set(&self.cpu_percent, "mean", mean(&cpu));
        set(&self.cpu_percent, "max", max(&cpu));
        let mem = all(|s| &s.memory_mb);
        set(&self.memory_mb, "sum", mem.iter().sum());
        set(&self.memory_mb, "max", max(&mem));
        let progress = all(|s| &s.progress);
        set(&self.download_percent, "mean", mean(&progress));
        set(
            &self.download_percent,
            "min",
            progress.iter().copied().reduce(f64::min).unwrap_or(0.0),
        );
    }
}

impl Metrics {
    /// The latest fleet of one resource: its counts and its listed instances' usage.
    pub fn record_fleet(
        &self,
        uid: &str,
        fleet: &salad_sd_api::FleetStatus,
        instances: &[saladcloud::model::ContainerGroupInstance],
    ) {
        use saladcloud::model::InstanceState;
        let mut sample = FleetSample::default();
        for g in &fleet.groups {
            let c = &g.counts;
            for (i, n) in [
                c.allocating,
                c.downloading,
                c.creating,
                c.running,
                c.stopping,
                c.ready,
            ]
            .into_iter()
            .enumerate()
            {
                sample.counts[i] += n as i64;
            }
        }
        for i in instances {
            match i.state {
                InstanceState::Running => {
                    sample.cpu.extend(i.cpu_percent);
                    sample.memory_mb.extend(i.memory_usage_mb);
                }
                InstanceState::Downloading => {
                    sample.progress.push(i.pulling_progress.unwrap_or(0.0));
                }
                _ => {}
            }
        }
        // Not listed this time (steady state): keep the usage last seen with the new counts.
        let mut samples = self.fleet.samples.lock().unwrap();
        if instances.is_empty()
            && let Some(old) = samples.get(uid)
        {
            sample.cpu = old.cpu.clone();
            sample.memory_mb = old.memory_mb.clone();
        }
        samples.insert(uid.to_string(), sample);
        drop(samples);
        self.fleet.publish();
    }

    /// Forget a resource's fleet (deleted).
    pub fn forget_fleet(&self, uid: &str) {
        self.fleet.samples.lock().unwrap().remove(uid);
        self.fleet.publish();
    }

    /// An Event the engine published: interruptions and reallocations are counted.
    pub fn record_fleet_event(&self, reason: crate::reason::Reason) {
        use crate::reason::Reason;
        match reason {
            Reason::InstanceInterrupted => {
                self.fleet.interruptions.inc();
            }
            Reason::InstanceReallocated => {
                self.fleet
                    .reallocations
                    .get_or_create(&ByLabel {
                        by: "saladcloud".into(),
                    })
                    .inc();
            }
            Reason::SlowNodeReallocated => {
                self.fleet
                    .reallocations
                    .get_or_create(&ByLabel {
                        by: "operator".into(),
                    })
                    .inc();
            }
            _ => {}
        }
    }
}
