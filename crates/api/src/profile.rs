//! What each server kind needs: default image, where model files go, how it is launched, and
//! probes that make "started" mean "the checkpoint is loaded".
//!
//! Sources, upstream: SaladTechnologies/sdnext branch `docker-build` (`Dockerfile`,
//! `entrypoint.sh`) and vladmandic/sdnext (`modules/paths.py`, `modules/shared.py`,
//! `modules/cmd_args.py`, `configs/Dockerfile.cuda`) for SD.Next;
//! AbdBarho/stable-diffusion-webui-docker `services/AUTOMATIC1111/entrypoint.sh` and SaladCloud's
//! A1111 `Dockerfile.ipv6` for A1111; SaladTechnologies/comfyui-api (`docker/comfyui.dockerfile`,
//! `src/config.ts`) and ComfyUI `folder_paths.py` for ComfyUI.

use crate::spec::{ModelKind, SdNextBackend, SdNextLayout, ServerKind, ServerSpec};

/// A probe with every value filled in, in SaladCloud's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeDefaults {
    /// What the probe runs.
    pub handler: ProbeHandler,
    /// Seconds before the first check.
    pub initial_delay_seconds: i32,
    /// Seconds between checks.
    pub period_seconds: i32,
    /// Seconds before a check times out.
    pub timeout_seconds: i32,
    /// Consecutive passes needed.
    pub success_threshold: i32,
    /// Consecutive failures tolerated.
    pub failure_threshold: i32,
}

/// The check a probe performs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeHandler {
    /// HTTP GET on the server port.
    Http {
        /// Path and query.
        path: String,
        /// Port.
        port: i32,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// TCP connect.
    Tcp {
        /// Port.
        port: i32,
    },
    /// Command in the container.
    Exec {
        /// Command and arguments.
        command: Vec<String>,
    },
}

/// What a server image needs from us: where its files go, how it starts, how it is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerProfile {
    /// Which server.
    pub kind: ServerKind,
    /// SD.Next image layout (ignored for other kinds).
    pub layout: SdNextLayout,
    /// SD.Next backend (ignored for other kinds).
    pub backend: SdNextBackend,
    /// Whether the server hashes model files at load.
    pub model_hashing: bool,
}

/// The uid SaladCloud's SD.Next image runs the server as (`webui-user`), and the owner of every
/// file the builder writes. Upstream's `entrypoint.sh` runs `chown -R` over the data directory
/// at every start, and overlayfs copies a file up on any chown, even one to the owner it already
/// has: so we launch through [`SDNEXT_START_SCRIPT`], which chowns only what this uid does not
/// own yet and never touches the baked model files.
pub const SDNEXT_UID: u32 = 1000;

/// The SaladBase layout's start, as upstream's `entrypoint.sh` (activate the venv when there is
/// one, own the data directory, drop to uid 1000, run `launch.py --data-dir`), except that it
/// chowns only entries not already owned by `$RUN_UID`: the model layers are, so their bytes stay
/// in the lower layers. Arguments after the script name are SD.Next's.
pub const SDNEXT_START_SCRIPT: &str = r#"set -Eeuo pipefail
if [ -f "$INSTALLDIR/venv/bin/activate" ]; then source "$INSTALLDIR/venv/bin/activate"; fi
find "$DATA_DIR" ! -user "$RUN_UID" -exec chown -h "$RUN_UID:$RUN_UID" {} +
mkdir -p /tmp/gradio && chown "$RUN_UID:$RUN_UID" /tmp/gradio
exec runuser -u "$(id -un "$RUN_UID")" -- python "$INSTALLDIR/launch.py" --data-dir="$DATA_DIR" "$@""#;

/// Port Automatic1111 itself listens on inside the container; `socat` forwards the server port
/// (dual-stack IPv6) to it, as SaladCloud's A1111 image does.
pub const A1111_INNER_PORT: i32 = 7859;

/// comfyui-api's current release (1.19.2, ComfyUI 0.35.0, PyTorch 2.13.0, CUDA 13.0: driver
/// 580 or newer, Turing or newer GPUs), as SaladTechnologies/comfyui-api's
/// `.github/workflows/promote-release-1.19.2.yml` publishes it. Its `Cmd` is `./comfyui-api`.
pub const COMFYUI_BASE_IMAGE: &str =
    "ghcr.io/saladtechnologies/comfyui-api:comfy0.35.0-api1.19.2-torch2.13.0-cuda13.0-runtime";

/// Where the ComfyUI start writes the warm-up workflow that comfyui-api reads from
/// `WARMUP_PROMPT_FILE` (comfyui-api `src/config.ts` parses it when it starts, so the file
/// must exist before; `/health` answers 200 only after the workflow ran).
pub const COMFYUI_WARMUP_FILE: &str = "/opt/salad-sd/warmup.json";

/// Image config variable holding the warm-up workflow (JSON) the start writes to
/// [`COMFYUI_WARMUP_FILE`].
pub const WARMUP_PROMPT_ENV: &str = "SALAD_SD_WARMUP_PROMPT";

/// Image config variable holding the list of models the container fetches before the server
/// starts (JSON: name, url, sha256, path, the name of the variable holding its token).
pub const FETCH_LIST_ENV: &str = "SALAD_SD_FETCH";

/// Image config variable holding [`FETCH_SCRIPT`].
pub const FETCH_SCRIPT_ENV: &str = "SALAD_SD_FETCH_PY";

/// The model fetcher the start runs before the server (Python 3 standard library only: every
/// default base ships python3). For each entry of `$SALAD_SD_FETCH`: keep an existing file whose
/// sha256 matches; else download to `PATH.part`, resuming with `Range` after a broken transfer
/// (up to 6 attempts, 2-32 s apart), verify the pinned sha256 and rename into place. A mismatch
/// or a download that keeps failing prints what happened and exits non-zero, so the server
/// never starts (the startup probe never passes). A token is sent as `Authorization: Bearer`
/// only to the URL's own host (an unredirected header) and never printed.
pub const FETCH_SCRIPT: &str = r#"import hashlib, http.client, json, os, sys, time, urllib.error, urllib.request
def say(*a): print("salad-sd fetch:", *a, file=sys.stderr, flush=True)
def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b: return h
            h.update(b)
def fetch(m):
    dest, want = m["path"], m["sha256"].lower()
    if os.path.exists(dest) and digest(dest).hexdigest() == want:
        say(m["name"], "already present and verified"); return
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    part = dest + ".part"
    token = os.environ.get(m.get("tokenEnv") or "", "")
    for attempt in range(1, 7):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        req = urllib.request.Request(m["url"])
        if have: req.add_header("Range", "bytes=%d-" % have)
        if token: req.add_unredirected_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                if have and r.status != 206: have = 0
                length, got = r.headers.get("Content-Length"), 0
                with open(part, "ab" if have else "wb") as f:
                    while True:
                        b = r.read(1 << 20)
                        if not b: break
                        f.write(b); got += len(b)
                if length is not None and got < int(length):
                    raise OSError("connection closed after %d of %s bytes" % (got, length))
            break
        except urllib.error.HTTPError as e:
            if e.code == 416 and have: break
            if e.code in (401, 403, 404): say(m["name"], "HTTP", e.code, "from", m["host"], "- not retried"); sys.exit(2)
            say(m["name"], "attempt", attempt, "failed: HTTP", e.code)
        except (OSError, ValueError, http.client.HTTPException) as e:
            say(m["name"], "attempt", attempt, "failed:", type(e).__name__, getattr(e, "reason", "") or e)
        if attempt == 6: say(m["name"], "download from", m["host"], "failed 6 times; giving up"); sys.exit(2)
        time.sleep(min(2 ** attempt, 32))
    got = digest(part).hexdigest()
    if got != want:
        os.remove(part)
        say(m["name"], "sha256 mismatch: expected", want, "got", got, "- the file was deleted and the server is not started; fix models[].source.sha256 or the URL")
        sys.exit(3)
    os.replace(part, dest)
    say(m["name"], "fetched and verified,", os.path.getsize(dest), "bytes")
for m in json.loads(os.environ["SALAD_SD_FETCH"]): fetch(m)
"#;

/// The shell step a start runs before the server when models are fetched: run [`FETCH_SCRIPT`]
/// with the image's python3 and stop (non-zero exit) when it fails.
pub const FETCH_STEP: &str = r#"if [ -n "${SALAD_SD_FETCH:-}" ]; then
  py=$(command -v python3 || command -v python) || { echo "salad-sd: the image has no python3 to fetch models with; the server is not started" >&2; exit 1; }
  "$py" -c "$SALAD_SD_FETCH_PY" || { echo "salad-sd: fetching models failed (see above); the server is not started" >&2; exit 1; }
fi"#;

/// Where the image holds SaladCloud's job queue worker (`salad-http-job-queue-worker`) when
/// `queue.enabled`: the release archive (one file, `salad-http-job-queue-worker`, at its top)
/// is unpacked into `/usr/local/bin`, where SaladCloud's own samples install it
/// (`tar -C /usr/local/bin -zxpf …`).
pub const QUEUE_WORKER_PATH: &str = "/usr/local/bin/salad-http-job-queue-worker";

/// The job queue worker release the image gets by default: v0.7.0, the newest release found
/// referenced (a public deployment guide links its tag
/// `github.com/SaladTechnologies/salad-cloud-job-queue-worker/releases/tag/v0.7.0`; SaladCloud's
/// own samples in that repository pin v0.5.0 (`samples/mandelbrot/with-shell-script`), older
/// guides v0.4.1 and v0.3.0). Never `latest`: a new worker comes with an operator release.
pub const QUEUE_WORKER_VERSION: &str = "v0.7.0";

/// The release archive of [`QUEUE_WORKER_VERSION`] (x86_64 Linux, static Go binary; the
/// repository's `Makefile` builds it with `CGO_ENABLED=0 GOARCH=amd64 GOOS=linux` and packs it
/// as `salad-http-job-queue-worker_x86_64.tar.gz`).
pub const QUEUE_WORKER_URL: &str = "https://github.com/SaladTechnologies/salad-cloud-job-queue-worker/releases/download/v0.7.0/salad-http-job-queue-worker_x86_64.tar.gz";

/// The sha256 of [`QUEUE_WORKER_URL`], when one can be pinned here. None: SaladCloud publishes
/// the checksum only beside the archive on the GitHub release page (the repository's `Makefile`
/// writes `salad-http-job-queue-worker_x86_64.tar.gz.sha256`; SaladCloud's "Job Queue Worker"
/// guide says to compare against "the one found on the Github releases page"), and no copy of
/// it could be read from SaladCloud's docs or repositories. An unverified download never goes
/// into an image, so until this is set `queue.worker.sha256` is required at admission (see
/// [`queue_worker_sha256_missing`]).
pub const QUEUE_WORKER_SHA256: Option<&str> = None;

/// Why a spec with the queue on cannot be built without `queue.worker.sha256`, and how to get
/// the value: None when a sha256 is known (given, or pinned by [`QUEUE_WORKER_SHA256`]).
pub fn queue_worker_sha256_missing(worker: &crate::scaling::QueueWorkerSpec) -> Option<String> {
    if worker.sha256.is_some() || (worker.url.is_none() && QUEUE_WORKER_SHA256.is_some()) {
        return None;
    }
    let url = worker.url.as_deref().unwrap_or(QUEUE_WORKER_URL);
    Some(format!(
        "the job queue worker is verified like a model, and no sha256 is pinned for {url}: \
         set queue.worker.sha256 to the archive's sha256 (`curl -fsSL {url} | sha256sum`, and \
         compare it with the `.sha256` file on the release page, \
         https://github.com/SaladTechnologies/salad-cloud-job-queue-worker/releases/tag/{QUEUE_WORKER_VERSION})"
    ))
}

/// The container's exit status when the job queue worker stops first: 100 + the worker's own
/// status (at most 255), so `101` is a worker that exited 1, `102` a Go panic, `237` a worker
/// killed by SIGKILL. When the server stops first the container exits with the server's status.
pub const QUEUE_WORKER_EXIT_OFFSET: i32 = 100;

/// A POSIX sh function (dash, bash, busybox ash) that runs the job queue worker beside the
/// server: `salad_sd_supervise WORKER SERVER...` starts both; when either exits it says which
/// on stderr, stops the other (SIGTERM, then SIGKILL after `SALAD_SD_STOP_GRACE_SECONDS`,
/// default 10) and exits with the server's status, or [`QUEUE_WORKER_EXIT_OFFSET`] + the
/// worker's. SIGTERM and SIGINT are forwarded to both (as SIGTERM). Each process is waited on
/// by its own subshell, which records the status in a file (so no `wait -n`, which only bash
/// has); the function polls those files every second. Needs `mkdir`, `sleep` and `rm`.
pub const QUEUE_SUPERVISE_FN: &str = r#"salad_sd_supervise() {
  set +e
  _sv_worker=$1
  shift
  _sv_dir=${TMPDIR:-/tmp}/salad-sd-supervise.$$
  mkdir -p "$_sv_dir" || { echo "salad-sd: cannot create $_sv_dir; the server is not started" >&2; exit 1; }
  _sv_sig=
  trap '_sv_sig=TERM' TERM
  trap '_sv_sig=INT' INT
  ( "$_sv_worker" & echo $! >"$_sv_dir/worker.pid"; wait $!; echo $? >"$_sv_dir/worker.rc" ) &
  ( "$@" & echo $! >"$_sv_dir/server.pid"; wait $!; echo $? >"$_sv_dir/server.rc" ) &
  while [ -z "$_sv_sig" ] && [ ! -s "$_sv_dir/server.rc" ] && [ ! -s "$_sv_dir/worker.rc" ]; do
    sleep 1 &
    wait $!
  done
  _sv_exit=143
  if [ -n "$_sv_sig" ]; then
    echo "salad-sd: SIG$_sv_sig: stopping the server and the job queue worker" >&2
  elif [ -s "$_sv_dir/server.rc" ]; then
    read -r _sv_exit <"$_sv_dir/server.rc"
    echo "salad-sd: the server exited with status $_sv_exit; stopping the job queue worker" >&2
  else
    read -r _sv_status <"$_sv_dir/worker.rc"
    _sv_exit=$((100 + _sv_status))
    if [ "$_sv_exit" -gt 255 ]; then _sv_exit=255; fi
    echo "salad-sd: the job queue worker exited with status $_sv_status; stopping the server (container exit status $_sv_exit)" >&2
  fi
  _sv_signal() {
    for _sv_n in server worker; do
      if [ ! -s "$_sv_dir/$_sv_n.rc" ] && [ -s "$_sv_dir/$_sv_n.pid" ]; then
        read -r _sv_p <"$_sv_dir/$_sv_n.pid"
        kill "-$1" "$_sv_p" 2>/dev/null
      fi
    done
  }
  _sv_signal TERM
  _sv_i=0
  while [ "$_sv_i" -lt "${SALAD_SD_STOP_GRACE_SECONDS:-10}" ] && { [ ! -s "$_sv_dir/server.rc" ] || [ ! -s "$_sv_dir/worker.rc" ]; }; do
    sleep 1
    _sv_i=$((_sv_i + 1))
  done
  _sv_signal KILL
  if [ -n "$_sv_sig" ] && [ -s "$_sv_dir/server.rc" ]; then read -r _sv_exit <"$_sv_dir/server.rc"; fi
  rm -rf "$_sv_dir" 2>/dev/null
  exit "$_sv_exit"
}"#;

/// `script` with its final `exec CMD...` replaced by [`QUEUE_SUPERVISE_FN`] running CMD beside
/// the job queue worker. A script without a final `exec` is returned as it is.
fn supervised(script: &str) -> String {
    let (head, tail) = match script.rsplit_once("\nexec ") {
        Some((head, tail)) => (format!("{head}\n"), tail),
        None => match script.strip_prefix("exec ") {
            Some(tail) => (String::new(), tail),
            None => return script.to_string(),
        },
    };
    format!("{head}{QUEUE_SUPERVISE_FN}\nsalad_sd_supervise {QUEUE_WORKER_PATH} {tail}")
}

/// What the start runs besides the server (see [`ServerProfile::wrap_start`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartSteps {
    /// Fetch models before the server ([`FETCH_STEP`]).
    pub fetch: bool,
    /// Write comfyui-api's warm-up workflow.
    pub warmup: bool,
    /// Run the job queue worker beside the server ([`QUEUE_SUPERVISE_FN`]).
    pub queue_worker: bool,
}

/// The ComfyUI start after [`FETCH_STEP`]: write the warm-up workflow for comfyui-api, then run
/// the base's command (`./comfyui-api`) unchanged.
const COMFYUI_START_TAIL: &str = r#"if [ -n "${SALAD_SD_WARMUP_PROMPT:-}" ]; then
  mkdir -p "$(dirname "$WARMUP_PROMPT_FILE")"
  printf '%s' "$SALAD_SD_WARMUP_PROMPT" > "$WARMUP_PROMPT_FILE"
fi
exec "$@""#;

/// The ComfyUI start: fetch models (when any are fetched), write the warm-up workflow, then run
/// the base's command (beside the job queue worker when `queue_worker`).
pub fn comfyui_start_script(queue_worker: bool) -> String {
    let script = format!("set -eu\n{FETCH_STEP}\n{COMFYUI_START_TAIL}");
    if queue_worker {
        supervised(&script)
    } else {
        script
    }
}

/// A ComfyUI API-format txt2img workflow for the checkpoint `ckpt_name` (a file in
/// `models/checkpoints`): load, encode the prompt, sample, decode, save. comfyui-api's
/// `POST /prompt` needs a node with `filename_prefix` (`SaveImage`); its warm-up reads the
/// checkpoint from the `CheckpointLoaderSimple` node.
pub fn comfyui_txt2img(
    ckpt_name: &str,
    prompt: &str,
    steps: i32,
    size: i32,
    seed: u64,
) -> serde_json::Value {
    serde_json::json!({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
            "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0]}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "salad-sd"}},
    })
}

/// Quotes `arg` for a POSIX shell.
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

impl ServerProfile {
    /// The profile of a server spec.
    pub fn of(server: &ServerSpec) -> Self {
        Self {
            kind: server.kind,
            layout: server.layout,
            backend: server.backend,
            model_hashing: server.model_hashing,
        }
    }

    /// The profile of a kind with every other choice at its default.
    pub fn of_kind(kind: ServerKind) -> Self {
        Self::of(&ServerSpec {
            kind,
            ..ServerSpec::default()
        })
    }

    fn upstream_sdnext(self) -> bool {
        self.kind == ServerKind::SdNext && self.layout == SdNextLayout::Upstream
    }

    /// Default base image, if the kind has one.
    pub fn default_base_image(self) -> Option<&'static str> {
        match self.kind {
            ServerKind::SdNext if self.upstream_sdnext() => Some("vladmandic/sdnext-cuda:latest"),
            ServerKind::SdNext => Some("saladtechnologies/sdnext:base"),
            ServerKind::Automatic1111 => Some("saladtechnologies/a1111:ipv6-v1.9.4"),
            ServerKind::ComfyUi => Some(COMFYUI_BASE_IMAGE),
            ServerKind::Custom => None,
        }
    }

    /// The HTTP path a queue job's input is posted to: the kind's generation endpoint
    /// (SD.Next's and AUTOMATIC1111's txt2img, comfyui-api's prompt).
    pub fn queue_job_path(self) -> Option<&'static str> {
        match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => Some("/sdapi/v1/txt2img"),
            ServerKind::ComfyUi => Some("/prompt"),
            ServerKind::Custom => None,
        }
    }

    /// SD.Next's models directory.
    fn sdnext_models(self) -> &'static str {
        if self.upstream_sdnext() {
            "/mnt/models"
        } else {
            "/webui/data/models"
        }
    }

    /// Directory a model of this kind goes to: where the server looks for it.
    pub fn model_dir(self, model: ModelKind) -> Option<String> {
        use ModelKind::*;
        let dir = match (self.kind, model) {
            (ServerKind::SdNext, Checkpoint) => {
                format!("{}/Stable-diffusion", self.sdnext_models())
            }
            (ServerKind::SdNext, Lora) => format!("{}/Lora", self.sdnext_models()),
            (ServerKind::SdNext, Vae) => format!("{}/VAE", self.sdnext_models()),
            (ServerKind::SdNext, Embedding) => format!("{}/embeddings", self.sdnext_models()),
            // The diffusers backend disables sd-webui-controlnet and reads its own directory.
            (ServerKind::SdNext, ControlNet) => match self.backend {
                SdNextBackend::Diffusers => format!("{}/control/controlnet", self.sdnext_models()),
                SdNextBackend::Original => format!("{}/ControlNet", self.sdnext_models()),
            },
            // The image's entrypoint links these into the webui tree at start.
            (ServerKind::Automatic1111, Checkpoint) => "/data/models/Stable-diffusion".into(),
            (ServerKind::Automatic1111, Lora) => "/data/models/Lora".into(),
            (ServerKind::Automatic1111, Vae) => "/data/models/VAE".into(),
            (ServerKind::Automatic1111, Embedding) => "/data/embeddings".into(),
            (ServerKind::Automatic1111, ControlNet) => "/data/models/ControlNet".into(),
            (ServerKind::ComfyUi, Checkpoint) => "/opt/ComfyUI/models/checkpoints".into(),
            (ServerKind::ComfyUi, Lora) => "/opt/ComfyUI/models/loras".into(),
            (ServerKind::ComfyUi, Vae) => "/opt/ComfyUI/models/vae".into(),
            (ServerKind::ComfyUi, Embedding) => "/opt/ComfyUI/models/embeddings".into(),
            (ServerKind::ComfyUi, ControlNet) => "/opt/ComfyUI/models/controlnet".into(),
            (ServerKind::Custom, Checkpoint) => "/models/checkpoints".into(),
            (ServerKind::Custom, Lora) => "/models/lora".into(),
            (ServerKind::Custom, Vae) => "/models/vae".into(),
            (ServerKind::Custom, Embedding) => "/models/embeddings".into(),
            (ServerKind::Custom, ControlNet) => "/models/controlnet".into(),
            (_, Other) => return None,
        };
        Some(dir)
    }

    /// Directory extensions are unpacked into.
    pub fn extensions_dir(self) -> &'static str {
        match self.kind {
            ServerKind::SdNext if self.upstream_sdnext() => "/mnt/data/extensions",
            ServerKind::SdNext => "/webui/data/extensions",
            ServerKind::Automatic1111 => "/data/config/auto/extensions",
            ServerKind::ComfyUi => "/opt/ComfyUI/custom_nodes",
            ServerKind::Custom => "/extensions",
        }
    }

    /// Image entrypoint (`None`: keep the base image's) and command that start the server on
    /// `port` over IPv6 with `ckpt` loaded, followed by `extra_args`. `None` keeps both of the
    /// base image's.
    pub fn launch(
        self,
        port: i32,
        ckpt: Option<&str>,
        extra_args: &[String],
    ) -> Option<(Option<Vec<String>>, Vec<String>)> {
        let port = port.to_string();
        let backend = match self.backend {
            SdNextBackend::Diffusers => "diffusers",
            SdNextBackend::Original => "original",
        };
        let ckpt_args = ckpt
            .map(|c| vec!["--ckpt".to_string(), c.to_string()])
            .unwrap_or_default();
        match self.kind {
            // `[::]` makes SD.Next (uvicorn through asyncio) listen on IPv6 only: anything in the
            // container calls it on [::1], never 127.0.0.1.
            ServerKind::SdNext if self.upstream_sdnext() => {
                let mut cmd = strings(&["python", "launch.py", "--skip-all", "--quick"]);
                cmd.extend(strings(&["--port", &port, "--server-name", "[::]"]));
                cmd.extend(strings(&["--backend", backend]));
                cmd.extend(ckpt_args);
                cmd.extend(extra_args.iter().cloned());
                Some((None, cmd))
            }
            ServerKind::SdNext => {
                let entrypoint =
                    strings(&["/bin/bash", "-c", SDNEXT_START_SCRIPT, "salad-sd-start"]);
                let mut cmd = strings(&["--port", &port, "--server-name", "[::]", "--quick"]);
                cmd.extend(strings(&["--use-cuda", "--backend", backend]));
                cmd.extend(ckpt_args);
                cmd.extend(extra_args.iter().cloned());
                Some((Some(entrypoint), cmd))
            }
            // The base ENTRYPOINT (`/docker/entrypoint.sh`) links /data into the webui tree and
            // then runs this command.
            ServerKind::Automatic1111 => {
                let inner = A1111_INNER_PORT.to_string();
                let mut webui =
                    strings(&["python", "-u", "webui.py", "--listen", "--port", &inner]);
                webui.extend(strings(&["--xformers", "--api", "--no-download-sd-model"]));
                if !self.model_hashing {
                    webui.push("--no-hashing".into());
                }
                webui.extend(ckpt_args);
                webui.extend(extra_args.iter().cloned());
                let webui: Vec<String> = webui.iter().map(|a| shell_quote(a)).collect();
                let script = format!(
                    "{} & exec socat TCP6-LISTEN:{port},fork TCP4:127.0.0.1:{inner}",
                    webui.join(" ")
                );
                Some((None, strings(&["/bin/sh", "-c", &script])))
            }
            ServerKind::ComfyUi | ServerKind::Custom => None,
        }
    }

    /// Environment the launch needs (listen address and port, model hashing).
    pub fn launch_env(self, port: i32) -> Vec<(String, String)> {
        let mut env = match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => vec![
                ("HOST".into(), "[::]".into()),
                ("PORT".into(), port.to_string()),
            ],
            ServerKind::ComfyUi => {
                vec![
                    ("HOST".into(), "::".into()),
                    ("PORT".into(), port.to_string()),
                ]
            }
            ServerKind::Custom => vec![],
        };
        if self.kind == ServerKind::SdNext && !self.model_hashing {
            env.push(("SD_NOHASHING".into(), "true".into()));
        }
        env
    }

    /// The start edits that [`Self::launch`] does not make: for ComfyUI a start that writes the
    /// warm-up workflow and fetches models; for the other kinds, when `steps.fetch`, the fetch
    /// step ([`FETCH_STEP`]) run before the server in the start they already have; and with
    /// `steps.queue_worker` the server run beside the job queue worker ([`QUEUE_SUPERVISE_FN`]),
    /// so that either exiting stops the container. `entrypoint` and `cmd` are the image config
    /// edits (`None`: keep the base's). A Custom server keeps its own start: the worker is at
    /// [`QUEUE_WORKER_PATH`] for it to run.
    pub fn wrap_start(
        self,
        entrypoint: &mut Option<Vec<String>>,
        cmd: &mut Option<Vec<String>>,
        steps: StartSteps,
    ) {
        let StartSteps {
            fetch,
            warmup,
            queue_worker,
        } = steps;
        let edit = |script: &str| {
            let script = if queue_worker {
                supervised(script)
            } else {
                script.to_string()
            };
            if fetch {
                format!("{FETCH_STEP}\n{script}")
            } else {
                script
            }
        };
        match self.kind {
            ServerKind::ComfyUi if fetch || warmup || queue_worker => {
                *entrypoint = Some(strings(&[
                    "/bin/sh",
                    "-c",
                    &comfyui_start_script(queue_worker),
                    "salad-sd-start",
                ]));
            }
            _ if !fetch && !queue_worker => {}
            // SaladBase SD.Next: our bash start script is the entrypoint.
            ServerKind::SdNext if entrypoint.is_some() => {
                if let Some(e) = entrypoint.as_mut().filter(|e| e.len() > 2) {
                    e[2] = edit(&e[2]);
                }
            }
            // A1111: the base's entrypoint runs our `/bin/sh -c SCRIPT`. Beside the worker, the
            // supervised server is the webui itself (socat in the background), so that the
            // webui dying stops the container rather than leaving socat serving nothing.
            ServerKind::Automatic1111 => {
                if let Some(c) = cmd.as_mut().filter(|c| c.len() > 2) {
                    let script = match c[2].split_once(" & exec socat ") {
                        Some((webui, socat)) if queue_worker => {
                            format!("socat {socat} &\nexec {webui}")
                        }
                        _ => c[2].clone(),
                    };
                    c[2] = edit(&script);
                }
            }
            ServerKind::Custom => {}
            // Upstream SD.Next: the base's entrypoint runs the command; put the start in front.
            _ => {
                if let Some(c) = cmd.take() {
                    let mut wrapped =
                        strings(&["/bin/sh", "-c", &edit("exec \"$@\""), "salad-sd-start"]);
                    wrapped.extend(c);
                    *cmd = Some(wrapped);
                }
            }
        }
    }

    /// Default startup probe: passes only once a generation succeeds (SD.Next and A1111 answer
    /// HTTP before the checkpoint is loaded, so a 200 on a status page proves nothing). The first
    /// generation loads the checkpoint; the window (30 s + 20 × 30 s, about 10.5 minutes) covers
    /// an SDXL file on a slow node. The call goes to `[::1]`: SD.Next listens on IPv6 only.
    pub fn startup_probe(self, port: i32) -> Option<ProbeDefaults> {
        let warmup = format!(
            "import json,urllib.request as u; r=u.urlopen(u.Request('http://[::1]:{port}/sdapi/v1/txt2img', \
             data=json.dumps({{'prompt':'warmup','steps':1,'width':64,'height':64}}).encode(), \
             headers={{'Content-Type':'application/json'}}), timeout=25); \
             assert r.status == 200 and json.load(r)['images']"
        );
        match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => Some(ProbeDefaults {
                handler: ProbeHandler::Exec {
                    command: vec!["python".into(), "-c".into(), warmup],
                },
                initial_delay_seconds: 30,
                period_seconds: 30,
                timeout_seconds: 30,
                success_threshold: 1,
                failure_threshold: 20,
            }),
            ServerKind::ComfyUi => Some(ProbeDefaults {
                handler: ProbeHandler::Http {
                    path: "/health".into(),
                    port,
                    headers: vec![],
                },
                initial_delay_seconds: 10,
                period_seconds: 30,
                timeout_seconds: 10,
                success_threshold: 1,
                failure_threshold: 20,
            }),
            ServerKind::Custom => None,
        }
    }

    /// Default liveness probe.
    pub fn liveness_probe(self, port: i32) -> Option<ProbeDefaults> {
        let path = match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => "/sdapi/v1/memory",
            ServerKind::ComfyUi => "/health",
            ServerKind::Custom => return None,
        };
        Some(http_probe(path, port, 30, 10))
    }

    /// Default readiness probe (only meaningful with the gateway on).
    pub fn readiness_probe(self, port: i32) -> Option<ProbeDefaults> {
        let path = match self.kind {
            ServerKind::SdNext | ServerKind::Automatic1111 => "/sdapi/v1/progress",
            ServerKind::ComfyUi => "/ready",
            ServerKind::Custom => return None,
        };
        Some(http_probe(path, port, 5, 3))
    }
}

/// Seconds an average SaladCloud node takes per GB (10^9 bytes) it downloads: "about 2 minutes
/// per GB" (SaladCloud's troubleshooting guide; more than that marks a slow node).
pub const SECONDS_PER_GB: f64 = 120.0;

/// SaladCloud's probe limits: initial delay, period, failure threshold.
const MAX_INITIAL_DELAY: i32 = 1200;
const MAX_PERIOD: i32 = 120;
const MAX_FAILURES: i32 = 20;

/// A startup probe whose window (initial delay + failure threshold × period) also covers
/// downloading `fetched_bytes` at [`SECONDS_PER_GB`] before the server starts. The failure
/// threshold goes to 20 first, then the period grows (up to 120 s), then the initial delay (up
/// to 1200 s); beyond SaladCloud's limits (an hour in all) the window stays at the maximum.
pub fn startup_window_for_fetch(base: ProbeDefaults, fetched_bytes: u64) -> ProbeDefaults {
    if fetched_bytes == 0 {
        return base;
    }
    let extra = (fetched_bytes as f64 / 1e9 * SECONDS_PER_GB).ceil() as i64;
    let want = (base.initial_delay_seconds as i64
        + base.failure_threshold as i64 * base.period_seconds as i64
        + extra)
        .min((MAX_INITIAL_DELAY + MAX_FAILURES * MAX_PERIOD) as i64);
    let mut p = base;
    p.failure_threshold = MAX_FAILURES;
    let after_delay = want - p.initial_delay_seconds as i64;
    let period = (after_delay + MAX_FAILURES as i64 - 1) / MAX_FAILURES as i64;
    p.period_seconds = period.clamp(p.period_seconds as i64, MAX_PERIOD as i64) as i32;
    let left = want - (p.failure_threshold as i64 * p.period_seconds as i64);
    p.initial_delay_seconds =
        left.clamp(p.initial_delay_seconds as i64, MAX_INITIAL_DELAY as i64) as i32;
    p
}

/// The window of a probe in seconds: initial delay + failure threshold × period.
pub fn window_seconds(p: &ProbeDefaults) -> i64 {
    p.initial_delay_seconds as i64 + p.failure_threshold as i64 * p.period_seconds as i64
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// An HTTP GET probe checked every `period` seconds, failing after three misses.
fn http_probe(path: &str, port: i32, period: i32, timeout: i32) -> ProbeDefaults {
    ProbeDefaults {
        handler: ProbeHandler::Http {
            path: path.into(),
            port,
            headers: vec![],
        },
        initial_delay_seconds: 0,
        period_seconds: period,
        timeout_seconds: timeout,
        success_threshold: 1,
        failure_threshold: 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdnext(layout: SdNextLayout) -> ServerProfile {
        ServerProfile::of(&ServerSpec {
            layout,
            ..ServerSpec::default()
        })
    }

    #[test]
    fn sdnext_launch_listens_on_ipv6_and_loads_the_checkpoint() {
        let (entrypoint, cmd) = sdnext(SdNextLayout::SaladBase)
            .launch(
                7860,
                Some("/webui/data/models/Stable-diffusion/a.safetensors"),
                &["--lowvram".into()],
            )
            .expect("sdnext has a launch command");
        let entrypoint = entrypoint.expect("SaladBase starts through our script");
        assert_eq!(entrypoint[..2], ["/bin/bash", "-c"]);
        assert_eq!(entrypoint[2], SDNEXT_START_SCRIPT);
        let joined = cmd.join(" ");
        assert!(joined.contains("--server-name [::]"), "{joined}");
        assert!(joined.contains("--port 7860"), "{joined}");
        assert!(joined.contains("--backend diffusers"), "{joined}");
        assert!(joined.contains("--ckpt /webui/data/models/Stable-diffusion/a.safetensors"));
        assert!(joined.ends_with("--lowvram"));
    }

    #[test]
    fn the_start_script_never_chowns_what_uid_1000_already_owns() {
        assert!(SDNEXT_START_SCRIPT.contains(r#"! -user "$RUN_UID""#));
        assert!(!SDNEXT_START_SCRIPT.contains("chown -R"));
    }

    #[test]
    fn upstream_sdnext_keeps_the_base_entrypoint_and_uses_its_directories() {
        let p = sdnext(SdNextLayout::Upstream);
        let (entrypoint, cmd) = p.launch(7860, None, &[]).unwrap();
        assert_eq!(entrypoint, None);
        assert_eq!(cmd[..2], ["python", "launch.py"]);
        assert!(cmd.join(" ").contains("--server-name [::]"));
        assert_eq!(
            p.model_dir(ModelKind::Checkpoint).unwrap(),
            "/mnt/models/Stable-diffusion"
        );
        assert_eq!(
            p.model_dir(ModelKind::ControlNet).unwrap(),
            "/mnt/models/control/controlnet"
        );
        assert_eq!(
            p.default_base_image(),
            Some("vladmandic/sdnext-cuda:latest")
        );
    }

    #[test]
    fn controlnet_directory_follows_the_backend() {
        let original = ServerProfile::of(&ServerSpec {
            backend: SdNextBackend::Original,
            ..ServerSpec::default()
        });
        assert_eq!(
            original.model_dir(ModelKind::ControlNet).unwrap(),
            "/webui/data/models/ControlNet"
        );
        assert_eq!(
            sdnext(SdNextLayout::SaladBase)
                .model_dir(ModelKind::ControlNet)
                .unwrap(),
            "/webui/data/models/control/controlnet"
        );
    }

    #[test]
    fn a1111_keeps_the_base_entrypoint_and_quotes_every_argument() {
        let p = ServerProfile::of_kind(ServerKind::Automatic1111);
        let (entrypoint, cmd) = p
            .launch(
                7860,
                Some("/data/models/Stable-diffusion/it's.ckpt"),
                &["--a b".into()],
            )
            .unwrap();
        assert_eq!(
            entrypoint, None,
            "the base's /docker/entrypoint.sh must run"
        );
        assert_eq!(cmd[..2], ["/bin/sh", "-c"]);
        let script = &cmd[2];
        assert!(script.contains("--no-download-sd-model"), "{script}");
        assert!(script.contains("--no-hashing"), "{script}");
        assert!(
            script.contains(r#"--ckpt '/data/models/Stable-diffusion/it'\''s.ckpt'"#),
            "{script}"
        );
        assert!(script.contains("'--a b'"), "{script}");
        assert!(
            script.ends_with("TCP6-LISTEN:7860,fork TCP4:127.0.0.1:7859"),
            "{script}"
        );
    }

    #[test]
    fn hashing_is_off_unless_asked() {
        let env = sdnext(SdNextLayout::SaladBase).launch_env(7860);
        assert!(env.contains(&("SD_NOHASHING".into(), "true".into())));
        let hashing = ServerProfile::of(&ServerSpec {
            model_hashing: true,
            ..ServerSpec::default()
        });
        assert!(
            !hashing
                .launch_env(7860)
                .iter()
                .any(|(k, _)| k == "SD_NOHASHING")
        );
    }

    #[test]
    fn shell_quote_round_trips_through_sh() {
        for arg in [
            "plain",
            "with space",
            "it's",
            "$HOME",
            "a\\b",
            "",
            "--x=[::]",
        ] {
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &format!("printf %s {}", shell_quote(arg))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), arg);
        }
    }

    #[test]
    fn default_probes_fit_saladcloud_limits() {
        for kind in [
            ServerKind::SdNext,
            ServerKind::Automatic1111,
            ServerKind::ComfyUi,
        ] {
            let p = ServerProfile::of_kind(kind);
            for probe in [
                p.startup_probe(7860),
                p.liveness_probe(7860),
                p.readiness_probe(7860),
            ]
            .into_iter()
            .flatten()
            {
                assert!((0..=1200).contains(&probe.initial_delay_seconds));
                assert!((1..=120).contains(&probe.period_seconds));
                assert!((1..=60).contains(&probe.timeout_seconds));
                assert!((1..=10).contains(&probe.success_threshold));
                assert!((1..=20).contains(&probe.failure_threshold));
            }
        }
    }

    #[test]
    fn startup_window_allows_about_ten_minutes() {
        for kind in [
            ServerKind::SdNext,
            ServerKind::Automatic1111,
            ServerKind::ComfyUi,
        ] {
            let p = ServerProfile::of_kind(kind).startup_probe(7860).unwrap();
            let window = p.initial_delay_seconds + p.failure_threshold * p.period_seconds;
            assert!(window >= 600, "{kind:?}: {window} s");
        }
    }

    #[test]
    fn sdnext_startup_probe_requires_a_generation_on_ipv6_loopback() {
        let probe = ServerProfile::of_kind(ServerKind::SdNext)
            .startup_probe(7860)
            .unwrap();
        match probe.handler {
            ProbeHandler::Exec { command } => {
                let c = command.join(" ");
                assert!(c.contains("txt2img"));
                assert!(c.contains("http://[::1]:7860/"), "{c}");
                assert!(!c.contains("127.0.0.1"), "{c}");
            }
            other => panic!("expected an exec warm-up probe, got {other:?}"),
        }
    }

    #[test]
    fn the_startup_window_grows_by_two_minutes_per_fetched_gb_within_saladcloud_limits() {
        let sdnext = ServerProfile::of_kind(ServerKind::SdNext)
            .startup_probe(7860)
            .unwrap();
        struct Case {
            reason: &'static str,
            bytes: u64,
            window: i64,
        }
        let base = window_seconds(&sdnext);
        for case in [
            Case {
                reason: "nothing fetched: the kind's window as it is",
                bytes: 0,
                window: base,
            },
            Case {
                reason: "Dreamshaper 8 (2.13 GB): 256 s more",
                bytes: 2_132_625_894,
                window: base + 256,
            },
            Case {
                reason: "SDXL base (6.94 GB): 833 s more",
                bytes: 6_938_078_334,
                window: base + 833,
            },
            Case {
                reason: "beyond an hour the window stays at SaladCloud's maximum",
                bytes: 40_000_000_000,
                window: 1200 + 20 * 120,
            },
        ] {
            let p = startup_window_for_fetch(sdnext.clone(), case.bytes);
            assert!(
                window_seconds(&p) >= case.window && window_seconds(&p) < case.window + 20,
                "{}: {} s, want {} s",
                case.reason,
                window_seconds(&p),
                case.window
            );
            assert!(
                (0..=1200).contains(&p.initial_delay_seconds),
                "{}",
                case.reason
            );
            assert!((1..=120).contains(&p.period_seconds), "{}", case.reason);
            assert!((1..=20).contains(&p.failure_threshold), "{}", case.reason);
            assert_eq!(p.handler, sdnext.handler, "{}", case.reason);
        }
    }

    #[test]
    fn the_fetch_runs_before_every_kinds_server() {
        let fetch_first = |script: &str| {
            assert!(script.starts_with(FETCH_STEP), "{script}");
        };
        let fetch = StartSteps {
            fetch: true,
            ..StartSteps::default()
        };
        // SaladBase SD.Next: our bash start script.
        let p = sdnext(SdNextLayout::SaladBase);
        let (mut e, c) = p.launch(7860, None, &[]).unwrap();
        let mut c = Some(c);
        p.wrap_start(&mut e, &mut c, fetch);
        fetch_first(&e.unwrap()[2]);
        // A1111: the base's entrypoint runs our sh -c.
        let p = ServerProfile::of_kind(ServerKind::Automatic1111);
        let (mut e, c) = p.launch(7860, None, &[]).unwrap();
        let mut c = Some(c);
        p.wrap_start(&mut e, &mut c, fetch);
        assert_eq!(e, None);
        fetch_first(&c.unwrap()[2]);
        // Upstream SD.Next: the command is wrapped and run after the fetch.
        let p = sdnext(SdNextLayout::Upstream);
        let (mut e, c) = p.launch(7860, None, &[]).unwrap();
        let mut c = Some(c);
        p.wrap_start(&mut e, &mut c, fetch);
        let c = c.unwrap();
        assert_eq!(c[..2], ["/bin/sh", "-c"]);
        fetch_first(&c[2]);
        assert_eq!(c[4..6], ["python", "launch.py"]);
        // ComfyUI: our start, then the base's command (Cmd kept).
        let p = ServerProfile::of_kind(ServerKind::ComfyUi);
        let (mut e, mut c) = (None, None);
        p.wrap_start(
            &mut e,
            &mut c,
            StartSteps {
                warmup: true,
                ..StartSteps::default()
            },
        );
        let e = e.expect("the warm-up needs our start");
        assert!(e[2].contains("WARMUP_PROMPT_FILE") && e[2].contains(FETCH_STEP));
        assert!(e[2].ends_with("exec \"$@\""));
        assert_eq!(c, None, "the base's ./comfyui-api stays the command");
        // Nothing fetched: SD.Next's start stays byte for byte what it was.
        let p = sdnext(SdNextLayout::SaladBase);
        let (mut e, c) = p.launch(7860, None, &[]).unwrap();
        let mut c = Some(c);
        p.wrap_start(&mut e, &mut c, StartSteps::default());
        assert_eq!(e.unwrap()[2], SDNEXT_START_SCRIPT);
    }

    #[test]
    fn the_fetch_step_and_the_comfyui_start_are_valid_sh() {
        for script in [
            FETCH_STEP.to_string(),
            comfyui_start_script(false),
            comfyui_start_script(true),
        ] {
            let out = std::process::Command::new("/bin/sh")
                .args(["-n", "-c", &script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs [`QUEUE_SUPERVISE_FN`] under `shell` with a worker and a server that are shell
    /// snippets; returns the exit code, stderr and what the processes left in `dir`.
    fn supervise(
        shell: &str,
        worker: &str,
        server: &str,
        signal_after: Option<u64>,
    ) -> (i32, String, String) {
        use std::os::unix::fs::PermissionsExt;
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "salad-sd-supervise-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let worker_path = dir.join("worker");
        std::fs::write(&worker_path, format!("#!/bin/sh\n{worker}\n")).unwrap();
        std::fs::set_permissions(&worker_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = format!(
            "{QUEUE_SUPERVISE_FN}\nsalad_sd_supervise {} /bin/sh -c \"$0\"",
            worker_path.display()
        );
        let mut child = std::process::Command::new(shell)
            .args(["-c", &script, server])
            .env("TMPDIR", &dir)
            .env("OUT", &dir)
            .env("SALAD_SD_STOP_GRACE_SECONDS", "3")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(secs) = signal_after {
            std::thread::sleep(std::time::Duration::from_secs(secs));
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let started = std::time::Instant::now();
        let out = loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the supervisor under {shell} did not exit"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let left = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        let leftover_state = std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("salad-sd-supervise.")
        });
        assert!(
            !leftover_state,
            "the supervisor removes its state directory"
        );
        let _ = std::fs::remove_dir_all(&dir);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            left,
        )
    }

    #[test]
    fn either_process_exiting_stops_the_other_and_the_exit_status_says_which() {
        struct Case {
            reason: &'static str,
            worker: &'static str,
            server: &'static str,
            signal_after: Option<u64>,
            code: i32,
            says: &'static str,
            log: &'static str,
        }
        // Each process logs when it stops on SIGTERM, so the test sees the other was stopped.
        let term = |who: &str| {
            format!("trap 'echo {who}-term >>$OUT/log; exit 0' TERM; echo {who}-up >>$OUT/log")
        };
        let long_worker = format!("{}; while :; do sleep 1; done", term("worker"));
        let long_server = format!("{}; while :; do sleep 1; done", term("server"));
        let cases = [
            Case {
                reason: "the server exits 3: the worker is stopped and the container exits 3",
                worker: Box::leak(long_worker.clone().into_boxed_str()),
                server: "sleep 1; exit 3",
                signal_after: None,
                code: 3,
                says: "the server exited with status 3",
                log: "worker-up\nworker-term\n",
            },
            Case {
                reason: "the worker exits 2 (a Go panic): the server is stopped, the container exits 102",
                worker: "sleep 1; exit 2",
                server: Box::leak(long_server.clone().into_boxed_str()),
                signal_after: None,
                code: 102,
                says: "the job queue worker exited with status 2",
                log: "server-up\nserver-term\n",
            },
            Case {
                reason: "the worker exits 0: still a stop, and not mistaken for the server's 0",
                worker: "exit 0",
                server: Box::leak(long_server.clone().into_boxed_str()),
                signal_after: None,
                code: 100,
                says: "the job queue worker exited with status 0",
                log: "server-up\nserver-term\n",
            },
            Case {
                reason: "a worker binary that cannot run (127) stops the server",
                worker: "exec /nonexistent/worker",
                server: Box::leak(long_server.clone().into_boxed_str()),
                signal_after: None,
                code: 227,
                says: "the job queue worker exited with status 127",
                log: "server-up\nserver-term\n",
            },
        ];
        for shell in ["/bin/sh", "/bin/bash", "/usr/bin/dash"]
            .into_iter()
            .filter(|s| std::path::Path::new(s).exists())
        {
            for case in &cases {
                let (code, stderr, log) =
                    supervise(shell, case.worker, case.server, case.signal_after);
                assert_eq!(code, case.code, "{shell}: {}: {stderr}", case.reason);
                assert!(
                    stderr.contains(case.says),
                    "{shell}: {}: {stderr}",
                    case.reason
                );
                let mut lines: Vec<&str> = log.lines().collect();
                lines.sort();
                let mut want: Vec<&str> = case.log.lines().collect();
                want.sort();
                assert_eq!(lines, want, "{shell}: {}", case.reason);
            }
        }
    }

    #[test]
    fn sigterm_is_forwarded_to_the_server_and_the_worker() {
        let term = |who: &str| {
            format!(
                "trap 'echo {who}-term >>$OUT/log; exit 0' TERM; echo {who}-up >>$OUT/log; while :; do sleep 1; done"
            )
        };
        for shell in ["/bin/sh", "/bin/bash"] {
            let (code, stderr, log) = supervise(shell, &term("worker"), &term("server"), Some(2));
            assert!(
                stderr.contains("SIGTERM: stopping the server and the job queue worker"),
                "{shell}: {stderr}"
            );
            assert_eq!(
                code, 0,
                "{shell}: the server's own status on a stop: {stderr}"
            );
            let mut lines: Vec<&str> = log.lines().collect();
            lines.sort();
            assert_eq!(
                lines,
                ["server-term", "server-up", "worker-term", "worker-up"],
                "{shell}"
            );
        }
    }

    #[test]
    fn with_the_queue_every_kinds_server_runs_beside_the_worker() {
        let queue = StartSteps {
            queue_worker: true,
            ..StartSteps::default()
        };
        let call = format!("salad_sd_supervise {QUEUE_WORKER_PATH} ");
        let sh_ok = |shell: &str, script: &str| {
            let out = std::process::Command::new(shell)
                .args(["-n", "-c", script])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // SaladBase SD.Next: the bash start's final `exec runuser …` is supervised.
        let p = sdnext(SdNextLayout::SaladBase);
        let (mut e, c) = p.launch(7860, None, &[]).unwrap();
        let mut c = Some(c);
        p.wrap_start(
            &mut e,
            &mut c,
            StartSteps {
                fetch: true,
                ..queue
            },
        );
        let script = &e.unwrap()[2];
        assert!(
            script.starts_with(FETCH_STEP),
            "the fetch still comes first"
        );
        assert!(script.contains(&format!("{call}runuser -u")), "{script}");
        assert!(!script.contains("exec runuser"), "{script}");
        assert!(
            script.contains(r#"! -user "$RUN_UID""#),
            "the rest of the start is kept"
        );
        sh_ok("/bin/bash", script);
        // A1111: the webui is the supervised server; socat forwards in the background.
        let p = ServerProfile::of_kind(ServerKind::Automatic1111);
        let (mut e, c) = p.launch(7860, None, &[]).unwrap();
        let mut c = Some(c);
        p.wrap_start(&mut e, &mut c, queue);
        assert_eq!(e, None, "the base's /docker/entrypoint.sh still runs first");
        let script = &c.unwrap()[2];
        assert!(
            script.starts_with("socat TCP6-LISTEN:7860,fork TCP4:127.0.0.1:7859 &\n"),
            "{script}"
        );
        assert!(
            script.contains(&format!("{call}python -u webui.py")),
            "{script}"
        );
        sh_ok("/bin/sh", script);
        // Upstream SD.Next: the base's command, supervised.
        let p = sdnext(SdNextLayout::Upstream);
        let (mut e, c) = p.launch(7860, None, &[]).unwrap();
        let mut c = Some(c);
        p.wrap_start(&mut e, &mut c, queue);
        let c = c.unwrap();
        assert_eq!(c[..2], ["/bin/sh", "-c"]);
        assert!(c[2].ends_with(&format!("{call}\"$@\"")), "{}", c[2]);
        assert_eq!(c[4..6], ["python", "launch.py"]);
        sh_ok("/bin/sh", &c[2]);
        // ComfyUI: our start (sh: comfyui-api's image is not promised bash), the base's Cmd
        // (`./comfyui-api`) supervised.
        let p = ServerProfile::of_kind(ServerKind::ComfyUi);
        let (mut e, mut c) = (None, None);
        p.wrap_start(&mut e, &mut c, queue);
        let e = e.expect("the worker needs our start");
        assert_eq!(e[..2], ["/bin/sh", "-c"]);
        assert!(e[2].ends_with(&format!("{call}\"$@\"")), "{}", e[2]);
        assert_eq!(c, None, "the base's ./comfyui-api stays the command");
        sh_ok("/bin/sh", &e[2]);
        // Custom: its own start is kept; the worker is in the image for it to run.
        let p = ServerProfile::of_kind(ServerKind::Custom);
        let (mut e, mut c) = (None, Some(vec!["/srv".to_string()]));
        p.wrap_start(&mut e, &mut c, queue);
        assert_eq!((e, c), (None, Some(vec!["/srv".to_string()])));
        // Without the queue nothing mentions the worker.
        let p = sdnext(SdNextLayout::SaladBase);
        let (mut e, c) = p.launch(7860, None, &[]).unwrap();
        let mut c = Some(c);
        p.wrap_start(&mut e, &mut c, StartSteps::default());
        assert!(!e.unwrap()[2].contains("salad_sd_supervise"));
    }

    #[test]
    fn the_default_worker_is_a_pinned_release_never_latest() {
        assert!(QUEUE_WORKER_URL.starts_with(
            "https://github.com/SaladTechnologies/salad-cloud-job-queue-worker/releases/download/"
        ));
        assert!(QUEUE_WORKER_URL.contains(&format!("/{QUEUE_WORKER_VERSION}/")));
        assert!(!QUEUE_WORKER_URL.contains("latest"));
        assert!(
            include_str!("../../../crds/salad-sd.dev_stablediffusiondeployments.yaml")
                .contains(&format!("(by default {QUEUE_WORKER_URL}:")),
            "the CRD's CEL message names the same default release (scaling.rs QueueSpec)"
        );
        let none = crate::scaling::QueueWorkerSpec::default();
        assert_eq!(
            queue_worker_sha256_missing(&none).is_some(),
            QUEUE_WORKER_SHA256.is_none(),
            "the sha256 is required exactly when none is pinned"
        );
        let pinned = crate::scaling::QueueWorkerSpec {
            url: None,
            sha256: Some("ab".repeat(32)),
        };
        assert_eq!(queue_worker_sha256_missing(&pinned), None);
    }
}
