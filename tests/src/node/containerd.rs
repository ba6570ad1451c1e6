//! The real containerd (Debian's `containerd`, driven by its own `ctr`) as a node's image service
//! and runtime. It pulls what the builder pushed with its own resolver, media-type rules and
//! diff_id check, unpacks it with its overlayfs snapshotter, and runs it with the process it
//! derives from the image config itself (entrypoint, command, env, user by name through the
//! image's `/etc/passwd`, working directory). `make test-runtime` holds the test node
//! (`runtime.rs`) to it: the same image gives the same root filesystem in both, and servers run
//! under it too.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::probes::Target;
use super::runtime::{Daemon, exits_zero_within, output, reap, regular_files, start_daemon};
use super::tree;
use super::{NodeError, Result};

/// The containerd namespace the tests' images and containers live in.
const NAMESPACE: &str = "salad-sd-test";

/// Why containerd cannot be used here, if it cannot.
pub fn unavailable() -> Option<String> {
    for program in ["containerd", "ctr", "containerd-shim-runc-v2"] {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
        });
        if !found {
            return Some(format!(
                "{program} is not installed (Debian package containerd)"
            ));
        }
    }
    None
}

/// A containerd daemon of its own (root, state, socket under one directory). Dropping it stops
/// the daemon and unmounts what it left mounted.
pub struct Containerd {
    socket: PathBuf,
    _daemon: Daemon,
}

impl Containerd {
    /// Starts containerd under `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Result<Self> {
        let io = |what: &'static str| move |e: std::io::Error| NodeError(format!("{what}: {e}"));
        std::fs::create_dir_all(dir).map_err(io("creating containerd's directory"))?;
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {root:?}\nstate = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {socket:?}\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt:?}\n",
                root = dir.join("root"),
                state = dir.join("state"),
                opt = dir.join("opt"),
            ),
        )
        .map_err(io("writing containerd's config"))?;
        let mut daemon = Command::new("containerd");
        daemon.arg("--config").arg(&config);
        let daemon = start_daemon("containerd", daemon, dir, Duration::from_secs(5), || {
            ctr(&socket)
        })?;
        Ok(Self {
            socket,
            _daemon: daemon,
        })
    }

    fn ctr(&self) -> Command {
        ctr(&self.socket)
    }

    /// `ctr images pull --plain-http` of `reference` (`host:port/repo@sha256:…`): fetched,
    /// checked and unpacked for linux/amd64 by containerd. Returns what `ctr` printed.
    pub fn pull(&self, reference: &str) -> Result<String> {
        output(
            self.ctr()
                .args(["images", "pull", "--plain-http", reference]),
            "ctr images pull",
        )
    }

    /// Mounts the unpacked image read-only at `target` (`ctr images mount`), as its snapshot
    /// chain stacks it. Unmounted on drop.
    pub fn mount(&self, reference: &str, target: &Path) -> Result<MountedImage> {
        std::fs::create_dir_all(target)
            .map_err(|e| NodeError(format!("creating {}: {e}", target.display())))?;
        output(
            self.ctr().args(["images", "mount", reference]).arg(target),
            "ctr images mount",
        )?;
        Ok(MountedImage {
            socket: self.socket.clone(),
            target: target.to_owned(),
        })
    }

    /// Pulls `reference` (see [`Containerd::pull`]) and compares containerd's root filesystem
    /// with `ours` (the test node's unpack of the same image, [`super::runtime::ImageRootfs`]),
    /// path by path: type, mode, owner and content ([`tree`]). Returns the differences (at most
    /// 20 lines; empty when they agree). Mounts under `dir`.
    pub fn pull_and_compare(
        &self,
        reference: &str,
        ours: &tree::Tree,
        dir: &Path,
    ) -> Result<Vec<String>> {
        self.pull(reference)?;
        let theirs = self.mount(reference, &dir.join("containerd-rootfs"))?;
        Ok(tree::differences(ours, &tree::tree(theirs.path())?, 20))
    }

    /// Runs `reference` as container `id` in the host's network namespace (`ctr run
    /// --net-host`): containerd's own process from the image config, `env` added, and `args`,
    /// when given, replacing entrypoint and command (as a group's `command` does). Output goes
    /// to `log`.
    pub fn run(
        &self,
        reference: &str,
        id: &str,
        env: &BTreeMap<String, String>,
        args: Option<&[String]>,
        log: &Path,
    ) -> Result<CtrContainer> {
        let io = |what: &'static str| move |e: std::io::Error| NodeError(format!("{what}: {e}"));
        let file = File::create(log).map_err(io("creating the container log"))?;
        let mut cmd = self.ctr();
        cmd.args(["run", "--rm", "--net-host"]);
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg(reference).arg(id);
        if let Some(args) = args {
            cmd.args(args);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(io("the container log"))?)
            .stderr(file)
            .spawn()
            .map_err(io("starting ctr run"))?;
        Ok(CtrContainer {
            socket: self.socket.clone(),
            id: id.to_owned(),
            log: log.to_owned(),
            child: Some(child),
            execs: AtomicU32::new(0),
        })
    }
}

/// An image mounted by [`Containerd::mount`].
pub struct MountedImage {
    socket: PathBuf,
    target: PathBuf,
}

impl MountedImage {
    /// Its root directory.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for MountedImage {
    fn drop(&mut self) {
        let _ = ctr(&self.socket)
            .args(["images", "unmount", "--rm"])
            .arg(&self.target)
            .output();
    }
}

/// A container run by [`Containerd::run`]. Dropping it kills and removes it.
pub struct CtrContainer {
    socket: PathBuf,
    id: String,
    log: PathBuf,
    child: Option<Child>,
    execs: AtomicU32,
}

impl CtrContainer {
    /// What the container printed so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Regular files in the container's writable snapshot (its overlayfs upper directory) with
    /// their sizes, largest first: what the container wrote.
    pub fn upper_files(&self) -> Result<Vec<(String, u64)>> {
        let mounts = output(
            ctr(&self.socket).args(["snapshots", "mounts", "/unused", &self.id]),
            "ctr snapshots mounts",
        )?;
        let upper = mounts
            .split([',', ' '])
            .find_map(|o| o.strip_prefix("upperdir="))
            .ok_or_else(|| NodeError(format!("no upperdir in {mounts:?}")))?;
        Ok(regular_files(Path::new(upper.trim())))
    }
}

impl Target for CtrContainer {
    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// `ctr task exec`: the container's env, user and working directory, as `runc exec` has.
    async fn exec(&self, command: &[String], timeout: Duration) -> bool {
        let exec_id = format!("probe-{}", self.execs.fetch_add(1, Ordering::Relaxed));
        let mut cmd = tokio::process::Command::from(ctr(&self.socket));
        cmd.args(["task", "exec", "--exec-id", &exec_id, &self.id])
            .args(command);
        exits_zero_within(cmd, timeout).await
    }
}

impl Drop for CtrContainer {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = ctr(&self.socket)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        quiet(&["task", "kill", "--signal", "SIGKILL", &self.id]);
        if let Some(mut child) = self.child.take() {
            reap(&mut child);
        }
        quiet(&["task", "delete", "--force", &self.id]);
        quiet(&["containers", "delete", &self.id]);
    }
}

fn ctr(socket: &Path) -> Command {
    let mut cmd = Command::new("ctr");
    cmd.arg("--address")
        .arg(socket)
        .args(["--namespace", NAMESPACE]);
    cmd
}
