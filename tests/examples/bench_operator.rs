//! `make bench-controller`, its second part: the operator's memory as its own process.
//!
//! The operator is the shipped binary (`salad-sd operator`, built without the simulator), run
//! as a child process with a kubeconfig, exactly as in a pod. Everything it talks to lives in
//! this process, so none of their buffers are counted: a mocked Kubernetes API server
//! (`salad_sd_e2e::kubeapi`: lists, watches streamed from a `resourceVersion`, status writes
//! as `MODIFIED` events) holding 1,000 resources (10 per project, 50 API keys) and 5,000
//! unrelated Secrets of 4 KiB in 50 namespaces, the SaladCloud simulator with the real 240/min
//! per-key limit, a registry and a model server.
//!
//! Phases: the operator starts and lists everything; the resources converge to Ready (one
//! image build, then 1,000 container groups); then it runs in steady state at its default
//! 60 s poll for `BENCH_STEADY_SECS` (default 75 s). The operator's VmRSS is sampled every
//! 200 ms; the figure is the largest sample of the steady state, beside VmHWM (the peak of the
//! whole run, setup included). Ends with one JSON line. `SALAD_SD_BIN` runs another build of
//! the operator (the musl one of `make image`), `BENCH_OPERATOR_ARGS` adds flags to it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use salad_sd_api::names::{API_KEY_FINALIZER, FINALIZER};
use salad_sd_e2e::kubeapi::MockKubeApi;
use salad_sd_testkit::{
    LocalRegistry, ModelServer, ModelServerOptions, bench_resource, push_tiny_base_image,
};
use saladcloud_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

const RESOURCES: usize = 1000;
const PER_PROJECT: usize = 10;
const KEYS: usize = 50;
const SECRET_BYTES: usize = 4096;
const NS: &str = "bench";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The operator child; killed on drop.
struct Operator {
    child: Child,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `field` (`VmRSS:`, `VmHWM:`) of the operator, in MiB.
    fn status_mib(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

fn resource(i: usize, reg: &str, model_url: &str) -> Value {
    let mut sdd = bench_resource(i, reg, model_url, KEYS, PER_PROJECT);
    let metadata = &mut sdd["metadata"];
    metadata["uid"] = json!(format!(
        "{:08x}-7c3d-4e5f-8a9b-0c1d2e3f4a5b",
        0x1000_0000 + i
    ));
    metadata["generation"] = json!(1);
    metadata["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
    metadata["finalizers"] = json!([FINALIZER]);
    sdd
}

fn ready(sdd: &Value) -> bool {
    sdd["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter().any(|c| {
            c["type"] == "Ready"
                && c["status"] == "True"
                && c["observedGeneration"] == sdd["metadata"]["generation"]
        })
    })
}

/// SaladCloud API requests the simulator answered so far (its admin and gateway not counted).
fn sim_requests(sim: &saladcloud_sim::SimHandle) -> u64 {
    sim.admin()
        .stats()
        .requests
        .iter()
        .filter(|(op, _)| !matches!(op.as_str(), "admin" | "gateway" | "unknown"))
        .flat_map(|(_, by_status)| by_status.values())
        .sum()
}

fn operator_binary() -> anyhow::Result<std::path::PathBuf> {
    let path = match std::env::var_os("SALAD_SD_BIN") {
        Some(p) => p.into(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|examples| examples.parent())
            .context("the example's directory")?
            .join("salad-sd"),
    };
    if !path.exists() {
        bail!(
            "{} is missing: cargo build --release -p salad-sd-cli --no-default-features (or set SALAD_SD_BIN)",
            path.display()
        );
    }
    Ok(path)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let steady = Duration::from_secs(env_or("BENCH_STEADY_SECS", 75));
    let unrelated = env_or("BENCH_SECRETS", 5000usize);
    let binary = operator_binary()?;
    // More operator flags, to compare settings (`--max-concurrent-reconciles 0`).
    let extra_args = std::env::var("BENCH_OPERATOR_ARGS").unwrap_or_default();
    let dir = tempfile::tempdir()?;
    let registry = LocalRegistry::start(dir.path())
        .await
        .context("docker-registry (apt-get install docker-registry)")?;
    let reg = registry.host_port();
    push_tiny_base_image(&reg, "base/sdnext:tiny", false).await?;
    let models = ModelServer::start(ModelServerOptions::default()).await?;
    models.add_generated("/models/tiny.safetensors", 256 * 1024, 5);
    let model_url = models.url("/models/tiny.safetensors");
    let sim = Simulator::start(
        SimConfig {
            rate_limit_per_minute: 240,
            replicas_quota: 5000,
            ..SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await?;

    let kube = MockKubeApi::start().await?;
    for k in 0..KEYS {
        kube.put_secret(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": format!("salad-key-{k:02}"), "namespace": NS,
                          "finalizers": [API_KEY_FINALIZER] },
            "data": { "apiKey": base64::engine::general_purpose::STANDARD.encode(format!("bench-key-{k:02}")) }
        }));
    }
    for i in 0..unrelated {
        let data: Vec<u8> = (0..SECRET_BYTES)
            .map(|b| ((i * 31 + b) % 251) as u8)
            .collect();
        kube.put_secret(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": format!("unrelated-{i:05}"), "namespace": format!("team-{:02}", i % 50),
                          "uid": format!("{i:08x}-0000-4000-8000-000000000000"),
                          "labels": { "app.kubernetes.io/name": "unrelated" } },
            "type": "Opaque",
            "data": { "blob": base64::engine::general_purpose::STANDARD.encode(&data) }
        }));
    }
    for i in 0..RESOURCES {
        kube.put_sdd(resource(i, &reg, &model_url));
    }
    std::fs::write(
        dir.path().join("kubeconfig"),
        kube.kubeconfig("salad-sd-system"),
    )?;

    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?
    };
    let started = Instant::now();
    let mut operator = Operator {
        child: Command::new(&binary)
            .args([
                "operator",
                "--no-leader-election",
                "--allow-private-sources",
            ])
            .args(["--salad-api-url", &sim.base_url()])
            .args(["--insecure-registry", &reg])
            .args(["--listen", &listen.to_string()])
            .args(extra_args.split_whitespace())
            .env("KUBECONFIG", dir.path().join("kubeconfig"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?,
    };
    let names: Vec<String> = (0..RESOURCES).map(|i| format!("sd-{i:04}")).collect();
    let mut setup_peak = 0f64;
    let mut progress = 0;
    let mut told_late = false;
    let mut last_ready: Vec<String> = Vec::new();
    let ready_after = loop {
        if let Some(status) = operator.exited() {
            bail!("the operator exited during setup: {status}");
        }
        setup_peak = setup_peak.max(operator.status_mib("VmRSS:"));
        let n = names
            .iter()
            .filter(|n| kube.sdd(NS, n).is_some_and(|s| ready(&s)))
            .count();
        if n == RESOURCES {
            break started.elapsed();
        }
        last_ready = names
            .iter()
            .filter(|n| !kube.sdd(NS, n).is_some_and(|s| ready(&s)))
            .take(2)
            .cloned()
            .collect();
        if !told_late && started.elapsed() > Duration::from_secs(20) {
            told_late = true;
            let late: Vec<String> = names
                .iter()
                .filter_map(|n| kube.sdd(NS, n).filter(|s| !ready(s)))
                .take(3)
                .map(|s| {
                    format!(
                        "{} {}: {}",
                        s["metadata"]["name"], s["status"]["phase"], s["status"]["message"]
                    )
                })
                .collect();
            eprintln!("{n} Ready after 20 s; not yet: {late:?}");
        }
        if n * 10 / RESOURCES > progress {
            progress = n * 10 / RESOURCES;
            eprintln!("{:5.1} s: {n} Ready", started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("{n} of {RESOURCES} resources Ready after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let at_ready = operator.status_mib("VmRSS:");
    if std::env::var("BENCH_DEBUG").is_ok() {
        for name in &last_ready {
            let writes: Vec<String> = kube
                .log()
                .iter()
                .filter(|s| s.path.contains(&format!("/{name}")))
                .map(|s| {
                    format!(
                        "{:.1}s {} {}",
                        (s.at - started).as_secs_f64(),
                        s.method,
                        s.path.rsplit('/').next().unwrap_or_default()
                    )
                })
                .collect();
            eprintln!("{name}: {writes:?}");
        }
    }
    println!(
        "setup: {RESOURCES} resources Ready {:.1} s after the operator started; operator VmRSS {at_ready:.1} MiB (peak so far {setup_peak:.1} MiB)",
        ready_after.as_secs_f64()
    );

    let requests0 = sim_requests(&sim);
    let statuses0 = status_writes(&kube);
    let t0 = Instant::now();
    let mut samples = Vec::new();
    while t0.elapsed() < steady {
        if let Some(status) = operator.exited() {
            bail!("the operator exited in steady state: {status}");
        }
        samples.push(operator.status_mib("VmRSS:"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    let requests = sim_requests(&sim) - requests0;
    let statuses = status_writes(&kube) - statuses0;
    let steady_max = samples.iter().copied().fold(0f64, f64::max);
    let steady_last = samples.last().copied().unwrap_or(f64::NAN);
    let hwm = operator.status_mib("VmHWM:");
    println!(
        "steady ({:.0} s at the default 60 s poll): operator VmRSS max {steady_max:.1} MiB, last {steady_last:.1} MiB; VmHWM {hwm:.1} MiB; {:.2} SaladCloud requests per resource per minute, {statuses} status writes",
        t0.elapsed().as_secs_f64(),
        requests as f64 / RESOURCES as f64 / minutes
    );
    let summary = json!({
        "operator_build": if binary.to_string_lossy().contains("musl") { "static musl (the image's)" } else { "glibc" },
        "operator_args": extra_args,
        "resources": RESOURCES,
        "unrelated_secrets": unrelated,
        "api_keys": KEYS,
        "ready_seconds": round1(ready_after.as_secs_f64()),
        "operator_rss_mib_1000": round1(steady_max),
        "operator_rss_mib_at_ready": round1(at_ready),
        "operator_hwm_mib": round1(hwm),
        "steady_requests_per_resource_per_minute": round2(requests as f64 / RESOURCES as f64 / minutes),
        "steady_status_writes": statuses,
        "goal_rss_mib": 40,
    });
    println!("{summary}");
    Ok(())
}

/// Status writes the mocked API server took, so far.
fn status_writes(kube: &MockKubeApi) -> usize {
    kube.log()
        .iter()
        .filter(|s| s.method == "PATCH" && s.path.ends_with("/status"))
        .count()
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
