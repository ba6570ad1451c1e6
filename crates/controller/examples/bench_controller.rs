//! `make bench-controller`: the engine at scale against the SaladCloud simulator.
//!
//! Processes: the simulator runs in a child process (this binary with `--serve-sim`), so the
//! measured RSS is the operator's alone. The Kubernetes side is an in-process stand-in for the
//! API server: a map of resources whose status is written back the way `operator::write_status`
//! does it (server-side apply skipped when only condition times change), Secrets served from
//! memory. Each resource runs the way `kube::runtime::Controller` runs it: reconcile, then wait
//! for the requeue delay or a change of the object, whichever comes first. SaladCloud requests
//! are counted by the simulator (`/_admin/stats`).
//!
//! Unrelated Secrets: the simulator child also serves a minimal Kubernetes API with 5,000
//! Secrets of 4 KiB (`BENCH_SECRETS`) in 50 namespaces, answering list (paginated, metadata-only
//! when asked the way the API server is) and watch. The operator process watches them exactly
//! as `operator::run_with` does (`operator::secrets_metadata`, a watcher, the mapper over all
//! resources); `BENCH_SECRETS_FULL=1` watches them with their data, as before, for comparison.
//!
//! Phases:
//! 0. the Secret watch starts and lists all 5,000 (RSS after);
//! 1. setup: 1,000 resources (10 per project) converge to Ready. Their API-key Secrets are
//!    spread over 50 keys so that creating 1,000 groups is not throttled to 240 requests/min;
//! 2. steady: three forced poll rounds over all resources: SaladCloud requests per reconcile,
//!    writes (SaladCloud, status, events); then RSS (VmRSS, VmHWM);
//! 3. change → PATCH: the operator restarts with its SaladCloud URL on a loopback proxy that
//!    timestamps PATCHes; after one warm-up reconcile per resource, 120 replica changes
//!    (generation bumps, image already built), each timed from the object change to the PATCH
//!    arriving at the proxy;
//! 4. one key: every Secret rotated to one API key (fresh budget in client and simulator), the
//!    operator restarted (every resource due at once, as after a restart or a rotation of the
//!    shared Secret), the default 60 s poll, the real 240/min limiter in client and simulator,
//!    75 s of wall time (one rollover of the 60 s windows; `BENCH_ONE_KEY_SECS`): 429s.
//!
//! Time is not scaled. Ends with one JSON line.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use salad_sd_api::StableDiffusionDeployment;
use salad_sd_controller::engine::{Engine, Mode};
use salad_sd_controller::harness::EngineBuilder;
use salad_sd_controller::operator::{references_secret, secrets_metadata};
use salad_sd_controller::report::same_ignoring_times;
use salad_sd_controller::secrets::SecretStore;
use salad_sd_testkit::{
    LocalRegistry, ModelServer, ModelServerOptions, bench_resource, push_tiny_base_image,
};
use serde_json::json;
use tokio::sync::{Notify, mpsc};

const RESOURCES: usize = 1000;
const PER_PROJECT: usize = 10;
const SETUP_KEYS: usize = 50;
const CHANGES: usize = 120;
const STEADY_ROUNDS: usize = 3;
/// Wall time of phase 4 (default 75 s: one rollover of the 60 s windows); `BENCH_ONE_KEY_SECS`.
fn one_key_run() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_ONE_KEY_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(75),
    )
}
const POLL: Duration = Duration::from_secs(60);
/// Unrelated Secrets in the cluster (`BENCH_SECRETS`, default 5,000) and their data size.
fn unrelated_secrets() -> usize {
    std::env::var("BENCH_SECRETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000)
}
const SECRET_BYTES: usize = 4096;
const ONE_KEY: &str = "bench-one-key";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.iter().any(|a| a == "--serve-sim") {
        return rt.block_on(serve_sim());
    }
    rt.block_on(bench())
}

/// Child process: the simulator with the real 240/min per-key limit, until stdin closes.
async fn serve_sim() -> anyhow::Result<()> {
    let sim = saladcloud_sim::Simulator::start(
        saladcloud_sim::SimConfig {
            rate_limit_per_minute: 240,
            replicas_quota: 5000,
            ..saladcloud_sim::SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await?;
    let kube = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let kube_addr = kube.local_addr()?;
    let secrets = Arc::new(SecretServer::new(unrelated_secrets()));
    tokio::spawn(async move {
        let app = axum::Router::new()
            .fallback(secrets_handler)
            .with_state(secrets);
        let _ = axum::serve(kube, app).await;
    });
    println!("URL {}", sim.base_url());
    println!("KUBE http://{kube_addr}");
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    sim.shutdown().await;
    Ok(())
}

/// A minimal Kubernetes API for Secrets: paginated list (metadata-only when the Accept header
/// asks for `PartialObjectMetadataList`, as the API server does) and a watch that stays open.
struct SecretServer {
    full: Vec<serde_json::Value>,
}

impl SecretServer {
    fn new(n: usize) -> Self {
        use base64::Engine as _;
        let full = (0..n)
            .map(|i| {
                let data: Vec<u8> = (0..SECRET_BYTES)
                    .map(|b| ((i * 31 + b) % 251) as u8)
                    .collect();
                json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": format!("unrelated-{i:05}"),
                        "namespace": format!("team-{:02}", i % 50),
                        "uid": format!("{:08x}-0000-4000-8000-000000000000", i),
                        "resourceVersion": format!("{}", 1000 + i),
                        "labels": { "app.kubernetes.io/name": "unrelated" }
                    },
                    "type": "Opaque",
                    "data": { "blob": base64::engine::general_purpose::STANDARD.encode(&data) }
                })
            })
            .collect();
        Self { full }
    }
}

async fn secrets_handler(
    axum::extract::State(s): axum::extract::State<Arc<SecretServer>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let json = |v: serde_json::Value| {
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(
                serde_json::to_vec(&v).expect("json"),
            ))
            .expect("response")
    };
    if req.uri().path() != "/api/v1/secrets" {
        return axum::response::Response::builder()
            .status(404)
            .body(axum::body::Body::empty())
            .expect("response");
    }
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        // Nothing changes: the watch stays open.
        return axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(futures::stream::pending::<
                Result<Vec<u8>, std::io::Error>,
            >()))
            .expect("response");
    }
    let meta_only = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadataList"));
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(s.full.len());
    let items: Vec<serde_json::Value> = s.full[start..end]
        .iter()
        .map(|o| {
            if meta_only {
                json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": o["metadata"] })
            } else {
                o.clone()
            }
        })
        .collect();
    let mut metadata = json!({ "resourceVersion": "99999" });
    if end < s.full.len() {
        metadata["continue"] = json!(end.to_string());
    }
    json(if meta_only {
        json!({ "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": metadata, "items": items })
    } else {
        json!({ "apiVersion": "v1", "kind": "SecretList", "metadata": metadata, "items": items })
    })
}

/// The operator's Secret watch against the stand-in API: the same Api, watcher and mapper as
/// `operator::run_with` (the Controller itself is not run: its queue is the per-resource loops
/// here). Counts Secrets seen and resources they trigger.
fn watch_secrets(
    kube_url: &str,
    cluster: Arc<Cluster>,
    seen: Arc<AtomicU64>,
    triggered: Arc<AtomicU64>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use futures::StreamExt;
    use kube::ResourceExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let client = kube::Client::try_from(kube::Config::new(kube_url.parse()?))?;
    let full = std::env::var("BENCH_SECRETS_FULL").is_ok_and(|v| v == "1");
    let map = move |ns: Option<String>, name: String| {
        let objects = cluster.objects.lock().unwrap();
        objects
            .values()
            .filter(|o| o.namespace() == ns && references_secret(o, &name))
            .count() as u64
    };
    Ok(tokio::spawn(async move {
        if full {
            let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::all(client);
            let mut s = watcher(api, watcher::Config::default())
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Some(Ok(secret)) = s.next().await {
                seen.fetch_add(1, Ordering::Relaxed);
                triggered.fetch_add(
                    map(secret.namespace(), secret.name_any()),
                    Ordering::Relaxed,
                );
            }
        } else {
            let api = secrets_metadata(&client, None);
            let mut s = watcher(api, watcher::Config::default())
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Some(Ok(secret)) = s.next().await {
                seen.fetch_add(1, Ordering::Relaxed);
                triggered.fetch_add(
                    map(secret.namespace(), secret.name_any()),
                    Ordering::Relaxed,
                );
            }
        }
    }))
}

/// The simulator child; killed on drop.
struct SimProcess {
    child: Child,
    base_url: String,
    kube_url: String,
}

impl SimProcess {
    fn start() -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--serve-sim")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the simulator process")?;
        let mut out = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)
            .context("reading the simulator URL")?;
        let base_url = line
            .trim()
            .strip_prefix("URL ")
            .context("the simulator did not print its URL")?
            .to_string();
        line.clear();
        out.read_line(&mut line)
            .context("reading the Kubernetes stand-in URL")?;
        let kube_url = line
            .trim()
            .strip_prefix("KUBE ")
            .context("the simulator did not print the Kubernetes stand-in URL")?
            .to_string();
        Ok(Self {
            child,
            base_url,
            kube_url,
        })
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Loopback proxy in front of the simulator: counts requests and timestamps PATCHes.
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    requests: AtomicU64,
    writes: AtomicU64,
    limited: AtomicU64,
    by_op: Mutex<BTreeMap<String, u64>>,
    /// Requests per (API key, operation), for the diagnosis of a missed PATCH.
    by_key: Mutex<BTreeMap<(String, String), Vec<Instant>>>,
    patches: mpsc::UnboundedSender<(String, Instant)>,
}

async fn proxy_handler(
    axum::extract::State(p): axum::extract::State<Arc<Proxy>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if parts.method == http::Method::PATCH {
        let group = parts.uri.path().rsplit('/').next().unwrap_or_default();
        let _ = p.patches.send((group.to_string(), arrived));
    }
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut fwd = p
        .http
        .request(parts.method.clone(), format!("{}{path}", p.upstream));
    for (k, v) in &parts.headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            fwd = fwd.header(k, v);
        }
    }
    p.requests.fetch_add(1, Ordering::Relaxed);
    if parts.method != http::Method::GET {
        p.writes.fetch_add(1, Ordering::Relaxed);
    }
    let op = format!("{} {}", parts.method, op_of(parts.uri.path()));
    let key = parts
        .headers
        .get("salad-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    p.by_key
        .lock()
        .unwrap()
        .entry((key, op.clone()))
        .or_default()
        .push(arrived);
    *p.by_op.lock().unwrap().entry(op).or_default() += 1;
    match fwd.body(body).send().await {
        Ok(resp) => {
            let status = resp.status();
            if status.as_u16() == 429 {
                p.limited.fetch_add(1, Ordering::Relaxed);
            }
            let mut out = axum::response::Response::builder().status(status);
            for (k, v) in resp.headers() {
                if k != http::header::CONTENT_LENGTH && k != http::header::TRANSFER_ENCODING {
                    out = out.header(k, v);
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            out.body(axum::body::Body::from(bytes)).expect("response")
        }
        Err(e) => axum::response::Response::builder()
            .status(502)
            .body(axum::body::Body::from(format!("proxy: {e}")))
            .expect("response"),
    }
}

/// `/organizations/o/projects/p/containers/n/instances` → `containers/*/instances`.
fn op_of(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < segs.len() {
        let s = segs[i];
        if ["organizations", "projects", "containers"].contains(&s) && i + 1 < segs.len() {
            out.push(format!("{s}/*"));
            i += 2;
        } else {
            if !s.is_empty() && s != "api" && s != "public" {
                out.push(s.to_string());
            }
            i += 1;
        }
    }
    out.join("/")
}

/// Stand-in for the Kubernetes API server: resources, their status, Secrets.
#[derive(Default)]
struct Cluster {
    objects: Mutex<HashMap<String, StableDiffusionDeployment>>,
    secrets: Mutex<HashMap<String, String>>,
    status_writes: AtomicU64,
    events: AtomicU64,
    reconciles: AtomicU64,
    per_resource: Mutex<HashMap<String, u64>>,
}

impl SecretStore for Cluster {
    async fn secret(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        Ok(self
            .secrets
            .lock()
            .unwrap()
            .get(name)
            .map(|k| BTreeMap::from([("apiKey".to_string(), k.as_bytes().to_vec())])))
    }
}

impl Cluster {
    fn get(&self, name: &str) -> StableDiffusionDeployment {
        self.objects.lock().unwrap()[name].clone()
    }

    fn ready(&self, name: &str) -> bool {
        let o = self.get(name);
        o.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == salad_sd_api::condition::READY
                    && c.status == "True"
                    && c.observed_generation == o.metadata.generation
            })
        })
    }

    fn count(&self, name: &str) -> u64 {
        self.per_resource
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

/// One resource, driven like `Controller` drives it.
async fn run_resource(name: String, cluster: Arc<Cluster>, engine: Arc<Engine>, wake: Arc<Notify>) {
    loop {
        let obj = cluster.get(&name);
        let out = engine.reconcile(&obj, &*cluster, Mode::Apply).await;
        {
            let mut objects = cluster.objects.lock().unwrap();
            let current = objects.get_mut(&name).expect("resource");
            let unchanged = obj
                .status
                .as_ref()
                .is_some_and(|p| same_ignoring_times(p, &out.status));
            if !unchanged {
                current.status = Some(out.status.clone());
                cluster.status_writes.fetch_add(1, Ordering::Relaxed);
            }
        }
        cluster
            .events
            .fetch_add(out.events.len() as u64, Ordering::Relaxed);
        cluster.reconciles.fetch_add(1, Ordering::Relaxed);
        *cluster
            .per_resource
            .lock()
            .unwrap()
            .entry(name.clone())
            .or_default() += 1;
        tokio::select! {
            _ = tokio::time::sleep(out.requeue_after) => {}
            _ = wake.notified() => {}
        }
    }
}

fn resource(i: usize, reg: &str, model_url: &str) -> StableDiffusionDeployment {
    let mut obj: StableDiffusionDeployment =
        serde_json::from_value(bench_resource(i, reg, model_url, SETUP_KEYS, PER_PROJECT))
            .expect("valid resource");
    obj.metadata.uid = Some(format!(
        "{:08x}-7c3d-4e5f-8a9b-0c1d2e3f4a5b",
        0x1000_0000 + i
    ));
    obj.metadata.generation = Some(1);
    obj
}

fn proc_status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    while !done() {
        if t0.elapsed() > limit {
            bail!("{what}: not done after {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(t0.elapsed())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn bench() -> anyhow::Result<()> {
    let started = Instant::now();
    let sim = SimProcess::start()?;
    let dir = tempfile::tempdir()?;
    let registry = LocalRegistry::start(dir.path())
        .await
        .context("docker-registry (apt-get install docker-registry)")?;
    push_tiny_base_image(&registry.host_port(), "base/sdnext:tiny", false).await?;
    let models = ModelServer::start(ModelServerOptions::default()).await?;
    models.add_generated("/models/tiny.safetensors", 256 * 1024, 5);

    let sim_url = url_parts(&sim.base_url)?;
    let engine = make_engine(sim.base_url.clone(), &registry);
    println!(
        "memory before any resource: VmRSS {:.1} MiB",
        proc_status_mib("VmRSS:")
    );
    let cluster = Arc::new(Cluster::default());
    let model_url = models.url("/models/tiny.safetensors");
    let names: Vec<String> = (0..RESOURCES).map(|i| format!("sd-{i:04}")).collect();
    {
        let mut objects = cluster.objects.lock().unwrap();
        for (i, name) in names.iter().enumerate() {
            objects.insert(name.clone(), resource(i, &registry.host_port(), &model_url));
        }
        let mut secrets = cluster.secrets.lock().unwrap();
        for k in 0..SETUP_KEYS {
            secrets.insert(
                format!("salad-key-{k:02}"),
                format!("bench-setup-key-{k:02}"),
            );
        }
    }
    // 0. The Secret watch, as the operator runs it, over the unrelated Secrets.
    let secrets_seen = Arc::new(AtomicU64::new(0));
    let secrets_triggered = Arc::new(AtomicU64::new(0));
    let secret_watch = watch_secrets(
        &sim.kube_url,
        cluster.clone(),
        secrets_seen.clone(),
        secrets_triggered.clone(),
    )?;
    let n_secrets = unrelated_secrets() as u64;
    let listed = wait_until(
        "the Secret watch's initial list",
        Duration::from_secs(120),
        || secrets_seen.load(Ordering::Relaxed) >= n_secrets,
    )
    .await?;
    let secrets_mode = if std::env::var("BENCH_SECRETS_FULL").is_ok_and(|v| v == "1") {
        "with data (the old watch)"
    } else {
        "by metadata only"
    };
    println!(
        "secrets: {n_secrets} unrelated Secrets of {SECRET_BYTES} B watched {secrets_mode}, listed in {:.1} s, {} resources triggered; VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        listed.as_secs_f64(),
        secrets_triggered.load(Ordering::Relaxed),
        proc_status_mib("VmRSS:"),
        proc_status_mib("VmHWM:")
    );
    let wakes: Vec<Arc<Notify>> = names.iter().map(|_| Arc::new(Notify::new())).collect();
    let spawn = |i: usize| {
        tokio::spawn(run_resource(
            names[i].clone(),
            cluster.clone(),
            engine.clone(),
            wakes[i].clone(),
        ))
    };

    // 1. Setup: one resource builds the image, then all converge.
    let mut tasks = vec![spawn(0)];
    let build = wait_until("image build", Duration::from_secs(60), || {
        cluster.get(&names[0]).status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == salad_sd_api::condition::IMAGE_READY && c.status == "True")
        })
    })
    .await?;
    tasks.extend((1..RESOURCES).map(spawn));
    let converge = wait_until("1,000 resources Ready", Duration::from_secs(150), || {
        names.iter().all(|n| cluster.ready(n))
    })
    .await?;
    let setup_ops = sim_ops(&sim_url.0).await?.0;
    println!(
        "memory right after setup: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        proc_status_mib("VmRSS:"),
        proc_status_mib("VmHWM:")
    );
    println!(
        "setup: image built in {:.1} s; {RESOURCES} resources Ready in {:.1} s ({} SaladCloud requests, {} resources per project, {SETUP_KEYS} setup keys; by operation {setup_ops:?})",
        build.as_secs_f64(),
        converge.as_secs_f64(),
        setup_ops.values().sum::<u64>(),
        PER_PROJECT
    );

    // 2. Steady state: forced poll rounds over every resource.
    let status0 = cluster.status_writes.load(Ordering::Relaxed);
    let events0 = cluster.events.load(Ordering::Relaxed);
    let rec0 = cluster.reconciles.load(Ordering::Relaxed);
    let (ops0, _) = sim_ops(&sim_url.0).await?;
    for round in 0..STEADY_ROUNDS {
        let before: Vec<u64> = names.iter().map(|n| cluster.count(n)).collect();
        for w in &wakes {
            w.notify_one();
        }
        wait_until(
            &format!("steady round {round}"),
            Duration::from_secs(60),
            || {
                names
                    .iter()
                    .zip(&before)
                    .all(|(n, b)| cluster.count(n) > *b)
            },
        )
        .await?;
    }
    let steady_reconciles = cluster.reconciles.load(Ordering::Relaxed) - rec0;
    let steady_status = cluster.status_writes.load(Ordering::Relaxed) - status0;
    let steady_events = cluster.events.load(Ordering::Relaxed) - events0;
    let steady_ops = ops_delta(&ops0, &sim_ops(&sim_url.0).await?.0);
    let steady_requests: u64 = steady_ops.values().sum();
    let steady_writes = writes_of(&steady_ops);
    let per_poll = steady_requests as f64 / steady_reconciles as f64;
    println!(
        "steady: {steady_reconciles} reconciles ({STEADY_ROUNDS} rounds × {RESOURCES} + background polls), {steady_requests} SaladCloud requests = {per_poll:.3} per resource per poll; by operation {steady_ops:?}; SaladCloud writes {steady_writes}, status writes {steady_status}, events {steady_events}"
    );
    let rss = proc_status_mib("VmRSS:");
    let hwm = proc_status_mib("VmHWM:");
    println!(
        "memory with {RESOURCES} resources and {n_secrets} unrelated Secrets ({secrets_mode}) in steady state: VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB (operator process: engine with {SETUP_KEYS} API-key clients, the Secret watch, and the in-process API-server stand-in; the simulator and the Secrets' API are another process)"
    );
    // How much of that is the allocator holding freed memory (the setup burst's high-water
    // mark) rather than live data: give free heap pages back and look again.
    // SAFETY: malloc_trim only returns unused heap pages to the OS; it has no preconditions.
    unsafe { libc::malloc_trim(0) };
    let trimmed = proc_status_mib("VmRSS:");
    println!(
        "memory after malloc_trim(0): VmRSS {trimmed:.1} MiB ({:.1} MiB was freed heap the allocator kept)",
        rss - trimmed
    );
    let (objects_json, status_json) = {
        let objects = cluster.objects.lock().unwrap();
        objects.values().fold((0usize, 0usize), |(o, st), obj| {
            (
                o + serde_json::to_vec(obj).map_or(0, |v| v.len()),
                st + obj
                    .status
                    .as_ref()
                    .and_then(|s| serde_json::to_vec(s).ok())
                    .map_or(0, |v| v.len()),
            )
        })
    };
    // Each resource's loop is one spawned future whose state machine has room for a whole
    // reconcile future, allocated for the loop's lifetime (a Controller holds one per reconcile
    // in flight).
    let probe = cluster.get(&names[0]);
    let reconcile_future = std::mem::size_of_val(&engine.reconcile(&probe, &*cluster, Mode::Apply));
    let loop_future = std::mem::size_of_val(&run_resource(
        names[0].clone(),
        cluster.clone(),
        engine.clone(),
        wakes[0].clone(),
    ));
    println!(
        "where it goes: the {RESOURCES} resources as JSON are {:.1} MiB ({:.1} MiB of it status), held once by the stand-in (a reflector store in the operator) and once more as each loop's working copy; one reconcile future is {:.1} KiB, one per-resource loop future {:.1} KiB, × {RESOURCES} = {:.1} MiB",
        objects_json as f64 / 1048576.0,
        status_json as f64 / 1048576.0,
        reconcile_future as f64 / 1024.0,
        loop_future as f64 / 1024.0,
        (loop_future * RESOURCES) as f64 / 1048576.0
    );

    // 3. Change → PATCH. The operator restarts with an engine whose SaladCloud URL is a
    // loopback proxy that timestamps PATCHes; one warm-up reconcile per resource first.
    // The proxy: engine → proxy → simulator.
    let (patch_tx, mut patch_rx) = mpsc::unbounded_channel();
    let proxy = Arc::new(Proxy {
        upstream: sim_url.0.clone(),
        http: reqwest::Client::builder().no_proxy().build()?,
        requests: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        limited: AtomicU64::new(0),
        by_op: Mutex::default(),
        by_key: Mutex::default(),
        patches: patch_tx,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .fallback(proxy_handler)
        .with_state(proxy.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    for t in tasks.drain(..) {
        t.abort();
    }
    let engine = make_engine(format!("http://{proxy_addr}{}", sim_url.1), &registry);
    let before: Vec<u64> = names.iter().map(|n| cluster.count(n)).collect();
    tasks.extend(spawn_all(&names, &cluster, &engine, &wakes));
    wait_until("warm-up round", Duration::from_secs(60), || {
        names
            .iter()
            .zip(&before)
            .all(|(n, b)| cluster.count(n) > *b)
    })
    .await?;
    while patch_rx.try_recv().is_ok() {}
    let warm_ops = proxy.by_op.lock().unwrap().clone();
    let warm_429 = proxy.limited.load(Ordering::Relaxed);
    let mut latencies = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let group = cluster
            .get(&names[i])
            .status
            .and_then(|s| s.container_group)
            .map(|g| g.name)
            .context("a converged resource has a group")?;
        let t0 = {
            let mut objects = cluster.objects.lock().unwrap();
            let o = objects.get_mut(&names[i]).expect("resource");
            o.spec.replicas = 2;
            o.metadata.generation = Some(o.metadata.generation.unwrap_or(1) + 1);
            Instant::now()
        };
        wakes[i].notify_one();
        let at = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match patch_rx.recv().await {
                    Some((g, at)) if g == group => return Some(at),
                    Some(_) => {}
                    None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten();
        let Some(at) = at else {
            let o = cluster.get(&names[i]);
            let st = o.status.unwrap_or_default();
            eprintln!(
                "DIAG change {i}: reconciles of it {}, phase {:?}, message {:?}; proxy by op {:?}, 429s {}",
                cluster.count(&names[i]),
                st.phase,
                st.message,
                proxy.by_op.lock().unwrap(),
                proxy.limited.load(Ordering::Relaxed)
            );
            let key = format!("bench-setup-key-{:02}", i % SETUP_KEYS);
            let now = Instant::now();
            for ((k, op), times) in proxy.by_key.lock().unwrap().iter() {
                if *k == key {
                    let last_min = times
                        .iter()
                        .filter(|t| now.duration_since(**t) < Duration::from_secs(60))
                        .count();
                    eprintln!(
                        "DIAG key {k} {op}: {} in all, {last_min} in the last 60 s",
                        times.len()
                    );
                }
            }
            bail!("no PATCH of `{group}` within 10 s of its spec change");
        };
        latencies.push(at.duration_since(t0).as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    println!(
        "change → PATCH over {CHANGES} replica changes: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    if let Err(e) = wait_until(
        "changed resources Ready again",
        Duration::from_secs(60),
        || names.iter().all(|n| cluster.ready(n)),
    )
    .await
    {
        for n in names.iter().filter(|n| !cluster.ready(n)).take(5) {
            let st = cluster.get(n).status.unwrap_or_default();
            eprintln!(
                "not Ready: {n}: {} reconciles, phase {:?}, {:?}, fleet {:?}",
                cluster.count(n),
                st.phase,
                st.message,
                st.fleet.map(|f| f.summary)
            );
        }
        eprintln!(
            "proxy by op {:?}, 429s {}",
            proxy.by_op.lock().unwrap(),
            proxy.limited.load(Ordering::Relaxed)
        );
        return Err(e);
    }
    let change_ops = ops_delta(&warm_ops, &proxy.by_op.lock().unwrap());
    println!(
        "the {CHANGES} changes until Ready again: {} SaladCloud requests ({:.1} per change; by operation {change_ops:?}), 429s {}; the warm-up before them {} requests",
        change_ops.values().sum::<u64>(),
        change_ops.values().sum::<u64>() as f64 / CHANGES as f64,
        proxy.limited.load(Ordering::Relaxed) - warm_429,
        warm_ops.values().sum::<u64>(),
    );

    // 4. One API key for all 1,000 resources, default poll, real limits. The operator restarts
    // with a fresh engine that talks to the simulator directly (no proxy latency); every resource
    // reconciles at once, as after a restart or a rotation of the shared Secret.
    for t in tasks.drain(..) {
        t.abort();
    }
    let engine = make_engine(sim.base_url.clone(), &registry);
    let limiter_view = saladcloud::Client::new(
        saladcloud::ClientConfig::new(saladcloud::ApiKey::new(ONE_KEY))
            .with_base_url(sim.base_url.clone()),
    )?;
    {
        let mut secrets = cluster.secrets.lock().unwrap();
        for v in secrets.values_mut() {
            *v = ONE_KEY.to_string();
        }
    }
    let rec0 = cluster.reconciles.load(Ordering::Relaxed);
    let status0 = cluster.status_writes.load(Ordering::Relaxed);
    let (ops_before, limited_before) = sim_ops(&sim_url.0).await?;
    let tasks = spawn_all(&names, &cluster, &engine, &wakes);
    tokio::time::sleep(one_key_run()).await;
    let (ops_after, limited_after) = sim_ops(&sim_url.0).await?;
    let one_reconciles = cluster.reconciles.load(Ordering::Relaxed) - rec0;
    let one_status = cluster.status_writes.load(Ordering::Relaxed) - status0;
    let one_ops = ops_delta(&ops_before, &ops_after);
    let one_requests: u64 = one_ops.values().sum();
    let one_writes = writes_of(&one_ops);
    let sim_429 = limited_after - limited_before;
    let lim = limiter_view.rate_limiter_stats();
    let per_min = one_requests as f64 / one_key_run().as_secs_f64() * 60.0;
    println!(
        "one key, {} s at the default {} s poll, all {RESOURCES} resources due at once: {one_requests} SaladCloud requests ({per_min:.0}/min; client budget {}/{} s, simulator 240/60 s) by operation {one_ops:?}; 429s counted by the simulator {sim_429}; {one_reconciles} reconciles finished; limiter: {} permits waited, longest wait {:.1} s; SaladCloud writes {one_writes}, status writes {one_status}; at this budget each resource is polled every ~{:.0} s instead of {} s",
        one_key_run().as_secs(),
        POLL.as_secs(),
        lim.budget,
        lim.window.as_secs(),
        lim.delayed,
        lim.max_wait.as_secs_f64(),
        RESOURCES as f64 / (f64::from(lim.budget) / lim.window.as_secs_f64()),
        POLL.as_secs()
    );
    println!(
        "time scale: 1 (real 60 s windows in client and simulator); total run {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for t in tasks {
        t.abort();
    }
    secret_watch.abort();
    drop(sim);
    println!(
        "{}",
        json!({
            "change_to_patch_ms_p50": (p50 * 100.0).round() / 100.0,
            "change_to_patch_ms_p99": (p99 * 100.0).round() / 100.0,
            "steady_requests_per_resource_per_poll": (per_poll * 1000.0).round() / 1000.0,
            "rss_mib_1000": (rss * 10.0).round() / 10.0,
            "rss_mib_1000_after_trim": (trimmed * 10.0).round() / 10.0,
            "unrelated_secrets": n_secrets,
            "secrets_watched": secrets_mode,
            "rate_limited_429": sim_429,
        })
    );
    Ok(())
}

/// `http://127.0.0.1:PORT/api/public` → (`http://127.0.0.1:PORT`, `/api/public`).
fn url_parts(base: &str) -> anyhow::Result<(String, String)> {
    let rest = base
        .strip_prefix("http://")
        .context("the simulator URL is http")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = if path.is_empty() {
        String::new()
    } else {
        format!("/{path}")
    };
    Ok((format!("http://{host}"), path))
}

/// Requests per operation (API only) and 429s so far, from the simulator.
async fn sim_ops(origin: &str) -> anyhow::Result<(BTreeMap<String, u64>, u64)> {
    let v: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{origin}/_admin/stats"))
        .send()
        .await?
        .json()
        .await?;
    let ops = v["requests"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(op, _)| !matches!(op.as_str(), "admin" | "gateway" | "unknown"))
                .map(|(op, st)| {
                    let n = st
                        .as_object()
                        .map_or(0, |st| st.values().filter_map(|x| x.as_u64()).sum());
                    (op.clone(), n)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((ops, v["rate_limited"].as_u64().unwrap_or(0)))
}

fn ops_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Requests that change something (every operation but `get_*` and `list_*`).
fn writes_of(ops: &BTreeMap<String, u64>) -> u64 {
    ops.iter()
        .filter(|(op, _)| !op.starts_with("get_") && !op.starts_with("list_"))
        .map(|(_, n)| n)
        .sum()
}

fn make_engine(salad_api_url: String, registry: &LocalRegistry) -> Arc<Engine> {
    Arc::new(
        EngineBuilder::new()
            .simulator(salad_api_url)
            .local_registry(registry.host_port())
            .poll_interval(POLL)
            .progress_interval(Duration::from_secs(1))
            .build(),
    )
}

fn spawn_all(
    names: &[String],
    cluster: &Arc<Cluster>,
    engine: &Arc<Engine>,
    wakes: &[Arc<Notify>],
) -> Vec<tokio::task::JoinHandle<()>> {
    names
        .iter()
        .zip(wakes)
        .map(|(n, w)| {
            tokio::spawn(run_resource(
                n.clone(),
                cluster.clone(),
                engine.clone(),
                w.clone(),
            ))
        })
        .collect()
}
