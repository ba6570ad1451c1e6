//! Request body validation following the SaladCloud OpenAPI schemas.
//!
//! Validators walk `serde_json::Value` bodies and collect every problem as a readable line
//! (`container.resources.cpu: must be between 1 and 1024, got 0`), so a 400 answer lists all of
//! them at once.

use serde_json::{Map, Value};

use crate::countries::is_country_code;

/// Collected validation problems.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<String>);

impl Errors {
    fn push(&mut self, path: &str, msg: impl AsRef<str>) {
        let line = format!("{path}: {}", msg.as_ref());
        if !self.0.contains(&line) {
            self.0.push(line);
        }
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn int(v: &Value, path: &str, min: i64, max: i64, e: &mut Errors) -> Option<i64> {
    match v.as_i64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        Some(n) => {
            e.push(path, format!("must be between {min} and {max}, got {n}"));
            None
        }
        None => {
            e.push(path, format!("must be an integer, got {}", kind(v)));
            None
        }
    }
}

fn string<'a>(v: &'a Value, path: &str, min: usize, max: usize, e: &mut Errors) -> Option<&'a str> {
    match v.as_str() {
        Some(s) => {
            let n = s.chars().count();
            if n < min || n > max {
                e.push(
                    path,
                    format!("length must be between {min} and {max} characters, got {n}"),
                );
                None
            } else {
                Some(s)
            }
        }
        None => {
            e.push(path, format!("must be a string, got {}", kind(v)));
            None
        }
    }
}

fn boolean(v: &Value, path: &str, e: &mut Errors) {
    if !v.is_boolean() {
        e.push(path, format!("must be a boolean, got {}", kind(v)));
    }
}

fn one_of(v: &Value, path: &str, allowed: &[&str], e: &mut Errors) {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => {}
        _ => e.push(
            path,
            format!("must be one of {}, got {v}", allowed.join(" | ")),
        ),
    }
}

fn array<'a>(
    v: &'a Value,
    path: &str,
    min: usize,
    max: usize,
    e: &mut Errors,
) -> Option<&'a Vec<Value>> {
    match v.as_array() {
        Some(a) if a.len() < min || a.len() > max => {
            e.push(
                path,
                format!("must have between {min} and {max} items, got {}", a.len()),
            );
            None
        }
        Some(a) => Some(a),
        None => {
            e.push(path, format!("must be an array, got {}", kind(v)));
            None
        }
    }
}

fn object<'a>(v: &'a Value, path: &str, e: &mut Errors) -> Option<&'a Map<String, Value>> {
    match v.as_object() {
        Some(o) => Some(o),
        None => {
            e.push(path, format!("must be an object, got {}", kind(v)));
            None
        }
    }
}

fn required<'a>(
    o: &'a Map<String, Value>,
    key: &str,
    path: &str,
    e: &mut Errors,
) -> Option<&'a Value> {
    let v = o.get(key);
    if v.is_none() {
        e.push(&join(path, key), "is required");
    }
    v
}

/// `^[a-z][a-z0-9-]{0,61}[a-z0-9]$` (2–63 characters).
pub fn is_resource_name(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && matches!(b[b.len() - 1], b'a'..=b'z' | b'0'..=b'9')
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

fn name(v: &Value, path: &str, e: &mut Errors) {
    if let Some(s) = string(v, path, 2, 63, e)
        && !is_resource_name(s)
    {
        e.push(
            path,
            format!(
                "`{s}` must match ^[a-z][a-z0-9-]{{0,61}}[a-z0-9]$ (lowercase letters, digits and '-', starting with a letter)"
            ),
        );
    }
}

fn display_name(v: &Value, path: &str, e: &mut Errors) {
    if let Some(s) = string(v, path, 2, 63, e)
        && !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ',' | '-' | '.'))
    {
        e.push(
            path,
            format!("`{s}` must match ^[ ,-.0-9A-Za-z]+$ (letters, digits, space, ',', '-', '.')"),
        );
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

fn country_codes(v: &Value, path: &str, e: &mut Errors) {
    if let Some(items) = array(v, path, 1, 500, e) {
        for (i, c) in items.iter().enumerate() {
            match c.as_str() {
                Some(s) if is_country_code(s) => {}
                _ => e.push(
                    &format!("{path}[{i}]"),
                    format!("{c} is not a lowercase ISO 3166-1 alpha-2 country code"),
                ),
            }
        }
    }
}

const PRIORITIES: &[&str] = &["high", "medium", "low", "batch"];
const RESTART_POLICIES: &[&str] = &["always", "on_failure", "never"];

/// Limits that differ between create (`CreateContainer`) and update (`UpdateContainer`).
#[derive(Clone, Copy)]
struct ContainerLimits {
    image_max: usize,
    command_item_max: usize,
}

const CREATE_LIMITS: ContainerLimits = ContainerLimits {
    image_max: 2048,
    command_item_max: 1000,
};
const UPDATE_LIMITS: ContainerLimits = ContainerLimits {
    image_max: 1024,
    command_item_max: 1024,
};

/// Validate a `ContainerGroupPrototype` body (also used on the merged result of a PATCH).
pub fn container_group_prototype(body: &Value, gpu_ids: &[String]) -> Errors {
    let mut e = Errors::default();
    let Some(o) = object(body, "body", &mut e) else {
        return e;
    };
    if let Some(v) = required(o, "name", "", &mut e) {
        name(v, "name", &mut e);
    }
    if let Some(v) = o.get("display_name") {
        display_name(v, "display_name", &mut e);
    }
    if let Some(v) = required(o, "autostart_policy", "", &mut e) {
        boolean(v, "autostart_policy", &mut e);
    }
    if let Some(v) = required(o, "replicas", "", &mut e) {
        int(v, "replicas", 0, 500, &mut e);
    }
    if let Some(v) = required(o, "restart_policy", "", &mut e) {
        one_of(v, "restart_policy", RESTART_POLICIES, &mut e);
    }
    if let Some(v) = o.get("country_codes") {
        country_codes(v, "country_codes", &mut e);
    }
    if let Some(v) = required(o, "container", "", &mut e) {
        container_create(v, gpu_ids, &mut e);
    }
    if let Some(v) = o.get("networking") {
        networking_create(v, &mut e);
    }
    for probe_name in ["startup_probe", "liveness_probe", "readiness_probe"] {
        if let Some(v) = o.get(probe_name)
            && !v.is_null()
        {
            probe(v, probe_name, &mut e);
        }
    }
    if let Some(v) = o.get("queue_connection") {
        queue_connection(v, &mut e);
    }
    if let Some(v) = o.get("queue_autoscaler") {
        queue_autoscaler(v, &mut e);
    }
    if let Some(v) = o.get("scaling-actions") {
        scaling_actions(v, &mut e);
    }
    if let Some(v) = o.get("scheduled-scaling-enabled") {
        boolean(v, "scheduled-scaling-enabled", &mut e);
    }
    e
}

fn container_create(v: &Value, gpu_ids: &[String], e: &mut Errors) {
    let path = "container";
    let Some(o) = object(v, path, e) else {
        return;
    };
    if let Some(v) = required(o, "image", path, e) {
        string(v, "container.image", 1, CREATE_LIMITS.image_max, e);
    }
    if let Some(v) = required(o, "resources", path, e) {
        resources(v, "container.resources", gpu_ids, true, e);
    }
    container_common(o, CREATE_LIMITS, e);
}

/// Fields shared by `CreateContainer` and `UpdateContainer` (all optional).
fn container_common(o: &Map<String, Value>, limits: ContainerLimits, e: &mut Errors) {
    if let Some(v) = o.get("command")
        && !v.is_null()
        && let Some(items) = array(v, "container.command", 0, 100, e)
    {
        for (i, item) in items.iter().enumerate() {
            string(
                item,
                &format!("container.command[{i}]"),
                1,
                limits.command_item_max,
                e,
            );
        }
    }
    if let Some(v) = o.get("environment_variables")
        && let Some(env) = object(v, "container.environment_variables", e)
    {
        for (k, val) in env {
            let p = format!("container.environment_variables.{k}");
            if k.is_empty() {
                e.push("container.environment_variables", "keys must not be empty");
            }
            string(val, &p, 1, 1000, e);
        }
    }
    if let Some(v) = o.get("priority")
        && !v.is_null()
    {
        one_of(v, "container.priority", PRIORITIES, e);
    }
    if let Some(v) = o.get("image_caching") {
        boolean(v, "container.image_caching", e);
    }
    if let Some(v) = o.get("logging")
        && !v.is_null()
    {
        logging(v, e);
    }
    if let Some(v) = o.get("registry_authentication") {
        registry_authentication(v, e);
    }
}

fn resources(v: &Value, path: &str, gpu_ids: &[String], create: bool, e: &mut Errors) {
    let Some(o) = object(v, path, e) else {
        return;
    };
    let get = |key: &str, e: &mut Errors| -> Option<&Value> {
        if create {
            required(o, key, path, e)
        } else {
            o.get(key).filter(|v| !v.is_null())
        }
    };
    if let Some(v) = get("cpu", e) {
        int(v, &join(path, "cpu"), 1, 1024, e);
    }
    if let Some(v) = get("memory", e) {
        int(v, &join(path, "memory"), 1024, 1_073_741_824, e);
    }
    if let Some(v) = o.get("storage_amount").filter(|v| !v.is_null()) {
        int(
            v,
            &join(path, "storage_amount"),
            1_073_741_824,
            1_125_899_906_842_624,
            e,
        );
    }
    if let Some(v) = o.get("shm_size").filter(|v| !v.is_null()) {
        int(v, &join(path, "shm_size"), 64, 1_073_741_824, e);
    }
    if let Some(v) = o.get("gpu_classes").filter(|v| !v.is_null() || create) {
        let p = join(path, "gpu_classes");
        if let Some(items) = array(v, &p, 0, 100, e) {
            for (i, item) in items.iter().enumerate() {
                let ip = format!("{p}[{i}]");
                match item.as_str() {
                    Some(s) if !is_uuid(s) => {
                        e.push(&ip, format!("`{s}` is not a uuid (GPU classes are given by id)"))
                    }
                    Some(s) if !gpu_ids.iter().any(|g| g == s) => e.push(
                        &ip,
                        format!(
                            "GPU class `{s}` does not exist; list them with GET /organizations/{{org}}/gpu-classes"
                        ),
                    ),
                    Some(_) => {}
                    None => e.push(&ip, format!("must be a string, got {}", kind(item))),
                }
            }
        }
    }
}

fn logging(v: &Value, e: &mut Errors) {
    let path = "container.logging";
    let Some(o) = object(v, path, e) else {
        return;
    };
    const PROVIDERS: &[(&str, &[&str])] = &[
        ("axiom", &["host", "api_token", "dataset"]),
        ("datadog", &["host", "api_key"]),
        ("http", &["host", "port", "format", "compression"]),
        ("new_relic", &["host", "ingestion_key"]),
        ("splunk", &["host", "token"]),
        ("tcp", &["host", "port"]),
    ];
    let set: Vec<&str> = PROVIDERS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| o.get(*p).is_some_and(|v| !v.is_null()))
        .collect();
    if set.len() != 1 {
        e.push(
            path,
            format!(
                "exactly one logging provider must be set (axiom, datadog, http, new_relic, splunk, tcp), got {}",
                set.len()
            ),
        );
    }
    for (provider, fields) in PROVIDERS {
        let Some(pv) = o.get(*provider).filter(|v| !v.is_null()) else {
            continue;
        };
        let pp = join(path, provider);
        let Some(po) = object(pv, &pp, e) else {
            continue;
        };
        for f in *fields {
            required(po, f, &pp, e);
        }
        if let Some(port) = po.get("port") {
            int(port, &join(&pp, "port"), 1, 65535, e);
        }
        if *provider == "http" {
            if let Some(f) = po.get("format") {
                one_of(f, &join(&pp, "format"), &["json", "json_lines"], e);
            }
            if let Some(c) = po.get("compression") {
                one_of(c, &join(&pp, "compression"), &["none", "gzip"], e);
            }
        }
    }
}

fn registry_authentication(v: &Value, e: &mut Errors) {
    let path = "container.registry_authentication";
    let Some(o) = object(v, path, e) else {
        return;
    };
    const KINDS: &[(&str, &[&str])] = &[
        ("basic", &["username", "password"]),
        ("docker_hub", &["username", "personal_access_token"]),
        ("aws_ecr", &["access_key_id", "secret_access_key"]),
        ("gcp_gar", &["service_key"]),
        ("gcp_gcr", &["service_key"]),
    ];
    let set = KINDS
        .iter()
        .filter(|(k, _)| o.get(*k).is_some_and(|v| !v.is_null()))
        .count();
    if set != 1 {
        e.push(
            path,
            format!(
                "exactly one of basic, docker_hub, aws_ecr, gcp_gar, gcp_gcr must be set, got {set}"
            ),
        );
    }
    for (k, fields) in KINDS {
        let Some(kv) = o.get(*k).filter(|v| !v.is_null()) else {
            continue;
        };
        let kp = join(path, k);
        let Some(ko) = object(kv, &kp, e) else {
            continue;
        };
        for f in *fields {
            if let Some(fv) = required(ko, f, &kp, e) {
                // Never echo the value: these are credentials.
                if fv.as_str().is_none_or(|s| s.is_empty() || s.len() > 10000) {
                    e.push(&join(&kp, f), "must be a string of 1..10000 characters");
                }
            }
        }
    }
}

fn networking_create(v: &Value, e: &mut Errors) {
    let path = "networking";
    let Some(o) = object(v, path, e) else {
        return;
    };
    if let Some(v) = required(o, "auth", path, e) {
        boolean(v, "networking.auth", e);
    }
    if let Some(v) = required(o, "port", path, e) {
        int(v, "networking.port", 1, 65535, e);
    }
    if let Some(v) = required(o, "protocol", path, e) {
        one_of(v, "networking.protocol", &["http"], e);
    }
    if let Some(v) = o.get("load_balancer") {
        one_of(
            v,
            "networking.load_balancer",
            &["round_robin", "least_number_of_connections"],
            e,
        );
    }
    if let Some(v) = o.get("single_connection_limit") {
        boolean(v, "networking.single_connection_limit", e);
    }
    for t in ["client_request_timeout", "server_response_timeout"] {
        if let Some(v) = o.get(t) {
            int(v, &join(path, t), 1, 100_000, e);
        }
    }
}

fn probe(v: &Value, path: &str, e: &mut Errors) {
    let Some(o) = object(v, path, e) else {
        return;
    };
    const RANGES: &[(&str, i64, i64)] = &[
        ("failure_threshold", 1, 20),
        ("initial_delay_seconds", 0, 1200),
        ("period_seconds", 1, 120),
        ("success_threshold", 1, 10),
        ("timeout_seconds", 1, 60),
    ];
    for (k, min, max) in RANGES {
        if let Some(v) = required(o, k, path, e) {
            int(v, &join(path, k), *min, *max, e);
        }
    }
    let kinds: Vec<&str> = ["http", "tcp", "grpc", "exec"]
        .into_iter()
        .filter(|k| o.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    if kinds.len() != 1 {
        e.push(
            path,
            format!(
                "exactly one of http, tcp, grpc, exec must be set, got {}",
                kinds.len()
            ),
        );
    }
    if let Some(h) = o.get("http").filter(|v| !v.is_null()) {
        let hp = join(path, "http");
        if let Some(ho) = object(h, &hp, e) {
            if let Some(v) = required(ho, "path", &hp, e) {
                string(v, &join(&hp, "path"), 1, 2048, e);
            }
            if let Some(v) = required(ho, "port", &hp, e) {
                int(v, &join(&hp, "port"), 0, 65536, e);
            }
            if let Some(v) = required(ho, "scheme", &hp, e)
                && !v.is_null()
            {
                one_of(v, &join(&hp, "scheme"), &["http", "https"], e);
            }
            if let Some(v) = required(ho, "headers", &hp, e) {
                let headers_path = join(&hp, "headers");
                // The spec says minItems 1, but the docs' own example and virtual-kubelet send
                // `[]`; accept an empty list.
                if let Some(items) = array(v, &headers_path, 0, 50, e) {
                    for (i, item) in items.iter().enumerate() {
                        let ip = format!("{headers_path}[{i}]");
                        if let Some(io) = object(item, &ip, e) {
                            if let Some(n) = required(io, "name", &ip, e) {
                                string(n, &join(&ip, "name"), 1, 256, e);
                            }
                            if let Some(val) = required(io, "value", &ip, e) {
                                string(val, &join(&ip, "value"), 1, 1024, e);
                            }
                        }
                    }
                }
            }
        }
    }
    if let Some(t) = o.get("tcp").filter(|v| !v.is_null()) {
        let tp = join(path, "tcp");
        if let Some(to) = object(t, &tp, e)
            && let Some(v) = required(to, "port", &tp, e)
        {
            int(v, &join(&tp, "port"), 0, 65535, e);
        }
    }
    if let Some(g) = o.get("grpc").filter(|v| !v.is_null()) {
        let gp = join(path, "grpc");
        if let Some(go) = object(g, &gp, e) {
            if let Some(v) = required(go, "port", &gp, e) {
                int(v, &join(&gp, "port"), 0, 65536, e);
            }
            if let Some(v) = required(go, "service", &gp, e) {
                string(v, &join(&gp, "service"), 0, 1024, e);
            }
        }
    }
    if let Some(x) = o.get("exec").filter(|v| !v.is_null()) {
        let xp = join(path, "exec");
        if let Some(xo) = object(x, &xp, e)
            && let Some(v) = required(xo, "command", &xp, e)
        {
            let cp = join(&xp, "command");
            if let Some(items) = array(v, &cp, 1, 100, e) {
                for (i, item) in items.iter().enumerate() {
                    string(item, &format!("{cp}[{i}]"), 1, 2048, e);
                }
            }
        }
    }
}

fn queue_connection(v: &Value, e: &mut Errors) {
    let path = "queue_connection";
    let Some(o) = object(v, path, e) else {
        return;
    };
    if let Some(v) = required(o, "path", path, e) {
        string(v, "queue_connection.path", 1, 1024, e);
    }
    if let Some(v) = required(o, "port", path, e) {
        int(v, "queue_connection.port", 1, 65535, e);
    }
    if let Some(v) = required(o, "queue_name", path, e) {
        name(v, "queue_connection.queue_name", e);
    }
}

fn queue_autoscaler(v: &Value, e: &mut Errors) {
    let path = "queue_autoscaler";
    let Some(o) = object(v, path, e) else {
        return;
    };
    for (k, min, max, req) in [
        ("desired_queue_length", 1, 100, true),
        ("min_replicas", 0, 100, true),
        ("max_replicas", 1, 500, true),
        ("max_upscale_per_minute", 1, 100, false),
        ("max_downscale_per_minute", 1, 100, false),
        ("polling_period", 15, 1800, false),
    ] {
        let v = if req {
            required(o, k, path, e)
        } else {
            o.get(k)
        };
        if let Some(v) = v {
            int(v, &join(path, k), min, max, e);
        }
    }
}

fn is_cron(s: &str) -> bool {
    let fields: Vec<&str> = s.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
    fields.len() == 5
        && !s.starts_with([' ', '\t'])
        && !s.ends_with([' ', '\t'])
        && fields.iter().all(|f| {
            f.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '/' | ',' | '-'))
        })
}

fn scaling_actions(v: &Value, e: &mut Errors) {
    let path = "scaling-actions";
    if let Some(items) = array(v, path, 0, 100, e) {
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            let Some(io) = object(item, &ip, e) else {
                continue;
            };
            if let Some(s) = required(io, "schedule", &ip, e)
                && let Some(s) = string(s, &join(&ip, "schedule"), 1, 256, e)
                && !is_cron(s)
            {
                e.push(
                    &join(&ip, "schedule"),
                    format!("`{s}` is not a 5-field cron expression"),
                );
            }
            if let Some(r) = required(io, "replicas", &ip, e) {
                int(r, &join(&ip, "replicas"), 0, 500, e);
            }
        }
    }
}

/// Top-level fields of `ContainerGroupPatch`.
pub const PATCHABLE: &[&str] = &[
    "container",
    "country_codes",
    "display_name",
    "liveness_probe",
    "networking",
    "queue_autoscaler",
    "readiness_probe",
    "replicas",
    "scaling-actions",
    "scheduled-scaling-enabled",
    "startup_probe",
];

/// Spec fields that exist on a container group but cannot be changed by PATCH. Sending one with
/// a value different from the current one is answered 400 (sending the same value is ignored).
pub const IMMUTABLE: &[&str] = &[
    "name",
    "autostart_policy",
    "restart_policy",
    "queue_connection",
];

/// Networking fields fixed at creation (only `port` is updatable; `dns` is read-only and ignored).
const IMMUTABLE_NETWORKING: &[&str] = &[
    "auth",
    "protocol",
    "load_balancer",
    "client_request_timeout",
    "server_response_timeout",
    "single_connection_limit",
];

/// The value the read model shows for a networking field omitted on create.
fn networking_default(key: &str) -> Option<Value> {
    match key {
        "load_balancer" => Some(Value::from("round_robin")),
        "client_request_timeout" | "server_response_timeout" => Some(Value::from(100_000)),
        "single_connection_limit" => Some(Value::Bool(false)),
        _ => None,
    }
}

/// Validate a `ContainerGroupPatch` body against the current stored spec (create shape).
/// Field-level checks of merged objects (probes, autoscaler) run afterwards on the merged result.
pub fn container_group_patch(patch: &Value, current: &Value, gpu_ids: &[String]) -> Errors {
    let mut e = Errors::default();
    let Some(o) = object(patch, "body", &mut e) else {
        return e;
    };
    for key in IMMUTABLE {
        if let Some(v) = o.get(*key)
            && current.get(*key) != Some(v)
        {
            e.push(
                key,
                "cannot be changed after creation; create a new container group instead",
            );
        }
    }
    if let Some(v) = o.get("display_name")
        && !v.is_null()
    {
        display_name(v, "display_name", &mut e);
    }
    if let Some(v) = o.get("replicas")
        && !v.is_null()
    {
        int(v, "replicas", 0, 500, &mut e);
    }
    if let Some(v) = o.get("country_codes")
        && !v.is_null()
    {
        country_codes(v, "country_codes", &mut e);
    }
    if let Some(v) = o.get("container")
        && !v.is_null()
        && let Some(c) = object(v, "container", &mut e)
    {
        if let Some(img) = c.get("image")
            && !img.is_null()
        {
            string(img, "container.image", 1, UPDATE_LIMITS.image_max, &mut e);
        }
        if let Some(r) = c.get("resources")
            && !r.is_null()
        {
            resources(r, "container.resources", gpu_ids, false, &mut e);
        }
        // `null` values in environment_variables remove keys (RFC 7396); strip them before
        // checking the remaining values.
        let mut c = c.clone();
        if let Some(Value::Object(env)) = c.get_mut("environment_variables") {
            env.retain(|_, v| !v.is_null());
        }
        container_common(&c, UPDATE_LIMITS, &mut e);
    }
    if let Some(v) = o.get("networking")
        && let Some(n) = object(v, "networking", &mut e)
    {
        let cur = current.get("networking");
        if cur.is_none() {
            e.push(
                "networking",
                "the container gateway cannot be added by an update; create a new container group instead",
            );
        }
        for key in IMMUTABLE_NETWORKING {
            let current_value = cur
                .and_then(|c| c.get(*key))
                .cloned()
                .or_else(|| networking_default(key));
            if let Some(nv) = n.get(*key)
                && current_value.as_ref() != Some(nv)
            {
                e.push(
                    &join("networking", key),
                    "cannot be changed after creation; create a new container group instead",
                );
            }
        }
        if let Some(p) = n.get("port")
            && !p.is_null()
        {
            int(p, "networking.port", 1, 65535, &mut e);
        }
    }
    for key in [
        "startup_probe",
        "liveness_probe",
        "readiness_probe",
        "queue_autoscaler",
    ] {
        if let Some(v) = o.get(key)
            && !v.is_null()
        {
            object(v, key, &mut e);
        }
    }
    if let Some(v) = o.get("scaling-actions") {
        scaling_actions(v, &mut e);
    }
    if let Some(v) = o.get("scheduled-scaling-enabled") {
        boolean(v, "scheduled-scaling-enabled", &mut e);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        for ok in ["ab", "sd-1", "a0", &"a".repeat(63)] {
            assert!(is_resource_name(ok), "{ok}");
        }
        for bad in ["a", "1a", "a-", "Ab", "a_b", &"a".repeat(64), ""] {
            assert!(!is_resource_name(bad), "{bad}");
        }
    }

    fn prototype(cpu: i64, memory: i64) -> Value {
        serde_json::json!({
            "name": "sd",
            "autostart_policy": true,
            "replicas": 1,
            "restart_policy": "always",
            "container": {
                "image": "ghcr.io/acme/sd:1",
                "resources": {"cpu": cpu, "memory": memory, "gpu_classes": []},
            },
        })
    }

    /// `(cpu, memory MB, accepted, reason)`: `CreateContainerResourceRequirements` and
    /// `UpdateContainerResources` both allow 1-1024 vCPU and 1024-1073741824 MB.
    const RESOURCE_CASES: &[(i64, i64, bool, &str)] = &[
        (4, 12288, true, "a typical request"),
        (1, 1024, true, "both minimums"),
        (1024, 1_073_741_824, true, "both maximums"),
        (17, 61441, true, "above the old 16 vCPU and 61440 MB"),
        (0, 12288, false, "no vCPU"),
        (1025, 12288, false, "one vCPU above the maximum"),
        (4, 1023, false, "one MB below the minimum"),
        (4, 1_073_741_825, false, "one MB above the maximum"),
    ];

    #[test]
    fn create_and_patch_take_the_spec_cpu_and_memory_ranges() {
        for &(cpu, memory, accepted, reason) in RESOURCE_CASES {
            let create = container_group_prototype(&prototype(cpu, memory), &[]);
            assert_eq!(
                create.is_empty(),
                accepted,
                "create, {reason}: {:?}",
                create.0
            );
            let current = prototype(4, 12288);
            let patch =
                serde_json::json!({"container": {"resources": {"cpu": cpu, "memory": memory}}});
            let update = container_group_patch(&patch, &current, &[]);
            assert_eq!(
                update.is_empty(),
                accepted,
                "patch, {reason}: {:?}",
                update.0
            );
            for errors in [&create, &update] {
                assert!(
                    errors.0.iter().all(|l| l
                        .starts_with("container.resources.cpu: must be between 1 and 1024")
                        || l.starts_with(
                            "container.resources.memory: must be between 1024 and 1073741824"
                        )),
                    "{reason}: only the resource bounds are reported: {:?}",
                    errors.0
                );
            }
        }
    }

    #[test]
    fn cron() {
        assert!(is_cron("0 9 * * 1-5"));
        assert!(is_cron("*/5 * * * *"));
        assert!(!is_cron("0 9 * *"));
        assert!(!is_cron("0 9 * * * *"));
        assert!(!is_cron("0 9 ? * *"));
    }
}
