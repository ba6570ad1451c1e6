//! Typed client for the SaladCloud Public API: request/response models, errors, retries and a
//! per-API-key rate limiter shared by every client in the process.

pub mod model;

pub use model::*;
