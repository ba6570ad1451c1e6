//! The salad-sd reconcile engine and the Kubernetes operator around it.
//!
//! `fetch → validate → plan → act → report`: [`engine`] does the I/O, [`plan`] decides
//! (pure), [`desired`] and [`diff`] compute what should exist and what differs, [`report`] turns
//! the outcome into status. [`operator`] drives the engine from Kubernetes watches.

pub mod builds;
pub mod desired;
pub mod diff;
pub mod engine;
pub mod failure;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod plan;
pub mod report;
pub mod secrets;
pub mod smoke;

#[cfg(test)]
pub(crate) mod testing;

pub use engine::{Engine, EngineConfig, Event, EventType, Mode, Reconciled};
