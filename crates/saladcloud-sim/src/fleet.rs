//! The fleet model: how fast each node downloads, what the group's system logs and container
//! logs record, the usage an instance reports, and the organization's log query.
//!
//! # Download speed (simulator decision, calibrated to published figures)
//! SaladCloud says an average node needs about 2 minutes per GB in `downloading`
//! (`container-engine/how-to-guides/troubleshooting.mdx`: "more than 2 minutes per GB" marks a
//! slow node), and its 2025 test of 100 instances of a 5.53 GB image (`service-performance.mdx`)
//! had 50 % up by 10 minutes, 80 % by 20, 90 % by 40 and nearly all by about 80. Each node here
//! draws a factor `f` (its minutes per GB over the average node's 2) from a log-normal with median
//! 0.9 and σ = 1.0, capped at 7.25: median 1.8 min/GB (10 min for 5.53 GB), p80 4.2 (23 min),
//! p90 6.5 (36 min), the cap 14.5 min/GB (80 min). The draw is seeded ([`FleetModel::seed`]), so
//! a run is repeatable; a reallocated instance draws a new node.

use std::time::Duration;

use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How instances download, and how much the simulator remembers of what happened.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FleetModel {
    /// Seed of the per-node speed draw.
    pub seed: u64,
    /// Time the average node takes per GB of image (SaladCloud's "about 2 minutes per GB",
    /// scaled to the run's clock). `None` keeps the fixed `Timings::download` for every node.
    #[serde(default, with = "opt_millis")]
    pub download_per_gb: Option<Duration>,
    /// Median of the per-node factor over the average node.
    pub median_factor: f64,
    /// σ of the factor's logarithm.
    pub sigma: f64,
    /// The slowest node's factor.
    pub max_factor: f64,
    /// The first this many nodes of every group are the slowest (`max_factor`) instead of
    /// drawn: a slow node on demand, for demos and tests.
    #[serde(default)]
    pub slow_first_nodes: u32,
    /// Compressed size of every image without an admin-set size (else 2-8 GB by a hash of the
    /// image name).
    #[serde(default)]
    pub image_bytes: Option<u64>,
}

impl Default for FleetModel {
    fn default() -> Self {
        Self {
            seed: 15,
            download_per_gb: None,
            median_factor: 0.9,
            sigma: 1.0,
            max_factor: 7.25,
            slow_first_nodes: 0,
            image_bytes: None,
        }
    }
}

impl FleetModel {
    /// The calibrated model with the average node at `per_gb` per GB.
    pub fn calibrated(per_gb: Duration, seed: u64) -> Self {
        Self {
            seed,
            download_per_gb: Some(per_gb),
            ..Self::default()
        }
    }
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// The seeded node-speed draw.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpeeds {
    model: FleetModel,
    rng: StdRng,
    drawn: u32,
}

impl NodeSpeeds {
    pub fn new(model: FleetModel) -> Self {
        Self {
            model,
            rng: StdRng::seed_from_u64(model.seed),
            drawn: 0,
        }
    }

    /// A new node's factor over the average node.
    pub fn draw(&mut self) -> f64 {
        // Box-Muller: one standard normal from two uniforms.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random_range(0.0..1.0);
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        self.drawn += 1;
        if self.drawn <= self.model.slow_first_nodes {
            return self.model.max_factor;
        }
        (self.model.median_factor * (self.model.sigma * z).exp()).min(self.model.max_factor)
    }

    /// A 16-hex-digit id from the seeded stream (machine and instance ids stay repeatable).
    pub fn uuid(&mut self) -> uuid::Uuid {
        uuid::Uuid::from_u128(self.rng.random::<u128>())
    }

    /// How long a node with `factor` takes to download `bytes`, or `fixed` without a per-GB rate.
    pub fn download_time(&self, factor: f64, bytes: u64, fixed: Duration) -> Duration {
        match self.model.download_per_gb {
            Some(per_gb) => per_gb.mul_f64(factor * bytes as f64 / 1e9),
            None => fixed,
        }
    }
}

/// One entry of `GET …/system-logs` (`SystemLog`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SystemLog {
    pub event_name: &'static str,
    pub event_time: Timestamp,
    pub instance_id: uuid::Uuid,
    pub machine_id: uuid::Uuid,
    pub version: u32,
}

/// Event names of the simulator's system logs, as SaladCloud documents them in
/// `SaladTechnologies/salad-cloud-docs`, `container-engine/explanation/container-groups/system-events.mdx`
/// ("Instance Status System Events" and "Health Probe System Events", last updated January 17,
/// 2025). The controller's copy is `saladcloud::model::system_events`.
pub mod events {
    /// A node was found; the image download begins.
    pub const ALLOCATED: &str = "Instance Allocated";
    /// The image download began.
    pub const DOWNLOADING: &str = "Instance Downloading";
    /// The container runs on the node.
    pub const STARTED: &str = "Instance Running";
    /// The node went away. The document names two kinds, `(Priority)` and `(Node Offline)`; the
    /// simulator's interruption is a node going offline.
    pub const INTERRUPTED: &str = "Instance Interrupted (Node Offline)";
    /// A higher-priority workload took the node (documented; the simulator does not model it).
    pub const INTERRUPTED_PRIORITY: &str = "Instance Interrupted (Priority)";
    /// The instance was moved to a new node through the API (`…/reallocate`).
    pub const REALLOCATED: &str = "Instance Reallocated by User";
    /// SaladCloud moved the instance itself (documented; the simulator does not model it).
    pub const REALLOCATED_BY_PLATFORM: &str = "Instance Reallocated by Platform";
    /// The readiness probe failed: the instance is out of the gateway's rotation.
    pub const READINESS_FAILED: &str = "Instance Not Ready (Readiness Probe Failure)";
    /// The readiness probe passes again.
    pub const READY: &str = "Instance Ready (Readiness Probe Passed)";
}

impl SystemLog {
    pub fn to_json(&self, resources: &Value, gpu_class: &str) -> Value {
        json!({
            "event_name": self.event_name,
            "event_time": self.event_time.to_string(),
            "instance_id": self.instance_id,
            "machine_id": self.machine_id,
            "resource_cpu": resources.get("cpu").and_then(Value::as_u64).map(|c| c.clamp(1, 16)),
            "resource_gpu_class": gpu_class,
            "resource_memory": resources.get("memory").and_then(Value::as_u64).map(|m| m.clamp(1024, 61_440)),
            "resource_storage_amount": resources
                .get("storage_amount")
                .and_then(Value::as_u64)
                .map(|s| s.clamp(1 << 30, 268_435_456_000)),
            "version": self.version.to_string(),
        })
    }
}

/// A container log line (what `POST /organizations/{org}/log-entries` searches).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogLine {
    pub time: Timestamp,
    pub project: String,
    pub group: String,
    pub instance_id: uuid::Uuid,
    pub machine_id: uuid::Uuid,
    pub severity: &'static str,
    pub text: String,
}

/// The `resource.labels` of a `container` log entry, as SaladCloud documents them in
/// `SaladTechnologies/salad-cloud-docs`, `container-engine/reference/log-queries.mdx` ("Resource
/// Types And Labels"): `project_name` and `container_group_name` on every resource type;
/// `container_group_version`, `instance_id` and `machine_id` on `container` and
/// `instance_controller`. (The simulator's lines do not record the group version, so it answers
/// `container_group_version` with nothing; no other label is documented, so none is invented.)
pub mod labels {
    /// The project.
    pub const PROJECT_NAME: &str = "project_name";
    /// The container group.
    pub const CONTAINER_GROUP_NAME: &str = "container_group_name";
    /// One run of the container.
    pub const INSTANCE_ID: &str = "instance_id";
    /// The node.
    pub const MACHINE_ID: &str = "machine_id";
}

impl LogLine {
    fn label(&self, name: &str) -> Option<String> {
        Some(match name {
            labels::PROJECT_NAME => self.project.clone(),
            labels::CONTAINER_GROUP_NAME => self.group.clone(),
            labels::INSTANCE_ID => self.instance_id.to_string(),
            labels::MACHINE_ID => self.machine_id.to_string(),
            _ => return None,
        })
    }

    pub fn to_json(&self, _org: &str) -> Value {
        json!({
            "receive_time": self.time.to_string(),
            "time": self.time.to_string(),
            "severity": self.severity,
            "text_log": self.text,
            "resource": {
                "type": "container",
                "labels": {
                    labels::PROJECT_NAME: self.project,
                    labels::CONTAINER_GROUP_NAME: self.group,
                    labels::INSTANCE_ID: self.instance_id.to_string(),
                    labels::MACHINE_ID: self.machine_id.to_string(),
                },
            },
        })
    }
}

/// One `field op "value"` clause of a log query.
#[derive(Debug, Clone, PartialEq)]
struct Clause {
    field: String,
    op: Op,
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Contains,
}

/// A parsed log query: clauses joined by `and` (the subset of SaladCloud's log query language
/// the simulator answers: `resource.type`, `resource.labels.<name>`, `severity` and `text_log`,
/// with `=`, `!=` and `contains`; an empty query matches everything).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogQuery {
    clauses: Vec<Clause>,
}

impl LogQuery {
    pub fn parse(q: &str) -> Result<Self, String> {
        let mut clauses = Vec::new();
        let mut rest = q.trim();
        while !rest.is_empty() {
            let field_end = rest
                .find(|c: char| c.is_whitespace() || c == '=' || c == '!')
                .ok_or_else(|| format!("expected an operator after `{rest}`"))?;
            let field = rest[..field_end].to_owned();
            rest = rest[field_end..].trim_start();
            let op = if let Some(r) = rest.strip_prefix("!=") {
                rest = r;
                Op::Ne
            } else if let Some(r) = rest.strip_prefix('=') {
                rest = r;
                Op::Eq
            } else if let Some(r) = rest.strip_prefix("contains") {
                rest = r;
                Op::Contains
            } else {
                return Err(format!(
                    "unknown operator after `{field}` (use =, != or contains)"
                ));
            };
            rest = rest.trim_start();
            let Some(r) = rest.strip_prefix('"') else {
                return Err(format!("the value after `{field}` must be a quoted string"));
            };
            let end = r
                .find('"')
                .ok_or_else(|| format!("unterminated string after `{field}`"))?;
            let value = r[..end].to_owned();
            rest = r[end + 1..].trim_start();
            let known = field == "resource.type"
                || field == "severity"
                || field == "text_log"
                || field.starts_with("resource.labels.");
            if !known {
                return Err(format!(
                    "unknown field `{field}` (resource.type, resource.labels.<name>, severity, text_log)"
                ));
            }
            clauses.push(Clause { field, op, value });
            if rest.is_empty() {
                break;
            }
            // `and` or `AND` (the document writes both), then any whitespace (its examples
            // break lines between clauses).
            let lower = rest.to_ascii_lowercase();
            if lower.starts_with("and") && rest[3..].starts_with(char::is_whitespace) {
                rest = rest[3..].trim_start();
            } else {
                return Err(format!(
                    "expected `and` between clauses, found `{}`",
                    rest.chars().take(20).collect::<String>()
                ));
            }
        }
        Ok(Self { clauses })
    }

    pub fn matches(&self, line: &LogLine) -> bool {
        self.clauses.iter().all(|c| {
            let actual = match c.field.as_str() {
                "resource.type" => Some("container".to_owned()),
                "severity" => Some(line.severity.to_owned()),
                "text_log" => Some(line.text.clone()),
                f => f
                    .strip_prefix("resource.labels.")
                    .and_then(|l| line.label(l)),
            };
            match (c.op, actual) {
                (Op::Eq, Some(a)) => a == c.value,
                (Op::Ne, a) => a.as_deref() != Some(c.value.as_str()),
                (Op::Contains, Some(a)) => a.contains(&c.value),
                (_, None) => false,
            }
        })
    }
}

/// A validated `LogEntryQuery`.
#[derive(Debug, Clone)]
pub(crate) struct LogRequest {
    pub start: Timestamp,
    pub end: Timestamp,
    pub query: LogQuery,
    pub page_size: usize,
    pub ascending: bool,
}

/// The spec's `PageSize` (1..100); the docs speak of up to 500 entries a query, the schema the
/// request is validated against says 100.
pub const MAX_PAGE_SIZE: u64 = 100;

/// Validates a `LogEntryQuery` body as the spec does: `start_time`, `end_time` and `query`
/// required, times RFC 3339, `page_size` 1..100 (default 100), `sort_order` `asc`|`desc`
/// (default `desc`), `query` at most 20000 characters; and `start_time` ≤ `end_time`.
pub(crate) fn parse_log_request(body: &Value) -> Result<LogRequest, Vec<String>> {
    let mut errors = Vec::new();
    let Some(o) = body.as_object() else {
        return Err(vec!["body: must be an object".into()]);
    };
    let mut time = |k: &str| match o.get(k) {
        None => {
            errors.push(format!("{k}: required"));
            None
        }
        Some(v) => match v.as_str().map(str::parse::<Timestamp>) {
            Some(Ok(t)) => Some(t),
            _ => {
                errors.push(format!("{k}: must be an RFC 3339 date-time"));
                None
            }
        },
    };
    let start = time("start_time");
    let end = time("end_time");
    let query = match o.get("query") {
        None => {
            errors.push("query: required".into());
            None
        }
        Some(Value::String(q)) if q.chars().count() > 20_000 => {
            errors.push("query: at most 20000 characters".into());
            None
        }
        Some(Value::String(q)) => match LogQuery::parse(q) {
            Ok(q) => Some(q),
            Err(e) => {
                errors.push(format!("query: {e}"));
                None
            }
        },
        Some(_) => {
            errors.push("query: must be a string".into());
            None
        }
    };
    let page_size = match o.get("page_size") {
        None => MAX_PAGE_SIZE,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                errors.push(format!(
                    "page_size: must be an integer between 1 and {MAX_PAGE_SIZE}"
                ));
                MAX_PAGE_SIZE
            }
        },
    };
    let ascending = match o.get("sort_order").map(Value::as_str) {
        None | Some(Some("desc")) => false,
        Some(Some("asc")) => true,
        Some(_) => {
            errors.push("sort_order: must be `asc` or `desc`".into());
            false
        }
    };
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        errors.push("start_time: must not be after end_time".into());
    }
    match (start, end, query) {
        (Some(start), Some(end), Some(query)) if errors.is_empty() => Ok(LogRequest {
            start,
            end,
            query,
            page_size: page_size as usize,
            ascending,
        }),
        _ => Err(errors),
    }
}

/// Usage a running instance reports (updated every minute, as the spec says): a deterministic
/// function of the instance id and the whole minutes it has run, within the group's resources.
pub(crate) fn usage(id: &uuid::Uuid, minutes_running: u64, cpu: u64, memory_mb: u64) -> Value {
    let h = id.as_u128() as u64 ^ minutes_running.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let cpu_percent = 20.0 + (h % 600) as f64 / 10.0; // 20-80 %
    let memory_percent = 40.0 + ((h >> 16) % 400) as f64 / 10.0; // 40-80 %
    let memory_usage_mb = (memory_mb as f64 * memory_percent / 100.0).round();
    let cpu_seconds = (minutes_running * 60) as f64 * cpu as f64 * cpu_percent / 100.0;
    json!({
        "cpu_percent": cpu_percent,
        "cpu_usage": (cpu_percent / 100.0 * 60.0 * cpu as f64).round() as u64,
        "cpu_usage_total": cpu_seconds.round() as u64,
        "memory_usage_mb": memory_usage_mb,
        "memory_usage_percent": memory_percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_speeds_follow_the_published_rollout() {
        // 100 instances of a 5.53 GB image at 2 min/GB on the average node: 50 % by about 10
        // minutes, 90 % by about 40, the last near 80 (service-performance.mdx).
        let mut s = NodeSpeeds::new(FleetModel::calibrated(Duration::from_secs(120), 7));
        let mut minutes: Vec<f64> = (0..2000)
            .map(|_| {
                let f = s_draw(&mut s);
                s.download_time(f, 5_530_000_000, Duration::ZERO)
                    .as_secs_f64()
                    / 60.0
            })
            .collect();
        minutes.sort_by(f64::total_cmp);
        let p = |q: f64| minutes[((minutes.len() as f64 * q) as usize).min(minutes.len() - 1)];
        assert!((8.0..12.5).contains(&p(0.5)), "p50 {}", p(0.5));
        assert!((30.0..45.0).contains(&p(0.9)), "p90 {}", p(0.9));
        assert!(p(1.0) <= 80.5, "max {}", p(1.0));
    }

    fn s_draw(s: &mut NodeSpeeds) -> f64 {
        s.draw()
    }

    #[test]
    fn draws_are_seeded() {
        let a: Vec<f64> = {
            let mut s = NodeSpeeds::new(FleetModel::calibrated(Duration::from_secs(1), 3));
            (0..5).map(|_| s.draw()).collect()
        };
        let b: Vec<f64> = {
            let mut s = NodeSpeeds::new(FleetModel::calibrated(Duration::from_secs(1), 3));
            (0..5).map(|_| s.draw()).collect()
        };
        assert_eq!(a, b);
    }

    #[test]
    fn the_first_nodes_can_be_made_slow() {
        let mut s = NodeSpeeds::new(FleetModel {
            slow_first_nodes: 1,
            ..FleetModel::calibrated(Duration::from_secs(1), 3)
        });
        assert_eq!(s.draw(), 7.25);
        let rest: Vec<f64> = (0..50).map(|_| s.draw()).collect();
        assert!(rest.iter().any(|f| *f < 7.25), "then drawn as usual");
    }

    #[test]
    fn log_requests_are_validated_as_the_spec_says() {
        let ok = json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "query": ""});
        assert!(parse_log_request(&ok).is_ok());
        let cases = [
            (
                json!({"end_time": "2026-01-02T00:00:00Z", "query": ""}),
                "start_time: required",
            ),
            (
                json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z"}),
                "query: required",
            ),
            (
                json!({"start_time": "yesterday", "end_time": "2026-01-02T00:00:00Z", "query": ""}),
                "RFC 3339",
            ),
            (
                json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "query": "", "page_size": 501}),
                "page_size",
            ),
            (
                json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "query": "", "page_size": 0}),
                "page_size",
            ),
            (
                json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "query": "", "sort_order": "up"}),
                "sort_order",
            ),
            (
                json!({"start_time": "2026-01-03T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "query": ""}),
                "not be after",
            ),
            (
                json!({"start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-02T00:00:00Z", "query": "resource.labels.x ~ \"y\""}),
                "operator",
            ),
        ];
        for (body, want) in cases {
            let errors = parse_log_request(&body).expect_err(want);
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{want}: {errors:?}"
            );
        }
    }

    #[test]
    fn queries_match_labels_and_text() {
        let line = LogLine {
            time: Timestamp::UNIX_EPOCH,
            project: "p".into(),
            group: "g".into(),
            instance_id: uuid::Uuid::from_u128(1),
            machine_id: uuid::Uuid::from_u128(2),
            severity: "info",
            text: "Model loaded in 3.2s".into(),
        };
        let q = |s: &str| LogQuery::parse(s).unwrap().matches(&line);
        assert!(q(""));
        assert!(q(
            r#"resource.type = "container" and resource.labels.container_group_name = "g""#
        ));
        assert!(!q(r#"resource.labels.container_group_name = "h""#));
        assert!(q(r#"text_log contains "loaded" and severity != "error""#));
        assert!(!q(r#"resource.labels.nothing = "x""#));
    }

    /// The labels and the example of `log-queries.mdx` (SaladTechnologies/salad-cloud-docs).
    #[test]
    fn queries_use_the_documented_labels() {
        let id = uuid::Uuid::from_u128(1);
        let line = LogLine {
            time: Timestamp::UNIX_EPOCH,
            project: "default".into(),
            group: "my-cg".into(),
            instance_id: id,
            machine_id: uuid::Uuid::from_u128(2),
            severity: "error",
            text: "boom".into(),
        };
        let q = |s: &str| LogQuery::parse(s).unwrap().matches(&line);
        assert!(q(
            "resource.type = \"container\" and\nresource.labels.project_name = \"default\" and\nresource.labels.container_group_name = \"my-cg\""
        ));
        assert!(q(
            r#"severity = "error" AND resource.labels.container_group_name = "my-cg""#
        ));
        assert!(q(&format!(r#"resource.labels.instance_id = "{id}""#)));
        assert!(q(&format!(
            r#"resource.labels.machine_id = "{}""#,
            uuid::Uuid::from_u128(2)
        )));
        assert!(
            !q(&format!(
                r#"resource.labels.container_group_instance_id = "{id}""#
            )),
            "not a label SaladCloud documents"
        );
        let json = line.to_json("acme");
        let mut keys: Vec<&str> = json["resource"]["labels"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "container_group_name",
                "instance_id",
                "machine_id",
                "project_name"
            ]
        );
    }

    #[test]
    fn system_log_names_are_the_documented_ones() {
        for name in [
            events::ALLOCATED,
            events::DOWNLOADING,
            events::STARTED,
            events::INTERRUPTED,
            events::INTERRUPTED_PRIORITY,
            events::REALLOCATED,
            events::REALLOCATED_BY_PLATFORM,
            events::READINESS_FAILED,
            events::READY,
        ] {
            assert!(name.starts_with("Instance "), "{name}");
        }
        assert_eq!(events::STARTED, "Instance Running");
        assert_eq!(events::REALLOCATED, "Instance Reallocated by User");
    }
}
