//! Upgrades: this operator reads resources whose status an earlier operator wrote, and converges
//! without a spec change. The fixtures in `tests/fixtures/` are statuses as 0.1.0 (this commit's
//! code) writes them, captured from real reconciles (`capture_status_fixtures` below, run with
//! `SALAD_SD_CAPTURE_FIXTURES=1 cargo test -p salad-sd-controller --test upgrade -- --ignored`);
//! they are kept as they were captured, so that a later operator that adds status fields is
//! tested against what is really stored in clusters. A resource from before the API-key Secret
//! finalizer (`salad-sd.dev/api-key-in-use`) gets it without a spec change.
//!
//! SaladCloud is the simulator, the registry Debian's `docker-registry`, the Kubernetes API a
//! tower-test mock; all on 127.0.0.1, bounded in time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use salad_sd_api::StableDiffusionDeployment;
use salad_sd_api::names::{API_KEY_FINALIZER, FINALIZER};
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::operator::{Context, reconcile};
use salad_sd_testkit::{LocalRegistry, ModelServer, ModelServerOptions, push_tiny_base_image};
use saladcloud_sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const NS: &str = "default";
const UID: &str = "8e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b";
const API_KEY: &str = "sim-test-key";
const NAME: &str = "upgraded";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn respond(send: SendResponse<Response<Body>>, code: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// The resource, its API-key Secret, and every write, as a mocked API server holds them.
#[derive(Default)]
struct Cluster {
    sdd: Mutex<Value>,
    secret: Mutex<Value>,
    writes: Mutex<Vec<(Method, String, Value)>>,
}

impl Cluster {
    fn object(&self) -> StableDiffusionDeployment {
        serde_json::from_value(self.sdd.lock().unwrap().clone())
            .expect("the stored resource parses")
    }

    fn writes(&self) -> Vec<(Method, String, Value)> {
        self.writes.lock().unwrap().clone()
    }

    async fn serve(self: Arc<Self>, mut handle: ApiHandle) {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = parts.uri.path().to_string();
            if parts.method != Method::GET {
                self.writes.lock().unwrap().push((
                    parts.method.clone(),
                    path.clone(),
                    body.clone(),
                ));
            }
            let secret_path = format!("/api/v1/namespaces/{NS}/secrets/salad-api-key");
            let sdd_path = format!(
                "/apis/salad-sd.dev/v1alpha1/namespaces/{NS}/stablediffusiondeployments/{NAME}"
            );
            match (parts.method.clone(), path.as_str()) {
                (Method::GET, p) if p == secret_path => {
                    respond(send, StatusCode::OK, &self.secret.lock().unwrap())
                }
                (Method::PATCH, p) if p == secret_path => {
                    // The operator's JSON patch: a `test` of the list it read, then the new list.
                    let mut secret = self.secret.lock().unwrap();
                    let ops = body.as_array().cloned().unwrap_or_default();
                    let current = secret["metadata"]["finalizers"].clone();
                    if ops[0]["value"] != current {
                        respond(
                            send,
                            StatusCode::UNPROCESSABLE_ENTITY,
                            &json!({"kind": "Status", "code": 422, "status": "Failure", "message": "test failed"}),
                        );
                        continue;
                    }
                    secret["metadata"]["finalizers"] = ops[1]["value"].clone();
                    respond(send, StatusCode::OK, &secret);
                }
                (Method::PATCH, p) if p == format!("{sdd_path}/status") => {
                    let mut sdd = self.sdd.lock().unwrap();
                    sdd["status"] = body["status"].clone();
                    respond(send, StatusCode::OK, &sdd);
                }
                (Method::POST, p) if p.ends_with("/events") => {
                    respond(send, StatusCode::CREATED, &body)
                }
                (Method::PATCH, p) if p.contains("/configmaps/") => {
                    respond(send, StatusCode::OK, &body)
                }
                (method, p) => panic!("the mocked API server does not expect {method} {p}"),
            }
        }
    }
}

/// Simulator, registry with a tiny base image, a model server, and the engine pointing at them.
struct World {
    sim: SimHandle,
    registry: LocalRegistry,
    models: ModelServer,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0")
            .await
            .expect("simulator");
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::start(dir.path())
            .await
            .expect("docker-registry (apt-get install docker-registry)");
        push_tiny_base_image(&registry.host_port(), "base/sdnext:tiny", false)
            .await
            .expect("base image");
        let models = ModelServer::start(ModelServerOptions::default())
            .await
            .unwrap();
        models.add_generated("/models/tiny.safetensors", 256 * 1024, 21);
        Self {
            sim,
            registry,
            models,
            _dir: dir,
        }
    }

    fn context(&self, cluster: &Arc<Cluster>) -> Arc<Context> {
        let engine = Arc::new(
            EngineBuilder::new()
                .simulator(self.sim.base_url())
                .local_registry(self.registry.host_port())
                .progress_interval(Duration::from_millis(200))
                .build(),
        );
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(cluster.clone().serve(handle));
        Arc::new(Context::new(Client::new(svc, NS), engine, "operator-test"))
    }

    /// The resource (finalizer on, as any resource an operator has seen), with `status`.
    fn cluster(&self, status: Option<Value>, secret_finalizers: Option<Value>) -> Arc<Cluster> {
        let reg = self.registry.host_port();
        let mut sdd = json!({
            "apiVersion": "salad-sd.dev/v1alpha1", "kind": "StableDiffusionDeployment",
            "metadata": { "name": NAME, "namespace": NS, "uid": UID, "generation": 2,
                          "resourceVersion": "500", "finalizers": [FINALIZER] },
            "spec": {
                "saladcloud": { "organization": "acme", "project": "image-gen",
                                "apiKeySecretRef": { "name": "salad-api-key", "key": "apiKey" } },
                "server": { "kind": "SDNext", "baseImage": format!("{reg}/base/sdnext:tiny") },
                "models": [{ "name": "tiny.safetensors", "kind": "Checkpoint",
                             "source": { "url": self.models.url("/models/tiny.safetensors") } }],
                "image": { "repository": format!("{reg}/sd/{NAME}") },
                "replicas": 1,
                "resources": { "memory": "8Gi", "gpuClasses": ["RTX 3060 Ti (8 GB)"] },
                "deletionPolicy": "Orphan"
            }
        });
        if let Some(status) = status {
            sdd["status"] = status;
        }
        let mut secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "salad-api-key", "namespace": NS, "resourceVersion": "9" },
            "data": { "apiKey": base64::engine::general_purpose::STANDARD.encode(API_KEY) }
        });
        if let Some(f) = secret_finalizers {
            secret["metadata"]["finalizers"] = f;
        }
        Arc::new(Cluster {
            sdd: Mutex::new(sdd),
            secret: Mutex::new(secret),
            writes: Mutex::new(Vec::new()),
        })
    }

    /// Host-specific parts of a status, as placeholders (and back).
    fn placeholders(&self) -> Vec<(String, &'static str)> {
        vec![
            (self.registry.host_port(), "{{REGISTRY}}"),
            (self.models.addr().to_string(), "{{MODELS}}"),
        ]
    }

    fn save_fixture(&self, status: &Value) -> String {
        let mut text = serde_json::to_string_pretty(status).unwrap();
        for (real, placeholder) in self.placeholders() {
            text = text.replace(&real, placeholder);
        }
        text + "\n"
    }

    fn load_fixture(&self, text: &str) -> Value {
        let mut text = text.to_string();
        for (real, placeholder) in self.placeholders() {
            text = text.replace(placeholder, &real);
        }
        serde_json::from_str(&text).expect("fixture JSON")
    }
}

fn is_ready(sdd: &StableDiffusionDeployment) -> bool {
    sdd.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == "Ready"
                && c.status == "True"
                && c.observed_generation == sdd.metadata.generation
        })
    })
}

/// Reconciles until Ready (at most `rounds`), calling `seen` with each status written.
async fn until_ready(
    cluster: &Arc<Cluster>,
    ctx: &Arc<Context>,
    rounds: usize,
    mut seen: impl FnMut(&Value),
) -> usize {
    for round in 1..=rounds {
        reconcile(Arc::new(cluster.object()), ctx.clone())
            .await
            .expect("reconcile");
        seen(&cluster.sdd.lock().unwrap()["status"]);
        if is_ready(&cluster.object()) {
            return round;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "not Ready after {rounds} reconciles: {}",
        cluster.sdd.lock().unwrap()["status"]
    );
}

fn sim_ops(sim: &SimHandle) -> Vec<String> {
    sim.admin()
        .stats()
        .requests
        .into_iter()
        .filter(|(op, _)| op != "admin")
        .map(|(op, _)| op)
        .collect()
}

#[tokio::test]
#[ignore = "writes tests/fixtures/: SALAD_SD_CAPTURE_FIXTURES=1 cargo test -p salad-sd-controller --test upgrade -- --ignored"]
async fn capture_status_fixtures() {
    if std::env::var_os("SALAD_SD_CAPTURE_FIXTURES").is_none() {
        eprintln!("set SALAD_SD_CAPTURE_FIXTURES=1 to capture the fixtures");
        return;
    }
    let world = World::start().await;
    let cluster = world.cluster(None, None);
    let ctx = world.context(&cluster);
    let mut building = None;
    until_ready(&cluster, &ctx, 200, |status| {
        if building.is_none() && status["phase"] == "Building" {
            building = Some(status.clone());
        }
    })
    .await;
    let ready = cluster.sdd.lock().unwrap()["status"].clone();
    std::fs::create_dir_all(fixtures()).unwrap();
    for (name, status) in [
        (
            "status-0.1.0-building.json",
            building.expect("a Building status"),
        ),
        ("status-0.1.0-ready.json", ready),
    ] {
        std::fs::write(fixtures().join(name), world.save_fixture(&status)).unwrap();
    }
    world.sim.shutdown().await;
}

/// A Ready resource of the earlier operator, whose API-key Secret has no finalizer yet (written
/// before there was one): the new operator finds the group and the image it serves, guards the
/// Secret, and writes status at most once; no build, no new group, no SaladCloud write.
#[tokio::test]
async fn a_ready_resource_of_the_earlier_operator_converges_without_a_spec_change() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let world = World::start().await;
        // The world the earlier operator left: its group and its image.
        let setup = world.cluster(None, Some(json!([API_KEY_FINALIZER])));
        let ctx = world.context(&setup);
        until_ready(&setup, &ctx, 200, |_| {}).await;
        let left = setup.sdd.lock().unwrap()["status"].clone();
        let group = setup.object().status.unwrap().container_group.unwrap();
        drop(ctx);

        let mut fixture = world.load_fixture(
            &std::fs::read_to_string(fixtures().join("status-0.1.0-ready.json")).unwrap(),
        );
        // The fixture names the group by the derived name of this resource.
        assert_eq!(fixture["containerGroup"]["name"], json!(group.name));
        // Values that depend on this run (the simulator's group id and access domain, the image
        // digest, which covers the model server's port in the recipe) come from the world; the
        // fixture keeps its shape: only the fields 0.1.0 wrote.
        for part in ["containerGroup", "image"] {
            let keys: Vec<String> = fixture[part].as_object().unwrap().keys().cloned().collect();
            for k in keys {
                if let Some(v) = left[part].get(&k) {
                    fixture[part][k.as_str()] = v.clone();
                }
            }
        }
        let cluster = world.cluster(Some(fixture.clone()), None);
        assert!(
            serde_json::from_value::<StableDiffusionDeployment>(
                cluster.sdd.lock().unwrap().clone()
            )
            .is_ok(),
            "the stored status parses"
        );
        world.sim.admin().reset_stats();
        let ctx = world.context(&cluster);
        let rounds = until_ready(&cluster, &ctx, 5, |_| {}).await;
        assert_eq!(rounds, 1, "Ready on the first reconcile");
        // The Secret is guarded now.
        assert_eq!(
            cluster.secret.lock().unwrap()["metadata"]["finalizers"],
            json!([API_KEY_FINALIZER])
        );
        let ops = sim_ops(&world.sim);
        assert!(
            ops.iter()
                .all(|op| op.starts_with("get_") || op.starts_with("list_")),
            "only SaladCloud reads: {ops:?}"
        );
        let status = cluster.object().status.unwrap();
        assert_eq!(
            status.container_group.as_ref().map(|g| &g.name),
            Some(&group.name)
        );
        assert_eq!(
            status.image.as_ref().and_then(|i| i.reference.clone()),
            fixture["image"]["reference"].as_str().map(str::to_string),
            "the same image: found by its recipe tag, not rebuilt"
        );
        let status_writes = cluster
            .writes()
            .iter()
            .filter(|(_, p, _)| p.ends_with("/status"))
            .count();
        assert!(status_writes <= 1, "{:?}", cluster.writes());

        // And it stays converged: the next reconcile writes nothing.
        let before = cluster.writes().len();
        reconcile(Arc::new(cluster.object()), ctx.clone())
            .await
            .expect("steady");
        assert_eq!(
            cluster.writes()[before..].to_vec(),
            Vec::new(),
            "steady after the upgrade"
        );
        world.sim.shutdown().await;
    })
    .await
    .expect("upgrade scenario within 120 s");
}

/// A resource caught mid-build by the upgrade (the earlier operator's Building status, the build
/// lost with its process): the new operator builds and deploys it without a spec change.
#[tokio::test]
async fn a_resource_the_earlier_operator_was_building_is_built_and_deployed() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let world = World::start().await;
        let fixture = world.load_fixture(
            &std::fs::read_to_string(fixtures().join("status-0.1.0-building.json")).unwrap(),
        );
        assert_eq!(fixture["phase"], "Building");
        let cluster = world.cluster(Some(fixture), None);
        let ctx = world.context(&cluster);
        until_ready(&cluster, &ctx, 200, |_| {}).await;
        assert_eq!(
            world.sim.admin().stats().live_groups,
            1,
            "one group, not two"
        );
        assert_eq!(
            cluster.secret.lock().unwrap()["metadata"]["finalizers"],
            json!([API_KEY_FINALIZER])
        );
        world.sim.shutdown().await;
    })
    .await
    .expect("upgrade scenario within 120 s");
}
