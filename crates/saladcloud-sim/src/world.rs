//! The simulated SaladCloud state and its lifecycle.
//!
//! Time is computed lazily: every access first calls [`World::advance`], which replays every
//! transition whose deadline has passed. Deadlines chain from the previous transition's
//! deadline (not from the moment somebody looked), so the observed lifecycle does not depend on
//! how often clients poll.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::{Faults, GpuClass, Timings};
use crate::fleet::{self, FleetModel, LogLine, NodeSpeeds, SystemLog, events};
use crate::validate;

mod queues;

/// An error answered as ProblemDetails.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {title}: {detail}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// ProblemDetails `type`.
    pub kind: String,
    /// ProblemDetails `title`.
    pub title: String,
    /// ProblemDetails `detail`.
    pub detail: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind: kind.to_owned(),
            title: title.to_owned(),
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, "about:blank", "Bad Request", detail)
    }

    pub(crate) fn validation(errors: validate::Errors) -> Self {
        let mut detail = format!(
            "The request body is invalid ({} problem(s)): {}",
            errors.0.len(),
            errors.0.join("; ")
        );
        if detail.len() > 2000 {
            let mut cut = 1990;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push_str(" …");
        }
        Self::new(400, "about:blank", "Bad Request", detail)
    }

    pub(crate) fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "about:blank", "Not Found", detail)
    }

    /// The ProblemDetails body.
    pub fn body(&self) -> Value {
        json!({"type": self.kind, "title": self.title, "status": self.status, "detail": self.detail})
    }
}

/// Instance states of the spec (`ContainerGroupInstance.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InstState {
    Allocating,
    Downloading,
    Creating,
    Running,
    Stopping,
}

impl InstState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Allocating => "allocating",
            Self::Downloading => "downloading",
            Self::Creating => "creating",
            Self::Running => "running",
            Self::Stopping => "stopping",
        }
    }
}

#[derive(Debug, Clone)]
struct Instance {
    id: Uuid,
    machine_id: Uuid,
    state: InstState,
    /// When the current state began.
    since: Instant,
    version: u32,
    deletion_cost: u32,
    update_time: Timestamp,
    /// This node's download time over the average node's.
    factor: f64,
    /// How long this node takes to download the group's image.
    download: Duration,
    /// Failing its readiness probe (admin knob).
    unready: bool,
    /// The startup and readiness passes were logged.
    logged_started: bool,
    logged_ready: bool,
}

/// Maps the run's clock (real or virtual instants) to wall-clock timestamps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    at: Instant,
    ts: Timestamp,
}

impl Clock {
    pub fn new(at: Instant, ts: Timestamp) -> Self {
        Self { at, ts }
    }

    /// The timestamp of `i`.
    pub fn ts(&self, i: Instant) -> Timestamp {
        let d = i.saturating_duration_since(self.at);
        self.ts
            .checked_add(jiff::SignedDuration::try_from(d).unwrap_or_default())
            .unwrap_or(self.ts)
    }
}

/// What the fleet remembers per group: its node draws, system logs and container log lines.
#[derive(Debug, Clone)]
struct FleetLog {
    speeds: NodeSpeeds,
    system: Vec<SystemLog>,
    lines: Vec<LogLine>,
}

const MAX_SYSTEM_LOGS: usize = 1000;
const MAX_LOG_LINES: usize = 5000;

#[derive(Debug, Clone)]
struct Prepare {
    until: Instant,
    image: String,
}

#[derive(Debug, Clone)]
struct Group {
    id: Uuid,
    org: String,
    project: String,
    name: String,
    /// The create-shaped definition (without `registry_authentication`).
    spec: Value,
    /// Kept apart because it is never returned.
    registry_auth: Option<Value>,
    dns: Option<String>,
    version: u32,
    /// The version that instances are (re)started with.
    deployed_version: u32,
    create_time: Timestamp,
    update_time: Timestamp,
    start_time: Timestamp,
    finish_time: Timestamp,
    /// Desired running (autostart or `start`), cleared by `stop`.
    started: bool,
    prepare: Option<Prepare>,
    prepared_once: bool,
    failed: Option<String>,
    deleting: Option<Instant>,
    /// A new version is being rolled out (cleared once every instance runs it).
    rollout: bool,
    instances: Vec<Instance>,
    /// Compressed size of the image the instances download.
    image_bytes: u64,
    clock: Clock,
    fleet: FleetLog,
    /// The queue autoscaler's last look.
    autoscaled_at: Option<Instant>,
    /// Scheduled scaling's last look.
    schedule_checked: Option<Instant>,
}

#[derive(Debug, Default)]
struct Project {
    groups: BTreeMap<String, Group>,
    used_names: BTreeSet<String>,
}

/// Request statistics.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Stats {
    /// Requests by operation (`operationId` of the spec, or `admin`/`gateway`/`unknown`) and
    /// HTTP status (`"0"` = connection dropped by a fault).
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Total API requests seen.
    pub total_requests: u64,
    /// Requests answered 429 (rate limit or forced burst).
    pub rate_limited: u64,
    /// Container groups that currently exist (including ones being deleted).
    pub live_groups: usize,
    /// Every container group name ever used, as `org/project/name`.
    pub names_ever_used: Vec<String>,
}

/// What the gateway needs to know about a group behind an access domain.
#[derive(Debug, Clone)]
pub(crate) struct GatewayTarget {
    pub name: String,
    pub auth: bool,
    pub ready_instances: usize,
    pub image: String,
    /// The group runs comfyui-api (see [`serves_comfyui_api`]).
    pub comfyui_api: bool,
}

/// Whether a group's container looks like comfyui-api to the fake gateway: a probe on
/// comfyui-api's `/ready` or `/health` (the simulator cannot look inside the image).
fn serves_comfyui_api(spec: &serde_json::Value) -> bool {
    ["startup_probe", "readiness_probe", "liveness_probe"]
        .iter()
        .any(|p| {
            matches!(
                spec[p]["http"]["path"].as_str(),
                Some("/ready") | Some("/health")
            )
        })
}

pub(crate) struct World {
    pub timings: Timings,
    pub gpu_classes: Vec<GpuClass>,
    pub suffix: String,
    pub quota: u32,
    pub faults: Faults,
    projects: BTreeMap<(String, String), Project>,
    pub stats: Stats,
    created: Timestamp,
    pub fleet_model: FleetModel,
    /// Image sizes set by the admin (by image reference substring), else a hash of the name.
    pub image_sizes: Vec<(String, u64)>,
    /// `max_container_group_reallocations_per_minute` of every organization.
    pub reallocations_per_minute: u32,
    /// Reallocations through the API in the last minute, per organization.
    reallocations: BTreeMap<String, Vec<Instant>>,
    pub clock: Clock,
    /// Job queues, per organization and project.
    queues: BTreeMap<(String, String), BTreeMap<String, queues::Queue>>,
    /// How long an instance's server takes to answer one job.
    pub job_seconds: Duration,
}

fn image_hash(image: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(image.as_bytes())))
}

fn image_size(image: &str) -> u64 {
    let d = Sha256::digest(image.as_bytes());
    let n = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    2_000_000_000 + n % 6_000_000_000
}

fn image_bytes_of(sizes: &[(String, u64)], image: &str, default: Option<u64>) -> u64 {
    sizes
        .iter()
        .find(|(pattern, _)| !pattern.is_empty() && image.contains(pattern.as_str()))
        .map(|(_, bytes)| *bytes)
        .or(default)
        .unwrap_or_else(|| image_size(image))
}

fn random_dns_label() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Apply an RFC 7396 merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object ensured above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Drop the `null`s that mean "no change" in a `ContainerGroupPatch` (rather than "remove").
fn strip_noop_nulls(patch: &mut Value) {
    let Some(o) = patch.as_object_mut() else {
        return;
    };
    if o.get("replicas").is_some_and(Value::is_null) {
        o.remove("replicas");
    }
    if o.get("container").is_some_and(Value::is_null) {
        o.remove("container");
    }
    if let Some(c) = o.get_mut("container").and_then(Value::as_object_mut) {
        if c.get("image").is_some_and(Value::is_null) {
            c.remove("image");
        }
        if c.get("resources").is_some_and(Value::is_null) {
            c.remove("resources");
        }
        if let Some(r) = c.get_mut("resources").and_then(Value::as_object_mut) {
            r.retain(|_, v| !v.is_null());
        }
        if c.get("command").is_some_and(Value::is_null) {
            // `command: null` means "no override", stored as an explicit null.
            c.insert("command".to_owned(), json!([]));
        }
    }
    if let Some(n) = o.get_mut("networking").and_then(Value::as_object_mut) {
        n.retain(|_, v| !v.is_null());
    }
}

const PROTOTYPE_KEYS: &[&str] = &[
    "autostart_policy",
    "container",
    "country_codes",
    "display_name",
    "liveness_probe",
    "name",
    "networking",
    "queue_autoscaler",
    "queue_connection",
    "readiness_probe",
    "replicas",
    "restart_policy",
    "scaling-actions",
    "scheduled-scaling-enabled",
    "startup_probe",
];

const CONTAINER_KEYS: &[&str] = &[
    "image",
    "resources",
    "command",
    "environment_variables",
    "priority",
    "image_caching",
    "logging",
];

/// Keep only spec fields (unknown fields are ignored, like a schema without
/// `additionalProperties: false`).
fn normalize_spec(body: &Value) -> Value {
    let mut out = Map::new();
    if let Some(o) = body.as_object() {
        for k in PROTOTYPE_KEYS {
            if let Some(v) = o.get(*k) {
                out.insert((*k).to_owned(), v.clone());
            }
        }
    }
    if let Some(Value::Object(c)) = out.get_mut("container") {
        c.retain(|k, _| CONTAINER_KEYS.contains(&k.as_str()));
    }
    // An empty command list and `null` mean the same: no override.
    if let Some(Value::Object(c)) = out.get_mut("container")
        && c.get("command")
            .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
    {
        c.insert("command".to_owned(), Value::Null);
    }
    Value::Object(out)
}

fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

impl Group {
    fn replicas(&self) -> u32 {
        self.spec["replicas"].as_u64().unwrap_or(0) as u32
    }

    /// `container.priority`, or when unset `high` for GPU groups and `batch` without a GPU
    /// (the spec's enum has no null value even though the type allows it).
    fn effective_priority(&self) -> &str {
        let c = &self.spec["container"];
        c.get("priority")
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                let gpus = c["resources"]["gpu_classes"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty());
                if gpus { "high" } else { "batch" }
            })
    }

    fn has_probe(&self, name: &str) -> bool {
        self.spec.get(name).is_some_and(|v| !v.is_null())
    }

    fn image(&self) -> String {
        self.spec["container"]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn active(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(|i| i.state != InstState::Stopping)
    }

    fn consumes_quota(&self) -> bool {
        self.started && self.failed.is_none() && self.deleting.is_none()
    }

    fn running_since(&self, i: &Instance) -> Option<Instant> {
        (i.state == InstState::Running).then_some(i.since)
    }

    fn started_at(&self, i: &Instance, t: &Timings) -> Option<Instant> {
        let since = self.running_since(i)?;
        Some(if self.has_probe("startup_probe") {
            since + t.startup
        } else {
            since
        })
    }

    fn ready_at(&self, i: &Instance, t: &Timings) -> Option<Instant> {
        let started = self.started_at(i, t)?;
        Some(if self.has_probe("readiness_probe") {
            started + t.readiness
        } else {
            started
        })
    }

    fn is_ready(&self, i: &Instance, t: &Timings, now: Instant) -> bool {
        !i.unready && self.ready_at(i, t).is_some_and(|r| now >= r)
    }

    /// Container log lines for the startup and readiness passes of a running instance, at the
    /// moment they happened.
    fn log_probes(&mut self, idx: usize, now: Instant, t: &Timings) {
        let i = &self.instances[idx];
        let (started, ready) = (self.started_at(i, t), self.ready_at(i, t));
        if let Some(at) = started.filter(|s| now >= *s && !i.logged_started) {
            self.instances[idx].logged_started = true;
            self.log_line(idx, at, "info", "model loaded; startup probe passed".into());
        }
        let i = &self.instances[idx];
        if let Some(at) = ready.filter(|r| now >= *r && !i.logged_ready && !i.unready) {
            self.instances[idx].logged_ready = true;
            self.log_line(idx, at, "info", "ready: serving on the gateway".into());
        }
    }

    fn pending_change(&self) -> bool {
        self.rollout && self.failed.is_none()
    }

    fn status(&self) -> &'static str {
        if self.failed.is_some() {
            "failed"
        } else if !self.prepared_once {
            "pending"
        } else if self.deleting.is_some() || !self.started {
            "stopped"
        } else if self.active().any(|i| i.state == InstState::Running) {
            "running"
        } else {
            "deploying"
        }
    }

    fn description(&self, t: &Timings, now: Instant) -> String {
        if let Some(f) = &self.failed {
            return f.clone();
        }
        if self.deleting.is_some() {
            return "The container group is being deleted".to_owned();
        }
        if let Some(p) = &self.prepare {
            return format!("Preparing the container image {}", p.image);
        }
        if !self.started {
            return "The container group is stopped".to_owned();
        }
        let running = self
            .active()
            .filter(|i| i.state == InstState::Running)
            .count();
        let ready = self.active().filter(|i| self.is_ready(i, t, now)).count();
        format!(
            "{running} of {} instance(s) running, {ready} ready",
            self.replicas()
        )
    }

    fn new_instance(&mut self, at: Instant) -> Instance {
        let factor = self.fleet.speeds.draw();
        Instance {
            id: self.fleet.speeds.uuid(),
            machine_id: self.fleet.speeds.uuid(),
            state: InstState::Allocating,
            since: at,
            version: self.deployed_version,
            deletion_cost: 0,
            update_time: self.clock.ts(at),
            factor,
            download: Duration::ZERO,
            unready: false,
            logged_started: false,
            logged_ready: false,
        }
    }

    fn system_log(&mut self, name: &'static str, idx: usize, at: Instant) {
        let i = &self.instances[idx];
        let entry = SystemLog {
            event_name: name,
            event_time: self.clock.ts(at),
            instance_id: i.id,
            machine_id: i.machine_id,
            version: i.version,
        };
        self.fleet.system.push(entry);
        if self.fleet.system.len() > MAX_SYSTEM_LOGS {
            self.fleet.system.remove(0);
        }
    }

    fn log_line(&mut self, idx: usize, at: Instant, severity: &'static str, text: String) {
        let i = &self.instances[idx];
        let line = LogLine {
            time: self.clock.ts(at),
            project: self.project.clone(),
            group: self.name.clone(),
            instance_id: i.id,
            machine_id: i.machine_id,
            severity,
            text,
        };
        self.fleet.lines.push(line);
        if self.fleet.lines.len() > MAX_LOG_LINES {
            self.fleet.lines.remove(0);
        }
    }

    /// Moves instance `idx` to a new node: back to `allocating`, a new machine and speed.
    fn reallocate(&mut self, idx: usize, at: Instant) {
        let factor = self.fleet.speeds.draw();
        let machine = self.fleet.speeds.uuid();
        self.system_log(events::REALLOCATED, idx, at);
        let ts = self.clock.ts(at);
        let inst = &mut self.instances[idx];
        inst.state = InstState::Allocating;
        inst.machine_id = machine;
        inst.factor = factor;
        inst.since = at;
        inst.update_time = ts;
        inst.unready = false;
        inst.logged_started = false;
        inst.logged_ready = false;
    }

    /// Instance `idx` starts downloading the image at `at`.
    fn begin_download(&mut self, idx: usize, at: Instant, t: &Timings) {
        let bytes = self.image_bytes;
        let inst = &mut self.instances[idx];
        inst.download = self
            .fleet
            .speeds
            .download_time(inst.factor, bytes, t.download);
        inst.state = InstState::Downloading;
        inst.since = at;
        inst.update_time = self.clock.ts(at);
        self.system_log(events::DOWNLOADING, idx, at);
    }

    /// Add or remove instances so that the active count equals `replicas`.
    fn reconcile_replicas(&mut self, at: Instant) {
        if !self.started || !self.prepared_once || self.failed.is_some() || self.deleting.is_some()
        {
            return;
        }
        let want = self.replicas() as usize;
        let active = self.active().count();
        if active < want {
            for _ in active..want {
                let inst = self.new_instance(at);
                self.instances.push(inst);
            }
        } else if active > want {
            // Remove instances that are not running first, then the cheapest to delete.
            let mut order: Vec<usize> = (0..self.instances.len())
                .filter(|i| self.instances[*i].state != InstState::Stopping)
                .collect();
            order.sort_by_key(|i| {
                let inst = &self.instances[*i];
                (inst.state == InstState::Running, inst.deletion_cost)
            });
            for idx in order.into_iter().take(active - want) {
                let inst = &mut self.instances[idx];
                inst.state = InstState::Stopping;
                inst.since = at;
                inst.update_time = Timestamp::now();
            }
        }
    }

    /// Stops the group: no longer started, finish time now, every instance stopping.
    fn halt(&mut self, at: Instant) {
        self.started = false;
        self.finish_time = self.clock.ts(at);
        self.update_time = self.finish_time;
        self.stop_all(at);
    }

    fn stop_all(&mut self, at: Instant) {
        let ts = self.clock.ts(at);
        for inst in &mut self.instances {
            if inst.state != InstState::Stopping {
                inst.state = InstState::Stopping;
                inst.since = at;
                inst.update_time = ts;
            }
        }
    }

    /// Restart every active instance on the deployed version, all at once.
    fn restart_all(&mut self, at: Instant, redownload: bool, t: &Timings) {
        let v = self.deployed_version;
        let ts = self.clock.ts(at);
        for idx in 0..self.instances.len() {
            let inst = &mut self.instances[idx];
            match inst.state {
                InstState::Stopping => continue,
                InstState::Allocating => {}
                InstState::Downloading | InstState::Creating | InstState::Running if redownload => {
                    inst.version = v;
                    self.begin_download(idx, at, t);
                    continue;
                }
                InstState::Downloading => {}
                InstState::Creating | InstState::Running => {
                    inst.state = InstState::Creating;
                    inst.since = at;
                    inst.logged_started = false;
                    inst.logged_ready = false;
                }
            }
            inst.version = v;
            inst.update_time = ts;
        }
    }

    fn advance(&mut self, now: Instant, t: &Timings, faults: &Faults) {
        if let Some(p) = self.prepare.clone()
            && now >= p.until
        {
            self.prepare = None;
            if let Some(pattern) = faults
                .failing_images
                .iter()
                .find(|f| !f.is_empty() && p.image.contains(f.as_str()))
            {
                self.failed = Some(format!(
                    "Failed to pull the container image {}: the registry answered 'manifest unknown' (image matched the failing pattern `{pattern}`). Check the image name, tag and registry credentials, then update container.image.",
                    p.image
                ));
                self.stop_all(p.until);
            } else {
                let first = !self.prepared_once;
                self.prepared_once = true;
                self.deployed_version = self.version;
                if !first {
                    self.restart_all(p.until, true, t);
                }
                self.reconcile_replicas(p.until);
            }
        }
        for idx in 0..self.instances.len() {
            loop {
                let inst = &self.instances[idx];
                let (dur, next) = match inst.state {
                    InstState::Allocating => (t.allocate, InstState::Downloading),
                    InstState::Downloading => (inst.download, InstState::Creating),
                    InstState::Creating => (t.create, InstState::Running),
                    InstState::Running | InstState::Stopping => break,
                };
                let deadline = inst.since + dur;
                if now < deadline {
                    break;
                }
                if next == InstState::Downloading {
                    self.system_log(events::ALLOCATED, idx, deadline);
                    self.begin_download(idx, deadline, t);
                    continue;
                }
                let ts = self.clock.ts(deadline);
                let inst = &mut self.instances[idx];
                inst.state = next;
                inst.since = deadline;
                inst.update_time = ts;
                if next == InstState::Running {
                    self.system_log(events::STARTED, idx, deadline);
                    let image = self.image();
                    self.log_line(
                        idx,
                        deadline,
                        "info",
                        format!("starting server from {image}"),
                    );
                }
            }
            self.log_probes(idx, now, t);
        }
        self.instances
            .retain(|i| !(i.state == InstState::Stopping && now >= i.since + t.stop));
        self.reconcile_replicas(now);
        if self.rollout
            && self.prepare.is_none()
            && self
                .active()
                .all(|i| i.version == self.version && i.state == InstState::Running)
        {
            self.rollout = false;
        }
    }

    fn instance_json(&self, i: &Instance, t: &Timings, now: Instant) -> Value {
        let mut o = json!({
            "id": i.id,
            "machine_id": i.machine_id,
            "state": i.state.as_str(),
            "update_time": rfc3339(i.update_time),
            "version": i.version,
            "deletion_cost": i.deletion_cost,
            "started": self.started_at(i, t).is_some_and(|s| now >= s),
            "ready": self.is_ready(i, t, now),
        });
        if i.state == InstState::Downloading {
            let elapsed = now.saturating_duration_since(i.since).as_secs_f64();
            let total = i.download.as_secs_f64().max(0.001);
            let progress = (elapsed / total * 100.0).clamp(0.0, 100.0);
            o["pulling_progress"] = json!((progress * 10.0).round() / 10.0);
        }
        if i.state == InstState::Running {
            let minutes = now.saturating_duration_since(i.since).as_secs() / 60;
            let r = &self.spec["container"]["resources"];
            let usage = fleet::usage(
                &i.id,
                minutes,
                r["cpu"].as_u64().unwrap_or(1),
                r["memory"].as_u64().unwrap_or(1024),
            );
            if let (Value::Object(o), Value::Object(u)) = (&mut o, usage) {
                o.extend(u);
            }
        }
        o
    }

    fn to_json(&self, t: &Timings, now: Instant) -> Value {
        let spec = &self.spec;
        let c = &spec["container"];
        let image = self.image();
        let mut resources = c["resources"].clone();
        if resources.get("gpu_classes").is_none() {
            resources["gpu_classes"] = json!([]);
        }
        if resources.get("shm_size").is_none() {
            resources["shm_size"] = json!(64);
        }
        let mut container = json!({
            "image": image,
            "resources": resources,
            "command": c.get("command").cloned().unwrap_or(Value::Null),
            "environment_variables": c.get("environment_variables").cloned().unwrap_or_else(|| json!({})),
            "hash": image_hash(&image),
            "size": self.image_bytes,
        });
        for k in ["image_caching", "logging"] {
            if let Some(v) = c.get(k) {
                container[k] = v.clone();
            }
        }
        let count = |s: &[InstState]| {
            self.instances
                .iter()
                .filter(|i| s.contains(&i.state))
                .count()
        };
        let mut o = json!({
            "id": self.id,
            "name": self.name,
            "display_name": spec.get("display_name").cloned().unwrap_or_else(|| json!(self.name)),
            "organization_name": self.org,
            "project_name": self.project,
            "container": container,
            "autostart_policy": spec["autostart_policy"],
            "country_codes": spec.get("country_codes").cloned().unwrap_or_else(|| json!([])),
            "create_time": rfc3339(self.create_time),
            "update_time": rfc3339(self.update_time),
            "current_state": {
                "status": self.status(),
                "description": self.description(t, now),
                "start_time": rfc3339(self.start_time),
                "finish_time": rfc3339(self.finish_time),
                "instance_status_counts": {
                    "allocating_count": count(&[InstState::Allocating]),
                    "creating_count": count(&[InstState::Downloading, InstState::Creating]),
                    "running_count": count(&[InstState::Running]),
                    "stopping_count": count(&[InstState::Stopping]),
                },
            },
            "pending_change": self.pending_change(),
            "priority": self.effective_priority(),
            "replicas": self.replicas(),
            "restart_policy": spec["restart_policy"],
            "version": self.version,
            "scheduled-scaling-enabled": spec.get("scheduled-scaling-enabled").cloned().unwrap_or(json!(false)),
            "scaling-actions": spec.get("scaling-actions").cloned().unwrap_or_else(|| json!([])),
        });
        if let (Some(n), Some(dns)) = (spec.get("networking"), &self.dns) {
            o["networking"] = json!({
                "auth": n["auth"],
                "dns": dns,
                "port": n["port"],
                "protocol": n["protocol"],
                "load_balancer": n.get("load_balancer").cloned().unwrap_or(json!("round_robin")),
                "single_connection_limit": n.get("single_connection_limit").cloned().unwrap_or(json!(false)),
                "client_request_timeout": n.get("client_request_timeout").cloned().unwrap_or(json!(100000)),
                "server_response_timeout": n.get("server_response_timeout").cloned().unwrap_or(json!(100000)),
            });
        }
        for k in [
            "startup_probe",
            "liveness_probe",
            "readiness_probe",
            "queue_connection",
            "queue_autoscaler",
        ] {
            if let Some(v) = spec.get(k).filter(|v| !v.is_null()) {
                o[k] = v.clone();
            }
        }
        o
    }

    /// The parts of the read model whose change makes a new container version.
    fn version_fingerprint(&self) -> Value {
        let c = &self.spec["container"];
        let mut resources = c["resources"].clone();
        if resources.get("gpu_classes").is_none() {
            resources["gpu_classes"] = json!([]);
        }
        if resources.get("shm_size").is_none() {
            resources["shm_size"] = json!(64);
        }
        json!({
            "image": c["image"],
            "command": c.get("command").cloned().unwrap_or(Value::Null),
            "env": c.get("environment_variables").cloned().unwrap_or_else(|| json!({})),
            "resources": resources,
            "priority": self.effective_priority(),
            "logging": c.get("logging").cloned().unwrap_or(Value::Null),
            "startup_probe": self.spec.get("startup_probe").cloned().unwrap_or(Value::Null),
            "liveness_probe": self.spec.get("liveness_probe").cloned().unwrap_or(Value::Null),
            "readiness_probe": self.spec.get("readiness_probe").cloned().unwrap_or(Value::Null),
            "port": self.spec.get("networking").map(|n| n["port"].clone()).unwrap_or(Value::Null),
            "registry_auth": self.registry_auth.clone().unwrap_or(Value::Null),
        })
    }
}

/// Which instance action to apply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum InstanceAction {
    Reallocate,
    Recreate,
    Restart,
}

impl World {
    pub fn new(
        timings: Timings,
        gpu_classes: Vec<GpuClass>,
        suffix: String,
        quota: u32,
        faults: Faults,
    ) -> Self {
        Self {
            timings,
            gpu_classes,
            suffix,
            quota,
            faults,
            projects: BTreeMap::new(),
            stats: Stats::default(),
            created: Timestamp::now(),
            fleet_model: FleetModel::default(),
            image_sizes: Vec::new(),
            reallocations_per_minute: 10,
            reallocations: BTreeMap::new(),
            clock: Clock::new(Instant::now(), Timestamp::now()),
            queues: BTreeMap::new(),
            job_seconds: Duration::from_secs(5),
        }
    }

    /// The compressed size of `image`: set by the admin, else 2-8 GB by a hash of the name.
    fn image_bytes(&self, image: &str) -> u64 {
        image_bytes_of(&self.image_sizes, image, self.fleet_model.image_bytes)
    }

    /// The seeded node speeds of a new group (its own stream, so groups do not disturb each
    /// other's draws).
    fn speeds_for(&self, org: &str, project: &str, name: &str) -> NodeSpeeds {
        let d = Sha256::digest(format!("{org}/{project}/{name}").as_bytes());
        let salt = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        NodeSpeeds::new(FleetModel {
            seed: self.fleet_model.seed ^ salt,
            ..self.fleet_model
        })
    }

    /// Replay all transitions up to `now` and drop groups whose deletion finished.
    pub fn advance(&mut self, now: Instant) {
        let t = self.timings;
        for p in self.projects.values_mut() {
            p.groups.retain(|_, g| g.deleting.is_none_or(|d| now < d));
            for g in p.groups.values_mut() {
                g.advance(now, &t, &self.faults);
            }
        }
        self.advance_queues(now);
    }

    fn gpu_ids(&self) -> Vec<String> {
        self.gpu_classes.iter().map(|g| g.id.clone()).collect()
    }

    fn quota_used(&self, org: &str) -> u32 {
        self.projects
            .iter()
            .filter(|((o, _), _)| o == org)
            .flat_map(|(_, p)| p.groups.values())
            .filter(|g| g.consumes_quota())
            .map(Group::replicas)
            .sum()
    }

    fn check_quota(&self, org: &str, extra: u32) -> Result<(), ApiError> {
        let used = self.quota_used(org);
        if used + extra > self.quota {
            return Err(ApiError::new(
                400,
                "quota_exceeded",
                "Quota Exceeded",
                format!(
                    "This change needs {extra} more container replica(s) but organization `{org}` uses {used} of its quota of {}. Lower replicas, stop another container group, or ask SaladCloud support for a higher quota.",
                    self.quota
                ),
            ));
        }
        Ok(())
    }

    fn group(&self, org: &str, project: &str, name: &str) -> Result<&Group, ApiError> {
        self.projects
            .get(&(org.to_owned(), project.to_owned()))
            .and_then(|p| p.groups.get(name))
            .ok_or_else(|| group_not_found(org, project, name))
    }

    fn group_mut(&mut self, org: &str, project: &str, name: &str) -> Result<&mut Group, ApiError> {
        self.projects
            .get_mut(&(org.to_owned(), project.to_owned()))
            .and_then(|p| p.groups.get_mut(name))
            .ok_or_else(|| group_not_found(org, project, name))
    }

    pub fn list(&self, org: &str, project: &str, now: Instant) -> Value {
        let items: Vec<Value> = self
            .projects
            .get(&(org.to_owned(), project.to_owned()))
            .map(|p| {
                p.groups
                    .values()
                    .map(|g| g.to_json(&self.timings, now))
                    .collect()
            })
            .unwrap_or_default();
        json!({ "items": items })
    }

    pub fn get(
        &self,
        org: &str,
        project: &str,
        name: &str,
        now: Instant,
    ) -> Result<Value, ApiError> {
        Ok(self.group(org, project, name)?.to_json(&self.timings, now))
    }

    pub fn create(
        &mut self,
        org: &str,
        project: &str,
        body: &Value,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let errors = validate::container_group_prototype(body, &self.gpu_ids());
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let name = body["name"].as_str().unwrap_or_default().to_owned();
        let key = (org.to_owned(), project.to_owned());
        if self
            .projects
            .get(&key)
            .is_some_and(|p| p.used_names.contains(&name))
        {
            return Err(ApiError::new(
                400,
                "name_conflict",
                "Name Conflict",
                format!(
                    "The container group name `{name}` is already used (or was used before) in project `{project}`; names can never be reused, even after deletion. Choose a new name."
                ),
            ));
        }
        let spec = normalize_spec(body);
        if let Some(q) = spec["queue_connection"]["queue_name"].as_str()
            && !self.queue_exists(org, project, q)
        {
            return Err(ApiError::bad_request(format!(
                "queue_connection.queue_name: the queue `{q}` does not exist in project `{project}`; create it first"
            )));
        }
        let autostart = spec["autostart_policy"].as_bool().unwrap_or(false);
        let replicas = spec["replicas"].as_u64().unwrap_or(0) as u32;
        if autostart {
            self.check_quota(org, replicas)?;
        }
        let ts = self.clock.ts(now);
        let image_bytes = self.image_bytes(spec["container"]["image"].as_str().unwrap_or_default());
        let fleet = FleetLog {
            speeds: self.speeds_for(org, project, &name),
            system: Vec::new(),
            lines: Vec::new(),
        };
        let clock = self.clock;
        let dns = spec
            .get("networking")
            .map(|_| format!("{name}-{}.{}", random_dns_label(), self.suffix));
        let registry_auth = body["container"].get("registry_authentication").cloned();
        let image = spec["container"]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let group = Group {
            id: Uuid::new_v4(),
            org: org.to_owned(),
            project: project.to_owned(),
            name: name.clone(),
            spec,
            registry_auth,
            dns,
            version: 1,
            deployed_version: 1,
            create_time: ts,
            update_time: ts,
            start_time: ts,
            finish_time: ts,
            started: autostart,
            prepare: Some(Prepare {
                until: now + self.timings.image_prepare,
                image,
            }),
            prepared_once: false,
            failed: None,
            deleting: None,
            rollout: false,
            instances: Vec::new(),
            image_bytes,
            clock,
            fleet,
            autoscaled_at: None,
            schedule_checked: None,
        };
        let out = group.to_json(&self.timings, now);
        let p = self.projects.entry(key).or_default();
        p.used_names.insert(name.clone());
        p.groups.insert(name, group);
        Ok(out)
    }

    pub fn update(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        patch: &Value,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let gpu_ids = self.gpu_ids();
        let quota_used = self.quota_used(org);
        let quota = self.quota;
        let timings = self.timings;
        let sizes = self.image_sizes.clone();
        let default_bytes = self.fleet_model.image_bytes;
        let g = self.group_mut(org, project, name)?;
        if g.deleting.is_some() {
            return Err(ApiError::bad_request(format!(
                "Container group `{name}` is being deleted and cannot be updated"
            )));
        }
        if patch.get("queue_connection").is_some() {
            return Err(ApiError::bad_request(
                "queue_connection cannot change after creation; create a new container group",
            ));
        }
        let errors = validate::container_group_patch(patch, &g.spec, &gpu_ids);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let mut patch = patch.clone();
        strip_noop_nulls(&mut patch);
        let mut patch_spec = Map::new();
        for k in validate::PATCHABLE {
            if let Some(v) = patch.get(*k) {
                patch_spec.insert((*k).to_owned(), v.clone());
            }
        }
        let mut new_auth = g.registry_auth.clone();
        if let Some(Value::Object(c)) = patch_spec.get_mut("container")
            && let Some(ra) = c.remove("registry_authentication")
        {
            new_auth = if ra.is_null() { None } else { Some(ra) };
        }
        if let Some(Value::Object(c)) = patch_spec.get_mut("container") {
            c.retain(|k, _| CONTAINER_KEYS.contains(&k.as_str()));
        }
        let mut merged = g.spec.clone();
        merge(&mut merged, &Value::Object(patch_spec));
        let merged = normalize_spec(&merged);
        let errors = validate::container_group_prototype(&merged, &gpu_ids);
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        let old_replicas = g.replicas();
        let new_replicas = merged["replicas"].as_u64().unwrap_or(0) as u32;
        if g.consumes_quota() && new_replicas > old_replicas {
            let extra = new_replicas - old_replicas;
            if quota_used + extra > quota {
                return Err(ApiError::new(
                    400,
                    "quota_exceeded",
                    "Quota Exceeded",
                    format!(
                        "Raising replicas from {old_replicas} to {new_replicas} needs {extra} more container replica(s) but organization `{org}` uses {quota_used} of its quota of {quota}. Lower replicas or stop another container group."
                    ),
                ));
            }
        }
        let before = g.version_fingerprint();
        let old_image = g.image();
        g.spec = merged;
        g.registry_auth = new_auth;
        let after = g.version_fingerprint();
        g.update_time = Timestamp::now();
        if before != after {
            g.version += 1;
            g.rollout = true;
            let image = g.image();
            g.image_bytes = image_bytes_of(&sizes, &image, default_bytes);
            if image != old_image || g.failed.is_some() {
                g.failed = None;
                g.prepare = Some(Prepare {
                    until: now + timings.image_prepare,
                    image,
                });
            } else if g.prepare.is_none() {
                g.deployed_version = g.version;
                g.restart_all(now, false, &timings);
            } else if let Some(p) = &mut g.prepare {
                // A change while an image is being prepared joins that preparation.
                p.image = image;
            }
        }
        g.reconcile_replicas(now);
        Ok(g.to_json(&timings, now))
    }

    pub fn delete(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        let delete = self.timings.delete;
        let g = self.group_mut(org, project, name)?;
        if g.deleting.is_none() {
            g.deleting = Some(now + delete);
            g.prepare = None;
            g.halt(now);
        }
        Ok(())
    }

    pub fn start(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        let g = self.group(org, project, name)?;
        if g.deleting.is_some() {
            return Err(ApiError::bad_request(format!(
                "Container group `{name}` is being deleted and cannot be started"
            )));
        }
        if g.failed.is_some() {
            return Err(ApiError::bad_request(format!(
                "Container group `{name}` failed while preparing its image; update container.image to retry"
            )));
        }
        if g.started {
            return Ok(());
        }
        let replicas = g.replicas();
        self.check_quota(org, replicas)?;
        let g = self.group_mut(org, project, name)?;
        g.started = true;
        g.start_time = Timestamp::now();
        g.update_time = g.start_time;
        g.reconcile_replicas(now);
        Ok(())
    }

    pub fn stop(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        now: Instant,
    ) -> Result<(), ApiError> {
        let g = self.group_mut(org, project, name)?;
        if g.deleting.is_some() {
            return Err(ApiError::bad_request(format!(
                "Container group `{name}` is being deleted"
            )));
        }
        if g.started {
            g.halt(now);
        }
        Ok(())
    }

    pub fn instances(
        &self,
        org: &str,
        project: &str,
        name: &str,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let g = self.group(org, project, name)?;
        let items: Vec<Value> = g
            .instances
            .iter()
            .map(|i| g.instance_json(i, &self.timings, now))
            .collect();
        Ok(json!({ "instances": items }))
    }

    pub fn instance(
        &self,
        org: &str,
        project: &str,
        name: &str,
        id: &str,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let g = self.group(org, project, name)?;
        let i = g
            .instances
            .iter()
            .find(|i| i.id.to_string() == id)
            .ok_or_else(|| instance_not_found(name, id))?;
        Ok(g.instance_json(i, &self.timings, now))
    }

    pub fn instance_action(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        id: &str,
        action: InstanceAction,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.group(org, project, name)?;
        if matches!(action, InstanceAction::Reallocate) {
            let limit = self.reallocations_per_minute;
            let window = self.reallocations.entry(org.to_owned()).or_default();
            window.retain(|t| now.saturating_duration_since(*t) < Duration::from_secs(60));
            if window.len() >= limit as usize {
                return Err(ApiError::new(
                    429,
                    "quota_exceeded",
                    "Too Many Requests",
                    format!(
                        "Organization `{org}` may reallocate {limit} instance(s) per minute (max_container_group_reallocations_per_minute); try again after a minute"
                    ),
                ));
            }
        }
        self.apply_instance_action(org, project, name, id, action, now)?;
        if matches!(action, InstanceAction::Reallocate) {
            self.reallocations
                .entry(org.to_owned())
                .or_default()
                .push(now);
        }
        Ok(())
    }

    fn apply_instance_action(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        id: &str,
        action: InstanceAction,
        now: Instant,
    ) -> Result<(), ApiError> {
        let g = self.group_mut(org, project, name)?;
        let idx = g
            .instances
            .iter()
            .position(|i| i.id.to_string() == id && i.state != InstState::Stopping)
            .ok_or_else(|| instance_not_found(name, id))?;
        match action {
            InstanceAction::Reallocate => g.reallocate(idx, now),
            InstanceAction::Recreate | InstanceAction::Restart => {
                let ts = g.clock.ts(now);
                let inst = &mut g.instances[idx];
                if matches!(inst.state, InstState::Running | InstState::Creating) {
                    inst.state = InstState::Creating;
                    inst.logged_started = false;
                    inst.logged_ready = false;
                }
                inst.since = now;
                inst.update_time = ts;
            }
        }
        Ok(())
    }

    /// `GET …/system-logs`: the group's newest 50 system events, oldest first.
    pub fn system_logs(&self, org: &str, project: &str, name: &str) -> Result<Value, ApiError> {
        let g = self.group(org, project, name)?;
        let resources = &g.spec["container"]["resources"];
        let gpu = resources["gpu_classes"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .and_then(|id| self.gpu_classes.iter().find(|c| c.id == id))
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let skip = g.fleet.system.len().saturating_sub(50);
        let items: Vec<Value> = g.fleet.system[skip..]
            .iter()
            .map(|l| l.to_json(resources, &gpu))
            .collect();
        Ok(json!({ "items": items }))
    }

    /// `POST /organizations/{org}/log-entries`: the container log lines of the organization's
    /// groups matching the query, in the time range, sorted and cut to the page size.
    pub fn log_entries(&self, org: &str, body: &Value) -> Result<Value, ApiError> {
        let req = fleet::parse_log_request(body)
            .map_err(|errors| ApiError::validation(validate::Errors(errors)))?;
        let mut lines: Vec<&LogLine> = self
            .projects
            .iter()
            .filter(|((o, _), _)| o == org)
            .flat_map(|(_, p)| p.groups.values())
            .flat_map(|g| g.fleet.lines.iter())
            .filter(|l| l.time >= req.start && l.time <= req.end && req.query.matches(l))
            .collect();
        lines.sort_by_key(|l| l.time);
        if !req.ascending {
            lines.reverse();
        }
        lines.truncate(req.page_size);
        let times = lines.iter().map(|l| l.time);
        let (min, max) = (
            times.clone().min().unwrap_or(req.start),
            times.max().unwrap_or(req.end),
        );
        Ok(json!({
            "items": lines.iter().map(|l| l.to_json(org)).collect::<Vec<_>>(),
            "organization_name": org,
            "page_min_time": rfc3339(min),
            "page_max_time": rfc3339(max),
        }))
    }

    /// Makes an instance fail (or pass again) its readiness probe (admin), with its system log.
    pub fn set_unready(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        id: &str,
        unready: bool,
        now: Instant,
    ) -> Result<(), ApiError> {
        let g = self.group_mut(org, project, name)?;
        let idx = g
            .instances
            .iter()
            .position(|i| i.id.to_string() == id)
            .ok_or_else(|| instance_not_found(name, id))?;
        if g.instances[idx].unready != unready {
            g.instances[idx].unready = unready;
            g.instances[idx].logged_ready = false;
            let event = if unready {
                events::READINESS_FAILED
            } else {
                events::READY
            };
            g.system_log(event, idx, now);
            if unready {
                g.log_line(idx, now, "warning", "readiness probe failed".into());
            }
        }
        Ok(())
    }

    pub fn patch_instance(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        id: &str,
        body: &Value,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let timings = self.timings;
        let g = self.group_mut(org, project, name)?;
        let idx = g
            .instances
            .iter()
            .position(|i| i.id.to_string() == id)
            .ok_or_else(|| instance_not_found(name, id))?;
        let Some(o) = body.as_object() else {
            return Err(ApiError::bad_request("body: must be an object"));
        };
        if let Some(k) = o.keys().find(|k| k.as_str() != "deletion_cost") {
            return Err(ApiError::bad_request(format!(
                "{k}: unknown field; only deletion_cost can be updated"
            )));
        }
        match o.get("deletion_cost") {
            Some(Value::Null) => g.instances[idx].deletion_cost = 0,
            Some(v) => match v.as_u64() {
                Some(n) if n <= 100_000 => g.instances[idx].deletion_cost = n as u32,
                _ => {
                    return Err(ApiError::bad_request(
                        "deletion_cost: must be an integer between 0 and 100000",
                    ));
                }
            },
            None => {}
        }
        Ok(g.instance_json(&g.instances[idx], &timings, now))
    }

    /// Interrupt an instance (admin): it goes back to `allocating` on a new machine.
    pub fn interrupt(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        id: Option<&str>,
        now: Instant,
    ) -> Result<String, ApiError> {
        let g = self.group(org, project, name)?;
        let pick = match id {
            Some(id) => id.to_owned(),
            None => g
                .active()
                .find(|i| i.state == InstState::Running)
                .or_else(|| g.active().next())
                .map(|i| i.id.to_string())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("container group `{name}` has no instance"))
                })?,
        };
        let g = self.group_mut(org, project, name)?;
        if let Some(idx) = g
            .instances
            .iter()
            .position(|i| i.id.to_string() == pick && i.state != InstState::Stopping)
        {
            g.system_log(events::INTERRUPTED, idx, now);
            g.log_line(
                idx,
                now,
                "warning",
                "node interrupted; the instance moves to a new node".into(),
            );
        }
        self.apply_instance_action(org, project, name, &pick, InstanceAction::Reallocate, now)?;
        Ok(pick)
    }

    pub fn gpu_classes_json(&self) -> Value {
        let items: Vec<Value> = self
            .gpu_classes
            .iter()
            .map(|g| {
                let mut item = json!({
                    "id": g.id,
                    "name": g.name,
                    "prices": [
                        {"priority": "high", "price": g.prices.high},
                        {"priority": "medium", "price": g.prices.medium},
                        {"priority": "low", "price": g.prices.low},
                        {"priority": "batch", "price": g.prices.batch},
                    ],
                    "is_high_demand": g.is_high_demand,
                    "gpu_class_type": "community",
                    "gpu_count": 1,
                });
                if let Some(l) = g.limits {
                    item["min_vcpu"] = json!(l.min_vcpu);
                    item["max_vcpu"] = json!(l.max_vcpu);
                    item["min_ram"] = json!(l.min_ram);
                    item["max_ram"] = json!(l.max_ram);
                    item["min_storage"] = json!(l.min_storage);
                    item["max_storage"] = json!(l.max_storage);
                }
                item
            })
            .collect();
        json!({ "items": items })
    }

    pub fn quotas_json(&self, org: &str) -> Value {
        json!({
            "container_groups_quotas": {
                "container_replicas_quota": self.quota,
                "container_replicas_used": self.quota_used(org),
                "max_container_group_reallocations_per_minute": self.reallocations_per_minute,
                "max_container_group_recreates_per_minute": 10,
                "max_container_group_restarts_per_minute": 10,
            },
            "create_time": rfc3339(self.created),
            "update_time": rfc3339(Timestamp::now()),
        })
    }

    pub fn gateway_target(&self, dns: &str, now: Instant) -> Option<GatewayTarget> {
        let g = self
            .projects
            .values()
            .flat_map(|p| p.groups.values())
            .find(|g| g.dns.as_deref() == Some(dns))?;
        let ready = if g.deleting.is_some() || g.failed.is_some() || !g.started {
            0
        } else {
            g.active()
                .filter(|i| g.is_ready(i, &self.timings, now))
                .count()
        };
        Some(GatewayTarget {
            name: g.name.clone(),
            auth: g.spec["networking"]["auth"].as_bool().unwrap_or(false),
            ready_instances: ready,
            image: g.image(),
            comfyui_api: serves_comfyui_api(&g.spec),
        })
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.live_groups = self.projects.values().map(|p| p.groups.len()).sum();
        s.names_ever_used = self
            .projects
            .iter()
            .flat_map(|((o, p), proj)| proj.used_names.iter().map(move |n| format!("{o}/{p}/{n}")))
            .collect();
        s
    }
}

fn group_not_found(org: &str, project: &str, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "Container group `{name}` not found in organization `{org}`, project `{project}`"
    ))
}

fn instance_not_found(name: &str, id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Instance `{id}` not found in container group `{name}`"
    ))
}
