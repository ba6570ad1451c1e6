//! Prometheus metrics, prefixed `salad_sd_`. Per-resource values are kept in maps and summed,
//! so the operator's own metrics carry no per-resource label (cardinality stays flat at 1,000
//! resources). The one exception is [`InstanceGauges`]: each instance's CPU, memory and download
//! progress, labelled by resource and a bounded, reused instance *slot* (never by instance id).

#[cfg(test)]
use std::collections::BTreeSet;
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
    instances: InstanceGauges,
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
            instances: InstanceGauges::default(),
            registry: Registry::default(),
        };
        m.fleet.register(&mut registry);
        m.instances.register(&mut registry);
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

/// One group's instances as observe saw them: `None` when they were not listed this time
/// (steady state), so what was last seen of them stands.
pub struct ListedGroup<'a> {
    /// The group's name.
    pub name: &'a str,
    /// Its instances, when listed.
    pub instances: Option<&'a [saladcloud::model::ContainerGroupInstance]>,
}

impl Metrics {
    /// The latest fleet of one resource (`namespace/name`, by uid): its counts, the fleet-wide
    /// usage summaries and the per-instance gauges.
    pub fn record_fleet(
        &self,
        uid: &str,
        resource: (&str, &str),
        fleet: &salad_sd_api::FleetStatus,
        groups: &[ListedGroup<'_>],
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
        let listed = groups.iter().any(|g| g.instances.is_some());
        for i in groups.iter().filter_map(|g| g.instances).flatten() {
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
        if !listed && let Some(old) = samples.get(uid) {
            sample.cpu = old.cpu.clone();
            sample.memory_mb = old.memory_mb.clone();
        }
        samples.insert(uid.to_string(), sample);
        drop(samples);
        self.fleet.publish();
        self.instances.record(uid, resource, groups);
    }

    /// Forget a resource's fleet (deleted): its share of the summaries and every per-instance
    /// series.
    pub fn forget_fleet(&self, uid: &str) {
        self.fleet.samples.lock().unwrap().remove(uid);
        self.fleet.publish();
        self.instances.forget(uid);
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

/// Per-instance series a resource can have at once ([`InstanceGauges`]); instances past it are
/// in the fleet-wide summaries only. SaladCloud allows 500 replicas; status lists 10.
pub const INSTANCE_SLOTS: usize = 100;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    resource_namespace: String,
    resource_name: String,
    slot: String,
}

/// What one instance reports, by state: CPU and memory while running, progress while
/// downloading.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Usage {
    cpu_percent: Option<f64>,
    memory_mb: Option<f64>,
    download_percent: Option<f64>,
}

impl Usage {
    fn of(i: &saladcloud::model::ContainerGroupInstance) -> Self {
        use saladcloud::model::InstanceState;
        match i.state {
            InstanceState::Running => Self {
                cpu_percent: i.cpu_percent,
                memory_mb: i.memory_usage_mb,
                download_percent: None,
            },
            InstanceState::Downloading => Self {
                download_percent: Some(i.pulling_progress.unwrap_or(0.0)),
                ..Self::default()
            },
            _ => Self::default(),
        }
    }
}

/// The instance in a slot.
#[derive(Clone, Debug)]
struct Occupant {
    id: String,
    group: String,
    usage: Usage,
}

/// One resource's slots: index = slot, `None` = free.
#[derive(Default)]
struct ResourceSlots {
    namespace: String,
    name: String,
    slots: Vec<Option<Occupant>>,
}

/// Per-instance CPU, memory and download progress, bounded by design.
///
/// Instance ids churn with every reallocation, interruption and rollout, so a label per id
/// would grow without end in Prometheus. Instead each instance takes the lowest free *slot*
/// (`0` … [`INSTANCE_SLOTS`]` - 1`) of its resource when it is first listed, keeps it while it
/// lives, and frees it when it is no longer listed (its series are removed then); a new
/// instance reuses the slot. So a resource has at most `min(instances, INSTANCE_SLOTS)` series
/// per gauge however many reallocations it goes through, a gauge exists only in the state it
/// describes (CPU and memory while running, progress while downloading), and a deleted resource
/// leaves none. Labels: `resource_namespace`, `resource_name`, `slot` (not `namespace` or
/// `instance`, which Prometheus sets on every scraped series).
#[derive(Default)]
struct InstanceGauges {
    cpu_percent: Family<SlotLabels, Gauge<f64, AtomicU64>>,
    memory_mb: Family<SlotLabels, Gauge<f64, AtomicU64>>,
    download_percent: Family<SlotLabels, Gauge<f64, AtomicU64>>,
    resources: Mutex<HashMap<String, ResourceSlots>>,
}

impl InstanceGauges {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "instance_cpu_percent",
            "CPU use of one running instance (SaladCloud's cpu_percent, updated every minute), by resource and instance slot",
            self.cpu_percent.clone(),
        );
        registry.register(
            "instance_memory_mb",
            "Memory use of one running instance (SaladCloud's memory_usage_mb), by resource and instance slot",
            self.memory_mb.clone(),
        );
        registry.register(
            "instance_download_progress_percent",
            "Image download progress of one downloading instance (pulling_progress), by resource and instance slot",
            self.download_percent.clone(),
        );
    }

    fn families(&self) -> [&Family<SlotLabels, Gauge<f64, AtomicU64>>; 3] {
        [&self.cpu_percent, &self.memory_mb, &self.download_percent]
    }

    fn labels(r: &ResourceSlots, slot: usize) -> SlotLabels {
        SlotLabels {
            resource_namespace: r.namespace.clone(),
            resource_name: r.name.clone(),
            slot: slot.to_string(),
        }
    }

    fn record(&self, uid: &str, (namespace, name): (&str, &str), groups: &[ListedGroup<'_>]) {
        let mut resources = self.resources.lock().unwrap();
        let r = resources
            .entry(uid.to_string())
            .or_insert_with(|| ResourceSlots {
                namespace: namespace.into(),
                name: name.into(),
                slots: Vec::new(),
            });
        let listed = |group: &str| groups.iter().find(|g| g.name == group).map(|g| g.instances);
        // Who stays: instances still listed (with their new usage) and those of groups not
        // listed this time; the rest leave.
        for slot in r.slots.iter_mut() {
            let Some(o) = slot else { continue };
            match listed(&o.group) {
                None => *slot = None,
                Some(None) => {}
                Some(Some(list)) => match list.iter().find(|i| i.id == o.id) {
                    Some(i) => o.usage = Usage::of(i),
                    None => *slot = None,
                },
            }
        }
        // Who comes: listed instances without a slot, by id, into the lowest free slots.
        let mut new: Vec<(&str, &saladcloud::model::ContainerGroupInstance)> = groups
            .iter()
            .filter_map(|g| g.instances.map(|l| (g.name, l)))
            .flat_map(|(g, l)| l.iter().map(move |i| (g, i)))
            .filter(|(g, i)| {
                !r.slots
                    .iter()
                    .flatten()
                    .any(|o| o.id == i.id && o.group == *g)
            })
            .collect();
        new.sort_by(|a, b| a.1.id.cmp(&b.1.id).then_with(|| a.0.cmp(b.0)));
        let mut new = new.into_iter();
        for index in 0..INSTANCE_SLOTS {
            if index == r.slots.len() {
                r.slots.push(None);
            }
            if r.slots[index].is_some() {
                continue;
            }
            let Some((group, i)) = new.next() else { break };
            r.slots[index] = Some(Occupant {
                id: i.id.clone(),
                group: group.to_string(),
                usage: Usage::of(i),
            });
        }
        for index in 0..r.slots.len() {
            let labels = Self::labels(r, index);
            let usage = r.slots[index].as_ref().map(|o| o.usage).unwrap_or_default();
            let values = [usage.cpu_percent, usage.memory_mb, usage.download_percent];
            for (family, value) in self.families().into_iter().zip(values) {
                match value {
                    Some(v) => {
                        family.get_or_create(&labels).set(v);
                    }
                    None => {
                        family.remove(&labels);
                    }
                }
            }
        }
        while r.slots.last().is_some_and(Option::is_none) {
            r.slots.pop();
        }
    }

    fn forget(&self, uid: &str) {
        let Some(r) = self.resources.lock().unwrap().remove(uid) else {
            return;
        };
        for index in 0..r.slots.len() {
            let labels = Self::labels(&r, index);
            for family in self.families() {
                family.remove(&labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saladcloud::model::{ContainerGroupInstance, InstanceState};

    fn inst(id: &str, state: InstanceState, cpu: f64, progress: f64) -> ContainerGroupInstance {
        ContainerGroupInstance {
            id: id.into(),
            machine_id: format!("m-{id}"),
            state,
            update_time: None,
            version: 1,
            ready: Some(true),
            started: Some(true),
            pulling_progress: Some(progress),
            deletion_cost: None,
            cpu_percent: Some(cpu),
            memory_usage_mb: Some(cpu * 100.0),
            memory_usage_percent: None,
        }
    }

    fn record(
        m: &Metrics,
        uid: &str,
        name: &str,
        groups: &[(&str, Option<&[ContainerGroupInstance]>)],
    ) {
        let groups: Vec<ListedGroup<'_>> = groups
            .iter()
            .map(|(name, instances)| ListedGroup {
                name,
                instances: *instances,
            })
            .collect();
        m.record_fleet(
            uid,
            ("ns", name),
            &salad_sd_api::FleetStatus::default(),
            &groups,
        );
    }

    /// The series of one gauge, as `slot=value` of resource `name`, sorted.
    fn series(m: &Metrics, gauge: &str, name: &str) -> Vec<String> {
        let prefix =
            format!("salad_sd_{gauge}{{resource_namespace=\"ns\",resource_name=\"{name}\",slot=\"");
        m.encode()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| rest.replacen("\"} ", "=", 1))
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect()
    }

    #[test]
    fn per_instance_series_appear_update_and_leave_with_the_instance() {
        use InstanceState::{Downloading, Running};
        let m = Metrics::new();
        let first = [
            inst("a", Running, 10.0, 0.0),
            inst("b", Running, 20.0, 0.0),
            inst("c", Downloading, 0.0, 40.0),
        ];
        record(&m, "u1", "sd", &[("g-1", Some(&first))]);
        assert_eq!(
            series(&m, "instance_cpu_percent", "sd"),
            ["0=10.0", "1=20.0"]
        );
        assert_eq!(
            series(&m, "instance_memory_mb", "sd"),
            ["0=1000.0", "1=2000.0"]
        );
        assert_eq!(
            series(&m, "instance_download_progress_percent", "sd"),
            ["2=40.0"],
            "a downloading instance has progress, not usage"
        );

        // A poll later: a uses more, c finished downloading, b went away.
        let second = [
            inst("a", Running, 55.0, 0.0),
            inst("c", Running, 5.0, 100.0),
        ];
        record(&m, "u1", "sd", &[("g-1", Some(&second))]);
        assert_eq!(
            series(&m, "instance_cpu_percent", "sd"),
            ["0=55.0", "2=5.0"],
            "updated in place; b's slot 1 is gone; c keeps slot 2"
        );
        assert!(series(&m, "instance_download_progress_percent", "sd").is_empty());

        // Not listed this time (steady state): the last values stand.
        record(&m, "u1", "sd", &[("g-1", None)]);
        assert_eq!(
            series(&m, "instance_cpu_percent", "sd"),
            ["0=55.0", "2=5.0"]
        );

        // A new instance takes the lowest free slot.
        let third = [
            inst("a", Running, 55.0, 0.0),
            inst("c", Running, 5.0, 0.0),
            inst("d", Running, 1.0, 0.0),
        ];
        record(&m, "u1", "sd", &[("g-1", Some(&third))]);
        assert_eq!(
            series(&m, "instance_cpu_percent", "sd"),
            ["0=55.0", "1=1.0", "2=5.0"]
        );
    }

    #[test]
    fn the_series_stay_bounded_over_many_reallocations() {
        let m = Metrics::new();
        let mut ids: Vec<String> = (0..3).map(|i| format!("i-{i}")).collect();
        for round in 0..1000 {
            // Every round one instance is reallocated: a new id, the others stay.
            ids[round % 3] = format!("r-{round}");
            let list: Vec<ContainerGroupInstance> = ids
                .iter()
                .map(|id| inst(id, InstanceState::Running, round as f64, 0.0))
                .collect();
            record(&m, "u1", "sd", &[("g-1", Some(&list))]);
            let cpu = series(&m, "instance_cpu_percent", "sd");
            assert_eq!(cpu.len(), 3, "round {round}: {cpu:?}");
        }
        let slots: BTreeSet<String> = m
            .encode()
            .lines()
            .filter(|l| l.starts_with("salad_sd_instance_"))
            .map(|l| {
                l.split("slot=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(slots, BTreeSet::from(["0".into(), "1".into(), "2".into()]));
        assert_eq!(
            m.instances.resources.lock().unwrap()["u1"].slots.len(),
            3,
            "no memory grows either"
        );
    }

    #[test]
    fn a_resource_has_at_most_the_cap_of_series() {
        let m = Metrics::new();
        let list: Vec<ContainerGroupInstance> = (0..INSTANCE_SLOTS + 50)
            .map(|i| inst(&format!("i-{i:03}"), InstanceState::Running, 1.0, 0.0))
            .collect();
        record(&m, "u1", "big", &[("g-1", Some(&list))]);
        assert_eq!(
            series(&m, "instance_cpu_percent", "big").len(),
            INSTANCE_SLOTS
        );
        // One leaves: the next in line gets its slot.
        record(&m, "u1", "big", &[("g-1", Some(&list[1..]))]);
        assert_eq!(
            series(&m, "instance_cpu_percent", "big").len(),
            INSTANCE_SLOTS
        );
    }

    #[test]
    fn a_deleted_resource_and_a_gone_group_leave_no_series() {
        use InstanceState::Running;
        let m = Metrics::new();
        let serving = [inst("a", Running, 1.0, 0.0), inst("b", Running, 2.0, 0.0)];
        let rolling = [inst("c", Running, 3.0, 0.0)];
        record(
            &m,
            "u1",
            "one",
            &[("g-1", Some(&serving)), ("g-2", Some(&rolling))],
        );
        record(&m, "u2", "two", &[("g-9", Some(&serving))]);
        assert_eq!(series(&m, "instance_cpu_percent", "one").len(), 3);

        // Only the new group listed, the old one still there: its instances stay.
        record(&m, "u1", "one", &[("g-1", None), ("g-2", Some(&rolling))]);
        assert_eq!(series(&m, "instance_cpu_percent", "one").len(), 3);
        // The rollout done: g-1 is gone, and its instances' series with it.
        record(&m, "u1", "one", &[("g-2", Some(&rolling))]);
        assert_eq!(series(&m, "instance_cpu_percent", "one"), ["2=3.0"]);

        m.forget_fleet("u1");
        let text = m.encode();
        assert!(!text.contains("resource_name=\"one\""), "{text}");
        assert_eq!(
            series(&m, "instance_cpu_percent", "two").len(),
            2,
            "another resource keeps its series"
        );
        assert!(m.instances.resources.lock().unwrap().get("u1").is_none());
    }
}
