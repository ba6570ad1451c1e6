//! Failures that end well, over the real engine with the SaladCloud simulator, a real registry
//! and a model server: a registry that is down, a create SaladCloud refuses, a rate limit, a
//! build whose source comes back, and a new spec that fails while the old group serves.
//!
//! Cost is measured on a virtual clock: each reconcile happens `requeue_after` after the one
//! before (as the operator schedules it), and the test counts what a cluster would see: status
//! writes (a status that differs from the previous one but for times), Events, and SaladCloud
//! requests (the simulator's count).

use std::time::{Duration, Instant};

use salad_sd_api::condition::{IMAGE_READY, READY, RECONCILING, STALLED, SYNCED};
use salad_sd_api::{Phase, StableDiffusionDeployment};
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::report::same_ignoring_times;
use salad_sd_controller::secrets::MapSecretStore;
use salad_sd_controller::{Engine, Mode, Reconciled};
use salad_sd_testkit::{
    LocalRegistry, Misbehavior, ModelServer, ModelServerOptions, generated_sha256,
    push_tiny_base_image,
};
use saladcloud::RetryPolicy;
use saladcloud_sim::{SimConfig, SimHandle, Simulator};

const KEY: &str = "failures-test-key";
const MODEL: &str = "models/base.safetensors";
const MODEL_SIZE: u64 = 1 << 20;

struct Harness {
    sim: SimHandle,
    registry: LocalRegistry,
    models: ModelServer,
    engine: Engine,
    store: MapSecretStore,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(sim: SimConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::start(dir.path()).await.unwrap();
        push_tiny_base_image(&registry.host_port(), "base/sdnext:tiny", false)
            .await
            .unwrap();
        let models = ModelServer::start(ModelServerOptions::default())
            .await
            .unwrap();
        models.add_generated(MODEL, MODEL_SIZE, 7);
        let sim = Simulator::start(sim, "127.0.0.1:0").await.unwrap();
        let engine = EngineBuilder::new()
            .simulator(sim.base_url())
            .local_registry(registry.host_port())
            .gateway(sim.addr())
            .fast_retries(RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
                max_elapsed: Duration::from_secs(2),
            })
            .build();
        let store = MapSecretStore::default().with("salad-api-key", "apiKey", KEY);
        Self {
            sim,
            registry,
            models,
            engine,
            store,
            _dir: dir,
        }
    }

    fn resource(&self, repository: &str, replicas: u32) -> StableDiffusionDeployment {
        let reg = self.registry.host_port();
        let yaml = format!(
            r#"
apiVersion: salad-sd.dev/v1alpha1
kind: StableDiffusionDeployment
metadata:
  name: fails
spec:
  saladcloud:
    organization: acme
    project: image-gen
    apiKeySecretRef:
      name: salad-api-key
      key: apiKey
  server:
    baseImage: {reg}/base/sdnext:tiny
  models:
    - name: base.safetensors
      kind: Checkpoint
      source:
        url: {url}
        sha256: "{sha}"
  image:
    repository: {repository}
  replicas: {replicas}
  resources:
    cpu: 4
    memory: 12Gi
    gpuClasses: [RTX 3060 Ti]
  gateway:
    enabled: true
"#,
            url = self.models.url(MODEL),
            sha = generated_sha256(MODEL_SIZE, 7),
        );
        let mut sdd: StableDiffusionDeployment = serde_saphyr::from_str(&yaml).unwrap();
        sdd.metadata.uid = Some("0f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b".into());
        sdd.metadata.generation = Some(1);
        sdd.metadata.namespace = Some("default".into());
        sdd
    }

    async fn reconcile(&self, sdd: &mut StableDiffusionDeployment) -> Reconciled {
        let r = self.engine.reconcile(sdd, &self.store, Mode::Apply).await;
        sdd.status = Some(r.status.clone());
        r
    }

    /// Reconciles (real time, short pauses) until `done`, for at most `limit`.
    async fn reconcile_until(
        &self,
        sdd: &mut StableDiffusionDeployment,
        limit: Duration,
        done: impl Fn(&Reconciled) -> bool,
    ) -> Reconciled {
        let started = Instant::now();
        loop {
            let r = self.reconcile(sdd).await;
            if done(&r) {
                return r;
            }
            assert!(
                started.elapsed() < limit,
                "not done after {limit:?}: {:?}\n{:?}",
                r.status.message,
                r.status.conditions
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reconciles on the virtual clock for `window`; what a cluster and SaladCloud saw.
    async fn cost_over(&self, sdd: &mut StableDiffusionDeployment, window: Duration) -> Cost {
        self.sim.admin().reset_stats();
        let mut cost = Cost::default();
        let mut clock = Duration::ZERO;
        while clock < window {
            let before = sdd.status.clone().unwrap_or_default();
            let r = self.reconcile(sdd).await;
            if !same_ignoring_times(&before, &r.status) {
                cost.status_writes += 1;
            }
            cost.events += r.events.len();
            cost.intervals.push(r.requeue_after);
            cost.last = Some(r.clone());
            clock += r.requeue_after;
        }
        cost.salad_calls = self.sim.admin().stats().total_requests;
        cost.minutes = clock.as_secs_f64() / 60.0;
        cost
    }
}

#[derive(Default)]
struct Cost {
    status_writes: usize,
    events: usize,
    salad_calls: u64,
    intervals: Vec<Duration>,
    minutes: f64,
    last: Option<Reconciled>,
}

impl Cost {
    fn writes_per_minute(&self) -> f64 {
        (self.status_writes + self.events) as f64 / self.minutes
    }
    fn calls_per_minute(&self) -> f64 {
        self.salad_calls as f64 / self.minutes
    }
    /// One line of figures for the test output.
    fn summary(&self) -> String {
        format!(
            "{} reconciles, {} status writes, {} events, {} SaladCloud calls in {:.1} virtual minutes; intervals {:?}",
            self.intervals.len(),
            self.status_writes,
            self.events,
            self.salad_calls,
            self.minutes,
            self.intervals
                .iter()
                .map(|d| d.as_secs())
                .collect::<Vec<_>>()
        )
    }

    /// Each wait at least as long as the one before, until the cap.
    fn grows_until(&self, cap: Duration) {
        for w in self.intervals.windows(2) {
            assert!(
                w[1] >= w[0] || w[0] >= cap / 2,
                "intervals shrink: {:?}",
                self.intervals
            );
        }
    }
}

fn condition<'a>(r: &'a Reconciled, type_: &str) -> (&'a str, &'a str) {
    r.status
        .condition(type_)
        .map(|c| (c.status.as_str(), c.reason.as_str()))
        .unwrap_or(("absent", ""))
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("bounded in time")
}

#[tokio::test]
async fn an_unreachable_registry_is_retried_calmly_and_reported_truthfully() {
    bounded(async {
        let h = Harness::start(SimConfig::default()).await;
        // Nothing listens on port 9 of the loopback.
        let mut sdd = h.resource("127.0.0.1:9/acme/fails", 1);
        let cost = h.cost_over(&mut sdd, Duration::from_secs(600)).await;
        let r = cost.last.clone().unwrap();

        assert_eq!(condition(&r, IMAGE_READY), ("False", "RegistryUnavailable"));
        assert_eq!(condition(&r, READY).0, "False");
        assert_eq!(condition(&r, RECONCILING), ("True", "RegistryUnavailable"));
        assert_eq!(condition(&r, STALLED).0, "absent", "time may fix it");
        assert_eq!(
            condition(&r, SYNCED),
            ("False", "RegistryUnavailable"),
            "no group exists: never `in sync`"
        );
        assert!(r.status.estimated_hourly_cost_usd.is_some());
        assert!(
            cost.writes_per_minute() <= 6.0,
            "{} writes + {} events in {:.1} min",
            cost.status_writes,
            cost.events,
            cost.minutes
        );
        assert!(
            cost.calls_per_minute() <= 2.0,
            "{} SaladCloud calls in {:.1} min",
            cost.salad_calls,
            cost.minutes
        );
        cost.grows_until(Duration::from_secs(300));
        assert!(*cost.intervals.last().unwrap() >= Duration::from_secs(75));
        println!("registry down: {}", cost.summary());
    })
    .await;
}

#[tokio::test]
async fn a_refused_create_stalls_and_backs_off() {
    bounded(async {
        let h = Harness::start(SimConfig {
            replicas_quota: 1,
            ..SimConfig::default()
        })
        .await;
        let repo = format!("{}/acme/fails", h.registry.host_port());
        let mut sdd = h.resource(&repo, 3);
        // Build the image first (real time), so the next reconciles try to create.
        h.reconcile_until(&mut sdd, Duration::from_secs(60), |r| {
            r.status.is_true(IMAGE_READY)
        })
        .await;
        let cost = h.cost_over(&mut sdd, Duration::from_secs(1200)).await;
        let r = cost.last.clone().unwrap();
        let creates = h
            .sim
            .admin()
            .stats()
            .requests
            .get("create_container_group")
            .map_or(0, |m| m.values().sum::<u64>());
        assert_eq!(
            condition(&r, STALLED),
            ("True", "SaladValidation"),
            "{:?}",
            r.status.message
        );
        assert_eq!(condition(&r, READY).0, "False");
        assert_eq!(condition(&r, SYNCED).0, "False");
        assert_eq!(r.status.phase, Phase::Failed);
        assert!(
            r.status
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("quota"),
            "{:?}",
            r.status.message
        );
        assert!(
            cost.calls_per_minute() <= 2.0,
            "{} calls in {:.1} min",
            cost.salad_calls,
            cost.minutes
        );
        assert!(cost.writes_per_minute() <= 6.0);
        assert!(
            creates as f64 / cost.minutes <= 1.0,
            "{creates} creates in {:.1} min",
            cost.minutes
        );
        cost.grows_until(Duration::from_secs(1800));
        println!("create refused: {creates} creates; {}", cost.summary());
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_waits_for_the_window_not_for_minutes_more() {
    bounded(async {
        let h = Harness::start(SimConfig::default()).await;
        let repo = format!("{}/acme/fails", h.registry.host_port());
        let mut sdd = h.resource(&repo, 1);
        h.sim.admin().force_429(1000);
        let mut waits = Vec::new();
        for _ in 0..5 {
            let r = h.reconcile(&mut sdd).await;
            assert_eq!(
                r.failure.as_ref().map(|f| f.reason().as_str()),
                Some("SaladRateLimited")
            );
            assert_eq!(
                condition(&r, RECONCILING).0,
                "True",
                "InProgress, not silent"
            );
            assert_eq!(
                condition(&r, READY).0,
                "False",
                "a Ready condition is always there"
            );
            waits.push(r.requeue_after);
        }
        for w in &waits {
            assert!(
                (Duration::from_secs(60)..=Duration::from_secs(66)).contains(w),
                "{waits:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_failed_build_recovers_when_its_source_comes_back() {
    bounded(async {
        let h = Harness::start(SimConfig::default()).await;
        let repo = format!("{}/acme/fails", h.registry.host_port());
        let mut sdd = h.resource(&repo, 1);
        h.models.set_misbehavior(MODEL, Some(Misbehavior::NotFound));
        let mut r = h.reconcile(&mut sdd).await;
        let started = Instant::now();
        while condition(&r, IMAGE_READY) != ("False", "ModelSourceFailed") {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{:?}",
                r.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            r = h.reconcile(&mut sdd).await;
        }
        assert_eq!(condition(&r, STALLED), ("True", "ModelSourceFailed"));
        // The file appears at its URL: no spec change, the build is retried on its backoff.
        h.models.set_misbehavior(MODEL, None);
        let r = h
            .reconcile_until(&mut sdd, Duration::from_secs(60), |r| {
                r.status.is_ready_at(Some(1))
            })
            .await;
        assert_eq!(condition(&r, STALLED).0, "absent");
        assert_eq!(condition(&r, SYNCED), ("True", "InSync"));
    })
    .await;
}

#[tokio::test]
async fn a_new_spec_that_fails_leaves_the_old_group_serving_and_says_degraded() {
    bounded(async {
        let h = Harness::start(SimConfig::default()).await;
        let repo = format!("{}/acme/fails", h.registry.host_port());
        let mut sdd = h.resource(&repo, 1);
        let started = Instant::now();
        let mut r = h.reconcile(&mut sdd).await;
        while !r.status.is_ready_at(Some(1)) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{:?}",
                r.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            r = h.reconcile(&mut sdd).await;
        }
        let serving = r.status.container_group.clone().unwrap().name;
        let digest = r.status.image.clone().unwrap().short_digest;

        // Generation 2 adds a LoRA whose URL answers 404.
        h.models.add_generated("models/lora.safetensors", 4096, 8);
        h.models
            .set_misbehavior("models/lora.safetensors", Some(Misbehavior::NotFound));
        sdd.spec.models.push(salad_sd_api::ModelSpec {
            name: "lora.safetensors".into(),
            kind: salad_sd_api::ModelKind::Lora,
            path: None,
            source: salad_sd_api::ModelSource {
                url: h.models.url("models/lora.safetensors"),
                sha256: None,
                auth_secret_ref: None,
                fetch_auth_secret_ref: None,
                size_bytes: None,
            },
            default: None,
            delivery: salad_sd_api::ModelDelivery::Baked,
        });
        sdd.metadata.generation = Some(2);
        let started = Instant::now();
        r = h.reconcile(&mut sdd).await;
        while condition(&r, IMAGE_READY).1 != "ModelSourceFailed" {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{:?}",
                r.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            r = h.reconcile(&mut sdd).await;
        }
        assert_eq!(r.status.phase, Phase::Degraded);
        assert_eq!(
            r.status.container_group.as_ref().map(|g| g.name.clone()),
            Some(serving.clone()),
            "the old group still serves"
        );
        assert!(r.status.ready_replicas > 0);
        assert_eq!(
            r.status.image.as_ref().and_then(|i| i.short_digest.clone()),
            digest,
            "the IMAGE column shows the serving image"
        );
        assert_eq!(condition(&r, SYNCED).0, "False");
        let groups = h.sim.admin().stats().live_groups;
        assert_eq!(groups, 1, "nothing was torn down");
    })
    .await;
}

/// Admission (the CRD's enum) and the simulated SaladCloud accept the same country codes. The
/// simulator keeps its own copy on purpose: it stands in for SaladCloud and shares no code with
/// the operator.
#[test]
fn admission_and_the_simulator_agree_on_country_codes() {
    assert_eq!(
        salad_sd_api::country::COUNTRY_CODES,
        saladcloud_sim::COUNTRY_CODES
    );
}
