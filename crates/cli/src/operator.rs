//! `salad-sd operator`: the flags, turned into the controller's [`OperatorConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use salad_sd_controller::engine::parse_duration;
use salad_sd_controller::failure::Backoff;
use salad_sd_controller::leader::LeaseTiming;
use salad_sd_controller::operator::{LeaderElection, OperatorConfig};
use saladcloud::RetryPolicy;

/// `salad-sd operator` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// SaladCloud API base URL (point it at `salad-sd sim` for a dry run).
    #[arg(long, env = "SALAD_API_URL", default_value = saladcloud::DEFAULT_BASE_URL)]
    pub salad_api_url: String,
    /// Drift check interval per resource (jittered); override per resource with the
    /// `salad-sd.dev/poll-interval` annotation.
    #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
    pub poll_interval: Duration,
    /// Image builds running at once.
    #[arg(long, default_value_t = 2)]
    pub build_concurrency: usize,
    /// Registry reached over plain http (HOST:PORT); repeatable. For tests and demos only.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Allow model URLs over http or in private networks. For tests and demos only: otherwise
    /// anyone who can write a resource could make the operator fetch internal endpoints.
    #[arg(long)]
    pub allow_private_sources: bool,
    /// Watch only this namespace (default: all).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Turn off leader election (single replica only).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Namespace of the leader-election Lease. Default: in a cluster the pod's own (the
    /// service-account namespace file), outside the current kubeconfig context's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease (unique per replica). Default: host name and
    /// process id.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Send smoke tests to this URL with the access domain as Host (the simulator's gateway).
    #[arg(long)]
    pub gateway_url: Option<String>,
    /// First wait after a failure time may fix (SaladCloud or a registry down); doubles with
    /// each failure in a row, jittered.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub retry_backoff_initial: Duration,
    /// Longest wait between retries of a failure time may fix.
    #[arg(long, default_value = "5m", value_parser = parse_duration_arg)]
    pub retry_backoff_max: Duration,
    /// First wait after a failure only a change fixes (the resource is Stalled; a raised quota
    /// or a restored Secret is picked up at the next look).
    #[arg(long, default_value = "1m", value_parser = parse_duration_arg)]
    pub stalled_backoff_initial: Duration,
    /// Longest wait between looks at a Stalled resource.
    #[arg(long, default_value = "30m", value_parser = parse_duration_arg)]
    pub stalled_backoff_max: Duration,
    /// First wait before building a recipe again after its build failed.
    #[arg(long, default_value = "30s", value_parser = parse_duration_arg)]
    pub build_backoff_initial: Duration,
    /// Longest wait between builds of a failing recipe.
    #[arg(long, default_value = "30m", value_parser = parse_duration_arg)]
    pub build_backoff_max: Duration,
    /// Reconciles running at once (0: no limit). Bounds the operator's memory and connections
    /// when many resources are due together.
    #[arg(long, default_value_t = salad_sd_controller::operator::DEFAULT_MAX_CONCURRENT_RECONCILES)]
    pub max_concurrent_reconciles: u16,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration like 30s, 5m or 1h"))
}

impl OperatorArgs {
    /// The controller's configuration.
    pub fn into_config(self) -> OperatorConfig {
        let leader_election = (!self.no_leader_election).then(|| LeaderElection {
            namespace: self.lease_namespace,
            identity: self.identity.unwrap_or_else(default_identity),
            timing: LeaseTiming::default(),
        });
        OperatorConfig {
            salad_api_url: self.salad_api_url,
            poll_interval: self.poll_interval,
            build_concurrency: self.build_concurrency,
            insecure_registries: self.insecure_registries,
            allow_private_sources: self.allow_private_sources,
            namespace: self.namespace,
            listen: self.listen,
            leader_election,
            gateway_url: self.gateway_url,
            backoff: Backoff {
                retry: policy(self.retry_backoff_initial, self.retry_backoff_max),
                stalled: policy(self.stalled_backoff_initial, self.stalled_backoff_max),
                build: policy(self.build_backoff_initial, self.build_backoff_max),
                ..Backoff::default()
            },
            max_concurrent_reconciles: self.max_concurrent_reconciles,
        }
    }
}

/// A retry policy from a first and a longest wait (a longest wait below the first is the first).
fn policy(initial: Duration, max: Duration) -> RetryPolicy {
    RetryPolicy {
        initial_backoff: initial,
        max_backoff: max.max(initial),
        ..RetryPolicy::default()
    }
}

/// `HOST-PID`: two operators started by hand never share an identity (which would let both
/// believe they lead).
fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "salad-sd-operator".into());
    format!("{host}-{}", std::process::id())
}

/// Runs the operator; the exit code.
pub async fn run(args: OperatorArgs) -> u8 {
    match salad_sd_controller::operator::run(args.into_config()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            crate::exit::EXIT_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: OperatorArgs,
    }

    #[test]
    fn leader_election_defaults_leave_the_namespace_to_the_cluster() {
        let cfg = Cmd::parse_from(["operator"]).args.into_config();
        let election = cfg.leader_election.expect("on by default");
        if std::env::var_os("POD_NAMESPACE").is_none() {
            assert_eq!(
                election.namespace, None,
                "no constant: the pod's or the kubeconfig's namespace"
            );
        }
        assert!(!election.identity.is_empty());
        assert!(
            election.timing.renew_deadline < election.timing.lease_duration,
            "the leader stops before the lease can expire"
        );
        let cfg = Cmd::parse_from([
            "operator",
            "--no-leader-election",
            "--lease-namespace",
            "ops",
        ])
        .args
        .into_config();
        assert!(cfg.leader_election.is_none());
    }

    #[test]
    fn a_given_lease_namespace_and_identity_are_kept() {
        let cfg = Cmd::parse_from([
            "operator",
            "--lease-namespace",
            "ops",
            "--identity",
            "pod-x",
        ])
        .args
        .into_config();
        let election = cfg.leader_election.unwrap();
        assert_eq!(election.namespace.as_deref(), Some("ops"));
        assert_eq!(election.identity, "pod-x");
    }
}
