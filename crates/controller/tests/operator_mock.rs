//! The Kubernetes edge (`operator::reconcile`) against a mocked API server (tower-test), in the
//! controller-rs `ApiServerVerifier` style: every request the reconcile sends is checked (method,
//! path, query, body) and answered; a request nobody expected fails the test, and so does a
//! missing one (the verifier waits for it under a timeout). SaladCloud is the simulator, the
//! registry is Debian's `docker-registry`, models come from the testkit model server; all on
//! 127.0.0.1, every test bounded in time.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use salad_sd_api::StableDiffusionDeployment;
use salad_sd_api::names::{API_KEY_FINALIZER, FIELD_MANAGER, FINALIZER, derived_group_name};
use salad_sd_controller::desired::{self, GpuChoice};
use salad_sd_controller::engine::Engine;
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::operator::{Context, reconcile};
use salad_sd_controller::secrets::ResolvedSecrets;
use salad_sd_testkit::{LocalRegistry, ModelServer, ModelServerOptions, push_tiny_base_image};
use saladcloud_sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const NS: &str = "default";
const UID: &str = "6c1e2f0a-9b8d-4c7e-a5f4-3b2a1c0d9e8f";
const API_KEY: &str = "sim-test-key";
const SDD_PATH: &str = "/apis/salad-sd.dev/v1alpha1/namespaces/default/stablediffusiondeployments";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const SECRET_PATH: &str = "/api/v1/namespaces/default/secrets/salad-api-key";

/// One request as the API server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: String,
    body: Value,
}

impl Seen {
    fn describe(&self) -> String {
        format!(
            "{} {}?{:?} {}",
            self.method, self.path, self.query, self.body
        )
    }
}

async fn read(req: Request<Body>) -> Seen {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.expect("request body").to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "request body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Seen {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body,
    }
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// The mocked API server: hands out the requests in order.
struct Verifier(ApiHandle);

impl Verifier {
    /// The next request, which must be `method path`.
    async fn expect(&mut self, method: Method, path: &str) -> (Seen, SendResponse<Response<Body>>) {
        let (req, send) = self.0.next_request().await.unwrap_or_else(|| {
            panic!("expected {method} {path}, but the reconcile sent nothing more")
        });
        let seen = read(req).await;
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request: {}",
            seen.describe()
        );
        (seen, send)
    }

    /// Every client is gone and nothing else was sent.
    async fn expect_no_more(mut self) {
        if let Some((req, _)) = self.0.next_request().await {
            panic!("unexpected request: {}", read(req).await.describe());
        }
    }
}

/// Runs `reconcile(obj)` against a verifier running `script`; both must finish within `limit`.
async fn run_scenario<F, Fut, T>(
    engine: Arc<Engine>,
    obj: StableDiffusionDeployment,
    limit: Duration,
    script: F,
) -> (Action, T)
where
    F: FnOnce(Verifier) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Arc::new(Context::new(
        Client::new(svc, NS),
        engine,
        "operator-test-replica",
    ));
    let verifier = tokio::spawn(script(Verifier(handle)));
    let both = async move {
        // `ctx` moves into the reconcile and is dropped when it returns, which ends the mock
        // service: the verifier then sees the end of the request stream.
        let action = reconcile(Arc::new(obj), ctx).await.expect("reconcile");
        let out = verifier.await.expect("verifier panicked");
        (action, out)
    };
    tokio::time::timeout(limit, both)
        .await
        .expect("scenario did not finish in time (a request the verifier waited for never came)")
}

/// An engine whose SaladCloud URL leads nowhere: scenarios that must not reach it.
fn offline_engine() -> Arc<Engine> {
    Arc::new(EngineBuilder::new().simulator("http://127.0.0.1:9").build())
}

fn resource(name: &str, spec: Value) -> StableDiffusionDeployment {
    let mut obj: StableDiffusionDeployment = serde_json::from_value(json!({
        "apiVersion": "salad-sd.dev/v1alpha1",
        "kind": "StableDiffusionDeployment",
        "metadata": { "name": name, "namespace": NS },
        "spec": spec,
    }))
    .expect("a valid resource");
    obj.metadata.uid = Some(UID.into());
    obj.metadata.generation = Some(3);
    obj.metadata.resource_version = Some("1001".into());
    obj
}

fn with_finalizer(mut obj: StableDiffusionDeployment) -> StableDiffusionDeployment {
    obj.metadata.finalizers = Some(vec![FINALIZER.into()]);
    obj
}

/// Fails validation: the organization is not a SaladCloud name.
fn invalid_spec() -> Value {
    json!({
        "saladcloud": {
            "organization": "Acme_Corp",
            "project": "image-gen",
            "apiKeySecretRef": { "name": "salad-api-key", "key": "apiKey" }
        },
        "image": { "repository": "127.0.0.1:5000/sd/broken" },
        "resources": { "memory": "8Gi", "gpuClasses": ["RTX 3060 Ti"] }
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn secret_body() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "salad-api-key", "namespace": NS },
        "data": { "apiKey": base64::engine::general_purpose::STANDARD.encode(API_KEY) }
    })
}

fn assert_ssa(seen: &Seen) {
    assert_eq!(
        seen.query.get("fieldManager").map(String::as_str),
        Some(FIELD_MANAGER),
        "{}",
        seen.describe()
    );
    assert_eq!(
        seen.query.get("force").map(String::as_str),
        Some("true"),
        "{}",
        seen.describe()
    );
    assert_eq!(seen.content_type, "application/apply-patch+yaml");
}

// (a) ------------------------------------------------------------------------------------------

/// Answers the rest of a first reconcile of an invalid spec: the Warning Event and the status.
async fn answer_stalled_rest(v: &mut Verifier, name: &str, answered: &Value) {
    let (event, send) = v.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "InvalidSpec");
    respond(send, StatusCode::CREATED, &event.body);
    let (patch, send) = v
        .expect(Method::PATCH, &format!("{SDD_PATH}/{name}/status"))
        .await;
    assert_ssa(&patch);
    let mut echoed = answered.clone();
    echoed["status"] = patch.body["status"].clone();
    respond(send, StatusCode::OK, &echoed);
}

#[tokio::test]
async fn new_object_gets_exactly_the_finalizer_patch_and_goes_on_with_the_answer() {
    let obj = resource("fresh", invalid_spec());
    let (action, ()) = run_scenario(
        offline_engine(),
        obj.clone(),
        Duration::from_secs(5),
        |mut v| async move {
            let (seen, send) = v.expect(Method::PATCH, &format!("{SDD_PATH}/fresh")).await;
            assert_eq!(seen.content_type, "application/json-patch+json");
            assert!(seen.query.is_empty(), "{}", seen.describe());
            assert_eq!(
                seen.body,
                json!([
                    { "op": "test", "path": "/metadata/finalizers", "value": null },
                    { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] }
                ])
            );
            let mut answered = serde_json::to_value(&obj).unwrap();
            answered["metadata"]["finalizers"] = json!([FINALIZER]);
            answered["metadata"]["resourceVersion"] = json!("1002");
            respond(send, StatusCode::OK, &answered);
            // No second finalizer patch: the reconcile goes on with the object the API server
            // returned, not with a cached copy that may not have seen the finalizer yet (a
            // requeue did, and its `test` failed with 422 Invalid).
            answer_stalled_rest(&mut v, "fresh", &answered).await;
            v.expect_no_more().await;
        },
    )
    .await;
    assert_ne!(
        action,
        Action::requeue(Duration::from_millis(1)),
        "no immediate requeue that would read a stale cache"
    );
}

#[tokio::test]
async fn other_finalizers_are_kept_and_tested() {
    let mut obj = resource("shared", invalid_spec());
    obj.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let (_, ()) = run_scenario(
        offline_engine(),
        obj.clone(),
        Duration::from_secs(5),
        |mut v| async move {
            let (seen, send) = v.expect(Method::PATCH, &format!("{SDD_PATH}/shared")).await;
            assert_eq!(
                seen.body,
                json!([
                    { "op": "test", "path": "/metadata/finalizers", "value": ["example.com/other"] },
                    { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER }
                ])
            );
            let mut answered = serde_json::to_value(&obj).unwrap();
            answered["metadata"]["finalizers"] = json!(["example.com/other", FINALIZER]);
            respond(send, StatusCode::OK, &answered);
            answer_stalled_rest(&mut v, "shared", &answered).await;
            v.expect_no_more().await;
        },
    )
    .await;
}

// (b) and (c) ----------------------------------------------------------------------------------

/// Runs (b) and returns the status the reconcile applied.
async fn stalled_first_reconcile(engine: Arc<Engine>) -> Value {
    let obj = with_finalizer(resource("broken", invalid_spec()));
    let answered = serde_json::to_value(&obj).unwrap();
    let (_, status) = run_scenario(engine, obj, Duration::from_secs(5), |mut v| async move {
        let (event, send) = v.expect(Method::POST, EVENTS_PATH).await;
        assert_eq!(event.body["type"], "Warning", "{}", event.describe());
        assert_eq!(event.body["reason"], "InvalidSpec");
        assert_eq!(event.body["action"], "Reconcile");
        assert_eq!(event.body["reportingController"], FIELD_MANAGER);
        assert_eq!(event.body["regarding"]["kind"], "StableDiffusionDeployment");
        assert_eq!(event.body["regarding"]["name"], "broken");
        assert_eq!(event.body["regarding"]["uid"], UID);
        let note = event.body["note"].as_str().unwrap_or_default();
        assert!(
            note.contains("spec.saladcloud.organization"),
            "the note names the field: {note}"
        );
        respond(send, StatusCode::CREATED, &event.body);

        let (patch, send) = v
            .expect(Method::PATCH, &format!("{SDD_PATH}/broken/status"))
            .await;
        assert_ssa(&patch);
        assert_eq!(patch.body["apiVersion"], "salad-sd.dev/v1alpha1");
        assert_eq!(patch.body["kind"], "StableDiffusionDeployment");
        let status = patch.body["status"].clone();
        assert_eq!(status["phase"], "Failed", "{status}");
        assert_eq!(status["observedGeneration"], 3);
        let stalled = condition(&status, "Stalled");
        assert_eq!(stalled["status"], "True");
        assert_eq!(stalled["reason"], "InvalidSpec");
        assert_eq!(stalled["observedGeneration"], 3);
        assert_eq!(condition(&status, "Ready")["status"], "False");
        let mut echoed = answered.clone();
        echoed["status"] = status.clone();
        respond(send, StatusCode::OK, &echoed);
        v.expect_no_more().await;
        status
    })
    .await;
    status
}

#[tokio::test]
async fn invalid_spec_publishes_a_warning_and_applies_stalled_status() {
    stalled_first_reconcile(offline_engine()).await;
}

#[tokio::test]
async fn unchanged_stalled_status_is_neither_written_nor_announced_again() {
    let engine = offline_engine();
    let status = stalled_first_reconcile(engine.clone()).await;
    let mut obj = with_finalizer(resource("broken", invalid_spec()));
    obj.status = Some(serde_json::from_value(status).expect("the applied status parses"));
    let (action, ()) = run_scenario(engine, obj, Duration::from_secs(5), |v| async move {
        v.expect_no_more().await;
    })
    .await;
    assert_ne!(
        action,
        Action::await_change(),
        "a stalled resource is still polled"
    );
}

// (d) ------------------------------------------------------------------------------------------

#[tokio::test]
async fn paused_resource_sends_nothing() {
    for finalizers in [None, Some(vec![FINALIZER.to_string()])] {
        let mut obj = resource("paused", invalid_spec());
        obj.metadata.finalizers = finalizers;
        obj.metadata.annotations = Some(BTreeMap::from([(
            "salad-sd.dev/paused".to_string(),
            "true".to_string(),
        )]));
        let (action, ()) = run_scenario(
            offline_engine(),
            obj,
            Duration::from_secs(5),
            |v| async move { v.expect_no_more().await },
        )
        .await;
        assert_eq!(action, Action::await_change());
    }
}

// (e) and (f): the real engine against the simulator and a real registry -----------------------

/// Simulator, registry with a tiny base image, and a model server.
struct World {
    sim: Option<SimHandle>,
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
        models.add_generated("/models/tiny.safetensors", 256 * 1024, 11);
        Self {
            sim: Some(sim),
            registry,
            models,
            _dir: dir,
        }
    }

    fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("running")
    }

    fn engine(&self) -> Arc<Engine> {
        Arc::new(
            EngineBuilder::new()
                .simulator(self.sim().base_url())
                .local_registry(self.registry.host_port())
                .progress_interval(Duration::from_millis(200))
                .build(),
        )
    }

    fn spec(&self, name: &str) -> Value {
        let reg = self.registry.host_port();
        json!({
            "saladcloud": {
                "organization": "acme",
                "project": "image-gen",
                "apiKeySecretRef": { "name": "salad-api-key", "key": "apiKey" }
            },
            "server": { "kind": "SDNext", "baseImage": format!("{reg}/base/sdnext:tiny") },
            "models": [{
                "name": "tiny.safetensors",
                "kind": "Checkpoint",
                "source": { "url": self.models.url("/models/tiny.safetensors") }
            }],
            "image": { "repository": format!("{reg}/sd/{name}") },
            "replicas": 1,
            "resources": { "memory": "8Gi", "gpuClasses": ["RTX 3060 Ti (8 GB)"] },
            "deletionPolicy": "Orphan"
        })
    }

    async fn stop(mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }
}

fn ops(sim: &SimHandle) -> BTreeMap<String, u64> {
    sim.admin()
        .stats()
        .requests
        .into_iter()
        .map(|(op, by_status)| (op, by_status.values().sum()))
        .collect()
}

#[tokio::test]
async fn orphan_deletion_releases_the_finalizer_and_leaves_the_group() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let world = World::start().await;
        let name = "orphaned";
        let mut obj = with_finalizer(resource(name, world.spec(name)));
        // The group this resource created earlier, exactly as the engine would have created it.
        let mut group = desired::group_definition(
            &obj.spec,
            UID,
            &format!("{}/sd/{name}:earlier", world.registry.host_port()),
            &GpuChoice {
                ids: vec!["cb6c1931-89b6-4f76-976f-54047320ccc6".into()],
                hourly_price: None,
            },
            &ResolvedSecrets::default(),
        );
        let group_name = derived_group_name(name, UID, 1);
        group.name = group_name.clone();
        let salad = saladcloud::Client::new(
            saladcloud::ClientConfig::new(saladcloud::ApiKey::new(API_KEY))
                .with_base_url(world.sim().base_url()),
        )
        .unwrap();
        salad
            .create_container_group("acme", "image-gen", &group)
            .await
            .expect("pre-existing group");
        world.sim().admin().reset_stats();

        obj.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        let answered = serde_json::to_value(&obj).unwrap();
        let (action, ()) = run_scenario(
            world.engine(),
            obj,
            Duration::from_secs(20),
            |mut v| async move {
                // Orphan needs nothing from SaladCloud, so the API key is not read. Status says
                // no group is ours any more, then the key's Secret is let go (no other resource
                // uses it), then the resource.
                let (seen, send) = v
                    .expect(Method::PATCH, &format!("{SDD_PATH}/{name}/status"))
                    .await;
                assert_eq!(seen.body["status"]["phase"], "Deleting");
                assert!(seen.body["status"].get("containerGroup").is_none());
                respond(send, StatusCode::OK, &answered);
                let (_, send) = v.expect(Method::GET, SDD_PATH).await;
                respond(
                    send,
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": [answered.clone()]}),
                );
                let (_, send) = v.expect(Method::GET, SECRET_PATH).await;
                let mut guarded = secret_body();
                guarded["metadata"]["finalizers"] = json!([API_KEY_FINALIZER]);
                respond(send, StatusCode::OK, &guarded);
                let (seen, send) = v.expect(Method::PATCH, SECRET_PATH).await;
                assert_eq!(
                    seen.body,
                    json!([
                        { "op": "test", "path": "/metadata/finalizers", "value": [API_KEY_FINALIZER] },
                        { "op": "replace", "path": "/metadata/finalizers", "value": [] }
                    ])
                );
                respond(send, StatusCode::OK, &secret_body());
                let (seen, send) = v.expect(Method::PATCH, &format!("{SDD_PATH}/{name}")).await;
                assert_eq!(seen.content_type, "application/json-patch+json");
                assert_eq!(
                    seen.body,
                    json!([
                        { "op": "test", "path": "/metadata/finalizers", "value": [FINALIZER] },
                        { "op": "replace", "path": "/metadata/finalizers", "value": [] }
                    ])
                );
                let mut released = answered.clone();
                released["metadata"]["finalizers"] = json!([]);
                respond(send, StatusCode::OK, &released);
                v.expect_no_more().await;
            },
        )
        .await;
        assert_eq!(action, Action::await_change());

        let calls = ops(world.sim());
        assert!(
            calls.is_empty(),
            "Orphan must not call SaladCloud at all: {calls:?}"
        );
        let stats = world.sim().admin().stats();
        assert_eq!(stats.live_groups, 1, "the orphaned group keeps running");
        assert!(
            salad
                .find_container_group("acme", "image-gen", &group_name)
                .await
                .unwrap()
                .is_some()
        );
        world.stop().await;
    })
    .await
    .expect("orphan scenario took longer than 60 s");
}

/// The API server for multi-round scenarios: answers every request the operator may send
/// (Secret GET, Event POST/PATCH, status and ConfigMap server-side apply), keeps the object's
/// status like the API server would, and records everything in order.
#[derive(Clone)]
struct FakeApiServer {
    obj: Arc<Mutex<Value>>,
    /// The API-key Secret; `None` once it is deleted (as the API server does when a deleted
    /// object has no finalizers left).
    secret: Arc<Mutex<Option<Value>>>,
    log: Arc<Mutex<Vec<Seen>>>,
}

/// Applies a JSON patch the way the API server does (a failed `test` is a 422). Its
/// evanphx/json-patch passes a `test` for `null` on a missing member; json_patch does not, so
/// such ops are checked here.
fn apply_json_patch(target: &mut Value, patch: &Value) -> bool {
    let mut ops = patch.as_array().cloned().unwrap_or_default();
    let mut ok = true;
    ops.retain(|op| {
        let null_test = op["op"] == "test" && op["value"].is_null();
        if null_test {
            let path = op["path"].as_str().unwrap_or_default();
            ok &= target.pointer(path).is_none_or(Value::is_null);
        }
        !null_test
    });
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).expect("a JSON patch");
    ok && json_patch::patch(target, &patch).is_ok()
}

/// Gone when deleted with no finalizers left.
fn collect_if_released(object: &mut Option<Value>) {
    let released = object.as_ref().is_some_and(|o| {
        o["metadata"]["deletionTimestamp"].is_string()
            && o["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty())
    });
    if released {
        *object = None;
    }
}

impl FakeApiServer {
    fn new(obj: &StableDiffusionDeployment) -> Self {
        Self {
            obj: Arc::new(Mutex::new(serde_json::to_value(obj).unwrap())),
            secret: Arc::new(Mutex::new(Some(secret_body()))),
            log: Arc::default(),
        }
    }

    /// A namespace deletion: the resource and the Secret get a deletion timestamp at once.
    fn delete_namespace(&self) {
        let now = json!(jiff::Timestamp::now().to_string());
        self.obj.lock().unwrap()["metadata"]["deletionTimestamp"] = now.clone();
        let mut secret = self.secret.lock().unwrap();
        if let Some(s) = secret.as_mut() {
            s["metadata"]["deletionTimestamp"] = now;
        }
        collect_if_released(&mut secret);
    }

    fn secret(&self) -> Option<Value> {
        self.secret.lock().unwrap().clone()
    }

    fn object(&self) -> StableDiffusionDeployment {
        serde_json::from_value(self.obj.lock().unwrap().clone()).unwrap()
    }

    fn log(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    async fn serve(self, mut handle: ApiHandle) {
        let name = self.obj.lock().unwrap()["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let status_path = format!("{SDD_PATH}/{name}/status");
        let cm_path = format!("/api/v1/namespaces/default/configmaps/{name}-endpoint");
        while let Some((req, send)) = handle.next_request().await {
            let seen = read(req).await;
            self.log.lock().unwrap().push(seen.clone());
            let sdd_path = format!("{SDD_PATH}/{name}");
            match (&seen.method, seen.path.as_str()) {
                (&Method::GET, SECRET_PATH) => match self.secret() {
                    Some(secret) => respond(send, StatusCode::OK, &secret),
                    None => respond(
                        send,
                        StatusCode::NOT_FOUND,
                        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "NotFound", "code": 404, "message": "secrets \"salad-api-key\" not found"}),
                    ),
                },
                (&Method::PATCH, SECRET_PATH) => {
                    let mut secret = self.secret.lock().unwrap();
                    let ok = secret
                        .as_mut()
                        .is_some_and(|s| apply_json_patch(s, &seen.body));
                    let answer = secret.clone();
                    collect_if_released(&mut secret);
                    match (ok, answer) {
                        (true, Some(s)) => respond(send, StatusCode::OK, &s),
                        _ => respond(
                            send,
                            StatusCode::UNPROCESSABLE_ENTITY,
                            &json!({"kind": "Status", "code": 422}),
                        ),
                    }
                }
                (&Method::GET, SDD_PATH) => {
                    let obj = self.obj.lock().unwrap().clone();
                    respond(
                        send,
                        StatusCode::OK,
                        &json!({"apiVersion": "salad-sd.dev/v1alpha1", "kind": "StableDiffusionDeploymentList",
                                "metadata": {}, "items": [obj]}),
                    );
                }
                (&Method::PATCH, p) if p == sdd_path => {
                    let mut obj = self.obj.lock().unwrap();
                    if apply_json_patch(&mut obj, &seen.body) {
                        respond(send, StatusCode::OK, &obj);
                    } else {
                        respond(
                            send,
                            StatusCode::UNPROCESSABLE_ENTITY,
                            &json!({"kind": "Status", "code": 422}),
                        );
                    }
                }
                (&Method::POST, EVENTS_PATH) => respond(send, StatusCode::CREATED, &seen.body),
                (&Method::PATCH, p) if p.starts_with(EVENTS_PATH) => {
                    respond(send, StatusCode::OK, &seen.body)
                }
                (&Method::PATCH, p) if p == status_path => {
                    let mut obj = self.obj.lock().unwrap();
                    obj["status"] = seen.body["status"].clone();
                    respond(send, StatusCode::OK, &obj);
                }
                (&Method::PATCH, p) if p == cm_path => respond(send, StatusCode::OK, &seen.body),
                _ => panic!("unexpected request: {}", seen.describe()),
            }
        }
    }
}

#[tokio::test]
async fn valid_spec_builds_deploys_and_reports_through_the_kube_edge() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let world = World::start().await;
        let name = "deployed";
        let obj = with_finalizer(resource(name, world.spec(name)));
        let api = FakeApiServer::new(&obj);
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(api.clone().serve(handle));
        let ctx = Arc::new(Context::new(
            Client::new(svc, NS),
            world.engine(),
            "operator-test",
        ));

        // Round 1: the image is missing, so the build starts and status says so.
        reconcile(Arc::new(api.object()), ctx.clone())
            .await
            .expect("round 1");
        let first = api.log();
        assert_eq!(
            (&first[0].method, first[0].path.as_str()),
            (&Method::GET, SECRET_PATH)
        );
        // The API key's Secret is guarded before anything can be created on SaladCloud.
        assert_eq!(
            (&first[1].method, first[1].path.as_str()),
            (&Method::PATCH, SECRET_PATH)
        );
        assert_eq!(
            api.secret().unwrap()["metadata"]["finalizers"],
            json!([API_KEY_FINALIZER])
        );
        let event = first
            .iter()
            .find(|s| s.path == EVENTS_PATH)
            .expect("an event in round 1");
        assert_eq!(event.body["reason"], "BuildStarted", "{}", event.describe());
        assert_eq!(event.body["type"], "Normal");
        let patch = first.last().unwrap();
        assert_eq!(patch.path, format!("{SDD_PATH}/{name}/status"));
        assert_ssa(patch);
        let status = &patch.body["status"];
        assert_eq!(
            condition(status, "Reconciling")["status"],
            "True",
            "{status}"
        );
        assert_eq!(condition(status, "ImageReady")["status"], "False");
        assert_eq!(condition(status, "Ready")["status"], "False");
        assert_eq!(status["observedGeneration"], 3);

        // Further rounds (the operator's requeues, shortened) until Ready.
        let mut rounds = 1;
        loop {
            let o = api.object();
            let ready = o.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if ready {
                break;
            }
            assert!(
                rounds < 200,
                "not Ready after {rounds} reconciles: {:?}",
                o.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            reconcile(Arc::new(o), ctx.clone())
                .await
                .expect("reconcile");
            rounds += 1;
        }
        let log = api.log();
        let reasons: Vec<&str> = log
            .iter()
            .filter(|s| s.path == EVENTS_PATH)
            .filter_map(|s| s.body["reason"].as_str())
            .collect();
        for wanted in ["BuildStarted", "ImageBuilt", "Created", "RolloutComplete"] {
            assert!(
                reasons.contains(&wanted),
                "no {wanted} event in {reasons:?}"
            );
        }
        assert!(
            log.iter().any(|s| {
                s.path.ends_with("/status")
                    && s.body["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "ImageReady" && c["status"] == "True")
                    })
            }),
            "status never said ImageReady=True"
        );
        let cm = log
            .iter()
            .find(|s| s.path.ends_with(&format!("/configmaps/{name}-endpoint")))
            .expect("the endpoint ConfigMap is applied");
        assert_ssa(cm);
        assert_eq!(cm.body["metadata"]["ownerReferences"][0]["uid"], UID);
        assert_eq!(
            cm.body["metadata"]["ownerReferences"][0]["controller"],
            true
        );
        let url = cm.body["data"]["url"].as_str().unwrap_or_default();
        assert!(url.starts_with("https://"), "access URL: {}", cm.describe());
        let status = api.object().status.unwrap();
        assert_eq!(
            status.endpoint_config_map.as_deref(),
            Some(&*format!("{name}-endpoint"))
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.ready_replicas, 1);

        // Steady state: one more reconcile writes nothing to Kubernetes or SaladCloud.
        let before = api.log().len();
        world.sim().admin().reset_stats();
        reconcile(Arc::new(api.object()), ctx.clone())
            .await
            .expect("steady");
        let steady: Vec<String> = api.log()[before..].iter().map(Seen::describe).collect();
        // No status write (only times would change), no event, no ConfigMap write (the URL
        // did not move); the Secret is read every reconcile (rotation).
        assert_eq!(steady.len(), 1, "steady state sent {steady:#?}");
        assert!(
            steady[0].starts_with(&format!("GET {SECRET_PATH}")),
            "{steady:#?}"
        );
        let calls = ops(world.sim());
        assert_eq!(calls.get("get_container_group"), Some(&1), "{calls:?}");
        assert_eq!(
            calls.values().sum::<u64>(),
            1,
            "one SaladCloud read per poll: {calls:?}"
        );

        let stats = world.sim().admin().stats();
        assert_eq!(stats.live_groups, 1);
        drop(ctx);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the fake API server ends with the client")
            .expect("fake API server");
        world.stop().await;
    })
    .await
    .expect("deploy scenario took longer than 120 s");
}

/// A namespace deletion takes the resource and its API-key Secret at the same moment, and the
/// operator restarts in between. The Secret's finalizer keeps the key readable, the new operator
/// deletes the group, then lets the Secret and the resource go: nothing is left running and the
/// namespace is not held.
#[tokio::test]
async fn namespace_deletion_with_a_restart_deletes_the_group_and_lets_everything_go() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let world = World::start().await;
        let name = "namespaced";
        let mut spec = world.spec(name);
        spec["deletionPolicy"] = json!("Delete");
        let obj = with_finalizer(resource(name, spec));
        let api = FakeApiServer::new(&obj);
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(api.clone().serve(handle));
        let client = Client::new(svc, NS);

        // The first operator brings the resource up.
        let first = Arc::new(Context::new(client.clone(), world.engine(), "operator-a"));
        let mut rounds = 0;
        while !api.object().status.is_some_and(|s| s.is_ready_at(Some(3))) {
            assert!(rounds < 200, "not Ready: {:?}", api.object().status);
            reconcile(Arc::new(api.object()), first.clone())
                .await
                .expect("reconcile");
            tokio::time::sleep(Duration::from_millis(200)).await;
            rounds += 1;
        }
        assert_eq!(world.sim().admin().stats().live_groups, 1);
        drop(first);

        // `kubectl delete namespace`: both go at once, while the operator is down.
        api.delete_namespace();
        assert!(
            api.secret().is_some(),
            "the Secret is held by its finalizer while the group exists"
        );

        // A new operator process (fresh engine memory) finishes the deletion.
        let second = Arc::new(Context::new(client, world.engine(), "operator-b"));
        let mut rounds = 0;
        while api.obj.lock().unwrap()["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            assert!(
                rounds < 200,
                "the resource is never released: {:?}",
                api.object().status
            );
            reconcile(Arc::new(api.object()), second.clone())
                .await
                .expect("reconcile");
            tokio::time::sleep(Duration::from_millis(200)).await;
            rounds += 1;
        }
        let stats = world.sim().admin().stats();
        assert_eq!(
            stats.live_groups, 0,
            "the group is deleted, not left billing"
        );
        assert!(
            api.secret().is_none(),
            "the Secret's finalizer is released, so the namespace can go"
        );
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the fake API server ends with the client")
            .expect("fake API server");
        world.stop().await;
    })
    .await
    .expect("namespace deletion scenario took longer than 120 s");
}
