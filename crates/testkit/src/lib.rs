//! Dev-only scaffolding for tests, benchmarks and the local demo, kept out of the product crates:
//! a throwaway CNCF distribution registry, a tiny model file server that can misbehave on
//! demand, a tiny base image, and a stand-in SaladCloud job queue with its worker. Everything
//! listens on 127.0.0.1 only. The `salad-sd-dev` binary exposes them to `make demo`.
//!
//! Errors are plain [`std::io::Error`]s: nothing here is retried or shown to a user.

mod base_image;
mod bench;
mod job_queue;
mod model_server;
mod ranged_server;
mod registry;

pub use base_image::{list_tags, push_blob, push_tiny_base_image, put_manifest};
pub use bench::bench_resource;
pub use job_queue::{JobQueue, JobResult, WORKER_SCRIPT, worker_archive};
pub use model_server::{
    Misbehavior, ModelServer, ModelServerOptions, generated_content, generated_sha256,
};
pub use ranged_server::{RangedServer, RangedServerOptions};
pub use registry::LocalRegistry;
