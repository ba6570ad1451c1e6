use std::collections::BTreeMap;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Version of the layer and hash format. Bump it when the produced bytes change for the same
/// inputs (tar header fields, gzip framing), so old cached tags are not reused.
pub(crate) const FORMAT_VERSION: &str = "salad-sd-image/v1";

/// What to build: a base image plus one layer per model, plus config edits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// Base image reference, e.g. `docker.io/saladtechnologies/sdnext:base` or `host/repo@sha256:…`.
    pub base_image: String,
    /// Layers appended in order, one per model or archive.
    pub layers: Vec<LayerSpec>,
    /// Changes to the image config.
    pub config: ConfigEdit,
}

/// One appended layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// Human name (model name); shows up in history, progress and errors.
    pub name: String,
    /// Where the bytes come from.
    pub source: Source,
    /// How the bytes land in the image.
    pub content: LayerContent,
}

/// Where a layer's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// `https://…` (or `http://…` / `file://…` when the source policy allows it).
    pub url: String,
    /// Pinned sha256 (hex) of the downloaded file. Pinned sources are verified and can be reused
    /// across builds without downloading; unpinned sources are downloaded on every build.
    pub sha256: Option<String>,
    /// Optional auth header, sent only to the URL's own host (never across redirects to another host).
    pub auth: Option<SourceAuth>,
}

/// An HTTP header carrying a secret, e.g. `Authorization: Bearer hf_…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceAuth {
    /// Header name, e.g. `Authorization`.
    pub header: String,
    /// Header value; redacted in Debug output.
    pub value: Secret,
}

/// How the downloaded bytes become layer content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerContent {
    /// The download is one file placed at `path_in_image` (absolute) with `mode` (e.g. `0o644`).
    File { path_in_image: String, mode: u32 },
    /// The download is a tar or tar.gz archive (detected from its first bytes) unpacked into
    /// `dest_dir` (absolute), after dropping `strip_components` leading path components
    /// (1 for GitHub `archive/…tar.gz` downloads, which wrap everything in `repo-ref/`).
    Archive {
        dest_dir: String,
        strip_components: u32,
    },
}

/// Changes applied to the base image config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigEdit {
    /// Environment variables, merged by key into the base `Env` (existing keys are replaced in place).
    pub env: BTreeMap<String, String>,
    /// Replaces the base `Entrypoint` when set.
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the base `Cmd` when set.
    pub cmd: Option<Vec<String>>,
    /// Labels merged into the base `Labels`.
    pub labels: BTreeMap<String, String>,
}

impl Recipe {
    /// Stable content hash (64 hex chars) of everything that determines the output image:
    /// the resolved base digest, the ordered layers (name, url, pinned sha256, kind, path, mode)
    /// and the config edits. Source auth secrets are never part of it.
    pub fn hash(&self, base_digest: &str) -> String {
        let layers: Vec<_> = self
            .layers
            .iter()
            .map(|l| {
                let mut v = json!({
                    "name": l.name,
                    "url": l.source.url,
                    "sha256": l.source.sha256.as_deref().map(str::to_ascii_lowercase),
                });
                match &l.content {
                    LayerContent::File {
                        path_in_image,
                        mode,
                    } => {
                        v["kind"] = json!("file");
                        v["path"] = json!(path_in_image);
                        v["mode"] = json!(mode & 0o7777);
                    }
                    LayerContent::Archive {
                        dest_dir,
                        strip_components,
                    } => {
                        v["kind"] = json!("archive");
                        v["path"] = json!(dest_dir);
                        v["strip"] = json!(strip_components);
                    }
                }
                v
            })
            .collect();
        let doc = json!({
            "format": FORMAT_VERSION,
            "base": base_digest,
            "layers": layers,
            "config": {
                "env": self.config.env,
                "entrypoint": self.config.entrypoint,
                "cmd": self.config.cmd,
                "labels": self.config.labels,
            },
        });
        hex::encode(Sha256::digest(doc.to_string().as_bytes()))
    }

    /// The image tag for a recipe hash: `r-` + the first 20 hex characters.
    pub fn tag_for_hash(hash: &str) -> String {
        format!("r-{}", &hash[..20.min(hash.len())])
    }

    /// Checks the recipe for mistakes that no download can fix.
    pub fn validate(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for l in &self.layers {
            if l.name.is_empty() {
                return Err(Error::InvalidRecipe("a layer has an empty name".into()));
            }
            if !names.insert(&l.name) {
                return Err(Error::InvalidRecipe(format!(
                    "layer name {:?} is used twice",
                    l.name
                )));
            }
            if let Some(sha) = &l.source.sha256
                && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(Error::InvalidRecipe(format!(
                    "layer {:?}: sha256 must be 64 hex characters",
                    l.name
                )));
            }
            if let Some(auth) = &l.source.auth
                && (reqwest::header::HeaderName::from_bytes(auth.header.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(auth.value.expose()).is_err())
            {
                return Err(Error::InvalidRecipe(format!(
                    "layer {:?}: auth header name or value is not a valid HTTP header",
                    l.name
                )));
            }
            let path = match &l.content {
                LayerContent::File {
                    path_in_image,
                    mode,
                } => {
                    if mode & !0o7777 != 0 {
                        return Err(Error::InvalidRecipe(format!(
                            "layer {:?}: mode {mode:o} is not a permission mode",
                            l.name
                        )));
                    }
                    if path_in_image.ends_with('/') {
                        return Err(Error::InvalidRecipe(format!(
                            "layer {:?}: path {path_in_image:?} must name a file",
                            l.name
                        )));
                    }
                    path_in_image
                }
                LayerContent::Archive { dest_dir, .. } => dest_dir,
            };
            normalize_image_path(path).map_err(|reason| {
                Error::InvalidRecipe(format!("layer {:?}: path {path:?} {reason}", l.name))
            })?;
        }
        for k in self.config.env.keys() {
            if k.is_empty() || k.contains('=') {
                return Err(Error::InvalidRecipe(format!(
                    "env name {k:?} is empty or contains '='"
                )));
            }
        }
        Ok(())
    }
}

/// Turns `/a/b/c` into the components `["a","b","c"]`, refusing relative paths and `..`.
pub(crate) fn normalize_image_path(path: &str) -> std::result::Result<Vec<String>, &'static str> {
    if !path.starts_with('/') {
        return Err("must be absolute");
    }
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("must not contain '..'"),
            c => parts.push(c.to_owned()),
        }
    }
    if parts.is_empty() {
        return Err("must not be the root directory");
    }
    Ok(parts)
}

/// Tag of the per-model index entry for a pinned source placed at a given path.
pub(crate) fn model_index_tag(sha256: &str, content: &LayerContent) -> String {
    let key = match content {
        LayerContent::File {
            path_in_image,
            mode,
        } => {
            format!(
                "{FORMAT_VERSION}\nfile\n{}\n{path_in_image}\n{:o}",
                sha256.to_ascii_lowercase(),
                mode & 0o7777
            )
        }
        LayerContent::Archive {
            dest_dir,
            strip_components,
        } => {
            format!(
                "{FORMAT_VERSION}\narchive\n{}\n{dest_dir}\n{strip_components}",
                sha256.to_ascii_lowercase()
            )
        }
    };
    format!("m-{}", &hex::encode(Sha256::digest(key.as_bytes()))[..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe() -> Recipe {
        Recipe {
            base_image: "127.0.0.1:5000/base:v1".into(),
            layers: vec![LayerSpec {
                name: "ckpt".into(),
                source: Source {
                    url: "https://example.com/a.safetensors".into(),
                    sha256: Some("a".repeat(64)),
                    auth: Some(SourceAuth {
                        header: "Authorization".into(),
                        value: Secret::new("Bearer one"),
                    }),
                },
                content: LayerContent::File {
                    path_in_image: "/webui/data/models/Stable-diffusion/a.safetensors".into(),
                    mode: 0o644,
                },
            }],
            config: ConfigEdit::default(),
        }
    }

    #[test]
    fn hash_is_stable_and_ignores_secrets() {
        let a = recipe();
        let mut b = recipe();
        b.layers[0].source.auth = Some(SourceAuth {
            header: "Authorization".into(),
            value: Secret::new("Bearer two"),
        });
        assert_eq!(a.hash("sha256:1"), b.hash("sha256:1"));
        assert_ne!(a.hash("sha256:1"), a.hash("sha256:2"));
        let mut c = recipe();
        c.config.env.insert("X".into(), "1".into());
        assert_ne!(a.hash("sha256:1"), c.hash("sha256:1"));
        let mut d = recipe();
        d.layers[0].content = LayerContent::File {
            path_in_image: "/webui/data/models/Stable-diffusion/a.safetensors".into(),
            mode: 0o600,
        };
        assert_ne!(a.hash("sha256:1"), d.hash("sha256:1"));
        let tag = Recipe::tag_for_hash(&a.hash("sha256:1"));
        assert_eq!(tag.len(), 22);
        assert!(tag.starts_with("r-"));
        assert!(!format!("{a:?}").contains("Bearer one"));
    }

    #[test]
    fn validate_refuses_bad_paths() {
        let mut r = recipe();
        r.layers[0].content = LayerContent::File {
            path_in_image: "/webui/../etc/passwd".into(),
            mode: 0o644,
        };
        assert!(matches!(r.validate(), Err(Error::InvalidRecipe(_))));
        let mut r = recipe();
        r.layers[0].source.sha256 = Some("xyz".into());
        assert!(r.validate().is_err());
        assert!(recipe().validate().is_ok());
    }
}
