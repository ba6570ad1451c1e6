use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::io::{Error, ErrorKind, Result};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A CNCF distribution registry (`/usr/bin/docker-registry` from the Debian package
/// `docker-registry`) on 127.0.0.1 with a free port and throwaway storage. Killed on drop.
pub struct LocalRegistry {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl LocalRegistry {
    /// Starts an open registry storing its data under `dir` (use a temp dir).
    pub async fn start(dir: &Path) -> Result<Self> {
        Self::start_inner(dir, None, None).await
    }

    /// Starts an open registry whose Go runtime runs on at most `procs` OS threads at once
    /// (`GOMAXPROCS`), for benchmarks on a few cores shared with the client under test.
    pub async fn start_with_go_procs(dir: &Path, procs: usize) -> Result<Self> {
        Self::start_inner(dir, None, Some(procs)).await
    }

    /// Starts a registry that requires Basic auth; `htpasswd_line` is `user:<bcrypt hash>`.
    pub async fn start_with_htpasswd(dir: &Path, htpasswd_line: &str) -> Result<Self> {
        Self::start_inner(dir, Some(htpasswd_line), None).await
    }

    async fn start_inner(
        dir: &Path,
        htpasswd: Option<&str>,
        go_procs: Option<usize>,
    ) -> Result<Self> {
        if !Path::new(REGISTRY_BIN).exists() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{REGISTRY_BIN} not found: install Debian package docker-registry (apt-get install docker-registry)"
                ),
            ));
        }
        let io = |context: &str| {
            let context = context.to_owned();
            move |source: Error| Error::new(source.kind(), format!("{context}: {source}"))
        };
        std::fs::create_dir_all(dir.join("data")).map_err(io("creating registry storage"))?;
        let mut last_err = None;
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(io("finding a free port"))?
                .port();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: local-dev-registry-not-secret\n",
                dir.join("data").display()
            );
            if let Some(line) = htpasswd {
                let path = dir.join("htpasswd");
                std::fs::write(&path, format!("{line}\n")).map_err(io("writing htpasswd"))?;
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: local-registry\n    path: {}\n",
                    path.display()
                ));
            }
            let config_path = dir.join("config.yml");
            std::fs::write(&config_path, config).map_err(io("writing registry config"))?;
            let log = std::fs::File::create(dir.join("registry.log"))
                .map_err(io("creating registry log"))?;
            let log2 = log.try_clone().map_err(io("creating registry log"))?;
            let mut command = Command::new(REGISTRY_BIN);
            if let Some(procs) = go_procs {
                command.env("GOMAXPROCS", procs.to_string());
            }
            let child = command
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(io("starting docker-registry"))?;
            let mut reg = Self {
                child,
                port,
                dir: dir.to_owned(),
            };
            match reg.wait_ready().await {
                Ok(()) => return Ok(reg),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(Error::other)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let url = format!("http://127.0.0.1:{}/v2/", self.port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
                return Err(Error::other(format!(
                    "docker-registry exited with {status}: {}",
                    log.trim()
                )));
            }
            if let Ok(r) = client.get(&url).send().await
                && (r.status().is_success() || r.status() == reqwest::StatusCode::UNAUTHORIZED)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorKind::TimedOut,
                    "docker-registry did not answer /v2/ within 15 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `127.0.0.1:PORT`, for image references and `insecure_registries`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Process id of the registry (for CPU accounting in benchmarks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Directory holding the registry's storage, config and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
