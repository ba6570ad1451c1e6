//! End to end over the real engine: the SaladCloud simulator, a real registry
//! (`/usr/bin/docker-registry`), a model file server and the image builder, driven the way the
//! operator drives them (status fed back, generation bumped on spec changes, deletion timestamp
//! set to delete). Everything listens on 127.0.0.1; every test is bounded in time.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use salad_sd_api::StableDiffusionDeployment;
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::secrets::MapSecretStore;
use salad_sd_controller::{Engine, Event, EventType, Mode, Reconciled};
use salad_sd_testkit::{
    LocalRegistry, ModelServer, ModelServerOptions, generated_sha256, push_tiny_base_image,
};
use saladcloud::model::{ContainerGroup, ContainerGroupPatch, UpdateContainer};
use saladcloud::{ApiKey, Client, ClientConfig, RetryPolicy};
use saladcloud_sim::{SimConfig, SimHandle, Simulator, Timings};

const ORG: &str = "acme";
const PROJECT: &str = "image-gen";
const BASE_MODEL: &str = "models/base.safetensors";
const BASE_SIZE: u64 = 3 << 20;
const LORA: &str = "models/detail.safetensors";
const LORA_SIZE: u64 = 64 << 10;

/// Everything one test runs against; dropping it stops the simulator, the registry (a child
/// process killed on drop) and the model server.
struct Harness {
    sim: SimHandle,
    registry: LocalRegistry,
    models: ModelServer,
    engine: Engine,
    /// Key of the engine's SaladCloud client (one rate budget per key and per test).
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(sim_config: SimConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = LocalRegistry::start(dir.path())
            .await
            .expect("start /usr/bin/docker-registry");
        push_tiny_base_image(&registry.host_port(), "base/sdnext:tiny", false)
            .await
            .expect("push the tiny base image");
        let models = ModelServer::start(ModelServerOptions::default())
            .await
            .expect("model server");
        models.add_generated(BASE_MODEL, BASE_SIZE, 1);
        models.add_generated(LORA, LORA_SIZE, 2);
        let sim = Simulator::start(sim_config, "127.0.0.1:0")
            .await
            .expect("simulator");
        let engine = EngineBuilder::new()
            .simulator(sim.base_url())
            .local_registry(registry.host_port())
            .gateway(sim.addr())
            .fast_retries(RetryPolicy {
                max_attempts: 4,
                initial_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(200),
                max_elapsed: Duration::from_secs(3),
            })
            .build();
        Self {
            sim,
            registry,
            models,
            engine,
            _dir: dir,
        }
    }

    /// A resource as a cluster would hand it over: uid, generation 1, namespace.
    fn resource(&self, name: &str, uid: &str, strategy: &str) -> StableDiffusionDeployment {
        let reg = self.registry.host_port();
        let yaml = format!(
            r#"
apiVersion: salad-sd.dev/v1alpha1
kind: StableDiffusionDeployment
metadata:
  name: {name}
spec:
  saladcloud:
    organization: {ORG}
    project: {PROJECT}
    apiKeySecretRef:
      name: salad-api-key
      key: apiKey
  server:
    kind: SDNext
    baseImage: {reg}/base/sdnext:tiny
    port: 7860
    env:
      - name: SD_LOG
        value: info
  models:
    - name: base.safetensors
      kind: Checkpoint
      default: true
      source:
        url: {url}
        sha256: "{sha}"
  image:
    repository: {reg}/acme/{name}
  replicas: 2
  resources:
    cpu: 4
    memory: 12Gi
    gpuClasses:
      - RTX 3060 Ti (8 GB)
  priority: high
  gateway:
    enabled: true
    port: 7860
  rollout:
    strategy: {strategy}
  smokeTest:
    prompt: a lighthouse on a cliff at sunset
    steps: 4
    size: 64
"#,
            url = self.models.url(BASE_MODEL),
            sha = generated_sha256(BASE_SIZE, 1),
        );
        let mut sdd: StableDiffusionDeployment =
            serde_saphyr::from_str(&yaml).expect("valid resource YAML");
        sdd.metadata.uid = Some(uid.into());
        sdd.metadata.generation = Some(1);
        sdd.metadata.namespace = Some("default".into());
        sdd
    }

    /// One reconcile, with the status written back as the operator would.
    async fn reconcile(
        &self,
        sdd: &mut StableDiffusionDeployment,
        store: &MapSecretStore,
    ) -> Reconciled {
        let r = self.engine.reconcile(sdd, store, Mode::Apply).await;
        sdd.status = Some(r.status.clone());
        r
    }

    /// Reconciles until `done` (at most `max` times, a short pause in between), collecting
    /// events and every status seen.
    async fn drive(
        &self,
        sdd: &mut StableDiffusionDeployment,
        store: &MapSecretStore,
        log: &mut Log,
        max: usize,
        done: impl Fn(&Reconciled) -> bool,
    ) -> Reconciled {
        for _ in 0..max {
            let r = self.reconcile(sdd, store).await;
            log.record(&r);
            if done(&r) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!(
            "not done after {max} reconciles; last status: {:#?}\nevents: {:#?}",
            sdd.status, log.events
        );
    }

    /// A client of its own (with its own rate budget) to look at or meddle with the groups.
    fn client(&self, key: &str) -> Client {
        Client::new(ClientConfig::new(ApiKey::new(key)).with_base_url(self.sim.base_url()))
            .expect("client")
    }

    async fn groups(&self, key: &str) -> Vec<ContainerGroup> {
        self.client(key)
            .list_container_groups(ORG, PROJECT)
            .await
            .expect("list groups")
    }
}

/// What a sequence of reconciles produced.
#[derive(Default)]
struct Log {
    events: Vec<Event>,
    /// (target group, previous group) of every status.
    switches: Vec<(Option<String>, Option<String>)>,
    errors: Vec<String>,
}

impl Log {
    fn record(&mut self, r: &Reconciled) {
        self.events.extend(r.events.iter().cloned());
        self.switches.push((
            r.status.container_group.as_ref().map(|g| g.name.clone()),
            r.status
                .previous_container_group
                .as_ref()
                .map(|g| g.name.clone()),
        ));
        if let Some(failure) = &r.failure {
            self.errors.push(failure.reason().as_str().to_string());
        }
    }

    fn count(&self, reason: &str) -> usize {
        self.events
            .iter()
            .filter(|e| e.reason.as_str() == reason)
            .count()
    }

    fn event(&self, reason: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.reason.as_str() == reason)
    }
}

fn condition(r: &Reconciled, type_: &str) -> Option<(String, Option<i64>)> {
    r.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.observed_generation))
}

/// Ready=True for this generation, serving (not stopped), with the smoke test passed.
fn serving(generation: i64) -> impl Fn(&Reconciled) -> bool {
    move |r| {
        condition(r, "Ready") == Some(("True".into(), Some(generation)))
            && r.status.phase == salad_sd_api::Phase::Running
            && r.status.smoke_test.as_ref().map(|s| s.result.as_str()) == Some("Passed")
    }
}

fn store(key: &str) -> MapSecretStore {
    MapSecretStore::default().with("salad-api-key", "apiKey", key)
}

fn change_spec(
    sdd: &mut StableDiffusionDeployment,
    f: impl FnOnce(&mut StableDiffusionDeployment),
) {
    f(sdd);
    sdd.metadata.generation = Some(sdd.metadata.generation.unwrap_or(1) + 1);
}

fn generation(sdd: &StableDiffusionDeployment) -> i64 {
    sdd.metadata.generation.unwrap_or(1)
}

fn set_env(sdd: &mut StableDiffusionDeployment, value: &str) {
    sdd.spec.server.env[0].value = Some(value.into());
}

fn sim_config() -> SimConfig {
    SimConfig {
        timings: Timings::fast(),
        rate_limit_per_minute: 0,
        ..SimConfig::default()
    }
}

async fn bounded<F: Future<Output = ()>>(limit: Duration, f: F) {
    tokio::time::timeout(limit, f)
        .await
        .expect("the scenario finished in time");
}

/// Create → Ready, add a model (only its layer is built and uploaded) → redeployed in place
/// (Recreate) → Ready, stop, start, delete with the Delete policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_rebuild_recreate_stop_start_delete() {
    bounded(Duration::from_secs(50), async {
        let h = Harness::start(sim_config()).await;
        let key = "key-recreate";
        let secrets = store(key);
        let mut sdd = h.resource(
            "dreamshaper",
            "3f2a9c1e-8b7d-4e5f-9a0b-1c2d3e4f5a6b",
            "Recreate",
        );
        let mut log = Log::default();
        let started = Instant::now();

        // Create → Ready.
        let r = h.drive(&mut sdd, &secrets, &mut log, 120, serving(1)).await;
        let group = r.status.container_group.clone().expect("group in status");
        assert_eq!(group.name, "dreamshaper-3f2a9c1e-1");
        assert!(
            group
                .access_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://dreamshaper-3f2a9c1e-1-"))
        );
        assert_eq!(r.status.ready_replicas, 2);
        assert_eq!(r.status.replica_summary.as_deref(), Some("2/2"));
        assert_eq!(
            r.status.estimated_hourly_cost_usd.as_deref(),
            Some("0.160"),
            "RTX 3060 Ti high 0.080 × 2"
        );
        assert_eq!(
            condition(&r, "Synced").map(|c| c.0).as_deref(),
            Some("True")
        );
        assert_eq!(
            condition(&r, "ImageReady").map(|c| c.0).as_deref(),
            Some("True")
        );
        assert!(log.event("ImageBuilt").is_some() && log.event("Created").is_some());
        assert_eq!(log.count("RolloutComplete"), 1);
        assert_eq!(log.count("SmokeTestPassed"), 1);
        let first_image = r.status.image.clone().expect("image status");
        assert_eq!(first_image.layers.len(), 1);
        let base_served = h.models.bytes_served(BASE_MODEL);
        assert_eq!(base_served, BASE_SIZE, "the model was downloaded once");
        eprintln!("create → Ready in {:?}", started.elapsed());

        // Steady state: nothing to do, no events, requeue at the poll interval.
        let r = h.reconcile(&mut sdd, &secrets).await;
        assert!(r.plan.as_ref().is_some_and(|p| p.actions.is_empty()));
        assert!(
            r.events.is_empty(),
            "no events in steady state: {:?}",
            r.events
        );
        assert!(r.requeue_after >= Duration::from_secs(50));

        // Add a model: only its layer is built; Recreate patches the same group in place.
        let t = Instant::now();
        change_spec(&mut sdd, |s| {
            s.spec.models.push(
                serde_saphyr::from_str(&format!(
                    "name: detail.safetensors\nkind: Lora\nsource:\n  url: {}\n  sha256: \"{}\"\n",
                    h.models.url(LORA),
                    generated_sha256(LORA_SIZE, 2)
                ))
                .expect("model spec"),
            );
        });
        let before = log.events.len();
        let r = h.drive(&mut sdd, &secrets, &mut log, 120, serving(2)).await;
        let image = r.status.image.clone().expect("image status");
        assert_eq!(image.layers.len(), 2);
        assert_eq!(
            image.layers[0].digest, first_image.layers[0].digest,
            "the base model layer is reused"
        );
        assert_ne!(image.reference, first_image.reference);
        assert_eq!(
            h.models.bytes_served(BASE_MODEL),
            base_served,
            "the base model is not downloaded again"
        );
        assert_eq!(h.models.bytes_served(LORA), LORA_SIZE);
        let built = log.events[before..]
            .iter()
            .find(|e| e.reason.as_str() == "ImageBuilt")
            .expect("ImageBuilt");
        let uploaded: u64 = built
            .message
            .split(" bytes uploaded")
            .next()
            .and_then(|m| m.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("bytes uploaded in the ImageBuilt message");
        assert!(
            uploaded < BASE_SIZE / 2,
            "only the new layer is uploaded: {uploaded} bytes"
        );
        let group = r.status.container_group.clone().expect("group");
        assert_eq!(
            group.name, "dreamshaper-3f2a9c1e-1",
            "Recreate keeps the group"
        );
        assert!(
            group.version.is_some_and(|v| v >= 2),
            "a new container version: {group:?}"
        );
        let live = h.groups(key).await;
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].container.image, image.reference.clone().unwrap());
        assert!(
            log.events[before..]
                .iter()
                .any(|e| e.reason.as_str() == "Updated")
        );
        assert!(
            !log.events
                .iter()
                .any(|e| e.reason.as_str() == "DriftCorrected"),
            "a spec change is not drift"
        );
        eprintln!("model added → Ready in {:?}", t.elapsed());

        // Replicas: patched without a new version.
        let version = group.version;
        change_spec(&mut sdd, |s| s.spec.replicas = 3);
        let want_gen = generation(&sdd);
        let r = h
            .drive(&mut sdd, &secrets, &mut log, 80, |r| {
                serving(want_gen)(r) && r.status.ready_replicas == 3
            })
            .await;
        assert_eq!(r.status.container_group.as_ref().unwrap().version, version);
        assert_eq!(r.status.estimated_hourly_cost_usd.as_deref(), Some("0.240"));

        // Stop, then start.
        change_spec(&mut sdd, |s| s.spec.stopped = true);
        let r = h
            .drive(&mut sdd, &secrets, &mut log, 80, |r| {
                r.status.phase == salad_sd_api::Phase::Stopped
            })
            .await;
        assert_eq!(r.status.estimated_hourly_cost_usd.as_deref(), Some("0.000"));
        assert!(log.event("Stopped").is_some());
        let g = &h.groups(key).await[0];
        assert_eq!(
            g.current_state.status,
            saladcloud::model::ContainerGroupStatus::Stopped
        );
        change_spec(&mut sdd, |s| s.spec.stopped = false);
        let want_gen = generation(&sdd);
        h.drive(&mut sdd, &secrets, &mut log, 80, |r| {
            condition(r, "Ready") == Some(("True".into(), Some(want_gen)))
                && r.status.phase == salad_sd_api::Phase::Running
        })
        .await;
        assert!(log.event("Started").is_some());

        // Delete with the Delete policy: the group goes, then the finalizer.
        sdd.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let r = h
            .drive(&mut sdd, &secrets, &mut log, 60, |r| r.release_finalizer)
            .await;
        assert_eq!(r.status.phase, salad_sd_api::Phase::Deleting);
        assert!(h.groups(key).await.is_empty());
        assert_eq!(
            log.count("Deleted"),
            1,
            "one Deleted event per group: {:?}",
            log.events
        );
        let stats = h.sim.admin().stats();
        assert_eq!(stats.live_groups, 0);
        assert_eq!(
            stats.names_ever_used.len(),
            1,
            "one group for the whole life: {:?}",
            stats.names_ever_used
        );
        assert!(
            log.errors.is_empty(),
            "no failed reconciles: {:?}",
            log.errors
        );
        eprintln!("scenario took {:?}", started.elapsed());
    })
    .await;
}

/// BlueGreen: a new group next to the old one (status shows both), the old one deleted after the
/// new one converged, no leaked group; then deletion with the Orphan policy leaves the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switch_then_orphan() {
    bounded(Duration::from_secs(50), async {
        let h = Harness::start(sim_config()).await;
        let key = "key-bluegreen";
        let secrets = store(key);
        let mut sdd = h.resource("bg", "a1b2c3d4-0000-4000-8000-000000000001", "BlueGreen");
        let mut log = Log::default();
        h.drive(&mut sdd, &secrets, &mut log, 120, serving(1)).await;
        let old = h.groups(key).await;
        assert_eq!(old.len(), 1);

        change_spec(&mut sdd, |s| set_env(s, "debug"));
        let r = h
            .drive(&mut sdd, &secrets, &mut log, 120, |r| {
                serving(2)(r) && r.status.previous_container_group.is_none()
            })
            .await;
        let new_name = r.status.container_group.as_ref().unwrap().name.clone();
        assert_eq!(new_name, "bg-a1b2c3d4-2");
        assert!(
            log.switches
                .iter()
                .any(|(t, p)| t.as_deref() == Some("bg-a1b2c3d4-2")
                    && p.as_deref() == Some("bg-a1b2c3d4-1")),
            "status showed both groups during the switch: {:?}",
            log.switches
        );
        assert!(
            log.events
                .iter()
                .any(|e| e.reason.as_str() == "Deleted" && e.message.contains("bg-a1b2c3d4-1"))
        );
        assert_eq!(
            log.count("Deleted"),
            1,
            "the retired group is announced once"
        );
        let smoke: Vec<&str> = log
            .events
            .iter()
            .filter(|e| e.reason.as_str() == "SmokeTestPassed")
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            smoke.len(),
            2,
            "the new group is smoke-tested too: {smoke:?}"
        );
        assert!(smoke[1].contains("bg-a1b2c3d4-2"));
        let live = h.groups(key).await;
        assert_eq!(
            live.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["bg-a1b2c3d4-2"]
        );
        assert_eq!(
            live[0]
                .container
                .environment_variables
                .get("SD_LOG")
                .map(String::as_str),
            Some("debug")
        );
        let stats = h.sim.admin().stats();
        assert_eq!(stats.live_groups, 1, "no leaked group");
        assert_eq!(
            stats.names_ever_used.len(),
            2,
            "no duplicate group: {:?}",
            stats.names_ever_used
        );

        // Orphan: released at once, the group stays.
        sdd.spec.deletion_policy = salad_sd_api::DeletionPolicy::Orphan;
        sdd.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        let r = h.reconcile(&mut sdd, &secrets).await;
        assert!(r.release_finalizer);
        assert!(r.plan.as_ref().is_some_and(|p| p.actions.is_empty()));
        assert_eq!(
            h.groups(key).await.len(),
            1,
            "the orphaned group is left running"
        );
        assert!(log.errors.is_empty(), "{:?}", log.errors);
    })
    .await;
}

/// A group changed behind the engine's back is put back (DriftCorrected), and a rotated API key
/// is used at the next reconcile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_corrected_and_a_rotated_api_key_is_used() {
    bounded(Duration::from_secs(50), async {
        // The simulator only accepts the new key.
        let new_key = "key-rotated-new";
        let h = Harness::start(SimConfig {
            api_key: Some(new_key.into()),
            ..sim_config()
        })
        .await;
        let mut sdd = h.resource("drift", "0d1f7a2b-0000-4000-8000-000000000002", "Recreate");
        let mut log = Log::default();

        // The Secret still holds the old key: nothing happens, the failure is reported.
        let old = store("key-rotated-old");
        let r = h.reconcile(&mut sdd, &old).await;
        assert!(r.failure.is_some(), "the old key is refused");
        assert!(r.events.iter().any(|e| e.type_ == EventType::Warning));
        assert_ne!(condition(&r, "Ready").map(|c| c.0).as_deref(), Some("True"));
        assert_eq!(h.sim.admin().stats().live_groups, 0);

        // Rotate the Secret: the next reconcile uses the new key, no restart.
        let secrets = store(new_key);
        h.drive(&mut sdd, &secrets, &mut log, 120, serving(1)).await;
        let reference = sdd
            .status
            .as_ref()
            .unwrap()
            .image
            .as_ref()
            .unwrap()
            .reference
            .clone()
            .unwrap();

        // Someone changes the image in the portal.
        let name = sdd
            .status
            .as_ref()
            .unwrap()
            .container_group
            .as_ref()
            .unwrap()
            .name
            .clone();
        let patch = ContainerGroupPatch {
            container: Some(UpdateContainer {
                image: Some("docker.io/someone/else:latest".into()),
                ..UpdateContainer::default()
            }),
            ..ContainerGroupPatch::default()
        };
        h.client(new_key)
            .update_container_group(ORG, PROJECT, &name, &patch)
            .await
            .expect("patch behind the engine's back");
        let r = h
            .drive(&mut sdd, &secrets, &mut log, 80, |r| {
                r.events
                    .iter()
                    .any(|e| e.reason.as_str() == "DriftCorrected")
            })
            .await;
        let drift = r
            .events
            .iter()
            .find(|e| e.reason.as_str() == "DriftCorrected")
            .unwrap();
        assert!(drift.message.contains("container.image"), "{drift:?}");
        let g = &h.groups(new_key).await[0];
        assert_eq!(g.container.image, reference, "the image is restored");
        h.drive(&mut sdd, &secrets, &mut log, 80, |r| {
            condition(r, "Ready") == Some(("True".into(), Some(1)))
                && r.plan.as_ref().is_some_and(|p| p.actions.is_empty())
        })
        .await;
        assert_eq!(log.count("DriftCorrected"), 1, "corrected once");
        assert_eq!(h.sim.admin().stats().names_ever_used.len(), 1);
    })
    .await;
}

/// 5xx and 429 storms, dropped connections and node interruptions during create, a BlueGreen
/// switch and deletion: it converges, with no duplicate and no leaked group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storms_and_interruptions_converge_without_duplicates_or_leaks() {
    bounded(Duration::from_secs(55), async {
        let h = Harness::start(sim_config()).await;
        let admin = h.sim.admin();
        let key = "key-storms";
        let secrets = store(key);
        let mut sdd = h.resource("storm", "5e6f7a8b-0000-4000-8000-000000000003", "BlueGreen");
        let mut log = Log::default();

        admin.set_error_rate(0.3);
        admin.set_drop_rate(0.05);
        admin.force_429(5);
        let mut interrupted = BTreeSet::new();
        for round in 0..200 {
            let r = h.reconcile(&mut sdd, &secrets).await;
            log.record(&r);
            if let Some(g) = &r.status.container_group
                && g.instances.running > 0
                && interrupted.insert(g.name.clone())
            {
                admin
                    .interrupt(ORG, PROJECT, &g.name, None)
                    .expect("interrupt a node");
            }
            if serving(1)(&r) && !interrupted.is_empty() {
                break;
            }
            assert!(
                round < 199,
                "no convergence under faults: {:#?}",
                sdd.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !log.errors.is_empty(),
            "the faults were felt: {:?}",
            admin.stats().requests
        );

        // A BlueGreen switch under the same weather.
        change_spec(&mut sdd, |s| set_env(s, "debug"));
        admin.force_429(3);
        h.drive(&mut sdd, &secrets, &mut log, 200, |r| {
            serving(2)(r) && r.status.previous_container_group.is_none()
        })
        .await;
        let stats = admin.stats();
        assert_eq!(
            stats.live_groups, 1,
            "no leaked group: {:?}",
            stats.names_ever_used
        );
        assert_eq!(
            stats.names_ever_used.len(),
            2,
            "no duplicate group: {:?}",
            stats.names_ever_used
        );

        // Deletion under faults.
        sdd.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        h.drive(&mut sdd, &secrets, &mut log, 200, |r| r.release_finalizer)
            .await;
        admin.set_error_rate(0.0);
        admin.set_drop_rate(0.0);
        assert_eq!(admin.stats().live_groups, 0);
        assert!(h.groups("key-observer").await.is_empty());
        eprintln!(
            "storm: {} failed reconciles, {} API requests, {} answered 429",
            log.errors.len(),
            admin.stats().total_requests,
            admin.stats().rate_limited
        );
    })
    .await;
}

/// Queue mode, scale to zero: the queue is created, the group connects to it at 0 instances
/// and is Ready as Idle at $0; the smoke test's job makes SaladCloud's queue autoscaler (the
/// simulator's) start an instance, a worker answers it, the result is recorded with its
/// latency; deletion removes the group, then the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_mode_idles_at_zero_and_a_job_scales_it_up() {
    bounded(Duration::from_secs(150), async {
        let h = Harness::start(SimConfig {
            job_time: Duration::from_millis(200),
            ..sim_config()
        })
        .await;
        let worker = salad_sd_testkit::JobQueue::start()
            .await
            .expect("worker archive server");
        let (url, sha) = worker.worker_source();
        let key = "key-queue";
        let secrets = store(key);
        let mut sdd = h.resource(
            "queued",
            "7a1b2c3d-0000-4000-8000-000000000001",
            "BlueGreen",
        );
        sdd.spec.queue = salad_sd_api::QueueSpec {
            enabled: true,
            autoscaler: Some(salad_sd_api::QueueAutoscalerSpec {
                min_replicas: 0,
                max_replicas: 2,
                desired_queue_length: 1,
                polling_period_seconds: 15,
                max_upscale_per_minute: None,
                max_downscale_per_minute: None,
            }),
            worker: salad_sd_api::QueueWorkerSpec {
                url: Some(url),
                sha256: Some(sha),
            },
            ..Default::default()
        };
        let mut log = Log::default();
        let started = Instant::now();

        let r = h
            .drive(&mut sdd, &secrets, &mut log, 200, |r| {
                condition(r, "Ready") == Some(("True".into(), Some(1)))
            })
            .await;
        assert_eq!(
            r.status.phase,
            salad_sd_api::Phase::Idle,
            "{:?}",
            r.status.message
        );
        assert_eq!(r.status.estimated_hourly_cost_usd.as_deref(), Some("0.000"));
        assert_eq!(r.status.replica_summary.as_deref(), Some("0/0"));
        let queue = r.status.queue.clone().expect("status.queue");
        assert_eq!(queue.name, "queued-7a1b2c3d");
        let client = h.client(key);
        let q = client
            .find_queue(ORG, PROJECT, &queue.name)
            .await
            .unwrap()
            .expect("the queue exists on SaladCloud");
        assert_eq!(q.container_groups.len(), 1);
        let c = q.container_groups[0].queue_connection.clone().unwrap();
        assert_eq!((c.path.as_str(), c.port), ("/sdapi/v1/txt2img", 7860));
        assert_eq!(
            r.status.scaling.as_ref().map(|s| s.owner),
            Some(salad_sd_api::ReplicasOwner::QueueAutoscaler)
        );

        // The smoke test's job scales the group from 0 and is answered.
        let r = h
            .drive(&mut sdd, &secrets, &mut log, 400, |r| {
                r.status
                    .smoke_test
                    .as_ref()
                    .is_some_and(|s| s.result != "Pending")
            })
            .await;
        let smoke = r.status.smoke_test.clone().unwrap();
        assert_eq!(smoke.result, "Passed", "{smoke:?}");
        assert!(
            smoke.latency_ms.unwrap_or(0) >= 1_000,
            "the latency includes the autoscaler's poll and a cold start: {smoke:?}"
        );
        assert!(log.event("SmokeTestPassed").is_some());
        assert!(
            log.errors.is_empty(),
            "no failed reconciles: {:?}",
            log.errors
        );

        // Deletion: the group, then the queue, then the finalizer.
        sdd.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        h.drive(&mut sdd, &secrets, &mut log, 120, |r| r.release_finalizer)
            .await;
        assert!(h.groups(key).await.is_empty());
        assert!(
            client.list_queues(ORG, PROJECT).await.unwrap().is_empty(),
            "no queue left behind"
        );
        assert_eq!(log.count("QueueCreated"), 1);
        assert_eq!(log.count("QueueDeleted"), 1);
        eprintln!("queue scenario took {:?}", started.elapsed());
    })
    .await;
}
