//! What the operator observed: `StableDiffusionDeployment.status`.
//!
//! Everything here is derived from observation (the registry, SaladCloud, the build queue);
//! nothing non-deterministic except a condition's `lastTransitionTime`, so an unchanged world
//! produces a byte-identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The schema default `observedGeneration: -1` (as Flux's own CRDs do) makes a resource the
// operator has not seen yet read as "in progress" to kstatus and Flux `wait: true`, not "current".
/// Observed state of a StableDiffusionDeployment, written by the operator. observedGeneration is
/// -1 until the operator has seen the resource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(extend("default" = {"observedGeneration": -1}))]
#[serde(rename_all = "camelCase")]
pub struct StableDiffusionDeploymentStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Coarse state: Pending, Building, Deploying, Running, Updating, Stopped, Failed or Deleting.
    #[serde(default)]
    pub phase: Phase,

    /// Human-readable summary of the current state and, when something is wrong, what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// Ready, Reconciling, Stalled (kstatus), ImageReady and Synced, each with
    /// observedGeneration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::status::conditions_schema")]
    pub conditions: Vec<Condition>,

    /// The server image built for the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageStatus>,

    /// The SaladCloud container group serving the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_group: Option<ContainerGroupStatus>,

    /// During a BlueGreen rollout: the group still serving until the new one is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_container_group: Option<ContainerGroupStatus>,

    /// Instances of the current group (the scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,

    /// Instances running the current version and passing readiness.
    #[serde(default)]
    pub ready_replicas: i32,

    /// `ready/desired`, for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_summary: Option<String>,

    /// Estimated cost in USD per hour: GPU class price at the chosen priority times replicas
    /// (the most expensive allowed class when several are listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_hourly_cost_usd: Option<String>,

    /// Result of the last smoke test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_test: Option<SmokeTestStatus>,

    /// ConfigMap (owned by this resource) whose `url` key holds the current access URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_config_map: Option<String>,

    /// What starting one new instance of this spec costs: bytes downloaded with the image
    /// (not billed) and bytes the container fetches at start (billed), with estimates at about
    /// 2 minutes per GB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<ColdStartStatus>,
    /// The instances: counts, a short list, download estimate, slow-node reallocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::FleetStatus>,
    /// Who sets the replica count and what SaladCloud holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<crate::scaling::ScalingStatus>,
    /// The job queue, in queue mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<crate::scaling::QueueStatus>,
}

/// The cold start of one new instance, by part. Estimates use SaladCloud's "about 2 minutes
/// per GB" for an average node (slow nodes take longer) and the GPU class price at the spec's
/// priority; the base image's own layers are not counted (SaladCloud caches public layers).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ColdStartStatus {
    /// Bytes of the model layers every new node downloads with the image (baked models and
    /// extensions). Absent while unknown: before the first build, for baked models without
    /// source.sizeBytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_bytes: Option<i64>,
    /// Of imageBytes, the bytes in layers the serving image does not have (what a rollout of
    /// this image adds to every node's download).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_bytes_new: Option<i64>,
    /// Estimated seconds a node spends downloading imageBytes; SaladCloud does not bill it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_seconds: Option<i64>,
    /// Bytes the container fetches before the server starts (models with delivery
    /// FetchedAtStart), at every start of every instance.
    pub fetched_bytes: i64,
    /// Estimated seconds the fetch takes; billed, as the instance is running.
    pub fetch_seconds: i64,
    /// Estimated USD billed for the fetch per instance start (fetchSeconds at the hourly price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_cost_usd_per_start: Option<String>,
    /// The same for every replica of a rollout (each new instance fetches once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_cost_usd_per_rollout: Option<String>,
    /// The above in a sentence.
    pub summary: String,
}

impl StableDiffusionDeploymentStatus {
    /// The condition of this type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Is the condition of this type present with status True?
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }

    /// `Ready=True` for `generation`: the spec of that generation is served.
    pub fn is_ready_at(&self, generation: Option<i64>) -> bool {
        self.condition(condition::READY)
            .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
    }
}

/// The condition types the operator writes.
pub mod condition {
    /// kstatus: the spec is served (or stopped, as asked).
    pub const READY: &str = "Ready";
    /// kstatus: work in progress.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: stuck until something changes.
    pub const STALLED: &str = "Stalled";
    /// The image for the current recipe exists.
    pub const IMAGE_READY: &str = "ImageReady";
    /// A container group exists and matches the spec.
    pub const SYNCED: &str = "Synced";
}

/// Coarse lifecycle phase.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Phase {
    // Nothing done yet.
    #[default]
    Pending,
    // The image is being built.
    Building,
    // The container group is being created or is starting.
    Deploying,
    // Serving at the desired state.
    Running,
    // Serving through the job queue with no instance running: the queue autoscaler is at 0
    // (no GPU billing); a job starts instances, with a cold start.
    Idle,
    // A new version is rolling out.
    Updating,
    // Stopped on request.
    Stopped,
    // Needs a spec change or outside help (see message and the Stalled condition).
    Failed,
    // The newest spec failed (see message) while an earlier container group keeps serving.
    Degraded,
    // Being deleted.
    Deleting,
}

/// The built image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageStatus {
    /// Image reference by digest, as given to SaladCloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// First 12 hex characters of the manifest digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_digest: Option<String>,
    /// Hash of the build recipe (base image digest, models, command); also the image tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_hash: Option<String>,
    /// One entry per model or extension layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerStatus>,
    /// A build in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildStatus>,
}

/// A model layer of the image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LayerStatus {
    /// Model or extension name.
    pub name: String,
    /// Layer blob digest.
    pub digest: String,
    /// Layer size in bytes.
    pub size: i64,
    /// SHA-256 of the model file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Progress of a running build.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BuildStatus {
    /// Per-layer progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerProgress>,
}

/// Bytes moved for one layer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LayerProgress {
    /// Model or extension name.
    pub name: String,
    /// Bytes processed so far.
    pub bytes_done: i64,
    /// Total bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<i64>,
}

/// A SaladCloud container group as last observed.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerGroupStatus {
    /// Container group name (unique forever in the project).
    pub name: String,
    /// Container group id (uuid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// SaladCloud's configuration version; increases with every container change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    /// SaladCloud state: pending, deploying, running, stopped, failed or succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// A configuration change is not yet applied to every instance.
    #[serde(default)]
    pub pending_change: bool,
    /// Instance counts by state.
    #[serde(default)]
    pub instances: InstanceCounts,
    /// Access URL of the Container Gateway (https://…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_url: Option<String>,
}

/// Instance counts.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InstanceCounts {
    /// Waiting for a node.
    #[serde(default)]
    pub allocating: i32,
    /// Downloading the image or creating the container.
    #[serde(default)]
    pub creating: i32,
    /// Running.
    #[serde(default)]
    pub running: i32,
    /// Running the current version and passing readiness.
    #[serde(default)]
    pub ready: i32,
    /// Stopping.
    #[serde(default)]
    pub stopping: i32,
}

/// Last smoke test.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SmokeTestStatus {
    /// Passed, Failed, or Pending (in queue mode, while its job waits or runs).
    pub result: String,
    /// Container group version the test ran against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_version: Option<i32>,
    /// Request latency in milliseconds (through the queue: from enqueueing the job to its
    /// answer, a cold start included when the group was at 0 instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// In queue mode, the SaladCloud job of the test while it is Pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// What happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Conditions as a list-map keyed by `type`, so server-side apply merges them per type.
pub fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    let object = schema.ensure_object();
    object.insert("x-kubernetes-list-type".into(), "map".into());
    object.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    object.insert(
        "description".into(),
        "Ready, Reconciling, Stalled (kstatus), ImageReady and Synced, each with observedGeneration."
            .into(),
    );
    schema
}
