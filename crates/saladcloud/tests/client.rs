//! Client behaviour against tiny axum servers on 127.0.0.1: retries, error decoding, key
//! redaction, merge-patch, create ambiguity, rate limiting and GPU class resolution.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use saladcloud::*;
use serde_json::json;
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(20);

struct Fake {
    base: String,
    task: JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(router: Router) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Fake {
        base: format!("http://{addr}"),
        task,
    }
}

fn unique_key(tag: &str) -> String {
    format!("test-key-{tag}-{}", uuid::Uuid::new_v4())
}

fn config(base: &str, key: &str) -> ClientConfig {
    let mut c = ClientConfig::new(ApiKey::new(key)).with_base_url(base);
    c.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_elapsed: Duration::from_secs(5),
    };
    c.request_timeout = Duration::from_secs(5);
    c
}

fn group_json(name: &str) -> serde_json::Value {
    json!({
        "id": "ab3a4591-efc3-46c0-b06a-3d820c0ec100",
        "name": name, "display_name": name, "organization_name": "acme", "project_name": "dev-env",
        "container": {"image": "ghcr.io/acme/sd:1", "command": null,
                      "resources": {"cpu": 4, "memory": 8192, "gpu_classes": []}},
        "autostart_policy": true, "country_codes": [], "create_time": "2026-01-01T00:00:00Z",
        "update_time": "2026-01-01T00:00:00Z",
        "current_state": {"status": "pending", "start_time": "2026-01-01T00:00:00Z",
                          "finish_time": "2026-01-01T00:00:00Z",
                          "instance_status_counts": {"allocating_count": 0, "creating_count": 0,
                                                     "running_count": 0, "stopping_count": 0}},
        "pending_change": false, "priority": "batch", "replicas": 1, "restart_policy": "always",
        "version": 1, "scheduled-scaling-enabled": false, "scaling-actions": []
    })
}

fn quotas_json() -> serde_json::Value {
    json!({"container_groups_quotas": {"container_replicas_quota": 10, "container_replicas_used": 1}})
}

#[derive(Clone, Default)]
struct Counter(Arc<AtomicUsize>);

impl Counter {
    fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_success() {
    tokio::time::timeout(LIMIT, async {
        let hits = Counter::default();
        let router = Router::new()
            .route(
                "/organizations/acme/quotas",
                get(|State(c): State<Counter>| async move {
                    match c.bump() {
                        1 => (StatusCode::SERVICE_UNAVAILABLE, "<html>busy</html>").into_response(),
                        2 => (StatusCode::TOO_MANY_REQUESTS, "").into_response(),
                        _ => axum::Json(quotas_json()).into_response(),
                    }
                }),
            )
            .with_state(hits.clone());
        let fake = serve(router).await;
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let client = Client::new(config(&fake.base, &unique_key("retry")))
            .unwrap()
            .with_observer(Arc::new(move |r: RequestRecord| {
                sink.lock()
                    .unwrap()
                    .push((r.operation, r.status, r.attempt))
            }));
        let q = client.get_quotas("acme").await.unwrap();
        assert_eq!(q.container_groups_quotas.container_replicas_quota, 10);
        assert_eq!(hits.get(), 3);
        assert_eq!(
            *records.lock().unwrap(),
            vec![
                ("get_quotas", Some(503), 1),
                ("get_quotas", Some(429), 2),
                ("get_quotas", Some(200), 3)
            ]
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn retries_are_bounded_and_error_is_transient() {
    tokio::time::timeout(LIMIT, async {
        let hits = Counter::default();
        let router = Router::new()
            .route(
                "/organizations/acme/gpu-classes",
                get(|State(c): State<Counter>| async move {
                    c.bump();
                    StatusCode::BAD_GATEWAY
                }),
            )
            .with_state(hits.clone());
        let fake = serve(router).await;
        let client = Client::new(config(&fake.base, &unique_key("bounded"))).unwrap();
        let err = client.list_gpu_classes("acme").await.unwrap_err();
        assert_eq!(hits.get(), 4, "max_attempts = 4");
        assert!(err.is_transient() && !err.is_terminal());
        assert_eq!(err.category(), "SaladUnavailable");
        assert_eq!(err.status(), Some(502));
        assert!(err.to_string().contains("(empty body)"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn max_elapsed_stops_retries_early() {
    tokio::time::timeout(LIMIT, async {
        let hits = Counter::default();
        let router = Router::new()
            .route(
                "/organizations/acme/quotas",
                get(|State(c): State<Counter>| async move {
                    c.bump();
                    StatusCode::INTERNAL_SERVER_ERROR
                }),
            )
            .with_state(hits.clone());
        let fake = serve(router).await;
        let mut cfg = config(&fake.base, &unique_key("elapsed"));
        cfg.retry = RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(40),
            max_backoff: Duration::from_millis(40),
            max_elapsed: Duration::from_millis(150),
        };
        let client = Client::new(cfg).unwrap();
        let started = std::time::Instant::now();
        assert!(client.get_quotas("acme").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(hits.get() < 100 && hits.get() >= 2, "hits = {}", hits.get());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn backoff_grows_exponentially_with_full_jitter() {
    let p = RetryPolicy {
        max_attempts: 10,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        max_elapsed: Duration::from_secs(60),
    };
    assert_eq!(p.backoff_cap(0), Duration::from_millis(100));
    assert_eq!(p.backoff_cap(1), Duration::from_millis(200));
    assert_eq!(p.backoff_cap(3), Duration::from_millis(800));
    assert_eq!(p.backoff_cap(4), Duration::from_secs(1));
    assert_eq!(p.backoff_cap(40), Duration::from_secs(1));
    let samples: Vec<Duration> = (0..200).map(|_| p.backoff(2)).collect();
    assert!(samples.iter().all(|d| *d <= Duration::from_millis(400)));
    let distinct: std::collections::HashSet<_> = samples.iter().collect();
    assert!(distinct.len() > 50, "jitter should spread the delays");
}

#[tokio::test]
async fn errors_decode_json_html_and_empty_bodies() {
    tokio::time::timeout(LIMIT, async {
        let router = Router::new()
            .route(
                "/organizations/acme/projects/json400/containers",
                post(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"type": "https://api.salad.com/errors/validation",
                                          "title": "Bad Request", "status": 400,
                                          "detail": "replicas must be <= 500"})),
                    )
                }),
            )
            .route(
                "/organizations/acme/projects/html403/containers",
                get(|| async {
                    (
                        StatusCode::FORBIDDEN,
                        [("content-type", "text/html")],
                        "<html><body><h1>403 Forbidden</h1>\n<p>nginx</p></body></html>",
                    )
                }),
            )
            .route(
                "/organizations/acme/projects/empty401/containers",
                get(|| async { StatusCode::UNAUTHORIZED }),
            )
            .route(
                "/organizations/acme/projects/conflict/containers",
                post(|| async {
                    (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"type": "name_conflict", "detail": "name taken"})),
                    )
                }),
            )
            .route(
                "/organizations/acme/projects/dev-env/containers/missing",
                get(|| async { (StatusCode::NOT_FOUND, "not json {") }).patch(|| async {
                    (
                        StatusCode::NOT_FOUND,
                        axum::Json(json!({"title": "Not Found"})),
                    )
                }),
            );
        let fake = serve(router).await;
        let client = Client::new(config(&fake.base, &unique_key("errors"))).unwrap();
        let proto = ContainerGroupPrototype::new(
            "sd-web",
            CreateContainer::new(
                "img",
                CreateResources {
                    cpu: 1,
                    memory: 1024,
                    ..Default::default()
                },
            ),
            1,
        );

        let e = client
            .create_container_group("acme", "json400", &proto)
            .await
            .unwrap_err();
        assert_eq!(e.category(), "SaladValidation");
        assert!(e.is_terminal() && !e.is_transient() && !e.is_name_conflict());
        assert_eq!(
            e.problem().unwrap().detail.as_deref(),
            Some("replicas must be <= 500")
        );
        let msg = e.to_string();
        assert!(
            msg.contains("create_container_group") && msg.contains("400"),
            "{msg}"
        );
        assert!(
            msg.contains("replicas must be <= 500") && msg.contains("fix the spec"),
            "{msg}"
        );

        let e = client
            .list_container_groups("acme", "html403")
            .await
            .unwrap_err();
        assert_eq!(e.category(), "SaladAuth");
        assert!(e.is_terminal());
        let msg = e.to_string();
        assert!(
            msg.contains("403 Forbidden nginx"),
            "HTML stripped to text: {msg}"
        );
        assert!(!msg.contains('<'), "{msg}");

        let e = client
            .list_container_groups("acme", "empty401")
            .await
            .unwrap_err();
        assert_eq!(e.category(), "SaladAuth");
        assert!(e.to_string().contains("check the API key"), "{e}");

        let e = client
            .create_container_group("acme", "conflict", &proto)
            .await
            .unwrap_err();
        assert!(e.is_name_conflict() && e.is_terminal());
        assert_eq!(e.category(), "SaladNameConflict");
        assert!(e.to_string().contains("choose a new name"), "{e}");

        let e = client
            .get_container_group("acme", "dev-env", "missing")
            .await
            .unwrap_err();
        assert!(
            e.is_not_found() && !e.is_terminal(),
            "404 on GET is not terminal"
        );
        assert_eq!(e.category(), "SaladNotFound");
        assert!(
            client
                .find_container_group("acme", "dev-env", "missing")
                .await
                .unwrap()
                .is_none()
        );
        let e = client
            .update_container_group(
                "acme",
                "dev-env",
                "missing",
                &ContainerGroupPatch::default(),
            )
            .await
            .unwrap_err();
        assert!(
            e.is_not_found() && e.is_terminal(),
            "404 on PATCH is terminal"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn api_key_never_appears_in_errors_or_debug() {
    tokio::time::timeout(LIMIT, async {
        let key = unique_key("SUPERSECRET");
        let echo = |headers: HeaderMap| async move {
            let k = headers
                .get("salad-api-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            (StatusCode::BAD_REQUEST, format!("<p>bad key {k}</p>"))
        };
        let echo_json = |headers: HeaderMap| async move {
            let k = headers
                .get("salad-api-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"detail": format!("key {k} revoked")})),
            )
        };
        let echo_ok = |headers: HeaderMap| async move {
            let k = headers
                .get("salad-api-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            format!("{{\"broken\": \"{k}")
        };
        let router = Router::new()
            .route("/organizations/html/quotas", get(echo))
            .route("/organizations/json/quotas", get(echo_json))
            .route("/organizations/decode/quotas", get(echo_ok));
        let fake = serve(router).await;
        let cfg = config(&fake.base, &key);
        assert!(!format!("{cfg:?}").contains(&key));
        let client = Client::new(cfg).unwrap();
        assert!(!format!("{client:?}").contains(&key));
        for org in ["html", "json", "decode"] {
            let e = client.get_quotas(org).await.unwrap_err();
            let shown = format!("{e} | {e:?}");
            assert!(!shown.contains(&key), "key leaked for {org}: {shown}");
            assert!(
                shown.contains("***"),
                "redaction marker expected for {org}: {shown}"
            );
        }
        // Transport errors too (nothing listens on the port any more).
        let base = fake.base.clone();
        drop(fake);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut cfg = config(&base, &key);
        cfg.retry = RetryPolicy::none();
        let e = Client::new(cfg)
            .unwrap()
            .get_quotas("acme")
            .await
            .unwrap_err();
        assert_eq!(e.category(), "SaladNetwork");
        assert!(e.is_transient());
        assert!(!format!("{e} {e:?}").contains(&key));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_names_are_rejected_before_sending() {
    let hits = Counter::default();
    let router = Router::new()
        .fallback(|State(c): State<Counter>| async move {
            c.bump();
            StatusCode::OK
        })
        .with_state(hits.clone());
    let fake = serve(router).await;
    let client = Client::new(config(&fake.base, &unique_key("names"))).unwrap();
    for (org, project, name) in [
        ("Acme", "dev-env", "ok-name"),
        ("acme", "dev_env", "ok-name"),
        ("acme", "dev-env", "-bad"),
        ("acme", "dev-env", "bad-"),
        ("acme", "dev-env", "a"),
        ("acme", "dev-env", "../x"),
    ] {
        let e = client
            .get_container_group(org, project, name)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidName { .. }), "{e}");
        assert!(e.is_terminal());
        assert_eq!(e.category(), "SaladValidation");
    }
    assert!(is_valid_name("sd-web-1a2b"));
    assert!(is_valid_name(&format!("a{}", "b".repeat(62))));
    assert!(!is_valid_name(&format!("a{}", "b".repeat(63))));
    assert_eq!(hits.get(), 0);
}

#[tokio::test]
async fn crud_operations_send_the_right_requests() {
    tokio::time::timeout(LIMIT, async {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let router = Router::new().fallback(
            move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                async move {
                    let ct = headers
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    log.lock().unwrap().push(format!("{method} {} {ct} {}", uri.path(), String::from_utf8_lossy(&body)));
                    let path = uri.path().to_owned();
                    let resp: Response = match (method.as_str(), path.as_str()) {
                        ("GET", "/organizations/acme/projects/dev-env/containers") => {
                            axum::Json(json!({"items": [group_json("a1"), group_json("b2")]})).into_response()
                        }
                        ("POST", "/organizations/acme/projects/dev-env/containers") => {
                            (StatusCode::CREATED, axum::Json(group_json("sd-web"))).into_response()
                        }
                        ("PATCH", _) => axum::Json(group_json("sd-web")).into_response(),
                        ("DELETE", "/organizations/acme/projects/dev-env/containers/sd-web") => {
                            StatusCode::ACCEPTED.into_response()
                        }
                        ("DELETE", _) => StatusCode::NOT_FOUND.into_response(),
                        ("POST", p) if p.ends_with("/start") || p.ends_with("/stop") => {
                            StatusCode::ACCEPTED.into_response()
                        }
                        ("GET", p) if p.ends_with("/instances") => axum::Json(json!({"instances": [
                            {"id": "i1", "machine_id": "m1", "state": "running",
                             "update_time": "2026-01-01T00:00:00Z", "version": 1, "ready": true}
                        ]}))
                        .into_response(),
                        _ => StatusCode::IM_A_TEAPOT.into_response(),
                    };
                    resp
                }
            },
        );
        let fake = serve(router).await;
        let client = Client::new(config(&fake.base, &unique_key("crud"))).unwrap();
        let (o, p) = ("acme", "dev-env");
        assert_eq!(client.list_container_groups(o, p).await.unwrap().len(), 2);
        let proto = ContainerGroupPrototype::new(
            "sd-web",
            CreateContainer::new("img", CreateResources { cpu: 1, memory: 1024, ..Default::default() }),
            1,
        );
        assert_eq!(client.create_container_group(o, p, &proto).await.unwrap().name, "sd-web");
        let patch = ContainerGroupPatch { replicas: Some(3), ..Default::default() };
        client.update_container_group(o, p, "sd-web", &patch).await.unwrap();
        client.start_container_group(o, p, "sd-web").await.unwrap();
        client.stop_container_group(o, p, "sd-web").await.unwrap();
        let inst = client.list_container_group_instances(o, p, "sd-web").await.unwrap();
        assert_eq!(inst[0].state, InstanceState::Running);
        assert_eq!(client.delete_container_group(o, p, "sd-web").await.unwrap(), Deleted::Accepted);
        assert_eq!(client.delete_container_group(o, p, "gone-1").await.unwrap(), Deleted::AlreadyGone);
        let seen = seen.lock().unwrap().clone();
        assert!(seen.iter().any(|l| l.starts_with("POST /organizations/acme/projects/dev-env/containers application/json {\"name\":\"sd-web\"")), "{seen:?}");
        assert!(
            seen.contains(&"PATCH /organizations/acme/projects/dev-env/containers/sd-web application/merge-patch+json {\"replicas\":3}".to_owned()),
            "{seen:?}"
        );
        assert!(seen.contains(&"POST /organizations/acme/projects/dev-env/containers/sd-web/start  ".to_owned()), "{seen:?}");
        assert!(seen.contains(&"POST /organizations/acme/projects/dev-env/containers/sd-web/stop  ".to_owned()), "{seen:?}");
    })
    .await
    .unwrap();
}

#[derive(Clone, Default)]
struct CreateState {
    posts: Counter,
    created: Arc<Mutex<bool>>,
}

#[tokio::test]
async fn create_after_ambiguous_timeout_resolves_name_conflict_by_get() {
    tokio::time::timeout(LIMIT, async {
        let st = CreateState::default();
        let router = Router::new()
            .route(
                "/organizations/acme/projects/dev-env/containers",
                post(|State(s): State<CreateState>| async move {
                    let n = s.posts.bump();
                    let already = {
                        let mut c = s.created.lock().unwrap();
                        std::mem::replace(&mut *c, true)
                    };
                    if n == 1 {
                        // Created server-side, but the answer arrives after the client gave up.
                        tokio::time::sleep(Duration::from_millis(800)).await;
                    }
                    if already {
                        (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"type": "name_conflict"})),
                        )
                            .into_response()
                    } else {
                        (StatusCode::CREATED, axum::Json(group_json("sd-web"))).into_response()
                    }
                }),
            )
            .route(
                "/organizations/acme/projects/dev-env/containers/sd-web",
                get(|State(s): State<CreateState>| async move {
                    if *s.created.lock().unwrap() {
                        axum::Json(group_json("sd-web")).into_response()
                    } else {
                        StatusCode::NOT_FOUND.into_response()
                    }
                }),
            )
            .with_state(st.clone());
        let fake = serve(router).await;
        let mut cfg = config(&fake.base, &unique_key("ambiguous"));
        cfg.request_timeout = Duration::from_millis(200);
        let client = Client::new(cfg).unwrap();
        let proto = ContainerGroupPrototype::new(
            "sd-web",
            CreateContainer::new(
                "img",
                CreateResources {
                    cpu: 1,
                    memory: 1024,
                    ..Default::default()
                },
            ),
            1,
        );
        let g = client
            .create_container_group("acme", "dev-env", &proto)
            .await
            .unwrap();
        assert_eq!(g.name, "sd-web");
        assert_eq!(st.posts.get(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_never_exceeds_budget_in_any_window() {
    let window = Duration::from_millis(300);
    let limiter = Arc::new(RateLimiter::new(5, window));
    let mut tasks = Vec::new();
    for _ in 0..23 {
        let l = limiter.clone();
        tasks.push(tokio::spawn(async move {
            l.acquire().await;
            tokio::time::Instant::now()
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.push(t.await.unwrap());
    }
    times.sort();
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < window)
            .count();
        assert!(
            in_window <= 5,
            "{in_window} grants within one window starting at #{i}"
        );
    }
    let span = times.last().unwrap().duration_since(times[0]);
    assert!(
        span >= window * 4,
        "23 permits at 5/window need at least 4 windows, got {span:?}"
    );
    let stats = limiter.stats();
    assert_eq!(stats.acquired, 23);
    assert_eq!(stats.delayed, 18);
    assert!(stats.max_wait >= window * 4);
}

#[tokio::test]
async fn clones_share_the_limiter_and_new_clients_own_theirs() {
    tokio::time::timeout(LIMIT, async {
        let router = Router::new().route(
            "/organizations/acme/quotas",
            get(|| async { axum::Json(quotas_json()) }),
        );
        let fake = serve(router).await;
        let key = unique_key("shared");
        let mut cfg = config(&fake.base, &key);
        cfg.rate_limit_per_minute = 3;
        cfg.rate_limit_window = Duration::from_millis(400);
        let a = Client::new(cfg.clone()).unwrap();
        let b = a.clone();
        // A client created on its own owns its budget, even for the same key: the process holds
        // no global state, so unrelated users (tests, simulators) never share a window.
        let other = Client::new(cfg).unwrap();
        let started = std::time::Instant::now();
        for i in 0..6 {
            let c = if i % 2 == 0 { &a } else { &b };
            c.get_quotas("acme").await.unwrap();
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(390),
            "6 requests at 3/400ms took {elapsed:?}"
        );
        assert_eq!(a.rate_limiter_stats().acquired, 6);
        assert_eq!(b.rate_limiter_stats().acquired, 6);
        assert!(
            a.rate_limiter_stats().delayed >= 1,
            "{:?}",
            a.rate_limiter_stats()
        );
        assert_eq!(
            other.rate_limiter_stats().acquired,
            0,
            "a new client, a new limiter"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn gpu_classes_resolve_by_name_or_id_with_cache() {
    tokio::time::timeout(LIMIT, async {
        let hits = Counter::default();
        let router = Router::new()
            .route(
                "/organizations/acme/gpu-classes",
                get(|State(c): State<Counter>| async move {
                    c.bump();
                    axum::Json(json!({"items": [
                        {"id": "ed563892-aacd-40f5-80b7-90c9be6c759b", "name": "RTX 4090 (24 GB)",
                         "prices": [{"priority": "high", "price": "0.30"}, {"priority": "batch", "price": "0.18"}],
                         "min_vcpu": 2, "max_vcpu": 16, "min_ram": 4096, "max_ram": 61440,
                         "min_storage": 1073741824, "max_storage": 268435456000_u64},
                        {"id": "0ff0b7a3-5a7c-4e6c-8b3f-b2c4d3f1d2a1", "name": "RTX 3060 Ti (8 GB)",
                         "prices": [{"priority": "high", "price": "0.08"}]}
                    ]}))
                }),
            )
            .with_state(hits.clone());
        let fake = serve(router).await;
        let client = Client::new(config(&fake.base, &unique_key("gpu"))).unwrap();
        let resolver = GpuClassResolver::new(client);
        let r = resolver
            .resolve("acme", &["  rtx 4090 (24 gb) ", "0FF0B7A3-5A7C-4E6C-8B3F-B2C4D3F1D2A1", "11111111-2222-3333-4444-555555555555"])
            .await
            .unwrap();
        assert_eq!(r[0].id, "ed563892-aacd-40f5-80b7-90c9be6c759b");
        assert_eq!(r[0].price(Priority::Batch), Some(0.18));
        assert_eq!(
            (r[0].min_vcpu, r[0].max_vcpu, r[0].min_ram_mb, r[0].max_ram_mb),
            (Some(2), Some(16), Some(4096), Some(61440)),
            "the class's limits come along"
        );
        assert_eq!(
            (r[0].min_storage_bytes, r[0].max_storage_bytes),
            (Some(1 << 30), Some(268_435_456_000))
        );
        assert_eq!(r[1].name, "RTX 3060 Ti (8 GB)");
        assert_eq!(
            (r[1].min_vcpu, r[1].max_vcpu, r[1].max_ram_mb, r[1].max_storage_bytes),
            (None, None, None, None),
            "a class listed without limits has none"
        );
        assert_eq!(r[2].id, "11111111-2222-3333-4444-555555555555", "unknown ids pass through");
        assert!(r[2].prices.is_empty());
        assert_eq!(
            r[2],
            ResolvedGpuClass::unlisted("11111111-2222-3333-4444-555555555555"),
            "an id not in the list has no limits"
        );
        let e = resolver.resolve("acme", &["RTX 9090"]).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "GPU class `RTX 9090` not found in organization `acme`; known: RTX 3060 Ti (8 GB), \
             RTX 4090 (24 GB); use one of these names or a GPU class id"
        );
        assert!(e.is_terminal());
        assert_eq!(e.category(), "SaladGpuClassNotFound");
        assert_eq!(hits.get(), 1, "second resolve served from cache (fresh list, no refetch)");
        resolver.invalidate("acme").await;
        resolver.resolve("acme", &["RTX 4090 (24 GB)"]).await.unwrap();
        assert_eq!(hits.get(), 2);
        let short = GpuClassResolver::with_ttl(resolver_client(&fake.base), Duration::ZERO);
        short.resolve("acme", &["RTX 4090 (24 GB)"]).await.unwrap();
        short.resolve("acme", &["RTX 4090 (24 GB)"]).await.unwrap();
        assert_eq!(hits.get(), 4, "TTL zero refetches every time");
    })
    .await
    .unwrap();
}

fn resolver_client(base: &str) -> Client {
    Client::new(config(base, &unique_key("gpu2"))).unwrap()
}
