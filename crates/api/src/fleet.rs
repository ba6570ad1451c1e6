//! The fleet after Ready: what the instances are doing (status), and how the operator steers
//! them (spec: slow-node reallocation).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the operator steers the instances of the container group.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FleetSpec {
    /// Move instances whose image download runs slower than a threshold to another node
    /// (SaladCloud's reallocate). On by default.
    #[serde(default)]
    pub slow_node_reallocation: SlowNodeReallocation,
}

/// Slow-node reallocation. SaladCloud's troubleshooting guide calls a node that needs more than
/// about 2 minutes per GB in Downloading slow; such a node is worth trading for another, unless
/// what is left of its download is shorter than a fresh node at half the threshold would need.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SlowNodeReallocation {
    /// Reallocate slow nodes (default true). False only reports them.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The slowest acceptable download, in seconds per GB of compressed image (default 240,
    /// twice the average node's 2 minutes per GB, so only the slow tail moves).
    #[serde(default = "default_seconds_per_gb")]
    #[schemars(range(min = 1, max = 3600))]
    pub seconds_per_gb: i32,
    /// How long an instance downloads before its speed is judged, in seconds (default 120).
    #[serde(default = "default_grace")]
    #[schemars(range(min = 1, max = 3600))]
    pub grace_period_seconds: i32,
    /// At most this share of the group's replicas (percent, at least one instance) is being
    /// reallocated at once (default 25).
    #[serde(default = "default_max_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub max_percent_at_once: i32,
}

fn default_true() -> bool {
    true
}
fn default_seconds_per_gb() -> i32 {
    240
}
fn default_grace() -> i32 {
    120
}
fn default_max_percent() -> i32 {
    25
}

impl Default for SlowNodeReallocation {
    fn default() -> Self {
        Self {
            enabled: true,
            seconds_per_gb: default_seconds_per_gb(),
            grace_period_seconds: default_grace(),
            max_percent_at_once: default_max_percent(),
        }
    }
}

/// The instances, as last listed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// One line for the printer column, e.g. `2/3 ready, 1 downloading 40%`.
    #[serde(default)]
    pub summary: String,
    /// Compressed size of the image the instances download, in bytes (SaladCloud's
    /// container.size, else the sum of the built layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_bytes: Option<i64>,
    /// Estimated minutes until the rolling-out group has its ready instances: from SaladCloud's
    /// documented 2 minutes per GB before downloads start, from the observed progress after.
    /// Rounded up to whole minutes (5-minute steps above 10) so status is not rewritten each poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_minutes_to_ready: Option<i32>,
    /// The serving group and the rolling-out one (when a BlueGreen rollout is in progress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupFleetStatus>,
    /// Slow-node reallocation: what was done or why it waits (a quota, the share limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reallocation: Option<String>,
    /// The newest SaladCloud system event already published as a Kubernetes Event (RFC 3339):
    /// events up to here are not published again, across polls and operator restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_seen_until: Option<String>,
}

/// One container group's instances.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GroupFleetStatus {
    /// Container group name.
    pub name: String,
    /// `serving` or `rollingOut`.
    pub role: String,
    /// Instance counts by state.
    #[serde(default)]
    pub counts: FleetCounts,
    /// The first instances (at most 10, by id), each with its state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceStatus>,
    /// Instances left out of the list.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Instance counts by SaladCloud state.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FleetCounts {
    /// Waiting for a node.
    #[serde(default)]
    pub allocating: i32,
    /// Downloading the image.
    #[serde(default)]
    pub downloading: i32,
    /// Creating the container.
    #[serde(default)]
    pub creating: i32,
    /// Running.
    #[serde(default)]
    pub running: i32,
    /// Stopping.
    #[serde(default)]
    pub stopping: i32,
    /// Passing readiness.
    #[serde(default)]
    pub ready: i32,
}

/// One instance.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// Instance id (uuid).
    pub id: String,
    /// Node id (uuid).
    #[serde(default)]
    pub machine_id: String,
    /// allocating, downloading, creating, running or stopping.
    pub state: String,
    /// Passing readiness.
    #[serde(default)]
    pub ready: bool,
    /// Container group version it runs.
    #[serde(default)]
    pub version: i32,
    /// Image download progress, percent, in steps of 10 (while downloading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_percent: Option<i32>,
    /// When it entered its current state (RFC 3339), as SaladCloud reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}
