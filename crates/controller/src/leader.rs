//! Leader election with a `coordination.k8s.io/v1` Lease, the way client-go does it: the holder
//! renews every `retry_period` and gives up when it could not renew within `renew_deadline`
//! (shorter than the lease, so it stops writing before a standby may take over); on shutdown it
//! releases the Lease (clears the holder) so the standby takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;

/// Name of the Lease object.
pub const LEASE_NAME: &str = "salad-sd-operator";

/// The longest a release on shutdown may take (a GET and a PUT); after it, the standby takes
/// over when the Lease expires.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Lease timings (client-go's defaults: 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a standby waits after the last renewal before it takes the Lease over.
    pub lease_duration: Duration,
    /// The holder gives up leadership when it could not renew for this long. Shorter than
    /// `lease_duration`: the holder stops writing before the Lease can expire.
    pub renew_deadline: Duration,
    /// Pause between renewals, and between attempts of a standby.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why leadership ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseLost {
    /// Another replica holds the Lease now.
    #[error("replica `{0}` holds the lease now")]
    TakenBy(String),
    /// No renewal succeeded within the renew deadline (the last error, if any, is attached).
    #[error("no renewal succeeded within the renew deadline of {deadline:?}{}", last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    RenewDeadline {
        /// The renew deadline.
        deadline: Duration,
        /// The last renewal error, when a renewal failed rather than hung.
        last_error: Option<String>,
    },
}

/// Outcome of one attempt to take or renew the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Take {
    Held,
    HeldBy(String),
}

/// A leader-election Lease this replica holds (after [`LeaderLease::acquire`]).
pub struct LeaderLease {
    api: Api<Lease>,
    namespace: String,
    identity: String,
    timing: LeaseTiming,
    /// When the last successful take or renewal was sent.
    renewed_at: std::sync::Mutex<Instant>,
}

impl LeaderLease {
    /// Waits until this replica holds the Lease in `namespace`. Standby and failures are logged
    /// (once, then at debug) with what to do.
    pub async fn acquire(
        client: Client,
        namespace: &str,
        identity: &str,
        timing: LeaseTiming,
    ) -> Self {
        let lease = Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            identity: identity.into(),
            timing,
            renewed_at: std::sync::Mutex::new(Instant::now()),
        };
        let mut last_said: Option<String> = None;
        loop {
            let sent = Instant::now();
            let said = match lease.try_take().await {
                Ok(Take::Held) => {
                    *lease.renewed_at.lock().expect("not poisoned") = sent;
                    tracing::info!(
                        identity,
                        namespace,
                        lease = LEASE_NAME,
                        "acquired the leader lease"
                    );
                    return lease;
                }
                Ok(Take::HeldBy(holder)) => {
                    let said = format!("standby: `{holder}` leads");
                    if last_said.as_deref() != Some(said.as_str()) {
                        tracing::info!(identity, %holder, namespace, "another replica leads; standing by to take over");
                    } else {
                        tracing::debug!(identity, %holder, "another replica leads");
                    }
                    said
                }
                Err(e) => {
                    let (severe, said) = explain(&e, namespace);
                    if last_said.as_deref() == Some(said.as_str()) {
                        tracing::debug!(namespace, "{said}");
                    } else if severe {
                        tracing::error!(namespace, "{said}");
                    } else {
                        tracing::warn!(namespace, "{said}");
                    }
                    said
                }
            };
            last_said = Some(said);
            tokio::time::sleep(timing.retry_period).await;
        }
    }

    /// Renews every retry period; returns when leadership ended. The caller must stop writing
    /// then: this returns at the latest `renew_deadline` after the last successful renewal, even
    /// when a renewal hangs, which is before the Lease can expire for a standby.
    pub async fn hold(&self) -> LeaseLost {
        let mut last_error = None;
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            let renewed_at = *self.renewed_at.lock().expect("not poisoned");
            let deadline = renewed_at + self.timing.renew_deadline;
            let sent = Instant::now();
            match tokio::time::timeout_at(deadline, self.try_take()).await {
                Ok(Ok(Take::Held)) => {
                    *self.renewed_at.lock().expect("not poisoned") = sent;
                    last_error = None;
                }
                Ok(Ok(Take::HeldBy(holder))) => return LeaseLost::TakenBy(holder),
                Ok(Err(e)) => {
                    tracing::warn!(namespace = %self.namespace, error = %e, "could not renew the leader lease; retrying");
                    last_error = Some(e.to_string());
                    if Instant::now() + self.timing.retry_period >= deadline {
                        return LeaseLost::RenewDeadline {
                            deadline: self.timing.renew_deadline,
                            last_error,
                        };
                    }
                }
                Err(_) => {
                    return LeaseLost::RenewDeadline {
                        deadline: self.timing.renew_deadline,
                        last_error,
                    };
                }
            }
        }
    }

    /// Gives the Lease up (clears the holder) so a standby takes over at once. Best effort,
    /// bounded by [`RELEASE_TIMEOUT`] (a shutdown must end well inside the pod's grace
    /// period); never touches a Lease another replica holds.
    pub async fn release(&self) {
        let attempt = async {
            let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
                return Ok::<bool, kube::Error>(false);
            };
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            let now = MicroTime(jiff::Timestamp::now());
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now.clone());
            spec.acquire_time = Some(now);
            self.api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await?;
            Ok(true)
        };
        match tokio::time::timeout(self.timing.renew_deadline.min(RELEASE_TIMEOUT), attempt).await {
            Ok(Ok(true)) => {
                tracing::info!(identity = %self.identity, "released the leader lease; a standby takes over now")
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(namespace = %self.namespace, error = %e, "could not release the leader lease; a standby takes over when it expires")
            }
            Err(_) => {
                tracing::warn!(namespace = %self.namespace, "releasing the leader lease timed out; a standby takes over when it expires")
            }
        }
    }

    /// Takes or renews the Lease, or says who holds it.
    async fn try_take(&self) -> Result<Take, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds = i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX);
        match self.api.get_opt(LEASE_NAME).await? {
            None => {
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": { "name": LEASE_NAME },
                    "spec": { "holderIdentity": self.identity, "leaseDurationSeconds": seconds,
                              "acquireTime": now, "renewTime": now, "leaseTransitions": 0 }
                }))
                .expect("valid lease");
                self.api.create(&PostParams::default(), &lease).await?;
                Ok(Take::Held)
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
                let mine = holder.as_deref() == Some(self.identity.as_str());
                let expired = spec.renew_time.as_ref().is_none_or(|t| {
                    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
                    t.0.as_second() + secs < now.0.as_second()
                });
                if let Some(holder) = holder.as_ref().filter(|_| !mine && !expired) {
                    return Ok(Take::HeldBy(holder.clone()));
                }
                if !mine {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.renew_time = Some(now);
                spec.lease_duration_seconds = Some(seconds);
                // resourceVersion makes this a compare-and-swap: a concurrent taker gets 409.
                self.api
                    .replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await?;
                Ok(Take::Held)
            }
        }
    }
}

/// What a leader-election failure means and what to do about it; `true` when it needs a person
/// (a missing namespace, RBAC).
pub fn explain(error: &kube::Error, namespace: &str) -> (bool, String) {
    match error {
        kube::Error::Api(status) if status.code == 404 => (
            true,
            format!(
                "cannot hold the leader Lease: namespace `{namespace}` does not exist ({}); create it, or run with --lease-namespace (POD_NAMESPACE) naming the operator's namespace",
                status.message
            ),
        ),
        kube::Error::Api(status) if status.code == 403 => (
            true,
            format!(
                "RBAC refuses the leader Lease in namespace `{namespace}` ({}); grant get, create and update on leases.coordination.k8s.io in `{namespace}` to the operator's ServiceAccount (Role salad-sd-operator-leader-election in manifests/base/rbac.yaml)",
                status.message
            ),
        ),
        kube::Error::Api(status) if status.code == 409 => (
            false,
            "another replica took the leader Lease at the same moment; retrying".into(),
        ),
        other => (
            false,
            format!("leader election in namespace `{namespace}` failed: {other}; retrying"),
        ),
    }
}

/// The Lease namespace: the one given, else the client's default namespace (in a cluster the
/// pod's own, read from the service-account namespace file; outside, the kubeconfig context's).
pub fn lease_namespace(given: Option<&str>, client: &Client) -> String {
    given
        .filter(|n| !n.is_empty())
        .map_or_else(|| client.default_namespace().to_string(), str::to_string)
}
