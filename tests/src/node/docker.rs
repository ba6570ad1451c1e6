//! Docker Engine (Debian's `docker.io` 20.10) as a node's puller and runtime. Its image pull is
//! moby's own distribution code, not containerd's: another resolver, another reading of the
//! manifest and layer media types, its own diff_id check against the image config, and its
//! overlay2 graph driver. `make test-runtime` holds the test node to it as to containerd: the
//! same image gives the same root filesystem, and a server runs under it too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::probes::Target;
use super::runtime::{Daemon, exits_zero_within, output, regular_files, start_daemon};
use super::tree;
use super::{NodeError, Result};

/// The Debian package's client and daemon (another `docker` may come first on `PATH`).
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";

/// Why Docker cannot be used here, if it cannot.
pub fn unavailable() -> Option<String> {
    [DOCKER, DOCKERD]
        .iter()
        .find(|p| !Path::new(p).is_file())
        .map(|p| format!("{p} is not installed (Debian package docker.io)"))
}

/// A Docker daemon of its own: data root, exec root (with the containerd it starts for itself)
/// and socket under one directory, no bridge and no iptables rules (containers use the host's
/// network). Dropping it stops the daemon and unmounts what it left mounted.
pub struct Docker {
    socket: PathBuf,
    _daemon: Daemon,
}

impl Docker {
    /// Starts dockerd under `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Result<Self> {
        let io = |what: &'static str| move |e: std::io::Error| NodeError(format!("{what}: {e}"));
        std::fs::create_dir_all(dir).map_err(io("creating Docker's directory"))?;
        let socket = dir.join("docker.sock");
        let mut daemon = Command::new(DOCKERD);
        daemon
            .arg("--data-root")
            .arg(dir.join("root"))
            // containerd's socket goes under the exec root: a short name keeps it a valid path.
            .arg("--exec-root")
            .arg(dir.join("x"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--ip-forward=false",
                "--bridge=none",
                "--storage-driver=overlay2",
                "--exec-opt=native.cgroupdriver=cgroupfs",
            ]);
        let daemon = start_daemon("dockerd", daemon, dir, Duration::from_secs(15), || {
            docker(&socket)
        })?;
        Ok(Self {
            socket,
            _daemon: daemon,
        })
    }

    fn docker(&self) -> Command {
        docker(&self.socket)
    }

    /// `docker pull` of `reference` (`127.0.0.1:port/repo@sha256:…`; Docker takes plain http
    /// from 127.0.0.0/8 on its own). Returns what it printed.
    pub fn pull(&self, reference: &str) -> Result<String> {
        output(self.docker().args(["pull", reference]), "docker pull")
    }

    /// Pulls `reference` and compares the root filesystem Docker's overlay2 driver unpacked with
    /// `ours` (the test node's unpack of the same image), path by path ([`tree`]): its layer
    /// directories, stacked read-only at `dir/docker-rootfs` as a container's lower layers are.
    /// Returns the differences (at most 20; empty when they agree).
    pub fn pull_and_compare(
        &self,
        reference: &str,
        ours: &tree::Tree,
        dir: &Path,
    ) -> Result<Vec<String>> {
        self.pull(reference)?;
        let data = inspect(&self.socket, reference, "{{json .GraphDriver.Data}}")?;
        let data: BTreeMap<String, String> = serde_json::from_str(data.trim())
            .map_err(|e| NodeError(format!("GraphDriver.Data of {reference}: {e}")))?;
        let top = data
            .get("UpperDir")
            .ok_or_else(|| NodeError(format!("no UpperDir in {data:?}")))?;
        let lower = match data.get("LowerDir") {
            Some(rest) => format!("{top}:{rest}"),
            None => top.clone(),
        };
        let target = dir.join("docker-rootfs");
        std::fs::create_dir_all(&target)
            .map_err(|e| NodeError(format!("creating {}: {e}", target.display())))?;
        output(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!("ro,lowerdir={lower}"))
                .arg(&target),
            "mounting Docker's layers",
        )?;
        let compared = tree::tree(&target).map(|theirs| tree::differences(ours, &theirs, 20));
        let _ = Command::new("umount").arg(&target).status();
        compared
    }

    /// Runs `reference` as container `name` in the host's network namespace: Docker's process
    /// from the image config (entrypoint, command, env, user, working directory), `env` added,
    /// and `args`, when given, replacing entrypoint and command (as a group's `command` does).
    pub fn run(
        &self,
        reference: &str,
        name: &str,
        env: &BTreeMap<String, String>,
        args: Option<&[String]>,
    ) -> Result<DockerContainer> {
        let mut cmd = self.docker();
        cmd.args(["run", "--detach", "--network", "host", "--name", name]);
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        let (entrypoint, rest) = match args {
            Some([first, rest @ ..]) => (Some(first), rest),
            _ => (None, &[][..]),
        };
        if let Some(entrypoint) = entrypoint {
            cmd.arg("--entrypoint").arg(entrypoint);
        }
        cmd.arg(reference).args(rest);
        output(&mut cmd, "docker run")?;
        Ok(DockerContainer {
            socket: self.socket.clone(),
            name: name.to_owned(),
        })
    }
}

/// A container run by [`Docker::run`]. Dropping it removes it.
pub struct DockerContainer {
    socket: PathBuf,
    name: String,
}

impl DockerContainer {
    /// What the container printed so far.
    pub fn logs(&self) -> String {
        docker(&self.socket)
            .args(["logs", &self.name])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Regular files in the container's writable layer (overlay2's upper directory) with their
    /// sizes, largest first: what the container wrote.
    pub fn upper_files(&self) -> Result<Vec<(String, u64)>> {
        let upper = inspect(&self.socket, &self.name, "{{.GraphDriver.Data.UpperDir}}")?;
        Ok(regular_files(Path::new(upper.trim())))
    }
}

impl Target for DockerContainer {
    fn running(&mut self) -> bool {
        inspect(&self.socket, &self.name, "{{.State.Running}}").is_ok_and(|r| r.trim() == "true")
    }

    /// `docker exec`: the container's env, user and working directory, as `runc exec` has.
    async fn exec(&self, command: &[String], timeout: Duration) -> bool {
        let mut cmd = tokio::process::Command::from(docker(&self.socket));
        cmd.args(["exec", &self.name]).args(command);
        exits_zero_within(cmd, timeout).await
    }
}

impl Drop for DockerContainer {
    fn drop(&mut self) {
        let _ = docker(&self.socket)
            .args(["rm", "--force", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn docker(socket: &Path) -> Command {
    let mut cmd = Command::new(DOCKER);
    cmd.arg("--host")
        .arg(format!("unix://{}", socket.display()));
    cmd
}

/// `docker inspect --format FORMAT WHAT`.
fn inspect(socket: &Path, what: &str, format: &str) -> Result<String> {
    output(
        docker(socket).args(["inspect", "--format", format, what]),
        "docker inspect",
    )
}
