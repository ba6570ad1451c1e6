//! The simulated world on a virtual clock, without HTTP: for benchmarks that let hours of
//! rollout pass in milliseconds (`make bench-fleet`). The same lifecycle, node speeds and
//! quotas as the server, because it is the same [`World`].

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use crate::config::SimConfig;
use crate::world::{ApiError, Clock, InstanceAction, World};

/// A simulated SaladCloud whose time moves only when told to.
pub struct VirtualCloud {
    world: World,
    origin: Instant,
    now: Instant,
}

impl VirtualCloud {
    /// A world configured like [`crate::Simulator::start`]'s, at virtual time zero.
    pub fn new(config: SimConfig) -> Self {
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
        let origin = Instant::now();
        world.clock = Clock::new(origin, Timestamp::UNIX_EPOCH);
        Self {
            world,
            origin,
            now: origin,
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.origin
    }

    /// The timestamp the world gives the current virtual moment (from the Unix epoch).
    pub fn timestamp(&self) -> Timestamp {
        self.world.clock.ts(self.now)
    }

    /// Lets `d` pass.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.world.advance(self.now);
    }

    /// Images whose reference contains `pattern` are `bytes` long compressed.
    pub fn set_image_size(&mut self, pattern: &str, bytes: u64) {
        self.world.image_sizes.push((pattern.to_owned(), bytes));
    }

    /// `POST P/containers`.
    pub fn create(&mut self, org: &str, project: &str, body: &Value) -> Result<Value, ApiError> {
        self.world.create(org, project, body, self.now)
    }

    /// `GET P/containers/{name}`.
    pub fn get(&self, org: &str, project: &str, name: &str) -> Result<Value, ApiError> {
        self.world.get(org, project, name, self.now)
    }

    /// `GET P/containers/{name}/instances`.
    pub fn instances(&self, org: &str, project: &str, name: &str) -> Result<Value, ApiError> {
        self.world.instances(org, project, name, self.now)
    }

    /// `POST P/containers/{name}/instances/{id}/reallocate` (the per-minute quota applies).
    pub fn reallocate(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        id: &str,
    ) -> Result<(), ApiError> {
        self.world
            .instance_action(org, project, name, id, InstanceAction::Reallocate, self.now)
    }

    /// `GET P/containers/{name}/system-logs`.
    pub fn system_logs(&self, org: &str, project: &str, name: &str) -> Result<Value, ApiError> {
        self.world.system_logs(org, project, name)
    }

    /// `GET /organizations/{org}/quotas`.
    pub fn quotas(&self, org: &str) -> Value {
        self.world.quotas_json(org)
    }

    /// `PATCH P/containers/{name}`.
    pub fn update(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        self.world.update(org, project, name, patch, self.now)
    }

    /// `POST P/queues`.
    pub fn create_queue(
        &mut self,
        org: &str,
        project: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        self.world.create_queue(org, project, body, self.now)
    }

    /// `GET P/queues/{name}`.
    pub fn get_queue(&self, org: &str, project: &str, name: &str) -> Result<Value, ApiError> {
        self.world.get_queue(org, project, name, self.now)
    }

    /// `POST P/queues/{name}/jobs`.
    pub fn create_job(
        &mut self,
        org: &str,
        project: &str,
        queue: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        self.world.create_job(org, project, queue, body, self.now)
    }

    /// `GET P/queues/{name}/jobs/{id}`.
    pub fn get_job(
        &self,
        org: &str,
        project: &str,
        queue: &str,
        id: &str,
    ) -> Result<Value, ApiError> {
        self.world.get_job(org, project, queue, id)
    }

    /// `GET P/queues/{name}/jobs?page=&page_size=`.
    pub fn list_jobs(
        &self,
        org: &str,
        project: &str,
        queue: &str,
        page: u32,
        page_size: u32,
    ) -> Result<Value, ApiError> {
        self.world.list_jobs(org, project, queue, page, page_size)
    }

    /// Interrupts an instance of a group (a running one unless `id` names it): its node goes
    /// away and SaladCloud allocates another. Answers the instance's id.
    pub fn interrupt(
        &mut self,
        org: &str,
        project: &str,
        name: &str,
        id: Option<&str>,
    ) -> Result<String, ApiError> {
        self.world.interrupt(org, project, name, id, self.now)
    }
}
