//! The HTTP client: typed operations, retries, the shared rate limiter and a request observer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::{Error, api_error, sanitize};
use crate::model::{
    ContainerGroup, ContainerGroupCollection, ContainerGroupInstance,
    ContainerGroupInstanceCollection, ContainerGroupPatch, ContainerGroupPrototype, GpuClass,
    GpuClassesList, LOG_QUERY_MAX_PAGE_SIZE, LogEntryCollection, LogEntryQuery, Queue,
    QueueCollection, QueueJob, QueueJobCollection, QueueJobPrototype, QueuePrototype, Quotas,
    SystemLog, SystemLogList,
};
use crate::ratelimit::{RateLimiter, RateLimiterStats};
use crate::retry::RetryPolicy;

/// Production base URL of the SaladCloud Public API.
pub const DEFAULT_BASE_URL: &str = "https://api.salad.com/api/public";

/// Documented budget: 240 requests per minute per API key.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 240;

/// Header that carries the API key.
pub const API_KEY_HEADER: &str = "Salad-Api-Key";

const MERGE_PATCH_JSON: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

/// A SaladCloud API key. `Debug` prints `***`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key (surrounding whitespace, e.g. a trailing newline from a Secret, is trimmed).
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into().trim().to_owned())
    }

    /// The key. Only for building the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// API base URL, without trailing slash (default [`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// API key.
    pub api_key: ApiKey,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Timeout of one HTTP attempt (connect + response).
    pub request_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Requests per `rate_limit_window` for this API key, across the process (default 240).
    pub rate_limit_per_minute: u32,
    /// Rate-limit window (60 s; shorter only in tests).
    pub rate_limit_window: Duration,
    /// A connection pool shared with the clients of other API keys (see
    /// [`Client::connection_pool`]); `None` gives this client a pool of its own.
    pub connection_pool: Option<reqwest::Client>,
}

impl ClientConfig {
    /// Defaults for the production API.
    pub fn new(api_key: ApiKey) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            user_agent: concat!("salad-sd-operator/", env!("CARGO_PKG_VERSION")).to_owned(),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            rate_limit_per_minute: DEFAULT_RATE_LIMIT_PER_MINUTE,
            rate_limit_window: Duration::from_secs(60),
            connection_pool: None,
        }
    }

    /// Shares `pool` (from [`Client::connection_pool`]) instead of opening a pool of its own.
    pub fn with_connection_pool(mut self, pool: reqwest::Client) -> Self {
        self.connection_pool = Some(pool);
        self
    }

    /// Sets the base URL.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// One HTTP attempt, reported to the observer (one record per attempt, retries included).
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// API operationId, e.g. `create_container_group`.
    pub operation: &'static str,
    /// HTTP method.
    pub method: Method,
    /// Status, or `None` when no response arrived (timeout, connection error).
    pub status: Option<u16>,
    /// Time from sending to the end of the body (excludes rate-limit waits).
    pub duration: Duration,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Response headers (empty when no response arrived).
    pub response_headers: HeaderMap,
}

/// Callback receiving every [`RequestRecord`].
pub type RequestObserver = Arc<dyn Fn(RequestRecord) + Send + Sync>;

/// Outcome of a delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// 202: deletion accepted.
    Accepted,
    /// 404: the group did not exist (already deleted).
    AlreadyGone,
}

/// Idle connections kept per host (and so per API key's client).
pub const IDLE_CONNECTIONS_PER_HOST: usize = 4;

/// Typed SaladCloud API client. Cheap to clone; clones share the connection pool and the rate
/// limiter. Whoever holds the clients owns the budget: keep one client per API key (as the
/// engine's per-key cache does) so that everything using the key shares its 240 requests/min.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Arc<str>,
    key: ApiKey,
    key_header: HeaderValue,
    retry: RetryPolicy,
    timeout: Duration,
    limiter: Arc<RateLimiter>,
    observer: Option<RequestObserver>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("api_key", &self.key)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

struct Request {
    operation: &'static str,
    method: Method,
    path: String,
    body: Option<(Bytes, &'static str)>,
}

struct Response {
    status: u16,
    body: Bytes,
}

/// Checks a path name against `^[a-z][a-z0-9-]{0,61}[a-z0-9]$`.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (2..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn check_name(operation: &'static str, kind: &'static str, value: &str) -> Result<(), Error> {
    if is_valid_name(value) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            operation,
            kind,
            value: sanitize(value, ""),
        })
    }
}

impl Client {
    /// Builds a client. Fails only on an unusable configuration.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base)
            .map_err(|e| Error::Config(format!("base URL `{base}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "base URL `{base}` must use http or https"
            )));
        }
        if config.api_key.expose().is_empty() {
            return Err(Error::Config(
                "the API key is empty; put the SaladCloud API key in the referenced Secret".into(),
            ));
        }
        let mut key_header = HeaderValue::from_str(config.api_key.expose()).map_err(|_| {
            Error::Config(
                "the API key contains characters not allowed in an HTTP header; check the Secret"
                    .into(),
            )
        })?;
        key_header.set_sensitive(true);
        let http = match config.connection_pool {
            Some(pool) => pool,
            None => Self::connection_pool(&config.user_agent, IDLE_CONNECTIONS_PER_HOST)?,
        };
        let limiter = Arc::new(RateLimiter::new(
            config.rate_limit_per_minute,
            config.rate_limit_window,
        ));
        Ok(Self {
            http,
            base: base.into(),
            key: config.api_key,
            key_header,
            retry: config.retry,
            timeout: config.request_timeout,
            limiter,
            observer: None,
        })
    }

    /// An HTTP connection pool for clients of this crate: one per process serves every API key
    /// (each client keeps its own key, rate limiter and timeout), so that 50 keys do not mean 50
    /// pools, 50 TLS root stores and their idle connections. `idle_per_host` caps the idle
    /// connections kept: a burst (1,000 resources polled at once after a restart) would
    /// otherwise leave hundreds of idle HTTP/1 connections, each holding buffers and a task,
    /// for 90 s.
    pub fn connection_pool(
        user_agent: &str,
        idle_per_host: usize,
    ) -> Result<reqwest::Client, Error> {
        reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(idle_per_host)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
    }

    /// Adds an observer called after every HTTP attempt.
    pub fn with_observer(mut self, observer: RequestObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// How long a request of this key would wait for the rate budget if it were sent now.
    pub fn budget_free_in(&self) -> Duration {
        self.limiter.free_in()
    }

    /// Counters of the rate limiter shared by every client with this API key.
    pub fn rate_limiter_stats(&self) -> RateLimiterStats {
        self.limiter.stats()
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    // ------------------------------------------------------------------------------------------
    // Operations
    // ------------------------------------------------------------------------------------------

    /// `GET P/containers`: every container group of a project (at most 100, no pagination).
    pub async fn list_container_groups(
        &self,
        org: &str,
        project: &str,
    ) -> Result<Vec<ContainerGroup>, Error> {
        const OP: &str = "list_container_groups";
        let path = project_path(OP, org, project)?;
        let resp = self.get(OP, format!("{path}/containers")).await?;
        Ok(decode::<ContainerGroupCollection>(OP, &resp, self.key.expose())?.items)
    }

    /// `GET P/containers/{name}`.
    pub async fn get_container_group(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<ContainerGroup, Error> {
        const OP: &str = "get_container_group";
        let path = group_path(OP, org, project, name)?;
        let resp = self.get(OP, path).await?;
        decode(OP, &resp, self.key.expose())
    }

    /// Like [`Client::get_container_group`], but a 404 is `Ok(None)`.
    pub async fn find_container_group(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<Option<ContainerGroup>, Error> {
        match self.get_container_group(org, project, name).await {
            Ok(g) => Ok(Some(g)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST P/containers` (201).
    ///
    /// Create is not idempotent. If an attempt ends ambiguously (timeout, connection error or
    /// 5xx: the server may have created the group) and a retry then gets `name_conflict`, the
    /// client GETs the group and returns it as the result of the create. A conflict without a
    /// prior ambiguous attempt is returned as the error (`is_name_conflict()`), since names
    /// cannot be reused. Caveat: after an ambiguous attempt, a group of the same name created
    /// concurrently by someone else would be returned too; callers that care compare the image.
    pub async fn create_container_group(
        &self,
        org: &str,
        project: &str,
        prototype: &ContainerGroupPrototype,
    ) -> Result<ContainerGroup, Error> {
        const OP: &str = "create_container_group";
        let path = project_path(OP, org, project)?;
        check_name(OP, "container group", &prototype.name)?;
        let req = Request {
            operation: OP,
            method: Method::POST,
            path: format!("{path}/containers"),
            body: Some((to_json(OP, prototype)?, JSON)),
        };
        let mut ambiguous = false;
        match self.send(&req, &mut ambiguous).await {
            Ok(resp) => decode(OP, &resp, self.key.expose()),
            Err(e) if ambiguous && e.is_name_conflict() => {
                tracing::info!(
                    operation = OP,
                    name = %prototype.name,
                    "create retried after an ambiguous failure hit name_conflict; reading the group"
                );
                match self
                    .find_container_group(org, project, &prototype.name)
                    .await?
                {
                    Some(group) => Ok(group),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `PATCH P/containers/{name}` with `Content-Type: application/merge-patch+json`.
    pub async fn update_container_group(
        &self,
        org: &str,
        project: &str,
        name: &str,
        patch: &ContainerGroupPatch,
    ) -> Result<ContainerGroup, Error> {
        const OP: &str = "update_container_group";
        let path = group_path(OP, org, project, name)?;
        let req = Request {
            operation: OP,
            method: Method::PATCH,
            path,
            body: Some((to_json(OP, patch)?, MERGE_PATCH_JSON)),
        };
        let resp = self.send(&req, &mut false).await?;
        decode(OP, &resp, self.key.expose())
    }

    /// `DELETE P/containers/{name}` (202). A 404 is success: [`Deleted::AlreadyGone`].
    pub async fn delete_container_group(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<Deleted, Error> {
        const OP: &str = "delete_container_group";
        let path = group_path(OP, org, project, name)?;
        let req = Request {
            operation: OP,
            method: Method::DELETE,
            path,
            body: None,
        };
        match self.send(&req, &mut false).await {
            Ok(_) => Ok(Deleted::Accepted),
            Err(e) if e.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// `POST P/containers/{name}/start` (202, asynchronous: poll the group).
    pub async fn start_container_group(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<(), Error> {
        self.action("start_container_group", org, project, name, "start")
            .await
    }

    /// `POST P/containers/{name}/stop` (202, asynchronous: poll the group).
    pub async fn stop_container_group(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<(), Error> {
        self.action("stop_container_group", org, project, name, "stop")
            .await
    }

    /// `GET P/containers/{name}/instances`.
    pub async fn list_container_group_instances(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<Vec<ContainerGroupInstance>, Error> {
        const OP: &str = "list_container_group_instances";
        let path = group_path(OP, org, project, name)?;
        let resp = self.get(OP, format!("{path}/instances")).await?;
        Ok(decode::<ContainerGroupInstanceCollection>(OP, &resp, self.key.expose())?.instances)
    }

    /// `GET /organizations/{org}/gpu-classes`.
    pub async fn list_gpu_classes(&self, org: &str) -> Result<Vec<GpuClass>, Error> {
        const OP: &str = "list_gpu_classes";
        check_name(OP, "organization", org)?;
        let resp = self
            .get(OP, format!("/organizations/{org}/gpu-classes"))
            .await?;
        Ok(decode::<GpuClassesList>(OP, &resp, self.key.expose())?.items)
    }

    /// `GET /organizations/{org}/quotas`.
    pub async fn get_quotas(&self, org: &str) -> Result<Quotas, Error> {
        const OP: &str = "get_quotas";
        check_name(OP, "organization", org)?;
        let resp = self.get(OP, format!("/organizations/{org}/quotas")).await?;
        decode(OP, &resp, self.key.expose())
    }

    /// `GET P/containers/{name}/system-logs`: the group's latest instance events (at most 50).
    pub async fn get_system_logs(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<Vec<SystemLog>, Error> {
        const OP: &str = "get_system_logs";
        let path = group_path(OP, org, project, name)?;
        let resp = self.get(OP, format!("{path}/system-logs")).await?;
        Ok(decode::<SystemLogList>(OP, &resp, self.key.expose())?.items)
    }

    /// `POST /organizations/{org}/log-entries`: one page of the organization's logs matching
    /// `query`. A page size over the spec's 100 is refused here, before any request.
    pub async fn query_log_entries(
        &self,
        org: &str,
        query: &LogEntryQuery,
    ) -> Result<LogEntryCollection, Error> {
        const OP: &str = "query_log_entries";
        check_name(OP, "organization", org)?;
        if let Some(n) = query.page_size
            && !(1..=LOG_QUERY_MAX_PAGE_SIZE).contains(&n)
        {
            return Err(Error::Config(format!(
                "{OP}: page_size must be between 1 and {LOG_QUERY_MAX_PAGE_SIZE}, got {n}"
            )));
        }
        let req = Request {
            operation: OP,
            method: Method::POST,
            path: format!("/organizations/{org}/log-entries"),
            body: Some((to_json(OP, query)?, JSON)),
        };
        let resp = self.send(&req, &mut false).await?;
        decode(OP, &resp, self.key.expose())
    }

    /// `POST …/instances/{id}/reallocate` (202): the instance moves to a different node and
    /// downloads the image again. Counts against `max_container_group_reallocations_per_minute`.
    pub async fn reallocate_instance(
        &self,
        org: &str,
        project: &str,
        name: &str,
        instance_id: &str,
    ) -> Result<(), Error> {
        self.instance_action(
            "reallocate_container_group_instance",
            org,
            project,
            name,
            instance_id,
            "reallocate",
        )
        .await
    }

    /// `POST …/instances/{id}/recreate` (202): a new container on the same node, without a new
    /// download. Counts against `max_container_group_recreates_per_minute`.
    pub async fn recreate_instance(
        &self,
        org: &str,
        project: &str,
        name: &str,
        instance_id: &str,
    ) -> Result<(), Error> {
        self.instance_action(
            "recreate_container_group_instance",
            org,
            project,
            name,
            instance_id,
            "recreate",
        )
        .await
    }

    /// `POST …/instances/{id}/restart` (202): the container restarts on the same node. Counts
    /// against `max_container_group_restarts_per_minute`.
    pub async fn restart_instance(
        &self,
        org: &str,
        project: &str,
        name: &str,
        instance_id: &str,
    ) -> Result<(), Error> {
        self.instance_action(
            "restart_container_group_instance",
            org,
            project,
            name,
            instance_id,
            "restart",
        )
        .await
    }

    async fn instance_action(
        &self,
        operation: &'static str,
        org: &str,
        project: &str,
        name: &str,
        instance_id: &str,
        verb: &str,
    ) -> Result<(), Error> {
        let path = group_path(operation, org, project, name)?;
        if uuid_like(instance_id).is_none() {
            return Err(Error::InvalidName {
                operation,
                kind: "instance id",
                value: sanitize(instance_id, ""),
            });
        }
        let req = Request {
            operation,
            method: Method::POST,
            path: format!("{path}/instances/{instance_id}/{verb}"),
            body: None,
        };
        // One attempt: these actions have per-minute quotas (over them SaladCloud answers 429),
        // and retrying within the minute only spends the key's budget. The caller decides
        // when to try again.
        self.attempt(&req, 1).await.map(|_| ()).map_err(|(e, _)| e)
    }

    // ------------------------------------------------------------------------------------------
    // Transport
    // ------------------------------------------------------------------------------------------

    async fn action(
        &self,
        operation: &'static str,
        org: &str,
        project: &str,
        name: &str,
        verb: &str,
    ) -> Result<(), Error> {
        let path = group_path(operation, org, project, name)?;
        let req = Request {
            operation,
            method: Method::POST,
            path: format!("{path}/{verb}"),
            body: None,
        };
        self.send(&req, &mut false).await.map(|_| ())
    }

    // ------------------------------------------------------------------------------------------
    // Job queues and jobs
    // ------------------------------------------------------------------------------------------

    /// `GET P/queues`.
    pub async fn list_queues(&self, org: &str, project: &str) -> Result<Vec<Queue>, Error> {
        const OP: &str = "list_queues";
        let path = project_path(OP, org, project)?;
        let resp = self.get(OP, format!("{path}/queues")).await?;
        Ok(decode::<QueueCollection>(OP, &resp, self.key.expose())?.items)
    }

    /// `GET P/queues/{name}`; a 404 is `Ok(None)`.
    pub async fn find_queue(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<Option<Queue>, Error> {
        const OP: &str = "get_queue";
        let path = queue_path(OP, org, project, name)?;
        match self.get(OP, path).await {
            Ok(resp) => decode(OP, &resp, self.key.expose()).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST P/queues` (201). A conflict after an ambiguous attempt reads the queue back, as
    /// [`Client::create_container_group`] does.
    pub async fn create_queue(
        &self,
        org: &str,
        project: &str,
        prototype: &QueuePrototype,
    ) -> Result<Queue, Error> {
        const OP: &str = "create_queue";
        let path = project_path(OP, org, project)?;
        check_name(OP, "queue", &prototype.name)?;
        let req = Request {
            operation: OP,
            method: Method::POST,
            path: format!("{path}/queues"),
            body: Some((to_json(OP, prototype)?, JSON)),
        };
        let mut ambiguous = false;
        match self.send(&req, &mut ambiguous).await {
            Ok(resp) => decode(OP, &resp, self.key.expose()),
            Err(e) if ambiguous && e.is_name_conflict() => {
                match self.find_queue(org, project, &prototype.name).await? {
                    Some(q) => Ok(q),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `DELETE P/queues/{name}` (202). A 404 is success: [`Deleted::AlreadyGone`].
    pub async fn delete_queue(
        &self,
        org: &str,
        project: &str,
        name: &str,
    ) -> Result<Deleted, Error> {
        const OP: &str = "delete_queue";
        let req = Request {
            operation: OP,
            method: Method::DELETE,
            path: queue_path(OP, org, project, name)?,
            body: None,
        };
        match self.send(&req, &mut false).await {
            Ok(_) => Ok(Deleted::Accepted),
            Err(e) if e.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// `POST P/queues/{name}/jobs` (201). Not retried after an ambiguous failure: a second
    /// attempt could enqueue the job twice.
    pub async fn create_job(
        &self,
        org: &str,
        project: &str,
        queue: &str,
        job: &QueueJobPrototype,
    ) -> Result<QueueJob, Error> {
        const OP: &str = "create_queue_job";
        let req = Request {
            operation: OP,
            method: Method::POST,
            path: format!("{}/jobs", queue_path(OP, org, project, queue)?),
            body: Some((to_json(OP, job)?, JSON)),
        };
        let resp = self.send(&req, &mut false).await?;
        decode(OP, &resp, self.key.expose())
    }

    /// `GET P/queues/{name}/jobs/{id}`.
    pub async fn get_job(
        &self,
        org: &str,
        project: &str,
        queue: &str,
        job_id: &str,
    ) -> Result<QueueJob, Error> {
        const OP: &str = "get_queue_job";
        let path = job_path(OP, org, project, queue, job_id)?;
        let resp = self.get(OP, path).await?;
        decode(OP, &resp, self.key.expose())
    }

    /// `GET P/queues/{name}/jobs?page=&page_size=` (page from 1; at most 100 a page).
    pub async fn list_jobs(
        &self,
        org: &str,
        project: &str,
        queue: &str,
        page: Option<u32>,
        page_size: Option<u32>,
    ) -> Result<Vec<QueueJob>, Error> {
        const OP: &str = "list_queue_jobs";
        let mut path = format!("{}/jobs", queue_path(OP, org, project, queue)?);
        let mut sep = '?';
        for (k, v) in [("page", page), ("page_size", page_size)] {
            if let Some(v) = v {
                path.push_str(&format!("{sep}{k}={v}"));
                sep = '&';
            }
        }
        let resp = self.get(OP, path).await?;
        Ok(decode::<QueueJobCollection>(OP, &resp, self.key.expose())?.items)
    }

    /// `DELETE P/queues/{name}/jobs/{id}` (202): cancels the job.
    pub async fn delete_job(
        &self,
        org: &str,
        project: &str,
        queue: &str,
        job_id: &str,
    ) -> Result<(), Error> {
        const OP: &str = "delete_queue_job";
        let req = Request {
            operation: OP,
            method: Method::DELETE,
            path: job_path(OP, org, project, queue, job_id)?,
            body: None,
        };
        self.send(&req, &mut false).await.map(|_| ())
    }

    async fn get(&self, operation: &'static str, path: String) -> Result<Response, Error> {
        let req = Request {
            operation,
            method: Method::GET,
            path,
            body: None,
        };
        self.send(&req, &mut false).await
    }

    /// Sends with retries. Sets `ambiguous` when a retried attempt may have been applied.
    async fn send(&self, req: &Request, ambiguous: &mut bool) -> Result<Response, Error> {
        let started = Instant::now();
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (err, retry_after) = match self.attempt(req, attempt).await {
                Ok(resp) => return Ok(resp),
                Err(failure) => failure,
            };
            if !err.is_retryable() || attempt >= max_attempts {
                return Err(err);
            }
            let mut wait = self.retry.backoff(attempt - 1);
            if let Some(ra) = retry_after {
                wait = wait.max(ra.min(self.retry.max_backoff));
            }
            if started.elapsed() + wait > self.retry.max_elapsed {
                return Err(err);
            }
            if err.is_ambiguous() {
                *ambiguous = true;
            }
            tracing::debug!(
                operation = req.operation,
                attempt,
                category = err.category(),
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "retrying SaladCloud request"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        req: &Request,
        attempt: u32,
    ) -> Result<Response, (Error, Option<Duration>)> {
        // Held until the response body has arrived: the budget counts from there.
        let permit = self.limiter.acquire().await;
        let url = format!("{}{}", self.base, req.path);
        let mut builder = self
            .http
            .request(req.method.clone(), url)
            .timeout(self.timeout)
            .header(API_KEY_HEADER, self.key_header.clone())
            .header(header::ACCEPT, accept_for(&req.method));
        if let Some((body, content_type)) = &req.body {
            builder = builder
                .header(header::CONTENT_TYPE, *content_type)
                .body(body.clone());
        }
        let t0 = Instant::now();
        let result = match builder.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(body) => Ok((status, headers, body)),
                    Err(e) => Err((Some(status), headers, e)),
                }
            }
            Err(e) => Err((None, HeaderMap::new(), e)),
        };
        let duration = t0.elapsed();
        drop(permit);
        let (status, headers) = match &result {
            Ok((s, h, _)) => (Some(*s), h.clone()),
            Err((s, h, _)) => (*s, h.clone()),
        };
        tracing::debug!(
            operation = req.operation,
            method = %req.method,
            status,
            attempt,
            duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            "SaladCloud request"
        );
        if let Some(observer) = &self.observer {
            observer(RequestRecord {
                operation: req.operation,
                method: req.method.clone(),
                status,
                duration,
                attempt,
                response_headers: headers.clone(),
            });
        }
        match result {
            Ok((status, _, body)) if (200..300).contains(&status) => Ok(Response { status, body }),
            Ok((status, headers, body)) => {
                let retry_after = retry_after(&headers);
                let mut error = api_error(
                    req.operation,
                    req.method.clone(),
                    status,
                    &body,
                    self.key.expose(),
                );
                if let Error::Api {
                    retry_after: ra, ..
                } = &mut error
                {
                    *ra = retry_after;
                }
                Err((error, retry_after))
            }
            Err((_, _, e)) => Err((self.transport_error(req.operation, &e), None)),
        }
    }

    fn transport_error(&self, operation: &'static str, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            return Error::Timeout {
                operation,
                after: self.timeout,
            };
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error::Network {
            operation,
            message: sanitize(&message, self.key.expose()),
        }
    }
}

/// The spec declares the PATCH response as `application/merge-patch+json` (the body is a full
/// `ContainerGroup` in JSON), so PATCH accepts both types; everything else takes JSON.
fn accept_for(method: &Method) -> &'static str {
    if *method == Method::PATCH {
        "application/json, application/merge-patch+json"
    } else {
        JSON
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// `Some(())` for a uuid's shape (36 characters, hex digits and dashes): instance ids go into the
/// path as they are.
fn uuid_like(s: &str) -> Option<()> {
    (s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')).then_some(())
}

fn project_path(operation: &'static str, org: &str, project: &str) -> Result<String, Error> {
    check_name(operation, "organization", org)?;
    check_name(operation, "project", project)?;
    Ok(format!("/organizations/{org}/projects/{project}"))
}

fn group_path(
    operation: &'static str,
    org: &str,
    project: &str,
    name: &str,
) -> Result<String, Error> {
    let base = project_path(operation, org, project)?;
    check_name(operation, "container group", name)?;
    Ok(format!("{base}/containers/{name}"))
}

fn queue_path(
    operation: &'static str,
    org: &str,
    project: &str,
    name: &str,
) -> Result<String, Error> {
    check_name(operation, "queue", name)?;
    Ok(format!(
        "{}/queues/{name}",
        project_path(operation, org, project)?
    ))
}

fn job_path(
    operation: &'static str,
    org: &str,
    project: &str,
    queue: &str,
    job_id: &str,
) -> Result<String, Error> {
    let id_ok = !job_id.is_empty()
        && job_id.len() <= 64
        && job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !id_ok {
        return Err(Error::Config(format!(
            "{operation}: `{job_id}` is not a job id (a uuid)"
        )));
    }
    Ok(format!(
        "{}/jobs/{job_id}",
        queue_path(operation, org, project, queue)?
    ))
}

fn to_json<T: Serialize>(operation: &'static str, value: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::Config(format!("{operation}: cannot encode the request body: {e}")))
}

fn decode<T: DeserializeOwned>(
    operation: &'static str,
    resp: &Response,
    secret: &str,
) -> Result<T, Error> {
    serde_json::from_slice(&resp.body).map_err(|e| Error::Decode {
        operation,
        status: resp.status,
        message: format!(
            "{e}; body: {}",
            sanitize(&String::from_utf8_lossy(&resp.body), secret)
        ),
    })
}
