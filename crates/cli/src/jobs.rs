//! `salad-sd submit NAME --prompt …` and `salad-sd jobs NAME`: jobs on the SaladCloud job
//! queue of a resource in queue mode (in the cluster, or in a file with `--filename`).
//!
//! `submit` enqueues the server kind's generation request (SD.Next's and A1111's txt2img,
//! comfyui-api's prompt, as the smoke test sends them) or a JSON file as is, waits with
//! progress, and writes the images of the answer (`{"images": [base64 PNG, …]}`) to files.
//! Polling every few seconds stays far inside an API key's 240 requests a minute.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use salad_sd_api::{SmokeTestSpec, StableDiffusionDeployment};
use saladcloud::model::{QueueJob, QueueJobPrototype, QueueJobStatus};
use saladcloud::{ApiKey, Client, ClientConfig};
use serde_json::Value;

use crate::exit;

/// Where the resource is and how to reach SaladCloud (shared by `submit` and `jobs`).
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The StableDiffusionDeployment in the cluster (current kubeconfig context).
    pub name: Option<String>,
    /// Read the resource from this YAML file instead of the cluster (credentials as for apply).
    #[arg(long = "filename", visible_alias = "file", conflicts_with = "name")]
    pub filename: Option<PathBuf>,
    /// Namespace of NAME (default: the context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// SaladCloud API base URL (the simulator's for the demo and tests).
    #[arg(long, env = "SALAD_API_URL", default_value = saladcloud::DEFAULT_BASE_URL)]
    pub salad_api_url: String,
    /// Directory of Secrets (`<dir>/<secret>/<key>`), for `--filename`.
    #[arg(long, env = "SALAD_SD_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
}

/// `salad-sd submit` flags.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub target: Target,
    /// The prompt of a txt2img job in the server's own API.
    #[arg(long, conflicts_with = "input")]
    pub prompt: Option<String>,
    /// Sampling steps of the --prompt job.
    #[arg(long, default_value_t = 20)]
    pub steps: i32,
    /// Width and height of the --prompt job's image, in pixels.
    #[arg(long, default_value_t = 512)]
    pub size: i32,
    /// A JSON file sent as the job's input, as is.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Prefix of the files written: PREFIX-0.png, … (default: the resource's name).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Print the job id and return at once.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up waiting after this long (`90s`, `30m`; default 30m).
    #[arg(long, value_parser = crate::drive::parse_duration)]
    pub timeout: Option<Duration>,
    /// Poll interval while waiting.
    #[arg(long, default_value = "3s", value_parser = crate::drive::parse_duration, hide = true)]
    pub interval: Duration,
}

/// `salad-sd jobs` flags.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Most jobs listed, newest first (1-100).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
}

/// The queue of a resource, and a client for it.
pub struct Located {
    /// The resource.
    pub sdd: StableDiffusionDeployment,
    /// The SaladCloud API key.
    pub key: ApiKey,
}

/// The resource (from the cluster, by name in `namespace` or the context's, or from a file)
/// and its API key (from the resource's Secret, or for a file from the usual places).
pub async fn locate(
    name: Option<&str>,
    filename: Option<&Path>,
    namespace: Option<&str>,
    secrets_dir: Option<&Path>,
) -> anyhow::Result<Located> {
    let (sdd, key) = match (filename, name) {
        (Some(path), _) => {
            let sdd = crate::resource::load(path)?;
            let sources = crate::creds::from_process(secrets_dir);
            let (store, have) = crate::creds::store(&sdd.spec, &sources)?;
            if !have {
                bail!("{}", crate::creds::missing_api_key_help(&sdd.spec));
            }
            let resolved = salad_sd_controller::secrets::resolve_api_key(&sdd.spec, &store)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let key = resolved
                .api_key
                .context("the API key went missing")?
                .expose()
                .to_string();
            (sdd, key)
        }
        (None, Some(name)) => {
            let client = kube::Client::try_default()
                .await
                .context("cannot reach the cluster (kubeconfig); use --filename for a file")?;
            let ns = namespace
                .map(str::to_owned)
                .unwrap_or_else(|| client.default_namespace().to_string());
            let sdd = Api::<StableDiffusionDeployment>::namespaced(client.clone(), &ns)
                .get(name)
                .await
                .with_context(|| format!("StableDiffusionDeployment `{ns}/{name}`"))?;
            let r = &sdd.spec.saladcloud.api_key_secret_ref;
            let secret = Api::<Secret>::namespaced(client, &ns)
                .get(&r.name)
                .await
                .with_context(|| format!("the API key Secret `{ns}/{}`", r.name))?;
            let key = secret
                .data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
                .with_context(|| format!("Secret `{ns}/{}` has no key `{}`", r.name, r.key))?;
            (sdd, key)
        }
        (None, None) => bail!("name a resource (NAME) or a file (--filename FILE)"),
    };
    Ok(Located {
        sdd,
        key: ApiKey::new(key),
    })
}

/// The resource's queue: `status.queue.name`, else the name the operator gives it.
pub fn queue_name(sdd: &StableDiffusionDeployment) -> anyhow::Result<String> {
    let name = sdd.metadata.name.clone().unwrap_or_default();
    if !sdd.spec.queue.enabled {
        bail!(
            "`{name}` is not in queue mode: set spec.queue.enabled: true (jobs go through a SaladCloud job queue), or call its gateway URL"
        );
    }
    Ok(sdd
        .status
        .as_ref()
        .and_then(|s| s.queue.as_ref())
        .map(|q| q.name.clone())
        .unwrap_or_else(|| {
            salad_sd_api::names::group_name_prefix(
                &name,
                sdd.metadata.uid.as_deref().unwrap_or_default(),
            )
        }))
}

/// The job input: the JSON file as is, or the kind's generation request for `prompt`.
pub fn job_input(
    sdd: &StableDiffusionDeployment,
    prompt: Option<&str>,
    steps: i32,
    size: i32,
    file: Option<&Path>,
) -> anyhow::Result<Value> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the job input {}", path.display()))?;
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()));
    }
    let Some(prompt) = prompt else {
        bail!("give --prompt TEXT or --input job.json");
    };
    let cfg = SmokeTestSpec {
        prompt: prompt.to_string(),
        steps,
        size,
    };
    salad_sd_controller::smoke::request(&sdd.spec, &cfg)
        .map(|r| r.body)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// The PNG images of an answer (`images`: base64), as bytes.
pub fn images(output: &Value) -> Vec<Vec<u8>> {
    output["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .filter(|bytes| bytes.starts_with(b"\x89PNG\r\n\x1a\n"))
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the answer: `PREFIX-i.png` per image, else `PREFIX.json`. Answers the paths.
pub fn write_output(prefix: &Path, output: &Value) -> anyhow::Result<Vec<PathBuf>> {
    let pngs = images(output);
    let mut written = Vec::new();
    if pngs.is_empty() {
        let path = prefix.with_extension("json");
        std::fs::write(&path, serde_json::to_vec_pretty(output)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    for (i, png) in pngs.iter().enumerate() {
        let path = PathBuf::from(format!("{}-{i}.png", prefix.display()));
        std::fs::write(&path, png).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn status_word(s: QueueJobStatus) -> &'static str {
    match s {
        QueueJobStatus::Pending => "pending",
        QueueJobStatus::Running => "running",
        QueueJobStatus::Succeeded => "succeeded",
        QueueJobStatus::Cancelled => "cancelled",
        QueueJobStatus::Failed => "failed",
    }
}

/// Why a job did not succeed, with its answer (the last error) in at most 500 characters.
pub fn failure_message(job: &QueueJob) -> String {
    let out = job
        .output
        .as_ref()
        .map(|o| o.to_string())
        .unwrap_or_else(|| "no output".into());
    let out: String = out.chars().take(500).collect();
    format!(
        "job {} {} (SaladCloud retries a job up to 3 times; an interrupted node counts): {out}",
        job.id,
        status_word(job.status)
    )
}

fn client(url: &str, key: ApiKey) -> anyhow::Result<Client> {
    Ok(Client::new(
        ClientConfig::new(key).with_base_url(url.to_string()),
    )?)
}

/// Runs `salad-sd submit`.
pub async fn submit(args: SubmitArgs) -> u8 {
    match submit_job(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::EXIT_ERROR
        }
    }
}

async fn submit_job(args: SubmitArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let l = locate(
        t.name.as_deref(),
        t.filename.as_deref(),
        t.namespace.as_deref(),
        t.secrets_dir.as_deref(),
    )
    .await?;
    let queue = queue_name(&l.sdd)?;
    let input = job_input(
        &l.sdd,
        args.prompt.as_deref(),
        args.steps,
        args.size,
        args.input.as_deref(),
    )?;
    let (org, project) = (
        &l.sdd.spec.saladcloud.organization,
        &l.sdd.spec.saladcloud.project,
    );
    let c = client(&args.target.salad_api_url, l.key.clone())?;
    let job = c
        .create_job(
            org,
            project,
            &queue,
            &QueueJobPrototype {
                input,
                metadata: None,
                webhook: None,
            },
        )
        .await
        .with_context(|| format!("cannot enqueue a job on queue `{queue}`"))?;
    println!("{}", job.id);
    if args.no_wait {
        return Ok(());
    }
    let started = Instant::now();
    let timeout = args.timeout.unwrap_or(Duration::from_secs(1800));
    let mut last = None;
    let job = loop {
        let job = c.get_job(org, project, &queue, &job.id).await?;
        if last != Some(job.status) {
            eprintln!(
                "{:>5}s  job {} {}",
                started.elapsed().as_secs(),
                job.id,
                status_word(job.status)
            );
            last = Some(job.status);
        }
        if job.status.is_final() {
            break job;
        }
        if started.elapsed() >= timeout {
            bail!(
                "job {} still {} after {}s; it stays queued: `salad-sd jobs` shows it",
                job.id,
                status_word(job.status),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(args.interval).await;
    };
    if job.status != QueueJobStatus::Succeeded {
        bail!("{}", failure_message(&job));
    }
    let prefix = args
        .output
        .unwrap_or_else(|| PathBuf::from(l.sdd.metadata.name.clone().unwrap_or_default()));
    for path in write_output(&prefix, job.output.as_ref().unwrap_or(&Value::Null))? {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Runs `salad-sd jobs`.
pub async fn jobs(args: JobsArgs) -> u8 {
    match list(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::EXIT_ERROR
        }
    }
}

async fn list(args: JobsArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let l = locate(
        t.name.as_deref(),
        t.filename.as_deref(),
        t.namespace.as_deref(),
        t.secrets_dir.as_deref(),
    )
    .await?;
    let queue = queue_name(&l.sdd)?;
    let c = client(&args.target.salad_api_url, l.key.clone())?;
    let jobs = c
        .list_jobs(
            &l.sdd.spec.saladcloud.organization,
            &l.sdd.spec.saladcloud.project,
            &queue,
            Some(1),
            Some(args.limit.clamp(1, 100)),
        )
        .await?;
    println!(
        "{:<36}  {:<9}  {:<20}  DURATION",
        "JOB", "STATUS", "CREATED"
    );
    for j in &jobs {
        let created = j
            .create_time
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let duration = match (j.create_time, j.update_time, j.status.is_final()) {
            (Some(c), Some(u), true) => format!("{}s", u.duration_since(c).as_secs()),
            _ => "-".into(),
        };
        println!(
            "{:<36}  {:<9}  {:<20}  {duration}",
            j.id,
            status_word(j.status),
            created
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdd(yaml: &str) -> StableDiffusionDeployment {
        let mut sdd: StableDiffusionDeployment = serde_saphyr::from_str(yaml).unwrap();
        sdd.metadata.uid = Some("7a1b2c3d-0000-4000-8000-000000000001".into());
        sdd
    }

    const SEED: &str = include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml");
    const COMFY: &str = include_str!("../../../manifests/examples/comfyui-dreamshaper.yaml");

    #[test]
    fn each_server_gets_its_own_generation_request() {
        let s = sdd(SEED);
        let input = job_input(&s, Some("a lighthouse"), 8, 256, None).unwrap();
        assert_eq!(
            (
                input["prompt"].as_str(),
                input["steps"].as_i64(),
                input["width"].as_i64()
            ),
            (Some("a lighthouse"), Some(8), Some(256))
        );
        let c = sdd(COMFY);
        let input = job_input(&c, Some("a lighthouse"), 8, 256, None).unwrap();
        assert!(
            input["prompt"].is_object(),
            "a comfyui-api workflow: {input}"
        );
        assert!(input.to_string().contains("a lighthouse"));
        assert!(job_input(&s, None, 8, 256, None).is_err());
    }

    #[test]
    fn the_queue_is_the_operators_and_queue_mode_is_required() {
        let mut s = sdd(SEED);
        let e = queue_name(&s).unwrap_err().to_string();
        assert!(e.contains("not in queue mode"), "{e}");
        s.spec.queue.enabled = true;
        assert_eq!(queue_name(&s).unwrap(), "dreamshaper-7a1b2c3d");
        s.status = Some(salad_sd_api::StableDiffusionDeploymentStatus {
            queue: Some(salad_sd_api::QueueStatus {
                name: "from-status".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(queue_name(&s).unwrap(), "from-status");
    }

    #[test]
    fn images_are_written_as_png_files_and_other_answers_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        let out = serde_json::json!({"images": [b64, b64, "not base64!"]});
        let prefix = dir.path().join("apple");
        let written = write_output(&prefix, &out).unwrap();
        assert_eq!(written.len(), 2);
        assert_eq!(std::fs::read(dir.path().join("apple-1.png")).unwrap(), png);
        let written = write_output(&prefix, &serde_json::json!({"text": "hi"})).unwrap();
        assert_eq!(written, [dir.path().join("apple.json")]);
    }

    #[test]
    fn a_failed_job_says_its_last_error() {
        let job: QueueJob = serde_json::from_value(serde_json::json!({
            "id": "j-1", "status": "failed", "output": {"error": "CUDA out of memory"},
            "create_time": "2026-12-02T10:00:00Z", "update_time": "2026-12-02T10:01:00Z"
        }))
        .unwrap();
        let m = failure_message(&job);
        assert!(
            m.contains("j-1 failed") && m.contains("CUDA out of memory"),
            "{m}"
        );
    }
}
