//! Leader election against a mocked API server: a replica takes a free or expired Lease, renews
//! its own, and never writes while another live replica holds it.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use salad_sd_controller::operator::LeaderLease;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/salad-sd-system/leases";

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, code: StatusCode, body: Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

async fn next(
    handle: &mut ApiHandle,
) -> (
    Method,
    String,
    Value,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request within 10 s")
        .expect("the client is alive");
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (parts.method, parts.uri.path().to_string(), body, send)
}

fn lease(holder: &str, renewed_secs_ago: i64) -> Value {
    let renew = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago);
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": "salad-sd-operator", "namespace": "salad-sd-system", "resourceVersion": "7" },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 30,
            "renewTime": renew.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            "leaseTransitions": 2
        }
    })
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

#[tokio::test]
async fn a_free_lease_is_created_by_the_first_replica() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let take = tokio::spawn(LeaderLease::acquire(client, "salad-sd-system", "pod-a"));

    let (method, path, _, send) = next(&mut handle).await;
    assert_eq!(
        (method, path.as_str()),
        (
            Method::GET,
            format!("{LEASE_PATH}/salad-sd-operator").as_str()
        )
    );
    respond(send, StatusCode::NOT_FOUND, not_found());

    let (method, path, body, send) = next(&mut handle).await;
    assert_eq!((method, path.as_str()), (Method::POST, LEASE_PATH));
    assert_eq!(body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 30);
    respond(send, StatusCode::CREATED, body);

    tokio::time::timeout(Duration::from_secs(2), take)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_live_lease_of_another_replica_is_never_written() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let take = tokio::spawn(LeaderLease::acquire(client, "salad-sd-system", "pod-b"));

    // Two rounds: each a GET that finds pod-a's fresh lease, and no write after it.
    for _ in 0..2 {
        let (method, _, _, send) = next(&mut handle).await;
        assert_eq!(
            method,
            Method::GET,
            "only reads while another replica leads"
        );
        respond(send, StatusCode::OK, lease("pod-a", 1));
    }
    assert!(!take.is_finished(), "pod-b must keep waiting");
    take.abort();
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_compare_and_swap() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let take = tokio::spawn(LeaderLease::acquire(client, "salad-sd-system", "pod-b"));

    let (_, _, _, send) = next(&mut handle).await;
    respond(send, StatusCode::OK, lease("pod-a", 120));

    let (method, path, body, send) = next(&mut handle).await;
    assert_eq!(
        (method, path.as_str()),
        (
            Method::PUT,
            format!("{LEASE_PATH}/salad-sd-operator").as_str()
        )
    );
    assert_eq!(body["spec"]["holderIdentity"], "pod-b");
    assert_eq!(body["spec"]["leaseTransitions"], 3);
    assert_eq!(
        body["metadata"]["resourceVersion"], "7",
        "replace carries the version it read"
    );
    respond(send, StatusCode::OK, body);

    tokio::time::timeout(Duration::from_secs(2), take)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn losing_the_race_for_an_expired_lease_means_waiting() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let take = tokio::spawn(LeaderLease::acquire(client, "salad-sd-system", "pod-b"));

    let (_, _, _, send) = next(&mut handle).await;
    respond(send, StatusCode::OK, lease("pod-a", 120));
    let (method, _, _, send) = next(&mut handle).await;
    assert_eq!(method, Method::PUT);
    respond(
        send,
        StatusCode::CONFLICT,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!take.is_finished(), "a 409 is not leadership");
    take.abort();
}
