//! The reconcile engine, for one resource: **observe** (facts only: Secrets, GPU classes,
//! container groups, the image) → **decide** (pure, [`crate::decide`], with the planner) →
//! **act** (one action at a time) → **report** (pure, [`crate::report`]). Every step's failure
//! is one [`Failure`]; the report turns it into status, Events and the next attempt. Shared by
//! the operator (driven by watches) and the CLI (driven by a file).

mod act;
mod observe;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use salad_sd_api::condition::STALLED;
use salad_sd_api::names::POLL_INTERVAL_ANNOTATION;
use salad_sd_api::{SmokeTestStatus, StableDiffusionDeployment};
use saladcloud::RetryPolicy;

use crate::builds::{BuildManager, BuildSettings};
use crate::decide::{self, Observation, Smoke};
use crate::failure::{Backoff, Failure, consequence};
use crate::metrics::Metrics;
use crate::plan::Outcome;
use crate::reason::Reason;
use crate::report::{self, Context, Input};
use crate::salad::{SaladCloud, SaladCloudApi};
use crate::secrets::SecretStore;
use crate::smoke;
use act::Hands;
use observe::Gathered;

pub use crate::report::{Event, EventType, Reconciled};
pub use observe::DEFER_AFTER;

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
    /// Slow-node reallocation: what was asked, what SaladCloud refused, the quota as read.
    fleet: FleetMemory,
}

/// What the engine remembers of the fleet of one resource.
#[derive(Default)]
struct FleetMemory {
    /// Reallocations asked for (instance id, when), the last ten minutes.
    recent: Vec<(String, jiff::Timestamp)>,
    /// A refused reallocation: not again before then, and why.
    blocked: Option<(jiff::Timestamp, String)>,
    /// `max_container_group_reallocations_per_minute` and when it was read.
    quota: Option<(Option<u32>, jiff::Timestamp)>,
    /// When each group's system logs were last read (see [`crate::fleet::system_logs_due`]).
    logs_read: std::collections::BTreeMap<String, jiff::Timestamp>,
}

/// The engine. One per process; cheap to share.
pub struct Engine {
    cfg: EngineConfig,
    metrics: Arc<Metrics>,
    builds: Arc<BuildManager>,
    salad: Arc<dyn SaladCloud>,
    memory: Mutex<HashMap<String, Memory>>,
    http: reqwest::Client,
}

impl Engine {
    /// An engine that talks to SaladCloud at `cfg.salad_api_url`.
    pub fn new(cfg: EngineConfig, metrics: Arc<Metrics>) -> Self {
        let salad = Arc::new(SaladCloudApi::new(
            cfg.salad_api_url.clone(),
            cfg.salad_retry,
            metrics.clone(),
        ));
        Self::with_salad(cfg, metrics, salad)
    }

    /// An engine that talks to SaladCloud through `salad` (an in-memory fake in tests).
    pub fn with_salad(
        cfg: EngineConfig,
        metrics: Arc<Metrics>,
        salad: Arc<dyn SaladCloud>,
    ) -> Self {
        let builds = Arc::new(BuildManager::new(
            cfg.builds.clone(),
            cfg.backoff,
            metrics.clone(),
        ));
        Self {
            cfg,
            metrics,
            builds,
            salad,
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

    /// The builds it runs (the CLI's `salad-sd build` waits for one).
    pub fn builds(&self) -> &Arc<BuildManager> {
        &self.builds
    }

    /// A failure outside the engine (the Kubernetes edge) of the resource `uid`: counted with
    /// its other failures, and the wait before the next attempt by the one backoff rule.
    pub fn failed_outside(&self, uid: &str, failure: &Failure) -> Duration {
        self.metrics.record_error(failure.reason().as_str());
        let failures = self.count_failure(uid, true);
        consequence(failure, failures, &self.cfg.backoff).requeue_after
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
        self.metrics.forget_fleet(uid);
    }

    /// One reconcile of `sdd`.
    pub async fn reconcile<S: SecretStore>(
        &self,
        sdd: &StableDiffusionDeployment,
        store: &S,
        mode: Mode,
    ) -> Reconciled {
        self.reconcile_with(sdd, store, mode, None).await
    }

    /// One reconcile of `sdd`, keeping the endpoint ConfigMap `<endpoint_for>-endpoint` (the
    /// operator; [`Reconciled::endpoint`] says when to write it).
    pub async fn reconcile_with<S: SecretStore>(
        &self,
        sdd: &StableDiffusionDeployment,
        store: &S,
        mode: Mode,
        endpoint_for: Option<&str>,
    ) -> Reconciled {
        let started = Instant::now();
        let out = self.reconcile_inner(sdd, store, mode, endpoint_for).await;
        let result = match &out.failure {
            Some(f) if f.is_stalled() || out.status.is_true(STALLED) => "stalled",
            Some(_) => "error",
            None => "success",
        };
        if let Some(f) = &out.failure {
            self.metrics.record_error(f.reason().as_str());
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

    /// observe → decide → act → report.
    async fn reconcile_inner<S: SecretStore>(
        &self,
        sdd: &StableDiffusionDeployment,
        store: &S,
        mode: Mode,
        endpoint_for: Option<&str>,
    ) -> Reconciled {
        let uid = sdd.metadata.uid.clone().unwrap_or_default();
        let prev = sdd.status.clone().unwrap_or_default();
        let context = |failed: bool, events: Vec<Event>| Context {
            prev: &prev,
            generation: sdd.metadata.generation.unwrap_or(1),
            now: now(),
            poll: self.poll_interval(sdd),
            progress: self.cfg.progress_interval,
            backoff: &self.cfg.backoff,
            failures: self.count_failure(&uid, failed),
            events,
            endpoint_for,
        };
        let input = |decision, failure, smoke| Input {
            decision,
            failure,
            smoke,
            replicas: crate::desired::initial_replicas(&sdd.spec),
            deleting: sdd.metadata.deletion_timestamp.is_some(),
        };
        let fail = |failure: Failure| {
            let smoke = prev.smoke_test.clone();
            report::report(context(true, Vec::new()), input(None, Some(failure), smoke))
        };

        let gathered = match self.observe(sdd, store).await {
            Ok(g) => g,
            Err(f) => return fail(f),
        };
        if let Some(wait) = gathered.deferred {
            return Reconciled {
                status: prev.clone(),
                events: Vec::new(),
                requeue_after: wait + Duration::from_millis(rand::random_range(0..1000)),
                release_finalizer: false,
                plan: None,
                failure: None,
                endpoint: None,
            };
        }
        let decision = match decide::decide(sdd, &gathered.observation, mode) {
            Ok(d) => d,
            Err(f) => return fail(f),
        };

        let mut events = decision.events.clone();
        let mut failure = decision.image.failure.clone();
        if let (Mode::Apply, Some(scope), Observation::Facts(facts)) =
            (mode, &gathered.scope, &gathered.observation)
        {
            let resource = format!(
                "{}/{}",
                sdd.metadata.namespace.as_deref().unwrap_or_default(),
                sdd.metadata.name.as_deref().unwrap_or_default()
            );
            let hands = Hands {
                scope: scope.as_ref(),
                facts,
                repository: &sdd.spec.image.repository,
                resource: &resource,
            };
            // One action at a time; the first failure ends the round.
            for action in &decision.plan.actions {
                match self.act(&hands, &uid, action).await {
                    Ok(mut e) => events.append(&mut e),
                    Err(f) => {
                        failure = Some(f);
                        break;
                    }
                }
            }
            if failure.is_none() {
                let mut e = self
                    .reallocate(scope.as_ref(), &uid, &decision.fleet.reallocate)
                    .await;
                events.append(&mut e);
            }
        }
        if let Some(fleet) = &decision.fleet.status {
            let resource = (
                sdd.metadata.namespace.as_deref().unwrap_or_default(),
                sdd.metadata.name.as_deref().unwrap_or_default(),
            );
            self.metrics
                .record_fleet(&uid, resource, fleet, &listed_groups(&gathered));
        }
        for e in &events {
            self.metrics.record_fleet_event(e.reason);
        }
        let smoke = match &decision.smoke {
            Smoke::Keep(kept) => kept.clone(),
            Smoke::Run(group) => Some(self.smoke_test(sdd, group, &gathered, &mut events).await),
            Smoke::Submit {
                queue,
                group_version,
            } => match (&gathered.scope, &sdd.spec.smoke_test) {
                (Some(scope), Some(cfg)) => {
                    Some(submit_smoke(scope.as_ref(), sdd, cfg, queue, *group_version).await)
                }
                _ => None,
            },
            Smoke::Poll { queue, pending } => match &gathered.scope {
                Some(scope) => Some(poll_smoke(scope.as_ref(), queue, pending, &mut events).await),
                None => Some(pending.clone()),
            },
        };

        let failed = failure.is_some() || matches!(decision.plan.outcome, Outcome::Stalled { .. });
        report::report(
            context(failed, events),
            input(Some(&decision), failure, smoke),
        )
    }

    /// A txt2img on `group`, as [`decide::smoke`] asked.
    async fn smoke_test(
        &self,
        sdd: &StableDiffusionDeployment,
        group: &saladcloud::model::ContainerGroup,
        gathered: &Gathered,
        events: &mut Vec<Event>,
    ) -> SmokeTestStatus {
        let api_key = match &gathered.observation {
            Observation::Facts(f) => f.secrets.api_key.as_ref(),
            _ => None,
        };
        let Some(cfg) = &sdd.spec.smoke_test else {
            return SmokeTestStatus::default();
        };
        let result = smoke::run(
            &self.http,
            self.cfg.gateway_override.as_deref(),
            group,
            api_key.filter(|_| sdd.spec.gateway.auth),
            &sdd.spec,
            cfg,
        )
        .await;
        events.push(if result.result == "Passed" {
            Event::normal(
                Reason::SmokeTestPassed,
                format!(
                    "txt2img on `{}` answered in {} ms",
                    group.name,
                    result.latency_ms.unwrap_or(0)
                ),
            )
        } else {
            Event::warning(
                Reason::SmokeTestFailed,
                result.message.clone().unwrap_or_default(),
            )
        });
        SmokeTestStatus {
            group_version: Some(group.version as i32),
            ..result
        }
    }
}

/// Enqueues the smoke test's generation on the group's queue (queue mode).
async fn submit_smoke(
    scope: &dyn crate::salad::ContainerGroups,
    sdd: &StableDiffusionDeployment,
    cfg: &salad_sd_api::SmokeTestSpec,
    queue: &str,
    group_version: i32,
) -> SmokeTestStatus {
    let failed = |message: String| SmokeTestStatus {
        result: "Failed".into(),
        group_version: Some(group_version),
        message: Some(message),
        ..SmokeTestStatus::default()
    };
    let request = match smoke::request(&sdd.spec, cfg) {
        Ok(r) => r,
        Err(message) => return failed(message),
    };
    match scope.submit_job(queue, &request.body).await {
        Ok(id) => SmokeTestStatus {
            result: "Pending".into(),
            group_version: Some(group_version),
            latency_ms: None,
            message: Some(format!("job {id} enqueued on `{queue}`")),
            job_id: Some(id),
        },
        Err(e) => failed(format!("cannot enqueue the smoke test on `{queue}`: {e}")),
    }
}

/// Reads the pending smoke test's job; announces the result once it ends.
async fn poll_smoke(
    scope: &dyn crate::salad::ContainerGroups,
    queue: &str,
    pending: &SmokeTestStatus,
    events: &mut Vec<Event>,
) -> SmokeTestStatus {
    let id = pending.job_id.clone().unwrap_or_default();
    let result = match scope.job(queue, &id).await {
        Ok(job) => smoke::from_job(&job, pending),
        // A transient read failure keeps the test pending; the next reconcile reads again.
        Err(e) if !e.is_not_found() => return pending.clone(),
        Err(e) => SmokeTestStatus {
            result: "Failed".into(),
            job_id: None,
            message: Some(format!(
                "the smoke test's job {id} is gone from `{queue}`: {e}"
            )),
            ..pending.clone()
        },
    };
    match result.result.as_str() {
        "Passed" => events.push(Event::normal(
            Reason::SmokeTestPassed,
            format!(
                "txt2img through queue `{queue}` answered in {} ms",
                result.latency_ms.unwrap_or(0)
            ),
        )),
        "Failed" => events.push(Event::warning(
            Reason::SmokeTestFailed,
            result.message.clone().unwrap_or_default(),
        )),
        _ => {}
    }
    result
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

/// The groups observe saw and the instances it listed, for the usage gauges.
fn listed_groups(g: &Gathered) -> Vec<crate::metrics::ListedGroup<'_>> {
    match &g.observation {
        Observation::Facts(f) => f
            .groups
            .iter()
            .map(|g| crate::metrics::ListedGroup {
                name: &g.group.name,
                instances: g.instances.as_deref(),
            })
            .collect(),
        _ => Vec::new(),
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
}
