//! The operator image runs as its Deployment runs it (`make test-runtime`): the image `make
//! image` assembled (`target/image/salad-sd-operator`, an OCI layout; the same bytes `make
//! push-image` releases) is pushed to a real `docker-registry`, pulled back as a node pulls it,
//! mounted as overlayfs and started by `runc` with the Deployment's args, env and security
//! context (uid 65532, read-only root, every capability dropped, no privilege escalation). It
//! reaches a mocked Kubernetes API server (kubeconfig mounted read-only) and the SaladCloud
//! simulator, builds and deploys a resource, answers /healthz, /readyz and /metrics, and on
//! SIGTERM releases its Lease and exits within seconds. Needs root, runc and `make image`.
//!
//! Prints one JSON line: `{"image_digest":…,"compressed_bytes":…,"leading_s":…,…}`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use salad_sd_api::names::{API_KEY_FINALIZER, FINALIZER};
use salad_sd_e2e::kubeapi::MockKubeApi;
use salad_sd_e2e::node::containerd::{self, Containerd};
use salad_sd_e2e::node::oci::Registry;
use salad_sd_e2e::node::runtime::{self, Container, ImageRootfs, Isolation, Launch};
use salad_sd_e2e::node::tree;
use salad_sd_image::assemble::AssembledImage;
use salad_sd_image::{Builder, BuilderOptions};
use salad_sd_testkit::{LocalRegistry, ModelServer, ModelServerOptions, push_tiny_base_image};
use saladcloud_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

const NS: &str = "default";
const OPERATOR_NS: &str = "salad-sd-system";
const POD: &str = "salad-sd-operator-7d9f8c-x2x4q";
const API_KEY: &str = "sim-test-key";

fn image_dir() -> PathBuf {
    std::env::var_os("SALAD_SD_OPERATOR_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/image/salad-sd-operator")
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The operator container of `manifests/base/deployment.yaml`.
fn deployment_container() -> (Value, Value) {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/base/deployment.yaml"),
    )
    .expect("deployment.yaml");
    let deployment: Value = serde_saphyr::from_str(&text).expect("deployment.yaml parses");
    let pod = deployment["spec"]["template"]["spec"].clone();
    let container = pod["containers"][0].clone();
    (pod, container)
}

/// The Deployment's security context as the test node's isolation.
fn isolation_of(pod: &Value, container: &Value) -> Isolation {
    let uid = pod["securityContext"]["runAsUser"]
        .as_u64()
        .expect("runAsUser") as u32;
    let gid = pod["securityContext"]["runAsGroup"]
        .as_u64()
        .expect("runAsGroup") as u32;
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none());
    Isolation::restricted(uid, gid)
}

/// `Cap*` and `Uid`/`Gid` lines of a process.
fn proc_status(pid: u32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let r = http.get(url).send().await.ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

async fn wait_until<T>(
    what: &str,
    limit: Duration,
    container: &mut Container,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            container.running(),
            "the operator exited while waiting for {what}:\n{}",
            container.logs()
        );
        assert!(
            Instant::now() < until,
            "{what}: not within {limit:?}\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "runs the operator image with runc as root after make image: make test-runtime"]
async fn the_operator_image_runs_as_its_deployment_and_hands_over_on_sigterm() {
    if let Some(why) = runtime::unavailable().or_else(containerd::unavailable) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the runtime test: {why}"
        );
        eprintln!("SKIPPED operator_image: {why}");
        return;
    }
    let layout = image_dir();
    let image = AssembledImage::read_layout(&layout).unwrap_or_else(|e| {
        panic!(
            "no operator image at {} ({e}); run `make image` first",
            layout.display()
        )
    });
    let dir = tempfile::tempdir().unwrap();

    // The image, pushed as `make push-image` pushes it and pulled back as a node pulls it.
    let registry = LocalRegistry::start(&dir.path().join("registry"))
        .await
        .expect("start /usr/bin/docker-registry");
    let reg = registry.host_port();
    let builder = Builder::new(BuilderOptions {
        insecure_registries: vec![reg.clone()],
        ..BuilderOptions::default()
    })
    .unwrap();
    let pushed = builder
        .push_assembled(
            &image,
            &format!(
                "{reg}/salad-sd/salad-sd-operator:{}",
                env!("CARGO_PKG_VERSION")
            ),
        )
        .await
        .expect("push the operator image");
    assert_eq!(
        pushed,
        format!("{reg}/salad-sd/salad-sd-operator@{}", image.digest),
        "the registry names the image by the digest make image printed"
    );
    let pulled = dir.path().join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    let (run_config, layers) = Registry::new(&reg)
        .pull("salad-sd/salad-sd-operator", &image.digest, &pulled)
        .await
        .expect("pull the operator image");
    assert_eq!(run_config.user, "65532:65532");
    // containerd, the kubelet's image service, pulls it and unpacks the same root filesystem.
    let image_rootfs = ImageRootfs::mount(&layers, &dir.path().join("node-image"))
        .expect("the test node's unpack");
    let ours = tree::tree(image_rootfs.path()).expect("the test node's root filesystem");
    let paths = ours.len();
    let differences = Containerd::start(&dir.path().join("containerd"))
        .and_then(|ctd| ctd.pull_and_compare(&pushed, &ours, dir.path()))
        .expect("containerd pulls the operator image");
    assert!(
        differences.is_empty(),
        "containerd unpacks the operator image differently from the test node:\n{}",
        differences.join("\n")
    );
    assert!(
        paths > 3,
        "{paths} paths: the binary, CA certificates, /etc/passwd"
    );
    let compressed: usize = image.layers.iter().map(|l| l.blob.len()).sum();

    // What the operator talks to: a Kubernetes API with one resource, SaladCloud, a model.
    push_tiny_base_image(&reg, "base/sdnext:tiny", false)
        .await
        .expect("base image");
    let models = ModelServer::start(ModelServerOptions::default())
        .await
        .unwrap();
    models.add_generated("/models/tiny.safetensors", 256 * 1024, 5);
    let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0")
        .await
        .expect("simulator");
    let kube = MockKubeApi::start().await.unwrap();
    kube.put_secret(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "salad-api-key", "namespace": NS, "resourceVersion": "3",
                      "finalizers": [API_KEY_FINALIZER] },
        "data": { "apiKey": base64::engine::general_purpose::STANDARD.encode(API_KEY) }
    }));
    kube.put_sdd(json!({
        "apiVersion": "salad-sd.dev/v1alpha1", "kind": "StableDiffusionDeployment",
        "metadata": { "name": "imaged", "namespace": NS, "uid": "5d0a7c1e-2b3f-4e5d-8c9b-0a1b2c3d4e5f",
                      "generation": 1, "resourceVersion": "10", "finalizers": [FINALIZER] },
        "spec": {
            "saladcloud": { "organization": "acme", "project": "image-gen",
                            "apiKeySecretRef": { "name": "salad-api-key", "key": "apiKey" } },
            "server": { "kind": "SDNext", "baseImage": format!("{reg}/base/sdnext:tiny") },
            "models": [{ "name": "tiny.safetensors", "kind": "Checkpoint",
                         "source": { "url": models.url("/models/tiny.safetensors") } }],
            "image": { "repository": format!("{reg}/sd/imaged") },
            "replicas": 1,
            "resources": { "memory": "8Gi", "gpuClasses": ["RTX 3060 Ti (8 GB)"] },
            "deletionPolicy": "Orphan"
        }
    }));
    let config_dir = dir.path().join("kube");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(config_dir.join("config"), kube.kubeconfig(OPERATOR_NS)).unwrap();

    // The Deployment's container: its args and env, its security context. The test node shares
    // the host's network, so the listen address moves from 0.0.0.0:8080 to a free loopback port;
    // the kubeconfig stands in for the service account; the rest points at this machine's
    // stand-ins for SaladCloud and the registry.
    let (pod, spec) = deployment_container();
    let mut isolation = isolation_of(&pod, &spec);
    isolation
        .read_only_mounts
        .push((config_dir.clone(), "/var/run/kube".into()));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args: Vec<String> = run_config.entrypoint.clone();
    for a in spec["args"].as_array().expect("args") {
        let a = a.as_str().unwrap();
        args.push(if a == "0.0.0.0:8080" {
            listen.clone()
        } else {
            a.to_string()
        });
    }
    assert!(args.contains(&listen), "the Deployment sets --listen");
    args.extend([
        "--salad-api-url".into(),
        sim.base_url(),
        "--insecure-registry".into(),
        reg.clone(),
        "--allow-private-sources".into(),
        "--poll-interval".into(),
        "5s".into(),
    ]);
    let mut env = run_config.env.clone();
    for e in spec["env"].as_array().expect("env") {
        let name = e["name"].as_str().unwrap();
        let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => POD.to_string(),
            Some("metadata.namespace") => OPERATOR_NS.to_string(),
            Some(other) => panic!("unexpected fieldRef {other}"),
            None => e["value"].as_str().unwrap().to_string(),
        };
        env.push(format!("{name}={value}"));
    }
    env.push("KUBECONFIG=/var/run/kube/config".into());
    if let Ok(filter) = std::env::var("OPERATOR_RUST_LOG") {
        env.push(format!("RUST_LOG={filter}"));
    }
    let launch = Launch {
        args,
        env,
        cwd: run_config.working_dir.clone(),
    };
    let started = Instant::now();
    let mut container = Container::start_on(
        "salad-sd-operator",
        &image_rootfs,
        &launch,
        &dir.path().join("node"),
        &isolation,
    )
    .expect("start the operator container");

    let base = format!("http://{listen}");
    let health = wait_until(
        "/healthz",
        Duration::from_secs(20),
        &mut container,
        async || get(&format!("{base}/healthz")).await,
    )
    .await;
    assert_eq!(health, (200, "ok".to_string()));
    wait_until(
        "the Lease",
        Duration::from_secs(20),
        &mut container,
        async || {
            (kube
                .lease_holder(OPERATOR_NS, "salad-sd-operator")
                .as_deref()
                == Some(POD))
            .then_some(())
        },
    )
    .await;
    let leading_s = started.elapsed().as_secs_f64();
    let ready = get(&format!("{base}/readyz")).await.expect("/readyz");
    assert_eq!(ready, (200, "ready (leader)".to_string()));

    // The process as the kernel sees it: uid/gid 65532, no capabilities, no_new_privs, a
    // read-only root.
    let pid = container.pid().expect("the container's pid");
    let status = proc_status(pid);
    let field = |k: &str| {
        status
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert!(
        field("Uid").split_whitespace().all(|u| u == "65532"),
        "Uid {}",
        field("Uid")
    );
    assert!(
        field("Gid").split_whitespace().all(|g| g == "65532"),
        "Gid {}",
        field("Gid")
    );
    for cap in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(field(cap), "0000000000000000", "{cap}");
    }
    assert_eq!(field("NoNewPrivs"), "1");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("a root mount");
    assert!(
        root.split_whitespace()
            .nth(5)
            .is_some_and(|o| o.split(',').any(|x| x == "ro")),
        "the root is mounted read-only: {root}"
    );

    // It does its job: builds the image into the registry, creates the group on SaladCloud,
    // writes status to the API server.
    let group = wait_until(
        "a container group in status",
        Duration::from_secs(90),
        &mut container,
        async || {
            kube.sdd(NS, "imaged").and_then(|s| {
                s["status"]["containerGroup"]["name"]
                    .as_str()
                    .map(str::to_string)
            })
        },
    )
    .await;
    let deployed_s = started.elapsed().as_secs_f64();
    let stats = sim.admin().stats();
    assert_eq!(stats.live_groups, 1, "the group exists on SaladCloud");
    assert!(
        stats.requests.contains_key("create_container_group"),
        "{:?}",
        stats.requests.keys()
    );
    let (code, metrics) = get(&format!("{base}/metrics")).await.expect("/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("salad_sd_leader 1"), "{metrics}");
    assert!(metrics.contains("salad_sd_reconcile_total"), "{metrics}");
    assert!(
        container.upper_files().is_empty(),
        "a read-only root: nothing written: {:?}",
        container.upper_files()
    );
    let logs = container.logs();
    assert!(!logs.contains(API_KEY), "the API key is never logged");

    // SIGTERM, as the kubelet sends it when the pod is deleted.
    let signalled = Instant::now();
    container.signal("TERM").expect("runc kill TERM");
    let exit = container
        .wait_exit(Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{}", container.logs()));
    let exit_s = signalled.elapsed().as_secs_f64();
    assert!(exit.success(), "exit {exit:?}:\n{}", container.logs());
    assert_eq!(
        kube.lease_holder(OPERATOR_NS, "salad-sd-operator"),
        None,
        "the Lease is released for the standby:\n{}",
        container.logs()
    );
    assert!(exit_s < 5.0, "exited {exit_s:.1} s after SIGTERM");
    println!(
        "{}",
        json!({
            "image_digest": image.digest,
            "compressed_bytes": compressed,
            "group": group,
            "leading_s": (leading_s * 100.0).round() / 100.0,
            "deployed_s": (deployed_s * 100.0).round() / 100.0,
            "sigterm_to_exit_s": (exit_s * 100.0).round() / 100.0,
        })
    );
    sim.shutdown().await;
}
