//! Builds against a real CNCF distribution registry (`/usr/bin/docker-registry`) with models
//! served by the testkit ModelServer (crates/testkit). Every test is bounded in time and kills what it starts.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use salad_sd_image::{
    Builder, BuilderOptions, ConfigEdit, Error, ErrorCategory, LayerContent, LayerSpec, Phase,
    Progress, ProgressSink, Recipe, RegistryCredentials, Secret, Source, SourceAuth, SourcePolicy,
    UploadMode,
};
use salad_sd_testkit::{
    LocalRegistry, Misbehavior, ModelServer, ModelServerOptions, generated_sha256, list_tags,
    push_blob, push_tiny_base_image, put_manifest,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CKPT: &str = "/webui/data/models/Stable-diffusion/model.safetensors";
const GZIP_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const TAR_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const LORA: &str = "/webui/data/models/Lora/style.safetensors";

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(40), f)
        .await
        .expect("test took longer than 40 s");
}

fn options(registries: &[&LocalRegistry]) -> BuilderOptions {
    BuilderOptions {
        insecure_registries: registries.iter().map(|r| r.host_port()).collect(),
        source_policy: SourcePolicy {
            allow_private_sources: true,
            allow_file_sources: false,
        },
        ..Default::default()
    }
}

fn file_layer(name: &str, url: String, sha256: Option<String>, path: &str) -> LayerSpec {
    LayerSpec {
        name: name.into(),
        source: Source {
            url,
            sha256,
            auth: None,
        },
        content: LayerContent::File {
            path_in_image: path.into(),
            mode: 0o644,
        },
    }
}

fn recipe(base: String, layers: Vec<LayerSpec>) -> Recipe {
    let mut env = BTreeMap::new();
    env.insert("CKPT_PATH".to_owned(), CKPT.to_owned());
    env.insert("TZ".to_owned(), "Europe/Paris".to_owned());
    Recipe {
        base_image: base,
        layers,
        config: ConfigEdit {
            env,
            entrypoint: None,
            cmd: Some(vec!["--listen".into(), "--ckpt".into(), CKPT.into()]),
            labels: BTreeMap::from([("app".to_owned(), "sd".to_owned())]),
        },
    }
}

async fn get_json(url: String) -> (Value, String) {
    let resp = reqwest::Client::new()
        .get(url)
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "GET {} -> {}",
        resp.url(),
        resp.status()
    );
    let ct = resp
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    (
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
        ct,
    )
}

/// The image config a manifest names.
async fn config_of(reg: &LocalRegistry, repo: &str, manifest: &Value) -> Value {
    let digest = manifest["config"]["digest"]
        .as_str()
        .expect("a config digest");
    serde_json::from_slice(&get_blob(reg, repo, digest).await).expect("config json")
}

async fn get_blob(reg: &LocalRegistry, repo: &str, digest: &str) -> Vec<u8> {
    let body = reqwest::get(format!("{}/v2/{repo}/blobs/{digest}", reg.url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&body))),
        digest
    );
    body.to_vec()
}

struct TarEntry {
    path: String,
    uid: u64,
    gid: u64,
    mode: u32,
    kind: tar::EntryType,
    sha256: String,
}

/// The entries and diff_id of a layer blob, gzip or not.
fn tar_entries(blob: &[u8]) -> (Vec<TarEntry>, String) {
    let mut raw = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut raw)
            .unwrap();
    } else {
        raw = blob.to_vec();
    }
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    let mut ar = tar::Archive::new(&raw[..]);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let h = e.header();
        out.push(TarEntry {
            path: e.path().unwrap().display().to_string(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mode: h.mode().unwrap(),
            kind: h.entry_type(),
            sha256: hex::encode(Sha256::digest(&data)),
        });
    }
    (out, diff_id)
}

/// A registry in `dir` with the tiny base pushed as `sd/base:v1`, and the base's digest.
async fn registry_with_base(dir: &std::path::Path) -> (LocalRegistry, String) {
    let reg = LocalRegistry::start(dir).await.unwrap();
    let base_digest = push_tiny_base_image(&reg.host_port(), "sd/base:v1", false)
        .await
        .unwrap();
    (reg, base_digest)
}

/// A model server with no auth.
async fn open_model_server() -> ModelServer {
    ModelServer::start(ModelServerOptions::default())
        .await
        .unwrap()
}

async fn recipe_tags(reg: &LocalRegistry, repo: &str) -> Vec<String> {
    list_tags(&reg.host_port(), repo)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.starts_with("r-"))
        .collect()
}

fn loopback_alias() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let ip = it.next()?;
        if !ip.starts_with("127.") {
            return None;
        }
        it.find(|n| !n.contains("localhost")).map(str::to_owned)
    })
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Progress>>);

impl ProgressSink for Recorder {
    fn on_progress(&self, p: &Progress) {
        self.0.lock().unwrap().push(p.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_build_rebuild_and_one_model_changed() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (reg, base_digest) = registry_with_base(dir.path()).await;
        let models = open_model_server().await;
        models.add_generated("/ckpt", 3 << 20, 1);
        models.add_generated("/lora", 200_000, 2);
        models.add_generated("/lora2", 300_000, 3);
        let base = format!("{}/sd/base:v1", reg.host_port());
        let target = format!("{}/sd/app", reg.host_port());
        let ckpt_sha = generated_sha256(3 << 20, 1);
        let layers = vec![
            file_layer("ckpt", models.url("/ckpt"), Some(ckpt_sha.clone()), CKPT),
            file_layer(
                "lora",
                models.url("/lora"),
                Some(generated_sha256(200_000, 2)),
                LORA,
            ),
        ];
        let r1 = recipe(base.clone(), layers.clone());
        let progress = Arc::new(Recorder::default());
        let mut opts = options(&[&reg]);
        opts.progress = Some(progress.clone());
        let builder = Builder::new(opts).unwrap();

        assert!(builder.find_existing(&r1, &target).await.unwrap().is_none());
        let img = builder.build(&r1, &target).await.unwrap();
        assert_eq!(img.tag, Recipe::tag_for_hash(&r1.hash(&base_digest)));
        assert!(img.reference.starts_with(&format!("{target}@sha256:")));
        assert_eq!(img.layers.len(), 2);
        assert!(img.layers.iter().all(|l| !l.reused));
        assert_eq!(img.layers[0].file_sha256, ckpt_sha);
        assert_eq!(img.bytes_downloaded, (3 << 20) + 200_000);
        let layer_bytes: u64 = img.layers.iter().map(|l| l.size).sum();
        assert!(
            img.bytes_uploaded >= layer_bytes && img.bytes_uploaded < layer_bytes + 16_384,
            "{}",
            img.bytes_uploaded
        );
        {
            let p = progress.0.lock().unwrap();
            assert!(p.iter().any(|p| p.layer == "ckpt"
                && p.phase == Phase::Uploading
                && p.bytes_done == 3 << 20));
            assert!(
                p.iter()
                    .any(|p| p.layer == "ckpt" && p.phase == Phase::Done)
            );
        }

        // Pull back: manifest, config, layers.
        let (manifest, ct) =
            get_json(format!("{}/v2/sd/app/manifests/{}", reg.url(), img.tag)).await;
        assert_eq!(ct, "application/vnd.docker.distribution.manifest.v2+json");
        assert_eq!(
            manifest["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.docker.container.image.v1+json"
        );
        let mlayers = manifest["layers"].as_array().unwrap();
        assert_eq!(mlayers.len(), 4);
        let types: Vec<&str> = mlayers
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [GZIP_LAYER, GZIP_LAYER, TAR_LAYER, TAR_LAYER],
            "the base's layers keep their type; model layers are plain tar"
        );
        assert_eq!(
            mlayers[2]["annotations"]["dev.salad-sd.model.sha256"],
            ckpt_sha.as_str()
        );
        assert_eq!(mlayers[2]["annotations"]["dev.salad-sd.model.path"], CKPT);
        let config = config_of(&reg, "sd/app", &manifest).await;
        let env: Vec<&str> = config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            env.contains(&"TZ=Europe/Paris") && !env.contains(&"TZ=Etc/UTC"),
            "{env:?}"
        );
        assert!(env.contains(&format!("CKPT_PATH={CKPT}").as_str()));
        assert!(env.contains(&"INSTALLDIR=/webui"));
        assert_eq!(
            config["config"]["Cmd"],
            serde_json::json!(["--listen", "--ckpt", CKPT])
        );
        assert_eq!(config["config"]["Entrypoint"][0], "/bin/bash");
        assert_eq!(config["config"]["StopSignal"], "SIGINT");
        assert_eq!(config["config"]["Labels"]["app"], "sd");
        assert_eq!(
            config["config"]["Labels"]["dev.salad-sd.recipe-hash"],
            img.recipe_hash.as_str()
        );
        let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(diff_ids.len(), 4);
        assert_eq!(
            config["history"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["empty_layer"] != true)
                .count(),
            4
        );

        let blob = get_blob(&reg, "sd/app", mlayers[2]["digest"].as_str().unwrap()).await;
        let (entries, diff_id) = tar_entries(&blob);
        assert_eq!(diff_ids[2], diff_id.as_str());
        assert_eq!(
            mlayers[2]["digest"],
            diff_id.as_str(),
            "an uncompressed layer is its own diff"
        );
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "webui/",
                "webui/data/",
                "webui/data/models/",
                "webui/data/models/Stable-diffusion/",
                &CKPT[1..]
            ]
        );
        for e in &entries {
            assert_eq!((e.uid, e.gid), (1000, 1000), "{}", e.path);
        }
        assert_eq!(entries[0].mode, 0o755);
        assert_eq!(entries[0].kind, tar::EntryType::Directory);
        let file = entries.last().unwrap();
        assert_eq!((file.mode, file.kind), (0o644, tar::EntryType::Regular));
        assert_eq!(file.sha256, ckpt_sha);

        // No change: find_existing hits, build moves nothing.
        let served = models.total_bytes_served();
        let found = builder
            .find_existing(&r1, &target)
            .await
            .unwrap()
            .expect("existing image");
        assert_eq!(found.digest, img.digest);
        assert_eq!(found.layers.len(), 2);
        let again = builder.build(&r1, &target).await.unwrap();
        assert_eq!(again.digest, img.digest);
        assert_eq!((again.bytes_uploaded, again.bytes_downloaded), (0, 0));
        assert_eq!(models.total_bytes_served(), served);

        // A fresh builder (new process) reuses the ckpt through the per-model index.
        let builder = Builder::new(options(&[&reg])).unwrap();
        let mut layers2 = layers.clone();
        layers2[1] = file_layer(
            "lora",
            models.url("/lora2"),
            Some(generated_sha256(300_000, 3)),
            LORA,
        );
        let r2 = recipe(base.clone(), layers2);
        let ckpt_served = models.bytes_served("/ckpt");
        let img2 = builder.build(&r2, &target).await.unwrap();
        assert_ne!(img2.digest, img.digest);
        assert_eq!(
            models.bytes_served("/ckpt"),
            ckpt_served,
            "unchanged model must not be downloaded"
        );
        assert_eq!(models.bytes_served("/lora2"), 300_000);
        assert!(img2.layers[0].reused && !img2.layers[1].reused);
        assert_eq!(img2.layers[0].digest, img.layers[0].digest);
        assert_eq!(img2.bytes_downloaded, 300_000);
        assert!(
            img2.bytes_uploaded >= img2.layers[1].size
                && img2.bytes_uploaded < img2.layers[1].size + 16_384,
            "uploaded {} for a layer of {}",
            img2.bytes_uploaded,
            img2.layers[1].size
        );
        let tags = list_tags(&reg.host_port(), "sd/app").await.unwrap();
        assert_eq!(tags.iter().filter(|t| t.starts_with("r-")).count(), 2);
        assert_eq!(tags.iter().filter(|t| t.starts_with("m-")).count(), 3);
    })
    .await;
}

/// Earlier builds of the operator pushed model layers as gzip (stored blocks). After an upgrade, a build
/// that needs that model again takes the old layer through its index tag, gzip and all, instead
/// of downloading the model again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_model_layers_of_an_older_operator_are_reused_as_they_are() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (reg, _) = registry_with_base(dir.path()).await;
        let models = open_model_server().await;
        models.add_generated("/ckpt", 1 << 20, 4);
        models.add_generated("/lora", 100_000, 5);
        let base = format!("{}/sd/base:v1", reg.host_port());
        let target = format!("{}/sd/app", reg.host_port());
        let ckpt = file_layer(
            "ckpt",
            models.url("/ckpt"),
            Some(generated_sha256(1 << 20, 4)),
            CKPT,
        );
        let builder = Builder::new(options(&[&reg])).unwrap();
        let first = builder
            .build(&recipe(base.clone(), vec![ckpt.clone()]), &target)
            .await
            .unwrap();

        // Rewrite the ckpt's index tag as the older operator left it: the same tar, gzipped.
        let index_tag = list_tags(&reg.host_port(), "sd/app")
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.starts_with("m-"))
            .expect("the ckpt's index tag");
        let (index, _) = get_json(format!("{}/v2/sd/app/manifests/{index_tag}", reg.url())).await;
        let tar = get_blob(
            &reg,
            "sd/app",
            index["layers"][0]["digest"].as_str().unwrap(),
        )
        .await;
        let diff_id = first.layers[0].digest.clone();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let gz = gz.finish().unwrap();
        let gz_size = gz.len() as u64;
        let gz_digest = push_blob(&reg.host_port(), "sd/app", gz.into())
            .await
            .unwrap();
        let mut legacy = index.clone();
        legacy["layers"][0]["mediaType"] = GZIP_LAYER.into();
        legacy["layers"][0]["digest"] = gz_digest.clone().into();
        legacy["layers"][0]["size"] = gz_size.into();
        put_manifest(
            &reg.host_port(),
            "sd/app",
            &index_tag,
            "application/vnd.docker.distribution.manifest.v2+json",
            serde_json::to_vec(&legacy).unwrap().into(),
        )
        .await
        .unwrap();

        // A new recipe with the same ckpt and a new LoRA, by a fresh builder (the upgraded one).
        let served = models.bytes_served("/ckpt");
        let builder = Builder::new(options(&[&reg])).unwrap();
        let lora = file_layer(
            "lora",
            models.url("/lora"),
            Some(generated_sha256(100_000, 5)),
            LORA,
        );
        let img = builder
            .build(&recipe(base, vec![ckpt, lora]), &target)
            .await
            .unwrap();
        assert_eq!(
            models.bytes_served("/ckpt"),
            served,
            "the ckpt was downloaded again"
        );
        assert!(img.layers[0].reused && !img.layers[1].reused);
        assert_eq!(img.layers[0].digest, gz_digest);
        let (manifest, _) =
            get_json(format!("{}/v2/sd/app/manifests/{}", reg.url(), img.tag)).await;
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(
            (
                layers[2]["mediaType"].as_str(),
                layers[2]["digest"].as_str()
            ),
            (Some(GZIP_LAYER), Some(gz_digest.as_str())),
            "the reused layer keeps the type it was pushed with"
        );
        assert_eq!(layers[3]["mediaType"], TAR_LAYER);
        let config = config_of(&reg, "sd/app", &manifest).await;
        assert_eq!(config["rootfs"]["diff_ids"][2], diff_id.as_str());
        assert_eq!(config["rootfs"]["diff_ids"][3], layers[3]["digest"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_on_other_registry_is_copied_and_oci_base_is_converted() {
    bounded(async {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let src = LocalRegistry::start(d1.path()).await.unwrap();
        let dst = LocalRegistry::start(d2.path()).await.unwrap();
        push_tiny_base_image(&src.host_port(), "base/oci:v1", true)
            .await
            .unwrap();
        let models = open_model_server().await;
        models.add_generated("/m", 100_000, 9);
        let builder = Builder::new(options(&[&src, &dst])).unwrap();
        let r = recipe(
            format!("{}/base/oci:v1", src.host_port()),
            vec![file_layer("m", models.url("/m"), None, CKPT)],
        );
        let target = format!("{}/apps/sd", dst.host_port());
        let img = builder.build(&r, &target).await.unwrap();
        let (manifest, _) =
            get_json(format!("{}/v2/apps/sd/manifests/{}", dst.url(), img.tag)).await;
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        let mut base_bytes = 0;
        for (i, l) in layers.iter().enumerate() {
            let converted = if i < 2 { GZIP_LAYER } else { TAR_LAYER };
            assert_eq!(l["mediaType"], converted);
            get_blob(&dst, "apps/sd", l["digest"].as_str().unwrap()).await;
        }
        for l in &layers[..2] {
            base_bytes += l["size"].as_u64().unwrap();
        }
        assert_eq!(img.bytes_downloaded, base_bytes + 100_000);
        let config = config_of(&dst, "apps/sd", &manifest).await;
        assert_eq!(
            config["architecture"], "amd64",
            "linux/amd64 must be picked from the OCI index"
        );
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
        // Unpinned: no index tag.
        assert!(
            list_tags(&dst.host_port(), "apps/sd")
                .await
                .unwrap()
                .iter()
                .all(|t| !t.starts_with("m-"))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sources_fail_cleanly_and_leave_no_recipe_tag() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (reg, _) = registry_with_base(dir.path()).await;
        let models = open_model_server().await;
        models.add_generated("/good", 50_000, 1);
        for p in ["/missing", "/html", "/trunc", "/nolen"] {
            models.add_generated(p, 2 << 20, 5);
        }
        models.set_misbehavior("/missing", Some(Misbehavior::NotFound));
        models.set_misbehavior("/html", Some(Misbehavior::Html));
        models.set_misbehavior("/trunc", Some(Misbehavior::Truncate { after: 1 << 20 }));
        models.set_misbehavior("/nolen", Some(Misbehavior::NoContentLength));
        let base = format!("{}/sd/base:v1", reg.host_port());
        let target = format!("{}/sd/bad", reg.host_port());
        let good = file_layer("good", models.url("/good"), None, LORA);
        let builder = Builder::new(options(&[&reg])).unwrap();
        let cases: Vec<(LayerSpec, ErrorCategory, bool)> = vec![
            (
                file_layer("m", models.url("/missing"), None, CKPT),
                ErrorCategory::Source,
                true,
            ),
            (
                file_layer("m", models.url("/good"), Some("0".repeat(64)), CKPT),
                ErrorCategory::Integrity,
                true,
            ),
            (
                file_layer("m", models.url("/html"), None, CKPT),
                ErrorCategory::Source,
                true,
            ),
            (
                file_layer("m", models.url("/trunc"), None, CKPT),
                ErrorCategory::Source,
                false,
            ),
            (
                file_layer("m", models.url("/nolen"), None, CKPT),
                ErrorCategory::Source,
                true,
            ),
        ];
        for (layer, category, terminal) in cases {
            let r = recipe(base.clone(), vec![good.clone(), layer.clone()]);
            let err = builder.build(&r, &target).await.unwrap_err();
            assert_eq!(err.category(), category, "{}: {err}", layer.source.url);
            assert_eq!(err.is_terminal(), terminal, "{err}");
            match (&err, layer.source.url.rsplit('/').next().unwrap()) {
                (Error::SourceNotFound { status: 404, .. }, "missing")
                | (Error::Sha256Mismatch { .. }, "good")
                | (Error::HtmlInsteadOfFile { .. }, "html")
                | (
                    Error::Truncated {
                        expected: 2097152, ..
                    },
                    "trunc",
                )
                | (Error::MissingContentLength { .. }, "nolen") => {}
                other => panic!("unexpected error for {other:?}"),
            }
            assert!(
                recipe_tags(&reg, "sd/bad").await.is_empty(),
                "no recipe tag after {err}"
            );
        }
        // The sha256 mismatch names both hashes.
        let r = recipe(
            base.clone(),
            vec![file_layer(
                "m",
                models.url("/good"),
                Some("0".repeat(64)),
                CKPT,
            )],
        );
        let msg = builder.build(&r, &target).await.unwrap_err().to_string();
        assert!(
            msg.contains(&"0".repeat(64)) && msg.contains(&generated_sha256(50_000, 1)),
            "{msg}"
        );

        // Source policy of operator mode.
        let before = models.requests().len();
        let strict = Builder::new(BuilderOptions {
            insecure_registries: vec![reg.host_port()],
            ..Default::default()
        })
        .unwrap();
        let https_loopback = format!("https://127.0.0.1:{}/good", models.addr().port());
        let mut urls = vec![
            models.url("/good"),
            https_loopback,
            "file:///etc/passwd".to_owned(),
        ];
        // A DNS name (not "localhost") that resolves to loopback: refused by the resolver at connect time.
        if let Some(name) = loopback_alias() {
            urls.push(format!("https://{name}:{}/good", models.addr().port()));
        }
        for url in urls {
            let r = recipe(base.clone(), vec![file_layer("m", url.clone(), None, CKPT)]);
            let err = strict.build(&r, &target).await.unwrap_err();
            assert!(matches!(err, Error::ForbiddenSource { .. }), "{url}: {err}");
            assert!(err.is_terminal());
        }
        assert!(recipe_tags(&reg, "sd/bad").await.is_empty());
        assert_eq!(
            models.requests().len(),
            before,
            "refused sources are never contacted"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_are_used_and_refusal_is_clear() {
    bounded(async {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let open = LocalRegistry::start(d1.path()).await.unwrap();
        let hash = bcrypt::hash("right-password", 4).unwrap();
        let locked = LocalRegistry::start_with_htpasswd(d2.path(), &format!("pusher:{hash}")).await.unwrap();
        push_tiny_base_image(&open.host_port(), "base/sd:v1", false).await.unwrap();
        let models = ModelServer::start(ModelServerOptions::default()).await.unwrap();
        models.add_generated("/m", 10_000, 4);
        let r = recipe(format!("{}/base/sd:v1", open.host_port()), vec![file_layer("m", models.url("/m"), None, CKPT)]);
        let target = format!("{}/team/sd", locked.host_port());

        let docker_config = |password: &str| {
            let json = serde_json::json!({"auths": {locked.host_port(): {"username": "pusher", "password": password}}});
            RegistryCredentials::from_dockerconfigjson(json.to_string().as_bytes()).unwrap()
        };
        let mut opts = options(&[&open, &locked]);
        opts.registry_credentials = docker_config("wrong-password");
        let err = Builder::new(opts.clone()).unwrap().build(&r, &target).await.unwrap_err();
        assert!(matches!(err, Error::RegistryAuth { status: 401, .. }), "{err}");
        assert!(err.is_terminal());
        let msg = err.to_string();
        assert!(msg.contains(&locked.host_port()) && msg.contains("team/sd") && msg.contains("pushSecretRef"), "{msg}");
        assert!(!msg.contains("wrong-password") && !format!("{err:?}").contains("wrong-password"));

        opts.registry_credentials = RegistryCredentials::default();
        let err = Builder::new(opts.clone()).unwrap().build(&r, &target).await.unwrap_err();
        assert!(matches!(err, Error::RegistryAuth { .. }), "{err}");

        opts.registry_credentials = docker_config("right-password");
        let img = Builder::new(opts.clone()).unwrap().build(&r, &target).await.unwrap();
        assert_eq!(img.layers.len(), 1);
        let found = Builder::new(opts).unwrap().find_existing(&r, &target).await.unwrap();
        assert_eq!(found.map(|f| f.digest), Some(img.digest));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_header_only_goes_to_the_source_host() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (reg, _) = registry_with_base(dir.path()).await;
        let origin = ModelServer::start(ModelServerOptions {
            root: None,
            bearer_token: Some("hf_secret".into()),
        })
        .await
        .unwrap();
        let cdn = ModelServer::start(ModelServerOptions::default())
            .await
            .unwrap();
        cdn.add_generated("/blob", 70_000, 8);
        origin.add_generated("/same-host-target", 60_000, 7);
        // Another host (name differs, so it is another origin even though it is the same machine).
        origin.set_misbehavior(
            "/resolve",
            Some(Misbehavior::Redirect(format!(
                "http://localhost:{}/blob",
                cdn.addr().port()
            ))),
        );
        origin.set_misbehavior(
            "/same",
            Some(Misbehavior::Redirect("/same-host-target".into())),
        );
        let auth = Some(SourceAuth {
            header: "Authorization".into(),
            value: Secret::new("Bearer hf_secret"),
        });
        let mut l1 = file_layer(
            "cross",
            origin.url("/resolve"),
            Some(generated_sha256(70_000, 8)),
            CKPT,
        );
        l1.source.auth = auth.clone();
        let mut l2 = file_layer("same", origin.url("/same"), None, LORA);
        l2.source.auth = auth;
        let r = recipe(format!("{}/sd/base:v1", reg.host_port()), vec![l1, l2]);
        let builder = Builder::new(options(&[&reg])).unwrap();
        builder
            .build(&r, &format!("{}/sd/auth", reg.host_port()))
            .await
            .unwrap();
        assert_eq!(
            cdn.requests(),
            vec![("/blob".to_owned(), false)],
            "token must not follow a cross-host redirect"
        );
        let seen = origin.requests();
        assert!(seen.contains(&("/resolve".to_owned(), true)));
        assert!(
            seen.contains(&("/same-host-target".to_owned(), true)),
            "{seen:?}"
        );
        // Without the token the origin refuses: a clear terminal error.
        let r = recipe(
            format!("{}/sd/base:v1", reg.host_port()),
            vec![file_layer("m", origin.url("/same"), None, CKPT)],
        );
        let err = builder
            .build(&r, &format!("{}/sd/auth", reg.host_port()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::SourceUnauthorized { status: 401, .. }),
            "{err}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_mode_and_archive_layers() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let files = tempfile::tempdir().unwrap();
        let (reg, _) = registry_with_base(dir.path()).await;
        // A GitHub-style extension archive: everything under one top directory.
        let mut tar = tar::Builder::new(Vec::new());
        for (path, data, mode) in [
            ("ext-main/", None, 0o755),
            ("ext-main/install.py", Some(&b"print('hi')\n"[..]), 0o644),
            ("ext-main/scripts/run.sh", Some(&b"#!/bin/sh\n"[..]), 0o755),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_mode(mode);
            match data {
                Some(d) => {
                    h.set_size(d.len() as u64);
                    h.set_entry_type(tar::EntryType::Regular);
                    tar.append_data(&mut h, path, d).unwrap();
                }
                None => {
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Directory);
                    tar.append_data(&mut h, path, std::io::empty()).unwrap();
                }
            }
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
        std::fs::write(files.path().join("ext.tar.gz"), gz.finish().unwrap()).unwrap();
        let models = ModelServer::start(ModelServerOptions {
            root: Some(files.path().to_owned()),
            bearer_token: None,
        })
        .await
        .unwrap();
        models.add_generated("/big", 9 << 20, 11);
        let ext = LayerSpec {
            name: "ext".into(),
            source: Source {
                url: models.url("/ext.tar.gz"),
                sha256: None,
                auth: None,
            },
            content: LayerContent::Archive {
                dest_dir: "/webui/data/extensions/ext".into(),
                strip_components: 1,
            },
        };
        let r = recipe(
            format!("{}/sd/base:v1", reg.host_port()),
            vec![
                file_layer(
                    "big",
                    models.url("/big"),
                    Some(generated_sha256(9 << 20, 11)),
                    CKPT,
                ),
                ext,
            ],
        );
        let mut opts = options(&[&reg]);
        opts.upload_mode = UploadMode::Chunked;
        let img = Builder::new(opts)
            .unwrap()
            .build(&r, &format!("{}/sd/chunked", reg.host_port()))
            .await
            .unwrap();
        let big = get_blob(&reg, "sd/chunked", &img.layers[0].digest).await;
        assert_eq!(
            tar_entries(&big).0.last().unwrap().sha256,
            generated_sha256(9 << 20, 11)
        );
        let (entries, _) = tar_entries(&get_blob(&reg, "sd/chunked", &img.layers[1].digest).await);
        let got: Vec<(String, u32, u64)> = entries
            .iter()
            .map(|e| (e.path.clone(), e.mode, e.uid))
            .collect();
        let want: Vec<(String, u32, u64)> = [
            ("webui/", 0o755),
            ("webui/data/", 0o755),
            ("webui/data/extensions/", 0o755),
            ("webui/data/extensions/ext/", 0o755),
            ("webui/data/extensions/ext/install.py", 0o644),
            ("webui/data/extensions/ext/scripts/", 0o755),
            ("webui/data/extensions/ext/scripts/run.sh", 0o755),
        ]
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m, 1000))
        .collect();
        assert_eq!(got, want);
    })
    .await;
}
