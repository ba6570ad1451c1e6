//! Daemonless image builder over the OCI distribution API.
//!
//! Takes a base image, appends one deterministic layer per model file (or archive), edits the image
//! config and pushes the result as a Docker v2 schema 2 image, tagged with a content hash of the
//! [`Recipe`]. Model bytes are streamed from the source URL straight into the registry upload:
//! nothing is buffered in memory or written to disk, so 2–7 GB checkpoints are fine.
//!
//! The crate knows nothing about Kubernetes: the operator maps its custom resource to a [`Recipe`].

pub mod assemble;
mod builder;
mod credentials;
mod error;
mod layer;
mod manifest;
mod pool;
mod progress;
mod recipe;
mod reference;
mod registry;
mod secret;
mod source;

pub use builder::{Builder, BuilderOptions, BuiltImage, UploadMode};
pub use credentials::{RegistryCredential, RegistryCredentials};
pub use error::{Error, ErrorCategory, Result};
pub use manifest::BuiltLayer;
pub use progress::{Phase, Progress, ProgressSink};
pub use recipe::{ConfigEdit, LayerContent, LayerSpec, Recipe, Source, SourceAuth};
pub use reference::ImageReference;
pub use secret::Secret;
pub use source::SourcePolicy;

/// Media type of the manifests this crate pushes.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of the image config this crate pushes.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Media type of the model layers this crate pushes: an uncompressed tar, whose digest is its
/// diff_id (weights do not compress, and one sha256 pass fewer is a third of a build's CPU).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Media type of gzip layers: base layers, the assembled stand-in images, and model layers pushed
/// by earlier builds of this crate (still reused through their `m-…` index tags).
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Manifest layer annotation: sha256 of the model file (or archive) baked into the layer.
pub const ANNOTATION_MODEL_SHA256: &str = "dev.salad-sd.model.sha256";
/// Manifest layer annotation: path of the model file (or archive destination) in the image.
pub const ANNOTATION_MODEL_PATH: &str = "dev.salad-sd.model.path";
/// Image config label holding the full recipe hash.
pub const LABEL_RECIPE_HASH: &str = "dev.salad-sd.recipe-hash";
/// Image config label holding the base image digest.
pub const LABEL_BASE_DIGEST: &str = "dev.salad-sd.base-digest";
