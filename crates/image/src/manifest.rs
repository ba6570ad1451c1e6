//! What the built image says about itself, as pure JSON edits: the model layer descriptors,
//! base layers converted to Docker v2 media types, the edited image config, the manifest, and
//! the one-layer `m-…` index manifests that let a later build reuse a model layer.

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::recipe::Recipe;
use crate::reference::ImageReference;
use crate::{
    ANNOTATION_MODEL_PATH, ANNOTATION_MODEL_SHA256, DOCKER_CONFIG, DOCKER_LAYER_GZIP,
    DOCKER_LAYER_TAR, DOCKER_MANIFEST_V2, LABEL_BASE_DIGEST, LABEL_RECIPE_HASH,
};

/// Manifest layer annotation: the layer's name in the recipe.
const ANNOTATION_MODEL_NAME: &str = "dev.salad-sd.model.name";
pub(crate) const DOCKER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub(crate) const DOCKER_FOREIGN_TAR: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const HISTORY_CREATED: &str = "2000-01-01T00:00:00Z";

/// One appended layer of a built image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltLayer {
    /// Layer name from the recipe.
    pub name: String,
    /// Layer blob digest.
    pub digest: String,
    /// Layer blob size in bytes.
    pub size: u64,
    /// sha256 (hex) of the model file or archive.
    pub file_sha256: String,
    /// True when the layer was already in the target repository and nothing was downloaded.
    pub reused: bool,
}

/// A model layer pushed (or reused) by this build, with what the config and manifest need.
pub(crate) struct LayerDone {
    pub built: BuiltLayer,
    pub diff_id: String,
    pub path: String,
    /// [`DOCKER_LAYER_TAR`] when built now; a reused layer keeps the type it was pushed with.
    pub media_type: &'static str,
}

/// The media type of a model layer this crate may have pushed, in any version.
pub(crate) fn model_layer_media_type(media_type: &str) -> Option<&'static str> {
    [DOCKER_LAYER_TAR, DOCKER_LAYER_GZIP]
        .into_iter()
        .find(|t| *t == media_type)
}

/// A Docker v2 manifest with this config and these layer descriptors.
pub(crate) fn image_manifest(config_size: u64, config_digest: &str, layers: Vec<Value>) -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_V2,
        "config": { "mediaType": DOCKER_CONFIG, "size": config_size, "digest": config_digest },
        "layers": layers,
    })
}

/// The model layers of an image this crate pushed (layers carrying a model path annotation),
/// as a build that found the whole image reports them.
pub(crate) fn model_layers(manifest: &Value) -> Vec<BuiltLayer> {
    manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["annotations"][ANNOTATION_MODEL_PATH].is_string())
        .map(|l| BuiltLayer {
            name: l["annotations"][ANNOTATION_MODEL_NAME]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            digest: l["digest"].as_str().unwrap_or("").to_owned(),
            size: l["size"].as_u64().unwrap_or(0),
            file_sha256: l["annotations"][ANNOTATION_MODEL_SHA256]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            reused: true,
        })
        .collect()
}

/// Config of an `m-…` index manifest: the model's sha256 and path, and the layer's diff_id.
pub(crate) fn index_config(sha: &str, done: &LayerDone) -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Labels": { ANNOTATION_MODEL_SHA256: sha.to_ascii_lowercase(), ANNOTATION_MODEL_PATH: done.path } },
        "rootfs": { "type": "layers", "diff_ids": [done.diff_id] },
    })
}

pub(crate) fn model_descriptor(d: &LayerDone) -> Value {
    json!({
        "mediaType": d.media_type,
        "size": d.built.size,
        "digest": d.built.digest,
        "annotations": {
            ANNOTATION_MODEL_SHA256: d.built.file_sha256,
            ANNOTATION_MODEL_PATH: d.path,
            ANNOTATION_MODEL_NAME: d.built.name,
        },
    })
}

/// Converts a base layer descriptor to Docker v2 media types.
pub(crate) fn convert_layer(reference: &ImageReference, mut l: Value) -> Result<Value> {
    let media_type = l["mediaType"].as_str().unwrap_or("").to_owned();
    let converted = match media_type.as_str() {
        DOCKER_LAYER_GZIP | DOCKER_LAYER_TAR | DOCKER_FOREIGN_GZIP | DOCKER_FOREIGN_TAR => {
            media_type.clone()
        }
        "application/vnd.oci.image.layer.v1.tar+gzip" => DOCKER_LAYER_GZIP.to_owned(),
        "application/vnd.oci.image.layer.v1.tar" => DOCKER_LAYER_TAR.to_owned(),
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
            DOCKER_FOREIGN_GZIP.to_owned()
        }
        "application/vnd.oci.image.layer.nondistributable.v1.tar" => DOCKER_FOREIGN_TAR.to_owned(),
        _ => {
            return Err(Error::UnsupportedBaseLayer {
                reference: reference.to_string(),
                media_type,
            });
        }
    };
    l["mediaType"] = Value::String(converted);
    Ok(l)
}

/// Applies the recipe's config edits to the base config (unknown fields are kept).
pub(crate) fn edit_config(
    config: &mut Value,
    recipe: &Recipe,
    hash: &str,
    base_digest: &str,
    layers: &[LayerDone],
) {
    if !config.is_object() {
        *config = json!({});
    }
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let c = &mut config["config"];
    let mut env: Vec<String> = c["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for (k, v) in &recipe.config.env {
        let entry = format!("{k}={v}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(ek, _)| ek) == Some(k.as_str()) || *e == k)
        {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
    c["Env"] = json!(env);
    if let Some(ep) = &recipe.config.entrypoint {
        c["Entrypoint"] = json!(ep);
    }
    if let Some(cmd) = &recipe.config.cmd {
        c["Cmd"] = json!(cmd);
    }
    if !c["Labels"].is_object() {
        c["Labels"] = json!({});
    }
    for (k, v) in &recipe.config.labels {
        c["Labels"][k] = json!(v);
    }
    c["Labels"][LABEL_RECIPE_HASH] = json!(hash);
    c["Labels"][LABEL_BASE_DIGEST] = json!(base_digest);

    if !config["rootfs"].is_object() {
        config["rootfs"] = json!({ "type": "layers", "diff_ids": [] });
    }
    if !config["rootfs"]["diff_ids"].is_array() {
        config["rootfs"]["diff_ids"] = json!([]);
    }
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("diff_ids is an array");
    for l in layers {
        diff_ids.push(json!(l.diff_id));
    }
    // History must stay aligned with the layers; only extend it when the base has one.
    if let Some(history) = config["history"].as_array_mut().filter(|h| !h.is_empty()) {
        for l in layers {
            history.push(json!({
                "created": HISTORY_CREATED,
                "created_by": format!("salad-sd-image: add {} at {}", l.built.name, l.path),
                "comment": format!("model sha256 {}", l.built.file_sha256),
            }));
        }
        history.push(json!({
            "created": HISTORY_CREATED,
            "created_by": "salad-sd-image: set env, entrypoint, cmd, labels",
            "empty_layer": true,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{ConfigEdit, LayerContent, LayerSpec, Source};

    #[test]
    fn edits_config_keeping_unknown_fields() {
        let mut cfg = json!({
            "architecture": "amd64", "os": "linux", "custom": {"keep": true},
            "config": { "Env": ["PATH=/bin", "PORT=1"], "Cmd": ["old"], "Labels": {"a": "b"}, "StopSignal": "SIGINT" },
            "rootfs": { "type": "layers", "diff_ids": ["sha256:1"] },
            "history": [{"created_by": "base"}],
        });
        let mut env = std::collections::BTreeMap::new();
        env.insert("PORT".to_owned(), "7860".to_owned());
        env.insert("HOST".to_owned(), "::".to_owned());
        let recipe = Recipe {
            base_image: "x/y:z".into(),
            layers: vec![LayerSpec {
                name: "m".into(),
                source: Source {
                    url: "https://e/x".into(),
                    sha256: None,
                    auth: None,
                },
                content: LayerContent::File {
                    path_in_image: "/m/x".into(),
                    mode: 0o644,
                },
            }],
            config: ConfigEdit {
                env,
                entrypoint: None,
                cmd: Some(vec!["--listen".into()]),
                labels: Default::default(),
            },
        };
        let done = vec![LayerDone {
            built: BuiltLayer {
                name: "m".into(),
                digest: "sha256:l".into(),
                size: 1,
                file_sha256: "f".into(),
                reused: false,
            },
            diff_id: "sha256:2".into(),
            path: "/m/x".into(),
            media_type: DOCKER_LAYER_TAR,
        }];
        edit_config(&mut cfg, &recipe, "h", "sha256:b", &done);
        assert_eq!(
            cfg["config"]["Env"],
            json!(["PATH=/bin", "PORT=7860", "HOST=::"])
        );
        assert_eq!(cfg["config"]["Cmd"], json!(["--listen"]));
        assert_eq!(cfg["config"]["StopSignal"], "SIGINT");
        assert_eq!(cfg["custom"]["keep"], true);
        assert_eq!(cfg["config"]["Labels"]["a"], "b");
        assert_eq!(cfg["config"]["Labels"][LABEL_RECIPE_HASH], "h");
        assert_eq!(cfg["rootfs"]["diff_ids"], json!(["sha256:1", "sha256:2"]));
        assert_eq!(cfg["history"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn converts_oci_layers_and_refuses_zstd() {
        let r = ImageReference::parse("a/b:c").unwrap();
        let l = convert_layer(&r, json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "d", "size": 1})).unwrap();
        assert_eq!(l["mediaType"], DOCKER_LAYER_GZIP);
        let e = convert_layer(
            &r,
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd"}),
        )
        .unwrap_err();
        assert!(e.is_terminal());
    }
}
