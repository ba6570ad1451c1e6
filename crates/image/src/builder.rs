//! The builder: resolve the base, make its blobs present in the target repository, stream one
//! layer per model, push config and manifest, and tag the result with the recipe hash last.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use crate::credentials::RegistryCredentials;
use crate::error::{Error, Result};
use crate::layer::{self, Ctx, Limits};
use crate::manifest::{
    self, BuiltLayer, DOCKER_FOREIGN_GZIP, DOCKER_FOREIGN_TAR, DOCKER_MANIFEST_LIST, LayerDone,
    OCI_INDEX,
};
use crate::progress::{Phase, Progress, ProgressSink};
use crate::recipe::{LayerContent, LayerSpec, Recipe, model_index_tag};
use crate::reference::ImageReference;
use crate::registry::{ByteStream, Mount, OP_STREAM_PATCH, RegistryClient, Scope, response_stream};
use crate::source::{Ranged, SourceFetcher, SourcePolicy, display_url};
use crate::{ANNOTATION_MODEL_SHA256, DOCKER_MANIFEST_V2};

/// How blobs are uploaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UploadMode {
    /// One streaming PATCH per blob; if a registry refuses it, switch that registry to chunked
    /// PATCHes and retry the blob once.
    #[default]
    Auto,
    /// Always one streaming PATCH (chunked transfer encoding) per blob.
    Streaming,
    /// Always PATCHes of 8 MiB with `Content-Range`.
    Chunked,
}

/// Builder configuration.
#[derive(Clone)]
pub struct BuilderOptions {
    /// `HOST:PORT` registries reached over plain http.
    pub insecure_registries: Vec<String>,
    /// Which model sources are acceptable.
    pub source_policy: SourcePolicy,
    /// Credentials per registry host (target and base registries).
    pub registry_credentials: RegistryCredentials,
    /// Receives progress reports.
    pub progress: Option<Arc<dyn ProgressSink>>,
    /// Upload strategy.
    pub upload_mode: UploadMode,
    /// Largest accepted download, in bytes (default 64 GiB).
    pub max_source_bytes: u64,
    /// Largest accepted total of unpacked archive contents, in bytes (default 8 GiB).
    pub max_unpacked_bytes: u64,
    /// Ranged requests in flight per model download, when the source takes ranges (default 8;
    /// 1: one plain GET). One slow connection then does not hold a build back.
    pub download_connections: usize,
    /// Bytes per ranged request (default 1 MiB).
    pub download_segment_bytes: u64,
    /// Bytes of ranges in memory at once (downloading, waiting for their turn, or in the layer
    /// pipeline), across all concurrent layers (default 24 MiB: room for 3 layers at 8
    /// connections each): the bound that keeps the builder's memory flat.
    pub download_buffer_bytes: u64,
    /// Model layers of one image built at once (default 3).
    pub layer_concurrency: usize,
}

impl Default for BuilderOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            source_policy: SourcePolicy::default(),
            registry_credentials: RegistryCredentials::default(),
            progress: None,
            upload_mode: UploadMode::Auto,
            max_source_bytes: 64 << 30,
            max_unpacked_bytes: 8 << 30,
            download_connections: 8,
            download_segment_bytes: 1 << 20,
            download_buffer_bytes: 24 << 20,
            layer_concurrency: 3,
        }
    }
}

impl fmt::Debug for BuilderOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuilderOptions")
            .field("insecure_registries", &self.insecure_registries)
            .field("source_policy", &self.source_policy)
            .field("registry_credentials", &self.registry_credentials)
            .field("progress", &self.progress.is_some())
            .field("upload_mode", &self.upload_mode)
            .field("max_source_bytes", &self.max_source_bytes)
            .field("max_unpacked_bytes", &self.max_unpacked_bytes)
            .field("download_connections", &self.download_connections)
            .field("download_segment_bytes", &self.download_segment_bytes)
            .field("download_buffer_bytes", &self.download_buffer_bytes)
            .field("layer_concurrency", &self.layer_concurrency)
            .finish()
    }
}

/// A pushed image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    /// `host/repo@sha256:…`, what a deployment should pull.
    pub reference: String,
    /// Manifest digest.
    pub digest: String,
    /// Recipe tag (`r-…`).
    pub tag: String,
    /// Full recipe hash.
    pub recipe_hash: String,
    /// The appended (model) layers, in order.
    pub layers: Vec<BuiltLayer>,
    /// Bytes sent to the target registry (blobs and manifests).
    pub bytes_uploaded: u64,
    /// Blob bytes received (model sources and base blobs copied from another registry).
    pub bytes_downloaded: u64,
}

/// Daemonless image builder. Cheap to share behind an `Arc`; caches registry tokens.
pub struct Builder {
    opts: BuilderOptions,
    fetcher: SourceFetcher,
    registries: Mutex<HashMap<String, Arc<RegistryClient>>>,
    chunked_hosts: Mutex<HashSet<String>>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// A resolved base image (platform manifest).
struct Base {
    reference: ImageReference,
    /// Digest the reference resolves to (index digest for multi-platform bases).
    digest: String,
    config_digest: String,
    layers: Vec<Value>,
}

#[derive(Default)]
struct Counters {
    uploaded: u64,
    downloaded: u64,
}

impl Builder {
    /// Creates a builder.
    pub fn new(opts: BuilderOptions) -> Result<Self> {
        let fetcher = SourceFetcher::new(
            opts.source_policy,
            Ranged {
                connections: opts.download_connections.max(1),
                segment: opts.download_segment_bytes,
                budget: opts.download_buffer_bytes,
            },
        )?;
        Ok(Self {
            opts,
            fetcher,
            registries: Mutex::new(HashMap::new()),
            chunked_hosts: Mutex::new(HashSet::new()),
        })
    }

    pub(crate) fn registry(&self, host: &str) -> Result<Arc<RegistryClient>> {
        let mut map = self.registries.lock().expect("registry map lock");
        if let Some(r) = map.get(host) {
            return Ok(r.clone());
        }
        let insecure = self
            .opts
            .insecure_registries
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host));
        let client = Arc::new(RegistryClient::new(
            host,
            insecure,
            self.opts.registry_credentials.get(host).cloned(),
        )?);
        map.insert(host.to_owned(), client.clone());
        Ok(client)
    }

    fn report(&self, layer: &str, phase: Phase, done: u64, total: Option<u64>) {
        if let Some(p) = &self.opts.progress {
            p.on_progress(&Progress {
                layer: layer.to_owned(),
                phase,
                bytes_done: done,
                bytes_total: total,
            });
        }
    }

    /// Digest the base reference resolves to, without downloading anything when it is pinned.
    async fn base_digest(&self, base: &ImageReference) -> Result<String> {
        if let Some(d) = &base.digest {
            return Ok(d.clone());
        }
        let reg = self.registry(&base.registry)?;
        reg.head_manifest(
            &base.repository,
            base.manifest_ref(),
            &Scope::pull(&base.repository),
        )
        .await?
        .ok_or_else(|| Error::BaseImageNotFound {
            reference: base.to_string(),
        })
    }

    /// Looks for an image already built from this recipe: resolves the base digest, computes the
    /// recipe hash and checks the recipe tag. Transfers no blobs.
    pub async fn find_existing(
        &self,
        recipe: &Recipe,
        target_repository: &str,
    ) -> Result<Option<BuiltImage>> {
        recipe.validate()?;
        let target = ImageReference::parse_repository(target_repository)?;
        let base = ImageReference::parse(&recipe.base_image)?;
        let base_digest = self.base_digest(&base).await?;
        let hash = recipe.hash(&base_digest);
        self.existing_for_hash(&target, &hash).await
    }

    async fn existing_for_hash(
        &self,
        target: &ImageReference,
        hash: &str,
    ) -> Result<Option<BuiltImage>> {
        let tag = Recipe::tag_for_hash(hash);
        let reg = self.registry(&target.registry)?;
        if reg
            .head_manifest(&target.repository, &tag, &Scope::pull(&target.repository))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let Some((body, _, digest)) = reg.get_manifest(&target.repository, &tag).await? else {
            return Ok(None);
        };
        let manifest: Value =
            serde_json::from_slice(&body).map_err(|e| Error::RegistryProtocol {
                host: target.registry.clone(),
                operation: format!("read manifest {tag}"),
                status: 200,
                detail: e.to_string(),
            })?;
        let layers = manifest::model_layers(&manifest);
        Ok(Some(BuiltImage {
            reference: format!("{}@{digest}", target.repository_name()),
            digest,
            tag,
            recipe_hash: hash.to_owned(),
            layers,
            bytes_uploaded: 0,
            bytes_downloaded: 0,
        }))
    }

    /// Builds and pushes the image for `recipe` into `target_repository` (`host[:port]/path`),
    /// or returns the existing one when the recipe tag is already there. The recipe tag is
    /// written last, only after every blob and the manifest are complete.
    pub async fn build(&self, recipe: &Recipe, target_repository: &str) -> Result<BuiltImage> {
        recipe.validate()?;
        let target = ImageReference::parse_repository(target_repository)?;
        let base_ref = ImageReference::parse(&recipe.base_image)?;
        self.report("base", Phase::Resolving, 0, None);
        let base = self.resolve_base(base_ref).await?;
        let hash = recipe.hash(&base.digest);
        if let Some(existing) = self.existing_for_hash(&target, &hash).await? {
            return Ok(existing);
        }
        let tag = Recipe::tag_for_hash(&hash);
        let mut counters = Counters::default();
        let treg = self.registry(&target.registry)?;

        let mut base_layers = Vec::with_capacity(base.layers.len());
        for l in &base.layers {
            base_layers.push(
                self.copy_base_layer(&base, &target, l, &mut counters)
                    .await?,
            );
        }
        let base_reg = self.registry(&base.reference.registry)?;
        let config_bytes = base_reg
            .get_blob_bytes(&base.reference.repository, &base.config_digest)
            .await?;
        let mut config: Value =
            serde_json::from_slice(&config_bytes).map_err(|e| Error::RegistryProtocol {
                host: base.reference.registry.clone(),
                operation: "read base image config".into(),
                status: 200,
                detail: e.to_string(),
            })?;
        let arch = config["architecture"].as_str().unwrap_or("amd64");
        let os = config["os"].as_str().unwrap_or("linux");
        if arch != "amd64" || os != "linux" {
            return Err(Error::NoLinuxAmd64 {
                reference: base.reference.to_string(),
                platforms: format!("{os}/{arch}"),
            });
        }

        // Several new model layers at once (bounded), each its own download and upload, kept
        // in recipe order; the first failure stops the others (an abandoned upload session is
        // harmless: the registry purges it).
        // (The futures are made up front by an async fn, not by a closure over `&LayerSpec`,
        // so the build future stays `Send` for any caller that spawns it.)
        let layers: Vec<_> = recipe
            .layers
            .iter()
            .map(|spec| self.counted_layer(spec, &target))
            .collect();
        let results: Vec<(LayerDone, Counters)> = futures::stream::iter(layers)
            .buffered(self.opts.layer_concurrency.max(1))
            .try_collect()
            .await?;
        let mut done = Vec::with_capacity(results.len());
        for (d, c) in results {
            counters.uploaded += c.uploaded;
            counters.downloaded += c.downloaded;
            done.push(d);
        }

        manifest::edit_config(&mut config, recipe, &hash, &base.digest, &done);
        let config_bytes = Bytes::from(serde_json::to_vec(&config).expect("config serializes"));
        let config_size = config_bytes.len() as u64;
        let (config_digest, sent) = treg
            .push_blob_bytes(&target.repository, config_bytes)
            .await?;
        counters.uploaded += sent;

        let mut layers = base_layers;
        for d in &done {
            layers.push(manifest::model_descriptor(d));
        }
        let manifest = manifest::image_manifest(config_size, &config_digest, layers);
        let manifest_bytes =
            Bytes::from(serde_json::to_vec(&manifest).expect("manifest serializes"));
        counters.uploaded += manifest_bytes.len() as u64;
        let digest = treg
            .put_manifest(&target.repository, &tag, DOCKER_MANIFEST_V2, manifest_bytes)
            .await?;
        self.report("image", Phase::Done, 0, None);
        Ok(BuiltImage {
            reference: format!("{}@{digest}", target.repository_name()),
            digest,
            tag,
            recipe_hash: hash,
            layers: done.into_iter().map(|d| d.built).collect(),
            bytes_uploaded: counters.uploaded,
            bytes_downloaded: counters.downloaded,
        })
    }

    async fn resolve_base(&self, reference: ImageReference) -> Result<Base> {
        let reg = self.registry(&reference.registry)?;
        let not_found = || Error::BaseImageNotFound {
            reference: reference.to_string(),
        };
        let (body, media_type, digest) = reg
            .get_manifest(&reference.repository, reference.manifest_ref())
            .await?
            .ok_or_else(not_found)?;
        if let Some(pinned) = &reference.digest
            && pinned != &digest
        {
            return Err(Error::RegistryProtocol {
                host: reference.registry.clone(),
                operation: format!("get manifest {pinned}"),
                status: 200,
                detail: format!("content has digest {digest}"),
            });
        }
        let parse = |b: &[u8]| -> Result<Value> {
            serde_json::from_slice(b).map_err(|e| Error::RegistryProtocol {
                host: reference.registry.clone(),
                operation: "read base manifest".into(),
                status: 200,
                detail: e.to_string(),
            })
        };
        let mut manifest = parse(&body)?;
        let kind = manifest["mediaType"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(media_type);
        if kind == DOCKER_MANIFEST_LIST || kind == OCI_INDEX || manifest["manifests"].is_array() {
            let entries = manifest["manifests"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let chosen = entries.iter().find(|m| {
                m["platform"]["os"] == "linux"
                    && m["platform"]["architecture"] == "amd64"
                    && m["platform"]["variant"].as_str().is_none_or(|v| v == "v1")
            });
            let Some(chosen) = chosen else {
                let platforms = entries
                    .iter()
                    .map(|m| {
                        format!(
                            "{}/{}",
                            m["platform"]["os"].as_str().unwrap_or("?"),
                            m["platform"]["architecture"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Error::NoLinuxAmd64 {
                    reference: reference.to_string(),
                    platforms,
                });
            };
            let child = chosen["digest"].as_str().unwrap_or("").to_owned();
            let (body, _, _) = reg
                .get_manifest(&reference.repository, &child)
                .await?
                .ok_or_else(not_found)?;
            manifest = parse(&body)?;
        }
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::RegistryProtocol {
                host: reference.registry.clone(),
                operation: "read base manifest".into(),
                status: 200,
                detail: format!("manifest of media type {kind} has no config"),
            })?;
        let mut layers = Vec::new();
        for l in manifest["layers"].as_array().cloned().unwrap_or_default() {
            layers.push(manifest::convert_layer(&reference, l)?);
        }
        Ok(Base {
            reference,
            digest,
            config_digest,
            layers,
        })
    }

    fn chunked(&self, host: &str) -> bool {
        self.opts.upload_mode == UploadMode::Chunked
            || self.chunked_hosts.lock().expect("lock").contains(host)
    }

    fn may_fall_back(&self, host: &str, e: &Error) -> bool {
        let refused = matches!(e, Error::RegistryProtocol { operation, status, .. }
            if operation == OP_STREAM_PATCH && matches!(status, 400 | 405 | 411 | 413 | 416 | 501));
        if refused && self.opts.upload_mode == UploadMode::Auto && !self.chunked(host) {
            tracing::warn!(
                registry = host,
                "registry refused a streaming PATCH; switching to chunked uploads"
            );
            self.chunked_hosts
                .lock()
                .expect("lock")
                .insert(host.to_owned());
            return true;
        }
        false
    }

    async fn upload_body(
        &self,
        reg: &RegistryClient,
        repo: &str,
        session: Url,
        body: ByteStream,
    ) -> Result<Url> {
        if self.chunked(reg.host()) {
            reg.upload_chunked(repo, session, body).await
        } else {
            reg.upload_streaming(repo, session, body).await
        }
    }

    async fn copy_base_layer(
        &self,
        base: &Base,
        target: &ImageReference,
        desc: &Value,
        c: &mut Counters,
    ) -> Result<Value> {
        let digest = desc["digest"].as_str().unwrap_or("").to_owned();
        let size = desc["size"].as_u64().unwrap_or(0);
        let media_type = desc["mediaType"].as_str().unwrap_or("");
        let label = format!("base:{}", &digest[..digest.len().min(19)]);
        if media_type == DOCKER_FOREIGN_GZIP || media_type == DOCKER_FOREIGN_TAR {
            return Ok(desc.clone());
        }
        let treg = self.registry(&target.registry)?;
        if treg
            .blob_size(
                &target.repository,
                &digest,
                &Scope::push(&target.repository),
            )
            .await?
            .is_some()
        {
            self.report(&label, Phase::Reused, size, Some(size));
            return Ok(desc.clone());
        }
        let same_registry = base.reference.registry == target.registry;
        for attempt in 0..2 {
            let session = if same_registry && attempt == 0 {
                match treg
                    .mount(&target.repository, &digest, &base.reference.repository)
                    .await?
                {
                    Mount::Mounted => {
                        self.report(&label, Phase::Reused, size, Some(size));
                        return Ok(desc.clone());
                    }
                    Mount::Session(url) => url,
                }
            } else {
                treg.start_upload(&target.repository).await?
            };
            self.report(&label, Phase::Uploading, 0, Some(size));
            match self.copy_blob(base, target, &digest, session).await {
                Ok(n) => {
                    c.uploaded += n;
                    c.downloaded += n;
                    self.report(&label, Phase::Done, n, Some(size));
                    return Ok(desc.clone());
                }
                Err(e) if attempt == 0 && self.may_fall_back(treg.host(), &e) => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Streams a blob from the base repository into an upload session; closes the session on error.
    async fn copy_blob(
        &self,
        base: &Base,
        target: &ImageReference,
        digest: &str,
        session: Url,
    ) -> Result<u64> {
        let treg = self.registry(&target.registry)?;
        let breg = self.registry(&base.reference.registry)?;
        let resp = match breg.get_blob(&base.reference.repository, digest).await {
            Ok(r) => r,
            Err(e) => {
                treg.cancel_upload(&target.repository, &session).await;
                return Err(e);
            }
        };
        let state = Arc::new(Mutex::new((Sha256::new(), 0u64)));
        let st = state.clone();
        let body = response_stream(resp)
            .inspect(move |item| {
                if let Ok(b) = item {
                    let mut s = st.lock().expect("hash lock");
                    s.0.update(b);
                    s.1 += b.len() as u64;
                }
            })
            .boxed();
        let loc = match self
            .upload_body(&treg, &target.repository, session.clone(), body)
            .await
        {
            Ok(l) => l,
            Err(e) => {
                treg.cancel_upload(&target.repository, &session).await;
                return Err(e);
            }
        };
        let (h, n) = std::mem::replace(&mut *state.lock().expect("hash lock"), (Sha256::new(), 0));
        let got = format!("sha256:{}", hex::encode(h.finalize()));
        if got != digest {
            treg.cancel_upload(&target.repository, &loc).await;
            return Err(Error::RegistryProtocol {
                host: base.reference.registry.clone(),
                operation: format!("get blob {digest}"),
                status: 200,
                detail: format!("content has digest {got}"),
            });
        }
        treg.finish_upload(&target.repository, &loc, digest, None)
            .await?;
        Ok(n)
    }

    /// [`Builder::model_layer`] with its own byte counters.
    async fn counted_layer(
        &self,
        spec: &LayerSpec,
        target: &ImageReference,
    ) -> Result<(LayerDone, Counters)> {
        let mut c = Counters::default();
        let done = self.model_layer(spec, target, &mut c).await?;
        Ok((done, c))
    }

    async fn model_layer(
        &self,
        spec: &LayerSpec,
        target: &ImageReference,
        c: &mut Counters,
    ) -> Result<LayerDone> {
        let path = match &spec.content {
            LayerContent::File { path_in_image, .. } => path_in_image.clone(),
            LayerContent::Archive { dest_dir, .. } => dest_dir.clone(),
        };
        self.report(&spec.name, Phase::Resolving, 0, None);
        if let Some(sha) = &spec.source.sha256
            && let Some((digest, size, diff_id, media_type)) =
                self.lookup_index(target, sha, &spec.content).await?
        {
            self.report(&spec.name, Phase::Reused, size, Some(size));
            return Ok(LayerDone {
                built: BuiltLayer {
                    name: spec.name.clone(),
                    digest,
                    size,
                    file_sha256: sha.to_ascii_lowercase(),
                    reused: true,
                },
                diff_id,
                path,
                media_type,
            });
        }
        let treg = self.registry(&target.registry)?;
        let mut attempt = 0;
        let done = loop {
            match self.upload_model(spec, target, &path, c).await {
                Err(e) if attempt == 0 && self.may_fall_back(treg.host(), &e) => attempt += 1,
                other => break other?,
            }
        };
        if let Some(sha) = &spec.source.sha256 {
            self.push_index(target, sha, &spec.content, &done, c)
                .await?;
        }
        self.report(
            &spec.name,
            Phase::Done,
            done.built.size,
            Some(done.built.size),
        );
        Ok(done)
    }

    async fn upload_model(
        &self,
        spec: &LayerSpec,
        target: &ImageReference,
        path: &str,
        c: &mut Counters,
    ) -> Result<LayerDone> {
        let treg = self.registry(&target.registry)?;
        let download = self.fetcher.open(&spec.name, &spec.source).await?;
        let session = treg.start_upload(&target.repository).await?;
        let ctx = Ctx {
            name: spec.name.clone(),
            url: display_url(&spec.source.url),
        };
        let limits = Limits {
            max_source_bytes: self.opts.max_source_bytes,
            max_unpacked_bytes: self.opts.max_unpacked_bytes,
        };
        let (body, pipeline) = match layer::start(
            ctx.clone(),
            download,
            spec.content.clone(),
            limits,
            self.opts.progress.clone(),
        ) {
            Ok(v) => v,
            Err(e) => {
                treg.cancel_upload(&target.repository, &session).await;
                return Err(e);
            }
        };
        let upload = self
            .upload_body(&treg, &target.repository, session.clone(), body)
            .await;
        let (loc, out) = match pipeline.finish(upload).await {
            Ok(v) => v,
            Err(e) => {
                treg.cancel_upload(&target.repository, &session).await;
                return Err(e);
            }
        };
        c.downloaded += out.source_bytes;
        if let Some(expected) = &spec.source.sha256
            && !expected.eq_ignore_ascii_case(&out.file_sha256)
        {
            treg.cancel_upload(&target.repository, &loc).await;
            return Err(Error::Sha256Mismatch {
                name: spec.name.clone(),
                url: ctx.url,
                expected: expected.to_ascii_lowercase(),
                got: out.file_sha256,
            });
        }
        treg.finish_upload(&target.repository, &loc, &out.digest, None)
            .await?;
        c.uploaded += out.size;
        Ok(LayerDone {
            // An uncompressed layer is its own diff.
            diff_id: out.digest.clone(),
            built: BuiltLayer {
                name: spec.name.clone(),
                digest: out.digest,
                size: out.size,
                file_sha256: out.file_sha256,
                reused: false,
            },
            path: path.to_owned(),
            media_type: crate::DOCKER_LAYER_TAR,
        })
    }

    /// Finds a previously pushed layer for a pinned model via its `m-…` index tag.
    async fn lookup_index(
        &self,
        target: &ImageReference,
        sha: &str,
        content: &LayerContent,
    ) -> Result<Option<(String, u64, String, &'static str)>> {
        let treg = self.registry(&target.registry)?;
        let tag = model_index_tag(sha, content);
        let Some((body, _, _)) = treg.get_manifest(&target.repository, &tag).await? else {
            return Ok(None);
        };
        let Ok(m) = serde_json::from_slice::<Value>(&body) else {
            return Ok(None);
        };
        let (Some(digest), Some(size), Some(config), Some(media_type)) = (
            m["layers"][0]["digest"].as_str(),
            m["layers"][0]["size"].as_u64(),
            m["config"]["digest"].as_str(),
            m["layers"][0]["mediaType"]
                .as_str()
                .and_then(manifest::model_layer_media_type),
        ) else {
            return Ok(None);
        };
        if m["layers"][0]["annotations"][ANNOTATION_MODEL_SHA256].as_str()
            != Some(&sha.to_ascii_lowercase())
        {
            return Ok(None);
        }
        let cfg: Value = match treg.get_blob_bytes(&target.repository, config).await {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            Err(_) => return Ok(None),
        };
        let Some(diff_id) = cfg["rootfs"]["diff_ids"][0].as_str() else {
            return Ok(None);
        };
        if treg
            .blob_size(&target.repository, digest, &Scope::push(&target.repository))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        Ok(Some((
            digest.to_owned(),
            size,
            diff_id.to_owned(),
            media_type,
        )))
    }

    /// Pushes the `m-…` index tag: a one-layer manifest pointing at the model layer.
    async fn push_index(
        &self,
        target: &ImageReference,
        sha: &str,
        content: &LayerContent,
        done: &LayerDone,
        c: &mut Counters,
    ) -> Result<()> {
        let treg = self.registry(&target.registry)?;
        let cfg = manifest::index_config(sha, done);
        let cfg_bytes = Bytes::from(serde_json::to_vec(&cfg).expect("config serializes"));
        let cfg_size = cfg_bytes.len() as u64;
        let (cfg_digest, sent) = treg.push_blob_bytes(&target.repository, cfg_bytes).await?;
        c.uploaded += sent;
        let manifest = manifest::image_manifest(
            cfg_size,
            &cfg_digest,
            vec![manifest::model_descriptor(done)],
        );
        let body = Bytes::from(serde_json::to_vec(&manifest).expect("manifest serializes"));
        c.uploaded += body.len() as u64;
        treg.put_manifest(
            &target.repository,
            &model_index_tag(sha, content),
            DOCKER_MANIFEST_V2,
            body,
        )
        .await?;
        Ok(())
    }
}
