//! Typed request and response bodies of the SaladCloud Public API (spec v0.9.0-alpha.17).
//!
//! Conventions:
//! - Read models (`ContainerGroup`, `ContainerGroupInstance`, …) are lenient: optional or
//!   missing fields fall back to defaults and enums carry an `Unknown` catch-all, so a server
//!   that adds fields or values does not break decoding.
//! - Write models (`ContainerGroupPrototype`, `ContainerGroupPatch`) serialize exactly as the
//!   spec names them (snake_case, plus the hyphenated `scaling-actions` and
//!   `scheduled-scaling-enabled`) and omit absent optionals. `null` is only ever sent through
//!   [`Nullable::Null`] in the merge-patch body.
//! - Secrets (registry credentials, logging tokens, environment variable values) are redacted
//!   in `Debug` output.

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------------------------
// Helpers: secrets, tri-state patch values, lenient timestamps
// ---------------------------------------------------------------------------------------------

/// A secret string (password, token, key). Serializes as the plain string, prints as `***`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value. Only call this where the value is sent to the API.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// A merge-patch (RFC 7396) field value: leave unchanged, remove (JSON `null`), or set.
///
/// Use with `#[serde(default, skip_serializing_if = "Nullable::is_absent")]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Nullable<T> {
    /// The field is not sent: the server keeps its current value.
    #[default]
    Absent,
    /// The field is sent as `null`: the server removes or resets it.
    Null,
    /// The field is sent with this value.
    Value(T),
}

impl<T> Nullable<T> {
    /// True when the field is left out of the body.
    pub fn is_absent(&self) -> bool {
        matches!(self, Nullable::Absent)
    }

    /// The value, if one is set.
    pub fn as_value(&self) -> Option<&T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }
}

impl<T> From<Option<T>> for Nullable<T> {
    /// `None` means "remove" (`null`), `Some(v)` means "set".
    fn from(value: Option<T>) -> Self {
        match value {
            Some(v) => Nullable::Value(v),
            None => Nullable::Null,
        }
    }
}

impl<T: Serialize> Serialize for Nullable<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Nullable::Value(v) => v.serialize(serializer),
            Nullable::Absent | Nullable::Null => serializer.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.into())
    }
}

/// Decodes an RFC 3339 timestamp; anything unparsable (or `null`) becomes `None`.
fn lenient_timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let raw = Option::<serde_json::Value>::deserialize(d)?;
    Ok(raw
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.parse::<Timestamp>().ok()))
}

/// Decodes a value, falling back to its default when it is `null`.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Prints environment variables with their values redacted (they may hold tokens).
struct RedactedEnv<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedEnv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "***")))
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

/// Container group priority (`ContainerGroupPriority`). Written through `container.priority`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Highest price, least likely to be preempted.
    High,
    /// Medium priority.
    Medium,
    /// Low priority.
    Low,
    /// Cheapest; groups without a GPU always run at this priority.
    Batch,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

impl Priority {
    /// The wire name (`high`, `medium`, `low`, `batch`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
            Priority::Batch => "batch",
            Priority::Unknown => "unknown",
        }
    }
}

/// Container restart policy (`ContainerRestartPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Always restart.
    #[default]
    Always,
    /// Restart only on a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// Container group status (`ContainerGroupStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerGroupStatus {
    /// Preparing: pulling, compressing and storing the image.
    Pending,
    /// At least one instance is running.
    Running,
    /// Prepared but not running.
    Stopped,
    /// Finished successfully.
    Succeeded,
    /// Preparation failed (pull, registry auth, image too large…).
    Failed,
    /// Started, no instance running yet.
    Deploying,
    /// A value this client does not know (also used when the field is missing).
    #[default]
    #[serde(other)]
    Unknown,
}

/// Container group instance state (`ContainerGroupInstanceState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Looking for a node.
    Allocating,
    /// Pulling the image.
    Downloading,
    /// Creating the container.
    Creating,
    /// Running.
    Running,
    /// Stopping.
    Stopping,
    /// A value this client does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// Container Gateway load balancer (`ContainerGroupNetworkingLoadBalancer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    /// Round robin (server default).
    #[default]
    RoundRobin,
    /// Route to the instance with the fewest open connections.
    LeastNumberOfConnections,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// Container Gateway protocol (`ContainerNetworkingProtocol`); only `http` exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkingProtocol {
    /// HTTP (the gateway terminates HTTPS).
    #[default]
    Http,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// HTTP probe scheme (`ContainerProbeHttpScheme`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpScheme {
    /// Plain HTTP.
    #[default]
    Http,
    /// HTTPS.
    Https,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// GPU class type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuClassType {
    /// Community cloud GPUs.
    Community,
    /// Secure cloud GPUs.
    Secure,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// HTTP log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpLogFormat {
    /// One JSON document per request.
    #[default]
    Json,
    /// Newline-delimited JSON.
    JsonLines,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

/// HTTP log compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpLogCompression {
    /// No compression.
    #[default]
    None,
    /// Gzip.
    Gzip,
    /// A value this client does not know.
    #[serde(other)]
    Unknown,
}

// ---------------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------------

/// A health probe (startup, liveness or readiness). Set exactly one of `http`/`tcp`/`grpc`/`exec`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// HTTP GET probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// TCP connect probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    /// gRPC health probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcProbe>,
    /// Command probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
    /// Seconds before the first probe (0..1200).
    pub initial_delay_seconds: u32,
    /// Seconds between probes (1..120).
    pub period_seconds: u32,
    /// Probe timeout in seconds (1..60).
    pub timeout_seconds: u32,
    /// Consecutive successes to pass (1..10).
    pub success_threshold: u32,
    /// Consecutive failures to fail (1..20).
    pub failure_threshold: u32,
}

/// The header sent in place of an empty `headers` list on HTTP probes.
///
/// The spec marks `ContainerGroupProbeHttp.headers` as required with `minItems: 1`, so neither
/// omitting it nor sending `[]` is valid. A probe without headers is therefore sent with this
/// single, behaviour-neutral header (`Accept: */*`, what any HTTP client sends by default), and
/// on decode a list that holds exactly this header is read back as empty, so desired-vs-observed
/// comparisons do not see a difference.
pub const PLACEHOLDER_PROBE_HEADER: (&str, &str) = ("Accept", "*/*");

/// HTTP probe (`ContainerGroupProbeHttp`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpProbe {
    /// Path to GET (1..2048 characters).
    pub path: String,
    /// Container port.
    pub port: u16,
    /// `http` or `https`; `null` on read decodes as `http`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub scheme: HttpScheme,
    /// Extra request headers. Empty is sent as [`PLACEHOLDER_PROBE_HEADER`].
    #[serde(
        default,
        serialize_with = "serialize_probe_headers",
        deserialize_with = "deserialize_probe_headers"
    )]
    pub headers: Vec<HttpHeader>,
}

/// A `name: value` header pair.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpHeader {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

impl HttpHeader {
    /// Builds a header.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    fn is_placeholder(&self) -> bool {
        self.name == PLACEHOLDER_PROBE_HEADER.0 && self.value == PLACEHOLDER_PROBE_HEADER.1
    }
}

fn serialize_probe_headers<S: Serializer>(h: &[HttpHeader], s: S) -> Result<S::Ok, S::Error> {
    if h.is_empty() {
        [HttpHeader::new(
            PLACEHOLDER_PROBE_HEADER.0,
            PLACEHOLDER_PROBE_HEADER.1,
        )]
        .serialize(s)
    } else {
        h.serialize(s)
    }
}

fn deserialize_probe_headers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HttpHeader>, D::Error> {
    let headers = Option::<Vec<HttpHeader>>::deserialize(d)?.unwrap_or_default();
    if headers.len() == 1 && headers[0].is_placeholder() {
        Ok(Vec::new())
    } else {
        Ok(headers)
    }
}

/// TCP probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpProbe {
    /// Container port.
    pub port: u16,
}

/// gRPC health probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcProbe {
    /// Container port.
    pub port: u16,
    /// Service name passed to the gRPC health check (may be empty).
    #[serde(default)]
    pub service: String,
}

/// Command probe; exit code 0 is success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecProbe {
    /// Command and arguments (1..100 items).
    pub command: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Registry authentication and logging
// ---------------------------------------------------------------------------------------------

/// Credentials used to pull a private image (`ContainerRegistryAuthentication`). Exactly one kind.
/// SaladCloud never returns them on read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryAuthentication {
    /// Any registry with username and password.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// Docker Hub with a personal access token.
    DockerHub {
        /// User name.
        username: String,
        /// Personal access token.
        personal_access_token: Secret,
    },
    /// AWS Elastic Container Registry.
    AwsEcr {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: Secret,
    },
    /// Google Artifact Registry.
    GcpGar {
        /// Service account key (JSON).
        service_key: Secret,
    },
    /// Google Container Registry.
    GcpGcr {
        /// Service account key (JSON).
        service_key: Secret,
    },
}

/// Log forwarding (`ContainerLogging`); set exactly one provider.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerLogging {
    /// Axiom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub axiom: Option<AxiomLogging>,
    /// Datadog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datadog: Option<DatadogLogging>,
    /// Generic HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpLogging>,
    /// New Relic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_relic: Option<NewRelicLogging>,
    /// Splunk HEC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splunk: Option<SplunkLogging>,
    /// Raw TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpLogging>,
}

/// Axiom log forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AxiomLogging {
    /// Axiom host, e.g. `api.axiom.co`.
    pub host: String,
    /// API token.
    pub api_token: Secret,
    /// Dataset name.
    pub dataset: String,
}

/// Datadog log forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatadogLogging {
    /// Intake host.
    pub host: String,
    /// API key.
    pub api_key: Secret,
    /// Tags (always sent, possibly empty: the spec requires the field).
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<HttpHeader>,
}

/// HTTP log forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpLogging {
    /// Host name or IP.
    pub host: String,
    /// Port (1..65535).
    pub port: u16,
    /// Body format.
    pub format: HttpLogFormat,
    /// Body compression.
    pub compression: HttpLogCompression,
    /// Extra headers (always sent, possibly empty: the update schema requires the field).
    #[serde(default, deserialize_with = "null_as_default")]
    pub headers: Vec<HttpHeader>,
    /// URL path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Basic-auth user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Basic-auth password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

/// New Relic log forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRelicLogging {
    /// Ingestion host.
    pub host: String,
    /// Ingestion key.
    pub ingestion_key: Secret,
}

/// Splunk HEC log forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplunkLogging {
    /// HEC URL.
    pub host: String,
    /// HEC token.
    pub token: Secret,
}

/// TCP log forwarding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpLogging {
    /// Host name or IP.
    pub host: String,
    /// Port (1..65535).
    pub port: u16,
}

// ---------------------------------------------------------------------------------------------
// Job queues, jobs and scheduled scaling
// ---------------------------------------------------------------------------------------------

/// Job queue connection (`ContainerGroupQueueConnection`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConnection {
    /// Path the queue worker posts jobs to.
    pub path: String,
    /// Container port.
    pub port: u16,
    /// Queue name.
    pub queue_name: String,
}

/// Queue-length autoscaler (`ContainerGroupQueueAutoscaler`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueAutoscaler {
    /// Target queue length (1..100).
    pub desired_queue_length: u32,
    /// Minimum replicas (0..100).
    pub min_replicas: u32,
    /// Maximum replicas (1..500).
    pub max_replicas: u32,
    /// Scale-up rate limit (1..100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upscale_per_minute: Option<u32>,
    /// Scale-down rate limit (1..100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_downscale_per_minute: Option<u32>,
    /// Polling period in seconds (15..1800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling_period: Option<u32>,
}

/// A job queue (`Queue`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    /// Queue id (uuid).
    #[serde(default)]
    pub id: String,
    /// Name, unique in the project.
    pub name: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The container groups connected to the queue.
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_groups: Vec<ContainerGroup>,
    /// Jobs waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_queue_length: Option<u32>,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub create_time: Option<Timestamp>,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub update_time: Option<Timestamp>,
}

/// Body of a queue create (`QueuePrototype`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePrototype {
    /// Name (2-63 characters, `^[a-z][a-z0-9-]{0,61}[a-z0-9]$`).
    pub name: String,
    /// Display name (2-63 characters of `[ ,-.0-9A-Za-z]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description (at most 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// State of a queue job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QueueJobStatus {
    /// Waiting for a worker.
    #[default]
    Pending,
    /// A worker has it.
    Running,
    /// Answered.
    Succeeded,
    /// Cancelled.
    Cancelled,
    /// Failed (after SaladCloud's retries).
    Failed,
}

impl QueueJobStatus {
    /// Will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Cancelled | Self::Failed)
    }
}

/// One event in a job's life (`QueueJobEvent`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueJobEvent {
    /// `created`, `started`, `succeeded`, `cancelled` or `failed`.
    pub action: String,
    /// When.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub time: Option<Timestamp>,
}

/// A queue job (`QueueJob`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueJob {
    /// Job id (uuid).
    #[serde(default)]
    pub id: String,
    /// The JSON posted to the server.
    #[serde(default)]
    pub input: serde_json::Value,
    /// Up to 20 caller-defined properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The server's JSON answer, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// State.
    #[serde(default)]
    pub status: QueueJobStatus,
    /// Its events, oldest first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<QueueJobEvent>,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub create_time: Option<Timestamp>,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub update_time: Option<Timestamp>,
}

/// Body of a job create (`QueueJobPrototype`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueJobPrototype {
    /// The JSON the worker posts to the server.
    pub input: serde_json::Value,
    /// Up to 20 caller-defined properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// URL notified when the job ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

/// `QueueCollection`.
#[derive(Clone, Debug, Deserialize)]
pub struct QueueCollection {
    /// The queues.
    pub items: Vec<Queue>,
}

/// `QueueJobCollection`.
#[derive(Clone, Debug, Deserialize)]
pub struct QueueJobCollection {
    /// The jobs.
    pub items: Vec<QueueJob>,
}

/// A scheduled scaling action (`ContainerGroupScalingAction`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingAction {
    /// Five-field cron schedule.
    pub schedule: String,
    /// Replicas to scale to (0..500).
    pub replicas: u32,
}

// ---------------------------------------------------------------------------------------------
// Read model
// ---------------------------------------------------------------------------------------------

/// A container group as returned by GET/POST/PATCH (`ContainerGroup`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerGroup {
    /// Group id (uuid).
    #[serde(default)]
    pub id: String,
    /// Immutable name (never reusable, even after deletion).
    pub name: String,
    /// Display name (defaults to `name`).
    #[serde(default)]
    pub display_name: String,
    /// Organization.
    #[serde(default)]
    pub organization_name: String,
    /// Project.
    #[serde(default)]
    pub project_name: String,
    /// Container definition.
    pub container: Container,
    /// Start automatically once the image is prepared.
    #[serde(default)]
    pub autostart_policy: bool,
    /// Restart policy.
    #[serde(default, deserialize_with = "null_as_default")]
    pub restart_policy: RestartPolicy,
    /// Desired replicas.
    #[serde(default)]
    pub replicas: u32,
    /// Allowed countries (empty: any).
    #[serde(default, deserialize_with = "null_as_default")]
    pub country_codes: Vec<String>,
    /// Priority (top-level on read; written through `container.priority`).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// Container Gateway settings, if enabled.
    #[serde(default)]
    pub networking: Option<ContainerGroupNetworking>,
    /// Startup probe.
    #[serde(default)]
    pub startup_probe: Option<Probe>,
    /// Liveness probe.
    #[serde(default)]
    pub liveness_probe: Option<Probe>,
    /// Readiness probe.
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    /// Job queue connection.
    #[serde(default)]
    pub queue_connection: Option<QueueConnection>,
    /// Queue autoscaler.
    #[serde(default)]
    pub queue_autoscaler: Option<QueueAutoscaler>,
    /// Lifecycle state.
    #[serde(default)]
    pub current_state: ContainerGroupState,
    /// Configuration version; increases with each configuration change.
    #[serde(default)]
    pub version: u32,
    /// A configuration change is requested but not yet applied to all instances.
    #[serde(default)]
    pub pending_change: bool,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub create_time: Option<Timestamp>,
    /// Last update time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub update_time: Option<Timestamp>,
    /// Scheduled scaling actions.
    #[serde(
        rename = "scaling-actions",
        default,
        deserialize_with = "null_as_default"
    )]
    pub scaling_actions: Vec<ScalingAction>,
    /// Scheduled scaling enabled.
    #[serde(rename = "scheduled-scaling-enabled", default)]
    pub scheduled_scaling_enabled: bool,
}

/// The container of a group as read back (`Container`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// Image reference.
    pub image: String,
    /// Resources.
    #[serde(default)]
    pub resources: ContainerResources,
    /// Command override (ENTRYPOINT and CMD).
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Environment variables.
    #[serde(default, deserialize_with = "null_as_default")]
    pub environment_variables: BTreeMap<String, String>,
    /// Private image layer caching.
    #[serde(default)]
    pub image_caching: Option<bool>,
    /// Log forwarding.
    #[serde(default)]
    pub logging: Option<ContainerLogging>,
    /// Read-only: resolved image digest (`sha256:…`).
    #[serde(default)]
    pub hash: Option<String>,
    /// Read-only: image size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("image", &self.image)
            .field("resources", &self.resources)
            .field("command", &self.command)
            .field(
                "environment_variables",
                &RedactedEnv(&self.environment_variables),
            )
            .field("image_caching", &self.image_caching)
            .field("logging", &self.logging)
            .field("hash", &self.hash)
            .field("size", &self.size)
            .finish()
    }
}

/// Resources as read back (`ContainerResourceRequirements`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerResources {
    /// vCPUs.
    #[serde(default)]
    pub cpu: u32,
    /// Memory in MB.
    #[serde(default)]
    pub memory: u32,
    /// GPU class ids.
    #[serde(default, deserialize_with = "null_as_default")]
    pub gpu_classes: Vec<String>,
    /// Disk in bytes.
    #[serde(default)]
    pub storage_amount: Option<u64>,
    /// `/dev/shm` in MB.
    #[serde(default)]
    pub shm_size: Option<u32>,
}

/// Container group lifecycle state (`ContainerGroupState`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerGroupState {
    /// Status.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: ContainerGroupStatus,
    /// Free-text description of the state (e.g. why preparation failed).
    #[serde(default)]
    pub description: Option<String>,
    /// Start time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub start_time: Option<Timestamp>,
    /// Finish time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub finish_time: Option<Timestamp>,
    /// Instance counts by state.
    #[serde(default)]
    pub instance_status_counts: InstanceStatusCounts,
}

/// Instance counts (`ContainerGroupInstanceStatusCount`); there is no downloading count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceStatusCounts {
    /// Allocating.
    #[serde(default)]
    pub allocating_count: u32,
    /// Creating.
    #[serde(default)]
    pub creating_count: u32,
    /// Running.
    #[serde(default)]
    pub running_count: u32,
    /// Stopping.
    #[serde(default)]
    pub stopping_count: u32,
}

/// Container Gateway settings as read back (`ContainerGroupNetworking`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerGroupNetworking {
    /// Callers must send `Salad-Api-Key`.
    #[serde(default)]
    pub auth: bool,
    /// Access domain name (bare host name, HTTPS only).
    #[serde(default)]
    pub dns: String,
    /// Load balancer.
    #[serde(default, deserialize_with = "null_as_default")]
    pub load_balancer: LoadBalancer,
    /// Container port.
    #[serde(default)]
    pub port: u16,
    /// Protocol.
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocol: NetworkingProtocol,
    /// Client request timeout (ms).
    #[serde(default)]
    pub client_request_timeout: Option<u32>,
    /// Server response timeout (ms).
    #[serde(default)]
    pub server_response_timeout: Option<u32>,
    /// One request in flight per instance.
    #[serde(default)]
    pub single_connection_limit: Option<bool>,
}

/// `GET …/containers` body.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerGroupCollection {
    /// Groups (at most 100; no pagination).
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<ContainerGroup>,
}

/// One running (or starting) replica (`ContainerGroupInstance`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerGroupInstance {
    /// Instance id (uuid).
    pub id: String,
    /// Node id (uuid).
    #[serde(default)]
    pub machine_id: String,
    /// State.
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: InstanceState,
    /// Last state change.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub update_time: Option<Timestamp>,
    /// Container group version running on this instance.
    #[serde(default)]
    pub version: u32,
    /// Passing readiness.
    #[serde(default)]
    pub ready: Option<bool>,
    /// Passed the startup probe.
    #[serde(default)]
    pub started: Option<bool>,
    /// Image pull progress 0..100 (only while downloading).
    #[serde(default)]
    pub pulling_progress: Option<f64>,
    /// Deletion cost 0..100000 (lower is removed first on scale-down).
    #[serde(default)]
    pub deletion_cost: Option<u32>,
    /// CPU used, percent (updated every minute).
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Memory used, MB (updated every minute).
    #[serde(default)]
    pub memory_usage_mb: Option<f64>,
    /// Memory used, percent (updated every minute).
    #[serde(default)]
    pub memory_usage_percent: Option<f64>,
}

/// `GET …/instances` body.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerGroupInstanceCollection {
    /// Instances (at most 1000).
    #[serde(default, deserialize_with = "null_as_default")]
    pub instances: Vec<ContainerGroupInstance>,
}

/// A GPU class (`GpuClass`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuClass {
    /// Id (uuid) to put in `resources.gpu_classes`.
    pub id: String,
    /// Display name, e.g. `RTX 4090 (24 GB)`.
    pub name: String,
    /// Price per priority.
    #[serde(default, deserialize_with = "null_as_default")]
    pub prices: Vec<GpuClassPrice>,
    /// Community or secure.
    #[serde(default)]
    pub gpu_class_type: Option<GpuClassType>,
    /// GPUs per node.
    #[serde(default)]
    pub gpu_count: Option<u32>,
    /// In high demand.
    #[serde(default)]
    pub is_high_demand: Option<bool>,
    /// Minimum vCPUs.
    #[serde(default)]
    pub min_vcpu: Option<u32>,
    /// Maximum vCPUs.
    #[serde(default)]
    pub max_vcpu: Option<u32>,
    /// Minimum RAM (MB).
    #[serde(default)]
    pub min_ram: Option<u32>,
    /// Maximum RAM (MB).
    #[serde(default)]
    pub max_ram: Option<u32>,
    /// Minimum storage (bytes).
    #[serde(default)]
    pub min_storage: Option<u64>,
    /// Maximum storage (bytes).
    #[serde(default)]
    pub max_storage: Option<u64>,
}

/// Price of a GPU class at one priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuClassPrice {
    /// Priority.
    pub priority: Priority,
    /// Price as the API gives it (decimal string, USD per hour).
    pub price: String,
}

/// `GET /organizations/{org}/gpu-classes` body.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GpuClassesList {
    /// GPU classes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<GpuClass>,
}

/// Organization quotas (`Quotas`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Quotas {
    /// Container group quotas.
    #[serde(default)]
    pub container_groups_quotas: ContainerGroupsQuotas,
    /// Creation time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub create_time: Option<Timestamp>,
    /// Update time.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub update_time: Option<Timestamp>,
}

/// Container group quotas (`ContainerGroupsQuotas`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerGroupsQuotas {
    /// Maximum replicas across the organization.
    #[serde(default)]
    pub container_replicas_quota: u32,
    /// Replicas in use.
    #[serde(default)]
    pub container_replicas_used: u32,
    /// Instance reallocations per minute.
    #[serde(default)]
    pub max_container_group_reallocations_per_minute: Option<u32>,
    /// Instance recreates per minute.
    #[serde(default)]
    pub max_container_group_recreates_per_minute: Option<u32>,
    /// Instance restarts per minute.
    #[serde(default)]
    pub max_container_group_restarts_per_minute: Option<u32>,
}

/// RFC 7807-shaped error body (`ProblemDetails`). Every field is optional.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProblemDetails {
    /// Error type (URI or short code such as `name_conflict`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Short summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Occurrence URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Create body
// ---------------------------------------------------------------------------------------------

/// `POST …/containers` body (`ContainerGroupPrototype`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerGroupPrototype {
    /// Name (`^[a-z][a-z0-9-]{0,61}[a-z0-9]$`); cannot be reused after deletion.
    pub name: String,
    /// Display name (2..63 of space, `,`, `-`, `.`, digits, letters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Container.
    pub container: CreateContainer,
    /// Start automatically once the image is prepared.
    pub autostart_policy: bool,
    /// Restart policy.
    pub restart_policy: RestartPolicy,
    /// Replicas (0..500).
    pub replicas: u32,
    /// Allowed countries; omitted when empty (any country).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub country_codes: Vec<String>,
    /// Container Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<CreateNetworking>,
    /// Startup probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Readiness probe (needs the gateway or a queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Job queue connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_connection: Option<QueueConnection>,
    /// Queue autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_autoscaler: Option<QueueAutoscaler>,
    /// Scheduled scaling actions; omitted when empty.
    #[serde(
        rename = "scaling-actions",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub scaling_actions: Vec<ScalingAction>,
    /// Scheduled scaling enabled.
    #[serde(
        rename = "scheduled-scaling-enabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_scaling_enabled: Option<bool>,
}

impl ContainerGroupPrototype {
    /// A minimal prototype: `restart_policy: always`, no networking, no probes.
    pub fn new(name: impl Into<String>, container: CreateContainer, replicas: u32) -> Self {
        Self {
            name: name.into(),
            display_name: None,
            container,
            autostart_policy: true,
            restart_policy: RestartPolicy::Always,
            replicas,
            country_codes: Vec::new(),
            networking: None,
            startup_probe: None,
            liveness_probe: None,
            readiness_probe: None,
            queue_connection: None,
            queue_autoscaler: None,
            scaling_actions: Vec::new(),
            scheduled_scaling_enabled: None,
        }
    }
}

/// Container of a create body (`CreateContainer`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateContainer {
    /// Image reference (1..2048 characters).
    pub image: String,
    /// Resources.
    pub resources: CreateResources,
    /// Command override (ENTRYPOINT and CMD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment variables (values 1..1000 characters); omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, String>,
    /// Priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Cache private image layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_caching: Option<bool>,
    /// Pull credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_authentication: Option<RegistryAuthentication>,
    /// Log forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<ContainerLogging>,
}

impl CreateContainer {
    /// A container with only image and resources set.
    pub fn new(image: impl Into<String>, resources: CreateResources) -> Self {
        Self {
            image: image.into(),
            resources,
            command: None,
            environment_variables: BTreeMap::new(),
            priority: None,
            image_caching: None,
            registry_authentication: None,
            logging: None,
        }
    }
}

impl fmt::Debug for CreateContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateContainer")
            .field("image", &self.image)
            .field("resources", &self.resources)
            .field("command", &self.command)
            .field(
                "environment_variables",
                &RedactedEnv(&self.environment_variables),
            )
            .field("priority", &self.priority)
            .field("image_caching", &self.image_caching)
            .field("registry_authentication", &self.registry_authentication)
            .field("logging", &self.logging)
            .finish()
    }
}

/// Resources of a create body (`CreateContainerResourceRequirements`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CreateResources {
    /// vCPUs (1..1024; real limit likely 16).
    pub cpu: u32,
    /// Memory in MB (≥ 1024).
    pub memory: u32,
    /// GPU class ids (not names); always sent, possibly empty.
    #[serde(default)]
    pub gpu_classes: Vec<String>,
    /// Disk in bytes (≥ 1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_amount: Option<u64>,
    /// `/dev/shm` in MB (≥ 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u32>,
}

/// Container Gateway of a create body (`CreateContainerGroupNetworking`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateNetworking {
    /// Protocol (only `http`).
    pub protocol: NetworkingProtocol,
    /// Container port.
    pub port: u16,
    /// Require `Salad-Api-Key` from callers.
    pub auth: bool,
    /// Load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// One request in flight per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_connection_limit: Option<bool>,
    /// Client request timeout in ms (1..100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_timeout: Option<u32>,
    /// Server response timeout in ms (1..100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_response_timeout: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Patch body
// ---------------------------------------------------------------------------------------------

/// `PATCH …/containers/{name}` merge-patch body (`ContainerGroupPatch`). Only updatable fields
/// exist here; everything else needs a new group.
///
/// Merge-patch merges objects recursively: a probe sent here is merged into the current probe,
/// so switching a probe's kind (say `exec` to `tcp`) would leave both set. The schema does not
/// allow `"exec": null` inside a probe, so change a probe's kind in two patches: first
/// [`Nullable::Null`] to remove it, then the new probe. Same-kind changes need one patch.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerGroupPatch {
    /// Display name; `Null` resets it to the group name.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub display_name: Nullable<String>,
    /// Replicas (0..500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Allowed countries; `Null` allows any country (never send an empty list).
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub country_codes: Nullable<Vec<String>>,
    /// Container changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<UpdateContainer>,
    /// Gateway changes (port only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<UpdateNetworking>,
    /// Startup probe; `Null` removes it.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub startup_probe: Nullable<Probe>,
    /// Liveness probe; `Null` removes it.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub liveness_probe: Nullable<Probe>,
    /// Readiness probe; `Null` removes it.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub readiness_probe: Nullable<Probe>,
    /// Queue autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_autoscaler: Option<QueueAutoscaler>,
    /// Scheduled scaling actions (replaces the list).
    #[serde(
        rename = "scaling-actions",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scaling_actions: Option<Vec<ScalingAction>>,
    /// Scheduled scaling enabled.
    #[serde(
        rename = "scheduled-scaling-enabled",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_scaling_enabled: Option<bool>,
}

impl ContainerGroupPatch {
    /// True when the patch would change nothing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Container changes (`UpdateContainer`).
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateContainer {
    /// New image (1..1024 characters, shorter than on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Command; `Null` removes the override.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub command: Nullable<Vec<String>>,
    /// Environment variables. Merge-patch merges maps, so send the full desired map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// Priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Cache private image layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_caching: Option<bool>,
    /// Pull credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_authentication: Option<RegistryAuthentication>,
    /// Log forwarding; `Null` removes it.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub logging: Nullable<ContainerLogging>,
    /// Resource changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<UpdateResources>,
}

impl fmt::Debug for UpdateContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateContainer")
            .field("image", &self.image)
            .field("command", &self.command)
            .field(
                "environment_variables",
                &self.environment_variables.as_ref().map(RedactedEnv),
            )
            .field("priority", &self.priority)
            .field("image_caching", &self.image_caching)
            .field("registry_authentication", &self.registry_authentication)
            .field("logging", &self.logging)
            .field("resources", &self.resources)
            .finish()
    }
}

/// Resource changes (`UpdateContainerResources`).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateResources {
    /// vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Memory in MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// GPU class ids (replaces the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_classes: Option<Vec<String>>,
    /// Disk in bytes; `Null` resets it.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub storage_amount: Nullable<u64>,
    /// `/dev/shm` in MB; `Null` resets it.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub shm_size: Nullable<u32>,
}

/// Gateway changes (`UpdateContainerGroupNetworking`): only the port can change.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UpdateNetworking {
    /// New container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

// ---------------------------------------------------------------------------------------------
// Fleet: system logs, log entries
// ---------------------------------------------------------------------------------------------

/// The event names of `GET …/system-logs` (`SystemLog.event_name`), as SaladCloud documents them
/// in `SaladTechnologies/salad-cloud-docs`, `container-engine/explanation/container-groups/system-events.mdx`
/// (last updated January 17, 2025). The OpenAPI spec types the field as a free string, so a name
/// not listed here can still arrive and must be handled.
pub mod system_events {
    /// Container group events (the operator's own actions, mostly).
    pub const GROUP_PREFIX: &str = "Container Group ";
    /// A node was found for the instance.
    pub const ALLOCATED: &str = "Instance Allocated";
    /// The container is being created (after the download).
    pub const CREATING: &str = "Instance Creating";
    /// The image is downloading.
    pub const DOWNLOADING: &str = "Instance Downloading";
    /// The container is starting.
    pub const STARTING: &str = "Instance Starting";
    /// The container runs.
    pub const RUNNING: &str = "Instance Running";
    /// The container was restarted on the same node.
    pub const RESTARTED: &str = "Instance Restarted";
    /// The container was recreated on the same node.
    pub const RECREATED: &str = "Instance Recreated";
    /// Reallocated through the API or the portal (the operator's slow-node reallocations too).
    pub const REALLOCATED_BY_USER: &str = "Instance Reallocated by User";
    /// SaladCloud moved an instance that failed its internal time-to-start or networking checks.
    pub const REALLOCATED_BY_PLATFORM: &str = "Instance Reallocated by Platform";
    /// Every reallocation starts so (a reallocation asked through IMDS may carry another
    /// suffix than the two documented).
    pub const REALLOCATED_PREFIX: &str = "Instance Reallocated";
    /// A higher-priority workload took the node.
    pub const INTERRUPTED_PRIORITY: &str = "Instance Interrupted (Priority)";
    /// The node went offline.
    pub const INTERRUPTED_NODE_OFFLINE: &str = "Instance Interrupted (Node Offline)";
    /// The liveness probe failed (the container is restarted).
    pub const LIVENESS_PROBE_FAILED: &str = "Instance Interrupted (Liveness Probe Failure)";
    /// The startup probe failed (the container is restarted).
    pub const STARTUP_PROBE_FAILED: &str = "Instance Interrupted (Startup Probe Failure)";
    /// Every interruption starts so.
    pub const INTERRUPTED_PREFIX: &str = "Instance Interrupted";
    /// The startup probe passed.
    pub const STARTUP_PROBE_PASSED: &str = "Instance Startup Probe Passed";
    /// The readiness probe failed: out of the gateway's rotation.
    pub const NOT_READY: &str = "Instance Not Ready (Readiness Probe Failure)";
    /// The readiness probe passes.
    pub const READY: &str = "Instance Ready (Readiness Probe Passed)";
    /// `Instance Exited:<code> (…)`: `0 (Exited Successfully)`, `137 (Likely Out of System
    /// Memory)`, otherwise `(Error)`.
    pub const EXITED_PREFIX: &str = "Instance Exited:";
    /// The exit that is not an error.
    pub const EXITED_SUCCESSFULLY: &str = "Instance Exited:0 (Exited Successfully)";
}

/// The `resource.labels` of a log entry (and of the log query), as SaladCloud documents them in
/// `SaladTechnologies/salad-cloud-docs`, `container-engine/reference/log-queries.mdx` ("Resource
/// Types And Labels", last updated January 6, 2026): every resource type has `project_name` and
/// `container_group_name`; `container` and `instance_controller` also have
/// `container_group_version`, `instance_id` and `machine_id`.
pub mod log_labels {
    /// `resource.type` of a container's stdout/stderr.
    pub const TYPE_CONTAINER: &str = "container";
    /// The project.
    pub const PROJECT_NAME: &str = "project_name";
    /// The container group.
    pub const CONTAINER_GROUP_NAME: &str = "container_group_name";
    /// The group's version when the line was logged.
    pub const CONTAINER_GROUP_VERSION: &str = "container_group_version";
    /// One run of the container (a restart on the same node is a new id).
    pub const INSTANCE_ID: &str = "instance_id";
    /// The node.
    pub const MACHINE_ID: &str = "machine_id";
}

/// One instance event of a container group (`SystemLog`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemLog {
    /// What happened (`Instance Reallocated by User`, `Instance Not Ready (Readiness Probe
    /// Failure)`, …: the names SaladCloud documents are in [`system_events`]).
    #[serde(default)]
    pub event_name: String,
    /// When (UTC).
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub event_time: Option<Timestamp>,
    /// The instance (uuid).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The node (uuid).
    #[serde(default)]
    pub machine_id: Option<String>,
    /// The instance's container group version.
    #[serde(default)]
    pub version: Option<String>,
    /// The GPU class name.
    #[serde(default)]
    pub resource_gpu_class: Option<String>,
}

/// `GET …/system-logs` body (`SystemLogList`, at most 50 items).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemLogList {
    /// The events.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<SystemLog>,
}

/// Sort order of a log query (`LogEntryQuerySortOrder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Oldest first.
    Asc,
    /// Newest first (the API's default).
    #[default]
    Desc,
}

/// The largest `page_size` the spec's `PageSize` allows on a log query.
pub const LOG_QUERY_MAX_PAGE_SIZE: u32 = 100;

/// `POST /organizations/{org}/log-entries` body (`LogEntryQuery`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntryQuery {
    /// Start of the time range.
    #[serde(with = "rfc3339")]
    pub start_time: Timestamp,
    /// End of the time range.
    #[serde(with = "rfc3339")]
    pub end_time: Timestamp,
    /// The log query (e.g. `resource.labels.container_group_name = "x"`).
    pub query: String,
    /// Entries per page, 1..=[`LOG_QUERY_MAX_PAGE_SIZE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    /// Sort order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<SortOrder>,
}

mod rfc3339 {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The resource a log entry came from (`LogEntryResource`).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct LogEntryResource {
    /// Resource type (`container`).
    #[serde(rename = "type", default)]
    pub type_: String,
    /// Labels (`project_name`, `container_group_name`, `instance_id`, `machine_id`, …: see
    /// [`log_labels`]).
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// One log entry (`LogEntry`).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct LogEntry {
    /// When it was logged.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub time: Option<Timestamp>,
    /// When SaladCloud received it.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub receive_time: Option<Timestamp>,
    /// Severity (`info`, `warning`, `error`, …).
    #[serde(default)]
    pub severity: Option<String>,
    /// The text of the line, for text logs.
    #[serde(default)]
    pub text_log: Option<String>,
    /// The line, for JSON logs.
    #[serde(default)]
    pub json_log: Option<serde_json::Value>,
    /// Where it came from.
    #[serde(default)]
    pub resource: LogEntryResource,
}

/// `POST /organizations/{org}/log-entries` answer (`LogEntryCollection`).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct LogEntryCollection {
    /// The entries.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<LogEntry>,
    /// Oldest time on this page.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub page_min_time: Option<Timestamp>,
    /// Newest time on this page.
    #[serde(default, deserialize_with = "lenient_timestamp")]
    pub page_max_time: Option<Timestamp>,
}
