//! Leader election against a mocked API server: a replica takes a free or expired Lease, renews
//! its own, never writes while another live replica holds it, gives up before the Lease can
//! expire when renewals fail or hang, and releases the Lease so a standby takes over at once.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use salad_sd_controller::leader::{LeaderLease, LeaseLost, LeaseTiming, explain, lease_namespace};
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
    let take = tokio::spawn(LeaderLease::acquire(
        client,
        "salad-sd-system",
        "pod-a",
        LeaseTiming::default(),
    ));

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
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    respond(send, StatusCode::CREATED, body);

    tokio::time::timeout(Duration::from_secs(2), take)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_live_lease_of_another_replica_is_never_written() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let take = tokio::spawn(LeaderLease::acquire(
        client,
        "salad-sd-system",
        "pod-b",
        LeaseTiming::default(),
    ));

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
    let take = tokio::spawn(LeaderLease::acquire(
        client,
        "salad-sd-system",
        "pod-b",
        LeaseTiming::default(),
    ));

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
        .unwrap();
}

#[tokio::test]
async fn losing_the_race_for_an_expired_lease_means_waiting() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let take = tokio::spawn(LeaderLease::acquire(
        client,
        "salad-sd-system",
        "pod-b",
        LeaseTiming::default(),
    ));

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

fn own_lease(holder: Option<&str>, version: &str) -> Value {
    let mut l = lease(holder.unwrap_or(""), 0);
    l["metadata"]["resourceVersion"] = json!(version);
    if holder.is_none() {
        l["spec"].as_object_mut().unwrap().remove("holderIdentity");
    }
    l
}

/// pod-a acquires a free Lease (404 → create) and returns the handle.
async fn acquired(handle: &mut ApiHandle, client: Client, timing: LeaseTiming) -> LeaderLease {
    let take = tokio::spawn(LeaderLease::acquire(
        client,
        "salad-sd-system",
        "pod-a",
        timing,
    ));
    let (_, _, _, send) = next(handle).await;
    respond(send, StatusCode::NOT_FOUND, not_found());
    let (method, _, body, send) = next(handle).await;
    assert_eq!(method, Method::POST);
    respond(send, StatusCode::CREATED, body);
    take.await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_renewal_that_hangs_ends_leadership_before_the_lease_can_expire() {
    let timing = LeaseTiming::default();
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let leader = acquired(&mut handle, Client::new(svc, "default"), timing).await;
    let hold = tokio::spawn(async move { leader.hold().await });

    // One good renewal (GET own lease, PUT), timed at its sending.
    let (method, _, _, send) = next(&mut handle).await;
    assert_eq!(method, Method::GET);
    let renewal_sent = tokio::time::Instant::now();
    respond(send, StatusCode::OK, own_lease(Some("pod-a"), "8"));
    let (method, _, body, send) = next(&mut handle).await;
    assert_eq!(method, Method::PUT);
    respond(send, StatusCode::OK, body);

    // The next renewal hangs: the API server never answers.
    let (method, _, _, hung) = next(&mut handle).await;
    assert_eq!(method, Method::GET);
    let lost = tokio::time::timeout(timing.lease_duration, hold)
        .await
        .expect("leadership ends before the lease could expire for a standby")
        .unwrap();
    let held_for = renewal_sent.elapsed();
    assert!(matches!(lost, LeaseLost::RenewDeadline { .. }), "{lost:?}");
    assert!(
        held_for <= timing.renew_deadline && held_for < timing.lease_duration,
        "stopped {held_for:?} after the last renewal; renew deadline {:?}, lease {:?}",
        timing.renew_deadline,
        timing.lease_duration
    );
    drop(hung);
}

#[tokio::test(start_paused = true)]
async fn failing_renewals_end_leadership_within_the_renew_deadline() {
    let timing = LeaseTiming::default();
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let leader = acquired(&mut handle, Client::new(svc, "default"), timing).await;
    let acquired_at = tokio::time::Instant::now();
    let hold = tokio::spawn(async move { leader.hold().await });
    let answer = tokio::spawn(async move {
        let mut failures = 0;
        while let Some((_, send)) = handle.next_request().await {
            failures += 1;
            respond(
                send,
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "etcdserver: request timed out"}),
            );
        }
        failures
    });
    let lost = tokio::time::timeout(timing.lease_duration, hold)
        .await
        .expect("leadership ends before the lease could expire")
        .unwrap();
    assert!(acquired_at.elapsed() <= timing.renew_deadline);
    match lost {
        LeaseLost::RenewDeadline { last_error, .. } => {
            assert!(last_error.unwrap_or_default().contains("etcdserver"));
        }
        other => panic!("{other:?}"),
    }
    answer.abort();
}

#[tokio::test(start_paused = true)]
async fn a_lease_taken_by_another_replica_ends_leadership_at_once() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let leader = acquired(
        &mut handle,
        Client::new(svc, "default"),
        LeaseTiming::default(),
    )
    .await;
    let hold = tokio::spawn(async move { leader.hold().await });
    let (_, _, _, send) = next(&mut handle).await;
    respond(send, StatusCode::OK, lease("pod-b", 0));
    let lost = hold.await.unwrap();
    assert_eq!(lost, LeaseLost::TakenBy("pod-b".into()));
}

#[tokio::test]
async fn release_clears_the_holder_so_a_standby_takes_over_at_once() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let leader = acquired(
        &mut handle,
        Client::new(svc, "default"),
        LeaseTiming::default(),
    )
    .await;
    let release = tokio::spawn(async move { leader.release().await });
    let (method, _, _, send) = next(&mut handle).await;
    assert_eq!(method, Method::GET);
    respond(send, StatusCode::OK, own_lease(Some("pod-a"), "9"));
    let (method, path, body, send) = next(&mut handle).await;
    assert_eq!(
        (method, path.as_str()),
        (
            Method::PUT,
            format!("{LEASE_PATH}/salad-sd-operator").as_str()
        )
    );
    assert!(
        body["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null),
        "holder cleared: {body}"
    );
    assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(body["metadata"]["resourceVersion"], "9");
    respond(send, StatusCode::OK, body.clone());
    release.await.unwrap();

    // The standby finds the released Lease and takes it without waiting for any expiry.
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let take = tokio::spawn(LeaderLease::acquire(
        Client::new(svc, "default"),
        "salad-sd-system",
        "pod-b",
        LeaseTiming::default(),
    ));
    let (_, _, _, send) = next(&mut handle).await;
    respond(send, StatusCode::OK, body);
    let (method, _, taken, send) = next(&mut handle).await;
    assert_eq!(method, Method::PUT);
    assert_eq!(taken["spec"]["holderIdentity"], "pod-b");
    respond(send, StatusCode::OK, taken);
    tokio::time::timeout(Duration::from_secs(2), take)
        .await
        .expect("taken at once")
        .unwrap();
}

#[tokio::test]
async fn release_never_touches_a_lease_another_replica_holds() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let leader = acquired(
        &mut handle,
        Client::new(svc, "default"),
        LeaseTiming::default(),
    )
    .await;
    let release = tokio::spawn(async move { leader.release().await });
    let (_, _, _, send) = next(&mut handle).await;
    respond(send, StatusCode::OK, lease("pod-b", 0));
    release.await.unwrap();
    assert!(
        handle.next_request().await.is_none(),
        "no write after finding pod-b's lease"
    );
}

#[tokio::test]
async fn the_lease_namespace_is_the_given_one_or_the_clients_default() {
    let (svc, _handle) = mock::pair::<Request<Body>, Response<Body>>();
    // Client::try_default sets this default from the service-account namespace file in a
    // cluster and from the kubeconfig context outside.
    let client = Client::new(svc, "ops-from-kubeconfig");
    assert_eq!(lease_namespace(None, &client), "ops-from-kubeconfig");
    assert_eq!(lease_namespace(Some(""), &client), "ops-from-kubeconfig");
    assert_eq!(lease_namespace(Some("ops"), &client), "ops");
}

#[test]
fn lease_failures_name_the_namespace_and_the_fix() {
    let status = |code: u16, reason: &str, message: &str| {
        kube::Error::Api(Box::new(
            serde_json::from_value(
                json!({"status": "Failure", "code": code, "reason": reason, "message": message}),
            )
            .unwrap(),
        ))
    };
    let (severe, msg) = explain(
        &status(404, "NotFound", "namespaces \"ops\" not found"),
        "ops",
    );
    assert!(severe);
    assert!(
        msg.contains("namespace `ops` does not exist") && msg.contains("--lease-namespace"),
        "{msg}"
    );
    let (severe, msg) = explain(
        &status(403, "Forbidden", "leases.coordination.k8s.io is forbidden"),
        "ops",
    );
    assert!(severe);
    assert!(
        msg.contains("RBAC") && msg.contains("`ops`") && msg.contains("rbac.yaml"),
        "{msg}"
    );
    let (severe, _) = explain(&status(409, "Conflict", "modified"), "ops");
    assert!(!severe, "a lost race is routine");
}
