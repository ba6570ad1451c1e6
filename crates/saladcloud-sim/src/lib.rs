//! A stateful, in-memory SaladCloud Public API simulator for tests and the demo.
//!
//! It implements the container group part of the official OpenAPI spec independently of the
//! `saladcloud` client crate (so the client is tested against code it shares nothing with),
//! simulates the lifecycle with configurable [`Timings`], injects faults, and serves a minimal
//! fake SD.Next (or comfyui-api) behind every group's access domain.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use saladcloud_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0").await?;
//! println!("API at {}", sim.base_url());
//! sim.admin().force_429(3);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Behaviour where the spec is silent (simulator decisions)
//! - **PATCH of non-updatable fields**: `name`, `autostart_policy`, `restart_policy`,
//!   `queue_connection` and `networking.{auth, protocol, load_balancer, client_request_timeout,
//!   server_response_timeout, single_connection_limit}` answer 400 when the value *differs* from
//!   the current one (omitted-on-create fields compare against the read model's defaults);
//!   the same value is accepted and ignored. Adding `networking` to a group without it is 400.
//!   Unknown fields are ignored on create and PATCH (the schemas have no
//!   `additionalProperties: false`).
//! - **Merge patch**: RFC 7396 (objects merge, arrays replace). `null` removes probes,
//!   `country_codes`, `logging`, `priority`, `display_name` (back to `name`) and individual
//!   `environment_variables` keys (the schema forbids null values there; the simulator accepts
//!   them as removal). `null` for `replicas`, `container`, `container.image`, resource fields
//!   and `networking.port` means "no change". `registry_authentication` is replaced, never merged.
//! - **Versioning**: a change to image, command, environment, resources, priority, logging,
//!   probes, gateway port or registry credentials bumps `version`, sets `pending_change` and
//!   restarts every instance at once, in place (same instance ids). An image change first
//!   prepares the image for `Timings::image_prepare` (instances keep running the old version
//!   meanwhile), then every instance re-downloads. `pending_change` turns false once every
//!   instance is `running` on the new version.
//! - **Probes**: `started` waits `Timings::startup` only with a startup probe, `ready` waits
//!   `Timings::readiness` only with a readiness probe (the spec: true once started without one).
//!   HTTP probe `headers: []` is accepted (the spec says minItems 1; SaladCloud's docs and
//!   virtual-kubelet send `[]`). Exactly one of http/tcp/grpc/exec is required.
//! - **Status**: `pending` until the first image preparation ends; deleting groups show
//!   `stopped` (there is no `stopping` in the enum) until they disappear after
//!   `Timings::delete`. A failed pull (fault) gives `failed` with a description; `start` is then
//!   400 and PATCHing `container.image` retries. `instance_status_counts.creating_count` includes
//!   `downloading` instances (the spec has no downloading count).
//! - **Quota**: `container_replicas_used` = sum of `replicas` of started groups of the
//!   organization; create (with autostart), start and PATCH raising replicas over the quota
//!   answer 400 with `type: "quota_exceeded"`.
//! - **Codes**: `GET …/instances/{id}` answers 200 (the spec says 202, a known defect); bad
//!   names in paths answer 404; a non-JSON `Content-Type` answers 415; invalid JSON 400.
//!   Read-model `priority` is `container.priority` as given; when unset it is `high` for a
//!   group with GPU classes and `batch` without (the read schema's enum has no `null`).
//! - **Faults** apply to `/api/public` only, in the order latency → drop → 401 → 429 (burst,
//!   then the per-key sliding window) → 5xx. Rejected requests do not consume rate budget.
//! - **Gateway**: images are capped at [`GATEWAY_MAX_IMAGE_SIDE`] pixels per side while `info`
//!   reports the requested size; auth-enabled gateways answer 401 without `Salad-Api-Key` and
//!   403 for a key other than the configured one. A group with an HTTP probe on `/ready` or
//!   `/health` is served as comfyui-api (`POST /prompt`, `/health`, `/ready`), any other as
//!   SD.Next (the simulator cannot look inside the image).

mod config;
mod countries;
mod fleet;
mod gateway;
mod png;
mod server;
mod validate;
mod virtual_cloud;
mod world;

pub mod cli;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{Faults, GpuClass, GpuLimits, GpuPrices, SimConfig, Timings};
pub use countries::COUNTRY_CODES;
pub use fleet::{FleetModel, MAX_PAGE_SIZE as LOG_ENTRIES_MAX_PAGE_SIZE, events as system_events};
pub use gateway::MAX_SIDE as GATEWAY_MAX_IMAGE_SIDE;
pub use virtual_cloud::VirtualCloud;
pub use world::{ApiError, Stats};

use server::Shared;
use world::World;

/// Entry point: starts simulator servers.
pub struct Simulator;

impl Simulator {
    /// Bind `addr` (use port 0 for a free port) and serve the simulator in the background.
    pub async fn start(config: SimConfig, addr: impl ToSocketAddrs) -> std::io::Result<SimHandle> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let mut world = World::new(
            config.timings,
            config.gpu_classes,
            config.access_domain_suffix,
            config.replicas_quota,
            config.faults,
        );
        world.fleet_model = config.fleet;
        world.reallocations_per_minute = config.reallocations_per_minute;
        world.job_seconds = config.job_time;
        let api_key = config.api_key.filter(|k| !k.is_empty());
        let shared = Arc::new(Shared::new(world, api_key, config.rate_limit_per_minute));
        let app = server::router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(
                server::SimListener(listener),
                app.into_make_service_with_connect_info::<server::ConnKill>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "simulator server stopped with an error");
            }
        });
        Ok(SimHandle {
            addr: local,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running simulator. Dropping it stops the server.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/api/public`, the base URL a SaladCloud client should use.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/public", self.addr)
    }

    /// `http://ADDR/_gateway/{dns}`: the fake SD.Next of the group whose access domain is `dns`
    /// (requests with `Host: {dns}` to [`Self::addr`] reach it too).
    pub fn gateway_url(&self, dns: &str) -> String {
        format!("http://{}/_gateway/{dns}", self.addr)
    }

    /// In-process control: faults, interruptions, stats.
    pub fn admin(&self) -> Admin {
        Admin {
            shared: self.shared.clone(),
        }
    }

    /// Stop serving and wait (at most 2 s) for open connections to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// In-process control of a running simulator (the same operations as `/_admin/...`).
#[derive(Clone)]
pub struct Admin {
    shared: Arc<Shared>,
}

impl Admin {
    fn edit_faults(&self, f: impl FnOnce(&mut Faults)) {
        self.shared.with_world(|w, _| f(&mut w.faults));
    }

    /// The current fault settings.
    pub fn faults(&self) -> Faults {
        self.shared.with_world(|w, _| w.faults.clone())
    }

    /// Replace all fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.edit_faults(|f| *f = faults);
    }

    /// Answer this share (0.0..=1.0) of API requests with 500.
    pub fn set_error_rate(&self, rate: f64) {
        self.edit_faults(|f| f.error_rate = rate.clamp(0.0, 1.0));
    }

    /// Delay every API request by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.edit_faults(|f| f.latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX));
    }

    /// Close this share (0.0..=1.0) of API connections without answering.
    pub fn set_drop_rate(&self, rate: f64) {
        self.edit_faults(|f| f.drop_rate = rate.clamp(0.0, 1.0));
    }

    /// Answer the next `count` API requests with 429.
    pub fn force_429(&self, count: u32) {
        self.edit_faults(|f| f.burst_429 = count);
    }

    /// Images containing `pattern` fail to pull: their group goes `failed` while preparing.
    pub fn fail_images_matching(&self, pattern: impl Into<String>) {
        let pattern = pattern.into();
        self.edit_faults(|f| {
            if !f.failing_images.contains(&pattern) {
                f.failing_images.push(pattern);
            }
        });
    }

    /// Interrupt a node: the instance (`instance_id`, or the first running one) goes back to
    /// `allocating` on a new machine and comes back through the normal lifecycle.
    /// Returns the interrupted instance id.
    pub fn interrupt(
        &self,
        organization: &str,
        project: &str,
        name: &str,
        instance_id: Option<&str>,
    ) -> Result<String, ApiError> {
        self.shared
            .with_world(|w, now| w.interrupt(organization, project, name, instance_id, now))
    }

    /// Images whose reference contains `pattern` are `bytes` long compressed (what instances
    /// download and `container.size` says); others get 2-8 GB by a hash of their name.
    pub fn set_image_size(&self, pattern: impl Into<String>, bytes: u64) {
        let pattern = pattern.into();
        self.shared.with_world(|w, _| {
            w.image_sizes.retain(|(p, _)| *p != pattern);
            w.image_sizes.push((pattern, bytes));
        });
    }

    /// `max_container_group_reallocations_per_minute` of every organization from now on.
    pub fn set_reallocations_per_minute(&self, n: u32) {
        self.shared
            .with_world(|w, _| w.reallocations_per_minute = n);
    }

    /// Makes an instance fail its readiness probe (`true`) or pass again (`false`); the
    /// system logs record it.
    pub fn set_unready(
        &self,
        organization: &str,
        project: &str,
        name: &str,
        instance_id: &str,
        unready: bool,
    ) -> Result<(), ApiError> {
        self.shared.with_world(|w, now| {
            w.set_unready(organization, project, name, instance_id, unready, now)
        })
    }

    /// Request counters, live groups and every name ever used.
    pub fn stats(&self) -> Stats {
        self.shared.with_world(|w, _| w.stats())
    }

    /// Zero the request counters.
    pub fn reset_stats(&self) {
        self.shared.with_world(|w, _| w.stats = Stats::default());
    }
}
