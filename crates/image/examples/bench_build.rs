//! `make bench-build`: builds a synthetic ≥2 GiB model into a local registry and compares the
//! time with a plain `curl -T` upload of the same bytes. Prints one JSON line at the end.
//!
//! Usage: `bench_build [--model-mib N] [--small-mib N] [--second-mib N] [--chunked]
//! [--cap-mib-s N] [--three-mib N] [--slow-cap-mib-s N] [--segment-kib N] [--buffer-mib N]
//! [--connections N] [--registry-go-procs N]`; `--segment-kib`, `--buffer-mib` and
//! `--connections` override the builder's download defaults, `--registry-go-procs` runs the
//! registry with `GOMAXPROCS=N`; `--chunked` uploads with 8 MiB `Content-Range` PATCHes
//! instead of one streaming PATCH. It also builds the big model from a source that caps each
//! connection at `--cap-mib-s` MiB/s (default 50; the builder's parallel ranges against the plain
//! upload), and three new models (`--three-mib`, 512, 256 MiB) of one image at once against the
//! largest alone, with plain `curl -T` uploads of the same three sizes (alone and at once) as the
//! registry's own ceiling; and the three models again from a source capped at `--slow-cap-mib-s`
//! (default 10) per connection, where the downloads and not the registry are the bottleneck.
//!
//! The model sources run in a child process (`--serve-sources`), so the builder's peak RSS counts
//! only the builder; the registry keeps its blobs on tmpfs (`/dev/shm`) when it has room, so the
//! figures measure the builder and not this machine's disk write-back (`--registry-dir` chooses).
#![recursion_limit = "256"]

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use futures::StreamExt;
use salad_sd_image::{
    Builder, BuilderOptions, ConfigEdit, LayerContent, LayerSpec, Recipe, Source, SourcePolicy,
    UploadMode,
};
use salad_sd_testkit::{
    LocalRegistry, ModelServer, ModelServerOptions, RangedServer, RangedServerOptions,
    generated_content, generated_sha256, push_tiny_base_image,
};
use sha2::{Digest, Sha256};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(-1.0)
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses, may hold spaces): state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / per_s
}

/// CPU seconds of the builder (this process), the model sources and the registry.
#[derive(Clone, Copy)]
struct Cpu([f64; 3]);

impl Cpu {
    fn now(pids: [u32; 3]) -> Self {
        Self(pids.map(cpu_s))
    }

    /// `{"builder": s, "sources": s, "registry": s}` used since `self`.
    fn since(self, pids: [u32; 3]) -> serde_json::Value {
        let now = Cpu::now(pids).0;
        let d = |i: usize| ((now[i] - self.0[i]) * 100.0).round() / 100.0;
        serde_json::json!({"builder": d(0), "sources": d(1), "registry": d(2)})
    }
}

fn layer(name: &str, url: String, sha256: String, path: &str) -> LayerSpec {
    LayerSpec {
        name: name.into(),
        source: Source {
            url,
            sha256: Some(sha256),
            auth: None,
        },
        content: LayerContent::File {
            path_in_image: path.into(),
            mode: 0o644,
        },
    }
}

fn recipe(base: &str, layers: Vec<LayerSpec>) -> Recipe {
    Recipe {
        base_image: base.into(),
        layers,
        config: ConfigEdit {
            cmd: Some(vec!["--listen".into()]),
            ..Default::default()
        },
    }
}

/// Opens an upload session of `repo` (`POST …/blobs/uploads/`) and returns its `Location`.
fn curl_session(reg: &LocalRegistry, repo: &str) -> Res<String> {
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!("{}/v2/{repo}/blobs/uploads/", reg.url()))
        .output()?;
    let headers = String::from_utf8_lossy(&out.stdout);
    Ok(headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .ok_or("no Location from POST")?
        .trim()
        .to_owned())
}

/// `curl -T file` into an open upload session, finishing it with `digest`.
fn curl_put(location: &str, file: &Path, digest: &str) -> Res<Child> {
    let sep = if location.contains('?') { '&' } else { '?' };
    Ok(Command::new("curl")
        .args([
            "-sS",
            "-f",
            "-o",
            "/dev/null",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
        ])
        .arg(file)
        .arg(format!("{location}{sep}digest={digest}"))
        .spawn()?)
}

/// Seconds for plain `curl -T` uploads of `files` (path, digest) at once, sessions opened first.
fn curl_uploads(reg: &LocalRegistry, files: &[(PathBuf, String)]) -> Res<f64> {
    let sessions = files
        .iter()
        .map(|_| curl_session(reg, "bench/curl"))
        .collect::<Res<Vec<_>>>()?;
    let start = Instant::now();
    let children = sessions
        .iter()
        .zip(files)
        .map(|(loc, (file, digest))| curl_put(loc, file, digest))
        .collect::<Res<Vec<_>>>()?;
    for mut c in children {
        if !c.wait()?.success() {
            return Err("curl -T upload failed".into());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    for (_, digest) in files {
        forget_blob(reg, digest);
    }
    Ok(secs)
}

/// Removes a blob's bytes from the throwaway registry's storage, so the curl references do not
/// fill tmpfs (nothing refers to them).
fn forget_blob(reg: &LocalRegistry, digest: &str) {
    let hex = digest.trim_start_matches("sha256:");
    let dir = reg
        .dir()
        .join("data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    let _ = std::fs::remove_dir_all(dir);
}

/// Writes `size` bytes of generated content (seed) to `path` (page-cached), returns the digest.
async fn write_generated(path: &Path, size: u64, seed: u64) -> Res<String> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut h = Sha256::new();
    let mut s = generated_content(size, seed).boxed();
    while let Some(c) = s.next().await {
        h.update(&c);
        f.write_all(&c)?;
    }
    f.flush()?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Sizes of the benchmark's models, from the command line.
struct Sizes {
    model: u64,
    small: u64,
    second: u64,
    three: [u64; 3],
    cap_mib_s: u64,
    slow_cap_mib_s: u64,
}

impl Sizes {
    fn from_args() -> Self {
        Self {
            model: arg("--model-mib", 2048) << 20,
            small: arg("--small-mib", 256) << 20,
            second: arg("--second-mib", 64) << 20,
            three: [arg("--three-mib", 1024) << 20, 512 << 20, 256 << 20],
            cap_mib_s: arg("--cap-mib-s", 50),
            slow_cap_mib_s: arg("--slow-cap-mib-s", 10),
        }
    }

    /// Files of the plain source: path, size, seed of the generated content.
    fn plain(&self) -> Vec<(String, u64, u64)> {
        vec![
            ("/small".into(), self.small, 1),
            ("/big".into(), self.model, 2),
            ("/b1".into(), self.second, 3),
            ("/b2".into(), self.second, 4),
        ]
    }

    /// Files of the capped sources: the big model, and the three models under `/alone-{i}`
    /// (for the largest-alone build) and `/three-{i}` (the three-at-once build), each with its
    /// own content (seeds from `seed`), so that no build reuses another's layer.
    fn capped(&self, seed: u64) -> Vec<(String, u64, u64)> {
        let mut files = vec![("/big".into(), self.model, 2)];
        for (i, size) in self.three.iter().enumerate() {
            files.push((format!("/alone-{i}"), *size, seed + i as u64));
            files.push((format!("/three-{i}"), *size, seed + 10 + i as u64));
        }
        files
    }

    /// Bytes kept in the registry's storage over the run, and the largest of the files `curl -T`
    /// reads beside it (one at a time: the 2 GiB file is removed before the three are written).
    fn storage_bytes(&self) -> u64 {
        let three = self.three.iter().sum::<u64>();
        2 * self.model + self.small + 2 * self.second + 4 * three + self.model.max(three)
    }
}

const CAPPED_SEEDS: u64 = 30;
const SLOW_SEEDS: u64 = 60;
const CURL_SEEDS: u64 = 90;

/// `--serve-sources`: the plain and the capped model source, until stdin closes. Prints their
/// base URLs as one JSON line, then one JSON line of counters per `stats` line read.
async fn serve_sources() -> Res<()> {
    let sizes = Sizes::from_args();
    let models = ModelServer::start(ModelServerOptions::default()).await?;
    for (path, size, seed) in sizes.plain() {
        models.add_generated(&path, size, seed);
    }
    let capped_at = |mib_s: u64| {
        RangedServer::start(RangedServerOptions {
            bytes_per_sec: Some(mib_s << 20),
            ..Default::default()
        })
    };
    let (capped, slow) = (
        capped_at(sizes.cap_mib_s).await?,
        capped_at(sizes.slow_cap_mib_s).await?,
    );
    for (path, size, seed) in sizes.capped(CAPPED_SEEDS) {
        capped.add_generated(&path, size, seed);
    }
    for (path, size, seed) in sizes.capped(SLOW_SEEDS) {
        slow.add_generated(&path, size, seed);
    }
    println!(
        "{}",
        serde_json::json!({
            "models": models.url("/").trim_end_matches('/'),
            "capped": capped.url(""),
            "slow": slow.url(""),
        })
    );
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if line.map(|l| tx.send(l)).is_err() {
                return;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        if line.trim() == "stats" {
            println!(
                "{}",
                serde_json::json!({
                    "big_served": models.bytes_served("/big"),
                    "capped_requests": capped.requests().len(),
                    "capped_max_concurrent": capped.max_concurrent(),
                })
            );
        }
    }
    Ok(())
}

/// The model sources' process, seen from the benchmark. Killed on drop.
struct Sources {
    child: Child,
    stdin: ChildStdin,
    stdout: std::io::BufReader<ChildStdout>,
    models: String,
    capped: String,
    slow: String,
}

impl Sources {
    fn start() -> Res<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(std::env::args().skip(1))
            .arg("--serve-sources")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let urls: serde_json::Value = serde_json::from_str(&line)?;
        let url = |k: &str| urls[k].as_str().map(str::to_owned).ok_or("no source URL");
        Ok(Self {
            models: url("models")?,
            capped: url("capped")?,
            slow: url("slow")?,
            child,
            stdin,
            stdout,
        })
    }

    fn stats(&mut self) -> Res<serde_json::Value> {
        writeln!(self.stdin, "stats")?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(serde_json::from_str(&line)?)
    }

    fn stat(&mut self, key: &str) -> Res<u64> {
        self.stats()?[key]
            .as_u64()
            .ok_or_else(|| format!("no {key} from the sources").into())
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Seconds of the largest of the three models alone, then of all three (other content) at
/// once, from the source at `url` (seeds from `seed`, as [`Sizes::capped`]), into repositories
/// of their own for this `round`.
async fn three_models(bench: &Bench<'_>, url: &str, seed: u64, round: usize) -> Res<ThreeModels> {
    let Bench {
        builder,
        reg,
        base,
        sizes,
        pids,
    } = *bench;
    let model = |i: usize, kind: &str, seed: u64| {
        layer(
            &format!("m{i}"),
            format!("{url}/{kind}-{i}"),
            generated_sha256(sizes.three[i], seed + i as u64),
            &format!("/webui/data/models/Lora/m{i}.safetensors"),
        )
    };
    // The recipes (and the sha256 of their generated content) are made before the clock starts.
    let alone = recipe(base, vec![model(0, "alone", seed)]);
    let (t, cpu) = (Instant::now(), Cpu::now(pids));
    builder
        .build(
            &alone,
            &format!("{}/bench/largest-{seed}-{round}", reg.host_port()),
        )
        .await?;
    let largest_s = t.elapsed().as_secs_f64();
    let largest_cpu = cpu.since(pids);
    let three = recipe(base, (0..3).map(|i| model(i, "three", seed + 10)).collect());
    let (t, cpu) = (Instant::now(), Cpu::now(pids));
    builder
        .build(
            &three,
            &format!("{}/bench/three-{seed}-{round}", reg.host_port()),
        )
        .await?;
    Ok(ThreeModels {
        largest_s,
        largest_cpu,
        three_s: t.elapsed().as_secs_f64(),
        three_cpu: cpu.since(pids),
    })
}

/// What every timed build needs.
#[derive(Clone, Copy)]
struct Bench<'a> {
    builder: &'a Builder,
    reg: &'a LocalRegistry,
    base: &'a str,
    sizes: &'a Sizes,
    /// The builder, the sources and the registry, as [`Cpu`] reads them.
    pids: [u32; 3],
}

/// What [`three_models`] measured.
struct ThreeModels {
    largest_s: f64,
    largest_cpu: serde_json::Value,
    three_s: f64,
    three_cpu: serde_json::Value,
}

/// Share of the machine's cores the three processes kept busy over `secs`: 1.0 is all of them.
fn busy_share(cpu: &serde_json::Value, secs: f64) -> f64 {
    let used: f64 = ["builder", "sources", "registry"]
        .iter()
        .filter_map(|k| cpu[k].as_f64())
        .sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (used / (cores * secs) * 100.0).round() / 100.0
}

/// Where the registry keeps its blobs: `--registry-dir`, else tmpfs when it has room for the
/// run, else the system's temp directory.
fn registry_parent(need: u64) -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--registry-dir")
        .and_then(|i| args.get(i + 1))
    {
        return dir.into();
    }
    let shm = Path::new("/dev/shm");
    let free = || -> Option<u64> {
        let c = std::ffi::CString::new("/dev/shm").ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid C string and `st` a writable statvfs.
        (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
            .then(|| st.f_bavail as u64 * st.f_frsize as u64)
    };
    if shm.is_dir() && free().is_some_and(|f| f > need + (1 << 30)) {
        shm.into()
    } else {
        std::env::temp_dir()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    if std::env::args().any(|a| a == "--serve-sources") {
        return serve_sources().await;
    }
    let sizes = Sizes::from_args();
    let Sizes {
        model,
        small,
        second,
        three: three_sizes,
        cap_mib_s,
        slow_cap_mib_s: slow_cap,
    } = sizes;
    let mib = |b: u64| b >> 20;
    let (model_mib, small_mib) = (mib(model), mib(small));

    let registry_parent = registry_parent(sizes.storage_bytes());
    let dir = tempfile::tempdir_in(&registry_parent)?;
    // Beside the registry: on tmpfs no write-back to disk runs under the timed `curl -T`.
    let files = tempfile::tempdir_in(&registry_parent)?;
    // 0: Go's default (one P per core). On a machine of a few cores shared with the builder and
    // the sources, fewer Ps keep the registry's idle Ps from spinning while it waits on a socket.
    let registry_go_procs = arg("--registry-go-procs", 0) as usize;
    let reg = match registry_go_procs {
        0 => LocalRegistry::start(&dir.path().join("registry")).await?,
        procs => LocalRegistry::start_with_go_procs(&dir.path().join("registry"), procs).await?,
    };
    let mut sources = Sources::start()?;
    let pids = [std::process::id(), sources.child.id(), reg.pid()];
    let plain_url = |path: &str| format!("{}{path}", sources.models);
    let capped_url = |path: &str| format!("{}{path}", sources.capped);
    let (small_url, big_url, b1_url, b2_url) = (
        plain_url("/small"),
        plain_url("/big"),
        plain_url("/b1"),
        plain_url("/b2"),
    );
    let capped_big = capped_url("/big");
    let base = format!("{}/bench/base:v1", reg.host_port());
    push_tiny_base_image(&reg.host_port(), "bench/base:v1", false).await?;
    eprintln!("hashing synthetic models (not timed)…");
    let (small_sha, big_sha) = (generated_sha256(small, 1), generated_sha256(model, 2));
    let (b1_sha, b2_sha) = (generated_sha256(second, 3), generated_sha256(second, 4));
    let opts = BuilderOptions {
        insecure_registries: vec![reg.host_port()],
        source_policy: SourcePolicy {
            allow_private_sources: true,
            allow_file_sources: false,
        },
        upload_mode: if std::env::args().any(|a| a == "--chunked") {
            UploadMode::Chunked
        } else {
            UploadMode::Auto
        },
        ..Default::default()
    };
    // The builder's defaults unless asked otherwise (to explore the memory/bandwidth trade).
    let opts = BuilderOptions {
        download_segment_bytes: arg("--segment-kib", opts.download_segment_bytes >> 10) << 10,
        download_buffer_bytes: arg("--buffer-mib", opts.download_buffer_bytes >> 20) << 20,
        download_connections: arg("--connections", opts.download_connections as u64) as usize,
        ..opts
    };
    let (segment_bytes, buffer_bytes, connections) = (
        opts.download_segment_bytes,
        opts.download_buffer_bytes,
        opts.download_connections,
    );
    let builder = Builder::new(opts)?;
    let ckpt = "/webui/data/models/Stable-diffusion/model.safetensors";
    let lora = "/webui/data/models/Lora/lora.safetensors";

    // Flatness: a small model first, then the big one; VmHWM is monotonic.
    let t = Instant::now();
    builder
        .build(
            &recipe(&base, vec![layer("small", small_url, small_sha, ckpt)]),
            &format!("{}/bench/flat", reg.host_port()),
        )
        .await?;
    let rss_small = vm_hwm_mib();
    eprintln!(
        "{small_mib} MiB build: {:.2} s, VmHWM {rss_small:.1} MiB",
        t.elapsed().as_secs_f64()
    );

    // Plain curl -T of the same bytes as the big model, from a temp file beside the registry
    // (tmpfs when it has room).
    let file = files.path().join("model.bin");
    let digest = write_generated(&file, model, 2).await?;
    let target = format!("{}/bench/app", reg.host_port());
    let r_big = recipe(
        &base,
        vec![layer("big", big_url.clone(), big_sha.clone(), ckpt)],
    );
    let two = |b: &str, sha: &str| {
        recipe(
            &base,
            vec![
                layer("big", big_url.clone(), big_sha.clone(), ckpt),
                layer("lora", b.to_owned(), sha.to_owned(), lora),
            ],
        )
    };
    // The goals' ratios compare runs a few seconds apart; a shared machine drifts by more than
    // the margins over minutes, so each ratio is taken `--rounds` times, interleaved.
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let rounds = arg("--rounds", 3).max(1) as usize;
    let bench = Bench {
        builder: &builder,
        reg: &reg,
        base: &base,
        sizes: &sizes,
        pids,
    };
    let mut round_figures = Vec::new();
    let mut plain = None;
    for round in 0..rounds {
        let cpu = Cpu::now(pids);
        let curl_s = curl_uploads(&reg, &[(file.clone(), digest.clone())])?;
        let curl_cpu = cpu.since(pids);
        eprintln!("round {round}: curl -T {model_mib} MiB: {curl_s:.2} s");

        if round == 0 {
            let (t, cpu) = (Instant::now(), Cpu::now(pids));
            let img = builder.build(&r_big, &target).await?;
            let build_s = t.elapsed().as_secs_f64();
            let build_cpu = cpu.since(pids);
            let rss = vm_hwm_mib();
            eprintln!(
                "build {model_mib} MiB: {build_s:.2} s, layer {} bytes, VmHWM {rss:.1} MiB",
                img.layers[0].size
            );
            let t = Instant::now();
            let again = builder.build(&r_big, &target).await?;
            let rebuild_s = t.elapsed().as_secs_f64();
            builder.build(&two(&b1_url, &b1_sha), &target).await?;
            let big_served = sources.stat("big_served")?;
            let changed = builder.build(&two(&b2_url, &b2_sha), &target).await?;
            assert_eq!(
                sources.stat("big_served")?,
                big_served,
                "the unchanged model was downloaded again"
            );
            eprintln!(
                "one of two changed: uploaded {} bytes (changed layer {} bytes), downloaded {}",
                changed.bytes_uploaded, changed.layers[1].size, changed.bytes_downloaded
            );
            plain = Some(serde_json::json!({
                "build_s": r3(build_s),
                "curl_upload_s": r3(curl_s),
                "ratio": r3(build_s / curl_s),
                "build_cpu_s": build_cpu,
                "curl_upload_cpu_s": curl_cpu.clone(),
                "peak_rss_mib": r1(rss),
                "rebuild_s": r3(rebuild_s),
                "rebuild_uploaded_bytes": again.bytes_uploaded,
                "one_changed_uploaded_bytes": changed.bytes_uploaded,
                "one_changed_layer_bytes": changed.layers[1].size,
            }));
        }

        // A source that caps each connection (a CDN edge, a slow peering link): the big model
        // over parallel ranges, against the plain upload of the same bytes; then three new
        // models of one image at once, against the largest alone. Each round builds into fresh
        // repositories, so no index tag lets a layer be reused.
        let (t, cpu) = (Instant::now(), Cpu::now(pids));
        let ranges_before = sources.stat("capped_requests")?;
        builder
            .build(
                &recipe(
                    &base,
                    vec![layer("big", capped_big.clone(), big_sha.clone(), ckpt)],
                ),
                &format!("{}/bench/capped-{round}", reg.host_port()),
            )
            .await?;
        let capped_s = t.elapsed().as_secs_f64();
        let capped_cpu = cpu.since(pids);
        let capped_ranges = sources.stat("capped_requests")? - ranges_before;
        eprintln!(
            "round {round}: build {model_mib} MiB from a source capped at {cap_mib_s} MiB/s per connection: {capped_s:.2} s ({capped_ranges} ranges)"
        );
        if round == 0 {
            eprintln!(
                "  at most {} ranges at once",
                sources.stat("capped_max_concurrent")?
            );
        }
        let capped_root = sources.capped.clone();
        let ThreeModels {
            largest_s,
            largest_cpu,
            three_s,
            three_cpu,
        } = three_models(&bench, &capped_root, CAPPED_SEEDS, round).await?;
        eprintln!(
            "round {round}: three new models ({:?} MiB) at once: {three_s:.2} s; the largest alone {largest_s:.2} s",
            three_sizes.map(mib)
        );
        round_figures.push(serde_json::json!({
            "curl_upload_s": r3(curl_s),
            "curl_upload_cpu_s": curl_cpu,
            "capped_build_s": r3(capped_s),
            "capped_ratio_to_curl_upload": r3(capped_s / curl_s),
            "capped_busy_share": busy_share(&capped_cpu, capped_s),
            "capped_cpu_s": capped_cpu,
            "capped_ranges": capped_ranges,
            "three_models_s": r3(three_s),
            "three_models_cpu_s": three_cpu,
            "three_models_busy_share": busy_share(&three_cpu, three_s),
            "largest_alone_s": r3(largest_s),
            "largest_alone_cpu_s": largest_cpu,
            "largest_alone_busy_share": busy_share(&largest_cpu, largest_s),
            "three_ratio_to_largest": r3(three_s / largest_s),
        }));
    }
    std::fs::remove_file(&file)?;
    let rss_three = vm_hwm_mib();
    let three_mib = three_sizes.map(mib);
    let slow_root = sources.slow.clone();
    let slow = three_models(&bench, &slow_root, SLOW_SEEDS, 0).await?;
    let (slow_largest_s, slow_three_s) = (slow.largest_s, slow.three_s);
    let rss_slow = vm_hwm_mib();
    eprintln!(
        "from a source capped at {slow_cap} MiB/s per connection: three at once {slow_three_s:.2} s; the largest alone {slow_largest_s:.2} s; VmHWM {rss_slow:.1} MiB"
    );
    drop(sources);

    // The registry's own ceiling for the three-model case: plain uploads of the same sizes.
    let mut three_files = Vec::new();
    for (i, size) in three_sizes.iter().enumerate() {
        let path = files.path().join(format!("three-{i}.bin"));
        let digest = write_generated(&path, *size, CURL_SEEDS + i as u64).await?;
        three_files.push((path, digest));
    }
    let largest_curl_s = curl_uploads(&reg, &three_files[..1])?;
    let three_curl_s = curl_uploads(&reg, &three_files)?;
    eprintln!(
        "curl -T of the same sizes: the largest alone {largest_curl_s:.2} s, all three at once {three_curl_s:.2} s"
    );

    // The median of the rounds' figure `key`.
    let median = |key: &str| {
        let mut v: Vec<f64> = round_figures
            .iter()
            .filter_map(|r| r[key].as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = plain.expect("round 0 ran the plain build");
    out.as_object_mut().expect("an object").extend(
        serde_json::json!({
            "registry_storage": registry_parent.display().to_string(),
            "registry_go_procs": registry_go_procs,
            "model_bytes": model,
            "peak_rss_small_mib": r1(rss_small),
            "small_model_bytes": small,
            "download_segment_bytes": segment_bytes,
            "download_buffer_bytes": buffer_bytes,
            "download_connections": connections,
            "rounds": round_figures,
            "capped_source_mib_s_per_connection": cap_mib_s,
            "capped_ratio_to_curl_upload_median": median("capped_ratio_to_curl_upload"),
            "three_models_mib": three_mib,
            "three_ratio_to_largest_median": median("three_ratio_to_largest"),
            "curl_three_s": r3(three_curl_s),
            "curl_largest_alone_s": r3(largest_curl_s),
            "curl_three_ratio_to_largest": r3(three_curl_s / largest_curl_s),
            "peak_rss_after_three_mib": r1(rss_three),
            "slow_source_mib_s_per_connection": slow_cap,
            "slow_three_models_s": r3(slow_three_s),
            "slow_largest_alone_s": r3(slow_largest_s),
            "slow_three_ratio_to_largest": r3(slow_three_s / slow_largest_s),
            "peak_rss_after_slow_mib": r1(rss_slow),
        })
        .as_object()
        .expect("an object")
        .clone(),
    );
    println!("{out}");
    Ok(())
}
