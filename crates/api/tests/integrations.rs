//! How GitOps tools and dashboards read what the operator writes.
//!
//! - The Argo CD health check (`manifests/argocd/health.lua`) runs under `lua5.4` over status
//!   fixtures built with the real status types, and `argocd-cm-patch.yaml` embeds it verbatim.
//! - kstatus (what Flux `wait: true` / `healthChecks` use) and `kubectl wait --for=condition=Ready`
//!   are re-implemented from their sources and run over the same fixtures.
//! - The Grafana dashboard only queries metrics the operator exports (the contract below).
//!
//! `UPDATE_ARGOCD_PATCH=1 cargo test -p salad-sd-api --test integrations` rewrites
//! `manifests/argocd/argocd-cm-patch.yaml` from `health.lua`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use regex::Regex;
use salad_sd_api::{
    ContainerGroupStatus, ImageStatus, InstanceCounts, Phase, StableDiffusionDeployment,
    StableDiffusionDeploymentStatus,
};
use serde_json::Value;

const HEALTH_KEY: &str = "resource.customizations.health.salad-sd.dev_StableDiffusionDeployment";
const LUA_TIMEOUT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Fixtures: objects as the API server would return them, built from the real Rust types.
// ---------------------------------------------------------------------------------------------

fn time() -> Time {
    Time(Timestamp::from_second(1_767_225_600).expect("a valid timestamp"))
}

fn cond(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: time(),
        observed_generation: Some(generation),
    }
}

fn group(name: &str, version: i32, state: &str, instances: InstanceCounts) -> ContainerGroupStatus {
    ContainerGroupStatus {
        name: name.into(),
        id: Some("5b0c4a52-8d7e-4d0a-9a57-2f1c4b6f2a10".into()),
        version: Some(version),
        state: Some(state.into()),
        pending_change: false,
        instances,
        access_url: Some(format!("https://{name}.salad.cloud")),
    }
}

fn running(n: i32) -> InstanceCounts {
    InstanceCounts {
        running: n,
        ready: n,
        ..InstanceCounts::default()
    }
}

fn image() -> ImageStatus {
    ImageStatus {
        reference: Some(
            "ghcr.io/acme/sd-dreamshaper@sha256:3f1a9e0c5b7d2e4f6a8b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f".into(),
        ),
        short_digest: Some("3f1a9e0c5b7d".into()),
        recipe_hash: Some("r-6f2a91c0".into()),
        ..ImageStatus::default()
    }
}

/// The dreamshaper example, at `generation`, with `status` as the operator would write it.
fn sdd(
    generation: i64,
    stopped: bool,
    deleting: bool,
    status: Option<StableDiffusionDeploymentStatus>,
) -> Value {
    let text = read(&repo_root().join("manifests/examples/sdnext-dreamshaper.yaml"));
    let mut object: StableDiffusionDeployment =
        serde_saphyr::from_str(&text).expect("the example parses as a StableDiffusionDeployment");
    object.metadata.namespace = Some("image-gen".into());
    object.metadata.uid = Some("0d9f3c1e-7a51-4c2b-9f0e-3b8d6a4e2c71".into());
    object.metadata.generation = Some(generation);
    object.metadata.creation_timestamp = Some(time());
    if deleting {
        object.metadata.deletion_timestamp = Some(time());
        object.metadata.finalizers = Some(vec!["salad-sd.dev/container-group-cleanup".into()]);
    }
    object.spec.stopped = stopped;
    object.status = status;
    serde_json::to_value(&object).expect("the object serializes")
}

const BUILDING: &str =
    "Building image: 1 of 2 layers pushed, 1.2 GiB of 2.0 GiB uploaded (dreamshaper_8.safetensors)";
const STALLED: &str = "spec.gpu.classes: no SaladCloud GPU class matches \"RTX 9090\" \u{2014} \
                       list them with `salad-sd gpu-classes` and fix the spec";
const READY: &str = "3/3 replicas ready at https://dreamshaper-6f2a.salad.cloud";
const STOPPED: &str = "Stopped on request (spec.stopped: true); no instances are billed";
const STOPPING: &str = "Stopping container group dreamshaper-6f2a: 2 instances stopping";
const ROLLOUT: &str = "BlueGreen: dreamshaper-81c4 1/3 ready; dreamshaper-6f2a keeps serving \
                       until the new group is fully ready";
const DELETING: &str = "Deleting container group dreamshaper-6f2a (deletionPolicy: Delete)";

/// What each tool should conclude from one fixture.
struct Fixture {
    name: &'static str,
    object: Value,
    /// Argo CD health status and message.
    argo: (&'static str, String),
    /// kstatus status and message.
    kstatus: (&'static str, String),
    /// Whether `kubectl wait --for=condition=Ready` returns on this object.
    wait_ready: bool,
    /// Why `kubectl wait` disagrees with kstatus `Current` here, if it does.
    wait_diverges: Option<&'static str>,
}

fn fixtures() -> Vec<Fixture> {
    let mut out = vec![
        Fixture {
            name: "fresh (no status yet)",
            object: sdd(1, false, false, None),
            argo: (
                "Progressing",
                "Waiting for the operator to observe generation 1".into(),
            ),
            // The kstatus README's own corner case: "If the library sees the resource before the
            // controller has had a chance to update the conditions, it also will not realize the
            // resource use the Ready condition." With no status.observedGeneration and no
            // conditions, Compute() falls through to "Resource is current".
            kstatus: ("Current", "Resource is current".into()),
            wait_ready: false,
            wait_diverges: Some(
                "kstatus cannot tell an unobserved object from a condition-less one; kubectl wait \
             needs a Ready condition, so it keeps waiting (docs/integrations.md)",
            ),
        },
        Fixture {
            // What the API server serves for a new object: the CRD's status default
            // (`observedGeneration: -1`, nested defaults filled in) closes the kstatus corner case
            // above, so Flux `wait: true` waits for the operator.
            name: "fresh, status defaulted by the API server",
            object: sdd(
                1,
                false,
                false,
                Some(StableDiffusionDeploymentStatus {
                    observed_generation: Some(-1),
                    ..Default::default()
                }),
            ),
            argo: (
                "Progressing",
                "Waiting for the operator to observe generation 1".into(),
            ),
            kstatus: (
                "InProgress",
                "StableDiffusionDeployment generation is 1, but latest observed generation is -1"
                    .into(),
            ),
            wait_ready: false,
            wait_diverges: None,
        },
        Fixture {
            name: "building",
            object: sdd(
                1,
                false,
                false,
                Some(StableDiffusionDeploymentStatus {
                    observed_generation: Some(1),
                    phase: Phase::Building,
                    message: Some(BUILDING.into()),
                    conditions: vec![
                        cond(
                            "Ready",
                            "False",
                            "Building",
                            "The server image is being built",
                            1,
                        ),
                        cond("Reconciling", "True", "Building", BUILDING, 1),
                        cond("ImageReady", "False", "Building", BUILDING, 1),
                        cond("Synced", "True", "ReconcileSuccess", "", 1),
                    ],
                    replica_summary: Some("0/3".into()),
                    ..Default::default()
                }),
            ),
            argo: ("Progressing", BUILDING.into()),
            kstatus: ("InProgress", BUILDING.into()),
            wait_ready: false,
            wait_diverges: None,
        },
        Fixture {
            name: "stalled",
            object: sdd(
                2,
                false,
                false,
                Some(StableDiffusionDeploymentStatus {
                    observed_generation: Some(2),
                    phase: Phase::Failed,
                    message: Some(STALLED.into()),
                    conditions: vec![
                        cond("Ready", "False", "Stalled", STALLED, 2),
                        cond("Stalled", "True", "GpuClassNotFound", STALLED, 2),
                        cond("ImageReady", "True", "Built", "", 2),
                        cond("Synced", "False", "GpuClassNotFound", STALLED, 2),
                    ],
                    image: Some(image()),
                    ..Default::default()
                }),
            ),
            argo: ("Degraded", STALLED.into()),
            kstatus: ("Failed", STALLED.into()),
            wait_ready: false,
            wait_diverges: None,
        },
        Fixture {
            name: "stalled, but the spec changed since",
            object: sdd(
                3,
                false,
                false,
                Some(StableDiffusionDeploymentStatus {
                    observed_generation: Some(2),
                    phase: Phase::Failed,
                    message: Some(STALLED.into()),
                    conditions: vec![
                        cond("Ready", "False", "Stalled", STALLED, 2),
                        cond("Stalled", "True", "GpuClassNotFound", STALLED, 2),
                    ],
                    ..Default::default()
                }),
            ),
            argo: (
                "Progressing",
                "Waiting for the operator to observe generation 3".into(),
            ),
            kstatus: (
                "InProgress",
                "StableDiffusionDeployment generation is 3, but latest observed generation is 2"
                    .into(),
            ),
            wait_ready: false,
            wait_diverges: None,
        },
    ];

    let serving = StableDiffusionDeploymentStatus {
        observed_generation: Some(3),
        phase: Phase::Running,
        message: Some(READY.into()),
        conditions: vec![
            cond("Ready", "True", "Serving", READY, 3),
            cond("ImageReady", "True", "Built", "", 3),
            cond("Synced", "True", "ReconcileSuccess", "", 3),
        ],
        image: Some(image()),
        container_group: Some(group("dreamshaper-6f2a", 2, "running", running(3))),
        replicas: 3,
        ready_replicas: 3,
        replica_summary: Some("3/3".into()),
        estimated_hourly_cost_usd: Some("0.414".into()),
        endpoint_config_map: Some("dreamshaper-endpoint".into()),
        ..Default::default()
    };

    out.push(Fixture {
        name: "ready, current generation",
        object: sdd(3, false, false, Some(serving.clone())),
        argo: ("Healthy", READY.into()),
        kstatus: ("Current", "Resource is Ready".into()),
        wait_ready: true,
        wait_diverges: None,
    });

    out.push(Fixture {
        name: "ready, but the spec changed since",
        object: sdd(4, false, false, Some(serving.clone())),
        argo: (
            "Progressing",
            "Waiting for the operator to observe generation 4".into(),
        ),
        kstatus: (
            "InProgress",
            "StableDiffusionDeployment generation is 4, but latest observed generation is 3".into(),
        ),
        wait_ready: false,
        wait_diverges: None,
    });

    // A status the operator must never write: it observed generation 4 but left Ready about
    // generation 3 without saying Reconciling=True. Argo CD (our script) and kubectl wait look
    // at the condition's observedGeneration; kstatus does not, and would call it Current.
    let mut stale = serving.clone();
    stale.observed_generation = Some(4);
    out.push(Fixture {
        name: "ready condition left behind (operator bug guard)",
        object: sdd(4, false, false, Some(stale)),
        argo: (
            "Progressing",
            "Ready condition describes generation 3; waiting for generation 4".into(),
        ),
        kstatus: ("Current", "Resource is Ready".into()),
        wait_ready: false,
        wait_diverges: Some(
            "kstatus ignores per-condition observedGeneration, kubectl wait does not: the \
             operator must set Reconciling=True whenever Ready lags status.observedGeneration",
        ),
    });

    let mut stopped = serving.clone();
    stopped.observed_generation = Some(5);
    stopped.phase = Phase::Stopped;
    stopped.message = Some(STOPPED.into());
    stopped.conditions = vec![
        // As crates/controller/src/report.rs writes a finished stop: Ready=True (stopped is the
        // desired state), reason Stopped, no Reconciling. kstatus reports Current, so Flux
        // `wait: true` completes; Argo CD shows Suspended (it checks spec.stopped first).
        cond("Ready", "True", "Stopped", STOPPED, 5),
        cond("ImageReady", "True", "Built", "", 5),
        cond("Synced", "True", "ReconcileSuccess", "", 5),
    ];
    stopped.container_group = Some(group(
        "dreamshaper-6f2a",
        2,
        "stopped",
        InstanceCounts::default(),
    ));
    stopped.replicas = 0;
    stopped.ready_replicas = 0;
    stopped.replica_summary = Some("0/3".into());
    stopped.estimated_hourly_cost_usd = Some("0".into());
    out.push(Fixture {
        name: "stopped",
        object: sdd(5, true, false, Some(stopped)),
        argo: ("Suspended", STOPPED.into()),
        kstatus: ("Current", "Resource is Ready".into()),
        wait_ready: true,
        wait_diverges: None,
    });

    let mut stopping = serving.clone();
    stopping.observed_generation = Some(5);
    stopping.message = Some(STOPPING.into());
    stopping.conditions = vec![
        cond("Ready", "False", "Stopping", STOPPING, 5),
        cond("Reconciling", "True", "Stopping", STOPPING, 5),
        cond("ImageReady", "True", "Built", "", 5),
        cond("Synced", "True", "ReconcileSuccess", "", 5),
    ];
    stopping.container_group = Some(group(
        "dreamshaper-6f2a",
        2,
        "running",
        InstanceCounts {
            running: 1,
            ready: 1,
            stopping: 2,
            ..InstanceCounts::default()
        },
    ));
    out.push(Fixture {
        name: "stopping",
        object: sdd(5, true, false, Some(stopping)),
        argo: ("Progressing", STOPPING.into()),
        kstatus: ("InProgress", STOPPING.into()),
        wait_ready: false,
        wait_diverges: None,
    });

    let mut updating = serving.clone();
    updating.observed_generation = Some(6);
    updating.phase = Phase::Updating;
    updating.message = Some(ROLLOUT.into());
    updating.conditions = vec![
        cond("Ready", "False", "RollingOut", ROLLOUT, 6),
        cond("Reconciling", "True", "RollingOut", ROLLOUT, 6),
        cond("ImageReady", "True", "Built", "", 6),
        cond("Synced", "True", "ReconcileSuccess", "", 6),
    ];
    updating.previous_container_group = serving.container_group.clone();
    updating.container_group = Some(group(
        "dreamshaper-81c4",
        1,
        "deploying",
        InstanceCounts {
            allocating: 1,
            creating: 1,
            running: 1,
            ready: 1,
            stopping: 0,
        },
    ));
    updating.replicas = 3;
    updating.ready_replicas = 1;
    updating.replica_summary = Some("1/3".into());
    out.push(Fixture {
        name: "updating (BlueGreen)",
        object: sdd(6, false, false, Some(updating)),
        argo: ("Progressing", ROLLOUT.into()),
        kstatus: ("InProgress", ROLLOUT.into()),
        wait_ready: false,
        wait_diverges: None,
    });

    let mut deleting = serving;
    deleting.phase = Phase::Deleting;
    deleting.message = Some(DELETING.into());
    deleting.conditions = vec![
        cond("Ready", "False", "Deleting", DELETING, 3),
        cond("Reconciling", "True", "Deleting", DELETING, 3),
    ];
    out.push(Fixture {
        name: "deleting",
        object: sdd(3, false, true, Some(deleting)),
        argo: ("Progressing", DELETING.into()),
        kstatus: ("Terminating", "Resource scheduled for deletion".into()),
        wait_ready: false,
        wait_diverges: None,
    });

    out
}

// ---------------------------------------------------------------------------------------------
// Argo CD: run health.lua under lua5.4.
// ---------------------------------------------------------------------------------------------

/// Kills the child if the test gives up on it.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn lua() -> &'static str {
    match Command::new("lua5.4")
        .arg("-v")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => "lua5.4",
        Ok(out) => panic!(
            "`lua5.4 -v` failed ({}): {}; reinstall it with scripts/ensure-deps.sh",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "lua5.4 is not installed; it runs the Argo CD health check in this test. \
             Run scripts/ensure-deps.sh (or `apt-get install lua5.4`)"
        ),
        Err(e) => panic!("cannot run lua5.4 ({e}); run scripts/ensure-deps.sh"),
    }
}

/// A JSON value as a Lua table constructor, the shape Argo CD hands to the script: objects and
/// arrays become tables (arrays 1-based), null becomes nil.
fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.is_finite() => format!("{f:?}"),
            _ => panic!("number {n} has no Lua literal"),
        },
        Value::String(s) => {
            let mut out = String::from("\"");
            for byte in s.bytes() {
                match byte {
                    b'"' => out.push_str("\\\""),
                    b'\\' => out.push_str("\\\\"),
                    0x20..=0x7e => out.push(byte as char),
                    _ => out.push_str(&format!("\\{byte:03}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "[{}] = {}",
                        lua_literal(&Value::String(k.clone())),
                        lua_literal(v)
                    )
                })
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// Loads health.lua the way Argo CD does by default (util/lua/lua.go: base, table, package and a
/// safe os library; no string, io or debug), with `obj` as a global, and prints
/// `status\nmessage`.
const HARNESS: &str = r#"
local path = arg[1]
local file = assert(io.open(path, "r"))
local source = file:read("a")
file:close()
local env = {
  obj = OBJ,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = table.unpack,
  table = table,
}
local chunk, err = load(source, "=health.lua", "t", env)
if chunk == nil then
  io.stderr:write("health.lua does not compile: ", err, "\n")
  os.exit(2)
end
-- Strings get no methods in Argo CD's sandbox either.
getmetatable("").__index = nil
local ok, hs = pcall(chunk)
getmetatable("").__index = string
if not ok then
  io.stderr:write("health.lua raised: ", tostring(hs), "\n")
  os.exit(3)
end
if type(hs) ~= "table" then
  io.stderr:write("health.lua returned ", type(hs), ", not a table\n")
  os.exit(4)
end
local valid = { Healthy = true, Progressing = true, Degraded = true, Suspended = true }
if not valid[hs.status] then
  io.stderr:write("health.lua returned status ", tostring(hs.status), "\n")
  os.exit(5)
end
if hs.message ~= nil and type(hs.message) ~= "string" then
  io.stderr:write("health.lua returned a ", type(hs.message), " message\n")
  os.exit(6)
end
io.write(hs.status, "\n", hs.message or "")
"#;

fn argo_health(lua: &str, script: &Path, object: &Value, tag: &str) -> (String, String) {
    let harness = HARNESS.replace("OBJ", &lua_literal(object));
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let file = tmp.join(format!("argocd-health-{}-{tag}.lua", std::process::id()));
    std::fs::write(&file, harness).expect("write the Lua harness");
    let child = Command::new(lua)
        .arg(&file)
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lua5.4");
    let mut guard = KillOnDrop(Some(child));
    let deadline = Instant::now() + LUA_TIMEOUT;
    loop {
        let child = guard.0.as_mut().expect("child");
        if child.try_wait().expect("poll lua5.4").is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lua5.4 did not finish within {LUA_TIMEOUT:?} on fixture {tag}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = guard
        .0
        .take()
        .expect("child")
        .wait_with_output()
        .expect("collect lua5.4 output");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "health.lua failed on fixture {tag} ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let (status, message) = stdout.split_once('\n').expect("status and message lines");
    (status.to_string(), message.to_string())
}

#[test]
fn argocd_health_check_reads_every_fixture_as_expected() {
    let lua = lua();
    let script = repo_root().join("manifests/argocd/health.lua");
    let mut wrong = Vec::new();
    for (i, f) in fixtures().iter().enumerate() {
        let got = argo_health(lua, &script, &f.object, &i.to_string());
        if (got.0.as_str(), &got.1) != (f.argo.0, &f.argo.1) {
            wrong.push(format!(
                "{}: expected {} {:?}, got {} {:?}",
                f.name, f.argo.0, f.argo.1, got.0, got.1
            ));
        }
    }
    assert!(wrong.is_empty(), "Argo CD health:\n{}", wrong.join("\n"));
}

#[test]
fn the_lua_harness_sees_the_object_argocd_would_pass() {
    // A script that echoes fields back proves the JSON -> Lua conversion (escapes, nesting,
    // arrays, integers) before anything depends on it.
    let lua = lua();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let echo = tmp.join(format!("argocd-echo-{}.lua", std::process::id()));
    std::fs::write(
        &echo,
        "return { status = 'Healthy', message = obj.status.conditions[2].message .. '|' .. \
         obj.metadata.generation .. '|' .. tostring(obj.spec.stopped) .. '|' .. \
         obj.status.conditions[2].type }",
    )
    .unwrap();
    let stalled = fixtures()
        .into_iter()
        .find(|f| f.name == "stalled")
        .expect("the stalled fixture");
    let got = argo_health(lua, &echo, &stalled.object, "echo");
    let _ = std::fs::remove_file(&echo);
    assert_eq!(got.1, format!("{STALLED}|2|false|Stalled"));
}

#[test]
fn health_lua_uses_only_what_argocd_provides() {
    // Argo CD runs gopher-lua (Lua 5.1) without the string/io libraries unless useOpenLibs is
    // set; lua5.4 accepts more, so reject 5.2+ syntax and library use textually.
    let source = read(&repo_root().join("manifests/argocd/health.lua"));
    let strings = Regex::new(r#""([^"\\]|\\.)*""#).unwrap();
    let mut problems = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let code = line.split("--").next().unwrap_or("");
        let code = strings.replace_all(code, "\"\"");
        for token in [
            "//", "goto", "<const>", "<close>", "&", "|", ">>", "<<", "string.", "io.", "os.",
            "require", "load", "debug.", ":",
        ] {
            if code.contains(token) {
                problems.push(format!("line {}: `{token}` in {line:?}", n + 1));
            }
        }
        if code.replace("~=", "").contains('~') {
            problems.push(format!("line {}: bitwise `~` in {line:?}", n + 1));
        }
    }
    assert!(problems.is_empty(), "health.lua:\n{}", problems.join("\n"));
    assert!(
        source.trim_end().ends_with("return hs"),
        "the script must end by returning hs"
    );
}

/// The argocd-cm patch, with health.lua embedded as a block scalar.
fn render_argocd_cm_patch(script: &str) -> String {
    let mut out = String::from(
        "# Installs the StableDiffusionDeployment health check into Argo CD. Generated from\n\
         # health.lua: edit that file, then run\n\
         #   UPDATE_ARGOCD_PATCH=1 cargo test -p salad-sd-api --test integrations\n\
         #\n\
         # Apply with:\n\
         #   kubectl -n argocd patch configmap argocd-cm --type merge \\\n\
         #     --patch-file manifests/argocd/argocd-cm-patch.yaml\n\
         # or list it under `patches:` in the kustomization that installs Argo CD.\n\
         apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n\
         \x20 name: argocd-cm\n\
         \x20 namespace: argocd\n\
         data:\n",
    );
    out.push_str(&format!("  {HEALTH_KEY}: |\n"));
    for line in script.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn argocd_cm_patch_embeds_health_lua_verbatim() {
    let dir = repo_root().join("manifests/argocd");
    let script = read(&dir.join("health.lua"));
    let rendered = render_argocd_cm_patch(&script);
    let path = dir.join("argocd-cm-patch.yaml");
    if std::env::var_os("UPDATE_ARGOCD_PATCH").is_some() {
        std::fs::write(&path, &rendered).expect("write argocd-cm-patch.yaml");
    }
    let committed = read(&path);
    assert_eq!(
        committed, rendered,
        "manifests/argocd/argocd-cm-patch.yaml is out of date with health.lua; run \
         UPDATE_ARGOCD_PATCH=1 cargo test -p salad-sd-api --test integrations"
    );
    // And a YAML parser reads back exactly the script, under the key Argo CD looks up.
    let parsed: Value = serde_saphyr::from_str(&committed).expect("the patch is valid YAML");
    assert_eq!(parsed["kind"], "ConfigMap");
    assert_eq!(parsed["metadata"]["name"], "argocd-cm");
    assert_eq!(parsed["data"][HEALTH_KEY].as_str(), Some(script.as_str()));
}

// ---------------------------------------------------------------------------------------------
// kstatus, as Flux computes readiness for `wait: true` and `healthChecks`.
//
// Port of kubernetes-sigs/cli-utils pkg/kstatus/status (status.go `Compute`, generic.go
// `checkGenericProperties`/`checkGeneration`, status.go `checkReadyCondition`), the rules the
// pkg/kstatus/README.md documents for custom resources:
// - "If the `generation` and the `observedGeneration` of a resource does not match, it means
//   there are changes that the controller has not yet seen" -> InProgress;
// - Reconciling=True ("The controller is currently working on reconciling the latest
//   changes") -> InProgress, Stalled=True ("encountered an error ... or insufficient progress")
//   -> Failed, whichever comes first in status.conditions;
// - "If there is a `Ready` condition and it is `True`, the library will consider the resource
//   to be fully reconciled. If ... `False`, ... in the process of reconciling" (Unknown too);
// - otherwise "the absence of any known conditions means the resource is current".
// StableDiffusionDeployment has no type-specific (legacy) rule, so that step is skipped.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct KstatusResult {
    status: &'static str,
    message: String,
}

/// `unstructured.NestedInt64`: (value, found), or an error when the field is not an int64.
fn nested_i64(object: &Value, path: &[&str]) -> Result<Option<i64>, String> {
    let mut node = object;
    for key in path {
        match node.get(key) {
            Some(next) => node = next,
            None => return Ok(None),
        }
    }
    node.as_i64()
        .map(Some)
        .ok_or_else(|| format!("{} is {node}, not an int64", path.join(".")))
}

/// `GetObjectWithConditions`: type, status, reason, message of each condition, in order.
fn kstatus_conditions(object: &Value) -> Vec<[String; 4]> {
    let Some(list) = object
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let field = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    list.iter()
        .map(|c| {
            [
                field(c, "type"),
                field(c, "status"),
                field(c, "reason"),
                field(c, "message"),
            ]
        })
        .collect()
}

fn kstatus_compute(object: &Value) -> Result<KstatusResult, String> {
    let result = |status, message: &str| {
        Ok(KstatusResult {
            status,
            message: message.to_string(),
        })
    };
    // checkGenericProperties: deletion first.
    if let Some(ts) = object
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .and_then(Value::as_str)
        && !ts.is_empty()
    {
        return result("Terminating", "Resource scheduled for deletion");
    }
    // checkGeneration: only when both fields are present.
    if let Some(generation) = nested_i64(object, &["metadata", "generation"])?
        && let Some(observed) = nested_i64(object, &["status", "observedGeneration"])?
        && observed != generation
    {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        return result(
            "InProgress",
            &format!(
                "{kind} generation is {generation}, but latest observed generation is {observed}"
            ),
        );
    }
    let conditions = kstatus_conditions(object);
    for [type_, status, _reason, message] in &conditions {
        if type_ == "Reconciling" && status == "True" {
            return result("InProgress", message);
        }
        if type_ == "Stalled" && status == "True" {
            return result("Failed", message);
        }
    }
    // checkReadyCondition.
    for [type_, status, _reason, message] in &conditions {
        if type_ != "Ready" {
            continue;
        }
        match status.as_str() {
            "True" => return result("Current", "Resource is Ready"),
            "False" | "Unknown" => return result("InProgress", message),
            _ => {}
        }
    }
    result("Current", "Resource is current")
}

#[test]
fn kstatus_reads_every_fixture_as_expected() {
    let mut wrong = Vec::new();
    for f in fixtures() {
        let got = kstatus_compute(&f.object).expect("kstatus computes");
        let want = KstatusResult {
            status: f.kstatus.0,
            message: f.kstatus.1.clone(),
        };
        if got != want {
            wrong.push(format!("{}: expected {want:?}, got {got:?}", f.name));
        }
    }
    assert!(wrong.is_empty(), "kstatus:\n{}", wrong.join("\n"));
}

#[test]
fn kstatus_port_follows_the_upstream_rules() {
    // Hand-made objects for the branches the fixtures do not reach, so the port itself is
    // checked, not only our statuses.
    let base = |status: Value| {
        serde_json::json!({"kind": "StableDiffusionDeployment", "metadata": {"generation": 2},
                           "status": status})
    };
    let c = |t: &str, s: &str, m: &str| serde_json::json!({"type": t, "status": s, "message": m});
    let cases = [
        // Stalled listed before Reconciling wins: first match in list order.
        (
            base(serde_json::json!({"observedGeneration": 2,
                "conditions": [c("Stalled", "True", "stuck"), c("Reconciling", "True", "busy")]})),
            ("Failed", "stuck"),
        ),
        (
            base(serde_json::json!({"observedGeneration": 2,
                "conditions": [c("Ready", "Unknown", "checking")]})),
            ("InProgress", "checking"),
        ),
        // Stalled=False and Reconciling=False are ignored; Ready decides.
        (
            base(serde_json::json!({"observedGeneration": 2,
                "conditions": [c("Stalled", "False", ""), c("Reconciling", "False", ""),
                               c("Ready", "True", "ok")]})),
            ("Current", "Resource is Ready"),
        ),
        // No observedGeneration at all: the generation check is skipped.
        (
            base(serde_json::json!({"conditions": [c("Ready", "False", "not yet")]})),
            ("InProgress", "not yet"),
        ),
        (
            base(serde_json::json!({"observedGeneration": 2})),
            ("Current", "Resource is current"),
        ),
    ];
    for (object, (status, message)) in cases {
        let got = kstatus_compute(&object).unwrap();
        assert_eq!(
            (got.status, got.message.as_str()),
            (status, message),
            "{object}"
        );
    }
    let bad = serde_json::json!({"metadata": {"generation": "2"}});
    assert!(
        kstatus_compute(&bad).is_err(),
        "NestedInt64 rejects a non-integer"
    );
}

// ---------------------------------------------------------------------------------------------
// kubectl wait --for=condition=Ready
//
// Port of kubernetes/kubectl pkg/cmd/wait/condition.go `ConditionalWait.checkCondition` and
// `getObservedGeneration`: the first condition whose type matches (case-insensitively)
// decides; if metadata.generation is set and the condition's observedGeneration (else
// status.observedGeneration) is lower, it is not met yet; otherwise the status must equal
// "True" (case-insensitively).
// ---------------------------------------------------------------------------------------------

fn kubectl_wait_met(object: &Value, condition: &str, want: &str) -> bool {
    let Some(list) = object
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
    else {
        return false;
    };
    for c in list {
        let Some(type_) = c.get("type").and_then(Value::as_str) else {
            continue;
        };
        if !type_.eq_ignore_ascii_case(condition) {
            continue;
        }
        let Some(status) = c.get("status").and_then(Value::as_str) else {
            continue;
        };
        if let Ok(Some(generation)) = nested_i64(object, &["metadata", "generation"]) {
            let observed = match nested_i64(c, &["observedGeneration"]) {
                Ok(Some(g)) => Some(g),
                _ => nested_i64(object, &["status", "observedGeneration"])
                    .ok()
                    .flatten(),
            };
            if observed.is_some_and(|g| g < generation) {
                return false;
            }
        }
        return status.eq_ignore_ascii_case(want);
    }
    false
}

fn ready_is_true(object: &Value) -> bool {
    kstatus_conditions(object)
        .iter()
        .any(|[t, s, _, _]| t == "Ready" && s == "True")
}

#[test]
fn kubectl_wait_for_ready_agrees_with_kstatus_current() {
    let mut wrong = Vec::new();
    for f in fixtures() {
        let current = f.kstatus.0 == "Current";
        let waited = kubectl_wait_met(&f.object, "Ready", "True");
        if waited != f.wait_ready {
            wrong.push(format!(
                "{}: kubectl wait expected {}, got {waited}",
                f.name, f.wait_ready
            ));
        }
        // Once the operator has written status for the current generation, a Ready condition
        // with status True exists exactly when kstatus says Current. (Before that, Ready may
        // still say True about the previous spec; the generation checks above cover it.)
        let observed = nested_i64(&f.object, &["status", "observedGeneration"]).unwrap();
        let generation = nested_i64(&f.object, &["metadata", "generation"]).unwrap();
        if observed.is_some() && observed == generation && ready_is_true(&f.object) != current {
            wrong.push(format!(
                "{}: Ready=True is {} but kstatus is {}",
                f.name,
                ready_is_true(&f.object),
                f.kstatus.0
            ));
        }
        // kubectl wait returns exactly on Current, except where the fixture says why not.
        match (waited == current, f.wait_diverges) {
            (true, None) | (false, Some(_)) => {}
            (true, Some(why)) => wrong.push(format!(
                "{}: marked as diverging ({why}) but kubectl wait and kstatus agree",
                f.name
            )),
            (false, None) => wrong.push(format!(
                "{}: kubectl wait returns {waited} but kstatus is {}",
                f.name, f.kstatus.0
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn fixtures_cover_every_health_and_kstatus_outcome() {
    let fixtures = fixtures();
    let argo: BTreeSet<&str> = fixtures.iter().map(|f| f.argo.0).collect();
    let kstatus: BTreeSet<&str> = fixtures.iter().map(|f| f.kstatus.0).collect();
    assert_eq!(
        argo,
        BTreeSet::from(["Degraded", "Healthy", "Progressing", "Suspended"])
    );
    assert_eq!(
        kstatus,
        BTreeSet::from(["Current", "Failed", "InProgress", "Terminating"])
    );
    let names: BTreeSet<&str> = fixtures.iter().map(|f| f.name).collect();
    assert_eq!(names.len(), fixtures.len(), "fixture names are unique");
}

// ---------------------------------------------------------------------------------------------
// Grafana: the dashboard queries only the metrics the operator exports.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// The metrics contract: name, type, labels. The operator's /metrics must export exactly these
/// names (histograms as `_bucket`, `_sum`, `_count`). Label values the dashboard relies on:
/// `salad_sd_saladcloud_requests_total{status}` is the HTTP status code ("429"),
/// `salad_sd_build_bytes_total{direction}` is "uploaded" or "downloaded",
/// `salad_sd_deployments{phase}` is a status.phase value ("Failed", ...).
const METRICS: &[(&str, MetricKind, &[&str])] = &[
    ("salad_sd_reconcile_total", MetricKind::Counter, &["result"]),
    (
        "salad_sd_reconcile_errors_total",
        MetricKind::Counter,
        &["category"],
    ),
    (
        "salad_sd_reconcile_duration_seconds",
        MetricKind::Histogram,
        &[],
    ),
    (
        "salad_sd_saladcloud_requests_total",
        MetricKind::Counter,
        &["operation", "status"],
    ),
    (
        "salad_sd_saladcloud_request_duration_seconds",
        MetricKind::Histogram,
        &[],
    ),
    (
        "salad_sd_build_bytes_total",
        MetricKind::Counter,
        &["direction"],
    ),
    (
        "salad_sd_build_duration_seconds",
        MetricKind::Histogram,
        &[],
    ),
    ("salad_sd_builds_in_progress", MetricKind::Gauge, &[]),
    ("salad_sd_deployments", MetricKind::Gauge, &["phase"]),
    ("salad_sd_ready_replicas", MetricKind::Gauge, &[]),
    ("salad_sd_estimated_hourly_cost_usd", MetricKind::Gauge, &[]),
    ("salad_sd_fleet_instances", MetricKind::Gauge, &["state"]),
    (
        "salad_sd_fleet_instance_cpu_percent",
        MetricKind::Gauge,
        &["stat"],
    ),
    (
        "salad_sd_fleet_instance_memory_mb",
        MetricKind::Gauge,
        &["stat"],
    ),
    (
        "salad_sd_fleet_download_progress_percent",
        MetricKind::Gauge,
        &["stat"],
    ),
    (
        "salad_sd_fleet_interruptions_total",
        MetricKind::Counter,
        &[],
    ),
    (
        "salad_sd_fleet_reallocations_total",
        MetricKind::Counter,
        &["by"],
    ),
    (
        "salad_sd_instance_cpu_percent",
        MetricKind::Gauge,
        &["resource_namespace", "resource_name", "slot"],
    ),
    (
        "salad_sd_instance_memory_mb",
        MetricKind::Gauge,
        &["resource_namespace", "resource_name", "slot"],
    ),
    (
        "salad_sd_instance_download_progress_percent",
        MetricKind::Gauge,
        &["resource_namespace", "resource_name", "slot"],
    ),
];

/// Labels Prometheus adds to every scraped series; usable in any query.
const TARGET_LABELS: &[&str] = &["job", "instance", "namespace", "pod"];

const PROMQL_FUNCTIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "topk",
    "bottomk",
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "abs",
    "round",
    "vector",
    "scalar",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "sum_over_time",
];

/// The series names a metric exports, each with the labels it carries.
fn exported_series() -> BTreeMap<String, Vec<&'static str>> {
    let mut out = BTreeMap::new();
    for &(name, kind, labels) in METRICS {
        if kind == MetricKind::Histogram {
            let mut bucket = labels.to_vec();
            bucket.push("le");
            out.insert(format!("{name}_bucket"), bucket);
            out.insert(format!("{name}_sum"), labels.to_vec());
            out.insert(format!("{name}_count"), labels.to_vec());
        } else {
            out.insert(name.to_string(), labels.to_vec());
        }
    }
    out
}

/// Problems with one PromQL expression: unknown series, functions or labels.
fn promql_problems(expr: &str) -> Vec<String> {
    let series = exported_series();
    let mut problems = Vec::new();
    let strings = Regex::new(r#""([^"\\]|\\.)*"|'([^'\\]|\\.)*'"#).unwrap();
    let grouping = Regex::new(r"\b(by|without)\s*\(([^)]*)\)").unwrap();
    let matchers = Regex::new(r"\{([^}]*)\}").unwrap();
    let matcher_label = Regex::new(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)").unwrap();
    let variables = Regex::new(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*").unwrap();
    let ranges = Regex::new(r"\[[^\]]*\]").unwrap();
    let identifier = Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?").unwrap();
    let numbers = Regex::new(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b").unwrap();

    let mut labels_used = BTreeSet::new();
    let text = strings.replace_all(expr, "\"\"").to_string();
    for m in matchers.captures_iter(&text) {
        for l in matcher_label.captures_iter(&m[1]) {
            labels_used.insert(l[1].to_string());
        }
    }
    for g in grouping.captures_iter(&text) {
        for l in g[2].split(',').map(str::trim).filter(|l| !l.is_empty()) {
            labels_used.insert(l.to_string());
        }
    }
    let text = grouping.replace_all(&text, " ");
    let text = matchers.replace_all(&text, " ");
    let text = variables.replace_all(&text, " ");
    let text = ranges.replace_all(&text, " ");
    let text = numbers.replace_all(&text, " ");

    let mut allowed_labels: BTreeSet<&str> = TARGET_LABELS.iter().copied().collect();
    let mut used_metric = false;
    for m in identifier.find_iter(&text) {
        let token = m.as_str();
        let name = token.trim_end_matches('(').trim_end();
        if ["by", "without", "and", "or", "unless", "bool", "offset"].contains(&name) {
            continue;
        }
        if token.ends_with('(') {
            if !PROMQL_FUNCTIONS.contains(&name) {
                problems.push(format!("unknown function {name}()"));
            }
        } else if let Some(labels) = series.get(name) {
            used_metric = true;
            allowed_labels.extend(labels.iter().copied());
        } else {
            problems.push(format!("`{name}` is not a series the operator exports"));
        }
    }
    if !used_metric {
        problems.push("queries no operator metric".into());
    }
    for label in &labels_used {
        if !allowed_labels.contains(label.as_str()) {
            problems.push(format!("label `{label}` is not on the queried metrics"));
        }
    }
    problems
}

fn dashboard() -> Value {
    let path = repo_root().join("manifests/grafana/salad-sd-operator.json");
    serde_json::from_str(&read(&path)).expect("the dashboard is valid JSON")
}

/// Every panel, including those nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(p) = stack.pop() {
        if let Some(nested) = p.get("panels").and_then(Value::as_array) {
            stack.extend(nested.iter());
        }
        out.push(p);
    }
    out
}

#[test]
fn promql_check_rejects_what_the_operator_does_not_export() {
    assert!(promql_problems("sum by (result) (rate(salad_sd_reconcile_total[5m]))").is_empty());
    let bad = [
        "rate(salad_sd_reconcile_totals[5m])",
        "histogram_quantile(0.9, rate(salad_sd_build_duration_seconds[5m]))",
        "sum by (phase) (rate(salad_sd_reconcile_total[5m]))",
        r#"salad_sd_build_bytes_total{dir="uploaded"}"#,
        "predict_linear(salad_sd_ready_replicas[1h], 60)",
        "vector(240)",
    ];
    for expr in bad {
        assert!(!promql_problems(expr).is_empty(), "should reject {expr}");
    }
}

#[test]
fn grafana_dashboard_queries_only_contract_metrics() {
    let dashboard = dashboard();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let series = exported_series();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel
            .get("targets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let expr = target["expr"].as_str().unwrap_or("");
            for p in promql_problems(expr) {
                problems.push(format!("{title}: {p} in `{expr}`"));
            }
            for name in series.keys() {
                if expr.contains(name.as_str()) {
                    used.insert(name.clone());
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for &(name, _, _) in METRICS {
        assert!(
            used.iter().any(|s| s.starts_with(name)),
            "no panel shows {name}"
        );
    }
}

#[test]
fn grafana_dashboard_is_importable_and_has_the_panels() {
    let dashboard = dashboard();
    let schema = dashboard["schemaVersion"].as_i64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(
        dashboard["id"].is_null(),
        "id must be null so import creates a new dashboard"
    );

    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a `datasource` variable of type datasource/prometheus"
    );

    let all = panels(&dashboard);
    let mut ids = BTreeSet::new();
    for p in &all {
        let id = p["id"].as_i64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        let grid = &p["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(grid[k].is_i64(), "panel {id} gridPos.{k}");
        }
        assert!(grid["x"].as_i64().unwrap() + grid["w"].as_i64().unwrap() <= 24);
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {id} uses the datasource variable"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel {id} has queries");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}");
            }
        }
    }

    let find = |needle: &str| -> Vec<&Value> {
        all.iter()
            .copied()
            .filter(|p| {
                p.get("targets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|t| t["expr"].as_str().is_some_and(|e| e.contains(needle)))
            })
            .collect()
    };
    let must = [
        "sum by (result) (rate(salad_sd_reconcile_total",
        "sum by (category) (rate(salad_sd_reconcile_errors_total",
        "histogram_quantile(0.5, sum by (le) (rate(salad_sd_reconcile_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(salad_sd_reconcile_duration_seconds_bucket",
        "salad_sd_saladcloud_requests_total{status=\"429\"}",
        "sum by (direction) (rate(salad_sd_build_bytes_total",
        "salad_sd_builds_in_progress",
        "sum by (phase) (max without (instance, pod) (salad_sd_deployments))",
        "salad_sd_ready_replicas",
        "salad_sd_estimated_hourly_cost_usd",
    ];
    for needle in must {
        assert!(!find(needle).is_empty(), "no panel queries `{needle}`");
    }

    // Requests per minute against the 240/min budget, drawn as a threshold line.
    let budget: Vec<&Value> =
        find("rate(salad_sd_saladcloud_requests_total[$__rate_interval])) * 60")
            .into_iter()
            .filter(|p| {
                let d = &p["fieldConfig"]["defaults"];
                d["custom"]["thresholdsStyle"]["mode"] == "line"
                    && d["thresholds"]["steps"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|step| step["value"] == 240))
            })
            .collect();
    assert_eq!(
        budget.len(),
        1,
        "one requests/min panel with a threshold line at 240"
    );
}
