//! A tiny base image pushed over plain http to a local, open registry (no auth, no retries: the
//! product's registry client lives in `salad-sd-image` and is what the tests exercise).

use std::io::{Error, ErrorKind, Result, Write};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use serde_json::json;
use sha2::{Digest, Sha256};

const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An open registry on `http://HOST:PORT`.
struct PlainRegistry {
    http: reqwest::Client,
    base: String,
}

impl PlainRegistry {
    fn new(host_port: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(Error::other)?;
        Ok(Self {
            http,
            base: format!("http://{host_port}"),
        })
    }

    async fn expect(
        what: &str,
        resp: reqwest::Response,
        ok: StatusCode,
    ) -> Result<reqwest::Response> {
        if resp.status() == ok {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        Err(Error::other(format!("{what}: HTTP {status}: {body}")))
    }

    /// Monolithic upload (POST, then PUT with the whole blob). Returns the digest.
    async fn push_blob(&self, repo: &str, data: Bytes) -> Result<String> {
        let digest = sha256_digest(&data);
        let resp = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send()
            .await
            .map_err(Error::other)?;
        let resp = Self::expect("start upload", resp, StatusCode::ACCEPTED).await?;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::other("upload session without Location"))?;
        let mut url = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location.to_owned()
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let resp = self
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(data)
            .send()
            .await
            .map_err(Error::other)?;
        Self::expect("finish upload", resp, StatusCode::CREATED).await?;
        Ok(digest)
    }

    /// PUTs a manifest under a tag or digest. Returns its digest.
    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Bytes,
    ) -> Result<String> {
        let digest = sha256_digest(&body);
        let resp = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header(CONTENT_TYPE, media_type)
            .body(body)
            .send()
            .await
            .map_err(Error::other)?;
        Self::expect("put manifest", resp, StatusCode::CREATED).await?;
        Ok(digest)
    }

    /// Tags of `repo`; none when the repository does not exist.
    async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        let resp = self
            .http
            .get(format!("{}/v2/{repo}/tags/list", self.base))
            .send()
            .await
            .map_err(Error::other)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        let resp = Self::expect("list tags", resp, StatusCode::OK).await?;
        let v: serde_json::Value = resp.json().await.map_err(Error::other)?;
        Ok(v["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect())
    }
}

struct Entry<'a> {
    path: &'a str,
    data: Option<&'a [u8]>,
    mode: u32,
    uid: u64,
}

/// `(gzip layer, diff_id)` of a small tar.
fn tiny_layer(entries: &[Entry<'_>]) -> (Bytes, String) {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.uid);
        h.set_mtime(946_684_800);
        match e.data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
                tar.append_data(&mut h, e.path, d).expect("in-memory tar");
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, e.path, std::io::empty())
                    .expect("in-memory tar");
            }
        }
    }
    let raw = tar.into_inner().expect("in-memory tar");
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&raw).expect("in-memory gzip");
    (Bytes::from(gz.finish().expect("in-memory gzip")), diff_id)
}

/// Pushes a small valid base image to a plain-http registry (`127.0.0.1:PORT`) under `repo:tag`:
/// two layers (`/etc/os-release`, `/webui/launch.sh` owned by uid 1000) and an SD.Next-like
/// config. With `oci`, pushes OCI manifests behind an OCI index listing linux/arm64 first and
/// linux/amd64 second; otherwise one Docker v2 manifest. Returns the digest the tag points to.
pub async fn push_tiny_base_image(
    registry_host_port: &str,
    repo_tag: &str,
    oci: bool,
) -> Result<String> {
    let (repo, tag) = repo_tag
        .rsplit_once(':')
        .filter(|(repo, tag)| !repo.is_empty() && !tag.is_empty() && !tag.contains('/'))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("`{repo_tag}` is not repository:tag"),
            )
        })?;
    let reg = PlainRegistry::new(registry_host_port)?;

    let (l1, d1) = tiny_layer(&[
        Entry {
            path: "etc/",
            data: None,
            mode: 0o755,
            uid: 0,
        },
        Entry {
            path: "etc/os-release",
            data: Some(b"ID=tiny\nNAME=\"Tiny base for salad-sd tests\"\n"),
            mode: 0o644,
            uid: 0,
        },
    ]);
    let (l2, d2) = tiny_layer(&[
        Entry {
            path: "webui/",
            data: None,
            mode: 0o755,
            uid: 1000,
        },
        Entry {
            path: "webui/launch.sh",
            data: Some(b"#!/bin/sh\necho launching \"$@\"\n"),
            mode: 0o755,
            uid: 1000,
        },
    ]);
    let layers = [(l1.clone(), d1.clone()), (l2.clone(), d2.clone())];
    let mut layer_descs = Vec::new();
    let layer_type = if oci {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        DOCKER_LAYER_GZIP
    };
    for (blob, _) in &layers {
        let size = blob.len();
        let digest = reg.push_blob(repo, blob.clone()).await?;
        layer_descs.push(json!({ "mediaType": layer_type, "size": size, "digest": digest }));
    }
    let config_for = |arch: &str| {
        json!({
            "architecture": arch,
            "os": "linux",
            "created": "2000-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "INSTALLDIR=/webui", "RUN_UID=1000", "DATA_DIR=/webui/data", "TZ=Etc/UTC"],
                "Entrypoint": ["/bin/bash", "-c", "${INSTALLDIR}/entrypoint.sh \"$0\" \"$@\""],
                "Cmd": ["--listen", "--no-download", "--docs"],
                "WorkingDir": "/webui",
                "StopSignal": "SIGINT",
                "Labels": { "org.opencontainers.image.title": "tiny-base" }
            },
            "rootfs": { "type": "layers", "diff_ids": [d1, d2] },
            "history": [ { "created_by": "tiny base: os-release" }, { "created_by": "tiny base: webui" } ]
        })
    };
    let (config_type, manifest_type) = if oci {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
        )
    } else {
        (DOCKER_CONFIG, DOCKER_MANIFEST_V2)
    };
    let mut manifests = Vec::new();
    for arch in if oci {
        vec!["arm64", "amd64"]
    } else {
        vec!["amd64"]
    } {
        let cfg = Bytes::from(serde_json::to_vec(&config_for(arch)).expect("json"));
        let cfg_size = cfg.len();
        let cfg_digest = reg.push_blob(repo, cfg).await?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": { "mediaType": config_type, "size": cfg_size, "digest": cfg_digest },
            "layers": layer_descs,
        });
        let body = Bytes::from(serde_json::to_vec(&manifest).expect("json"));
        manifests.push((arch, body));
    }
    if !oci {
        let (_, body) = manifests.pop().expect("one manifest");
        return reg.put_manifest(repo, tag, manifest_type, body).await;
    }
    let mut entries = Vec::new();
    for (arch, body) in manifests {
        let digest = sha256_digest(&body);
        let size = body.len();
        reg.put_manifest(repo, &digest, manifest_type, body).await?;
        entries.push(json!({
            "mediaType": manifest_type, "size": size, "digest": digest,
            "platform": { "architecture": arch, "os": "linux" }
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let body = Bytes::from(serde_json::to_vec(&index).expect("json"));
    reg.put_manifest(repo, tag, "application/vnd.oci.image.index.v1+json", body)
        .await
}

/// Pushes `data` as a blob of `repo` on a plain-http registry (`127.0.0.1:PORT`) in one upload.
/// Returns its digest.
pub async fn push_blob(registry_host_port: &str, repo: &str, data: Bytes) -> Result<String> {
    PlainRegistry::new(registry_host_port)?
        .push_blob(repo, data)
        .await
}

/// PUTs a manifest of `media_type` under `reference` (a tag or digest) of `repo` on a
/// plain-http registry (`127.0.0.1:PORT`). Returns its digest.
pub async fn put_manifest(
    registry_host_port: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: Bytes,
) -> Result<String> {
    PlainRegistry::new(registry_host_port)?
        .put_manifest(repo, reference, media_type, body)
        .await
}

/// Tags of `repo` on a plain-http registry (`127.0.0.1:PORT`), sorted.
pub async fn list_tags(registry_host_port: &str, repo: &str) -> Result<Vec<String>> {
    let reg = PlainRegistry::new(registry_host_port)?;
    let mut tags = reg.list_tags(repo).await?;
    tags.sort();
    Ok(tags)
}
