//! Checks of a spec that need no I/O. The API server enforces the schema and CEL rules at
//! admission; this repeats them for `salad-sd apply -f` (no API server) and adds what a schema
//! cannot say (memory as a quantity, model directories).

use std::collections::BTreeSet;

use crate::names::is_valid_group_name;
use crate::profile::ServerProfile;
use crate::quantity;
use crate::spec::*;

/// vCPUs a SaladCloud container may request (`CreateContainerResourceRequirements.cpu`).
pub const CPU_MIN: i32 = 1;
/// See [`CPU_MIN`].
pub const CPU_MAX: i32 = 1024;
/// Memory in MB (MiB) a SaladCloud container may request
/// (`CreateContainerResourceRequirements.memory`).
pub const MEMORY_MIN_MB: u64 = 1024;
/// See [`MEMORY_MIN_MB`]: 1073741824 MB, 1024Ti.
pub const MEMORY_MAX_MB: u64 = 1_073_741_824;

/// One problem with a spec, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// JSON path of the field, e.g. `spec.resources.memory`.
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems of a spec, empty when it is valid.
pub fn validate(spec: &StableDiffusionDeploymentSpec) -> Vec<Invalid> {
    let mut out = Vec::new();
    let mut bad = |field: &str, message: String| {
        out.push(Invalid {
            field: format!("spec.{field}"),
            message,
        })
    };

    let sc = &spec.saladcloud;
    for (field, value) in [
        ("saladcloud.organization", &sc.organization),
        ("saladcloud.project", &sc.project),
    ] {
        if !is_valid_group_name(value) {
            bad(
                field,
                format!(
                    "`{value}` is not a SaladCloud name: 2-63 lowercase letters, digits and dashes, starting with a letter"
                ),
            );
        }
    }
    if let Some(name) = &sc.container_group_name {
        if !is_valid_group_name(name) {
            bad(
                "saladcloud.containerGroupName",
                format!(
                    "`{name}` is not a SaladCloud name: 2-63 lowercase letters, digits and dashes, starting with a letter"
                ),
            );
        }
        if spec.rollout.strategy == RolloutStrategy::BlueGreen {
            bad("rollout.strategy", "BlueGreen needs a new container group name for every rollout: remove saladcloud.containerGroupName or use strategy Recreate".into());
        }
    } else if sc.adopt == Some(true) {
        bad(
            "saladcloud.adopt",
            "adopt needs saladcloud.containerGroupName: name the existing container group to adopt"
                .into(),
        );
    }

    let profile = ServerProfile::of(&spec.server);
    if spec.server.kind == ServerKind::Custom && spec.server.base_image.is_none() {
        bad("server.baseImage", "server.kind Custom needs server.baseImage (there is no default image for a custom server)".into());
    }
    for problem in server_problems(&spec.server) {
        bad(problem.0, problem.1.into());
    }
    if matches!(
        spec.server.kind,
        ServerKind::SdNext | ServerKind::Automatic1111
    ) && !spec.models.iter().any(|m| m.kind == ModelKind::Checkpoint)
    {
        bad("models", "SDNext and Automatic1111 need a model of kind Checkpoint: without one SD.Next has nothing to load and Automatic1111 would download SD 1.5 at every start".into());
    }
    if !(1..=65535).contains(&spec.server.port) {
        bad(
            "server.port",
            format!("{} is not a TCP port (1-65535)", spec.server.port),
        );
    }
    let mut env_names = BTreeSet::new();
    for (i, env) in spec.server.env.iter().enumerate() {
        if !env_names.insert(env.name.as_str()) {
            bad(
                &format!("server.env[{i}].name"),
                format!("`{}` is set twice", env.name),
            );
        }
        if env.value.is_some() == env.value_from.is_some() {
            bad(
                &format!("server.env[{i}]"),
                "set exactly one of value or valueFrom".into(),
            );
        }
        if let Some(v) = &env.value
            && !(1..=1000).contains(&v.chars().count())
        {
            bad(
                &format!("server.env[{i}].value"),
                "SaladCloud takes values of 1 to 1000 characters".into(),
            );
        }
    }

    let mut model_names = BTreeSet::new();
    let mut defaults = 0;
    for (i, m) in spec.models.iter().enumerate() {
        if !model_names.insert(m.name.as_str()) {
            bad(
                &format!("models[{i}].name"),
                format!("model names must be unique; `{}` is used twice", m.name),
            );
        }
        if m.name.contains('/') || m.name.starts_with('.') || m.name.is_empty() {
            bad(
                &format!("models[{i}].name"),
                format!("`{}` must be a plain file name", m.name),
            );
        }
        if let Some(accepted) = accepted_extensions(m.kind)
            && !accepted.iter().any(|ext| m.name.ends_with(ext))
        {
            bad(
                &format!("models[{i}].name"),
                format!(
                    "`{}`: a {:?} file name must end in {}: the servers list these files by extension and ignore others",
                    m.name,
                    m.kind,
                    accepted.join(", ")
                ),
            );
        }
        if m.kind == ModelKind::Other && m.path.is_none() {
            bad(
                &format!("models[{i}].path"),
                "models of kind Other need path: the absolute directory to put the file in".into(),
            );
        }
        if m.path.is_none() && profile.model_dir(m.kind).is_none() {
            bad(
                &format!("models[{i}].path"),
                format!(
                    "{:?} has no default directory for {:?}; set path",
                    spec.server.kind, m.kind
                ),
            );
        }
        if let Some(p) = &m.path
            && (!p.starts_with('/') || p.split('/').any(|s| s == ".."))
        {
            bad(
                &format!("models[{i}].path"),
                format!("`{p}` must be an absolute path without `..`"),
            );
        }
        if m.default == Some(true) {
            defaults += 1;
            if m.kind != ModelKind::Checkpoint {
                bad(
                    &format!("models[{i}].default"),
                    "default: true is only allowed on models of kind Checkpoint".into(),
                );
            }
        }
        check_source(&mut bad, &format!("models[{i}].source"), &m.source);
        check_delivery(&mut bad, i, m, spec.server.kind);
    }
    if defaults > 1 {
        bad("models", "at most one model may set default: true; it becomes the --ckpt the server loads at start".into());
    }
    let mut ext_names = BTreeSet::new();
    for (i, e) in spec.extensions.iter().enumerate() {
        if !ext_names.insert(e.name.as_str()) {
            bad(
                &format!("extensions[{i}].name"),
                format!("extension names must be unique; `{}` is used twice", e.name),
            );
        }
        check_source(&mut bad, &format!("extensions[{i}].source"), &e.source);
        if e.source.fetch_auth_secret_ref.is_some() {
            bad(
                &format!("extensions[{i}].source.fetchAuthSecretRef"),
                "extensions are always baked; source.fetchAuthSecretRef is only for models with delivery FetchedAtStart".into(),
            );
        }
    }

    if spec.image.repository.is_empty() || spec.image.repository.contains('@') {
        bad(
            "image.repository",
            "give a repository without tag or digest, e.g. ghcr.io/acme/sd".into(),
        );
    }
    if !(0..=500).contains(&spec.replicas) {
        bad(
            "replicas",
            format!("{} is outside SaladCloud's 0-500", spec.replicas),
        );
    }
    check_scaling(&mut bad, spec);
    let r = &spec.resources;
    if !(CPU_MIN..=CPU_MAX).contains(&r.cpu) {
        bad(
            "resources.cpu",
            format!(
                "{} vCPU is outside SaladCloud's {CPU_MIN}-{CPU_MAX} vCPU",
                r.cpu
            ),
        );
    }
    match quantity::to_megabytes(&r.memory) {
        Ok(mb) if !(MEMORY_MIN_MB..=MEMORY_MAX_MB).contains(&mb) => bad(
            "resources.memory",
            format!(
                "{} ({mb} MB) is outside SaladCloud's {MEMORY_MIN_MB}-{MEMORY_MAX_MB} MB (a quantity from 1024Mi to 1024Ti)",
                r.memory.0
            ),
        ),
        Ok(_) => {}
        Err(e) => bad("resources.memory", e.to_string()),
    }
    if r.gpu_classes.is_empty() {
        bad(
            "resources.gpuClasses",
            "name at least one GPU class, e.g. `RTX 3060 Ti`".into(),
        );
    }
    if let Some(storage) = &r.storage {
        match quantity::to_bytes(storage, 1) {
            Ok(b) if !((1 << 30)..=250 * (1 << 30)).contains(&b) => bad(
                "resources.storage",
                format!("{} is outside SaladCloud's 1Gi-250Gi", storage.0),
            ),
            Ok(_) => {}
            Err(e) => bad("resources.storage", e.to_string()),
        }
    }
    if let Some(shm) = &r.shm_size {
        match quantity::to_megabytes(shm) {
            Ok(mb) if mb < 64 => bad(
                "resources.shmSize",
                format!("{} is below SaladCloud's 64 MB minimum", shm.0),
            ),
            Ok(_) => {}
            Err(e) => bad("resources.shmSize", e.to_string()),
        }
    }
    for (i, c) in spec.country_codes.iter().enumerate() {
        if !crate::country::is_country_code(c) {
            bad(
                &format!("countryCodes[{i}]"),
                format!(
                    "`{c}` is not a country code SaladCloud accepts (lowercase ISO 3166-1 alpha-2, such as `us`)"
                ),
            );
        }
    }
    let g = &spec.gateway;
    if g.enabled
        && let Some(port) = g.port
        && port != spec.server.port
    {
        bad("gateway.port", "gateway.port must equal server.port (the gateway forwards to the port the server listens on); leave gateway.port unset to follow server.port".into());
    }
    for (field, v) in [
        (
            "gateway.clientRequestTimeoutMs",
            g.client_request_timeout_ms,
        ),
        (
            "gateway.serverResponseTimeoutMs",
            g.server_response_timeout_ms,
        ),
    ] {
        if let Some(v) = v
            && !(1..=100_000).contains(&v)
        {
            bad(field, format!("{v} ms is outside SaladCloud's 1-100000"));
        }
    }
    for (name, probe) in [
        ("startup", &spec.probes.startup),
        ("liveness", &spec.probes.liveness),
        ("readiness", &spec.probes.readiness),
    ] {
        let Some(p) = probe else { continue };
        let handlers = p.http.is_some() as u8 + p.tcp.is_some() as u8 + p.exec.is_some() as u8;
        if handlers > 1 {
            bad(
                &format!("probes.{name}"),
                "a probe has at most one of http, tcp or exec".into(),
            );
        }
        for (field, value, lo, hi) in [
            ("initialDelaySeconds", p.initial_delay_seconds, 0, 1200),
            ("periodSeconds", p.period_seconds, 1, 120),
            ("timeoutSeconds", p.timeout_seconds, 1, 60),
            ("successThreshold", p.success_threshold, 1, 10),
            ("failureThreshold", p.failure_threshold, 1, 20),
        ] {
            if let Some(v) = value
                && !(lo..=hi).contains(&v)
            {
                bad(
                    &format!("probes.{name}.{field}"),
                    format!("{v} is outside SaladCloud's {lo}-{hi}"),
                );
            }
        }
    }
    out
}

/// File name endings each model kind is listed by (`None`: any name).
pub fn accepted_extensions(kind: ModelKind) -> Option<&'static [&'static str]> {
    match kind {
        ModelKind::Checkpoint => Some(&[".safetensors", ".ckpt"]),
        ModelKind::Lora | ModelKind::Vae => Some(&[".safetensors", ".ckpt", ".pt"]),
        ModelKind::Embedding => Some(&[".safetensors", ".pt", ".bin"]),
        ModelKind::ControlNet => Some(&[".safetensors", ".pth", ".pt", ".ckpt", ".bin"]),
        ModelKind::Other => None,
    }
}

/// What is wrong with the server section, as `(field, message)`.
fn server_problems(server: &ServerSpec) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if server.kind == ServerKind::SdNext {
        if server
            .args
            .iter()
            .any(|a| a == "--api-only" || a.starts_with("--api-only="))
        {
            out.push(("server.args", "SD.Next's --api-only listens on IPv4 only (it ignores --server-name), so SaladCloud's gateway and probes cannot reach it; remove it"));
        }
        if server.args.iter().any(|a| a == "--no-download") {
            out.push(("server.args", "--no-download exists only in old SD.Next builds and newer ones exit at start on an unknown flag; remove it"));
        }
    }
    if server.layout == SdNextLayout::Upstream && server.backend == SdNextBackend::Original {
        out.push(("server.backend", "server.backend Original does not exist in upstream's current SD.Next image (layout Upstream); use Diffusers or layout SaladBase"));
    }
    if server.kind == ServerKind::Automatic1111 && server.port == crate::profile::A1111_INNER_PORT {
        out.push(("server.port", "server.port 7859 is where Automatic1111 itself listens inside the container (socat forwards IPv6 to it); pick another port"));
    }
    out
}

fn check_source(bad: &mut impl FnMut(&str, String), field: &str, source: &ModelSource) {
    if let Some(sha) = &source.sha256
        && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
    {
        bad(
            &format!("{field}.sha256"),
            "sha256 is 64 hex characters".into(),
        );
    }
    if !source.url.contains("://") {
        bad(
            &format!("{field}.url"),
            format!("`{}` is not a URL", source.url),
        );
    }
}

/// A fetched model is downloaded by the container: it needs the pinned sha256 the fetcher
/// verifies, its size (the startup window), a URL the container can fetch, a start that runs
/// the fetcher, and its token from a Secret named for the container, never the build's.
fn check_delivery(bad: &mut impl FnMut(&str, String), i: usize, m: &ModelSpec, kind: ServerKind) {
    let field = format!("models[{i}]");
    if m.delivery != ModelDelivery::FetchedAtStart {
        if m.source.fetch_auth_secret_ref.is_some() {
            bad(
                &format!("{field}.source.fetchAuthSecretRef"),
                "source.fetchAuthSecretRef is only for delivery FetchedAtStart; a baked model's token is source.authSecretRef".into(),
            );
        }
        return;
    }
    if m.source.sha256.is_none() {
        bad(
            &format!("{field}.source.sha256"),
            "a model with delivery FetchedAtStart needs source.sha256: the container verifies the download against it and refuses to start on a mismatch".into(),
        );
    }
    if m.source.size_bytes.is_none_or(|b| b < 1) {
        bad(
            &format!("{field}.source.sizeBytes"),
            "a model with delivery FetchedAtStart needs source.sizeBytes: the startup probe's window and status.coldStart are computed from it".into(),
        );
    }
    if m.source.auth_secret_ref.is_some() {
        bad(
            &format!("{field}.source.authSecretRef"),
            "a model with delivery FetchedAtStart is downloaded by the container, not the build: name its token in source.fetchAuthSecretRef (it may be the same Secret) instead of source.authSecretRef".into(),
        );
    }
    if !(m.source.url.starts_with("https://") || m.source.url.starts_with("http://")) {
        bad(
            &format!("{field}.source.url"),
            "the container fetches over https:// (or http://) only".into(),
        );
    }
    if kind == ServerKind::Custom {
        bad(
            &format!("{field}.delivery"),
            "a Custom server keeps its own start, so nothing would fetch the model before it: use delivery Baked".into(),
        );
    }
}

/// Scheduled scaling and queue mode, with SaladCloud's limits (`ContainerGroupScalingAction`,
/// `ContainerGroupQueueAutoscaler`, `ContainerGroupQueueConnection`).
fn check_scaling(bad: &mut impl FnMut(&str, String), spec: &StableDiffusionDeploymentSpec) {
    use crate::scaling::{MAX_SCHEDULED_ACTIONS, cron_problem};
    let schedule = &spec.scaling.schedule;
    if schedule.len() > MAX_SCHEDULED_ACTIONS {
        bad(
            "scaling.schedule",
            format!(
                "{} actions; SaladCloud keeps at most {MAX_SCHEDULED_ACTIONS}",
                schedule.len()
            ),
        );
    }
    for (i, action) in schedule.iter().enumerate() {
        if let Some(problem) = cron_problem(&action.cron) {
            bad(&format!("scaling.schedule[{i}].cron"), problem);
        }
        if !(0..=500).contains(&action.replicas) {
            bad(
                &format!("scaling.schedule[{i}].replicas"),
                format!("{} is outside SaladCloud's 0-500", action.replicas),
            );
        }
    }
    let q = &spec.queue;
    if let Some(a) = &q.autoscaler {
        if !q.enabled {
            bad(
                "queue.autoscaler",
                "the queue autoscaler scales by queue length: set queue.enabled: true, or remove queue.autoscaler".into(),
            );
        }
        if !schedule.is_empty() {
            bad(
                "scaling.schedule",
                "a schedule and queue.autoscaler would both set the replica count; keep one (the autoscaler's minReplicas and maxReplicas bound it)".into(),
            );
        }
        for (field, value, lo, hi) in [
            ("minReplicas", a.min_replicas, 0, 100),
            ("maxReplicas", a.max_replicas, 1, 500),
            ("desiredQueueLength", a.desired_queue_length, 1, 100),
            ("pollingPeriodSeconds", a.polling_period_seconds, 15, 1800),
            (
                "maxUpscalePerMinute",
                a.max_upscale_per_minute.unwrap_or(1),
                1,
                100,
            ),
            (
                "maxDownscalePerMinute",
                a.max_downscale_per_minute.unwrap_or(1),
                1,
                100,
            ),
        ] {
            if !(lo..=hi).contains(&value) {
                bad(
                    &format!("queue.autoscaler.{field}"),
                    format!("{value} is outside SaladCloud's limits for {field}: {lo}-{hi}"),
                );
            }
        }
        if a.min_replicas > a.max_replicas {
            bad(
                "queue.autoscaler.minReplicas",
                format!(
                    "{} is above maxReplicas ({})",
                    a.min_replicas, a.max_replicas
                ),
            );
        }
    }
    if !q.enabled {
        return;
    }
    match spec.queue_job_path() {
        None => bad(
            "queue.path",
            "server.kind Custom has no default job endpoint: set queue.path to the HTTP path that takes a job's JSON".into(),
        ),
        Some(p) if !p.starts_with('/') || p.len() > 1024 => bad(
            "queue.path",
            format!("`{p}` must be an absolute HTTP path of at most 1024 characters"),
        ),
        Some(_) => {}
    }
    if !(1..=65535).contains(&spec.queue_port()) {
        bad(
            "queue.port",
            format!("{} is not a TCP port (1-65535)", spec.queue_port()),
        );
    }
    let w = &q.worker;
    if w.url.is_some() && w.sha256.is_none() {
        bad(
            "queue.worker",
            "a url needs its sha256: a worker from a mirror is pinned by its archive's sha256"
                .into(),
        );
    } else if let Some(why) = crate::profile::queue_worker_sha256_missing(w) {
        bad("queue.worker.sha256", why);
    }
    if let Some(url) = &w.url
        && !url.starts_with("https://")
        && !url.starts_with("http://")
    {
        bad("queue.worker.url", format!("`{url}` is not an http(s) URL"));
    }
    if let Some(sha) = &w.sha256
        && !(sha.len() == 64
            && sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        bad(
            "queue.worker.sha256",
            "give the archive's sha256 as 64 lowercase hex digits".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StableDiffusionDeployment;

    const COMFY: &str = include_str!("../../../manifests/examples/comfyui-dreamshaper.yaml");

    fn fields(spec: &StableDiffusionDeploymentSpec) -> Vec<String> {
        validate(spec).into_iter().map(|i| i.field).collect()
    }

    #[test]
    fn what_a_fetched_model_needs_at_admission() {
        struct Case {
            reason: &'static str,
            edit: fn(&mut StableDiffusionDeploymentSpec),
            field: Option<&'static str>,
        }
        for case in [
            Case {
                reason: "the example is valid",
                edit: |_| {},
                field: None,
            },
            Case {
                reason: "nothing to verify the download against",
                edit: |s| s.models[0].source.sha256 = None,
                field: Some("spec.models[0].source.sha256"),
            },
            Case {
                reason: "no size: no startup window, no cold-start numbers",
                edit: |s| s.models[0].source.size_bytes = None,
                field: Some("spec.models[0].source.sizeBytes"),
            },
            Case {
                reason: "the build's token would reach every instance by surprise",
                edit: |s| {
                    s.models[0].source.auth_secret_ref = Some(SecretKeyRef {
                        name: "civitai".into(),
                        key: "token".into(),
                    })
                },
                field: Some("spec.models[0].source.authSecretRef"),
            },
            Case {
                reason: "a token named for the container is the explicit way",
                edit: |s| {
                    s.models[0].source.fetch_auth_secret_ref = Some(SecretKeyRef {
                        name: "civitai".into(),
                        key: "token".into(),
                    })
                },
                field: None,
            },
            Case {
                reason: "a container token on a baked model has no use",
                edit: |s| {
                    s.models[0].delivery = ModelDelivery::Baked;
                    s.models[0].source.fetch_auth_secret_ref = Some(SecretKeyRef {
                        name: "civitai".into(),
                        key: "token".into(),
                    })
                },
                field: Some("spec.models[0].source.fetchAuthSecretRef"),
            },
            Case {
                reason: "a Custom server's start does not run the fetcher",
                edit: |s| {
                    s.server.kind = ServerKind::Custom;
                    s.server.base_image = Some("example.com/my/server:1".into());
                },
                field: Some("spec.models[0].delivery"),
            },
            Case {
                reason: "the container fetches over HTTP(S) only",
                edit: |s| s.models[0].source.url = "s3://bucket/model.safetensors".into(),
                field: Some("spec.models[0].source.url"),
            },
        ] {
            let mut sdd: StableDiffusionDeployment = serde_saphyr::from_str(COMFY).unwrap();
            (case.edit)(&mut sdd.spec);
            let got = fields(&sdd.spec);
            match case.field {
                None => assert!(got.is_empty(), "{}: {got:?}", case.reason),
                Some(f) => assert!(got.iter().any(|g| g == f), "{}: {got:?}", case.reason),
            }
        }
    }

    #[test]
    fn scaling_and_queue_limits_are_saladclouds() {
        use crate::scaling::{QueueAutoscalerSpec, ScheduledReplicas};
        let base = || {
            serde_saphyr::from_str::<StableDiffusionDeployment>(COMFY)
                .unwrap()
                .spec
        };
        let autoscaler = |min, max| QueueAutoscalerSpec {
            min_replicas: min,
            max_replicas: max,
            desired_queue_length: 1,
            polling_period_seconds: 30,
            max_upscale_per_minute: None,
            max_downscale_per_minute: None,
        };
        let messages = |s: &StableDiffusionDeploymentSpec| -> Vec<String> {
            validate(s).iter().map(ToString::to_string).collect()
        };
        let mut s = base();
        s.queue.enabled = true;
        s.queue.autoscaler = Some(autoscaler(0, 500));
        let m = messages(&s).join("\n");
        assert!(
            m.contains("spec.queue.worker.sha256")
                && m.contains(crate::profile::QUEUE_WORKER_URL)
                && m.contains("sha256sum"),
            "no sha256 is pinned for the default worker: the message names the release and how to compute it: {m}"
        );
        s.queue.worker.sha256 = Some("ab".repeat(32));
        assert_eq!(messages(&s), Vec::<String>::new(), "0 to 500 is allowed");

        s.queue.autoscaler = Some(autoscaler(101, 600));
        let m = messages(&s).join("\n");
        assert!(m.contains("spec.queue.autoscaler.minReplicas: 101 is outside SaladCloud's limits for minReplicas: 0-100"), "{m}");
        assert!(m.contains("maxReplicas: 1-500"), "{m}");

        let mut a = autoscaler(0, 3);
        a.polling_period_seconds = 5;
        a.max_upscale_per_minute = Some(0);
        s.queue.autoscaler = Some(a);
        let m = messages(&s).join("\n");
        assert!(m.contains("pollingPeriodSeconds: 15-1800"), "{m}");
        assert!(m.contains("maxUpscalePerMinute: 1-100"), "{m}");

        let mut s = base();
        s.scaling.schedule = (0..101)
            .map(|i| ScheduledReplicas {
                cron: format!("{} 8 * * *", i % 60),
                replicas: 1,
            })
            .collect();
        assert!(fields(&s).contains(&"spec.scaling.schedule".to_string()));
        s.scaling.schedule.truncate(2);
        s.scaling.schedule[1].cron = "0 25 * * *".into();
        s.scaling.schedule[0].replicas = 501;
        assert_eq!(
            fields(&s),
            vec![
                "spec.scaling.schedule[0].replicas",
                "spec.scaling.schedule[1].cron"
            ]
        );

        let mut s = base();
        s.queue.enabled = true;
        s.queue.path = Some("prompt".into());
        s.queue.worker.url = Some("ftp://mirror/w.tar.gz".into());
        assert_eq!(
            fields(&s),
            vec![
                "spec.queue.path",
                "spec.queue.worker",
                "spec.queue.worker.url"
            ]
        );
        // A mirror with its sha256, or the default release pinned by its sha256 alone.
        s.queue.path = None;
        s.queue.worker.url = Some("https://mirror.example/w.tar.gz".into());
        s.queue.worker.sha256 = Some("ab".repeat(32));
        assert_eq!(fields(&s), Vec::<String>::new());
        s.queue.worker.url = None;
        assert_eq!(fields(&s), Vec::<String>::new());
        s.queue.worker.sha256 = Some("AB".repeat(32));
        s.queue.worker.url = Some("ftp://mirror/w.tar.gz".into());
        s.queue.path = Some("prompt".into());
        assert_eq!(
            fields(&s),
            vec![
                "spec.queue.path",
                "spec.queue.worker.url",
                "spec.queue.worker.sha256"
            ]
        );
    }
}
