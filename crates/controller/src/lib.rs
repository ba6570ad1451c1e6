//! The salad-sd reconcile engine and the Kubernetes operator around it.
//!
//! `observe → decide → act → report`: [`engine`] does the I/O (observe gathers facts, act
//! carries out one action at a time); [`decide`] is the one pure decision step, with the
//! planner ([`plan`]) and what should exist ([`desired`]); [`fields`] declares each SaladCloud
//! container-group field once, and [`diff`] follows from it; [`report`] turns the decision and
//! any failure into status; [`failure`] and [`reason`] are the one failure rule and the one
//! reason vocabulary. [`salad`] is the seam at SaladCloud. [`operator`] drives the engine from
//! Kubernetes watches.

pub mod builds;
pub mod cold_start;
pub mod decide;
pub mod desired;
pub mod diff;
pub mod engine;
pub mod failure;
#[cfg(feature = "testing")]
pub mod fake;
pub mod fields;
pub mod fleet;
pub mod gpu_limits;
#[cfg(feature = "testing")]
pub mod harness;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod plan;
pub mod reason;
pub mod report;
pub mod salad;
pub mod scaling;
pub mod secrets;
pub mod smoke;

#[cfg(test)]
pub(crate) mod testing;

pub use engine::{Engine, EngineConfig, Event, EventType, Mode, Reconciled};
