//! Just enough of the OCI distribution API (plain http, no auth) to push a stand-in base image
//! and to pull a built image back, as a node's container runtime would.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{NodeError, Result};

const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.index.v1+json";

/// The parts of an image config a runtime uses to start the container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` as `KEY=VALUE`.
    pub env: Vec<String>,
    /// `WorkingDir` (`/` when empty).
    pub working_dir: String,
    /// `User` (root when empty).
    pub user: String,
}

impl RunConfig {
    /// Reads the `config` object of an image config blob.
    pub fn from_image_config(config: &Value) -> Self {
        let c = &config["config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            entrypoint: strings(&c["Entrypoint"]),
            cmd: strings(&c["Cmd"]),
            env: strings(&c["Env"]),
            working_dir: c["WorkingDir"].as_str().unwrap_or("").to_owned(),
            user: c["User"].as_str().unwrap_or("").to_owned(),
        }
    }
}

/// A pulled layer blob, with what the manifest and config say about it.
#[derive(Clone, Debug)]
pub struct PulledLayer {
    /// Where the blob was saved, as pulled (compressed or not).
    pub path: PathBuf,
    /// The manifest's media type for it.
    pub media_type: String,
    /// The config's `rootfs.diff_ids` entry: sha256 of the uncompressed tar.
    pub diff_id: String,
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A plain-http registry at `host:port`.
pub struct Registry {
    base: String,
    http: reqwest::Client,
}

fn http_err(what: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError(format!("registry: {what}: {e}"))
}

impl Registry {
    /// A client for `host_port`.
    pub fn new(host_port: &str) -> Self {
        Self {
            base: format!("http://{host_port}/v2"),
            http: reqwest::Client::new(),
        }
    }

    /// Uploads a blob in one request; returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: Vec<u8>) -> Result<String> {
        let d = digest(&bytes);
        let head = self
            .http
            .head(format!("{}/{repo}/blobs/{d}", self.base))
            .send()
            .await
            .map_err(|e| http_err("HEAD blob", e))?;
        if head.status().is_success() {
            return Ok(d);
        }
        let start = self
            .http
            .post(format!("{}/{repo}/blobs/uploads/", self.base))
            .send()
            .await
            .map_err(|e| http_err("start upload", e))?;
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| http_err("start upload", "no Location"))?
            .to_owned();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base.trim_end_matches("/v2"))
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{url}{sep}digest={d}"))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .map_err(|e| http_err("PUT blob", e))?;
        if !put.status().is_success() {
            return Err(http_err("PUT blob", put.status()));
        }
        Ok(d)
    }

    /// Pushes a Docker v2 image of `layers` (gzip tars with their diff ids) and `config`
    /// (the image config's `config` object) under `repo:tag`; returns the manifest digest.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layers: &[(Vec<u8>, String)],
        config: Value,
    ) -> Result<String> {
        let mut descriptors = Vec::new();
        for (blob, _) in layers {
            let size = blob.len();
            let d = self.push_blob(repo, blob.clone()).await?;
            descriptors.push(json!({
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": size, "digest": d,
            }));
        }
        let image_config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(_, id)| id).collect::<Vec<_>>()},
        });
        let config_bytes = serde_json::to_vec(&image_config).expect("json");
        let config_size = config_bytes.len();
        let config_digest = self.push_blob(repo, config_bytes).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": config_size, "digest": config_digest,
            },
            "layers": descriptors,
        });
        let body = serde_json::to_vec(&manifest).expect("json");
        let d = digest(&body);
        let put = self
            .http
            .put(format!("{}/{repo}/manifests/{tag}", self.base))
            .header(
                "content-type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| http_err("PUT manifest", e))?;
        if !put.status().is_success() {
            return Err(http_err("PUT manifest", put.status()));
        }
        Ok(d)
    }

    async fn get(&self, url: String, accept: &str) -> Result<Vec<u8>> {
        let r = self
            .http
            .get(&url)
            .header("accept", accept)
            .send()
            .await
            .map_err(|e| http_err("GET", e))?;
        if !r.status().is_success() {
            return Err(http_err(&url, r.status()));
        }
        Ok(r.bytes()
            .await
            .map_err(|e| http_err("GET body", e))?
            .to_vec())
    }

    /// Pulls `repo@reference` for linux/amd64: the run config, and the layer blobs saved
    /// under `dir`, bottom first.
    pub async fn pull(
        &self,
        repo: &str,
        reference: &str,
        dir: &Path,
    ) -> Result<(RunConfig, Vec<PulledLayer>)> {
        let mut manifest: Value = serde_json::from_slice(
            &self
                .get(
                    format!("{}/{repo}/manifests/{reference}", self.base),
                    MANIFEST_TYPES,
                )
                .await?,
        )
        .map_err(|e| http_err("manifest json", e))?;
        if let Some(list) = manifest["manifests"].as_array() {
            let amd64 = list
                .iter()
                .find(|m| m["platform"]["architecture"] == "amd64")
                .ok_or_else(|| http_err("index", "no linux/amd64 manifest"))?;
            let d = amd64["digest"].as_str().unwrap_or_default().to_owned();
            manifest = serde_json::from_slice(
                &self
                    .get(
                        format!("{}/{repo}/manifests/{d}", self.base),
                        MANIFEST_TYPES,
                    )
                    .await?,
            )
            .map_err(|e| http_err("manifest json", e))?;
        }
        let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default();
        let config: Value = serde_json::from_slice(
            &self
                .get(format!("{}/{repo}/blobs/{config_digest}", self.base), "*/*")
                .await?,
        )
        .map_err(|e| http_err("config json", e))?;
        let diff_ids = config["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut paths = Vec::new();
        for (i, layer) in manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let d = layer["digest"].as_str().unwrap_or_default();
            let bytes = self
                .get(format!("{}/{repo}/blobs/{d}", self.base), "*/*")
                .await?;
            if digest(&bytes) != d {
                return Err(http_err("layer", format!("{d} does not match its content")));
            }
            let path = dir.join(format!("layer-{i}.blob"));
            std::fs::write(&path, bytes).map_err(|e| http_err("saving layer", e))?;
            let diff_id = diff_ids
                .get(i)
                .and_then(Value::as_str)
                .ok_or_else(|| http_err("config", format!("no diff_id for layer {i}")))?;
            paths.push(PulledLayer {
                path,
                media_type: layer["mediaType"].as_str().unwrap_or_default().to_owned(),
                diff_id: diff_id.to_owned(),
            });
        }
        Ok((RunConfig::from_image_config(&config), paths))
    }
}
