//! `operator::run_with` against a mocked API server (tower-test): a standby replica is ready
//! (and says it is a standby), the leader watches Secrets by metadata only, and on shutdown the
//! leader releases the Lease. All HTTP on 127.0.0.1, every wait bounded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use salad_sd_controller::leader::LeaseTiming;
use salad_sd_controller::operator::{LeaderElection, OperatorConfig, run_with};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_test::mock::{self, Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/salad-sd-operator";

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    accept: String,
    body: Value,
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

fn lease_of(holder: &str) -> Value {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "salad-sd-operator", "namespace": "ops", "resourceVersion": "5" },
        "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": now, "leaseTransitions": 1 }
    })
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

/// A small API server: empty lists for the CRD and Secrets, watches left open, the Lease as
/// `lease` says (None: absent until created). Every request is recorded.
async fn serve(
    mut handle: ApiHandle,
    lease: Arc<Mutex<Option<Value>>>,
    log: Arc<Mutex<Vec<Seen>>>,
) {
    let mut open_watches = Vec::new();
    while let Some((req, send)) = handle.next_request().await {
        let (parts, body) = req.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let seen = Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            accept: parts
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        log.lock().unwrap().push(seen.clone());
        if seen.query.contains("watch=true") {
            open_watches.push(send);
            continue;
        }
        if seen.path == LEASE || seen.path == LEASE.trim_end_matches("/salad-sd-operator") {
            let mut current = lease.lock().unwrap();
            match seen.method {
                Method::GET => match current.as_ref() {
                    Some(l) => respond(send, StatusCode::OK, l),
                    None => respond(send, StatusCode::NOT_FOUND, &not_found()),
                },
                _ => {
                    let mut stored = seen.body.clone();
                    stored["metadata"]["resourceVersion"] = json!("6");
                    *current = Some(stored.clone());
                    respond(send, StatusCode::OK, &stored);
                }
            }
            continue;
        }
        let list_kind = if seen.accept.contains("PartialObjectMetadataList") {
            "PartialObjectMetadataList"
        } else {
            "List"
        };
        respond(
            send,
            StatusCode::OK,
            &json!({ "apiVersion": "v1", "kind": list_kind, "metadata": { "resourceVersion": "1" }, "items": [] }),
        );
    }
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn config(listen: std::net::SocketAddr, identity: &str) -> OperatorConfig {
    OperatorConfig {
        salad_api_url: "http://127.0.0.1:9".into(),
        poll_interval: Duration::from_secs(60),
        build_concurrency: 1,
        insecure_registries: vec![],
        allow_private_sources: false,
        namespace: None,
        listen,
        leader_election: Some(LeaderElection {
            namespace: None,
            identity: identity.into(),
            timing: LeaseTiming::default(),
        }),
        gateway_url: None,
        backoff: Default::default(),
        max_concurrent_reconciles: salad_sd_controller::operator::DEFAULT_MAX_CONCURRENT_RECONCILES,
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("http://{addr}{path}")).send().await {
            return (r.status().as_u16(), r.text().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing answers on {addr}{path}");
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 5 s");
}

#[tokio::test]
async fn a_standby_replica_is_ready_and_writes_nothing() {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let lease = Arc::new(Mutex::new(Some(lease_of("pod-a"))));
    tokio::spawn(serve(handle, lease.clone(), log.clone()));
    let addr = free_port();
    let shutdown = CancellationToken::new();
    // The client's default namespace stands for the pod's own (service-account file).
    let run = tokio::spawn(run_with(
        Client::new(svc, "ops"),
        config(addr, "pod-b"),
        shutdown.clone(),
    ));

    let (code, body) = get(addr, "/readyz").await;
    assert_eq!((code, body.as_str()), (200, "ready (standby)"));
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(metrics.contains("salad_sd_leader 0"), "{metrics}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("a standby stops at once on shutdown")
        .unwrap()
        .expect("clean exit");
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|s| s.path == LEASE),
        "the Lease is read in the pod's namespace: {log:?}"
    );
    assert!(
        log.iter().all(|s| s.method == Method::GET),
        "a standby only reads: {log:?}"
    );
    assert_eq!(
        lease.lock().unwrap().as_ref().unwrap()["spec"]["holderIdentity"],
        "pod-a"
    );
}

#[tokio::test]
async fn the_leader_watches_secrets_by_metadata_and_releases_the_lease_on_shutdown() {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let lease = Arc::new(Mutex::new(None));
    tokio::spawn(serve(handle, lease.clone(), log.clone()));
    let addr = free_port();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_with(
        Client::new(svc, "ops"),
        config(addr, "pod-a"),
        shutdown.clone(),
    ));

    wait_for("a Secret list", || {
        log.lock()
            .unwrap()
            .iter()
            .any(|s| s.path == "/api/v1/secrets")
    })
    .await;
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!((code, body.as_str()), (200, "ready (leader)"));
    let (_, metrics) = get(addr, "/metrics").await;
    assert!(metrics.contains("salad_sd_leader 1"), "{metrics}");
    for s in log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/api/v1/secrets")
    {
        assert!(
            s.accept.contains("as=PartialObjectMetadata"),
            "Secrets are listed and watched by metadata only, not with their data: {s:?}"
        );
    }
    assert_eq!(
        lease.lock().unwrap().as_ref().unwrap()["spec"]["holderIdentity"],
        "pod-a"
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the leader stops within 5 s of the signal")
        .unwrap()
        .expect("clean exit");
    let released = lease.lock().unwrap().clone().unwrap();
    assert!(
        released["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null),
        "the holder is cleared so the standby takes over at once: {released}"
    );
}
