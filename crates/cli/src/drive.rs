//! `salad-sd apply | diff | delete -f FILE`: the operator's engine driven by a file instead of
//! a watch, for CI pipelines and for people without a cluster.
//!
//! Nothing is persisted between runs: every run re-observes SaladCloud (the engine lists the
//! project's container groups when it has no status) and recognises its groups by the uid in
//! their environment (see [`crate::resource`] for how the uid is chosen).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use salad_sd_api::StableDiffusionDeployment;
use salad_sd_api::condition::STALLED;
use salad_sd_controller::desired;
use salad_sd_controller::failure::Backoff;
use salad_sd_controller::metrics::Metrics;
use salad_sd_controller::plan::{Action, DeleteReason, PatchReason, Plan};
use salad_sd_controller::reason::Reason;
use salad_sd_controller::secrets::{self, MapSecretStore};
use salad_sd_controller::{Engine, EngineConfig, Mode, Reconciled};
use serde_json::json;

use crate::build::{BuildFlags, build_image};
use crate::creds;
use crate::exit::{EXIT_CHANGES, EXIT_ERROR, EXIT_OK, EXIT_STALLED, EXIT_TIMEOUT};
use crate::output::{Format, Printer};
use crate::resource;

/// `apply --help` epilogue.
pub const APPLY_HELP: &str = concat!(
    "Builds and pushes the image (progress per layer), then creates or updates the container\n",
    "group. Without --wait it returns once SaladCloud accepted the changes; with --wait it\n",
    "follows the rollout (events, instance counts, smoke test) until Ready, Stalled or --timeout.\n",
    "A BlueGreen rollout retires the old group once the new one serves (with --wait, or on a\n",
    "later apply).\n\n",
    "Exit codes:\n",
    "  0  ok: applied / in sync / Ready\n",
    "  1  error (unreadable file, missing credentials, SaladCloud or the registry unreachable, …)\n",
    "  2  diff only: there are changes to apply (like `terraform plan -detailed-exitcode`)\n",
    "  3  stalled: the spec (or a Secret it names) must change; the message names the field\n",
    "  4  timed out (--timeout) before Ready / deleted\n\n",
    "Credentials come from the environment or files, never from arguments:\n",
    "  SALAD_API_KEY, or SALAD_API_KEY_FILE=path      the key of spec.saladcloud.apiKeySecretRef\n",
    "  SALAD_SD_SECRET_<SECRET>_<KEY>[_FILE]          any other Secret key the spec names; names are\n",
    "                                                 upper-cased, camelCase split, other characters\n",
    "                                                 made `_` (Secret `registry-push`, key\n",
    "                                                 `.dockerconfigjson` → SALAD_SD_SECRET_REGISTRY_PUSH_DOCKERCONFIGJSON)\n",
    "  --secrets-dir DIR (or SALAD_SD_SECRETS_DIR)    files DIR/<secret>/<key> (a mounted Secret's layout)\n\n",
    "Identity: without a cluster the resource gets metadata.uid from the file, or a deterministic\n",
    "one derived from organization, project, namespace and name; metadata.generation from the file,\n",
    "or 1. The same file therefore always manages the same container groups. Status is not kept\n",
    "between runs: every run re-observes SaladCloud."
);

/// `diff --help` epilogue.
pub const DIFF_HELP: &str = concat!(
    "Prints whether an image build is needed (recipe, layers) and what would happen to the\n",
    "container group: create, patch (which fields), replace, start/stop, retire, or nothing.\n",
    "Reads SaladCloud and the registry; changes nothing.\n\n",
    "Exit codes:\n",
    "  0  in sync: nothing to do\n",
    "  1  error (unreadable file, missing credentials, SaladCloud or the registry unreachable, …)\n",
    "  2  there are changes to apply (like `terraform plan -detailed-exitcode`)\n",
    "  3  stalled: the spec (or a Secret it names) must change; the message names the field\n\n",
    "Credentials: as for `apply` (see `salad-sd apply --help`)."
);

/// `delete --help` epilogue.
pub const DELETE_HELP: &str = concat!(
    "Deletes every container group this resource created (found by the uid in their\n",
    "environment) and waits until SaladCloud no longer lists them. deletionPolicy: Orphan\n",
    "leaves them running.\n\n",
    "Exit codes: 0 deleted (or nothing to delete), 1 error, 3 stalled, 4 timed out.\n",
    "Credentials: as for `apply` (see `salad-sd apply --help`)."
);

/// Flags shared by apply, diff and delete.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// The StableDiffusionDeployment YAML (`-` for stdin).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// SaladCloud API base URL (the simulator's for the demo and tests).
    #[arg(long, env = "SALAD_API_URL", default_value = saladcloud::DEFAULT_BASE_URL)]
    pub salad_api_url: String,
    #[command(flatten)]
    pub build: BuildFlags,
    /// Send the smoke test here, with the access domain as `Host`, instead of
    /// `https://<access domain>` (the simulator's gateway: `http://127.0.0.1:PORT`).
    #[arg(long, env = "SALAD_SD_GATEWAY_URL")]
    pub gateway_url: Option<String>,
    /// Directory of Secrets: `<dir>/<secret>/<key>` files.
    #[arg(long, env = "SALAD_SD_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: Format,
}

/// Flags of `salad-sd apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Follow the rollout until Ready (exit 0), Stalled (3) or --timeout (4).
    #[arg(long)]
    pub wait: bool,
    /// Give up after this long (`90s`, `20m`, `1h`).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Look at SaladCloud at most this often while waiting.
    #[arg(long, default_value = "2s", value_parser = parse_duration, hide = true)]
    pub interval: Duration,
}

/// Flags of `salad-sd diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub common: Common,
}

/// Flags of `salad-sd delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: Common,
    /// Give up waiting for the groups to disappear after this long.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Look at SaladCloud at most this often while waiting.
    #[arg(long, default_value = "2s", value_parser = parse_duration, hide = true)]
    pub interval: Duration,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    salad_sd_controller::engine::parse_duration(s)
        .ok_or_else(|| format!("`{s}` is not a duration like 90s, 20m or 1h"))
}

struct Session {
    sdd: StableDiffusionDeployment,
    store: MapSecretStore,
    engine: Engine,
    cfg: EngineConfig,
    printer: Printer,
    valid: bool,
}

fn prepare(c: &Common, interval: Duration) -> Result<Session, u8> {
    let printer = Printer {
        format: c.output,
        stderr: false,
    };
    let sdd = resource::load(&c.file).map_err(|e| {
        eprintln!("error: {e:#}");
        EXIT_ERROR
    })?;
    let (store, have_key) = creds::store(&sdd.spec, &creds::from_process(c.secrets_dir.as_deref()))
        .map_err(|e| {
            eprintln!("error: {e:#}");
            EXIT_ERROR
        })?;
    let valid = salad_sd_api::validate::validate(&sdd.spec).is_empty();
    if valid && !have_key {
        eprintln!("error: {}", creds::missing_api_key_help(&sdd.spec));
        return Err(EXIT_ERROR);
    }
    let cfg = EngineConfig {
        salad_api_url: c.salad_api_url.clone(),
        progress_interval: interval,
        builds: c.build.settings(),
        gateway_override: c.gateway_url.clone(),
        ..EngineConfig::default()
    };
    let engine = Engine::new(cfg.clone(), Arc::new(Metrics::new()));
    Ok(Session {
        sdd,
        store,
        engine,
        cfg,
        printer,
        valid,
    })
}

fn stalled(r: &Reconciled) -> bool {
    r.status.is_true(STALLED)
}

fn ready(r: &Reconciled, generation: i64) -> bool {
    r.status.is_ready_at(Some(generation))
}

/// Ends a reconcile loop on a stall, a terminal error, or too many transient errors in a row
/// (with its exit code); counts the transient ones.
fn stop_on_failure(
    printer: Printer,
    backoff: &Backoff,
    r: &Reconciled,
    failures: &mut u32,
) -> Option<u8> {
    if stalled(r) {
        return Some(result(
            printer,
            "stalled",
            EXIT_STALLED,
            &stalled_message(r),
            Some(r),
        ));
    }
    match &r.failure {
        Some(failure) => {
            *failures += 1;
            let transient = !failure.is_stalled();
            if !backoff.gives_up(failure, *failures) {
                return None;
            }
            let reason = failure.reason();
            let m = if transient {
                format!("{reason} {failures} times in a row: {}", status_message(r))
            } else {
                format!("{reason}: {}", status_message(r))
            };
            Some(result(printer, "error", EXIT_ERROR, &m, Some(r)))
        }
        None => {
            *failures = 0;
            None
        }
    }
}

fn stalled_message(r: &Reconciled) -> String {
    r.status
        .conditions
        .iter()
        .find(|c| c.type_ == STALLED)
        .map(|c| format!("{}: {}", c.reason, c.message))
        .or_else(|| r.status.message.clone())
        .unwrap_or_default()
}

fn status_message(r: &Reconciled) -> String {
    r.status.message.clone().unwrap_or_default()
}

/// One line about where the rollout stands.
fn progress_line(r: &Reconciled) -> String {
    let s = &r.status;
    let mut line = format!("  phase {:?}", s.phase);
    if let Some(g) = &s.container_group {
        line.push_str(&format!(" · group {}", g.name));
        if let Some(state) = &g.state {
            line.push_str(&format!(" {state}"));
        }
        if let Some(v) = g.version {
            line.push_str(&format!(" v{v}"));
        }
        let i = &g.instances;
        line.push_str(&format!(
            " · instances: {} allocating, {} creating, {} running, {} ready",
            i.allocating, i.creating, i.running, i.ready
        ));
    }
    if let Some(p) = &s.previous_container_group {
        line.push_str(&format!(
            " · old group {} {}",
            p.name,
            p.state.as_deref().unwrap_or("")
        ));
    }
    if let Some(m) = &s.message {
        line.push_str(&format!(" · {m}"));
    }
    line
}

struct Follow {
    printer: Printer,
    last_progress: String,
    last_events: BTreeSet<String>,
}

impl Follow {
    fn new(printer: Printer) -> Self {
        Self {
            printer,
            last_progress: String::new(),
            last_events: BTreeSet::new(),
        }
    }

    /// Prints the events (not the ones repeated from the previous pass) and the progress
    /// line when it changed.
    fn show(&mut self, r: &Reconciled) {
        let mut seen = BTreeSet::new();
        for e in &r.events {
            let key = format!("{}\n{}", e.reason, e.message);
            if !self.last_events.contains(&key) {
                self.printer.event(e);
            }
            seen.insert(key);
        }
        self.last_events = seen;
        let line = progress_line(r);
        if line != self.last_progress {
            self.printer.text(&line);
            self.printer.json(json!({
                "type": "progress",
                "phase": format!("{:?}", r.status.phase),
                "containerGroup": r.status.container_group,
                "previousContainerGroup": r.status.previous_container_group,
                "readyReplicas": r.status.ready_replicas,
                "message": r.status.message,
            }));
            self.last_progress = line;
        }
    }
}

fn result(printer: Printer, result: &str, code: u8, message: &str, r: Option<&Reconciled>) -> u8 {
    printer.json(json!({
        "type": "result",
        "result": result,
        "exitCode": code,
        "message": message,
        "status": r.map(|r| &r.status),
    }));
    if code == EXIT_OK {
        printer.text(message);
    } else {
        eprintln!("{result}: {message}");
    }
    code
}

fn header(s: &Session, verb: &str) {
    let m = &s.sdd.metadata;
    let sc = &s.sdd.spec.saladcloud;
    s.printer.text(format!(
        "{verb} {}/{} (uid {}, generation {}) on SaladCloud {}/{} at {}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default(),
        m.generation.unwrap_or(1),
        sc.organization,
        sc.project,
        s.cfg.salad_api_url
    ));
}

/// Reports an invalid spec through the engine (which stalls with every invalid field named).
async fn refuse_invalid(s: &Session) -> u8 {
    let r = s.engine.reconcile(&s.sdd, &s.store, Mode::DryRun).await;
    for e in &r.events {
        s.printer.event(e);
    }
    result(
        s.printer,
        "stalled",
        EXIT_STALLED,
        &stalled_message(&r),
        Some(&r),
    )
}

/// Runs `salad-sd apply`.
pub async fn apply(args: ApplyArgs) -> u8 {
    let mut s = match prepare(&args.common, args.interval) {
        Ok(s) => s,
        Err(code) => return code,
    };
    header(&s, "apply");
    if !s.valid {
        return refuse_invalid(&s).await;
    }
    let deadline = Instant::now() + args.timeout;
    let built = tokio::time::timeout(
        args.timeout,
        build_image(s.engine.builds(), &s.sdd, &s.store, s.printer),
    )
    .await;
    let img = match built {
        Ok(Ok(img)) => img,
        Ok(Err((code, message))) => {
            let what = if code == EXIT_STALLED {
                "stalled"
            } else {
                "error"
            };
            return result(s.printer, what, code, &message, None);
        }
        Err(_) => {
            return result(
                s.printer,
                "timeout",
                EXIT_TIMEOUT,
                "the build did not finish within --timeout",
                None,
            );
        }
    };
    let generation = s.sdd.metadata.generation.unwrap_or(1);
    let mut follow = Follow::new(s.printer);
    let mut failures = 0u32;
    loop {
        let r = s.engine.reconcile(&s.sdd, &s.store, Mode::Apply).await;
        follow.show(&r);
        s.sdd.status = Some(r.status.clone());
        if let Some(code) = stop_on_failure(s.printer, s.engine.backoff(), &r, &mut failures) {
            return code;
        }
        if ready(&r, generation) {
            return result(s.printer, "ready", EXIT_OK, &ready_summary(&r), Some(&r));
        }
        let name_taken = r.events.iter().any(|e| e.reason == Reason::NameTaken);
        if !args.wait && r.failure.is_none() && !name_taken {
            let m = format!(
                "applied: image {}; {} (run with --wait to follow the rollout)",
                img.reference,
                status_message(&r)
            );
            return result(s.printer, "applied", EXIT_OK, &m, Some(&r));
        }
        let now = Instant::now();
        if now >= deadline {
            let m = format!(
                "not Ready after {}s: {}",
                args.timeout.as_secs(),
                status_message(&r)
            );
            return result(s.printer, "timeout", EXIT_TIMEOUT, &m, Some(&r));
        }
        let pause = if name_taken {
            Duration::ZERO
        } else {
            r.requeue_after.min(args.interval)
        };
        tokio::time::sleep(pause.min(deadline - now)).await;
    }
}

fn ready_summary(r: &Reconciled) -> String {
    let s = &r.status;
    let mut out = format!(
        "Ready: {} instance(s) ready",
        s.replica_summary.clone().unwrap_or_default()
    );
    if let Some(g) = &s.container_group {
        out.push_str(&format!(" in container group `{}`", g.name));
        if let Some(url) = &g.access_url {
            out.push_str(&format!("\naccess URL: {url}"));
        }
    }
    if let Some(img) = s.image.as_ref().and_then(|i| i.reference.as_ref()) {
        out.push_str(&format!("\nimage: {img}"));
    }
    if let Some(t) = &s.smoke_test {
        out.push_str(&format!(
            "\nsmoke test: {} ({}{})",
            t.result,
            t.message.clone().unwrap_or_default(),
            t.latency_ms
                .map(|l| format!(", {l} ms"))
                .unwrap_or_default()
        ));
    }
    if let Some(c) = &s.estimated_hourly_cost_usd {
        out.push_str(&format!("\nestimated cost: ${c}/hour"));
    }
    if let Some(c) = &s.cold_start {
        out.push_str(&format!("\ncold start per new instance: {}", c.summary));
    }
    out
}

/// Runs `salad-sd delete`.
pub async fn delete(args: DeleteArgs) -> u8 {
    let mut s = match prepare(&args.common, args.interval) {
        Ok(s) => s,
        Err(code) => return code,
    };
    header(&s, "delete");
    if s.sdd.spec.deletion_policy == salad_sd_api::DeletionPolicy::Orphan {
        s.printer.text(
            "deletionPolicy is Orphan: the container groups are left as they are (SaladCloud keeps billing for them)",
        );
    }
    s.sdd.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let deadline = Instant::now() + args.timeout;
    let mut follow = Follow::new(s.printer);
    let mut failures = 0u32;
    loop {
        let r = s.engine.reconcile(&s.sdd, &s.store, Mode::Apply).await;
        follow.show(&r);
        s.sdd.status = Some(r.status.clone());
        if r.release_finalizer {
            let m = if s.sdd.spec.deletion_policy == salad_sd_api::DeletionPolicy::Orphan {
                "released: the container groups are left running (deletionPolicy: Orphan)"
            } else {
                "deleted: SaladCloud lists no container group of this resource any more"
            };
            return result(s.printer, "deleted", EXIT_OK, m, Some(&r));
        }
        if let Some(code) = stop_on_failure(s.printer, s.engine.backoff(), &r, &mut failures) {
            return code;
        }
        let now = Instant::now();
        if now >= deadline {
            let m = format!(
                "container groups still listed after {}s: {}",
                args.timeout.as_secs(),
                status_message(&r)
            );
            return result(s.printer, "timeout", EXIT_TIMEOUT, &m, Some(&r));
        }
        tokio::time::sleep(r.requeue_after.min(args.interval).min(deadline - now)).await;
    }
}

/// Runs `salad-sd diff`.
pub async fn diff(args: DiffArgs) -> u8 {
    let s = match prepare(&args.common, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(code) => return code,
    };
    header(&s, "diff");
    if !s.valid {
        return refuse_invalid(&s).await;
    }
    let p = s.printer;
    let r = s.engine.reconcile(&s.sdd, &s.store, Mode::DryRun).await;
    if stalled(&r) {
        for e in &r.events {
            p.event(e);
        }
        return result(p, "stalled", EXIT_STALLED, &stalled_message(&r), Some(&r));
    }
    if let Some(failure) = &r.failure {
        let m = format!("{}: {}", failure.reason(), status_message(&r));
        return result(p, "error", EXIT_ERROR, &m, Some(&r));
    }
    let Some(engine_plan) = r.plan.clone() else {
        return result(p, "error", EXIT_ERROR, "the engine made no plan", Some(&r));
    };
    let build_needed = engine_plan
        .actions
        .iter()
        .any(|a| matches!(a, Action::Build));

    // The image.
    let recipe_layers = match secrets::resolve(&s.sdd.spec, &s.store).await {
        Ok(resolved) => desired::recipe(&s.sdd.spec, &resolved).layers,
        Err(e) => return result(p, "error", EXIT_ERROR, &e.to_string(), Some(&r)),
    };
    let mut layers_json = Vec::new();
    if build_needed {
        p.text(format!(
            "image: BUILD NEEDED: no image for this recipe in {}",
            s.sdd.spec.image.repository
        ));
        for l in &recipe_layers {
            let how = if l.source.sha256.is_some() {
                "pinned sha256: reused without download if an earlier build pushed it, else downloaded"
            } else {
                "not pinned: downloaded and pushed"
            };
            p.text(format!("  layer {}: {} ({how})", l.name, l.source.url));
            layers_json.push(
                json!({"name": l.name, "url": l.source.url, "pinned": l.source.sha256.is_some()}),
            );
        }
    } else if let Some(img) = &r.status.image {
        p.text(format!(
            "image: up to date: {} (recipe {})",
            img.reference.as_deref().unwrap_or_default(),
            img.recipe_hash.as_deref().unwrap_or_default()
        ));
    }

    // The container group (the engine plans it against a placeholder when the image is missing).
    let group_plan = engine_plan;
    let lines = describe(&group_plan, &s.sdd.spec.rollout.strategy);
    for l in &lines {
        p.text(format!("container group: {l}"));
    }
    let group_changes = group_plan
        .actions
        .iter()
        .any(|a| !matches!(a, Action::Build));
    let changes = build_needed || group_changes;

    // What a new instance's start costs with this spec: image download vs fetch at start.
    if let Some(c) = &r.status.cold_start {
        p.text(format!("cold start per new instance: {}", c.summary));
    }
    if let Some(scaling) = &r.status.scaling {
        p.text(format!("replicas: {}", scaling.message));
    }
    p.json(json!({
        "type": "diff",
        "changes": changes,
        "build": {
            "needed": build_needed,
            "repository": s.sdd.spec.image.repository,
            "current": r.status.image.as_ref().and_then(|i| i.reference.clone()),
            "recipeHash": r.status.image.as_ref().and_then(|i| i.recipe_hash.clone()),
            "layers": layers_json,
        },
        "group": {
            "target": group_plan.target,
            "retiring": group_plan.retiring,
            "changes": lines,
        },
        "coldStart": r.status.cold_start,
        "scaling": r.status.scaling,
        "queue": r.status.queue,
    }));
    if changes {
        p.text("changes found: `salad-sd apply` would make them");
        EXIT_CHANGES
    } else {
        p.text("in sync: nothing to do");
        EXIT_OK
    }
}

/// Human lines for a plan's group actions.
fn describe(plan: &Plan, strategy: &salad_sd_api::RolloutStrategy) -> Vec<String> {
    let mut out = Vec::new();
    for a in &plan.actions {
        match a {
            Action::Build => {}
            Action::Create { group } => {
                let c = &group.container;
                let what = format!(
                    "{} replica(s), {} vCPU, {} MB, {} GPU class(es)",
                    group.replicas,
                    c.resources.cpu,
                    c.resources.memory,
                    c.resources.gpu_classes.len()
                );
                if plan.retiring.is_empty() {
                    out.push(format!("{} ({what})", a.describe()));
                } else {
                    out.push(format!(
                        "replace {} with a new group `{}` ({what}; {strategy:?}: a new revision gets a new group, the old one is retired once the new one serves)",
                        plan.retiring
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        group.name
                    ));
                }
            }
            Action::Patch { reason, .. } => {
                let why = match reason {
                    PatchReason::SpecChange => "spec change",
                    PatchReason::Drift => "drift: changed outside salad-sd",
                };
                out.push(format!("{} ({why})", a.describe()));
            }
            Action::Start { .. }
            | Action::Stop { .. }
            | Action::CreateQueue { .. }
            | Action::DeleteQueue { .. } => out.push(a.describe()),
            Action::Delete { reason, .. } => out.push(match reason {
                DeleteReason::Retired => format!("{} (retired: replaced)", a.describe()),
                DeleteReason::Cleanup => a.describe(),
            }),
        }
    }
    if out.is_empty() {
        out.push(match &plan.target {
            Some(t) => format!("nothing to do: `{t}` matches the spec"),
            None => "nothing to do".into(),
        });
    }
    out
}
