//! SaladCloud's health probes, run against a container as its node would: exec probes inside
//! the container, HTTP and TCP probes on the container's address (IPv6 loopback: SaladCloud's
//! container networking is IPv6), with the group's delays, periods, timeouts and thresholds.
//! The startup probe runs first; liveness and readiness wait until it passes. A startup or
//! liveness probe that reaches its failure threshold gets the instance reallocated.

use std::time::{Duration, Instant};

use saladcloud::model::Probe;

use super::runtime::Container;

/// What probes run against: a container of the test node (`runc`) or one containerd runs.
pub trait Target {
    /// Whether the container's process is still running.
    fn running(&mut self) -> bool;
    /// Runs `command` in the container with its env and working directory; `true` when it
    /// exits 0 within `timeout`.
    fn exec(&self, command: &[String], timeout: Duration) -> impl Future<Output = bool> + Send;
}

impl Target for Container {
    fn running(&mut self) -> bool {
        Container::running(self)
    }

    fn exec(&self, command: &[String], timeout: Duration) -> impl Future<Output = bool> + Send {
        Container::exec(self, command, timeout)
    }
}

/// How one probe ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Passed `success_threshold` times in a row, this long after the container started.
    Passed(Duration),
    /// Failed `failure_threshold` times in a row: SaladCloud would reallocate the instance.
    Failed {
        /// Attempts made.
        attempts: u32,
        /// When the last one ended.
        after: Duration,
    },
    /// The container's process exited.
    Exited,
}

/// One check of `probe`.
pub async fn check(container: &impl Target, probe: &Probe) -> bool {
    let timeout = Duration::from_secs(probe.timeout_seconds.max(1) as u64);
    if let Some(exec) = &probe.exec {
        return container.exec(&exec.command, timeout).await;
    }
    if let Some(http) = &probe.http {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("http client");
        let mut req = client.get(format!("http://[::1]:{}{}", http.port, http.path));
        for h in &http.headers {
            req = req.header(&h.name, &h.value);
        }
        return match req.send().await {
            Ok(r) => (200..400).contains(&r.status().as_u16()),
            Err(_) => false,
        };
    }
    if let Some(tcp) = &probe.tcp {
        return tokio::time::timeout(timeout, tokio::net::TcpStream::connect(("::1", tcp.port)))
            .await
            .is_ok_and(|r| r.is_ok());
    }
    false
}

/// Runs `probe` from `started` until it passes or fails by its thresholds.
pub async fn run(container: &mut impl Target, probe: &Probe, started: Instant) -> Outcome {
    tokio::time::sleep_until(
        (started + Duration::from_secs(probe.initial_delay_seconds as u64)).into(),
    )
    .await;
    let period = Duration::from_secs(probe.period_seconds.max(1) as u64);
    let (mut successes, mut failures, mut attempts) = (0, 0, 0);
    loop {
        if !container.running() {
            return Outcome::Exited;
        }
        let tick = Instant::now();
        attempts += 1;
        if check(container, probe).await {
            successes += 1;
            failures = 0;
            if successes >= probe.success_threshold.max(1) {
                return Outcome::Passed(started.elapsed());
            }
        } else {
            successes = 0;
            failures += 1;
            if failures >= probe.failure_threshold.max(1) {
                return Outcome::Failed {
                    attempts,
                    after: started.elapsed(),
                };
            }
        }
        tokio::time::sleep_until((tick + period).into()).await;
    }
}
