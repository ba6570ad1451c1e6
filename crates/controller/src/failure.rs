//! One failure type for every step of a reconcile, and one rule that turns a failure into what
//! users and tools see (conditions, a Warning Event, the error metric) and into when the
//! resource is looked at again.
//!
//! Two kinds, as ACK's Terminal/Recoverable: [`Failure::Stalled`] when only a change helps (the
//! spec, a Secret, the SaladCloud account or quota, the model at its URL) and
//! [`Failure::Retry`] when time may help. Both are tried again on a growing, jittered backoff:
//! a stalled resource slowly (a raised quota or a fixed download clears it without a spec
//! change), a retrying one quickly, and a rate-limited one after the window SaladCloud gave.

use std::time::Duration;

use rand::Rng;
use saladcloud::RetryPolicy;

use crate::reason::{self, Reason};
use crate::secrets::SecretError;

/// Why a reconcile could not finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Only a change fixes it; `message` says which.
    Stalled {
        /// Condition reason, Event reason, metric label.
        reason: Reason,
        /// What is wrong and what to change.
        message: String,
    },
    /// Time may fix it.
    Retry {
        /// Condition reason, Event reason, metric label.
        reason: Reason,
        /// What failed.
        message: String,
        /// The server said when to come back (`Retry-After`, SaladCloud's rate window).
        after: Option<Duration>,
    },
}

/// SaladCloud counts requests per minute: a 429 without `Retry-After` waits for the window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

impl Failure {
    /// A failure only a change fixes.
    pub fn stalled(reason: Reason, message: impl Into<String>) -> Self {
        Self::Stalled {
            reason,
            message: message.into(),
        }
    }

    /// A failure time may fix.
    pub fn retry(reason: Reason, message: impl Into<String>) -> Self {
        Self::Retry {
            reason,
            message: message.into(),
            after: None,
        }
    }

    /// The reason.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Stalled { reason, .. } | Self::Retry { reason, .. } => *reason,
        }
    }

    /// The message for status and Events.
    pub fn message(&self) -> &str {
        match self {
            Self::Stalled { message, .. } | Self::Retry { message, .. } => message,
        }
    }

    /// Only a change fixes it.
    pub fn is_stalled(&self) -> bool {
        matches!(self, Self::Stalled { .. })
    }

    /// The same failure with `context: ` before its message.
    pub fn context(self, context: &str) -> Self {
        match self {
            Self::Stalled { reason, message } => Self::Stalled {
                reason,
                message: format!("{context}: {message}"),
            },
            Self::Retry {
                reason,
                message,
                after,
            } => Self::Retry {
                reason,
                message: format!("{context}: {message}"),
                after,
            },
        }
    }
}

impl From<saladcloud::Error> for Failure {
    fn from(e: saladcloud::Error) -> Self {
        let reason = reason::of_salad_error(&e);
        if e.is_rate_limited() {
            return Self::Retry {
                message: format!("{e}; waiting for SaladCloud's rate window"),
                after: Some(e.retry_after().unwrap_or(RATE_WINDOW)),
                reason,
            };
        }
        if e.is_terminal() {
            return Self::Stalled {
                reason,
                message: e.to_string(),
            };
        }
        Self::Retry {
            reason,
            message: e.to_string(),
            after: e.retry_after(),
        }
    }
}

impl From<salad_sd_image::Error> for Failure {
    fn from(e: salad_sd_image::Error) -> Self {
        use salad_sd_image::ErrorCategory::*;
        let reason = match e.category() {
            Source => Reason::ModelSourceFailed,
            Integrity => Reason::ModelChecksumMismatch,
            Policy => Reason::ModelSourceRefused,
            Recipe => Reason::InvalidImageRecipe,
            RegistryAuth => Reason::RegistryAuthFailed,
            Registry => Reason::RegistryUnavailable,
            BaseImage => Reason::BaseImageUnavailable,
            Internal => Reason::BuildFailed,
        };
        if e.is_terminal() {
            Self::stalled(reason, e.to_string())
        } else {
            Self::retry(reason, e.to_string())
        }
    }
}

impl From<SecretError> for Failure {
    fn from(e: SecretError) -> Self {
        if e.is_terminal() {
            Self::stalled(Reason::SecretMissing, e.to_string())
        } else {
            Self::retry(Reason::SecretUnavailable, e.to_string())
        }
    }
}

/// When to try again after failures, per kind. Built on the SaladCloud client's own
/// [`RetryPolicy`] (one backoff policy for the client, the engine and the operator's error
/// policy), with equal jitter so that intervals grow: a delay is uniform in `[cap/2, cap]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// After [`Failure::Retry`]: starts small, grows to a few minutes.
    pub retry: RetryPolicy,
    /// After [`Failure::Stalled`]: starts at a minute, grows to half an hour.
    pub stalled: RetryPolicy,
    /// Between builds of a recipe that failed: a 404 or a login page at a model URL is often
    /// fixed at the source, without a spec change.
    pub build: RetryPolicy,
    /// Transient failures in a row after which a command that waits (the CLI's `apply`,
    /// `delete`) gives up; the operator never does.
    pub give_up_after: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            retry: RetryPolicy {
                initial_backoff: Duration::from_secs(10),
                max_backoff: Duration::from_secs(300),
                ..RetryPolicy::default()
            },
            stalled: RetryPolicy {
                initial_backoff: Duration::from_secs(60),
                max_backoff: Duration::from_secs(1800),
                ..RetryPolicy::default()
            },
            build: RetryPolicy {
                initial_backoff: Duration::from_secs(30),
                max_backoff: Duration::from_secs(1800),
                ..RetryPolicy::default()
            },
            give_up_after: 5,
        }
    }
}

/// Uniform in `[cap/2, cap]`.
pub fn equal_jitter(cap: Duration) -> Duration {
    let ms = cap.as_millis() as u64;
    if ms < 2 {
        return cap;
    }
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

impl Backoff {
    /// The wait after the `failures`-th failure in a row (1-based) of this kind.
    pub fn after(&self, failure: &Failure, failures: u32) -> Duration {
        let n = failures.max(1) - 1;
        match failure {
            Failure::Retry {
                after: Some(after), ..
            } => *after + equal_jitter(*after / 10),
            Failure::Retry { after: None, .. } => equal_jitter(self.retry.backoff_cap(n)),
            Failure::Stalled { .. } => equal_jitter(self.stalled.backoff_cap(n)),
        }
    }

    /// The wait before building a recipe again after its `failures`-th failed build in a row.
    pub fn build_after(&self, failures: u32) -> Duration {
        equal_jitter(self.build.backoff_cap(failures.max(1) - 1))
    }

    /// Does a waiting command stop after this failure, the `failures`-th in a row?
    pub fn gives_up(&self, failure: &Failure, failures: u32) -> bool {
        failure.is_stalled() || failures >= self.give_up_after
    }
}

/// What a failure means for the resource, by the one rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Consequence {
    /// `Stalled=True` (kstatus: only a change helps); else `Reconciling=True`.
    pub stalled: bool,
    /// Reason of the false `Ready` condition (and of `Stalled`/`Reconciling`).
    pub reason: Reason,
    /// Message of those conditions: the failure's. It carries no time, so that a repeated
    /// failure leaves status unchanged (no write, no watch event, no hot loop).
    pub message: String,
    /// Reason of the Warning Event (also the metric label).
    pub event_reason: Reason,
    /// Message of the Warning Event: the failure's, with when it is tried again.
    pub event_message: String,
    /// Announce a failure that status already shows: yes for retries (one Event per backoff
    /// step), no for a stall (announced when it first shows or its message changes).
    pub repeat_event: bool,
    /// When to look again.
    pub requeue_after: Duration,
}

/// The rule: a failure, and how many failed in a row (this one included), to its consequence.
pub fn consequence(failure: &Failure, failures: u32, backoff: &Backoff) -> Consequence {
    let requeue_after = backoff.after(failure, failures);
    let next = match failure {
        Failure::Stalled { .. } => format!("; checked again in {}", human(requeue_after)),
        Failure::Retry { .. } => format!("; retrying in {}", human(requeue_after)),
    };
    Consequence {
        stalled: failure.is_stalled(),
        reason: failure.reason(),
        message: failure.message().to_string(),
        event_reason: failure.reason(),
        event_message: format!("{}{next}", failure.message()),
        repeat_event: !failure.is_stalled(),
        requeue_after,
    }
}

/// `45s`, `3m`, `1h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{}s", s.max(1)),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        reason: &'static str,
        failure: Failure,
        failures: u32,
        stalled: bool,
        /// Bounds of the requeue.
        at_least: Duration,
        at_most: Duration,
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_rule_table() {
        let b = Backoff::default();
        let cases = [
            Case {
                reason: "a first transient failure comes back within seconds",
                failure: Failure::retry(Reason::RegistryUnavailable, "registry down"),
                failures: 1,
                stalled: false,
                at_least: secs(5),
                at_most: secs(10),
            },
            Case {
                reason: "transient failures back off exponentially",
                failure: Failure::retry(Reason::RegistryUnavailable, "registry down"),
                failures: 4,
                stalled: false,
                at_least: secs(40),
                at_most: secs(80),
            },
            Case {
                reason: "transient backoff is capped at five minutes",
                failure: Failure::retry(Reason::SaladUnavailable, "503"),
                failures: 40,
                stalled: false,
                at_least: secs(150),
                at_most: secs(300),
            },
            Case {
                reason: "a rate limit waits for the window the server gave, not for the backoff",
                failure: Failure::Retry {
                    reason: Reason::SaladRateLimited,
                    message: "429".into(),
                    after: Some(secs(60)),
                },
                failures: 9,
                stalled: false,
                at_least: secs(60),
                at_most: secs(66),
            },
            Case {
                reason: "a stalled resource is looked at again after a minute at the earliest",
                failure: Failure::stalled(Reason::SaladValidation, "quota exceeded"),
                failures: 1,
                stalled: true,
                at_least: secs(30),
                at_most: secs(60),
            },
            Case {
                reason: "stalled resources back off to half an hour",
                failure: Failure::stalled(Reason::SaladValidation, "quota exceeded"),
                failures: 30,
                stalled: true,
                at_least: secs(900),
                at_most: secs(1800),
            },
        ];
        for c in cases {
            for _ in 0..50 {
                let got = consequence(&c.failure, c.failures, &b);
                assert_eq!(got.stalled, c.stalled, "{}", c.reason);
                assert_eq!(got.reason, c.failure.reason(), "{}", c.reason);
                assert_eq!(got.event_reason, c.failure.reason(), "{}", c.reason);
                assert_eq!(
                    got.message,
                    c.failure.message(),
                    "{}: no time in status",
                    c.reason
                );
                assert!(
                    got.event_message.starts_with(c.failure.message()),
                    "{}: {}",
                    c.reason,
                    got.event_message
                );
                assert_eq!(got.repeat_event, !c.stalled, "{}", c.reason);
                assert!(
                    (c.at_least..=c.at_most).contains(&got.requeue_after),
                    "{}: {:?} not in {:?}..={:?}",
                    c.reason,
                    got.requeue_after,
                    c.at_least,
                    c.at_most
                );
            }
        }
    }

    #[test]
    fn retry_intervals_grow() {
        let b = Backoff::default();
        let f = Failure::retry(Reason::RegistryUnavailable, "down");
        for n in 1..8 {
            // Equal jitter: the shortest wait after n+1 failures is the longest after n.
            let cap = b.retry.backoff_cap(n - 1);
            assert!(b.after(&f, n + 1) >= cap.min(b.retry.max_backoff / 2));
        }
    }

    #[test]
    fn errors_of_every_crate_map_to_one_failure() {
        let secret: Failure = SecretError::Missing {
            name: "k".into(),
            purpose: "the SaladCloud API key".into(),
        }
        .into();
        assert!(secret.is_stalled());
        assert_eq!(secret.reason(), Reason::SecretMissing);
        let unavailable: Failure = SecretError::Unavailable {
            name: "k".into(),
            reason: "timeout".into(),
        }
        .into();
        assert!(!unavailable.is_stalled());

        let source: Failure = salad_sd_image::Error::SourceNotFound {
            name: "m".into(),
            url: "https://example.invalid/m".into(),
            status: 404,
        }
        .into();
        assert_eq!(source.reason(), Reason::ModelSourceFailed);
        assert!(source.is_stalled());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(secs(45)), "45s");
        assert_eq!(human(secs(600)), "10m");
        assert_eq!(human(secs(7200)), "2h");
    }
}
