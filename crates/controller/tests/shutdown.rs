//! Leader handover on shutdown, with `operator::run_with` against a mocked API server
//! (tower-test): the leader is in the middle of a reconcile that would take far longer than a
//! pod's grace period (a SaladCloud that accepts the connection and never answers; a model
//! source that trickles a 1 GiB file), shutdown begins, and a standby watching the same Lease
//! must lead within 5 s. The abandoned reconcile writes nothing after the signal. Everything on
//! 127.0.0.1, every wait bounded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use salad_sd_api::names::{API_KEY_FINALIZER, FINALIZER};
use salad_sd_controller::leader::{LeaderLease, LeaseTiming};
use salad_sd_controller::operator::{LeaderElection, OperatorConfig, run_with};
use salad_sd_testkit::{LocalRegistry, push_tiny_base_image};
use saladcloud_sim::{SimConfig, Simulator};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_test::mock::{self, Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const NS: &str = "default";
const LEASE_NS: &str = "ops";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/salad-sd-operator";
const SDDS: &str = "/apis/salad-sd.dev/v1alpha1/stablediffusiondeployments";
const SDD: &str = "/apis/salad-sd.dev/v1alpha1/namespaces/default/stablediffusiondeployments/held";
const SECRET: &str = "/api/v1/namespaces/default/secrets/salad-api-key";
/// A standby must lead within this long after the leader's shutdown began.
const HANDOVER: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    method: Method,
    path: String,
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

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

/// What the mocked API server holds: one resource, its API-key Secret (already guarded by the
/// operator's finalizer), the Lease.
struct Cluster {
    sdd: Mutex<Value>,
    lease: Mutex<Option<Value>>,
    log: Mutex<Vec<Seen>>,
}

impl Cluster {
    fn new(spec: Value) -> Arc<Self> {
        Arc::new(Self {
            sdd: Mutex::new(json!({
                "apiVersion": "salad-sd.dev/v1alpha1",
                "kind": "StableDiffusionDeployment",
                "metadata": { "name": "held", "namespace": NS, "uid": "0b7c3a52-1f4e-4d2b-9a8e-6c5d4e3f2a10",
                              "generation": 1, "resourceVersion": "100", "finalizers": [FINALIZER] },
                "spec": spec,
            })),
            lease: Mutex::new(None),
            log: Mutex::new(Vec::new()),
        })
    }

    fn holder(&self) -> Option<String> {
        self.lease
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
            .filter(|h| !h.is_empty())
    }

    /// Writes to the resource, its Secret or Events (not the Lease) after `t`.
    fn writes_after(&self, t: Instant) -> Vec<Seen> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.at >= t && s.method != Method::GET && s.path != LEASE)
            .filter(|s| !s.path.ends_with("/leases"))
            .cloned()
            .collect()
    }

    fn secret(meta_only: bool) -> Value {
        let mut s = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "salad-api-key", "namespace": NS, "resourceVersion": "7",
                          "finalizers": [API_KEY_FINALIZER] },
        });
        if !meta_only {
            s["data"] = json!({ "apiKey": base64::engine::general_purpose::STANDARD.encode("sim-test-key") });
        }
        s
    }

    async fn serve(self: Arc<Self>, mut handle: ApiHandle) {
        let mut open_watches = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = parts.uri.path().to_string();
            let query = parts.uri.query().unwrap_or_default().to_string();
            let accept = parts
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            self.log.lock().unwrap().push(Seen {
                at: Instant::now(),
                method: parts.method.clone(),
                path: path.clone(),
            });
            if query.contains("watch=true") {
                open_watches.push(send);
                continue;
            }
            let list = |items: Vec<Value>| {
                let kind = if accept.contains("PartialObjectMetadataList") {
                    "PartialObjectMetadataList"
                } else {
                    "List"
                };
                json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "100" }, "items": items })
            };
            match (parts.method.clone(), path.as_str()) {
                (_, p) if p == LEASE || p == LEASE.trim_end_matches("/salad-sd-operator") => {
                    let mut current = self.lease.lock().unwrap();
                    if parts.method == Method::GET {
                        match current.as_ref() {
                            Some(l) => respond(send, StatusCode::OK, l),
                            None => respond(send, StatusCode::NOT_FOUND, &not_found()),
                        }
                    } else {
                        // resourceVersion makes a replace a compare-and-swap, as the API server does.
                        let stale = parts.method == Method::PUT
                            && current.as_ref().map(|l| &l["metadata"]["resourceVersion"])
                                != Some(&body["metadata"]["resourceVersion"]);
                        if stale {
                            respond(
                                send,
                                StatusCode::CONFLICT,
                                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "modified"}),
                            );
                            continue;
                        }
                        let version = current
                            .as_ref()
                            .and_then(|l| l["metadata"]["resourceVersion"].as_str())
                            .and_then(|v| v.parse::<u64>().ok())
                            .unwrap_or(0);
                        let mut stored = body.clone();
                        stored["metadata"]["resourceVersion"] = json!((version + 1).to_string());
                        *current = Some(stored.clone());
                        respond(send, StatusCode::OK, &stored);
                    }
                }
                (Method::GET, SDDS) => {
                    let item = self.sdd.lock().unwrap().clone();
                    respond(send, StatusCode::OK, &list(vec![item]));
                }
                (Method::GET, "/api/v1/secrets") => {
                    respond(send, StatusCode::OK, &list(vec![Self::secret(true)]));
                }
                (Method::GET, SECRET) => {
                    let meta_only = accept.contains("PartialObjectMetadata");
                    respond(send, StatusCode::OK, &Self::secret(meta_only));
                }
                (Method::PATCH, p) if p == format!("{SDD}/status") => {
                    let mut sdd = self.sdd.lock().unwrap();
                    sdd["status"] = body["status"].clone();
                    respond(send, StatusCode::OK, &sdd);
                }
                (Method::POST, p) if p.ends_with("/events") => {
                    respond(send, StatusCode::CREATED, &body);
                }
                (Method::PATCH, p) if p.contains("/configmaps/") => {
                    respond(send, StatusCode::OK, &body);
                }
                (method, p) => panic!("the mocked API server does not expect {method} {p}"),
            }
        }
    }
}

fn config(salad_api_url: String, insecure_registries: Vec<String>) -> OperatorConfig {
    OperatorConfig {
        salad_api_url,
        poll_interval: Duration::from_secs(60),
        build_concurrency: 1,
        insecure_registries,
        allow_private_sources: true,
        namespace: None,
        // Any free port: this test does not ask /readyz (operator_run.rs does).
        listen: "127.0.0.1:0".parse().unwrap(),
        leader_election: Some(LeaderElection {
            namespace: None,
            identity: "pod-a".into(),
            timing: LeaseTiming::default(),
        }),
        gateway_url: None,
        backoff: Default::default(),
        max_concurrent_reconciles: salad_sd_controller::operator::DEFAULT_MAX_CONCURRENT_RECONCILES,
    }
}

/// A server on 127.0.0.1 that accepts connections, reads what comes, and never answers (a
/// SaladCloud API that hangs). `requests` counts the connections that sent something.
async fn hanging_server() -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut counted = false;
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !counted {
                        *seen.lock().unwrap() += 1;
                        counted = true;
                    }
                }
            });
        }
    });
    (url, requests)
}

/// A model source on 127.0.0.1 that announces 1 GiB and sends 64 KiB every 100 ms (a build of
/// about 27 minutes). `bytes_sent` counts what it sent.
async fn trickling_source() -> (String, Arc<Mutex<u64>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/models/slow.safetensors",
        listener.local_addr().unwrap()
    );
    let sent = Arc::new(Mutex::new(0u64));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n";
                if conn.write_all(answer.as_bytes()).await.is_err() || head.starts_with(b"HEAD") {
                    return;
                }
                let chunk = vec![7u8; 64 * 1024];
                loop {
                    if conn.write_all(&chunk).await.is_err() {
                        return;
                    }
                    *counter.lock().unwrap() += chunk.len() as u64;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    (url, sent)
}

fn spec(repository: &str, base: &str, model_url: &str) -> Value {
    json!({
        "saladcloud": {
            "organization": "acme",
            "project": "image-gen",
            "apiKeySecretRef": { "name": "salad-api-key", "key": "apiKey" }
        },
        "server": { "kind": "SDNext", "baseImage": base },
        "models": [{
            "name": "slow.safetensors",
            "kind": "Checkpoint",
            "source": { "url": model_url }
        }],
        "image": { "repository": repository },
        "replicas": 1,
        "resources": { "memory": "8Gi", "gpuClasses": ["RTX 3060 Ti (8 GB)"] },
        "deletionPolicy": "Orphan"
    })
}

/// Starts the leader (pod-a) and a standby (pod-b) on one Lease; waits until pod-a leads and
/// `busy()` says its reconcile is stuck; begins pod-a's shutdown and returns when pod-b leads,
/// with the time that took. Checks that pod-a returned cleanly, released the Lease, and wrote
/// nothing but the Lease after the signal.
async fn handover(
    cluster: Arc<Cluster>,
    config: OperatorConfig,
    busy: impl Fn() -> bool,
) -> Duration {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(cluster.clone().serve(handle));
    let shutdown = CancellationToken::new();
    let leader = tokio::spawn(run_with(
        Client::new(svc, LEASE_NS),
        config,
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(cluster.holder().as_deref() == Some("pod-a") && busy()) {
        if leader.is_finished() {
            panic!("the leader stopped by itself: {:?}", leader.await);
        }
        assert!(
            Instant::now() < deadline,
            "the leader never got stuck in its reconcile: {:?}",
            cluster.log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stuck for a while, as in a real cluster where the pod is deleted at some moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!leader.is_finished());

    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(cluster.clone().serve(handle));
    let standby = tokio::spawn(LeaderLease::acquire(
        Client::new(svc, LEASE_NS),
        LEASE_NS,
        "pod-b",
        LeaseTiming::default(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!standby.is_finished(), "pod-b waits while pod-a leads");

    let signalled = Instant::now();
    shutdown.cancel();
    let leader = tokio::spawn(async move {
        let exited = leader.await.unwrap();
        (exited, signalled.elapsed())
    });
    let _taken = tokio::time::timeout(HANDOVER, standby)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no leader {HANDOVER:?} after the leader's shutdown began (holder: {:?})",
                cluster.holder()
            )
        })
        .unwrap();
    let handover = signalled.elapsed();
    let (exited, took) = tokio::time::timeout(Duration::from_secs(2), leader)
        .await
        .expect("the old leader has returned once the standby leads")
        .unwrap();
    assert!(exited.is_ok(), "clean exit: {exited:?}");
    eprintln!("the old leader returned {took:?} after shutdown began");
    assert_eq!(cluster.holder().as_deref(), Some("pod-b"));
    let late = cluster.writes_after(signalled);
    assert!(
        late.is_empty(),
        "the abandoned reconcile wrote after the signal: {late:?}"
    );
    handover
}

#[tokio::test]
async fn a_reconcile_blocked_on_a_hanging_saladcloud_does_not_hold_the_handover() {
    let (salad, requests) = hanging_server().await;
    let cluster = Cluster::new(spec(
        "127.0.0.1:9/sd/held",
        "127.0.0.1:9/base/sdnext:tiny",
        "http://127.0.0.1:9/models/slow.safetensors",
    ));
    let handover = handover(
        cluster.clone(),
        config(salad, vec!["127.0.0.1:9".into()]),
        || *requests.lock().unwrap() > 0,
    )
    .await;
    assert!(
        cluster
            .log
            .lock()
            .unwrap()
            .iter()
            .all(|s| !s.path.ends_with("/status")),
        "the reconcile never got past SaladCloud, so it never wrote status"
    );
    eprintln!("hanging SaladCloud: standby leads {handover:?} after shutdown began");
}

#[tokio::test]
async fn a_long_build_does_not_hold_the_handover() {
    let dir = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start(dir.path())
        .await
        .expect("docker-registry (apt-get install docker-registry)");
    let reg = registry.host_port();
    push_tiny_base_image(&reg, "base/sdnext:tiny", false)
        .await
        .expect("base image");
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0")
        .await
        .expect("simulator");
    let (model, sent) = trickling_source().await;
    let cluster = Cluster::new(spec(
        &format!("{reg}/sd/held"),
        &format!("{reg}/base/sdnext:tiny"),
        &model,
    ));
    let handover = handover(
        cluster.clone(),
        config(sim.base_url(), vec![reg.clone()]),
        || *sent.lock().unwrap() > 0,
    )
    .await;
    let status = cluster.sdd.lock().unwrap()["status"].clone();
    assert_eq!(
        status["phase"], "Building",
        "the build was running: {status}"
    );
    eprintln!("long build: standby leads {handover:?} after shutdown began");
    sim.shutdown().await;
}
