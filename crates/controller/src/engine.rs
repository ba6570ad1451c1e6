//! The reconcile engine, for one resource: **observe** (Secrets, GPU classes, container
//! groups, the image) → **plan** (pure, `plan.rs`) → **act** (one action at a time) →
//! **report** (pure, `report.rs`). Every step's failure is one [`Failure`]; the report turns it
//! into status, Events and the next attempt. Shared by the operator (driven by watches) and the
//! CLI (driven by a file).

mod act;
mod observe;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use salad_sd_api::condition::STALLED;
use salad_sd_api::names::POLL_INTERVAL_ANNOTATION;
use salad_sd_api::validate::validate;
use salad_sd_api::{SmokeTestStatus, StableDiffusionDeployment};
use saladcloud::{ApiKey, Client, ClientConfig, GpuClassResolver, RetryPolicy};
use sha2::{Digest, Sha256};

use crate::builds::{BuildManager, BuildSettings};
use crate::failure::{Backoff, Failure};
use crate::metrics::Metrics;
use crate::plan::{self, Action, Outcome, Plan};
use crate::report::{self, Context, Planned};
use crate::secrets::SecretStore;
use crate::smoke;

pub use crate::report::{Event, EventType, Reconciled};
pub use observe::World;

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
    /// Retries of SaladCloud calls inside one reconcile.
    pub salad_retry: RetryPolicy,
    /// When a failed reconcile is tried again.
    pub backoff: Backoff,
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
            backoff: Backoff::default(),
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

/// What the engine remembers about one resource between reconciles.
#[derive(Default)]
struct Memory {
    /// Names SaladCloud refused as used before.
    burned: BTreeSet<String>,
    /// Failed reconciles in a row.
    failures: u32,
    /// Groups we asked SaladCloud to delete: they stay listed for a while and are deleted again
    /// (idempotent), but announced once.
    deleted: BTreeSet<String>,
}

/// A SaladCloud client per API key (each with the key's rate budget) and its GPU class cache.
type Clients = HashMap<[u8; 32], (Client, GpuClassResolver)>;

/// The engine. One per process; cheap to share.
pub struct Engine {
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
    builds: Arc<BuildManager>,
    clients: Mutex<Clients>,
    memory: Mutex<HashMap<String, Memory>>,
    http: reqwest::Client,
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

    /// The backoff policy of failed reconciles.
    pub fn backoff(&self) -> &Backoff {
        &self.cfg.backoff
    }

    fn client(&self, key: &ApiKey) -> Result<(Client, GpuClassResolver), Failure> {
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
        )?
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

    fn remember<T>(&self, uid: &str, f: impl FnOnce(&mut Memory) -> T) -> T {
        f(self
            .memory
            .lock()
            .unwrap()
            .entry(uid.to_string())
            .or_default())
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
        let result = match &out.failure {
            Some(f) if f.is_stalled() || out.status.is_true(STALLED) => "stalled",
            Some(_) => "error",
            None => "success",
        };
        if let Some(f) = &out.failure {
            self.metrics.record_error(f.reason());
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

    /// Failures in a row after this reconcile (0 when it succeeded).
    fn count_failure(&self, uid: &str, failed: bool) -> u32 {
        self.remember(uid, |m| {
            m.failures = if failed {
                m.failures.saturating_add(1)
            } else {
                0
            };
            m.failures
        })
    }

    async fn reconcile_inner<S: SecretStore>(
        &self,
        sdd: &StableDiffusionDeployment,
        store: &S,
        mode: Mode,
    ) -> Reconciled {
        let uid = sdd.metadata.uid.clone().unwrap_or_default();
        let prev = sdd.status.clone().unwrap_or_default();
        let deleting = sdd.metadata.deletion_timestamp.is_some();
        let context = |failures: u32, events: Vec<Event>| Context {
            prev: &prev,
            generation: sdd.metadata.generation.unwrap_or(1),
            now: now(),
            poll: self.poll_interval(sdd),
            progress: self.cfg.progress_interval,
            backoff: &self.cfg.backoff,
            failures,
            events,
        };
        let fail = |failure: Failure| {
            report::report_failure(context(self.count_failure(&uid, true), Vec::new()), failure)
        };

        let invalid = validate(&sdd.spec);
        if !invalid.is_empty() && !deleting {
            let message = invalid
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return fail(Failure::stalled(
                "InvalidSpec",
                format!("the spec is invalid: {message}"),
            ));
        }

        // 1. Observe.
        let world = match self.observe(sdd, store, mode).await {
            Ok(observe::Observation::World(w)) => w,
            Ok(observe::Observation::NothingToDelete(events)) => {
                return self.released(sdd, context(self.count_failure(&uid, false), events));
            }
            Err(f) => return fail(f),
        };

        // 2. Plan.
        let mut plan = plan::plan(&world.desired, &world.observed);
        if mode == Mode::DryRun && world.observed.image == plan::ImageState::Missing {
            plan.actions.insert(0, Action::Build);
        }

        // 3. Act, one action at a time; the first failure ends the round.
        let mut events = Vec::new();
        let mut failure = world.build_failure.clone();
        if mode == Mode::Apply {
            for action in &plan.actions {
                match self.act(&world, &uid, action).await {
                    Ok(mut e) => events.append(&mut e),
                    Err(f) => {
                        failure = Some(f);
                        break;
                    }
                }
            }
        }
        let smoke = self
            .smoke_test(sdd, &prev, &world, &plan, mode, &mut events)
            .await;

        // 4. Report.
        let failed = failure.is_some() || matches!(plan.outcome, Outcome::Stalled { .. });
        let cx = context(self.count_failure(&uid, failed), events);
        report::report(
            cx,
            Planned {
                plan,
                observed: &world.observed,
                built: world.built.as_ref(),
                building: world.building.clone(),
                replicas: sdd.spec.replicas,
                hourly_price: world.hourly_price,
                smoke,
                deleting,
                failure,
            },
        )
    }

    /// Deletion with nothing on SaladCloud to delete: release the finalizer.
    fn released(&self, sdd: &StableDiffusionDeployment, cx: Context<'_>) -> Reconciled {
        let nothing = plan::Observed {
            groups: Vec::new(),
            image: plan::ImageState::Missing,
            burned_names: BTreeSet::new(),
        };
        report::report(
            cx,
            Planned {
                plan: Plan::released(),
                observed: &nothing,
                built: None,
                building: None,
                replicas: sdd.spec.replicas,
                hourly_price: None,
                smoke: sdd.status.as_ref().and_then(|s| s.smoke_test.clone()),
                deleting: true,
                failure: None,
            },
        )
    }

    /// A txt2img on the target group once a rollout converged, once per group version.
    async fn smoke_test(
        &self,
        sdd: &StableDiffusionDeployment,
        prev: &salad_sd_api::StableDiffusionDeploymentStatus,
        world: &World,
        plan: &Plan,
        mode: Mode,
        events: &mut Vec<Event>,
    ) -> Option<SmokeTestStatus> {
        let target = plan
            .target
            .as_ref()
            .and_then(|t| world.observed.groups.iter().find(|g| &g.group.name == t));
        // A result belongs to the group it ran on: a BlueGreen switch starts over at version 1.
        let previous = prev
            .smoke_test
            .clone()
            .filter(|_| prev.container_group.as_ref().map(|g| &g.name) == plan.target.as_ref());
        let (Some(cfg), Some(t)) = (&sdd.spec.smoke_test, target) else {
            return previous;
        };
        if mode != Mode::Apply
            || plan.outcome != Outcome::Converged
            || previous.as_ref().and_then(|s| s.group_version) == Some(t.group.version as i32)
        {
            return previous;
        }
        let result = smoke::run(
            &self.http,
            self.cfg.gateway_override.as_deref(),
            &t.group,
            sdd.spec.gateway.auth.then_some(&world.api_key),
            cfg,
        )
        .await;
        events.push(if result.result == "Passed" {
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
        Some(SmokeTestStatus {
            group_version: Some(t.group.version as i32),
            ..result
        })
    }
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
}
