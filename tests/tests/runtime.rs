//! The built image really starts (`make test-runtime`): for each server kind, `salad-sd`'s
//! builder bakes models into a stand-in base that starts the way upstream's image does, the
//! image is pulled back from a real `docker-registry`, mounted as overlayfs and run by `runc`
//! with exactly the process the container group would run, and SaladCloud's probes are run
//! against it with the group's own settings. Needs root and runc; ignored by `make test`.
//!
//! Each kind prints one JSON line:
//! `{"kind":…,"startup_probe_passed_s":…,"models_seen":…,"start_upper_bytes":…}`.

use std::time::{Duration, Instant};

use salad_sd_api::StableDiffusionDeployment;
use salad_sd_controller::desired::{GpuChoice, group_definition, recipe};
use salad_sd_controller::secrets::ResolvedSecrets;
use salad_sd_e2e::node::containerd::{self, Containerd};
use salad_sd_e2e::node::docker::{self, Docker};
use salad_sd_e2e::node::oci::Registry;
use salad_sd_e2e::node::probes::{self, Outcome, Target};
use salad_sd_e2e::node::runtime::{self, Container, ImageRootfs, Isolation, Launch};
use salad_sd_e2e::node::standin::{StandIn, missing_host_programs, push_standin};
use salad_sd_e2e::node::tree;
use salad_sd_image::{Builder, BuilderOptions, SourcePolicy};
use salad_sd_testkit::{LocalRegistry, ModelServer, ModelServerOptions, generated_sha256};
use serde_json::{Value, json};

const CHECKPOINT_SIZE: u64 = 100 << 20;
const SMALL: u64 = 256 << 10;
const ONE_MIB: u64 = 1 << 20;

/// The models every kind bakes: (name, kind, size, what the server lists it as).
const MODELS: &[(&str, &str, u64, &str)] = &[
    (
        "dreamshaper_8.safetensors",
        "Checkpoint",
        CHECKPOINT_SIZE,
        "checkpoint",
    ),
    ("detail.safetensors", "Lora", SMALL, "lora"),
    ("vae-ft-mse.safetensors", "VAE", SMALL, "vae"),
    ("easynegative.pt", "Embedding", 16 << 10, "embedding"),
    ("control_canny.pth", "ControlNet", SMALL, "controlnet"),
];

struct Case {
    name: &'static str,
    standin: StandIn,
    /// Extra YAML lines under `server:`.
    server: &'static str,
    /// Run the base image's own (upstream) entrypoint instead of ours.
    upstream_launch: bool,
    /// The checkpoint is fetched by the container at start instead of baked.
    fetch: Fetch,
    /// What runs the container.
    runtime: Runtime,
}

/// What runs the built image. Either way, containerd pulls it too and must unpack the root
/// filesystem the test node unpacks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Runtime {
    /// The test node: our unpack, overlayfs, `runc` with the process [`Launch`] derives.
    TestNode,
    /// containerd (`ctr run`): its snapshot, its process from the image config.
    Containerd,
    /// Docker Engine (`docker run`): moby's own pull and overlay2 layers (compared with the
    /// test node's too), its process from the image config.
    Docker,
}

/// How the checkpoint reaches the container.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fetch {
    /// Baked into the image (the default).
    Baked,
    /// `delivery: FetchedAtStart` with the right sha256.
    Verified,
    /// `delivery: FetchedAtStart` pinned to a sha256 the download does not have.
    WrongSha256,
}

struct Run {
    startup: Outcome,
    liveness: Option<Outcome>,
    readiness: Option<Outcome>,
    seen: Value,
    upper_bytes: u64,
    upper_files: Vec<(String, u64)>,
    ipv4_refused: bool,
    logs: String,
    /// HTTP status and body of the smoke test's request.
    smoke_answer: Option<(u16, Value)>,
    /// Paths of the root filesystem containerd and the test node agreed on.
    rootfs_paths: usize,
    /// The same for Docker, in a case Docker runs.
    docker_rootfs_paths: Option<usize>,
}

/// What the probes and the requests after them found.
struct Probed {
    startup: Outcome,
    liveness: Option<Outcome>,
    readiness: Option<Outcome>,
    seen: Value,
    smoke_answer: Option<(u16, Value)>,
    /// What the start wrote (measured when the startup probe ended).
    upper_files: Vec<(String, u64)>,
    /// Whether 127.0.0.1 refused the port while the server ran.
    ipv4_refused: bool,
}

fn skip_reason(runner: Runtime) -> Option<String> {
    let mut why = runtime::unavailable().or_else(containerd::unavailable);
    if runner == Runtime::Docker {
        why = why.or_else(docker::unavailable);
    }
    let missing = missing_host_programs();
    if why.is_none() && !missing.is_empty() {
        why = Some(format!(
            "the stand-in images need {} (make deps installs them)",
            missing.join(", ")
        ));
    }
    why
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("[::]:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn run_case(case: &Case) -> Option<Run> {
    if let Some(why) = skip_reason(case.runtime) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the runtime test: {why}"
        );
        eprintln!("SKIPPED runtime/{}: {why}", case.name);
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = LocalRegistry::start(&dir.path().join("registry"))
        .await
        .expect("start /usr/bin/docker-registry");
    let reg = registry.host_port();
    let base_repo = format!("standin/{}", case.name);
    push_standin(&reg, &base_repo, "1", case.standin)
        .await
        .expect("push the stand-in base");
    let models = ModelServer::start(ModelServerOptions::default())
        .await
        .expect("model server");
    let mut model_yaml = String::new();
    for (i, (name, kind, size, _)) in MODELS.iter().enumerate() {
        let path = format!("models/{name}");
        models.add_generated(&path, *size, i as u64 + 1);
        let fetched = *kind == "Checkpoint" && case.fetch != Fetch::Baked;
        let sha = if fetched && case.fetch == Fetch::WrongSha256 {
            "0".repeat(64)
        } else {
            generated_sha256(*size, i as u64 + 1)
        };
        model_yaml.push_str(&format!(
            "    - name: {name}\n      kind: {kind}\n      source:\n        url: {}\n        sha256: \"{sha}\"\n",
            models.url(&path),
        ));
        if fetched {
            model_yaml.push_str(&format!(
                "        sizeBytes: {size}\n      delivery: FetchedAtStart\n"
            ));
        }
    }
    let port = free_port();
    let yaml = format!(
        r#"
apiVersion: salad-sd.dev/v1alpha1
kind: StableDiffusionDeployment
metadata:
  name: rt-{name}
  namespace: default
  uid: 6c1a4f0e-0000-4000-8000-000000000001
spec:
  saladcloud:
    organization: acme
    project: runtime
    apiKeySecretRef:
      name: salad-api-key
      key: apiKey
  server:
    baseImage: {reg}/{base_repo}:1
    port: {port}
{server}
  models:
{model_yaml}
  image:
    repository: {reg}/built/{name}
  resources:
    cpu: 4
    memory: 12Gi
    gpuClasses: [RTX 3060 Ti]
  gateway:
    enabled: true
"#,
        name = case.name,
        server = case.server,
    );
    let sdd: StableDiffusionDeployment = serde_saphyr::from_str(&yaml).expect("spec");
    let problems = salad_sd_api::validate::validate(&sdd.spec);
    assert!(problems.is_empty(), "{}: {problems:?}", case.name);

    let secrets = ResolvedSecrets {
        api_key: None,
        env: Default::default(),
        model_tokens: Default::default(),
        fetch_tokens: Default::default(),
        push_credentials: Default::default(),
        pull_auth: None,
    };
    let builder = Builder::new(BuilderOptions {
        insecure_registries: vec![reg.clone()],
        source_policy: SourcePolicy {
            allow_private_sources: true,
            allow_file_sources: false,
        },
        ..BuilderOptions::default()
    })
    .expect("builder");
    let built = builder
        .build(
            &recipe(&sdd.spec, &secrets),
            &format!("{reg}/built/{}", case.name),
        )
        .await
        .expect("build");
    let gpu = GpuChoice {
        ids: vec!["00000000-0000-4000-8000-000000000000".into()],
        hourly_price: None,
    };
    let mut group = group_definition(&sdd.spec, "uid", &built.reference, &gpu, &secrets);

    let (image, layers) = Registry::new(&reg)
        .pull(&format!("built/{}", case.name), &built.digest, dir.path())
        .await
        .expect("pull the built image back");
    if case.upstream_launch {
        // What SD.Next's base does on its own: its entrypoint (chown -R) with our arguments.
        let mut command: Vec<String> = vec![
            "/bin/bash".into(),
            "-c".into(),
            "${INSTALLDIR}/entrypoint.sh \"$0\" \"$@\"".into(),
        ];
        command.extend(image.cmd.iter().cloned());
        group.container.command = Some(command);
    }
    let ctd = Containerd::start(&dir.path().join("containerd")).expect("start containerd");
    let reference = format!("{reg}/built/{}@{}", case.name, built.digest);
    let image_rootfs = ImageRootfs::mount(&layers, &dir.path().join("node-image"))
        .expect("the test node's unpack");
    // Hashed once: containerd's unpack and (in a Docker case) Docker's are compared with it.
    let ours = tree::tree(image_rootfs.path()).expect("the test node's root filesystem");
    let rootfs_paths = ours.len();
    assert_containerd_unpacks_the_same(&ctd, &reference, &ours, dir.path());
    let id = format!("salad-sd-rt-{}-{}", case.name, std::process::id());
    let mut docker_rootfs_paths = None;
    let (probed, logs) = match case.runtime {
        Runtime::TestNode => {
            let launch = Launch::of(&image, &group.container).expect("launch");
            let mut container = Container::start_on(
                &id,
                &image_rootfs,
                &launch,
                &dir.path().join("node"),
                &Isolation::docker_default(),
            )
            .expect("container");
            let probed =
                probe_and_ask(&mut container, &group, &sdd, port, |c| c.upper_files()).await;
            (probed, container.logs())
        }
        Runtime::Containerd => {
            let mut container = ctd
                .run(
                    &reference,
                    &id,
                    &group.container.environment_variables,
                    group.container.command.as_deref(),
                    &dir.path().join("ctr-run.log"),
                )
                .expect("ctr run");
            let probed = probe_and_ask(&mut container, &group, &sdd, port, |c| {
                c.upper_files().expect("the container's writable snapshot")
            })
            .await;
            (probed, container.logs())
        }
        Runtime::Docker => {
            let docker = Docker::start(&dir.path().join("docker")).expect("start dockerd");
            let differences = docker
                .pull_and_compare(&reference, &ours, dir.path())
                .unwrap_or_else(|e| panic!("Docker pulls {reference}: {e}"));
            assert!(
                differences.is_empty(),
                "Docker unpacks {reference} differently from the test node:\n{}",
                differences.join("\n")
            );
            docker_rootfs_paths = Some(ours.len());
            let mut container = docker
                .run(
                    &reference,
                    &id,
                    &group.container.environment_variables,
                    group.container.command.as_deref(),
                )
                .expect("docker run");
            let probed = probe_and_ask(&mut container, &group, &sdd, port, |c| {
                c.upper_files().expect("the container's writable layer")
            })
            .await;
            (probed, container.logs())
        }
    };
    let upper_bytes = probed.upper_files.iter().map(|(_, n)| n).sum();
    Some(Run {
        startup: probed.startup,
        liveness: probed.liveness,
        readiness: probed.readiness,
        seen: probed.seen,
        upper_bytes,
        upper_files: probed.upper_files,
        ipv4_refused: probed.ipv4_refused,
        logs,
        smoke_answer: probed.smoke_answer,
        rootfs_paths,
        docker_rootfs_paths,
    })
}

/// containerd pulls `reference` and must unpack the root filesystem the test node unpacked
/// (`ours`), path by path.
fn assert_containerd_unpacks_the_same(
    ctd: &Containerd,
    reference: &str,
    ours: &tree::Tree,
    dir: &std::path::Path,
) {
    let differences = ctd
        .pull_and_compare(reference, ours, dir)
        .unwrap_or_else(|e| panic!("containerd pulls {reference}: {e}"));
    assert!(
        differences.is_empty(),
        "containerd unpacks {reference} differently from the test node:\n{}",
        differences.join("\n")
    );
}

/// Runs the group's probes against `container` as its node would (`upper_files`: what the start
/// wrote, read when the startup probe ends), then asks the server what it sees, sends the smoke
/// test's request and tries the port on IPv4, all while the container runs.
async fn probe_and_ask<T: Target>(
    container: &mut T,
    group: &saladcloud::model::ContainerGroupPrototype,
    sdd: &StableDiffusionDeployment,
    port: u16,
    upper_files: impl FnOnce(&T) -> Vec<(String, u64)>,
) -> Probed {
    let started = Instant::now();
    let startup_probe = group.startup_probe.clone().expect("a startup probe");
    let startup = probes::run(container, &startup_probe, started).await;
    let mut probed = Probed {
        startup,
        liveness: None,
        readiness: None,
        seen: Value::Null,
        smoke_answer: None,
        upper_files: upper_files(container),
        ipv4_refused: false,
    };
    probed.ipv4_refused = std::net::TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_err();
    if !matches!(probed.startup, Outcome::Passed(_)) {
        return probed;
    }
    if let Some(p) = &group.liveness_probe {
        probed.liveness = Some(probes::run(container, p, Instant::now()).await);
    }
    if let Some(p) = &group.readiness_probe {
        probed.readiness = Some(probes::run(container, p, Instant::now()).await);
    }
    probed.seen = reqwest::Client::new()
        .get(format!("http://[::1]:{port}/standin/seen"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the server answers on [::1]")
        .json()
        .await
        .expect("json");
    // The smoke test's request, in the server's own API, sent the way the gateway would.
    let smoke = salad_sd_controller::smoke::request(&sdd.spec, &Default::default())
        .expect("a smoke request");
    let answer = reqwest::Client::new()
        .post(format!("http://[::1]:{port}{}", smoke.path))
        .json(&smoke.body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("the server answers the smoke request");
    let status = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    probed.smoke_answer = Some((status, body));
    probed
}

/// Asserts what every kind must do and prints its JSON line.
fn assert_serves(case: &Case, run: &Run) {
    let Outcome::Passed(after) = &run.startup else {
        panic!(
            "{}: startup probe {:?}; container output:\n{}",
            case.name, run.startup, run.logs
        );
    };
    for (what, outcome) in [("liveness", &run.liveness), ("readiness", &run.readiness)] {
        if let Some(o) = outcome {
            assert!(
                matches!(o, Outcome::Passed(_)),
                "{}: {what} probe {o:?}\n{}",
                case.name,
                run.logs
            );
        }
    }
    let mut models_seen = 0;
    for (name, _, _, listed_as) in MODELS {
        let list = run.seen["models"][listed_as]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no {listed_as} list in {}", case.name, run.seen));
        assert!(
            list.iter().any(|n| n == name),
            "{}: the server does not see {name} among its {listed_as} files: {}",
            case.name,
            run.seen
        );
        models_seen += 1;
    }
    assert!(
        run.seen["loaded"]
            .as_str()
            .is_some_and(|p| p.ends_with("dreamshaper_8.safetensors")),
        "{}: loaded {}",
        case.name,
        run.seen["loaded"]
    );
    println!(
        "{}",
        json!({
            "kind": case.name,
            "runtime": format!("{:?}", case.runtime),
            "rootfs_paths_same_as_containerd": run.rootfs_paths,
            "rootfs_paths_same_as_docker": run.docker_rootfs_paths,
            "startup_probe_passed_s": (after.as_secs_f64() * 10.0).round() / 10.0,
            "models_seen": models_seen,
            "start_upper_bytes": run.upper_bytes,
            "hashed": run.seen["hashed"],
            "server_uid": run.seen["uid"],
        })
    );
}

fn assert_no_copy_up(case: &Case, run: &Run) {
    assert!(
        run.upper_bytes < ONE_MIB,
        "{}: the start wrote {} bytes to the overlay's upper layer (model files copied up?); largest: {:?}",
        case.name,
        run.upper_bytes,
        &run.upper_files[..run.upper_files.len().min(10)]
    );
}

impl Case {
    /// A kind started the way the operator starts it.
    fn ours(name: &'static str, standin: StandIn, server: &'static str) -> Self {
        Self {
            name,
            standin,
            server,
            upstream_launch: false,
            fetch: Fetch::Baked,
            runtime: Runtime::TestNode,
        }
    }

    /// The same, run by `runner` (containerd or Docker Engine).
    fn under(mut self, runner: Runtime) -> Self {
        self.runtime = runner;
        self
    }

    /// The same, with the checkpoint fetched at start.
    fn fetching(mut self, fetch: Fetch) -> Self {
        self.fetch = fetch;
        self
    }
}

/// Runs `case` and checks what every kind must do: serve, see its models, copy nothing up.
/// `None` when the machine cannot run containers (skipped).
async fn serves_without_copy_up(case: &Case) -> Option<Run> {
    let run = run_case(case).await?;
    assert_serves(case, &run);
    assert_no_copy_up(case, &run);
    Some(run)
}

#[tokio::test]
#[ignore = "runs built images with runc as root: make test-runtime"]
async fn sdnext_salad_base_starts_and_passes_its_probes() {
    let case = Case::ours(
        "sdnext-salad",
        StandIn::SdNextSalad,
        "    kind: SDNext\n    layout: SaladBase",
    );
    let Some(run) = serves_without_copy_up(&case).await else {
        return;
    };
    assert_eq!(run.seen["uid"], 1000, "SD.Next runs as webui-user");
    assert_eq!(run.seen["hashed"], false, "hashing is off by default");
    assert!(
        run.ipv4_refused,
        "SD.Next with --server-name [::] listens on IPv6 only; 127.0.0.1 must be refused"
    );
}

#[tokio::test]
#[ignore = "runs built images with runc as root: make test-runtime"]
async fn sdnext_upstream_layout_starts_and_passes_its_probes() {
    let case = Case::ours(
        "sdnext-upstream",
        StandIn::SdNextUpstream,
        "    kind: SDNext\n    layout: Upstream",
    );
    let Some(run) = serves_without_copy_up(&case).await else {
        return;
    };
    assert_eq!(run.seen["hashed"], false);
    assert!(run.ipv4_refused, "listens on IPv6 only");
}

#[tokio::test]
#[ignore = "runs built images with runc as root: make test-runtime"]
async fn a1111_starts_through_its_entrypoint_and_sees_every_model() {
    let case = Case::ours("a1111", StandIn::A1111, "    kind: Automatic1111");
    let Some(run) = serves_without_copy_up(&case).await else {
        return;
    };
    assert_eq!(run.seen["hashed"], false);
}

#[tokio::test]
#[ignore = "runs built images with runc as root: make test-runtime"]
async fn comfyui_starts_and_passes_its_probes() {
    let case = Case::ours("comfyui", StandIn::ComfyUi, "    kind: ComfyUI");
    let Some(run) = serves_without_copy_up(&case).await else {
        return;
    };
    assert!(
        run.logs.contains("warm-up workflow ran"),
        "/health passed after comfyui-api's warm-up loaded the checkpoint:\n{}",
        run.logs
    );
    assert_prompt_answered(&case, &run);
}

/// containerd runs the image with the process it derives from the image config itself (root,
/// as the base's config has no user), the group's command and variables on top; our start
/// drops to webui-user with `runuser` (its `/etc/passwd`, containerd's default capabilities),
/// and SD.Next's exec startup probe passes through `ctr task exec`.
#[tokio::test]
#[ignore = "runs built images with containerd as root: make test-runtime"]
async fn sdnext_salad_base_runs_under_containerd_too() {
    sdnext_salad_base_runs_under("sdnext-salad-containerd", Runtime::Containerd).await;
}

/// Docker Engine pulls the image with moby's own code (not containerd's) and must unpack the
/// root filesystem the test node unpacks; it then runs it with the process it derives from the
/// image config, the group's command and variables on top; our start drops to webui-user with
/// `runuser` under Docker's default capabilities and seccomp profile, and the exec startup probe
/// passes through `docker exec`.
#[tokio::test]
#[ignore = "runs built images with Docker Engine as root: make test-runtime"]
async fn sdnext_salad_base_runs_under_docker_too() {
    sdnext_salad_base_runs_under("sdnext-salad-docker", Runtime::Docker).await;
}

async fn sdnext_salad_base_runs_under(name: &'static str, runner: Runtime) {
    let case = Case::ours(
        name,
        StandIn::SdNextSalad,
        "    kind: SDNext\n    layout: SaladBase",
    )
    .under(runner);
    let Some(run) = serves_without_copy_up(&case).await else {
        return;
    };
    assert_eq!(
        run.seen["uid"], 1000,
        "the start drops to webui-user (1000) under {runner:?}'s default capabilities"
    );
    assert!(run.ipv4_refused, "listens on IPv6 only");
}

/// comfyui-api's start under containerd: our fetch-less entrypoint, the warm-up, then `/prompt`.
#[tokio::test]
#[ignore = "runs built images with containerd as root: make test-runtime"]
async fn comfyui_runs_under_containerd_too() {
    let case = Case::ours("comfyui-containerd", StandIn::ComfyUi, "    kind: ComfyUI")
        .under(Runtime::Containerd);
    let Some(run) = serves_without_copy_up(&case).await else {
        return;
    };
    assert_prompt_answered(&case, &run);
}

/// comfyui-api's start under Docker Engine: the same root filesystem from moby's pull, our
/// fetch-less entrypoint, the warm-up, then `/prompt`.
#[tokio::test]
#[ignore = "runs built images with Docker Engine as root: make test-runtime"]
async fn comfyui_runs_under_docker_too() {
    let case =
        Case::ours("comfyui-docker", StandIn::ComfyUi, "    kind: ComfyUI").under(Runtime::Docker);
    let Some(run) = serves_without_copy_up(&case).await else {
        return;
    };
    assert_prompt_answered(&case, &run);
}

/// comfyui-api's synchronous `POST /prompt` answered the smoke test's workflow with a PNG.
fn assert_prompt_answered(case: &Case, run: &Run) {
    let (status, body) = run
        .smoke_answer
        .clone()
        .expect("the smoke request was sent");
    assert_eq!(status, 200, "{}: {body}", case.name);
    let png = body["images"][0]
        .as_str()
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG"), "{}: {body}", case.name);
}

#[tokio::test]
#[ignore = "runs built images with runc as root: make test-runtime"]
async fn a_fetched_checkpoint_is_downloaded_verified_and_loaded_before_comfyui_serves() {
    let case = Case::ours("comfyui-fetch", StandIn::ComfyUi, "    kind: ComfyUI")
        .fetching(Fetch::Verified);
    let Some(run) = run_case(&case).await else {
        return;
    };
    assert_serves(&case, &run);
    assert!(
        run.logs
            .contains("dreamshaper_8.safetensors fetched and verified"),
        "{}",
        run.logs
    );
    assert_prompt_answered(&case, &run);
    // The fetched file is written by the start (that is the cost of fetching); nothing else.
    assert!(
        (CHECKPOINT_SIZE..CHECKPOINT_SIZE + ONE_MIB).contains(&run.upper_bytes),
        "the start wrote {} bytes: {:?}",
        run.upper_bytes,
        &run.upper_files[..run.upper_files.len().min(5)]
    );
    println!(
        "{}",
        json!({"kind": case.name, "fetched_bytes": CHECKPOINT_SIZE, "start_upper_bytes": run.upper_bytes})
    );
}

#[tokio::test]
#[ignore = "runs built images with runc as root: make test-runtime"]
async fn a_fetched_checkpoint_with_the_wrong_sha256_never_starts_the_server() {
    let case = Case::ours("sdnext-fetch-bad", StandIn::SdNextSalad, "    kind: SDNext")
        .fetching(Fetch::WrongSha256);
    let Some(run) = run_case(&case).await else {
        return;
    };
    assert!(
        !matches!(run.startup, Outcome::Passed(_)),
        "the startup probe must never pass: {:?}\n{}",
        run.startup,
        run.logs
    );
    assert!(
        run.logs.contains("sha256 mismatch: expected 0000"),
        "the container log says why:\n{}",
        run.logs
    );
    assert!(
        run.logs.contains("the server is not started"),
        "{}",
        run.logs
    );
    assert!(
        !run.logs.contains("listening on"),
        "the server never started:\n{}",
        run.logs
    );
}

/// The measurement can see a copy-up: upstream's own start (`chown -R` over the data
/// directory) copies the checkpoint into the upper layer.
#[tokio::test]
#[ignore = "runs built images with runc as root: make test-runtime"]
async fn negative_control_upstream_chown_copies_the_checkpoint() {
    let case = Case {
        name: "sdnext-upstream-chown",
        standin: StandIn::SdNextSalad,
        server: "    kind: SDNext",
        upstream_launch: true,
        fetch: Fetch::Baked,
        runtime: Runtime::TestNode,
    };
    let Some(run) = run_case(&case).await else {
        return;
    };
    assert_serves(&case, &run);
    assert!(
        run.upper_bytes >= CHECKPOINT_SIZE,
        "upstream's chown -R must copy the {CHECKPOINT_SIZE}-byte checkpoint up; measured {}",
        run.upper_bytes
    );
}

/// Runs `code` (Python) in the container to SIGKILL the processes whose `argv[1]` is `script`
/// (`python3 SCRIPT …`: the SD.Next server is `python /webui/launch.py`, the stand-in worker
/// `python3 /usr/local/bin/salad-http-job-queue-worker`); `true` when one was found.
async fn kill_python_running(container: &Container, script: &str) -> bool {
    let code = format!(
        "import os, signal, sys\n\
         hit = 0\n\
         for p in filter(str.isdigit, os.listdir('/proc')):\n\
         \x20   try: argv = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\\0')\n\
         \x20   except OSError: continue\n\
         \x20   if len(argv) > 1 and argv[0].rsplit(b'/', 1)[-1].startswith(b'python') and argv[1] == {script:?}.encode():\n\
         \x20       os.kill(int(p), signal.SIGKILL); hit += 1\n\
         sys.exit(0 if hit else 1)\n"
    );
    container
        .exec(
            &["python3".into(), "-c".into(), code],
            Duration::from_secs(10),
        )
        .await
}

/// Waits up to `timeout` for `ok`.
async fn eventually(timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ok()
}

/// Queue mode on a real start (SaladBase SD.Next: bash start, server as uid 1000 through
/// runuser): the worker layer comes from a local stand-in release archive pinned by its sha256;
/// the started container runs the stand-in worker (which behaves as SaladCloud's does, see
/// `salad_sd_testkit::JobQueue`) beside the server. A job put on the stand-in queue reaches the
/// server at the spec's job path and port and its answer comes back; then, each on a fresh
/// container from the same image: killing the server stops the container with the server's
/// status; killing the worker stops it with 100 + the worker's; the worker exiting because its
/// instance is gone (as the real one does) stops it too.
#[tokio::test]
#[ignore = "runs built images with runc as root: make test-runtime"]
async fn the_queue_worker_runs_beside_the_server_and_either_dying_stops_the_container() {
    use salad_sd_api::profile::QUEUE_WORKER_PATH;
    use salad_sd_testkit::JobQueue;

    const NAME: &str = "sdnext-queue";
    if let Some(why) = skip_reason(Runtime::TestNode) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the runtime test: {why}"
        );
        eprintln!("SKIPPED runtime/{NAME}: {why}");
        return;
    }
    let begun = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = LocalRegistry::start(&dir.path().join("registry"))
        .await
        .expect("start /usr/bin/docker-registry");
    let reg = registry.host_port();
    let base_repo = format!("standin/{NAME}");
    push_standin(&reg, &base_repo, "1", StandIn::SdNextSalad)
        .await
        .expect("push the stand-in base");
    let models = ModelServer::start(ModelServerOptions::default())
        .await
        .expect("model server");
    models.add_generated("models/dreamshaper_8.safetensors", ONE_MIB, 1);
    let queue = JobQueue::start().await.expect("stand-in job queue");
    let (worker_url, worker_sha) = queue.worker_source();
    let port = free_port();
    let yaml = format!(
        r#"
apiVersion: salad-sd.dev/v1alpha1
kind: StableDiffusionDeployment
metadata:
  name: rt-{NAME}
  namespace: default
  uid: 6c1a4f0e-0000-4000-8000-000000000002
spec:
  saladcloud:
    organization: acme
    project: runtime
    apiKeySecretRef:
      name: salad-api-key
      key: apiKey
  server:
    kind: SDNext
    layout: SaladBase
    baseImage: {reg}/{base_repo}:1
    port: {port}
  models:
    - name: dreamshaper_8.safetensors
      kind: Checkpoint
      source:
        url: {model_url}
        sha256: "{model_sha}"
  image:
    repository: {reg}/built/{NAME}
  resources:
    cpu: 4
    memory: 12Gi
    gpuClasses: [RTX 3060 Ti]
  queue:
    enabled: true
    worker:
      url: {worker_url}
      sha256: "{worker_sha}"
"#,
        model_url = models.url("models/dreamshaper_8.safetensors"),
        model_sha = generated_sha256(ONE_MIB, 1),
    );
    let sdd: StableDiffusionDeployment = serde_saphyr::from_str(&yaml).expect("spec");
    let problems = salad_sd_api::validate::validate(&sdd.spec);
    assert!(problems.is_empty(), "{NAME}: {problems:?}");
    let job_path = sdd.spec.queue_job_path().expect("SD.Next's job path");
    assert_eq!(job_path, "/sdapi/v1/txt2img");
    let job_port = sdd.spec.queue_port();

    let secrets = ResolvedSecrets {
        api_key: None,
        env: Default::default(),
        model_tokens: Default::default(),
        fetch_tokens: Default::default(),
        push_credentials: Default::default(),
        pull_auth: None,
    };
    let builder = Builder::new(BuilderOptions {
        insecure_registries: vec![reg.clone()],
        source_policy: SourcePolicy {
            allow_private_sources: true,
            allow_file_sources: false,
        },
        ..BuilderOptions::default()
    })
    .expect("builder");
    let built = builder
        .build(&recipe(&sdd.spec, &secrets), &format!("{reg}/built/{NAME}"))
        .await
        .expect("build");
    let gpu = GpuChoice {
        ids: vec!["00000000-0000-4000-8000-000000000000".into()],
        hourly_price: None,
    };
    let mut group = group_definition(&sdd.spec, "uid", &built.reference, &gpu, &secrets);
    // Where the worker finds its queue (the real worker's setting; the real queue is SaladCloud's).
    group
        .container
        .environment_variables
        .insert("SALAD_SERVICE_ENDPOINT".into(), queue.endpoint());
    let (image, layers) = Registry::new(&reg)
        .pull(&format!("built/{NAME}"), &built.digest, dir.path())
        .await
        .expect("pull the built image back");
    let launch = Launch::of(&image, &group.container).expect("launch");
    let startup_probe = group.startup_probe.clone().expect("a startup probe");

    // Starts a container from the image and waits until both processes are up: the startup
    // probe passed (the server generates) and the worker asks the queue for jobs.
    let start = |n: &str| {
        let id = format!("salad-sd-rt-{NAME}-{n}-{}", std::process::id());
        Container::start(&id, &layers, &launch, &dir.path().join(format!("node-{n}")))
            .expect("container")
    };
    let both_up = async |container: &mut Container, what: &str| {
        let polls = queue.polls();
        let startup = probes::run(container, &startup_probe, Instant::now()).await;
        assert!(
            matches!(startup, Outcome::Passed(_)),
            "{what}: startup probe {startup:?}\n{}",
            container.logs()
        );
        assert!(
            eventually(Duration::from_secs(20), || queue.polls() > polls).await,
            "{what}: the worker never asked the queue for a job\n{}",
            container.logs()
        );
    };
    let stops = async |container: &mut Container, what: &str| -> (i32, f64) {
        let t = Instant::now();
        let status = container
            .wait_exit(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{what}: the container still runs\n{}", container.logs()));
        (status.code().unwrap_or(-1), t.elapsed().as_secs_f64())
    };

    // 1. A job through the worker reaches the server at the job path; the answer comes back.
    let mut a = start("a");
    both_up(&mut a, "job").await;
    let job = queue.enqueue(
        &job_path,
        job_port,
        json!({"prompt": "a bowl of salad", "steps": 1, "width": 64, "height": 64}),
    );
    let job_started = Instant::now();
    assert!(
        eventually(Duration::from_secs(60), || queue.result(&job).is_some()).await,
        "the job never came back\n{}",
        a.logs()
    );
    let job_s = job_started.elapsed().as_secs_f64();
    let result = queue.result(&job).unwrap();
    assert_eq!(result.outcome, "complete", "{result:?}\n{}", a.logs());
    assert!(
        result.output["images"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "the answer of txt2img (only {job_path} answers images): {result:?}"
    );
    // 2. Killing the server stops the container, with the server's status (SIGKILL: 137).
    assert!(
        kill_python_running(&a, "/webui/launch.py").await,
        "no server process to kill\n{}",
        a.logs()
    );
    let (server_killed_code, server_killed_s) = stops(&mut a, "server killed").await;
    let logs = a.logs();
    assert_eq!(server_killed_code, 137, "{logs}");
    assert!(
        logs.contains("the server exited with status 137; stopping the job queue worker"),
        "{logs}"
    );
    drop(a);

    // 3. Killing the worker stops the container, with 100 + the worker's status.
    let mut b = start("b");
    both_up(&mut b, "worker kill").await;
    assert!(
        kill_python_running(&b, QUEUE_WORKER_PATH).await,
        "no worker process to kill\n{}",
        b.logs()
    );
    let (worker_killed_code, worker_killed_s) = stops(&mut b, "worker killed").await;
    let logs = b.logs();
    assert_eq!(worker_killed_code, 237, "{logs}");
    assert!(
        logs.contains("the job queue worker exited with status 137; stopping the server"),
        "{logs}"
    );
    drop(b);

    // 4. The worker leaving on its own (its instance is gone) stops the container too.
    let mut c = start("c");
    both_up(&mut c, "instance gone").await;
    queue.say_instance_gone();
    let (gone_code, gone_s) = stops(&mut c, "instance gone").await;
    let logs = c.logs();
    assert_eq!(gone_code, 101, "{logs}");
    assert!(
        logs.contains("the job queue worker exited with status 1; stopping the server"),
        "{logs}"
    );
    drop(c);

    println!(
        "{}",
        json!({
            "kind": NAME,
            "job_round_trip_s": (job_s * 10.0).round() / 10.0,
            "server_killed": {"exit": server_killed_code, "stopped_s": (server_killed_s * 10.0).round() / 10.0},
            "worker_killed": {"exit": worker_killed_code, "stopped_s": (worker_killed_s * 10.0).round() / 10.0},
            "instance_gone": {"exit": gone_code, "stopped_s": (gone_s * 10.0).round() / 10.0},
            "total_s": begun.elapsed().as_secs(),
        })
    );
}
