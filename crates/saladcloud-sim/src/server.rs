//! HTTP layer: routes, the fault/auth/rate-limit middleware, admin endpoints and the gateway
//! dispatch by `Host`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::serve::IncomingStream;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::config::Faults;
use crate::gateway;
use crate::validate::is_resource_name;
use crate::world::{ApiError, InstanceAction, World};

/// State shared by all handlers and the in-process admin.
pub(crate) struct Shared {
    pub world: Mutex<World>,
    pub api_key: Option<String>,
    pub rate_limit: u32,
    limiter: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Shared {
    pub fn new(world: World, api_key: Option<String>, rate_limit: u32) -> Self {
        Self {
            world: Mutex::new(world),
            api_key,
            rate_limit,
            limiter: Mutex::new(HashMap::new()),
        }
    }

    /// Lock the world after replaying time up to now.
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World, Instant) -> R) -> R {
        let mut w = self.world.lock().expect("world lock poisoned");
        let now = Instant::now();
        w.advance(now);
        f(&mut w, now)
    }

    fn faults(&self) -> Faults {
        self.world
            .lock()
            .expect("world lock poisoned")
            .faults
            .clone()
    }

    fn record(&self, op: &str, status: u16) {
        let mut w = self.world.lock().expect("world lock poisoned");
        *w.stats
            .requests
            .entry(op.to_owned())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
        w.stats.total_requests += 1;
        if status == 429 {
            w.stats.rate_limited += 1;
        }
    }

    /// Count a request for `key`; false when the sliding-window limit is exceeded.
    fn admit(&self, key: &str) -> bool {
        if self.rate_limit == 0 {
            return true;
        }
        let now = Instant::now();
        let mut l = self.limiter.lock().expect("limiter lock poisoned");
        let q = l.entry(key.to_owned()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            q.pop_front();
        }
        if q.len() >= self.rate_limit as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

// ---------------------------------------------------------------------------------------------
// A listener whose connections can be killed from a handler (the "dropped connection" fault).

pub(crate) struct SimListener(pub TcpListener);

pub(crate) struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl axum::serve::Listener for SimListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, addr)) => {
                    let _ = inner.set_nodelay(true);
                    return (
                        KillableStream {
                            inner,
                            killed: Arc::new(AtomicBool::new(false)),
                        },
                        addr,
                    );
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

fn killed_err() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by fault",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed.load(Ordering::SeqCst) {
            return Poll::Ready(Err(killed_err()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Per-connection handle that lets a handler drop the connection without answering.
#[derive(Clone)]
pub(crate) struct ConnKill(Arc<AtomicBool>);

impl Connected<IncomingStream<'_, SimListener>> for ConnKill {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        Self(stream.io().killed.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Responses.

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

type ApiResult = Result<Response, ApiError>;

// ---------------------------------------------------------------------------------------------
// Router.

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let p = "/organizations/{org}/projects/{project}/containers";
    let api = Router::new()
        .route(p, get(list_groups).post(create_group))
        .route(
            &format!("{p}/{{name}}"),
            get(get_group).patch(update_group).delete(delete_group),
        )
        .route(&format!("{p}/{{name}}/start"), post(start_group))
        .route(&format!("{p}/{{name}}/stop"), post(stop_group))
        .route(&format!("{p}/{{name}}/instances"), get(list_instances))
        .route(
            &format!("{p}/{{name}}/instances/{{id}}"),
            get(get_instance).patch(patch_instance),
        )
        .route(
            &format!("{p}/{{name}}/instances/{{id}}/{{action}}"),
            post(instance_action),
        )
        .route(&format!("{p}/{{name}}/system-logs"), get(system_logs))
        .route(
            "/organizations/{org}/projects/{project}/queues",
            get(list_queues).post(create_queue),
        )
        .route(
            "/organizations/{org}/projects/{project}/queues/{queue}",
            get(get_queue).patch(update_queue).delete(delete_queue),
        )
        .route(
            "/organizations/{org}/projects/{project}/queues/{queue}/jobs",
            get(list_jobs).post(create_job),
        )
        .route(
            "/organizations/{org}/projects/{project}/queues/{queue}/jobs/{job}",
            get(get_job).delete(delete_job),
        )
        .route("/organizations/{org}/log-entries", post(log_entries))
        .route("/organizations/{org}/gpu-classes", get(gpu_classes))
        .route("/organizations/{org}/quotas", get(quotas))
        .fallback(api_not_found)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            api_middleware,
        ));
    let admin = Router::new()
        .route("/stats", get(admin_stats).delete(admin_reset_stats))
        .route("/faults", get(admin_get_faults).put(admin_put_faults))
        .route("/burst-429", post(admin_burst))
        .route("/failing-images", post(admin_failing_image))
        .route("/interrupt", post(admin_interrupt));
    Router::new()
        .nest("/api/public", api)
        .nest("/_admin", admin)
        .route("/_gateway/{dns}", any(gateway_by_path_root))
        .route("/_gateway/{dns}/{*rest}", any(gateway_by_path))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            host_dispatch,
        ))
        .with_state(shared)
}

/// The spec's `operationId` for a request, used as the stats key.
fn operation(method: &Method, path: &str) -> String {
    let rest = path.strip_prefix("/api/public").unwrap_or(path);
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let m = method.as_str();
    let op = match (m, segs.as_slice()) {
        ("GET", ["organizations", _, "gpu-classes"]) => "list_gpu_classes",
        ("GET", ["organizations", _, "quotas"]) => "get_quotas",
        ("POST", ["organizations", _, "log-entries"]) => "query_log_entries",
        (
            "GET",
            [
                "organizations",
                _,
                "projects",
                _,
                "containers",
                _,
                "system-logs",
            ],
        ) => "get_system_logs",
        ("GET", ["organizations", _, "projects", _, "queues"]) => "list_queues",
        ("POST", ["organizations", _, "projects", _, "queues"]) => "create_queue",
        ("GET", ["organizations", _, "projects", _, "queues", _]) => "get_queue",
        ("PATCH", ["organizations", _, "projects", _, "queues", _]) => "update_queue",
        ("DELETE", ["organizations", _, "projects", _, "queues", _]) => "delete_queue",
        ("GET", ["organizations", _, "projects", _, "queues", _, "jobs"]) => "list_queue_jobs",
        ("POST", ["organizations", _, "projects", _, "queues", _, "jobs"]) => "create_queue_job",
        ("GET", ["organizations", _, "projects", _, "queues", _, "jobs", _]) => "get_queue_job",
        ("DELETE", ["organizations", _, "projects", _, "queues", _, "jobs", _]) => {
            "delete_queue_job"
        }
        ("GET", ["organizations", _, "projects", _, "containers"]) => "list_container_groups",
        ("POST", ["organizations", _, "projects", _, "containers"]) => "create_container_group",
        ("GET", ["organizations", _, "projects", _, "containers", _]) => "get_container_group",
        ("PATCH", ["organizations", _, "projects", _, "containers", _]) => "update_container_group",
        ("DELETE", ["organizations", _, "projects", _, "containers", _]) => {
            "delete_container_group"
        }
        ("POST", ["organizations", _, "projects", _, "containers", _, "start"]) => {
            "start_container_group"
        }
        ("POST", ["organizations", _, "projects", _, "containers", _, "stop"]) => {
            "stop_container_group"
        }
        (
            "GET",
            [
                "organizations",
                _,
                "projects",
                _,
                "containers",
                _,
                "instances",
            ],
        ) => "list_container_group_instances",
        (
            "GET",
            [
                "organizations",
                _,
                "projects",
                _,
                "containers",
                _,
                "instances",
                _,
            ],
        ) => "get_container_group_instance",
        (
            "PATCH",
            [
                "organizations",
                _,
                "projects",
                _,
                "containers",
                _,
                "instances",
                _,
            ],
        ) => "update_container_group_instance",
        (
            "POST",
            [
                "organizations",
                _,
                "projects",
                _,
                "containers",
                _,
                "instances",
                _,
                a,
            ],
        ) => {
            return format!("{a}_container_group_instance");
        }
        _ => "unknown",
    };
    op.to_owned()
}

async fn api_middleware(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let kill = req.extensions().get::<ConnectInfo<ConnKill>>().cloned();
    let op = operation(req.method(), req.uri().path());
    let faults = shared.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let drop = faults.drop_rate > 0.0 && rand::rng().random_bool(faults.drop_rate.clamp(0.0, 1.0));
    if drop && let Some(ConnectInfo(k)) = &kill {
        k.0.store(true, Ordering::SeqCst);
        shared.record(&op, 0);
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let resp = match gate(&shared, &faults, req.headers()) {
        Some(r) => r,
        None => next.run(req).await,
    };
    shared.record(&op, resp.status().as_u16());
    resp
}

/// Auth, 429s and injected 5xx: `Some(response)` short-circuits the request.
fn gate(shared: &Shared, faults: &Faults, headers: &HeaderMap) -> Option<Response> {
    let key = headers
        .get("salad-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if key.is_empty() || shared.api_key.as_deref().is_some_and(|k| k != key) {
        return Some(
            ApiError::new(
                401,
                "about:blank",
                "Unauthorized",
                "A valid Salad-Api-Key header is required (find your API key in the SaladCloud portal)",
            )
            .into_response(),
        );
    }
    let burst = {
        let mut w = shared.world.lock().expect("world lock poisoned");
        if w.faults.burst_429 > 0 {
            w.faults.burst_429 -= 1;
            true
        } else {
            false
        }
    };
    if burst || !shared.admit(&key) {
        return Some(
            ApiError::new(
                429,
                "about:blank",
                "Too Many Requests",
                format!(
                    "Rate limit of {} requests per minute per API key exceeded; retry later with backoff",
                    shared.rate_limit
                ),
            )
            .into_response(),
        );
    }
    if faults.error_rate > 0.0 && rand::rng().random_bool(faults.error_rate.clamp(0.0, 1.0)) {
        return Some(
            ApiError::new(
                500,
                "about:blank",
                "Internal Server Error",
                "Injected fault: the simulator answered 500; retry with backoff",
            )
            .into_response(),
        );
    }
    None
}

async fn api_not_found(method: Method, uri: axum::http::Uri) -> Response {
    ApiError::not_found(format!("{method} {}: no such endpoint", uri.path())).into_response()
}

// ---------------------------------------------------------------------------------------------
// API handlers.

fn check_names(parts: &[(&str, &str)]) -> Result<(), ApiError> {
    for (what, v) in parts {
        if !is_resource_name(v) {
            return Err(ApiError::not_found(format!(
                "{what} `{v}` not found: names must match ^[a-z][a-z0-9-]{{0,61}}[a-z0-9]$"
            )));
        }
    }
    Ok(())
}

/// The three names of a container-group path.
fn check_group_path(org: &str, project: &str, name: &str) -> Result<(), ApiError> {
    check_names(&[
        ("organization", org),
        ("project", project),
        ("container group", name),
    ])
}

fn parse_json(headers: &HeaderMap, body: &Bytes, patch: bool) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or_default().trim().to_owned();
    let ok = mime == "application/json" || (patch && mime == "application/merge-patch+json");
    if !ok {
        let want = if patch {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        return Err(ApiError::new(
            415,
            "about:blank",
            "Unsupported Media Type",
            format!("Content-Type must be {want}, got `{mime}`"),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))
}

type GroupPath = Path<(String, String, String)>;

async fn list_groups(
    State(s): State<Arc<Shared>>,
    Path((org, project)): Path<(String, String)>,
) -> ApiResult {
    check_names(&[("organization", &org), ("project", &project)])?;
    let v = s.with_world(|w, now| w.list(&org, &project, now));
    Ok(json_response(StatusCode::OK, v))
}

async fn create_group(
    State(s): State<Arc<Shared>>,
    Path((org, project)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_names(&[("organization", &org), ("project", &project)])?;
    let body = parse_json(&headers, &body, false)?;
    let v = s.with_world(|w, now| w.create(&org, &project, &body, now))?;
    let location = format!(
        "/organizations/{org}/projects/{project}/containers/{}",
        v["name"].as_str().unwrap_or_default()
    );
    let mut resp = json_response(StatusCode::CREATED, v);
    if let Ok(h) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, h);
    }
    Ok(resp)
}

type QueuePath = Path<(String, String, String)>;
type JobPath = Path<(String, String, String, String)>;

fn check_queue_path(org: &str, project: &str, queue: &str) -> Result<(), ApiError> {
    check_names(&[
        ("organization", org),
        ("project", project),
        ("queue", queue),
    ])
}

async fn list_queues(
    State(s): State<Arc<Shared>>,
    Path((org, project)): Path<(String, String)>,
) -> ApiResult {
    check_names(&[("organization", &org), ("project", &project)])?;
    let v = s.with_world(|w, now| w.list_queues(&org, &project, now));
    Ok(json_response(StatusCode::OK, v))
}

async fn create_queue(
    State(s): State<Arc<Shared>>,
    Path((org, project)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_names(&[("organization", &org), ("project", &project)])?;
    let body = parse_json(&headers, &body, false)?;
    let v = s.with_world(|w, now| w.create_queue(&org, &project, &body, now))?;
    Ok(json_response(StatusCode::CREATED, v))
}

async fn get_queue(
    State(s): State<Arc<Shared>>,
    Path((org, project, queue)): QueuePath,
) -> ApiResult {
    check_queue_path(&org, &project, &queue)?;
    let v = s.with_world(|w, now| w.get_queue(&org, &project, &queue, now))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn update_queue(
    State(s): State<Arc<Shared>>,
    Path((org, project, queue)): QueuePath,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_queue_path(&org, &project, &queue)?;
    let patch = parse_json(&headers, &body, true)?;
    let v = s.with_world(|w, now| w.update_queue(&org, &project, &queue, &patch, now))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn delete_queue(
    State(s): State<Arc<Shared>>,
    Path((org, project, queue)): QueuePath,
) -> ApiResult {
    check_queue_path(&org, &project, &queue)?;
    s.with_world(|w, _| w.delete_queue(&org, &project, &queue))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<u32>,
    page_size: Option<u32>,
}

async fn list_jobs(
    State(s): State<Arc<Shared>>,
    Path((org, project, queue)): QueuePath,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> ApiResult {
    check_queue_path(&org, &project, &queue)?;
    let v = s.with_world(|w, _| {
        w.list_jobs(
            &org,
            &project,
            &queue,
            q.page.unwrap_or(1),
            q.page_size.unwrap_or(100),
        )
    })?;
    Ok(json_response(StatusCode::OK, v))
}

async fn create_job(
    State(s): State<Arc<Shared>>,
    Path((org, project, queue)): QueuePath,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_queue_path(&org, &project, &queue)?;
    let body = parse_json(&headers, &body, false)?;
    let v = s.with_world(|w, now| w.create_job(&org, &project, &queue, &body, now))?;
    Ok(json_response(StatusCode::CREATED, v))
}

async fn get_job(
    State(s): State<Arc<Shared>>,
    Path((org, project, queue, job)): JobPath,
) -> ApiResult {
    check_queue_path(&org, &project, &queue)?;
    let v = s.with_world(|w, _| w.get_job(&org, &project, &queue, &job))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn delete_job(
    State(s): State<Arc<Shared>>,
    Path((org, project, queue, job)): JobPath,
) -> ApiResult {
    check_queue_path(&org, &project, &queue)?;
    s.with_world(|w, now| w.delete_job(&org, &project, &queue, &job, now))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn get_group(
    State(s): State<Arc<Shared>>,
    Path((org, project, name)): GroupPath,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    let v = s.with_world(|w, now| w.get(&org, &project, &name, now))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn update_group(
    State(s): State<Arc<Shared>>,
    Path((org, project, name)): GroupPath,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    let patch = parse_json(&headers, &body, true)?;
    let v = s.with_world(|w, now| w.update(&org, &project, &name, &patch, now))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn delete_group(
    State(s): State<Arc<Shared>>,
    Path((org, project, name)): GroupPath,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    s.with_world(|w, now| w.delete(&org, &project, &name, now))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn start_group(
    State(s): State<Arc<Shared>>,
    Path((org, project, name)): GroupPath,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    s.with_world(|w, now| w.start(&org, &project, &name, now))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn stop_group(
    State(s): State<Arc<Shared>>,
    Path((org, project, name)): GroupPath,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    s.with_world(|w, now| w.stop(&org, &project, &name, now))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn list_instances(
    State(s): State<Arc<Shared>>,
    Path((org, project, name)): GroupPath,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    let v = s.with_world(|w, now| w.instances(&org, &project, &name, now))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn get_instance(
    State(s): State<Arc<Shared>>,
    Path((org, project, name, id)): Path<(String, String, String, String)>,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    let v = s.with_world(|w, now| w.instance(&org, &project, &name, &id, now))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn patch_instance(
    State(s): State<Arc<Shared>>,
    Path((org, project, name, id)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    let patch = parse_json(&headers, &body, true)?;
    let v = s.with_world(|w, now| w.patch_instance(&org, &project, &name, &id, &patch, now))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn instance_action(
    State(s): State<Arc<Shared>>,
    Path((org, project, name, id, action)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    let action = match action.as_str() {
        "reallocate" => InstanceAction::Reallocate,
        "recreate" => InstanceAction::Recreate,
        "restart" => InstanceAction::Restart,
        other => {
            return Err(ApiError::not_found(format!(
                "unknown instance action `{other}` (reallocate, recreate, restart)"
            )));
        }
    };
    s.with_world(|w, now| w.instance_action(&org, &project, &name, &id, action, now))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn system_logs(
    State(s): State<Arc<Shared>>,
    Path((org, project, name)): GroupPath,
) -> ApiResult {
    check_group_path(&org, &project, &name)?;
    let v = s.with_world(|w, _| w.system_logs(&org, &project, &name))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn log_entries(
    State(s): State<Arc<Shared>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_names(&[("organization", &org)])?;
    let body = parse_json(&headers, &body, false)?;
    let v = s.with_world(|w, _| w.log_entries(&org, &body))?;
    Ok(json_response(StatusCode::OK, v))
}

async fn gpu_classes(State(s): State<Arc<Shared>>, Path(org): Path<String>) -> ApiResult {
    check_names(&[("organization", &org)])?;
    Ok(json_response(
        StatusCode::OK,
        s.with_world(|w, _| w.gpu_classes_json()),
    ))
}

async fn quotas(State(s): State<Arc<Shared>>, Path(org): Path<String>) -> ApiResult {
    check_names(&[("organization", &org)])?;
    Ok(json_response(
        StatusCode::OK,
        s.with_world(|w, _| w.quotas_json(&org)),
    ))
}

// ---------------------------------------------------------------------------------------------
// Admin endpoints.

async fn admin_stats(State(s): State<Arc<Shared>>) -> Response {
    let stats = s.with_world(|w, _| w.stats());
    json_response(StatusCode::OK, json!(stats))
}

async fn admin_reset_stats(State(s): State<Arc<Shared>>) -> Response {
    s.with_world(|w, _| w.stats = Default::default());
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_get_faults(State(s): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, json!(s.faults()))
}

async fn admin_put_faults(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            s.with_world(|w, _| w.faults = f.clone());
            json_response(StatusCode::OK, json!(f))
        }
        Err(e) => ApiError::bad_request(format!("invalid faults JSON: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
struct BurstBody {
    count: u32,
}

async fn admin_burst(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<BurstBody>(&body) {
        Ok(b) => {
            s.with_world(|w, _| w.faults.burst_429 = b.count);
            json_response(StatusCode::OK, json!({"burst_429": b.count}))
        }
        Err(e) => ApiError::bad_request(format!("expected {{\"count\": N}}: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
struct PatternBody {
    pattern: String,
}

async fn admin_failing_image(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<PatternBody>(&body) {
        Ok(b) => {
            let all = s.with_world(|w, _| {
                if !w.faults.failing_images.contains(&b.pattern) {
                    w.faults.failing_images.push(b.pattern);
                }
                w.faults.failing_images.clone()
            });
            json_response(StatusCode::OK, json!({"failing_images": all}))
        }
        Err(e) => {
            ApiError::bad_request(format!("expected {{\"pattern\": \"...\"}}: {e}")).into_response()
        }
    }
}

#[derive(Deserialize)]
struct InterruptBody {
    organization: String,
    project: String,
    name: String,
    instance_id: Option<String>,
}

async fn admin_interrupt(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let b = match serde_json::from_slice::<InterruptBody>(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!(
                "expected {{\"organization\", \"project\", \"name\", \"instance_id\"?}}: {e}"
            ))
            .into_response();
        }
    };
    match s.with_world(|w, now| {
        w.interrupt(
            &b.organization,
            &b.project,
            &b.name,
            b.instance_id.as_deref(),
            now,
        )
    }) {
        Ok(id) => json_response(StatusCode::OK, json!({"instance_id": id})),
        Err(e) => e.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway.

/// Hands a request for the access domain `dns` to the fake SD.Next, with the world's view of it.
fn gateway(
    s: &Shared,
    dns: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let target = s.with_world(|w, now| w.gateway_target(dns, now));
    gateway::handle(
        target,
        s.api_key.as_deref(),
        dns,
        method,
        path,
        headers,
        body,
    )
}

async fn host_dispatch(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| {
            h.rsplit_once(':')
                .map_or(h, |(a, _)| a)
                .to_ascii_lowercase()
        });
    if let Some(host) = host
        && host.contains('.')
        && s.with_world(|w, now| w.gateway_target(&host, now).is_some())
    {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, 1 << 30).await {
            Ok(b) => b,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        };
        return gateway(
            &s,
            &host,
            &parts.method,
            parts.uri.path(),
            &parts.headers,
            &bytes,
        );
    }
    next.run(req).await
}

async fn gateway_by_path_root(
    State(s): State<Arc<Shared>>,
    Path(dns): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gateway(&s, &dns, &method, "/", &headers, &body)
}

async fn gateway_by_path(
    State(s): State<Arc<Shared>>,
    Path((dns, rest)): Path<(String, String)>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    gateway(&s, &dns, &method, &format!("/{rest}"), &headers, &body)
}
