//! From a spec to what should exist: the image recipe and the container group definition.
//! Pure: every input is already fetched.

use std::collections::BTreeMap;

use salad_sd_api::names::OWNER_ENV;
use salad_sd_api::profile::{self, ProbeDefaults, ProbeHandler, ServerProfile};
use salad_sd_api::quantity;
use salad_sd_api::{
    LoadBalancer, ModelDelivery, ModelKind, Priority, ProbeSpec, ReplicasOwner, RestartPolicy,
    ServerKind, StableDiffusionDeploymentSpec,
};
use salad_sd_image::{ConfigEdit, LayerContent, LayerSpec, Recipe, Source, SourceAuth};
use saladcloud::model as salad;

use crate::plan::{Desired, ReplicasPolicy};
use crate::secrets::ResolvedSecrets;

/// What should exist for `sdd`, but the container group definition (set once the image is
/// known): the planner's input.
pub fn desired(
    sdd: &salad_sd_api::StableDiffusionDeployment,
    name_prefix: &str,
    generation: i64,
    prev: &salad_sd_api::StableDiffusionDeploymentStatus,
) -> Desired {
    let spec = &sdd.spec;
    Desired {
        owner_uid: sdd.metadata.uid.clone().unwrap_or_default(),
        deleting: sdd.metadata.deletion_timestamp.is_some(),
        deletion_policy: spec.deletion_policy,
        strategy: spec.rollout.strategy,
        stopped: spec.stopped,
        fixed_name: spec.saladcloud.container_group_name.clone(),
        adopt: spec.saladcloud.adopt == Some(true),
        name_prefix: name_prefix.to_string(),
        generation,
        generation_observed: prev.observed_generation == Some(generation),
        min_ready: min_ready(spec),
        replicas: replicas_policy(spec, prev),
        queue: spec.queue.enabled.then(|| name_prefix.to_string()),
        group: None,
    }
}

/// Whether this reconcile applies the replica count of the definition (see
/// [`salad_sd_api::scaling`] for the precedence): the spec's always; under a schedule only a
/// spec.replicas not applied before; under the queue autoscaler never.
pub fn replicas_policy(
    spec: &StableDiffusionDeploymentSpec,
    prev: &salad_sd_api::StableDiffusionDeploymentStatus,
) -> ReplicasPolicy {
    let applied = prev.scaling.as_ref().and_then(|s| s.spec_replicas_applied);
    match spec.replicas_owner() {
        ReplicasOwner::Spec => ReplicasPolicy::Enforce,
        ReplicasOwner::Schedule if applied != Some(spec.replicas) => ReplicasPolicy::Enforce,
        ReplicasOwner::Schedule | ReplicasOwner::QueueAutoscaler => ReplicasPolicy::LeaveToOwner,
    }
}

/// Ready instances a group needs to count as serving: under the spec, `spec.min_ready_replicas()`;
/// under a schedule or the autoscaler `rollout.minReadyReplicas` or every instance the owner
/// asked for (the planner caps it by the group's replica count).
fn min_ready(spec: &StableDiffusionDeploymentSpec) -> u32 {
    match spec.replicas_owner() {
        ReplicasOwner::Spec => spec.min_ready_replicas(),
        _ => spec
            .rollout
            .min_ready_replicas
            .map_or(u32::MAX, |m| m.clamp(0, 500) as u32),
    }
}

/// The replica count a new group is created with: the autoscaler's minimum when it owns
/// replicas, else spec.replicas.
pub fn initial_replicas(spec: &StableDiffusionDeploymentSpec) -> u32 {
    match (&spec.queue.autoscaler, spec.replicas_owner()) {
        (Some(a), ReplicasOwner::QueueAutoscaler) => a.min_replicas.clamp(0, 100) as u32,
        _ => spec.desired_replicas(),
    }
}

/// The image to build for a spec. Secrets (model tokens) ride along but never enter the hash.
pub fn recipe(spec: &StableDiffusionDeploymentSpec, secrets: &ResolvedSecrets) -> Recipe {
    let profile = ServerProfile::of(&spec.server);
    let base_image = spec
        .server
        .base_image
        .clone()
        .or_else(|| profile.default_base_image().map(str::to_owned))
        .unwrap_or_default();
    let mut layers = Vec::new();
    for model in spec.models.iter().filter(|m| m.delivery.is_baked()) {
        layers.push(LayerSpec {
            name: model.name.clone(),
            source: source(&model.source, secrets.model_tokens.get(&model.name)),
            content: LayerContent::File {
                path_in_image: model_path(spec, model),
                mode: 0o644,
            },
        });
    }
    for ext in &spec.extensions {
        layers.push(LayerSpec {
            name: format!("extension-{}", ext.name),
            source: source(&ext.source, secrets.model_tokens.get(&ext.name)),
            content: LayerContent::Archive {
                dest_dir: format!("{}/{}", profile.extensions_dir(), ext.name),
                strip_components: 1,
            },
        });
    }
    if let Some(worker) = queue_worker_layer(spec) {
        layers.push(worker);
    }
    let ckpt = default_checkpoint(spec).map(|m| model_path(spec, m));
    let launch = profile.launch(spec.server.port, ckpt.as_deref(), &spec.server.args);
    let mut config = ConfigEdit {
        env: profile.launch_env(spec.server.port).into_iter().collect(),
        ..ConfigEdit::default()
    };
    if let Some((entrypoint, cmd)) = launch {
        config.entrypoint = entrypoint;
        config.cmd = Some(cmd);
    }
    if let Some(ckpt) = &ckpt {
        config.env.insert("CKPT_PATH".into(), ckpt.clone());
    }
    start_edits(spec, &mut config);
    Recipe {
        base_image,
        layers,
        config,
    }
}

/// SaladCloud's job queue worker as a layer when `queue.enabled`: fetched like a baked model
/// (`queue.worker.url`, else the pinned release [`profile::QUEUE_WORKER_URL`], verified against
/// `queue.worker.sha256` or [`profile::QUEUE_WORKER_SHA256`]) and unpacked into
/// `/usr/local/bin`, so the binary is [`profile::QUEUE_WORKER_PATH`]. Admission refuses a queue
/// with no sha256 to check, so the layer is never unverified.
fn queue_worker_layer(spec: &StableDiffusionDeploymentSpec) -> Option<LayerSpec> {
    let q = &spec.queue;
    if !q.enabled {
        return None;
    }
    let url = q
        .worker
        .url
        .clone()
        .unwrap_or_else(|| profile::QUEUE_WORKER_URL.to_string());
    let sha256 = q.worker.sha256.clone().or_else(|| {
        q.worker
            .url
            .is_none()
            .then_some(profile::QUEUE_WORKER_SHA256)
            .flatten()
            .map(str::to_owned)
    });
    let dest_dir = profile::QUEUE_WORKER_PATH
        .rsplit_once('/')
        .map_or("/usr/local/bin", |(dir, _)| dir)
        .to_string();
    Some(LayerSpec {
        name: "salad-http-job-queue-worker".into(),
        source: Source {
            url,
            sha256: sha256.map(|h| h.to_ascii_lowercase()),
            auth: None,
        },
        content: LayerContent::Archive {
            dest_dir,
            strip_components: 0,
        },
    })
}

/// The models the container fetches before the server starts.
pub fn fetched_models(
    spec: &StableDiffusionDeploymentSpec,
) -> impl Iterator<Item = &salad_sd_api::ModelSpec> {
    spec.models
        .iter()
        .filter(|m| m.delivery == ModelDelivery::FetchedAtStart)
}

/// The SaladCloud environment variable carrying a fetched model's token (named by a hash of the
/// model name, so the name of a variable never changes with the order of the list).
pub fn fetch_token_env(model_name: &str) -> String {
    use sha2::Digest as _;
    let h = hex::encode(sha2::Sha256::digest(model_name.as_bytes()));
    format!("SALAD_SD_FETCH_TOKEN_{}", &h[..12].to_ascii_uppercase())
}

/// `scheme://host[:port]` of a URL, for messages (never the path or query: they may carry tokens).
fn url_host(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

/// The image config edits for starting: the fetch list and script when models are fetched,
/// comfyui-api's warm-up workflow for the default checkpoint, and the start that runs them.
fn start_edits(spec: &StableDiffusionDeploymentSpec, config: &mut ConfigEdit) {
    let profile = ServerProfile::of(&spec.server);
    let fetch: Vec<serde_json::Value> = fetched_models(spec)
        .map(|m| {
            serde_json::json!({
                "name": m.name,
                "url": m.source.url,
                "host": url_host(&m.source.url),
                "sha256": m.source.sha256.as_deref().unwrap_or_default().to_ascii_lowercase(),
                "path": model_path(spec, m),
                "tokenEnv": m.source.fetch_auth_secret_ref.as_ref().map(|_| fetch_token_env(&m.name)),
            })
        })
        .collect();
    if !fetch.is_empty() {
        config.env.insert(
            profile::FETCH_LIST_ENV.into(),
            serde_json::Value::Array(fetch).to_string(),
        );
        config.env.insert(
            profile::FETCH_SCRIPT_ENV.into(),
            profile::FETCH_SCRIPT.into(),
        );
    }
    let mut warmup = false;
    if spec.server.kind == ServerKind::ComfyUi
        && let Some(ckpt) = default_checkpoint(spec)
    {
        let workflow = profile::comfyui_txt2img(&ckpt.name, "warmup", 1, 64, 0);
        config.env.insert(
            "WARMUP_PROMPT_FILE".into(),
            profile::COMFYUI_WARMUP_FILE.into(),
        );
        config
            .env
            .insert(profile::WARMUP_PROMPT_ENV.into(), workflow.to_string());
        warmup = true;
    }
    let steps = profile::StartSteps {
        fetch: config.env.contains_key(profile::FETCH_LIST_ENV),
        warmup,
        queue_worker: spec.queue.enabled,
    };
    profile.wrap_start(&mut config.entrypoint, &mut config.cmd, steps);
}

/// Bytes the container fetches at start (the declared `sizeBytes` of each fetched model).
pub fn fetched_bytes(spec: &StableDiffusionDeploymentSpec) -> u64 {
    fetched_models(spec)
        .map(|m| m.source.size_bytes.unwrap_or(0).max(0) as u64)
        .sum()
}

fn source(s: &salad_sd_api::ModelSource, token: Option<&String>) -> Source {
    Source {
        url: s.url.clone(),
        sha256: s.sha256.as_ref().map(|h| h.to_ascii_lowercase()),
        auth: token.map(|t| SourceAuth {
            header: "Authorization".into(),
            value: salad_sd_image::Secret::new(format!("Bearer {t}")),
        }),
    }
}

/// Where a model file lands in the image.
pub fn model_path(spec: &StableDiffusionDeploymentSpec, model: &salad_sd_api::ModelSpec) -> String {
    let dir = model
        .path
        .clone()
        .or_else(|| ServerProfile::of(&spec.server).model_dir(model.kind))
        .unwrap_or_else(|| "/models".into());
    format!("{}/{}", dir.trim_end_matches('/'), model.name)
}

/// The checkpoint loaded at start: the one marked default, or the only checkpoint.
pub fn default_checkpoint(
    spec: &StableDiffusionDeploymentSpec,
) -> Option<&salad_sd_api::ModelSpec> {
    let checkpoints: Vec<_> = spec
        .models
        .iter()
        .filter(|m| m.kind == ModelKind::Checkpoint)
        .collect();
    checkpoints
        .iter()
        .find(|m| m.default == Some(true))
        .or(if checkpoints.len() == 1 {
            checkpoints.first()
        } else {
            None
        })
        .copied()
}

/// GPU classes after name resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuChoice {
    /// Ids, in the spec's order.
    pub ids: Vec<String>,
    /// Hourly price per instance at the spec's priority: the highest among the classes.
    pub hourly_price: Option<f64>,
}

/// The container's resources in SaladCloud's units (vCPU, MB, bytes) on the GPU classes `gpu_ids`.
pub fn resources(
    spec: &StableDiffusionDeploymentSpec,
    gpu_ids: Vec<String>,
) -> salad::CreateResources {
    let r = &spec.resources;
    salad::CreateResources {
        cpu: r.cpu.max(1) as u32,
        memory: quantity::to_megabytes(&r.memory).unwrap_or(0) as u32,
        gpu_classes: gpu_ids,
        storage_amount: r
            .storage
            .as_ref()
            .and_then(|q| quantity::to_bytes(q, 1).ok()),
        shm_size: r
            .shm_size
            .as_ref()
            .and_then(|q| quantity::to_megabytes(q).ok())
            .map(|mb| mb as u32),
    }
}

/// Everything about the container group that follows from the spec, except its name and image.
pub fn group_definition(
    spec: &StableDiffusionDeploymentSpec,
    owner_uid: &str,
    image: &str,
    gpu: &GpuChoice,
    secrets: &ResolvedSecrets,
) -> salad::ContainerGroupPrototype {
    let profile = ServerProfile::of(&spec.server);
    let port = spec.server.port;
    let resources = resources(spec, gpu.ids.clone());

    let mut env: BTreeMap<String, String> = secrets.env.clone();
    env.insert(OWNER_ENV.into(), owner_uid.into());
    // Fetched models' tokens, from the Secrets named for that (fetchAuthSecretRef) only.
    for m in fetched_models(spec) {
        if let Some(token) = secrets.fetch_tokens.get(&m.name) {
            env.insert(fetch_token_env(&m.name), token.clone());
        }
    }

    let mut container = salad::CreateContainer::new(image, resources);
    container.environment_variables = env;
    container.priority = Some(priority(spec.priority));
    container.image_caching = Some(spec.image.image_caching);
    container.registry_authentication = secrets.pull_auth.clone();

    let mut proto =
        salad::ContainerGroupPrototype::new(String::new(), container, initial_replicas(spec));
    proto.display_name = spec.saladcloud.display_name.clone();
    proto.autostart_policy = !spec.stopped;
    proto.restart_policy = match spec.restart_policy {
        RestartPolicy::Always => salad::RestartPolicy::Always,
        RestartPolicy::OnFailure => salad::RestartPolicy::OnFailure,
        RestartPolicy::Never => salad::RestartPolicy::Never,
    };
    proto.country_codes = spec.country_codes.clone();
    if spec.gateway.enabled {
        let g = &spec.gateway;
        proto.networking = Some(salad::CreateNetworking {
            protocol: salad::NetworkingProtocol::Http,
            port: g.port.unwrap_or(port) as u16,
            auth: g.auth,
            load_balancer: Some(match g.load_balancer {
                LoadBalancer::RoundRobin => salad::LoadBalancer::RoundRobin,
                LoadBalancer::LeastNumberOfConnections => {
                    salad::LoadBalancer::LeastNumberOfConnections
                }
            }),
            single_connection_limit: Some(g.single_connection_limit),
            client_request_timeout: g.client_request_timeout_ms.map(|v| v as u32),
            server_response_timeout: g.server_response_timeout_ms.map(|v| v as u32),
        });
    }
    let startup = profile
        .startup_probe(port)
        .map(|p| profile::startup_window_for_fetch(p, fetched_bytes(spec)));
    proto.startup_probe = probe(&spec.probes.startup, startup, port);
    proto.liveness_probe = probe(&spec.probes.liveness, profile.liveness_probe(port), port);
    // SaladCloud only runs readiness probes behind the gateway.
    proto.readiness_probe = if spec.gateway.enabled {
        probe(&spec.probes.readiness, profile.readiness_probe(port), port)
    } else {
        None
    };
    scaling(spec, &mut proto);
    proto
}

/// Scheduled scaling and the queue. The connection's queue name is the planner's to fill, like
/// the group's name.
fn scaling(spec: &StableDiffusionDeploymentSpec, proto: &mut salad::ContainerGroupPrototype) {
    proto.scaling_actions = spec
        .scaling
        .schedule
        .iter()
        .map(|a| salad::ScalingAction {
            schedule: a.cron.clone(),
            replicas: a.replicas.clamp(0, 500) as u32,
        })
        .collect();
    proto.scheduled_scaling_enabled = Some(!proto.scaling_actions.is_empty());
    if !spec.queue.enabled {
        return;
    }
    proto.queue_connection = Some(salad::QueueConnection {
        path: spec.queue_job_path().unwrap_or_default(),
        port: spec.queue_port().clamp(1, 65535) as u16,
        queue_name: String::new(),
    });
    proto.queue_autoscaler = spec
        .queue
        .autoscaler
        .as_ref()
        .map(|a| salad::QueueAutoscaler {
            desired_queue_length: a.desired_queue_length.clamp(1, 100) as u32,
            min_replicas: a.min_replicas.clamp(0, 100) as u32,
            max_replicas: a.max_replicas.clamp(1, 500) as u32,
            max_upscale_per_minute: a.max_upscale_per_minute.map(|v| v.clamp(1, 100) as u32),
            max_downscale_per_minute: a.max_downscale_per_minute.map(|v| v.clamp(1, 100) as u32),
            polling_period: Some(a.polling_period_seconds.clamp(15, 1800) as u32),
        });
}

/// SaladCloud's priority for ours.
pub fn priority(p: Priority) -> salad::Priority {
    match p {
        Priority::High => salad::Priority::High,
        Priority::Medium => salad::Priority::Medium,
        Priority::Low => salad::Priority::Low,
        Priority::Batch => salad::Priority::Batch,
    }
}

/// A probe: the user's overrides on top of the kind's defaults.
fn probe(
    user: &Option<ProbeSpec>,
    default: Option<ProbeDefaults>,
    port: i32,
) -> Option<salad::Probe> {
    let user_handler = user.as_ref().and_then(|u| {
        if let Some(h) = &u.http {
            Some(ProbeHandler::Http {
                path: h.path.clone(),
                port: h.port.unwrap_or(port),
                headers: h
                    .headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            })
        } else if let Some(t) = &u.tcp {
            Some(ProbeHandler::Tcp {
                port: t.port.unwrap_or(port),
            })
        } else {
            u.exec.as_ref().map(|e| ProbeHandler::Exec {
                command: e.command.clone(),
            })
        }
    });
    if user.as_ref().and_then(|u| u.disabled) == Some(true) {
        return None;
    }
    let base = match (default, &user_handler) {
        (Some(d), _) => d,
        (None, Some(h)) => ProbeDefaults {
            handler: h.clone(),
            initial_delay_seconds: 0,
            period_seconds: 10,
            timeout_seconds: 10,
            success_threshold: 1,
            failure_threshold: 3,
        },
        (None, None) => return None,
    };
    let u = user.clone().unwrap_or_default();
    let handler = user_handler.unwrap_or(base.handler);
    let mut p = salad::Probe {
        http: None,
        tcp: None,
        grpc: None,
        exec: None,
        initial_delay_seconds: u
            .initial_delay_seconds
            .unwrap_or(base.initial_delay_seconds) as u32,
        period_seconds: u.period_seconds.unwrap_or(base.period_seconds) as u32,
        timeout_seconds: u.timeout_seconds.unwrap_or(base.timeout_seconds) as u32,
        success_threshold: u.success_threshold.unwrap_or(base.success_threshold) as u32,
        failure_threshold: u.failure_threshold.unwrap_or(base.failure_threshold) as u32,
    };
    match handler {
        ProbeHandler::Http {
            path,
            port,
            headers,
        } => {
            p.http = Some(salad::HttpProbe {
                path,
                port: port as u16,
                scheme: salad::HttpScheme::Http,
                headers: headers
                    .into_iter()
                    .map(|(n, v)| salad::HttpHeader::new(n, v))
                    .collect(),
            })
        }
        ProbeHandler::Tcp { port } => p.tcp = Some(salad::TcpProbe { port: port as u16 }),
        ProbeHandler::Exec { command } => p.exec = Some(salad::ExecProbe { command }),
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{resolved_secrets, spec_from_yaml};

    const SEED: &str = include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml");

    #[test]
    fn the_seed_becomes_the_seed_group() {
        let sdd = spec_from_yaml(SEED);
        let gpu = GpuChoice {
            ids: vec!["cb6c1931-89b6-4f76-976f-54047320ccc6".into()],
            hourly_price: Some(0.08),
        };
        let p = group_definition(
            &sdd.spec,
            "uid-1",
            "reg/img@sha256:abc",
            &gpu,
            &resolved_secrets(),
        );
        assert_eq!(p.replicas, 3);
        assert_eq!(p.container.resources.cpu, 4);
        assert_eq!(p.container.resources.memory, 12288, "12Gi is 12288 MB");
        assert_eq!(p.container.resources.gpu_classes, gpu.ids);
        let net = p.networking.as_ref().unwrap();
        assert_eq!((net.port, net.auth), (7860, false));
        let startup = p.startup_probe.as_ref().unwrap();
        assert!(
            startup.exec.is_some(),
            "SD.Next startup waits for a generation"
        );
        assert_eq!(
            (
                startup.initial_delay_seconds,
                startup.period_seconds,
                startup.failure_threshold
            ),
            (30, 30, 20),
            "about ten minutes for the first checkpoint load"
        );
        let liveness = p.liveness_probe.as_ref().unwrap();
        assert_eq!(liveness.http.as_ref().unwrap().path, "/sdapi/v1/memory");
        assert_eq!(
            p.container
                .environment_variables
                .get(OWNER_ENV)
                .map(String::as_str),
            Some("uid-1")
        );
        assert_eq!(p.container.priority, Some(salad::Priority::High));
        assert!(p.autostart_policy);
    }

    #[test]
    fn the_recipe_puts_the_checkpoint_where_sdnext_loads_it() {
        let sdd = spec_from_yaml(SEED);
        let r = recipe(&sdd.spec, &resolved_secrets());
        assert_eq!(r.base_image, "saladtechnologies/sdnext:base");
        assert_eq!(r.layers.len(), 1);
        let LayerContent::File {
            path_in_image,
            mode,
        } = &r.layers[0].content
        else {
            panic!()
        };
        assert_eq!(
            path_in_image,
            "/webui/data/models/Stable-diffusion/dreamshaper_8.safetensors"
        );
        assert_eq!(*mode, 0o644);
        let cmd = r.config.cmd.as_ref().unwrap().join(" ");
        assert!(
            cmd.contains("--ckpt /webui/data/models/Stable-diffusion/dreamshaper_8.safetensors")
        );
        assert!(cmd.contains("--server-name [::]"));
    }

    #[test]
    fn a_disabled_probe_is_left_out_and_overrides_merge_with_defaults() {
        let mut sdd = spec_from_yaml(SEED);
        sdd.spec.probes.readiness = Some(ProbeSpec {
            disabled: Some(true),
            ..Default::default()
        });
        sdd.spec.probes.liveness = Some(ProbeSpec {
            period_seconds: Some(45),
            ..Default::default()
        });
        let gpu = GpuChoice {
            ids: vec![],
            hourly_price: None,
        };
        let p = group_definition(&sdd.spec, "u", "i", &gpu, &resolved_secrets());
        assert!(p.readiness_probe.is_none());
        let l = p.liveness_probe.unwrap();
        assert_eq!(l.period_seconds, 45);
        assert_eq!(l.failure_threshold, 3, "unset fields keep the default");
    }

    const COMFY: &str = include_str!("../../../manifests/examples/comfyui-dreamshaper.yaml");

    fn env_json(recipe: &Recipe, key: &str) -> serde_json::Value {
        serde_json::from_str(recipe.config.env.get(key).expect(key)).unwrap()
    }

    #[test]
    fn a_fetched_model_is_no_layer_but_an_entry_the_start_fetches_and_verifies() {
        let sdd = spec_from_yaml(COMFY);
        let recipe = recipe(&sdd.spec, &resolved_secrets());
        assert!(recipe.layers.is_empty(), "{:?}", recipe.layers);
        let list = env_json(&recipe, profile::FETCH_LIST_ENV);
        assert_eq!(
            list[0]["path"],
            "/opt/ComfyUI/models/checkpoints/dreamshaper_8.safetensors"
        );
        assert_eq!(
            list[0]["sha256"],
            "879db523c30d3b9017143d56705015e15a2cb5628762c11d086fed9538abd7fd"
        );
        assert_eq!(list[0]["host"], "https://civitai.com");
        assert!(list[0]["tokenEnv"].is_null(), "no token was asked for");
        assert_eq!(
            recipe
                .config
                .env
                .get(profile::FETCH_SCRIPT_ENV)
                .map(String::as_str),
            Some(profile::FETCH_SCRIPT)
        );
        let entry = recipe.config.entrypoint.clone().expect("our start");
        assert!(entry[2].contains(profile::FETCH_STEP));
        assert_eq!(
            recipe.config.cmd, None,
            "comfyui-api's own command runs after it"
        );
    }

    #[test]
    fn the_comfyui_warmup_loads_the_default_checkpoint_before_health_passes() {
        let mut sdd = spec_from_yaml(COMFY);
        let recipe = recipe(&sdd.spec, &resolved_secrets());
        assert_eq!(
            recipe
                .config
                .env
                .get("WARMUP_PROMPT_FILE")
                .map(String::as_str),
            Some(profile::COMFYUI_WARMUP_FILE)
        );
        let warmup = env_json(&recipe, profile::WARMUP_PROMPT_ENV);
        let loader = warmup
            .as_object()
            .unwrap()
            .values()
            .find(|n| n["class_type"] == "CheckpointLoaderSimple")
            .expect("comfyui-api reads the checkpoint from this node");
        assert_eq!(loader["inputs"]["ckpt_name"], "dreamshaper_8.safetensors");
        // Baked instead: the same warm-up, and the model is a layer.
        sdd.spec.models[0].delivery = ModelDelivery::Baked;
        sdd.spec.models[0].source.size_bytes = None;
        let baked = super::recipe(&sdd.spec, &resolved_secrets());
        assert_eq!(baked.layers.len(), 1);
        assert!(!baked.config.env.contains_key(profile::FETCH_LIST_ENV));
        assert_eq!(
            baked.config.env.get(profile::WARMUP_PROMPT_ENV),
            recipe.config.env.get(profile::WARMUP_PROMPT_ENV)
        );
    }

    #[test]
    fn only_a_fetch_token_reaches_the_container_and_the_window_covers_the_download() {
        let mut sdd = spec_from_yaml(COMFY);
        sdd.spec.models[0].source.fetch_auth_secret_ref = Some(salad_sd_api::SecretKeyRef {
            name: "civitai-read".into(),
            key: "token".into(),
        });
        let mut secrets = resolved_secrets();
        secrets
            .model_tokens
            .insert("extension-x".into(), "build-token".into());
        secrets
            .fetch_tokens
            .insert("dreamshaper_8.safetensors".into(), "fetch-token".into());
        let gpu = GpuChoice {
            ids: vec!["g".into()],
            hourly_price: Some(0.2),
        };
        let proto = group_definition(&sdd.spec, "uid", "r/i@sha256:1", &gpu, &secrets);
        let env = &proto.container.environment_variables;
        let name = fetch_token_env("dreamshaper_8.safetensors");
        assert_eq!(env.get(&name).map(String::as_str), Some("fetch-token"));
        assert!(!env.values().any(|v| v == "build-token"));
        let list = env_json(&recipe(&sdd.spec, &secrets), profile::FETCH_LIST_ENV);
        assert_eq!(list[0]["tokenEnv"], name.as_str());

        let startup = proto.startup_probe.expect("ComfyUI waits for /health");
        let window =
            startup.initial_delay_seconds + startup.failure_threshold * startup.period_seconds;
        let base = ServerProfile::of(&sdd.spec.server)
            .startup_probe(3000)
            .unwrap();
        assert!(
            window as i64 >= profile::window_seconds(&base) + 256,
            "2.13 GB at 2 min/GB: {window} s"
        );
    }

    #[test]
    fn with_the_queue_the_image_gets_the_pinned_worker_and_starts_it_beside_the_server() {
        let mut sdd = spec_from_yaml(SEED);
        let plain = recipe(&sdd.spec, &resolved_secrets());
        assert!(
            !plain.layers.iter().any(|l| l.name.contains("queue")),
            "no queue, no worker layer"
        );
        sdd.spec.queue.enabled = true;
        sdd.spec.queue.worker.sha256 = Some("AB".repeat(32));
        let r = recipe(&sdd.spec, &resolved_secrets());
        let worker = r
            .layers
            .iter()
            .find(|l| l.name == "salad-http-job-queue-worker")
            .expect("a worker layer");
        assert_eq!(worker.source.url, profile::QUEUE_WORKER_URL);
        assert_eq!(
            worker.source.sha256.as_deref(),
            Some("ab".repeat(32).as_str()),
            "verified like a model, hex lowercased"
        );
        assert_eq!(
            worker.content,
            LayerContent::Archive {
                dest_dir: "/usr/local/bin".into(),
                strip_components: 0
            }
        );
        let start = &r.config.entrypoint.as_ref().expect("SD.Next's start")[2];
        assert!(
            start.contains(&format!(
                "salad_sd_supervise {} runuser",
                profile::QUEUE_WORKER_PATH
            )),
            "{start}"
        );
        assert_ne!(
            r.hash("sha256:base"),
            plain.hash("sha256:base"),
            "a new image"
        );

        // A mirror replaces the URL and its sha256 the default's.
        sdd.spec.queue.worker.url = Some("https://mirror.example/w-0.7.0.tar.gz".into());
        sdd.spec.queue.worker.sha256 = Some("cd".repeat(32));
        let r = recipe(&sdd.spec, &resolved_secrets());
        let worker = r
            .layers
            .iter()
            .find(|l| l.name == "salad-http-job-queue-worker")
            .unwrap();
        assert_eq!(worker.source.url, "https://mirror.example/w-0.7.0.tar.gz");
        assert_eq!(worker.source.sha256, Some("cd".repeat(32)));
    }
}
