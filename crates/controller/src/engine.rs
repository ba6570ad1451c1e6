//! The reconcile engine: fetch → validate → plan → act → report, for one resource. Shared by
//! the operator (driven by watches) and the CLI (driven by a file).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rand::Rng;
use salad_sd_api::names::{POLL_INTERVAL_ANNOTATION, group_name_prefix};
use salad_sd_api::validate::validate;
use salad_sd_api::{
    BuildStatus, LayerProgress, SmokeTestStatus, StableDiffusionDeployment,
    StableDiffusionDeploymentStatus,
};
use saladcloud::{ApiKey, Client, ClientConfig, GpuClassResolver, RetryPolicy};
use sha2::{Digest, Sha256};

use crate::builds::{BuildManager, BuildSettings, BuildState};
use crate::desired::{self, GpuChoice};
use crate::diff::{ready_instances, revision};
use crate::metrics::Metrics;
use crate::plan::{
    self, Action, DeleteReason, Desired, ImageState, Observed, ObservedGroup, Outcome, PatchReason,
    Plan,
};
use crate::report::{self, Cond, IMAGE_READY, READY, STALLED, SYNCED};
use crate::secrets::{self, SecretStore};
use crate::smoke;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// SaladCloud API base URL (the simulator's for tests and the demo).
    pub salad_api_url: String,
    /// Drift check interval when all is well (jittered ±10%).
    pub poll_interval: Duration,
    /// Requeue while work is in progress.
    pub progress_interval: Duration,
    /// Builds.
    pub builds: BuildSettings,
    /// Send smoke tests here (with the access domain as `Host`) instead of `https://<domain>`:
    /// how the demo and tests reach the simulator's gateway.
    pub gateway_override: Option<String>,
    /// Retries of SaladCloud calls.
    pub salad_retry: RetryPolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            salad_api_url: saladcloud::DEFAULT_BASE_URL.to_string(),
            poll_interval: Duration::from_secs(60),
            progress_interval: Duration::from_secs(5),
            builds: BuildSettings::default(),
            gateway_override: None,
            salad_retry: RetryPolicy::default(),
        }
    }
}

/// Run the actions, or only plan them (`salad-sd diff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Change the world.
    Apply,
    /// Change nothing.
    DryRun,
}

/// Kubernetes Event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something happened.
    Normal,
    /// Something needs attention.
    Warning,
}

/// An event to publish on the resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason (for warnings: the error category).
    pub reason: String,
    /// What happened, and for warnings what to do.
    pub message: String,
}

impl Event {
    fn normal(reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason: reason.into(),
            message: message.into(),
        }
    }
    fn warning(reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// The result of one reconcile.
#[derive(Clone, Debug)]
pub struct Reconciled {
    /// The status to write.
    pub status: StableDiffusionDeploymentStatus,
    /// Events to publish.
    pub events: Vec<Event>,
    /// When to look again.
    pub requeue_after: Duration,
    /// Deletion is finished: remove the finalizer.
    pub release_finalizer: bool,
    /// The plan, when one was made.
    pub plan: Option<Plan>,
    /// A failure this reconcile (already reflected in status and events): category and whether
    /// it was transient.
    pub error: Option<(String, bool)>,
}

#[derive(Default)]
struct Memory {
    burned: BTreeSet<String>,
    failures: u32,
    /// Groups we asked SaladCloud to delete: they stay listed for a while and are deleted again
    /// (idempotent), but announced once.
    deleted: BTreeSet<String>,
}

/// The engine. One per process; cheap to share.
pub struct Engine {
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
    builds: Arc<BuildManager>,
    clients: Mutex<HashMap<[u8; 32], (Client, GpuClassResolver)>>,
    memory: Mutex<HashMap<String, Memory>>,
    http: reqwest::Client,
}

/// A failure in a reconcile step.
struct StepError {
    category: String,
    message: String,
    transient: bool,
}

impl From<saladcloud::Error> for StepError {
    fn from(e: saladcloud::Error) -> Self {
        Self {
            category: e.category().to_string(),
            message: e.to_string(),
            transient: e.is_transient() || !e.is_terminal(),
        }
    }
}

impl Engine {
    /// An engine.
    pub fn new(cfg: EngineConfig, metrics: Arc<Metrics>) -> Self {
        let builds = Arc::new(BuildManager::new(cfg.builds.clone(), metrics.clone()));
        Self {
            cfg,
            metrics,
            builds,
            clients: Mutex::default(),
            memory: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(100))
                .build()
                .expect("http client"),
        }
    }

    /// The metrics it records.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn client(&self, key: &ApiKey) -> Result<(Client, GpuClassResolver), StepError> {
        let id: [u8; 32] =
            Sha256::digest(format!("{}\n{}", self.cfg.salad_api_url, key.expose()).as_bytes())
                .into();
        let mut clients = self.clients.lock().unwrap();
        if let Some(c) = clients.get(&id) {
            return Ok(c.clone());
        }
        let metrics = self.metrics.clone();
        let client = Client::new(
            ClientConfig::new(key.clone())
                .with_base_url(self.cfg.salad_api_url.clone())
                .with_retry(self.cfg.salad_retry),
        )
        .map_err(StepError::from)?
        .with_observer(Arc::new(move |r: saladcloud::RequestRecord| {
            metrics.record_request(r.operation, r.status, r.duration)
        }));
        let resolver = GpuClassResolver::new(client.clone());
        clients.insert(id, (client.clone(), resolver.clone()));
        Ok((client, resolver))
    }

    fn poll_interval(&self, sdd: &StableDiffusionDeployment) -> Duration {
        sdd.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(POLL_INTERVAL_ANNOTATION))
            .and_then(|v| parse_duration(v))
            .unwrap_or(self.cfg.poll_interval)
    }

    /// Forgets per-resource memory (after deletion).
    pub fn forget(&self, uid: &str) {
        self.memory.lock().unwrap().remove(uid);
        self.metrics.record_resource(uid, None);
    }

    /// One reconcile of `sdd`.
    pub async fn reconcile<S: SecretStore>(
        &self,
        sdd: &StableDiffusionDeployment,
        store: &S,
        mode: Mode,
    ) -> Reconciled {
        let started = Instant::now();
        let out = self.reconcile_inner(sdd, store, mode).await;
        let result = match (&out.error, out.status.is_true(STALLED)) {
            (Some(_), _) => "error",
            (None, true) => "stalled",
            (None, false) => "success",
        };
        match &out.error {
            Some((category, _)) => self.metrics.record_error(category),
            None => self.reset_failures(sdd.metadata.uid.as_deref().unwrap_or_default()),
        }
        self.metrics.record_reconcile(result, started.elapsed());
        let uid = sdd.metadata.uid.clone().unwrap_or_default();
        if out.release_finalizer {
            self.forget(&uid);
        } else {
            let cost = out
                .status
                .estimated_hourly_cost_usd
                .as_deref()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0.0);
            let phase = format!("{:?}", out.status.phase);
            self.metrics
                .record_resource(&uid, Some((&phase, out.status.ready_replicas as i64, cost)));
        }
        out
    }

    async fn reconcile_inner<S: SecretStore>(
        &self,
        sdd: &StableDiffusionDeployment,
        store: &S,
        mode: Mode,
    ) -> Reconciled {
        let spec = &sdd.spec;
        let meta = &sdd.metadata;
        let generation = meta.generation.unwrap_or(1);
        let uid = meta.uid.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let prev = sdd.status.clone().unwrap_or_default();
        let deleting = meta.deletion_timestamp.is_some();
        let poll = self.poll_interval(sdd);
        let mut rep = Reporter::new(prev.clone(), generation, poll, self.cfg.progress_interval);

        let invalid = validate(spec);
        if !invalid.is_empty() && !deleting {
            let message = invalid
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return rep.stalled("InvalidSpec", format!("the spec is invalid: {message}"));
        }

        // Orphan: nothing to do on SaladCloud, so nothing to read either (not even the API key).
        if deleting && spec.deletion_policy == salad_sd_api::DeletionPolicy::Orphan {
            let nothing = Observed {
                groups: Vec::new(),
                image: ImageState::Missing,
                burned_names: BTreeSet::new(),
            };
            return rep.finish(FinishInput {
                plan: Plan {
                    actions: Vec::new(),
                    target: None,
                    retiring: Vec::new(),
                    outcome: Outcome::Released,
                },
                observed: &nothing,
                built: None,
                replicas: spec.replicas,
                hourly_price: None,
                smoke: prev.smoke_test.clone(),
                error: None,
                deleting,
                backoff: Duration::ZERO,
                now: now(),
            });
        }

        // Deleting needs only the API key: a `kubectl delete -f` that removed the other Secrets
        // first must not keep the resource from going away.
        let resolved = if deleting {
            secrets::resolve_api_key(spec, store).await
        } else {
            secrets::resolve(spec, store).await
        };
        let secrets = match resolved {
            Ok(s) => s,
            Err(e) if e.is_terminal() && deleting => {
                return rep.stalled(
                    "SecretMissing",
                    format!(
                        "{e}; the container group cannot be deleted without it. Restore the Secret, or set \
                         spec.deletionPolicy: Orphan to leave the group running and release the resource"
                    ),
                );
            }
            Err(e) if e.is_terminal() => return rep.stalled("SecretMissing", e.to_string()),
            Err(e) => {
                return rep.failed(
                    self.backoff(&uid, true),
                    "SecretUnavailable",
                    e.to_string(),
                    true,
                );
            }
        };
        let api_key = secrets.api_key.clone().expect("resolve sets the API key");
        let (client, resolver) = match self.client(&api_key) {
            Ok(c) => c,
            Err(e) => return rep.stalled(&e.category, e.message),
        };
        let org = &spec.saladcloud.organization;
        let project = &spec.saladcloud.project;
        let prefix = group_name_prefix(&name, &uid);

        // GPU classes first: one cached list per organization, so after a restart the lookup is
        // not queued behind every resource's poll in the shared rate limiter.
        let gpu = if deleting {
            Vec::new()
        } else {
            match resolver.resolve(org, &spec.resources.gpu_classes).await {
                Ok(g) => g,
                Err(e) if e.is_terminal() => return rep.stalled(e.category(), e.to_string()),
                Err(e) => {
                    return rep.failed(self.backoff(&uid, true), e.category(), e.to_string(), true);
                }
            }
        };

        // Observe the groups. Steady state costs one GET.
        let groups = match self
            .observe_groups(&client, sdd, &prefix, &prev, deleting)
            .await
        {
            Ok(g) => g,
            Err(e) => {
                return rep.failed(
                    self.backoff(&uid, e.transient),
                    &e.category,
                    e.message,
                    e.transient,
                );
            }
        };
        let burned = self
            .memory
            .lock()
            .unwrap()
            .entry(uid.clone())
            .or_default()
            .burned
            .clone();

        let mut desired = Desired {
            owner_uid: uid.clone(),
            deleting,
            deletion_policy: spec.deletion_policy,
            strategy: spec.rollout.strategy,
            stopped: spec.stopped,
            fixed_name: spec.saladcloud.container_group_name.clone(),
            adopt: spec.saladcloud.adopt == Some(true),
            name_prefix: prefix.clone(),
            generation,
            generation_observed: prev.observed_generation == Some(generation),
            min_ready: spec
                .rollout
                .min_ready_replicas
                .unwrap_or(spec.replicas)
                .max(0) as u32,
            group: None,
        };
        let mut observed = Observed {
            groups,
            image: ImageState::Missing,
            burned_names: burned,
        };

        let mut built = None;
        let mut gpu_price = None;
        let recipe = desired::recipe(spec, &secrets);
        if !deleting {
            let priority = desired::priority(spec.priority);
            gpu_price = gpu
                .iter()
                .filter_map(|g| g.price(priority))
                .reduce(f64::max);
            let choice = GpuChoice {
                ids: gpu.iter().map(|g| g.id.clone()).collect(),
                hourly_price: gpu_price,
            };

            match self
                .builds
                .observe(&spec.image.repository, &recipe, &secrets.push_credentials)
                .await
            {
                BuildState::Ready(img) => {
                    observed.image = ImageState::Ready;
                    desired.group = Some(desired::group_definition(
                        spec,
                        &uid,
                        &img.reference,
                        &choice,
                        &secrets,
                    ));
                    built = Some(img);
                }
                BuildState::Running(progress) => {
                    observed.image = ImageState::Building;
                    rep.building = Some(BuildStatus {
                        layers: progress
                            .into_iter()
                            .map(|(name, (done, total))| LayerProgress {
                                name,
                                bytes_done: done as i64,
                                bytes_total: total.map(|t| t as i64),
                            })
                            .collect(),
                    });
                }
                BuildState::Unknown => observed.image = ImageState::Missing,
                BuildState::Failed {
                    message,
                    terminal: true,
                    category,
                } => {
                    observed.image = ImageState::Failed {
                        message: message.clone(),
                    };
                    rep.warn(category, message);
                }
                BuildState::Failed {
                    message,
                    terminal: false,
                    category,
                } => {
                    observed.image = ImageState::Building;
                    rep.warn(category, format!("{message}; retrying"));
                }
            }
            // A dry run (`salad-sd diff`) also says what would happen to the group once the
            // image exists: plan against a placeholder digest in the target repository.
            if mode == Mode::DryRun && desired.group.is_none() {
                let placeholder = format!("{}@sha256:{}", spec.image.repository, "0".repeat(64));
                desired.group = Some(desired::group_definition(
                    spec,
                    &uid,
                    &placeholder,
                    &choice,
                    &secrets,
                ));
            }
        }

        let mut plan = plan::plan(&desired, &observed);
        if mode == Mode::DryRun && observed.image == ImageState::Missing {
            plan.actions.insert(0, Action::Build);
        }
        let mut error = None;
        if mode == Mode::Apply {
            for action in &plan.actions {
                if let Err(e) = self
                    .act(
                        &client,
                        org,
                        project,
                        &uid,
                        action,
                        &spec.image.repository,
                        &recipe,
                        &secrets,
                        &mut rep,
                    )
                    .await
                {
                    error = Some(e);
                    break;
                }
            }
        }

        // Smoke test after a rollout converges.
        let target = plan
            .target
            .as_ref()
            .and_then(|t| observed.groups.iter().find(|g| &g.group.name == t));
        // A result belongs to the group it ran on: a BlueGreen switch starts over at version 1.
        let mut smoke_status = prev
            .smoke_test
            .clone()
            .filter(|_| prev.container_group.as_ref().map(|g| &g.name) == plan.target.as_ref());
        if mode == Mode::Apply
            && plan.outcome == Outcome::Converged
            && let (Some(cfg), Some(t)) = (&spec.smoke_test, target)
            && smoke_status.as_ref().and_then(|s| s.group_version) != Some(t.group.version as i32)
        {
            let result = smoke::run(
                &self.http,
                self.cfg.gateway_override.as_deref(),
                &t.group,
                spec.gateway.auth.then_some(&api_key),
                cfg,
            )
            .await;
            let passed = result.result == "Passed";
            rep.events.push(if passed {
                Event::normal(
                    "SmokeTestPassed",
                    format!(
                        "txt2img on `{}` answered in {} ms",
                        t.group.name,
                        result.latency_ms.unwrap_or(0)
                    ),
                )
            } else {
                Event::warning(
                    "SmokeTestFailed",
                    result.message.clone().unwrap_or_default(),
                )
            });
            smoke_status = Some(SmokeTestStatus {
                group_version: Some(t.group.version as i32),
                ..result
            });
        }

        rep.finish(FinishInput {
            plan,
            observed: &observed,
            built: built.as_ref(),
            replicas: spec.replicas,
            hourly_price: gpu_price,
            smoke: smoke_status,
            error,
            deleting,
            backoff: self.backoff_for(&uid),
            now: now(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn act(
        &self,
        client: &Client,
        org: &str,
        project: &str,
        uid: &str,
        action: &Action,
        repository: &str,
        recipe: &salad_sd_image::Recipe,
        secrets: &secrets::ResolvedSecrets,
        rep: &mut Reporter,
    ) -> Result<(), StepError> {
        match action {
            Action::Build => {
                self.builds
                    .start(repository, recipe.clone(), secrets.push_credentials.clone());
                rep.events.push(Event::normal(
                    "BuildStarted",
                    format!("building the image into {repository}"),
                ));
            }
            Action::Create { group } => {
                match client.create_container_group(org, project, group).await {
                    Ok(g) => rep.events.push(Event::normal(
                        "Created",
                        format!(
                            "created container group `{}` (image {}, revision {})",
                            g.name,
                            group.container.image,
                            revision(group)
                        ),
                    )),
                    Err(e) if e.is_name_conflict() => {
                        self.memory
                            .lock()
                            .unwrap()
                            .entry(uid.to_string())
                            .or_default()
                            .burned
                            .insert(group.name.clone());
                        rep.events.push(Event::normal("NameTaken", format!("container group name `{}` was used before (names are never reusable); choosing the next one", group.name)));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Action::Patch {
                name,
                patch,
                fields,
                reason,
            } => {
                client
                    .update_container_group(org, project, name, patch)
                    .await?;
                let (r, verb) = match reason {
                    PatchReason::Drift => ("DriftCorrected", "corrected drift in"),
                    PatchReason::SpecChange => ("Updated", "updated"),
                };
                rep.events.push(Event::normal(
                    r,
                    format!("{verb} container group `{name}`: {}", fields.join(", ")),
                ));
            }
            Action::Start { name } => {
                client.start_container_group(org, project, name).await?;
                rep.events.push(Event::normal(
                    "Started",
                    format!("started container group `{name}`"),
                ));
            }
            Action::Stop { name } => {
                client.stop_container_group(org, project, name).await?;
                rep.events.push(Event::normal(
                    "Stopped",
                    format!("stopped container group `{name}` (no instances, no GPU billing)"),
                ));
            }
            Action::Delete { name, reason } => {
                let gone = client.delete_container_group(org, project, name).await?;
                let first = self
                    .memory
                    .lock()
                    .unwrap()
                    .entry(uid.to_string())
                    .or_default()
                    .deleted
                    .insert(name.clone());
                if gone == saladcloud::Deleted::Accepted && first {
                    let why = match reason {
                        DeleteReason::Retired => "it was replaced",
                        DeleteReason::Cleanup => "the resource is being deleted",
                    };
                    rep.events.push(Event::normal(
                        "Deleted",
                        format!("deleting container group `{name}`: {why}"),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn observe_groups(
        &self,
        client: &Client,
        sdd: &StableDiffusionDeployment,
        prefix: &str,
        prev: &StableDiffusionDeploymentStatus,
        deleting: bool,
    ) -> Result<Vec<ObservedGroup>, StepError> {
        let spec = &sdd.spec;
        let org = &spec.saladcloud.organization;
        let project = &spec.saladcloud.project;
        let uid = sdd.metadata.uid.clone().unwrap_or_default();
        let fixed = spec.saladcloud.container_group_name.clone();
        let ready_before = prev.is_ready_at(sdd.metadata.generation);
        let known: Vec<String> = prev
            .container_group
            .iter()
            .map(|g| g.name.clone())
            .chain(fixed.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let steady = ready_before
            && !deleting
            && !known.is_empty()
            && prev.previous_container_group.is_none();
        let mut groups = Vec::new();
        let mut listed = false;
        if steady {
            for name in &known {
                match client.find_container_group(org, project, name).await? {
                    Some(g) => groups.push(g),
                    None => listed = true,
                }
            }
        }
        if !steady || listed {
            groups = client
                .list_container_groups(org, project)
                .await?
                .into_iter()
                .filter(|g| {
                    plan::owned_by(g, &uid)
                        || g.name.starts_with(prefix)
                        || fixed.as_deref() == Some(g.name.as_str())
                })
                .collect();
        }
        let replicas = spec.replicas.max(0) as u32;
        let mut out = Vec::new();
        for g in groups {
            let needs_instances = g.pending_change
                || g.current_state.instance_status_counts.running_count < replicas
                || !ready_before;
            let instances = if needs_instances && plan::owned_by(&g, &uid) {
                Some(
                    client
                        .list_container_group_instances(org, project, &g.name)
                        .await?,
                )
            } else {
                None
            };
            out.push(ObservedGroup {
                group: g,
                instances,
            });
        }
        Ok(out)
    }

    fn backoff(&self, uid: &str, transient: bool) -> Duration {
        if !transient {
            return self.cfg.poll_interval;
        }
        let mut mem = self.memory.lock().unwrap();
        let m = mem.entry(uid.to_string()).or_default();
        m.failures = m.failures.saturating_add(1);
        backoff_delay(m.failures)
    }

    fn backoff_for(&self, uid: &str) -> Duration {
        let mem = self.memory.lock().unwrap();
        mem.get(uid)
            .map_or(Duration::from_secs(5), |m| backoff_delay(m.failures.max(1)))
    }

    fn reset_failures(&self, uid: &str) {
        if let Some(m) = self.memory.lock().unwrap().get_mut(uid) {
            m.failures = 0;
        }
    }
}

/// Exponential backoff with full jitter: 2 s, 4 s, … capped at 5 min.
pub fn backoff_delay(failures: u32) -> Duration {
    let cap = Duration::from_secs(2u64.saturating_pow(failures.min(9)).min(300));
    let ms = rand::rng().random_range(cap.as_millis() as u64 / 2..=cap.as_millis() as u64);
    Duration::from_millis(ms)
}

fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms * 9 / 10..=ms * 11 / 10 + 1))
}

/// `30s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

struct FinishInput<'a> {
    plan: Plan,
    observed: &'a Observed,
    built: Option<&'a salad_sd_image::BuiltImage>,
    replicas: i32,
    hourly_price: Option<f64>,
    smoke: Option<SmokeTestStatus>,
    error: Option<StepError>,
    deleting: bool,
    backoff: Duration,
    now: Time,
}

/// Collects events and turns the outcome into status.
struct Reporter {
    prev: StableDiffusionDeploymentStatus,
    generation: i64,
    poll: Duration,
    progress: Duration,
    events: Vec<Event>,
    building: Option<BuildStatus>,
}

impl Reporter {
    fn new(
        prev: StableDiffusionDeploymentStatus,
        generation: i64,
        poll: Duration,
        progress: Duration,
    ) -> Self {
        Self {
            prev,
            generation,
            poll,
            progress,
            events: Vec::new(),
            building: None,
        }
    }

    fn warn(&mut self, reason: &str, message: String) {
        self.events.push(Event::warning(reason, message));
    }

    /// Stalled before planning: status keeps what it knew about the groups.
    fn stalled(mut self, reason: &str, message: String) -> Reconciled {
        if self.prev.condition(STALLED).map(|c| &c.message) != Some(&message) {
            self.events.push(Event::warning(reason, message.clone()));
        }
        let mut status = self.prev.clone();
        let (phase, mut conds) = report::phase_and_conditions(
            &Outcome::Stalled {
                reason: "Stalled",
                message: message.clone(),
            },
            false,
            false,
            false,
            false,
        );
        for c in &mut conds {
            c.reason = reason.to_string();
        }
        status.phase = phase;
        status.message = Some(message);
        status.observed_generation = Some(self.generation);
        status.conditions =
            report::merge_conditions(&self.prev.conditions, conds, self.generation, now());
        Reconciled {
            status,
            events: self.events,
            requeue_after: jitter(self.poll),
            release_finalizer: false,
            plan: None,
            error: Some((reason.to_string(), false)),
        }
    }

    /// A transient failure before planning: keep status, say what failed, retry with backoff.
    fn failed(
        mut self,
        backoff: Duration,
        category: &str,
        message: String,
        transient: bool,
    ) -> Reconciled {
        self.events.push(Event::warning(
            category,
            format!("{message}; retrying in {}s", backoff.as_secs()),
        ));
        let mut status = self.prev.clone();
        status.message = Some(message.clone());
        // The other conditions were not re-evaluated: they keep the generation they were
        // computed for, or a Ready=True of the old spec would claim the new one is served.
        let synced = report::merge_conditions(
            &self.prev.conditions,
            vec![Cond::new(SYNCED, false, category, message)],
            self.generation,
            now(),
        );
        status.conditions = self
            .prev
            .conditions
            .iter()
            .filter(|c| c.type_ != SYNCED)
            .cloned()
            .chain(synced)
            .collect();
        Reconciled {
            status,
            events: self.events,
            requeue_after: backoff,
            release_finalizer: false,
            plan: None,
            error: Some((category.to_string(), transient)),
        }
    }

    fn finish(mut self, i: FinishInput<'_>) -> Reconciled {
        let plan = i.plan;
        let target = plan
            .target
            .as_ref()
            .and_then(|t| i.observed.groups.iter().find(|g| &g.group.name == t));
        let previous = plan
            .retiring
            .iter()
            .find_map(|n| i.observed.groups.iter().find(|g| &g.group.name == n));
        let image_ready = i.observed.image == ImageState::Ready;
        let (phase, mut conds) = report::phase_and_conditions(
            &plan.outcome,
            image_ready,
            target.is_some(),
            !plan.retiring.is_empty() || target.is_some_and(|g| g.group.pending_change),
            i.deleting,
        );

        // ImageReady.
        conds.push(match &i.observed.image {
            ImageState::Ready => Cond::new(
                IMAGE_READY,
                true,
                "Built",
                "the image for the current spec is in the registry",
            ),
            ImageState::Failed { message } => {
                Cond::new(IMAGE_READY, false, "BuildFailed", message.clone())
            }
            _ => Cond::new(
                IMAGE_READY,
                false,
                "Building",
                "building the image for the current spec",
            ),
        });
        if image_ready
            && self
                .prev
                .condition(IMAGE_READY)
                .is_some_and(|c| c.status != "True")
            && let Some(img) = i.built
        {
            self.events.push(Event::normal(
                "ImageBuilt",
                format!(
                    "image {} ready ({} layers, {} bytes uploaded)",
                    img.reference,
                    img.layers.len(),
                    img.bytes_uploaded
                ),
            ));
        }
        // Synced.
        let synced = match (&i.error, &plan.outcome) {
            (Some(e), _) => Cond::new(SYNCED, false, e.category.clone(), e.message.clone()),
            (None, Outcome::Stalled { reason, message }) => {
                Cond::new(SYNCED, false, *reason, message.clone())
            }
            (None, _) if plan.actions.is_empty() => Cond::new(
                SYNCED,
                true,
                "InSync",
                "the container group matches the spec",
            ),
            (None, _) => Cond::new(
                SYNCED,
                false,
                "Applying",
                format!("{} change(s) sent to SaladCloud", plan.actions.len()),
            ),
        };
        conds.push(synced);

        let mut message = match &plan.outcome {
            Outcome::Converged => "serving the desired state".to_string(),
            Outcome::Stopped => "stopped on request".to_string(),
            Outcome::Released => "deleted".to_string(),
            Outcome::Progressing { message, .. } | Outcome::Stalled { message, .. } => {
                message.clone()
            }
        };
        if let Some(e) = &i.error {
            message = format!("{message}; last SaladCloud call failed: {}", e.message);
            self.events
                .push(Event::warning(&e.category, e.message.clone()));
        }
        if let Outcome::Stalled { reason, message } = &plan.outcome
            && self.prev.condition(STALLED).map(|c| &c.message) != Some(message)
        {
            self.events.push(Event::warning(reason, message.clone()));
        }
        if plan.outcome == Outcome::Converged
            && self
                .prev
                .condition(READY)
                .is_none_or(|c| c.status != "True" || c.reason != "Serving")
        {
            self.events.push(Event::normal(
                "RolloutComplete",
                format!(
                    "`{}` serves the desired state",
                    plan.target.clone().unwrap_or_default()
                ),
            ));
        }

        let ready = target.map_or(0, |g| {
            ready_instances(&g.group, g.instances.as_deref()) as i32
        });
        let current_replicas = target.map_or(0, |g| g.group.replicas as i32);
        let mut status = StableDiffusionDeploymentStatus {
            observed_generation: Some(self.generation),
            phase,
            message: Some(message),
            conditions: report::merge_conditions(
                &self.prev.conditions,
                conds,
                self.generation,
                i.now,
            ),
            image: report::image_status(i.built, self.building.clone()),
            container_group: target.map(report::group_status).or_else(|| {
                plan.target
                    .as_ref()
                    .map(|n| salad_sd_api::ContainerGroupStatus {
                        name: n.clone(),
                        ..Default::default()
                    })
            }),
            previous_container_group: previous.map(report::group_status),
            replicas: current_replicas,
            ready_replicas: ready,
            replica_summary: Some(format!("{ready}/{}", i.replicas)),
            estimated_hourly_cost_usd: i
                .hourly_price
                .map(|p| format!("{:.3}", p * i.replicas.max(0) as f64)),
            smoke_test: i.smoke,
            endpoint_config_map: self.prev.endpoint_config_map.clone(),
        };
        if plan.outcome == Outcome::Stopped {
            status.estimated_hourly_cost_usd = Some("0.000".into());
        }
        let requeue_after = match (&i.error, &plan.outcome) {
            (Some(e), _) if e.transient => i.backoff,
            (_, Outcome::Converged | Outcome::Stopped | Outcome::Stalled { .. }) => {
                jitter(self.poll)
            }
            _ => self.progress,
        };
        let error = i.error.map(|e| (e.category, e.transient));
        Reconciled {
            status,
            events: self.events,
            requeue_after,
            release_finalizer: plan.outcome == Outcome::Released,
            plan: Some(plan),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..20 {
            assert!(backoff_delay(1) <= Duration::from_secs(2));
            assert!(backoff_delay(30) <= Duration::from_secs(300));
            assert!(backoff_delay(30) >= Duration::from_secs(150));
        }
    }
}
