//! Typed client for the SaladCloud Public API: request/response models, errors, retries and a
//! per-API-key rate limiter shared by every client in the process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), saladcloud::Error> {
//! use saladcloud::{ApiKey, Client, ClientConfig};
//! let client = Client::new(ClientConfig::new(ApiKey::new("key from a Secret")))?;
//! let groups = client.list_container_groups("acme", "dev-env").await?;
//! # let _ = groups; Ok(()) }
//! ```

mod client;
mod error;
mod gpu;
pub mod model;
mod ratelimit;
mod retry;

pub use client::{
    API_KEY_HEADER, ApiKey, Client, ClientConfig, DEFAULT_BASE_URL, DEFAULT_RATE_LIMIT_PER_MINUTE,
    Deleted, RequestObserver, RequestRecord, is_valid_name,
};
pub use error::Error;
pub use gpu::{DEFAULT_GPU_CLASS_TTL, GpuClassResolver, ResolvedGpuClass};
pub use model::*;
pub use ratelimit::{Permit, RateLimiter, RateLimiterStats};
pub use retry::RetryPolicy;
