//! An in-memory SaladCloud behind the engine's seam ([`crate::salad`]), for tests of the
//! engine's decisions without a simulator, a registry or a network: groups are created,
//! patched, started, stopped and deleted as SaladCloud does (names never reused, a versioned
//! patch bumps the version and leaves a pending change), and [`FakeSalad::settle`] lets time
//! pass. Every call is recorded; a call can be made to fail once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use saladcloud::model::{
    Container, ContainerGroup, ContainerGroupInstance, ContainerGroupNetworking,
    ContainerGroupPatch, ContainerGroupPrototype, ContainerGroupState, ContainerGroupStatus,
    ContainerResources, InstanceState, InstanceStatusCounts, Nullable, ProblemDetails, SystemLog,
};
use saladcloud::{ApiKey, Deleted, GpuClass, GpuClassPrice, Priority, ResolvedGpuClass};

use crate::salad::{ContainerGroups, JobFacts, QueueFacts, SaladCloud, SaladResult};

#[derive(Default)]
struct State {
    groups: BTreeMap<String, ContainerGroup>,
    used: BTreeSet<String>,
    gpu_classes: Vec<ResolvedGpuClass>,
    calls: Vec<String>,
    fail_once: HashMap<&'static str, u16>,
    /// Instances set by a test, per group (else derived from the counts).
    fleet: BTreeMap<String, Vec<ContainerGroupInstance>>,
    system_logs: BTreeMap<String, Vec<SystemLog>>,
    reallocations_per_minute: Option<u32>,
    reallocated: Vec<(String, String)>,
    /// Job queues: name → jobs waiting.
    queues: BTreeMap<String, u32>,
    /// Jobs by id: (queue, input, state).
    jobs: BTreeMap<String, (String, serde_json::Value, JobFacts)>,
    /// What [`ContainerGroups::budget_free_in`] answers.
    budget_free_in: std::time::Duration,
}

/// The fake. Clones share one world.
#[derive(Clone, Default)]
pub struct FakeSalad {
    state: Arc<Mutex<State>>,
}

/// The GPU class the fake knows by default: `RTX 3060 Ti` at $0.10 an hour (high).
pub const GPU_CLASS_ID: &str = "cb6c1931-89b6-4f76-976f-54047320ccc6";

impl FakeSalad {
    /// An empty project with one GPU class ([`GPU_CLASS_ID`]).
    pub fn new() -> Self {
        let fake = Self::default();
        let class = GpuClass {
            id: GPU_CLASS_ID.into(),
            name: "RTX 3060 Ti".into(),
            prices: vec![GpuClassPrice {
                priority: Priority::High,
                price: "0.10".into(),
            }],
            gpu_class_type: None,
            gpu_count: Some(1),
            is_high_demand: None,
            min_vcpu: Some(1),
            max_vcpu: Some(16),
            min_ram: Some(1024),
            max_ram: Some(61440),
            min_storage: None,
            max_storage: None,
        };
        fake.state.lock().unwrap().gpu_classes = vec![ResolvedGpuClass::from(&class)];
        fake
    }

    /// The job queues, by name.
    pub fn queues(&self) -> Vec<String> {
        self.state.lock().unwrap().queues.keys().cloned().collect()
    }

    /// Sets the number of jobs waiting in a queue.
    pub fn set_queue_length(&self, queue: &str, length: u32) {
        if let Some(l) = self.state.lock().unwrap().queues.get_mut(queue) {
            *l = length;
        }
    }

    /// Jobs submitted: (id, queue, input).
    pub fn jobs(&self) -> Vec<(String, String, serde_json::Value)> {
        let s = self.state.lock().unwrap();
        s.jobs
            .iter()
            .map(|(id, (q, input, _))| (id.clone(), q.clone(), input.clone()))
            .collect()
    }

    /// Ends job `id` as a worker would, after `elapsed_ms`.
    pub fn finish_job(
        &self,
        id: &str,
        status: saladcloud::model::QueueJobStatus,
        output: serde_json::Value,
        elapsed_ms: i64,
    ) {
        if let Some((_, _, job)) = self.state.lock().unwrap().jobs.get_mut(id) {
            *job = JobFacts {
                status,
                output: Some(output),
                elapsed_ms: Some(elapsed_ms),
            };
        }
    }

    /// The groups as SaladCloud holds them.
    pub fn groups(&self) -> Vec<ContainerGroup> {
        self.state
            .lock()
            .unwrap()
            .groups
            .values()
            .cloned()
            .collect()
    }

    /// Operations called so far, in order (`create`, `update`, `list`, …).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The API key's rate budget is spent for `wait` (zero: free again).
    pub fn spend_budget_for(&self, wait: std::time::Duration) {
        self.state.lock().unwrap().budget_free_in = wait;
    }

    /// Marks `name` as used before (SaladCloud never gives a name twice).
    pub fn burn(&self, name: &str) {
        self.state.lock().unwrap().used.insert(name.to_string());
    }

    /// The next call of `operation` answers HTTP `status`.
    pub fn fail_once(&self, operation: &'static str, status: u16) {
        self.state
            .lock()
            .unwrap()
            .fail_once
            .insert(operation, status);
    }

    /// Changes a group as someone outside the operator would.
    pub fn edit(&self, name: &str, f: impl FnOnce(&mut ContainerGroup)) {
        let mut s = self.state.lock().unwrap();
        f(s.groups.get_mut(name).expect("a group by that name"));
    }

    /// From now on `name` lists exactly these instances (with their states and progress).
    pub fn set_instances(&self, name: &str, list: Vec<ContainerGroupInstance>) {
        self.state
            .lock()
            .unwrap()
            .fleet
            .insert(name.to_string(), list);
    }

    /// Adds system events to `name`'s log.
    pub fn push_system_logs(&self, name: &str, logs: Vec<SystemLog>) {
        self.state
            .lock()
            .unwrap()
            .system_logs
            .entry(name.to_string())
            .or_default()
            .extend(logs);
    }

    /// The organization's `max_container_group_reallocations_per_minute` (`None`: not stated).
    pub fn set_reallocations_per_minute(&self, n: Option<u32>) {
        self.state.lock().unwrap().reallocations_per_minute = n;
    }

    /// Reallocations asked for, as (group, instance id).
    pub fn reallocated(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().reallocated.clone()
    }

    /// Time passes: deploying groups run with every instance ready, pending changes land.
    pub fn settle(&self) {
        let mut s = self.state.lock().unwrap();
        for g in s.groups.values_mut() {
            match g.current_state.status {
                ContainerGroupStatus::Deploying | ContainerGroupStatus::Running => {
                    g.current_state.status = ContainerGroupStatus::Running;
                    g.current_state.instance_status_counts.running_count = g.replicas;
                    g.pending_change = false;
                }
                ContainerGroupStatus::Stopped => g.pending_change = false,
                _ => {}
            }
        }
    }

    fn call<T>(
        &self,
        operation: &'static str,
        method: http::Method,
        f: impl FnOnce(&mut State) -> SaladResult<T>,
    ) -> SaladResult<T> {
        let mut s = self.state.lock().unwrap();
        s.calls.push(operation.to_string());
        if let Some(status) = s.fail_once.remove(operation) {
            return Err(api_error(operation, method, status, None));
        }
        f(&mut s)
    }
}

fn api_error(
    operation: &'static str,
    method: http::Method,
    status: u16,
    problem_type: Option<&str>,
) -> saladcloud::Error {
    saladcloud::Error::Api {
        operation,
        method,
        status,
        problem: Some(Box::new(ProblemDetails {
            type_: problem_type.map(str::to_string),
            title: Some(format!("fake SaladCloud answered {status}")),
            status: Some(status),
            detail: None,
            instance: None,
        })),
        snippet: String::new(),
        retry_after: None,
    }
}

fn not_found(operation: &'static str, method: http::Method) -> saladcloud::Error {
    api_error(operation, method, 404, None)
}

impl SaladCloud for FakeSalad {
    fn scope(
        &self,
        _key: &ApiKey,
        _organization: &str,
        _project: &str,
    ) -> SaladResult<Arc<dyn ContainerGroups>> {
        Ok(Arc::new(self.clone()))
    }
}

/// A group as SaladCloud reports it right after creating `p`.
pub fn group_from(p: &ContainerGroupPrototype) -> ContainerGroup {
    let c = &p.container;
    ContainerGroup {
        id: format!("id-{}", p.name),
        name: p.name.clone(),
        display_name: p.display_name.clone().unwrap_or_else(|| p.name.clone()),
        organization_name: String::new(),
        project_name: String::new(),
        container: Container {
            image: c.image.clone(),
            resources: ContainerResources {
                cpu: c.resources.cpu,
                memory: c.resources.memory,
                gpu_classes: c.resources.gpu_classes.clone(),
                storage_amount: c.resources.storage_amount,
                shm_size: c.resources.shm_size,
            },
            command: c.command.clone(),
            environment_variables: c.environment_variables.clone(),
            image_caching: c.image_caching,
            logging: None,
            hash: None,
            size: None,
        },
        autostart_policy: p.autostart_policy,
        restart_policy: p.restart_policy,
        replicas: p.replicas,
        country_codes: p.country_codes.clone(),
        priority: c.priority,
        networking: p.networking.as_ref().map(|n| ContainerGroupNetworking {
            auth: n.auth,
            dns: format!("{}-fake.salad.cloud", p.name),
            load_balancer: n.load_balancer.unwrap_or_default(),
            port: n.port,
            protocol: n.protocol,
            client_request_timeout: n.client_request_timeout,
            server_response_timeout: n.server_response_timeout,
            single_connection_limit: n.single_connection_limit,
        }),
        startup_probe: p.startup_probe.clone(),
        liveness_probe: p.liveness_probe.clone(),
        readiness_probe: p.readiness_probe.clone(),
        queue_connection: p.queue_connection.clone(),
        queue_autoscaler: p.queue_autoscaler.clone(),
        current_state: ContainerGroupState {
            status: if p.autostart_policy {
                ContainerGroupStatus::Deploying
            } else {
                ContainerGroupStatus::Stopped
            },
            description: None,
            start_time: None,
            finish_time: None,
            instance_status_counts: InstanceStatusCounts::default(),
        },
        version: 1,
        pending_change: false,
        create_time: None,
        update_time: None,
        scaling_actions: p.scaling_actions.clone(),
        scheduled_scaling_enabled: p.scheduled_scaling_enabled.unwrap_or(false),
    }
}

/// RFC 7396 merge of a patch; a change of the container version bumps `version`.
fn patch(g: &mut ContainerGroup, p: &ContainerGroupPatch) {
    let mut versioned = false;
    if let Some(r) = p.replicas {
        g.replicas = r;
        let counts = &mut g.current_state.instance_status_counts;
        counts.running_count = counts.running_count.min(r);
    }
    match &p.country_codes {
        Nullable::Value(v) => g.country_codes = v.clone(),
        Nullable::Null => g.country_codes.clear(),
        Nullable::Absent => {}
    }
    match &p.display_name {
        Nullable::Value(n) => g.display_name = n.clone(),
        Nullable::Null => g.display_name = g.name.clone(),
        Nullable::Absent => {}
    }
    if let Some(c) = &p.container {
        let have = &mut g.container;
        if let Some(image) = &c.image {
            have.image = image.clone();
            versioned = true;
        }
        match &c.command {
            Nullable::Value(v) => have.command = Some(v.clone()),
            Nullable::Null => have.command = None,
            Nullable::Absent => {}
        }
        versioned |= !c.command.is_absent();
        if let Some(env) = &c.environment_variables {
            have.environment_variables = env.clone();
            versioned = true;
        }
        if let Some(pr) = c.priority {
            g.priority = Some(pr);
            versioned = true;
        }
        if let Some(ic) = c.image_caching {
            have.image_caching = Some(ic);
            versioned = true;
        }
        if let Some(r) = &c.resources {
            let res = &mut have.resources;
            res.cpu = r.cpu.unwrap_or(res.cpu);
            res.memory = r.memory.unwrap_or(res.memory);
            if let Some(gc) = &r.gpu_classes {
                res.gpu_classes = gc.clone();
            }
            if let Some(v) = r.storage_amount.as_value() {
                res.storage_amount = Some(*v);
            }
            if let Some(v) = r.shm_size.as_value() {
                res.shm_size = Some(*v);
            }
            versioned = true;
        }
    }
    if let Some(n) = &p.networking
        && let (Some(port), Some(net)) = (n.port, g.networking.as_mut())
    {
        net.port = port;
        versioned = true;
    }
    for (change, slot) in [
        (&p.startup_probe, &mut g.startup_probe),
        (&p.liveness_probe, &mut g.liveness_probe),
        (&p.readiness_probe, &mut g.readiness_probe),
    ] {
        match change {
            Nullable::Value(v) => *slot = Some(v.clone()),
            Nullable::Null => *slot = None,
            Nullable::Absent => continue,
        }
        versioned = true;
    }
    if let Some(a) = &p.queue_autoscaler {
        g.queue_autoscaler = Some(a.clone());
    }
    if let Some(actions) = &p.scaling_actions {
        g.scaling_actions = actions.clone();
    }
    if let Some(enabled) = p.scheduled_scaling_enabled {
        g.scheduled_scaling_enabled = enabled;
    }
    if versioned {
        g.version += 1;
        if matches!(
            g.current_state.status,
            ContainerGroupStatus::Running | ContainerGroupStatus::Deploying
        ) {
            g.pending_change = true;
        }
    }
}

/// Instances as SaladCloud lists them: the running ones ready at the group's version.
fn instances(g: &ContainerGroup) -> Vec<ContainerGroupInstance> {
    let running = g.current_state.instance_status_counts.running_count;
    (0..running)
        .map(|i| ContainerGroupInstance {
            id: format!("{}-instance-{i}", g.name),
            machine_id: format!("machine-{i}"),
            state: InstanceState::Running,
            update_time: None,
            version: if g.pending_change {
                g.version.saturating_sub(1)
            } else {
                g.version
            },
            ready: Some(true),
            started: Some(true),
            pulling_progress: None,
            deletion_cost: None,
            cpu_percent: None,
            memory_usage_mb: None,
            memory_usage_percent: None,
        })
        .collect()
}

impl ContainerGroups for FakeSalad {
    fn budget_free_in(&self) -> std::time::Duration {
        self.state.lock().unwrap().budget_free_in
    }

    fn gpu_classes<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, SaladResult<Vec<ResolvedGpuClass>>> {
        let r = self.call("list_gpu_classes", http::Method::GET, |s| {
            names
                .iter()
                .map(|n| {
                    s.gpu_classes
                        .iter()
                        .find(|c| c.id == *n || c.name.eq_ignore_ascii_case(n.trim()))
                        .cloned()
                        .ok_or_else(|| saladcloud::Error::GpuClassNotFound {
                            organization: "fake".into(),
                            name: n.clone(),
                            known: s.gpu_classes.iter().map(|c| c.name.clone()).collect(),
                        })
                })
                .collect()
        });
        Box::pin(async move { r })
    }

    fn list(&self) -> BoxFuture<'_, SaladResult<Vec<ContainerGroup>>> {
        let r = self.call("list_container_groups", http::Method::GET, |s| {
            Ok(s.groups.values().cloned().collect())
        });
        Box::pin(async move { r })
    }

    fn find<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Option<ContainerGroup>>> {
        let r = self.call("get_container_group", http::Method::GET, |s| {
            Ok(s.groups.get(name).cloned())
        });
        Box::pin(async move { r })
    }

    fn instances<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, SaladResult<Vec<ContainerGroupInstance>>> {
        const OP: &str = "list_container_group_instances";
        let r = self.call(OP, http::Method::GET, |s| {
            if let Some(list) = s.fleet.get(name) {
                return Ok(list.clone());
            }
            s.groups
                .get(name)
                .map(instances)
                .ok_or_else(|| not_found(OP, http::Method::GET))
        });
        Box::pin(async move { r })
    }

    fn create<'a>(
        &'a self,
        group: &'a ContainerGroupPrototype,
    ) -> BoxFuture<'a, SaladResult<ContainerGroup>> {
        const OP: &str = "create_container_group";
        let r = self.call(OP, http::Method::POST, |s| {
            if !s.used.insert(group.name.clone()) {
                return Err(api_error(
                    OP,
                    http::Method::POST,
                    400,
                    Some("https://docs.salad.com/errors/name_conflict"),
                ));
            }
            if let Some(c) = &group.queue_connection
                && !s.queues.contains_key(&c.queue_name)
            {
                s.used.remove(&group.name);
                return Err(api_error(OP, http::Method::POST, 400, None));
            }
            let g = group_from(group);
            s.groups.insert(g.name.clone(), g.clone());
            Ok(g)
        });
        Box::pin(async move { r })
    }

    fn update<'a>(
        &'a self,
        name: &'a str,
        change: &'a ContainerGroupPatch,
    ) -> BoxFuture<'a, SaladResult<ContainerGroup>> {
        const OP: &str = "update_container_group";
        let r = self.call(OP, http::Method::PATCH, |s| {
            let g = s
                .groups
                .get_mut(name)
                .ok_or_else(|| not_found(OP, http::Method::PATCH))?;
            patch(g, change);
            Ok(g.clone())
        });
        Box::pin(async move { r })
    }

    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<()>> {
        const OP: &str = "start_container_group";
        let r = self.call(OP, http::Method::POST, |s| {
            let g = s
                .groups
                .get_mut(name)
                .ok_or_else(|| not_found(OP, http::Method::POST))?;
            g.current_state.status = ContainerGroupStatus::Deploying;
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<()>> {
        const OP: &str = "stop_container_group";
        let r = self.call(OP, http::Method::POST, |s| {
            let g = s
                .groups
                .get_mut(name)
                .ok_or_else(|| not_found(OP, http::Method::POST))?;
            g.current_state.status = ContainerGroupStatus::Stopped;
            g.current_state.instance_status_counts.running_count = 0;
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Deleted>> {
        let r = self.call("delete_container_group", http::Method::DELETE, |s| {
            Ok(match s.groups.remove(name) {
                Some(_) => Deleted::Accepted,
                None => Deleted::AlreadyGone,
            })
        });
        Box::pin(async move { r })
    }

    fn system_logs<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Vec<SystemLog>>> {
        const OP: &str = "get_system_logs";
        let r = self.call(OP, http::Method::GET, |s| {
            if !s.groups.contains_key(name) {
                return Err(not_found(OP, http::Method::GET));
            }
            let all = s.system_logs.get(name).cloned().unwrap_or_default();
            Ok(all[all.len().saturating_sub(50)..].to_vec())
        });
        Box::pin(async move { r })
    }

    fn reallocate<'a>(
        &'a self,
        name: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, SaladResult<()>> {
        const OP: &str = "reallocate_container_group_instance";
        let r = self.call(OP, http::Method::POST, |s| {
            let inst = s
                .fleet
                .get_mut(name)
                .and_then(|l| l.iter_mut().find(|i| i.id == instance_id))
                .ok_or_else(|| not_found(OP, http::Method::POST))?;
            inst.state = InstanceState::Allocating;
            inst.machine_id = format!("{}-moved", inst.machine_id);
            inst.pulling_progress = None;
            s.reallocated
                .push((name.to_string(), instance_id.to_string()));
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn reallocations_per_minute(&self) -> BoxFuture<'_, SaladResult<Option<u32>>> {
        let r = self.call("get_quotas", http::Method::GET, |s| {
            Ok(s.reallocations_per_minute)
        });
        Box::pin(async move { r })
    }

    fn find_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Option<QueueFacts>>> {
        let r = self.call("get_queue", http::Method::GET, |s| {
            Ok(s.queues.get(name).map(|&length| QueueFacts {
                name: name.to_string(),
                length: Some(length),
                container_groups: s
                    .groups
                    .values()
                    .filter(|g| {
                        g.queue_connection
                            .as_ref()
                            .is_some_and(|c| c.queue_name == name)
                    })
                    .map(|g| g.name.clone())
                    .collect(),
            }))
        });
        Box::pin(async move { r })
    }

    fn create_queue<'a>(
        &'a self,
        name: &'a str,
        _description: &'a str,
    ) -> BoxFuture<'a, SaladResult<()>> {
        let r = self.call("create_queue", http::Method::POST, |s| {
            s.queues.entry(name.to_string()).or_insert(0);
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn delete_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Deleted>> {
        const OP: &str = "delete_queue";
        let r = self.call(OP, http::Method::DELETE, |s| {
            // The spec documents no refusal here (202, 404, 429); the fake refuses anyway, so
            // that deleting a queue before the groups using it shows up as a failure.
            if s.groups.values().any(|g| {
                g.queue_connection
                    .as_ref()
                    .is_some_and(|c| c.queue_name == name)
            }) {
                return Err(api_error(OP, http::Method::DELETE, 409, None));
            }
            Ok(match s.queues.remove(name) {
                Some(_) => Deleted::Accepted,
                None => Deleted::AlreadyGone,
            })
        });
        Box::pin(async move { r })
    }

    fn submit_job<'a>(
        &'a self,
        queue: &'a str,
        input: &'a serde_json::Value,
    ) -> BoxFuture<'a, SaladResult<String>> {
        const OP: &str = "create_queue_job";
        let r = self.call(OP, http::Method::POST, |s| {
            if !s.queues.contains_key(queue) {
                return Err(not_found(OP, http::Method::POST));
            }
            let id = format!("00000000-0000-4000-8000-{:012}", s.jobs.len());
            let pending = JobFacts {
                status: saladcloud::model::QueueJobStatus::Pending,
                output: None,
                elapsed_ms: Some(0),
            };
            s.jobs
                .insert(id.clone(), (queue.to_string(), input.clone(), pending));
            Ok(id)
        });
        Box::pin(async move { r })
    }

    fn job<'a>(&'a self, queue: &'a str, id: &'a str) -> BoxFuture<'a, SaladResult<JobFacts>> {
        const OP: &str = "get_queue_job";
        let r = self.call(OP, http::Method::GET, |s| {
            s.jobs
                .get(id)
                .filter(|(q, _, _)| q == queue)
                .map(|(_, _, j)| j.clone())
                .ok_or_else(|| not_found(OP, http::Method::GET))
        });
        Box::pin(async move { r })
    }
}
