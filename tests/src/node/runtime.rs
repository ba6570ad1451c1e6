//! Runs a pulled image as a node's container runtime does: layers unpacked and stacked as
//! overlayfs lower directories under an empty upper directory, the process started by `runc`
//! with the image's (or the group's) entrypoint, command, environment and working directory,
//! and Docker's default capabilities. The container shares the host's network namespace, so its
//! listeners are the test's loopback listeners.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use saladcloud::model::CreateContainer;
use serde_json::json;

use sha2::{Digest, Sha256};

use super::oci::{PulledLayer, RunConfig};
use super::{NodeError, Result};

/// Docker's (and containerd's) default capability set.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Why this machine cannot run containers, if it cannot.
pub fn unavailable() -> Option<String> {
    if effective_uid() != 0 {
        return Some("the runtime test needs root (runc and overlayfs mounts)".into());
    }
    if Command::new("runc").arg("--version").output().is_err() {
        return Some("runc is not installed (Debian package runc)".into());
    }
    let overlay = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !overlay.contains("overlay") {
        return Some("the kernel has no overlayfs".into());
    }
    None
}

fn effective_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}

/// What the runtime starts: the image config with the container group's overrides applied, as
/// SaladCloud does (`command` replaces entrypoint and command; group variables win).
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// argv.
    pub args: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
}

impl Launch {
    /// The process a container group runs from an image.
    pub fn of(image: &RunConfig, container: &CreateContainer) -> Result<Self> {
        let args = match &container.command {
            Some(command) if !command.is_empty() => command.clone(),
            _ => image
                .entrypoint
                .iter()
                .chain(image.cmd.iter())
                .cloned()
                .collect(),
        };
        if args.is_empty() {
            return Err(NodeError(
                "the image has neither entrypoint nor command".into(),
            ));
        }
        if !image.user.is_empty() && image.user != "root" && image.user != "0" {
            return Err(NodeError(format!(
                "image user `{}`: the test node runs images as root only",
                image.user
            )));
        }
        let mut env: Vec<String> = image
            .env
            .iter()
            .filter(|kv| {
                let key = kv.split('=').next().unwrap_or_default();
                !container.environment_variables.contains_key(key)
            })
            .cloned()
            .collect();
        env.extend(
            container
                .environment_variables
                .iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        let cwd = if image.working_dir.is_empty() {
            "/".into()
        } else {
            image.working_dir.clone()
        };
        Ok(Self { args, env, cwd })
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    output(cmd, what).map(drop)
}

/// Runs `cmd`; its standard output, or an error with what it printed when it failed.
pub(crate) fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| NodeError(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(NodeError(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a layer's blob is gzip, as containerd decides it (`images.DiffCompression`): by the
/// media type, except that Docker's uncompressed type is sniffed, since some producers mislabel.
fn is_gzip(layer: &PulledLayer, head: &[u8]) -> Result<bool> {
    let gzip_magic = head.starts_with(&[0x1f, 0x8b]);
    match layer.media_type.as_str() {
        "application/vnd.docker.image.rootfs.diff.tar" => Ok(gzip_magic),
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.oci.image.layer.v1.tar+gzip" => Ok(true),
        "application/vnd.oci.image.layer.v1.tar" => Ok(false),
        other => Err(NodeError(format!(
            "layer media type {other:?} is not one the test node unpacks"
        ))),
    }
}

/// Counts the sha256 of what the tar reader consumes: the layer's diff.
struct DiffHasher<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for DiffHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks a layer into `dir`, keeping owners and modes, and checks its diff_id as containerd's
/// applier does ("wrong diff id calculated on extraction").
fn unpack(layer: &PulledLayer, dir: &Path) -> Result<()> {
    let file = File::open(&layer.path).map_err(|e| NodeError(format!("opening layer: {e}")))?;
    let mut file = BufReader::new(file);
    let head = file
        .fill_buf()
        .map_err(|e| NodeError(format!("reading layer: {e}")))?;
    let input: Box<dyn Read> = if is_gzip(layer, head)? {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let diff = DiffHasher {
        inner: input,
        hasher: Sha256::new(),
    };
    let mut archive = tar::Archive::new(diff);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    for entry in archive
        .entries()
        .map_err(|e| NodeError(format!("reading layer: {e}")))?
    {
        let mut entry = entry.map_err(|e| NodeError(format!("reading layer: {e}")))?;
        let path = entry.path().map(|p| p.into_owned()).unwrap_or_default();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".wh."))
        {
            return Err(NodeError(format!(
                "{}: whiteouts are not supported by the test node",
                path.display()
            )));
        }
        entry
            .unpack_in(dir)
            .map_err(|e| NodeError(format!("unpacking {}: {e}", path.display())))?;
    }
    // The rest of the stream (the end blocks) is part of the diff too.
    let mut diff = archive.into_inner();
    std::io::copy(&mut diff, &mut std::io::sink())
        .map_err(|e| NodeError(format!("reading layer: {e}")))?;
    let got = format!("sha256:{}", hex::encode(diff.hasher.finalize()));
    if got != layer.diff_id {
        return Err(NodeError(format!(
            "{}: wrong diff id calculated on extraction: {got}, the config says {}",
            layer.path.display(),
            layer.diff_id
        )));
    }
    Ok(())
}

/// How the container's process is confined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isolation {
    /// uid and gid of the process.
    pub user: (u32, u32),
    /// The root filesystem is mounted read-only.
    pub read_only_root: bool,
    /// Capabilities (bounding, effective, permitted).
    pub capabilities: Vec<String>,
    /// `no_new_privs`.
    pub no_new_privileges: bool,
    /// Host directories bind-mounted read-only: (host, container path).
    pub read_only_mounts: Vec<(PathBuf, String)>,
}

impl Isolation {
    /// As a SaladCloud node (Docker's defaults) runs a container: root with Docker's default
    /// capabilities, a writable root.
    pub fn docker_default() -> Self {
        Self {
            user: (0, 0),
            read_only_root: false,
            capabilities: DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
            no_new_privileges: false,
            read_only_mounts: Vec::new(),
        }
    }

    /// As the operator's Deployment runs it (`manifests/base/deployment.yaml`): `uid:gid`,
    /// read-only root, every capability dropped, no privilege escalation.
    pub fn restricted(uid: u32, gid: u32) -> Self {
        Self {
            user: (uid, gid),
            read_only_root: true,
            capabilities: Vec::new(),
            no_new_privileges: true,
            read_only_mounts: Vec::new(),
        }
    }
}

/// Unpacks `layers` (bottom first) into `lower-N` directories under `workdir`.
fn unpack_layers(layers: &[PulledLayer], workdir: &Path) -> Result<Vec<PathBuf>> {
    let mut lowers = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let dir = workdir.join(format!("lower-{i}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| NodeError(format!("creating a layer directory: {e}")))?;
        unpack(layer, &dir)?;
        lowers.push(dir);
    }
    Ok(lowers)
}

/// overlayfs's `lowerdir` option: the top layer first.
fn lowerdir(lowers: &[PathBuf]) -> String {
    lowers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The image's root filesystem as the test node stacks it, mounted read-only (no container,
/// nothing written). Dropping it unmounts it.
pub struct ImageRootfs {
    lowers: Vec<PathBuf>,
    path: PathBuf,
    mounted: bool,
}

impl ImageRootfs {
    /// Unpacks `layers` under `workdir` and mounts them read-only at `workdir/rootfs` (one
    /// layer is its own directory: overlayfs wants two lower directories without an upper).
    pub fn mount(layers: &[PulledLayer], workdir: &Path) -> Result<Self> {
        let lowers = unpack_layers(layers, workdir)?;
        if let [one] = lowers.as_slice() {
            return Ok(Self {
                path: one.clone(),
                lowers,
                mounted: false,
            });
        }
        let path = workdir.join("rootfs");
        std::fs::create_dir_all(&path)
            .map_err(|e| NodeError(format!("creating the rootfs directory: {e}")))?;
        run(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!("ro,lowerdir={}", lowerdir(&lowers)))
                .arg(&path),
            "mounting overlayfs read-only",
        )?;
        Ok(Self {
            lowers,
            path,
            mounted: true,
        })
    }

    /// Its root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ImageRootfs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        }
    }
}

/// Regular files under `root` (as `/path`) with their sizes, largest first.
pub fn regular_files(root: &Path) -> Vec<(String, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(root, &e.path(), out),
                Ok(t) if t.is_file() => {
                    let path = e.path();
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((format!("/{}", rel.display()), size));
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort_by_key(|f| std::cmp::Reverse(f.1));
    out
}

/// Runs `cmd` without input or output; `true` when it exits 0 within `timeout` (killed if not).
pub(crate) async fn exits_zero_within(mut cmd: tokio::process::Command, timeout: Duration) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            let _ = child.kill().await;
            false
        }
    }
}

/// A daemon [`start_daemon`] started. Dropping it stops it (SIGTERM, so it can stop what it
/// started, then SIGKILL after 5 s) and unmounts what it or its shims left mounted under its
/// directory.
pub(crate) struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        reap(&mut self.child);
        unmount_under(&self.dir);
    }
}

/// Starts daemon `name` (`cmd`, its output to `dir/<name>.log`) and waits up to `within` until
/// its `client` answers `version`. One that does not answer is stopped.
pub(crate) fn start_daemon(
    name: &str,
    mut cmd: Command,
    dir: &Path,
    within: Duration,
    client: impl Fn() -> Command,
) -> Result<Daemon> {
    let answers = || {
        client()
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let io = |what: String| move |e: std::io::Error| NodeError(format!("{what}: {e}"));
    let log_path = dir.join(format!("{name}.log"));
    let log = File::create(&log_path).map_err(io(format!("{name}'s log")))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io(format!("{name}'s log")))?)
        .stderr(log)
        .spawn()
        .map_err(io(format!("starting {name}")))?;
    let daemon = Daemon {
        child,
        dir: dir.to_owned(),
    };
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if answers() {
            return Ok(daemon);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(daemon);
    Err(NodeError(format!(
        "{name} did not answer within {} s: {}",
        within.as_secs(),
        std::fs::read_to_string(&log_path).unwrap_or_default()
    )))
}

/// Unmounts (lazily, deepest first) whatever a daemon or its shims left mounted under `dir`.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut left: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect();
    left.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in left {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
}

/// Waits up to 5 s for `child` (signalled to stop) to exit, then kills and reaps it.
pub(crate) fn reap(child: &mut Child) {
    for _ in 0..50 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A running container. Dropping it kills the process, unmounts and removes its state.
pub struct Container {
    id: String,
    state: PathBuf,
    merged: PathBuf,
    upper: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Container {
    /// Unpacks `layers` (bottom first) under `workdir`, mounts them and starts `launch`.
    pub fn start(
        id: &str,
        layers: &[PulledLayer],
        launch: &Launch,
        workdir: &Path,
    ) -> Result<Self> {
        Self::start_with(id, layers, launch, workdir, &Isolation::docker_default())
    }

    /// [`Container::start`] confined as `isolation` says.
    pub fn start_with(
        id: &str,
        layers: &[PulledLayer],
        launch: &Launch,
        workdir: &Path,
        isolation: &Isolation,
    ) -> Result<Self> {
        let lowers = unpack_layers(layers, workdir)?;
        Self::start_on_lowers(id, &lowers, launch, workdir, isolation)
    }

    /// [`Container::start_with`] on layers already unpacked for `image` (which can stay
    /// mounted: the container writes to an upper directory of its own under `workdir`).
    pub fn start_on(
        id: &str,
        image: &ImageRootfs,
        launch: &Launch,
        workdir: &Path,
        isolation: &Isolation,
    ) -> Result<Self> {
        Self::start_on_lowers(id, &image.lowers, launch, workdir, isolation)
    }

    fn start_on_lowers(
        id: &str,
        lowers: &[PathBuf],
        launch: &Launch,
        workdir: &Path,
        isolation: &Isolation,
    ) -> Result<Self> {
        let io = |what: &'static str| move |e: std::io::Error| NodeError(format!("{what}: {e}"));
        let upper = workdir.join("upper");
        let work = workdir.join("work");
        let merged = workdir.join("rootfs");
        let bundle = workdir.join("bundle");
        let state = workdir.join("runc-state");
        for d in [&upper, &work, &merged, &bundle, &state] {
            std::fs::create_dir_all(d).map_err(io("creating container directories"))?;
        }
        run(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lowerdir(lowers),
                    upper.display(),
                    work.display()
                ))
                .arg(&merged),
            "mounting overlayfs",
        )?;
        let mut container = Self {
            id: id.to_owned(),
            state,
            merged,
            upper,
            log: workdir.join("container.log"),
            child: None,
        };
        container.write_bundle(&bundle, launch, isolation)?;
        let log = File::create(&container.log).map_err(io("creating the container log"))?;
        let log2 = log.try_clone().map_err(io("creating the container log"))?;
        let child = Command::new("runc")
            .arg("--root")
            .arg(&container.state)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io("starting runc"))?;
        container.child = Some(child);
        Ok(container)
    }

    fn write_bundle(&self, bundle: &Path, launch: &Launch, isolation: &Isolation) -> Result<()> {
        run(
            Command::new("runc").arg("spec").arg("--bundle").arg(bundle),
            "runc spec",
        )?;
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(&path).map_err(|e| NodeError(format!("reading runc spec: {e}")))?,
        )
        .map_err(|e| NodeError(format!("runc spec: {e}")))?;
        spec["root"] = json!({"path": self.merged, "readonly": isolation.read_only_root});
        spec["hostname"] = json!(self.id);
        let p = &mut spec["process"];
        p["terminal"] = json!(false);
        p["args"] = json!(launch.args);
        p["env"] = json!(launch.env);
        p["cwd"] = json!(launch.cwd);
        p["user"] = json!({"uid": isolation.user.0, "gid": isolation.user.1});
        p["noNewPrivileges"] = json!(isolation.no_new_privileges);
        let caps = &isolation.capabilities;
        p["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps,
        });
        if let Some(mounts) = spec["mounts"].as_array_mut() {
            for (host, inside) in &isolation.read_only_mounts {
                mounts.push(json!({
                    "destination": inside, "type": "bind", "source": host,
                    "options": ["rbind", "ro", "nosuid", "nodev"],
                }));
            }
        }
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("json"))
            .map_err(|e| NodeError(format!("writing runc spec: {e}")))
    }

    /// The host pid of the container's process (`runc state`).
    pub fn pid(&self) -> Option<u32> {
        let out = Command::new("runc")
            .arg("--root")
            .arg(&self.state)
            .args(["state", &self.id])
            .output()
            .ok()?;
        let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        state["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
    }

    /// Sends `signal` (`TERM`, `KILL`, …) to the container's process, as a kubelet does.
    pub fn signal(&self, signal: &str) -> Result<()> {
        run(
            Command::new("runc")
                .arg("--root")
                .arg(&self.state)
                .args(["kill", &self.id, signal]),
            "runc kill",
        )
    }

    /// Waits up to `timeout` for the container's process to exit; its exit status if it did.
    /// (Polls without blocking the runtime: the test's own servers keep answering.)
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.as_mut()?.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the container's process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Runs `command` in the container (`runc exec`, the container's env and working
    /// directory); `true` when it exits 0 within `timeout`.
    pub async fn exec(&self, command: &[String], timeout: Duration) -> bool {
        let mut cmd = tokio::process::Command::new("runc");
        cmd.arg("--root")
            .arg(&self.state)
            .arg("exec")
            .arg(&self.id)
            .args(command);
        exits_zero_within(cmd, timeout).await
    }

    /// Regular files in the overlay's upper directory with their sizes, largest first: what
    /// the container wrote, including whole files copied up from the image.
    pub fn upper_files(&self) -> Vec<(String, u64)> {
        regular_files(&self.upper)
    }

    /// What the container printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let runc = |args: &[&str]| {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&self.state)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        runc(&["kill", &self.id, "KILL"]);
        if let Some(mut child) = self.child.take() {
            reap(&mut child);
        }
        runc(&["delete", "--force", &self.id]);
        let _ = Command::new("umount").arg(&self.merged).status();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn one_file_tar() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        tar.append_data(&mut h, "m/x", &b"hello"[..]).unwrap();
        tar.into_inner().unwrap()
    }

    fn layer(dir: &Path, blob: &[u8], media_type: &str, diff_id: String) -> PulledLayer {
        let path = dir.join("layer.blob");
        std::fs::write(&path, blob).unwrap();
        PulledLayer {
            path,
            media_type: media_type.into(),
            diff_id,
        }
    }

    #[test]
    fn layers_unpack_by_media_type_and_a_wrong_diff_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tar = one_file_tar();
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let docker_tar = "application/vnd.docker.image.rootfs.diff.tar";
        for (blob, media_type) in [
            (&tar, docker_tar),
            // Mislabelled gzip under Docker's plain type is sniffed, as containerd does.
            (&gz, docker_tar),
            (&gz, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
            (&tar, "application/vnd.oci.image.layer.v1.tar"),
        ] {
            let root = tempfile::tempdir().unwrap();
            unpack(
                &layer(dir.path(), blob, media_type, diff_id.clone()),
                root.path(),
            )
            .unwrap_or_else(|e| panic!("{media_type}: {e:?}"));
            assert_eq!(std::fs::read(root.path().join("m/x")).unwrap(), b"hello");
        }
        let root = tempfile::tempdir().unwrap();
        let wrong = format!("sha256:{}", hex::encode(Sha256::digest(b"other")));
        let err = unpack(&layer(dir.path(), &tar, docker_tar, wrong), root.path()).unwrap_err();
        assert!(err.0.contains("wrong diff id"), "{err:?}");
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        assert!(unpack(&layer(dir.path(), &tar, zstd, diff_id), root.path()).is_err());
    }
}
