//! Stand-in base images: what each upstream server image does at start, on a root filesystem
//! made of this machine's own programs (bash, coreutils, findutils, runuser with PAM, socat,
//! Python 3.11). The servers are `tests/standin/standin.py`; the entrypoints reproduce
//! upstream's scripts (`tests/standin/*-entrypoint.sh`). Facts and sources:
//! `shared/reference/server-images.md`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::oci::{Registry, digest};
use super::{NodeError, Result};

/// Which upstream image a stand-in reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandIn {
    /// `saladtechnologies/sdnext:base`: `/webui`, uid 1000, `entrypoint.sh` with `chown -R`.
    SdNextSalad,
    /// `vladmandic/sdnext-cuda`: `/app`, `SD_DATADIR=/mnt/data`, `SD_MODELSDIR=/mnt/models`, root.
    SdNextUpstream,
    /// `saladtechnologies/a1111:ipv6-v1.9.4`: `/docker/entrypoint.sh` links `/data` into the
    /// webui tree; webui on IPv4 7859 behind socat on IPv6.
    A1111,
    /// `comfyui-api`: listens on `HOST`/`PORT` (`::`, dual stack).
    ComfyUi,
}

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const BINARIES: &[&str] = &[
    "/usr/bin/bash",
    "/usr/bin/dash",
    "/usr/bin/env",
    "/usr/bin/id",
    "/usr/bin/chown",
    "/usr/bin/mkdir",
    "/usr/bin/ln",
    "/usr/bin/rm",
    "/usr/bin/cat",
    "/usr/bin/sleep",
    "/usr/bin/ls",
    "/usr/bin/dirname",
    "/usr/bin/basename",
    "/usr/bin/find",
    "/usr/sbin/runuser",
    "/usr/bin/socat",
    "/usr/bin/python3.11",
];

/// Parts of the Python standard library the servers never import.
const PYTHON_SKIP: &[&str] = &[
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
    "dist-packages",
    "site-packages",
];

/// What is missing on this machine for the stand-ins, if anything.
pub fn missing_host_programs() -> Vec<&'static str> {
    BINARIES
        .iter()
        .copied()
        .filter(|b| !Path::new(b).exists())
        .collect()
}

/// Where a host path goes in the image (merged /usr, as Debian's).
fn image_path(host: &str) -> String {
    let p = host.trim_start_matches('/');
    for top in ["bin/", "sbin/", "lib/", "lib64/"] {
        if p.starts_with(top) {
            return format!("usr/{p}");
        }
    }
    p.to_owned()
}

/// The shared libraries `file` loads, as `ldd` lists them.
fn libraries(file: &Path) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(file)
        .output()
        .map_err(|e| NodeError(format!("ldd {}: {e}", file.display())))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(str::to_owned)
        })
        .collect())
}

struct TarBuilder {
    tar: tar::Builder<Vec<u8>>,
    written: std::collections::BTreeSet<String>,
}

impl TarBuilder {
    fn new() -> Self {
        Self {
            tar: tar::Builder::new(Vec::new()),
            written: Default::default(),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(946_684_800);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str, mode: u32, uid: u64) {
        let path = format!("{}/", path.trim_end_matches('/'));
        if self.written.insert(path.clone()) {
            let mut h = Self::header(tar::EntryType::Directory, mode, uid, 0);
            self.tar
                .append_data(&mut h, &path, std::io::empty())
                .expect("in-memory tar");
        }
    }

    fn parents(&mut self, path: &str) {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let dir = parts[..i].join("/");
            if !self.written.contains(&format!("{dir}/")) {
                self.dir(&dir, 0o755, 0);
            }
        }
    }

    fn file(&mut self, path: &str, data: &[u8], mode: u32, uid: u64) {
        if !self.written.insert(path.to_owned()) {
            return;
        }
        self.parents(path);
        let mut h = Self::header(tar::EntryType::Regular, mode, uid, data.len() as u64);
        self.tar
            .append_data(&mut h, path, data)
            .expect("in-memory tar");
    }

    fn host_file(&mut self, host: &Path, path: &str) -> Result<()> {
        let data = std::fs::read(host)
            .map_err(|e| NodeError(format!("reading {}: {e}", host.display())))?;
        let mode = std::fs::metadata(host)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o644);
        self.file(path, &data, mode, 0);
        Ok(())
    }

    fn symlink(&mut self, path: &str, target: &str) {
        if !self.written.insert(path.to_owned()) {
            return;
        }
        self.parents(path);
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("in-memory tar");
    }

    /// `(gzip blob, diff_id)`.
    fn finish(self) -> (Vec<u8>, String) {
        let raw = self.tar.into_inner().expect("in-memory tar");
        let diff_id = digest(&raw);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).expect("in-memory gzip");
        (gz.finish().expect("in-memory gzip"), diff_id)
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if PYTHON_SKIP.contains(&name.as_str()) || name == "__pycache__" {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
}

/// The operating-system layer every stand-in shares (built once per process).
fn os_layer() -> Result<&'static (Vec<u8>, String)> {
    static LAYER: OnceLock<std::result::Result<(Vec<u8>, String), String>> = OnceLock::new();
    LAYER
        .get_or_init(|| build_os_layer().map_err(|e| e.0))
        .as_ref()
        .map_err(|e| NodeError(e.clone()))
}

fn build_os_layer() -> Result<(Vec<u8>, String)> {
    let mut t = TarBuilder::new();
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        t.dir("usr", 0o755, 0);
        t.dir(target, 0o755, 0);
        t.symlink(link, target);
    }
    for d in ["etc", "root", "dev", "proc", "sys", "run", "var", "home"] {
        t.dir(d, 0o755, 0);
    }
    t.dir("tmp", 0o1777, 0);
    t.dir("var/tmp", 0o1777, 0);

    let mut files: Vec<PathBuf> = BINARIES.iter().map(PathBuf::from).collect();
    let pam_modules = Path::new("/usr/lib/x86_64-linux-gnu/security");
    walk(pam_modules, &mut files);
    let dynload = Path::new("/usr/lib/python3.11/lib-dynload");
    let mut python = Vec::new();
    walk(Path::new("/usr/lib/python3.11"), &mut python);
    let loadable: Vec<PathBuf> = files
        .iter()
        .cloned()
        .chain(python.iter().filter(|p| p.starts_with(dynload)).cloned())
        .collect();
    let mut libs = BTreeMap::new();
    for f in &loadable {
        for lib in libraries(f)? {
            libs.insert(image_path(&lib), PathBuf::from(lib));
        }
    }
    for f in files.iter().chain(python.iter()) {
        t.host_file(f, &image_path(&f.to_string_lossy()))?;
    }
    for (path, host) in &libs {
        t.host_file(host, path)?;
    }
    t.symlink("usr/bin/sh", "dash");
    t.symlink("usr/bin/python3", "python3.11");
    t.symlink("usr/bin/python", "python3.11");
    for dir in ["/etc/pam.d", "/etc/security"] {
        let mut etc = Vec::new();
        walk(Path::new(dir), &mut etc);
        for f in etc {
            t.host_file(&f, &image_path(&f.to_string_lossy()))?;
        }
    }
    if Path::new("/etc/login.defs").exists() {
        t.host_file(Path::new("/etc/login.defs"), "etc/login.defs")?;
    }
    Ok(t.finish())
}

fn standin_source(name: &str) -> Result<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("standin")
        .join(name);
    std::fs::read(&path).map_err(|e| NodeError(format!("reading {}: {e}", path.display())))
}

/// A Python entry file that runs the stand-in server `kind`.
fn launcher(kind: &str) -> Vec<u8> {
    format!(
        "#!/usr/bin/python3\nimport sys\nsys.path.insert(0, '/standin')\nimport standin\nstandin.{kind}(sys.argv[1:])\n"
    )
    .into_bytes()
}

const ROOT_ONLY: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n";
const ROOT_GROUP: &[u8] = b"root:x:0:\n";

/// The stand-in's own layer and image config.
fn kind_layer(kind: StandIn) -> Result<((Vec<u8>, String), Value)> {
    let mut t = TarBuilder::new();
    t.file(
        "standin/standin.py",
        &standin_source("standin.py")?,
        0o644,
        0,
    );
    let load = "STANDIN_LOAD_SECONDS=2".to_string();
    // Upstream images ship their Python byte-compiled; this one is not, so Python must not
    // write .pyc files at start (they would count as bytes the start wrote).
    let no_pyc = "PYTHONDONTWRITEBYTECODE=1".to_string();
    let config = match kind {
        StandIn::SdNextSalad => {
            // useradd -m -u 1000 webui-user; COPY --chown=webui-user . /webui; mkdir -p $DATA_DIR
            t.file(
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/bash\nwebui-user:x:1000:1000::/home/webui-user:/bin/sh\n",
                0o644,
                0,
            );
            t.file("etc/group", b"root:x:0:\nwebui-user:x:1000:\n", 0o644, 0);
            t.dir("home/webui-user", 0o755, 1000);
            t.dir("webui", 0o755, 1000);
            t.file("webui/launch.py", &launcher("sdnext"), 0o755, 1000);
            t.file(
                "webui/entrypoint.sh",
                &standin_source("sdnext-entrypoint.sh")?,
                0o755,
                1000,
            );
            t.file(
                "webui/venv/bin/activate",
                b"VIRTUAL_ENV=/webui/venv\n",
                0o644,
                1000,
            );
            t.dir("webui/data", 0o755, 1000);
            // A file of the base that uid 1000 does not own and the server rewrites at start:
            // the start must hand it over (upstream's chown -R does; ours must too).
            t.file("webui/data/config.json", b"{}\n", 0o644, 0);
            json!({
                "Env": [PATH_ENV, "INSTALLDIR=/webui", "RUN_UID=1000", "DATA_DIR=/webui/data", "TZ=Etc/UTC", load, no_pyc],
                "Entrypoint": ["/bin/bash", "-c", "${INSTALLDIR}/entrypoint.sh \"$0\" \"$@\""],
                "WorkingDir": "/webui",
                "StopSignal": "SIGINT",
            })
        }
        StandIn::SdNextUpstream => {
            t.file("etc/passwd", ROOT_ONLY, 0o644, 0);
            t.file("etc/group", ROOT_GROUP, 0o644, 0);
            t.file("app/launch.py", &launcher("sdnext"), 0o755, 0);
            json!({
                "Env": [PATH_ENV, "PIP_NO_CACHE_DIR=true", "SD_NOHASHING=true", "SD_DATADIR=/mnt/data",
                        "SD_MODELSDIR=/mnt/models", "SD_DOCKER=true", load, no_pyc],
                "Cmd": ["python", "launch.py", "--debug", "--skip-all", "--listen", "--quick", "--api-log", "--log", "sdnext.log"],
                "WorkingDir": "/app",
                "StopSignal": "SIGINT",
            })
        }
        StandIn::A1111 => {
            t.file("etc/passwd", ROOT_ONLY, 0o644, 0);
            t.file("etc/group", ROOT_GROUP, 0o644, 0);
            t.file(
                "docker/entrypoint.sh",
                &standin_source("a1111-entrypoint.sh")?,
                0o755,
                0,
            );
            let root = "stable-diffusion-webui";
            t.file(&format!("{root}/webui.py"), &launcher("a1111"), 0o755, 0);
            t.file(
                &format!(
                    "{root}/models/Stable-diffusion/Put Stable Diffusion checkpoints here.txt"
                ),
                b"",
                0o644,
                0,
            );
            t.dir(&format!("{root}/embeddings"), 0o755, 0);
            t.dir(&format!("{root}/extensions"), 0o755, 0);
            json!({
                "Env": [PATH_ENV, "ROOT=/stable-diffusion-webui", "CLI_ARGS=", "PORT=7860", load, no_pyc],
                "Entrypoint": ["/docker/entrypoint.sh"],
                "Cmd": ["/bin/sh", "-c", "python -u webui.py --listen --port 7859 ${CLI_ARGS} & socat TCP6-LISTEN:${PORT},fork TCP4:127.0.0.1:7859;"],
                "WorkingDir": "/stable-diffusion-webui",
            })
        }
        StandIn::ComfyUi => {
            t.file("etc/passwd", ROOT_ONLY, 0o644, 0);
            t.file("etc/group", ROOT_GROUP, 0o644, 0);
            t.file("opt/comfyui-api", &launcher("comfyui"), 0o755, 0);
            for d in ["checkpoints", "loras", "vae", "embeddings", "controlnet"] {
                t.dir(&format!("opt/ComfyUI/models/{d}"), 0o755, 0);
            }
            t.dir("opt/ComfyUI/custom_nodes", 0o755, 0);
            json!({
                "Env": [PATH_ENV, "COMFY_HOME=/opt/ComfyUI", "HOST=::", "PORT=3000", load, no_pyc],
                "Cmd": ["/opt/comfyui-api"],
                "WorkingDir": "/opt",
            })
        }
    };
    Ok((t.finish(), config))
}

/// Pushes the stand-in base for `kind` to `registry_host_port` as `repo:tag`; returns the
/// digest.
pub async fn push_standin(
    registry_host_port: &str,
    repo: &str,
    tag: &str,
    kind: StandIn,
) -> Result<String> {
    let (os, (own, config)) = tokio::task::spawn_blocking(move || -> Result<_> {
        Ok((os_layer()?.clone(), kind_layer(kind)?))
    })
    .await
    .map_err(|e| NodeError(format!("building the stand-in: {e}")))??;
    Registry::new(registry_host_port)
        .push_image(repo, tag, &[os, own], config)
        .await
}
