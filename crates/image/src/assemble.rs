//! Images assembled from local files rather than from a base image: the operator's own image
//! (`make image`). Every byte is a function of the files and the settings: entries are sorted,
//! times are the epoch, owners and modes are given, gzip carries no name or time, the config has
//! no creation time. The same inputs give the same manifest digest on any machine.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::builder::Builder;
use crate::error::{Error, Result};
use crate::manifest::image_manifest;
use crate::reference::ImageReference;
use crate::{DOCKER_LAYER_GZIP, DOCKER_MANIFEST_V2};

/// One entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path in the image, without a leading `/` (`usr/local/bin/salad-sd`).
    pub path: String,
    /// Permission bits (`0o755`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// A directory, or a file's bytes.
    pub content: EntryContent,
}

/// What an [`Entry`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryContent {
    /// A directory.
    Dir,
    /// A regular file with these bytes.
    File(Bytes),
}

impl Entry {
    /// A root-owned directory.
    pub fn dir(path: &str, mode: u32) -> Self {
        Self::owned(path, mode, 0, EntryContent::Dir)
    }

    /// A root-owned file.
    pub fn file(path: &str, mode: u32, data: impl Into<Bytes>) -> Self {
        Self::owned(path, mode, 0, EntryContent::File(data.into()))
    }

    /// An entry owned by `id:id`.
    pub fn owned(path: &str, mode: u32, id: u64, content: EntryContent) -> Self {
        Self {
            path: path.trim_matches('/').to_string(),
            mode,
            uid: id,
            gid: id,
            content,
        }
    }
}

/// The image config's runtime part (what `docker inspect` shows under `Config`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSettings {
    /// `uid:gid` the process runs as.
    pub user: String,
    /// Entrypoint argv.
    pub entrypoint: Vec<String>,
    /// Default arguments.
    pub cmd: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// `8080/tcp`, ….
    pub exposed_ports: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// Labels (`org.opencontainers.image.version`, …).
    pub labels: BTreeMap<String, String>,
}

/// A layer as pushed: the gzip blob and what the config and manifest say about it.
#[derive(Clone, Debug)]
pub struct AssembledLayer {
    /// The `tar.gz` bytes.
    pub blob: Bytes,
    /// `sha256:` of the blob.
    pub digest: String,
    /// `sha256:` of the uncompressed tar (the config's diff id).
    pub diff_id: String,
}

/// An image ready to push: layers, config and manifest bytes, and the manifest digest.
#[derive(Clone, Debug)]
pub struct AssembledImage {
    /// Layers, bottom first.
    pub layers: Vec<AssembledLayer>,
    /// The image config JSON.
    pub config: Bytes,
    /// The Docker v2 manifest JSON.
    pub manifest: Bytes,
    /// `sha256:` of the manifest: the image's identity.
    pub digest: String,
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One deterministic `tar.gz` layer of `entries` (sorted by path; parents must be listed).
pub fn layer(entries: &[Entry]) -> Result<AssembledLayer> {
    let internal = |e: std::io::Error| Error::Internal(format!("assembling a layer: {e}"));
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    for e in sorted {
        if e.path.is_empty() || e.path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(Error::Internal(format!(
                "layer entry `{}` is not a plain relative path",
                e.path
            )));
        }
        let mut h = tar::Header::new_ustar();
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(0);
        match &e.content {
            EntryContent::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, format!("{}/", e.path), std::io::empty())
                    .map_err(internal)?;
            }
            EntryContent::File(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, &e.path, &data[..])
                    .map_err(internal)?;
            }
        }
    }
    let tar = tar.into_inner().map_err(internal)?;
    let diff_id = sha256(&tar);
    // No file name, mtime 0, OS "unknown": the gzip header depends on nothing but the level.
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).map_err(internal)?;
    let blob = Bytes::from(gz.finish().map_err(internal)?);
    Ok(AssembledLayer {
        digest: sha256(&blob),
        diff_id,
        blob,
    })
}

/// Assembles an image from `layers` (bottom first) for linux/amd64.
pub fn assemble(layers: &[Vec<Entry>], run: &RunSettings) -> Result<AssembledImage> {
    let layers = layers
        .iter()
        .map(|l| layer(l))
        .collect::<Result<Vec<_>>>()?;
    let mut config = json!({
        "User": run.user,
        "Env": run.env,
        "Entrypoint": run.entrypoint,
        "Cmd": run.cmd,
        "WorkingDir": run.working_dir,
        "Labels": run.labels,
    });
    if !run.exposed_ports.is_empty() {
        config["ExposedPorts"] = run
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect::<serde_json::Map<String, Value>>()
            .into();
    }
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>() },
    });
    let config = Bytes::from(serde_json::to_vec(&config).expect("config serializes"));
    let manifest = image_manifest(
        config.len() as u64,
        &sha256(&config),
        layers
            .iter()
            .map(|l| json!({ "mediaType": DOCKER_LAYER_GZIP, "size": l.blob.len(), "digest": l.digest }))
            .collect(),
    );
    let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("manifest serializes"));
    Ok(AssembledImage {
        layers,
        digest: sha256(&manifest),
        config,
        manifest,
    })
}

impl AssembledImage {
    /// Writes the image as an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`)
    /// into `dir`, which is created; what was there is replaced.
    pub fn write_layout(&self, dir: &Path) -> Result<()> {
        let io = |e: std::io::Error| Error::Internal(format!("writing {}: {e}", dir.display()));
        let blobs = dir.join("blobs").join("sha256");
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io)?;
        }
        std::fs::create_dir_all(&blobs).map_err(io)?;
        let put = |digest: &str, data: &[u8]| {
            std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), data).map_err(io)
        };
        for l in &self.layers {
            put(&l.digest, &l.blob)?;
        }
        put(&sha256(&self.config), &self.config)?;
        put(&self.digest, &self.manifest)?;
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{ "mediaType": DOCKER_MANIFEST_V2, "size": self.manifest.len(), "digest": self.digest }],
        });
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .map_err(io)
    }

    /// Reads an image [`AssembledImage::write_layout`] wrote, checking every digest.
    pub fn read_layout(dir: &Path) -> Result<Self> {
        let bad = |what: String| Error::Internal(format!("image layout {}: {what}", dir.display()));
        let read = |digest: &str| -> Result<Bytes> {
            let path = dir
                .join("blobs")
                .join("sha256")
                .join(digest.trim_start_matches("sha256:"));
            let data = std::fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
            if sha256(&data) != digest {
                return Err(bad(format!("blob {digest} does not match its digest")));
            }
            Ok(Bytes::from(data))
        };
        let index: Value = serde_json::from_slice(
            &std::fs::read(dir.join("index.json")).map_err(|e| bad(format!("index.json: {e}")))?,
        )
        .map_err(|e| bad(format!("index.json: {e}")))?;
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .ok_or_else(|| bad("index.json names no manifest".into()))?
            .to_string();
        let manifest = read(&digest)?;
        let m: Value =
            serde_json::from_slice(&manifest).map_err(|e| bad(format!("manifest: {e}")))?;
        let config = read(m["config"]["digest"].as_str().unwrap_or_default())?;
        let c: Value = serde_json::from_slice(&config).map_err(|e| bad(format!("config: {e}")))?;
        let layers = m["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .zip(
                c["rootfs"]["diff_ids"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            )
            .map(|(l, diff_id)| {
                let digest = l["digest"].as_str().unwrap_or_default().to_string();
                Ok(AssembledLayer {
                    blob: read(&digest)?,
                    digest,
                    diff_id: diff_id.as_str().unwrap_or_default().to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            config,
            manifest,
            digest,
        })
    }
}

impl Builder {
    /// Pushes an assembled image (blobs the repository has already are skipped) under the tag
    /// of `reference` (`host/repo:tag`). Returns `host/repo@sha256:…`.
    pub async fn push_assembled(&self, image: &AssembledImage, reference: &str) -> Result<String> {
        let target = ImageReference::parse(reference)?;
        let reg = self.registry(&target.registry)?;
        for l in &image.layers {
            reg.push_blob_bytes(&target.repository, l.blob.clone())
                .await?;
        }
        reg.push_blob_bytes(&target.repository, image.config.clone())
            .await?;
        let digest = reg
            .put_manifest(
                &target.repository,
                target.manifest_ref(),
                DOCKER_MANIFEST_V2,
                image.manifest.clone(),
            )
            .await?;
        debug_assert_eq!(digest, image.digest);
        Ok(format!("{}@{digest}", target.repository_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(binary: &'static [u8]) -> AssembledImage {
        assemble(
            &[
                vec![
                    Entry::dir("etc", 0o755),
                    Entry::file(
                        "etc/passwd",
                        0o644,
                        &b"nonroot:x:65532:65532::/:/sbin/nologin\n"[..],
                    ),
                ],
                vec![
                    Entry::dir("usr", 0o755),
                    Entry::file("usr/app", 0o755, binary),
                ],
            ],
            &RunSettings {
                user: "65532:65532".into(),
                entrypoint: vec!["/usr/app".into()],
                ..RunSettings::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn the_same_files_give_the_same_digest_and_a_changed_file_another() {
        let a = image(b"binary v1");
        let b = image(b"binary v1");
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.layers[0].digest, b.layers[0].digest);
        let c = image(b"binary v2");
        assert_ne!(a.digest, c.digest);
        assert_eq!(
            a.layers[0].digest, c.layers[0].digest,
            "the unchanged layer keeps its digest"
        );
        assert_ne!(a.layers[1].digest, c.layers[1].digest);
    }

    #[test]
    fn entries_are_sorted_owned_and_timeless() {
        let l = layer(&[
            Entry::file("b/x", 0o600, &b"x"[..]),
            Entry::owned("b", 0o700, 65532, EntryContent::Dir),
        ])
        .unwrap();
        let tar = flate2::read::GzDecoder::new(&l.blob[..]);
        let mut archive = tar::Archive::new(tar);
        let seen: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("b/".to_string(), 0o700, 65532, 0),
                ("b/x".to_string(), 0o600, 0, 0)
            ]
        );
        assert!(layer(&[Entry::file("../etc/passwd", 0o644, &b""[..])]).is_err());
    }

    #[test]
    fn a_layout_reads_back_as_written_and_a_changed_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(b"bin");
        img.write_layout(dir.path()).unwrap();
        let back = AssembledImage::read_layout(dir.path()).unwrap();
        assert_eq!(back.digest, img.digest);
        assert_eq!(back.config, img.config);
        assert_eq!(back.layers.len(), 2);
        assert_eq!(back.layers[1].diff_id, img.layers[1].diff_id);
        let blob = dir
            .path()
            .join("blobs/sha256")
            .join(img.layers[1].digest.trim_start_matches("sha256:"));
        std::fs::write(&blob, b"tampered").unwrap();
        assert!(AssembledImage::read_layout(dir.path()).is_err());
    }

    #[test]
    fn the_config_names_user_entrypoint_and_layers() {
        let img = image(b"bin");
        let config: Value = serde_json::from_slice(&img.config).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"], json!(["/usr/app"]));
        assert!(config.get("created").is_none(), "no time in the config");
        assert_eq!(
            config["rootfs"]["diff_ids"][1],
            json!(img.layers[1].diff_id)
        );
        let manifest: Value = serde_json::from_slice(&img.manifest).unwrap();
        assert_eq!(manifest["layers"][0]["digest"], json!(img.layers[0].digest));
        assert_eq!(img.digest, sha256(&img.manifest));
    }
}
