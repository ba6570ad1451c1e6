//! The desired state a user writes: `StableDiffusionDeployment.spec`.
//!
//! Doc comments on fields are what `kubectl explain` shows, so they are written for users.
//! Enum variants carry plain `//` comments on purpose: schemars turns variant doc comments into
//! `oneOf` branches, which a structural schema does not allow.

// kube's `printcolumn(type_ = ..)` repeats per column, which this lint mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::StableDiffusionDeploymentStatus;

/// Desired state: the server, its models, where the image goes, and how the SaladCloud container
/// group runs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "salad-sd.dev",
    version = "v1alpha1",
    kind = "StableDiffusionDeployment",
    plural = "stablediffusiondeployments",
    shortname = "sdd",
    category = "salad-sd",
    doc = "A Stable Diffusion inference server on SaladCloud GPUs: the server image with its models baked in, pushed to your registry, and run as a SaladCloud container group.",
    namespaced,
    status = "StableDiffusionDeploymentStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Replicas",
        type_ = "string",
        description = "Ready replicas / desired replicas",
        json_path = ".status.replicaSummary"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.containerGroup.accessUrl"
    ),
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".status.image.shortDigest"
    ),
    printcolumn(
        name = "Fleet",
        type_ = "string",
        description = "Instances: ready, downloading (progress), allocating",
        json_path = ".status.fleet.summary"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("!has(self.saladcloud.containerGroupName) || self.rollout.strategy != 'BlueGreen'")
        .message("rollout.strategy BlueGreen needs a new container group name for every rollout: remove saladcloud.containerGroupName or use strategy Recreate"),
    validation = Rule::new("size(self.models.filter(m, m.kind == 'Checkpoint' && has(m.default) && m.default)) <= 1")
        .message("at most one model may set default: true; it becomes the --ckpt the server loads at start"),
    validation = Rule::new("self.models.all(m, !(has(m.default) && m.default) || m.kind == 'Checkpoint')")
        .message("default: true is only allowed on models of kind Checkpoint"),
    validation = Rule::new("self.server.kind != 'Custom' || has(self.server.baseImage)")
        .message("server.kind Custom needs server.baseImage (there is no default image for a custom server)"),
    validation = Rule::new("!self.gateway.enabled || !has(self.gateway.port) || self.gateway.port == self.server.port")
        .message("gateway.port must equal server.port (the gateway forwards to the port the server listens on); leave gateway.port unset to follow server.port"),
    validation = Rule::new("!(self.server.kind in ['SDNext', 'Automatic1111']) || self.models.exists(m, m.kind == 'Checkpoint')")
        .message("SDNext and Automatic1111 need a model of kind Checkpoint: without one SD.Next has nothing to load and Automatic1111 would download SD 1.5 at every start"),
    validation = Rule::new("!has(self.queue) || !has(self.queue.autoscaler) || (has(self.queue.enabled) && self.queue.enabled)")
        .message("queue.autoscaler scales by queue length: set queue.enabled: true, or remove queue.autoscaler"),
    validation = Rule::new("!has(self.queue) || !has(self.queue.autoscaler) || !has(self.scaling) || !has(self.scaling.schedule) || size(self.scaling.schedule) == 0")
        .message("scaling.schedule and queue.autoscaler would both set the replica count; keep one"),
    validation = Rule::new("!has(self.queue) || !has(self.queue.enabled) || !self.queue.enabled || has(self.queue.path) || self.server.kind != 'Custom'")
        .message("server.kind Custom has no default job endpoint: set queue.path"),
)]
#[serde(rename_all = "camelCase")]
pub struct StableDiffusionDeploymentSpec {
    /// Where the container group runs on SaladCloud and how the operator authenticates.
    pub saladcloud: SaladCloudTarget,

    /// The inference server: which UI/API (SD.Next by default), its base image, port, arguments
    /// and environment.
    #[serde(default)]
    pub server: ServerSpec,

    /// Model files baked into the image, one image layer each. Names must be unique.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(m, self.exists_one(n, n.name == m.name))").message("model names must be unique"))]
    #[schemars(length(max = 32))]
    pub models: Vec<ModelSpec>,

    /// Server extensions (archives) unpacked into the server's extensions directory.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(n, n.name == e.name))").message("extension names must be unique"))]
    #[schemars(length(max = 32))]
    pub extensions: Vec<ExtensionSpec>,

    /// Where the built image is pushed, and how SaladCloud pulls it.
    pub image: ImageSpec,

    /// Number of container instances (GPUs). SaladCloud nodes are interruptible; 3 or more is
    /// recommended for a service. 0 keeps the group but runs nothing.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 500))]
    pub replicas: i32,

    /// CPU, memory, GPU classes and disk of each instance.
    pub resources: ResourcesSpec,

    /// SaladCloud priority tier: high, medium, low or batch. Lower tiers cost less and are
    /// preempted more often.
    #[serde(default)]
    pub priority: Priority,

    /// Lowercase ISO 3166-1 alpha-2 country codes the instances may run in (for example `us`,
    /// `ca`), one of the codes SaladCloud accepts. Empty means any country.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::country::country_codes_schema")]
    pub country_codes: Vec<CountryCode>,

    /// What SaladCloud does when the server process exits: Always, OnFailure or Never.
    /// SaladCloud cannot change this after creation: changing it replaces the container group.
    #[serde(default)]
    pub restart_policy: RestartPolicy,

    /// The SaladCloud Container Gateway (a public HTTPS endpoint load-balancing across
    /// instances).
    #[serde(default)]
    pub gateway: GatewaySpec,

    /// Startup, liveness and readiness probes. Each field overrides the server kind's defaults,
    /// which are chosen so that "started" means "the checkpoint is loaded".
    #[serde(default)]
    pub probes: ProbesSpec,

    /// How a change that needs new containers (new image, command, environment, probes) is
    /// rolled out.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// Stop the container group (no instances, no GPU billing) while keeping its configuration.
    /// Set back to false to start it again.
    #[serde(default)]
    pub stopped: bool,

    /// What happens to the SaladCloud container group when this resource is deleted: Delete
    /// (default) removes it, Orphan leaves it running and unmanaged.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Optional txt2img request sent through the gateway after each rollout; its latency and
    /// result are recorded in status.smokeTest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_test: Option<SmokeTestSpec>,

    /// How the operator steers the group's instances after they are created (slow-node
    /// reallocation).
    #[serde(default)]
    pub fleet: crate::fleet::FleetSpec,

    /// Scheduled scaling: replica counts SaladCloud sets on a cron schedule (UTC).
    #[serde(default)]
    pub scaling: crate::scaling::ScalingSpec,

    /// Queue mode: jobs through a SaladCloud job queue, optionally scaled by queue length down
    /// to 0 instances.
    #[serde(default)]
    pub queue: crate::scaling::QueueSpec,
}

fn default_replicas() -> i32 {
    3
}

/// A lowercase ISO 3166-1 alpha-2 country code.
pub type CountryCode = String;

/// SaladCloud organization, project and credentials.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.containerGroupName) == has(oldSelf.containerGroupName) && (!has(self.containerGroupName) || self.containerGroupName == oldSelf.containerGroupName)")
        .message("saladcloud.containerGroupName is immutable (SaladCloud names can never be reused): create a new resource instead"),
    validation = Rule::new("!(has(self.adopt) && self.adopt) || has(self.containerGroupName)")
        .message("saladcloud.adopt needs saladcloud.containerGroupName: name the existing container group to adopt"),
)]
#[serde(rename_all = "camelCase")]
pub struct SaladCloudTarget {
    /// SaladCloud organization name (lowercase letters, digits and dashes, 2-63 characters).
    #[schemars(
        regex(pattern = r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$"),
        length(min = 2, max = 63)
    )]
    pub organization: String,

    /// SaladCloud project name inside the organization (same rules as the organization).
    #[schemars(
        regex(pattern = r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$"),
        length(min = 2, max = 63)
    )]
    pub project: String,

    /// Secret in this namespace holding the SaladCloud API key.
    pub api_key_secret_ref: SecretKeyRef,

    /// Name of the SaladCloud container group. Immutable. When unset, the operator derives a
    /// unique name from this resource's name and uid, and records it in status.containerGroup.name
    /// (SaladCloud names can never be reused, even after deletion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$"),
        length(min = 2, max = 63)
    )]
    pub container_group_name: Option<String>,

    /// Take over an existing container group named by containerGroupName that this resource did
    /// not create. Without it, finding such a group stalls the resource and the group is left
    /// untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,

    /// Display name shown in the SaladCloud portal (letters, digits, spaces and , - .). Defaults to
    /// the container group name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[ ,\-.0-9A-Za-z]+$"), length(min = 2, max = 63))]
    pub display_name: Option<String>,
}

/// A key of a Secret in the same namespace as the resource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as this resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A Secret in the same namespace as the resource.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret (same namespace as this resource).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl StableDiffusionDeploymentSpec {
    /// The replica count the spec asks for, within what SaladCloud accepts (0..=500): the one
    /// reading of `replicas` (admission refuses others; this keeps the engine safe regardless).
    pub fn desired_replicas(&self) -> u32 {
        self.replicas.clamp(0, 500) as u32
    }

    /// Who sets the replica count (see [`crate::scaling`] for the precedence).
    pub fn replicas_owner(&self) -> crate::scaling::ReplicasOwner {
        crate::scaling::ReplicasOwner::of(self)
    }

    /// The path the queue worker posts jobs to: `queue.path`, else the server kind's
    /// generation endpoint (none for Custom).
    pub fn queue_job_path(&self) -> Option<String> {
        self.queue.path.clone().or_else(|| {
            crate::profile::ServerProfile::of(&self.server)
                .queue_job_path()
                .map(str::to_owned)
        })
    }

    /// The port the queue worker posts jobs to: `queue.port`, else `server.port`.
    pub fn queue_port(&self) -> i32 {
        self.queue.port.unwrap_or(self.server.port)
    }

    /// Ready instances a group needs before it counts as serving: `rollout.minReadyReplicas`,
    /// or every replica, never more than there are.
    pub fn min_ready_replicas(&self) -> u32 {
        let replicas = self.desired_replicas();
        self.rollout
            .min_ready_replicas
            .map_or(replicas, |m| m.clamp(0, 500) as u32)
            .min(replicas)
    }

    /// Every `(Secret, key)` the spec refers to: the one list the operator's Secret watch and
    /// the CLI's credential lookup share.
    pub fn secret_refs(&self) -> std::collections::BTreeSet<(String, String)> {
        let mut out = std::collections::BTreeSet::new();
        let r = &self.saladcloud.api_key_secret_ref;
        out.insert((r.name.clone(), r.key.clone()));
        for env in &self.server.env {
            if let Some(from) = &env.value_from {
                let r = &from.secret_key_ref;
                out.insert((r.name.clone(), r.key.clone()));
            }
        }
        let sources = self
            .models
            .iter()
            .map(|m| &m.source)
            .chain(self.extensions.iter().map(|e| &e.source));
        for s in sources {
            if let Some(r) = &s.auth_secret_ref {
                out.insert((r.name.clone(), r.key.clone()));
            }
            if let Some(r) = &s.fetch_auth_secret_ref {
                out.insert((r.name.clone(), r.key.clone()));
            }
        }
        if let Some(p) = &self.image.push_secret_ref {
            out.insert((p.name.clone(), ".dockerconfigjson".into()));
        }
        if let Some(a) = &self.image.registry_auth {
            let keys: &[&str] = match a.kind {
                RegistryAuthKind::Basic => &["username", "password"],
                RegistryAuthKind::DockerHub => &["username", "personalAccessToken"],
                RegistryAuthKind::AwsEcr => &["accessKeyId", "secretAccessKey"],
                RegistryAuthKind::GcpGar | RegistryAuthKind::GcpGcr => &["serviceKey"],
            };
            for k in keys {
                out.insert((a.secret_ref.name.clone(), (*k).to_string()));
            }
        }
        out
    }
}

/// The inference server.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.kind != 'SDNext' || !has(self.args) || !self.args.exists(a, a == '--api-only' || a.startsWith('--api-only='))")
        .message("server.args: SD.Next's --api-only listens on IPv4 only (it ignores --server-name), so SaladCloud's gateway and probes cannot reach it; remove it"),
    validation = Rule::new("self.kind != 'SDNext' || !has(self.args) || !self.args.exists(a, a == '--no-download')")
        .message("server.args: --no-download exists only in old SD.Next builds and newer ones exit at start on an unknown flag; remove it"),
    validation = Rule::new("self.layout != 'Upstream' || self.backend == 'Diffusers'")
        .message("server.backend Original does not exist in upstream's current SD.Next image (layout Upstream); use Diffusers or layout SaladBase"),
    validation = Rule::new("self.kind != 'Automatic1111' || self.port != 7859")
        .message("server.port 7859 is where Automatic1111 itself listens inside the container (socat forwards IPv6 to it); pick another port"),
)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// Server software: SDNext (default), Automatic1111, ComfyUI or Custom. Decides the default
    /// base image, the model directories, the launch command and the default probes.
    #[serde(default)]
    pub kind: ServerKind,

    /// Base image the models are added to. Defaults (their CUDA decides which GPUs can run them;
    /// RTX 5090 classes need CUDA 12.8 or newer):
    /// SDNext layout SaladBase `saladtechnologies/sdnext:base` (CUDA 11.7, not for RTX 5090);
    /// SDNext layout Upstream `vladmandic/sdnext-cuda:latest` (CUDA 12.8);
    /// Automatic1111 `saladtechnologies/a1111:ipv6-v1.9.4` (CUDA 12.1, not for RTX 5090);
    /// ComfyUI `ghcr.io/saladtechnologies/comfyui-api:comfy0.35.0-api1.19.2-torch2.13.0-cuda13.0-runtime`
    /// (CUDA 13.0: NVIDIA driver 580 or newer, Turing or newer GPUs). Required for Custom.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub base_image: Option<String>,

    /// SDNext only: which image layout the base image has. SaladBase (default) is SaladCloud's
    /// `saladtechnologies/sdnext:base` (app in `/webui`, data in `/webui/data`, runs the server
    /// as uid 1000). Upstream is SD.Next's own `vladmandic/sdnext-cuda` (app in `/app`, data in
    /// `/mnt/data`, models in `/mnt/models`, runs as root).
    #[serde(default)]
    pub layout: SdNextLayout,

    /// SDNext only: the pipeline backend, passed as `--backend`. Diffusers (default) runs SD 1.5,
    /// SDXL and newer models and reads ControlNet files from `models/control/controlnet`;
    /// Original (SaladBase layout only) is the A1111-style backend of 2023 images (SD 1.5 only,
    /// ControlNet in `models/ControlNet`).
    #[serde(default)]
    pub backend: SdNextBackend,

    /// Let the server hash every model file at load (SDNext and Automatic1111). Off by default:
    /// hashing reads the whole checkpoint before the first image, minutes for an SDXL file on a
    /// slow disk, and only feeds the model hash shown in image metadata.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_hashing: bool,

    /// TCP port the server listens on (over IPv6, as SaladCloud requires).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Extra launch arguments appended to the server's command line (for SDNext, for example
    /// `--lowvram`). SDNext refuses `--api-only` (IPv4 only) and `--no-download` (unknown to
    /// newer builds, which then exit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub args: Vec<LaunchArg>,

    /// Environment variables of the server container. Values are 1-1000 characters
    /// (a SaladCloud limit). Secret values are copied into the container group definition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(e, self.exists_one(n, n.name == e.name))").message("environment variable names must be unique"))]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvVar>,
}

/// SD.Next image layout.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum SdNextLayout {
    // saladtechnologies/sdnext:base: /webui, data in /webui/data, server runs as uid 1000.
    #[default]
    SaladBase,
    // vladmandic/sdnext-cuda: /app, SD_DATADIR=/mnt/data, SD_MODELSDIR=/mnt/models, root.
    Upstream,
}

/// SD.Next pipeline backend.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum SdNextBackend {
    // diffusers: SD 1.5, SDXL and newer; ControlNet in models/control/controlnet.
    #[default]
    Diffusers,
    // original: the A1111-style backend of 2023 images; SD 1.5 only.
    Original,
}

/// One launch argument.
pub type LaunchArg = String;

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            kind: ServerKind::default(),
            base_image: None,
            layout: SdNextLayout::default(),
            backend: SdNextBackend::default(),
            model_hashing: false,
            port: default_port(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }
}

fn default_port() -> i32 {
    7860
}

/// Server software.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum ServerKind {
    // SD.Next (vladmandic/automatic), the seed's server.
    #[default]
    #[serde(rename = "SDNext")]
    SdNext,
    // AUTOMATIC1111 stable-diffusion-webui.
    Automatic1111,
    // ComfyUI behind SaladCloud's comfyui-api wrapper.
    #[serde(rename = "ComfyUI")]
    ComfyUi,
    // Any image: you give baseImage, paths and probes.
    Custom,
}

/// An environment variable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.value) != has(self.valueFrom)").message("set exactly one of value or valueFrom"))]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    #[schemars(
        regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"),
        length(min = 1, max = 128)
    )]
    pub name: String,
    /// Literal value (1-1000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1000))]
    pub value: Option<String>,
    /// Take the value from a key of a Secret in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Where an environment variable's value comes from.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// The Secret key holding the value.
    pub secret_key_ref: SecretKeyRef,
}

/// A model file baked into the image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.kind != 'Other' || has(self.path)").message("models of kind Other need path: the absolute directory to put the file in"),
    validation = Rule::new("self.kind != 'Checkpoint' || self.name.endsWith('.safetensors') || self.name.endsWith('.ckpt')")
        .message("a Checkpoint's name must end in .safetensors or .ckpt: the servers list checkpoints by extension and ignore other files"),
    validation = Rule::new("!(self.kind in ['Lora', 'VAE']) || self.name.endsWith('.safetensors') || self.name.endsWith('.ckpt') || self.name.endsWith('.pt')")
        .message("a Lora or VAE name must end in .safetensors, .ckpt or .pt: the servers list them by extension and ignore other files"),
    validation = Rule::new("self.kind != 'Embedding' || self.name.endsWith('.safetensors') || self.name.endsWith('.pt') || self.name.endsWith('.bin')")
        .message("an Embedding's name must end in .safetensors, .pt or .bin: the servers list them by extension and ignore other files"),
    validation = Rule::new("self.kind != 'ControlNet' || self.name.endsWith('.safetensors') || self.name.endsWith('.pth') || self.name.endsWith('.pt') || self.name.endsWith('.ckpt') || self.name.endsWith('.bin')")
        .message("a ControlNet's name must end in .safetensors, .pth, .pt, .ckpt or .bin: the servers list them by extension and ignore other files"),
    validation = Rule::new("!has(self.delivery) || self.delivery != 'FetchedAtStart' || has(self.source.sha256)")
        .message("a model with delivery FetchedAtStart needs source.sha256: the container verifies the download against it and refuses to start on a mismatch"),
    validation = Rule::new("!has(self.delivery) || self.delivery != 'FetchedAtStart' || !has(self.source.authSecretRef)")
        .message("a model with delivery FetchedAtStart is downloaded by the container, not the build: name its token in source.fetchAuthSecretRef (it may be the same Secret) instead of source.authSecretRef"),
    validation = Rule::new("!has(self.delivery) || self.delivery != 'FetchedAtStart' || has(self.source.sizeBytes)")
        .message("a model with delivery FetchedAtStart needs source.sizeBytes: the startup probe's window and status.coldStart are computed from it"),
    validation = Rule::new("(has(self.delivery) && self.delivery == 'FetchedAtStart') || !has(self.source.fetchAuthSecretRef)")
        .message("source.fetchAuthSecretRef is only for delivery FetchedAtStart; a baked model's token is source.authSecretRef"),
)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// File name in the image, for example `dreamshaper_8.safetensors`. Also the model's
    /// identity in this list.
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"),
        length(min = 1, max = 128)
    )]
    pub name: String,

    /// What the file is: Checkpoint, Lora, VAE, Embedding, ControlNet or Other. Decides the
    /// directory it goes to for the server kind (Other needs path).
    pub kind: ModelKind,

    /// Absolute directory for the file; overrides the directory chosen by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/[A-Za-z0-9._/+-]*$"), length(min = 1, max = 512))]
    pub path: Option<String>,

    /// Where to download the file from.
    pub source: ModelSource,

    /// Load this checkpoint at start (`--ckpt`). At most one model may set it. When no
    /// checkpoint sets it and there is exactly one checkpoint, that one is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,

    /// How the file reaches the container. `Baked` (default): built into the image as its own
    /// layer; every new node downloads it with the image, which SaladCloud does not bill.
    /// `FetchedAtStart`: the container downloads it before the server starts (resumed after a
    /// broken transfer, verified against source.sha256, which is then required); that time is
    /// billed, but the image stays small and a model change needs no new image layer. The
    /// startup probe's window grows with the fetched bytes (about 2 minutes per GB).
    /// `status.coldStart` shows both parts for the spec.
    #[serde(default, skip_serializing_if = "ModelDelivery::is_baked")]
    pub delivery: ModelDelivery,
}

/// How a model file reaches the container.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ModelDelivery {
    // In the image, one layer per model (downloaded with the image, not billed).
    #[default]
    Baked,
    // Downloaded by the container before the server starts (billed), verified by sha256.
    FetchedAtStart,
}

impl ModelDelivery {
    /// Whether this is the default, `Baked`.
    pub fn is_baked(&self) -> bool {
        *self == ModelDelivery::Baked
    }
}

/// Model file type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelKind {
    // A full Stable Diffusion checkpoint (.safetensors / .ckpt).
    Checkpoint,
    // A LoRA adapter.
    Lora,
    // A VAE.
    #[serde(rename = "VAE")]
    Vae,
    // A textual-inversion embedding.
    Embedding,
    // A ControlNet model.
    ControlNet,
    // Anything else: path is required.
    Other,
}

/// A downloadable file.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelSource {
    /// HTTPS URL of the file (Civitai, Hugging Face, or any HTTPS server). Redirects are followed.
    #[schemars(
        regex(pattern = r"^[a-z][a-z0-9+.-]*://\S+$"),
        length(min = 8, max = 2048)
    )]
    pub url: String,

    /// Expected SHA-256 of the file (64 hex characters). Recommended: the build fails on a
    /// mismatch, and a pinned model is reused from the registry without downloading it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-fA-F0-9]{64}$"), length(min = 64, max = 64))]
    pub sha256: Option<String>,

    /// Secret key holding a token for the download (a Civitai API key or a Hugging Face token),
    /// sent as `Authorization: Bearer`, and only to the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret_ref: Option<SecretKeyRef>,

    /// For a model with delivery `FetchedAtStart`: the Secret key holding the token the
    /// container sends (`Authorization: Bearer`, only to the URL's host). It reaches every
    /// instance as a SaladCloud environment variable, so name a read-only token made for this;
    /// it may be the same Secret as authSecretRef, but it is never taken from there unasked
    /// (a fetched model with only authSecretRef is refused at admission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_auth_secret_ref: Option<SecretKeyRef>,

    /// Size of the file in bytes. Required for delivery `FetchedAtStart`: the startup probe's
    /// window (about 2 minutes per GB on an average SaladCloud node) and `status.coldStart` are
    /// computed from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub size_bytes: Option<i64>,
}

/// A server extension.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionSpec {
    /// Directory name of the extension inside the extensions directory.
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
        length(min = 1, max = 128)
    )]
    pub name: String,
    /// The archive (.tar or .tar.gz) to unpack.
    pub source: ModelSource,
}

/// Image build and pull settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Repository the built image is pushed to, without tag (for example
    /// `ghcr.io/acme/sd-dreamshaper`). Tags are the recipe hash; SaladCloud gets the image by
    /// digest.
    #[schemars(
        regex(pattern = r"^[a-z0-9]+([._:-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$"),
        length(min = 1, max = 255)
    )]
    pub repository: String,

    /// A `kubernetes.io/dockerconfigjson` Secret with push credentials for the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_ref: Option<SecretRef>,

    /// Credentials SaladCloud uses to pull the image, for private repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_auth: Option<RegistryAuthSpec>,

    /// Let SaladCloud cache the image layers for up to 30 days (faster cold starts).
    #[serde(default = "default_true")]
    pub image_caching: bool,
}

fn default_true() -> bool {
    true
}

/// Pull credentials for SaladCloud, read from a Secret.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAuthSpec {
    /// Credential type: Basic (keys `username`, `password`; GHCR, Quay, ACR, self-hosted),
    /// DockerHub (`username`, `personalAccessToken`), AwsEcr (`accessKeyId`, `secretAccessKey`),
    /// GcpGar or GcpGcr (`serviceKey`, the JSON key).
    #[serde(rename = "type")]
    pub kind: RegistryAuthKind,
    /// Secret in this namespace with the keys listed for the type.
    pub secret_ref: SecretRef,
}

/// Registry credential type.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistryAuthKind {
    // username + password
    Basic,
    // username + personalAccessToken
    DockerHub,
    // accessKeyId + secretAccessKey
    AwsEcr,
    // serviceKey
    GcpGar,
    // serviceKey
    GcpGcr,
}

/// Instance resources.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesSpec {
    /// vCPUs per instance, 1-1024 (SaladCloud's limit). Each GPU class allows a narrower range
    /// (consumer RTX classes commonly 1-16), and every class listed in gpuClasses must allow it.
    #[serde(default = "default_cpu")]
    #[schemars(range(min = 1, max = 1024))]
    pub cpu: i32,

    /// Memory per instance, 1024-1073741824 MB (SaladCloud's limit). Each GPU class allows a
    /// narrower range (consumer RTX classes commonly up to 61440 MB), and every class listed in
    /// gpuClasses must allow it. A plain number is megabytes (as in the SaladCloud API); a
    /// quantity with k, M, G, T, Ki, Mi, Gi or Ti is converted to SaladCloud's MB, which are MiB:
    /// `12Gi` and `12288Mi` are 12288 MB, `12G` is 11444 MB (rounded down), so the range is
    /// 1024Mi-1024Ti.
    #[x_kube(validation = Rule::new(MEMORY_RULE).message("resources.memory must be 1024-1073741824 MB: a number of MB, or a quantity from 1024Mi to 1024Ti such as 12Gi (k, M, G, T, Ki, Mi, Gi, Ti)"))]
    pub memory: Quantity,

    /// GPU classes, by SaladCloud name (for example `RTX 3060 Ti`, matched case-insensitively)
    /// or id (uuid). Any of them may be assigned. At least one.
    #[schemars(length(min = 1, max = 100))]
    pub gpu_classes: Vec<GpuClassName>,

    /// Extra disk per instance, 1Gi-250Gi (a quantity; a plain number is bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,

    /// Shared memory (/dev/shm) per instance, as a quantity (`1Gi`) or megabytes; at least 64 MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Quantity>,
}

/// `resources.memory` at admission (Kubernetes >= 1.29 for the quantity library), the same
/// language and range as `quantity::to_megabytes` + `validate`: an integer or a digit string is
/// MB; otherwise a quantity in Rust's grammar whose MiB, rounded down, are within
/// 1024-1073741824. A digit string longer than the maximum's 10 digits is refused before `int()`
/// could overflow.
const MEMORY_RULE: &str = "string(self).matches('^[0-9]+$') \
    ? (size(string(self)) <= 10 && int(string(self)) >= 1024 && int(string(self)) <= 1073741824) \
    : (string(self).matches('^([0-9]+[.]?[0-9]*|[.][0-9]+)(k|M|G|T|Ki|Mi|Gi|Ti)$') \
       && isQuantity(string(self)) \
       && quantity(string(self)).compareTo(quantity('1024Mi')) >= 0 \
       && quantity(string(self)).compareTo(quantity('1073741825Mi')) < 0)";

/// A GPU class name or id.
pub type GpuClassName = String;

fn default_cpu() -> i32 {
    4
}

/// SaladCloud priority tier.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    High,
    Medium,
    Low,
    Batch,
}

/// Restart policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// What to do with the container group when the resource is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Orphan,
}

/// Container Gateway settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Expose the server through the Container Gateway (HTTPS access domain). Changing this
    /// replaces the container group.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Port the gateway forwards to; must equal server.port. The only gateway setting
    /// SaladCloud can change in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,

    /// Require the `Salad-Api-Key` header on requests. Changing this replaces the container group.
    #[serde(default)]
    pub auth: bool,

    /// RoundRobin or LeastNumberOfConnections (default; best for long image generations).
    /// Changing this replaces the container group.
    #[serde(default)]
    pub load_balancer: LoadBalancer,

    /// Milliseconds the gateway waits for a client's request (1-100000). Changing this replaces
    /// the container group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub client_request_timeout_ms: Option<i32>,

    /// Milliseconds the gateway waits for the server's response (1-100000; the gateway's hard
    /// limit is 100 s). Changing this replaces the container group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub server_response_timeout_ms: Option<i32>,

    /// Send at most one request at a time to each instance (others wait at the gateway).
    /// Changing this replaces the container group.
    #[serde(default)]
    pub single_connection_limit: bool,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            port: None,
            auth: false,
            load_balancer: LoadBalancer::default(),
            client_request_timeout_ms: None,
            server_response_timeout_ms: None,
            single_connection_limit: false,
        }
    }
}

/// Gateway load-balancing algorithm.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LoadBalancer {
    RoundRobin,
    #[default]
    LeastNumberOfConnections,
}

/// Probe overrides.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProbesSpec {
    /// Startup probe: the instance gets no traffic and no liveness checks until it passes. The
    /// default for SDNext waits until the checkpoint is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<ProbeSpec>,
    /// Liveness probe: a failing instance is reallocated to another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<ProbeSpec>,
    /// Readiness probe: a failing instance gets no gateway traffic until it passes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<ProbeSpec>,
}

/// One probe. Unset fields keep the server kind's defaults; the limits are SaladCloud's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.http) ? 1 : 0) + (has(self.tcp) ? 1 : 0) + (has(self.exec) ? 1 : 0) <= 1")
    .message("a probe has at most one of http, tcp or exec"))]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    /// Turn the probe off (true keeps the default probe's handler off too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// HTTP GET check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
    /// Command run in the container; exit code 0 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProbe>,
    /// Seconds before the first check (0-1200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1200))]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds between checks (1-120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 120))]
    pub period_seconds: Option<i32>,
    /// Seconds before a check times out (1-60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: Option<i32>,
    /// Consecutive passes needed (1-10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub success_threshold: Option<i32>,
    /// Consecutive failures tolerated (1-20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 20))]
    pub failure_threshold: Option<i32>,
}

/// HTTP probe.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpProbe {
    /// Path (and query) to GET, starting with /.
    #[schemars(regex(pattern = r"^/"), length(min = 1, max = 2048))]
    pub path: String,
    /// Port; defaults to server.port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub headers: Vec<HttpHeader>,
}

/// An HTTP header.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    /// Header name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Header value.
    #[schemars(length(min = 1, max = 1024))]
    pub value: String,
}

/// TCP probe.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TcpProbe {
    /// Port; defaults to server.port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Exec probe.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecProbe {
    /// Command and arguments (no shell unless you call one).
    #[schemars(length(min = 1, max = 100))]
    pub command: Vec<ProbeCommandArg>,
}

/// A probe command word.
pub type ProbeCommandArg = String;

/// Rollout settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// BlueGreen (default): a new container group comes up next to the serving one and takes
    /// over once ready, then the old one is deleted; costs double while both run. Recreate:
    /// patch the group in place; SaladCloud restarts every replica at once (downtime until the
    /// new version is ready).
    #[serde(default)]
    pub strategy: RolloutStrategy,

    /// Ready instances the new group needs before BlueGreen switches over. Defaults to all
    /// replicas. SaladCloud cold starts can take tens of minutes for a few nodes; a lower number
    /// switches sooner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub min_ready_replicas: Option<i32>,
}

/// Rollout strategy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RolloutStrategy {
    #[default]
    BlueGreen,
    Recreate,
}

/// Post-rollout txt2img check.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SmokeTestSpec {
    /// Prompt to generate.
    #[serde(default = "default_prompt")]
    #[schemars(length(min = 1, max = 1000))]
    pub prompt: String,
    /// Sampling steps (1-50); few steps keep it cheap.
    #[serde(default = "default_steps")]
    #[schemars(range(min = 1, max = 50))]
    pub steps: i32,
    /// Image width and height in pixels (64-1024).
    #[serde(default = "default_size")]
    #[schemars(range(min = 64, max = 1024))]
    pub size: i32,
}

fn default_prompt() -> String {
    "a photo of a red apple on a wooden table".into()
}
fn default_steps() -> i32 {
    4
}
fn default_size() -> i32 {
    256
}

impl Default for SmokeTestSpec {
    fn default() -> Self {
        Self {
            prompt: default_prompt(),
            steps: default_steps(),
            size: default_size(),
        }
    }
}

/// Environment of the server, as literal values after Secret lookup.
pub type ResolvedEnv = BTreeMap<String, String>;
