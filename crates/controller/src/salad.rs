//! The engine's seam at SaladCloud: the container groups of one organization's project (and the
//! organization's GPU classes) as a trait, so that the engine's decisions can be tested against
//! an in-memory fake (`fake`, with the `testing` feature) as well as against the simulator.
//! [`SaladCloudApi`] is the real one, over [`saladcloud::Client`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use saladcloud::model::{
    ContainerGroup, ContainerGroupInstance, ContainerGroupPatch, ContainerGroupPrototype,
    QueuePrototype, SystemLog,
};
use saladcloud::{
    ApiKey, Client, ClientConfig, Deleted, GpuClassResolver, ResolvedGpuClass, RetryPolicy,
};
use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

/// What a SaladCloud call returns.
pub type SaladResult<T> = Result<T, saladcloud::Error>;

/// The container groups of one project of one organization, and that organization's GPU
/// classes: everything the engine asks SaladCloud.
pub trait ContainerGroups: Send + Sync {
    /// How long a request would wait for the API key's rate budget if sent now.
    fn budget_free_in(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// The organization's GPU classes named (by name or id), in order.
    fn gpu_classes<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, SaladResult<Vec<ResolvedGpuClass>>>;
    /// Every group of the project.
    fn list(&self) -> BoxFuture<'_, SaladResult<Vec<ContainerGroup>>>;
    /// One group, `None` when there is none by that name.
    fn find<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Option<ContainerGroup>>>;
    /// A group's instances.
    fn instances<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, SaladResult<Vec<ContainerGroupInstance>>>;
    /// Creates a group.
    fn create<'a>(
        &'a self,
        group: &'a ContainerGroupPrototype,
    ) -> BoxFuture<'a, SaladResult<ContainerGroup>>;
    /// Patches a group.
    fn update<'a>(
        &'a self,
        name: &'a str,
        patch: &'a ContainerGroupPatch,
    ) -> BoxFuture<'a, SaladResult<ContainerGroup>>;
    /// Starts a group (202).
    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<()>>;
    /// Stops a group (202).
    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<()>>;
    /// Deletes a group (202; gone already is success).
    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Deleted>>;
    /// A group's latest system events (instance lifecycle, interruptions, probe failures).
    fn system_logs<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Vec<SystemLog>>>;
    /// Moves an instance to another node (202).
    fn reallocate<'a>(
        &'a self,
        name: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, SaladResult<()>>;
    /// The organization's `max_container_group_reallocations_per_minute`, if it states one.
    fn reallocations_per_minute(&self) -> BoxFuture<'_, SaladResult<Option<u32>>>;
    /// A job queue of the project, `None` when there is none by that name.
    fn find_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Option<QueueFacts>>>;
    /// Creates a job queue (an existing one of that name is success: the name is ours).
    fn create_queue<'a>(
        &'a self,
        name: &'a str,
        description: &'a str,
    ) -> BoxFuture<'a, SaladResult<()>>;
    /// Deletes a job queue (gone already is success).
    fn delete_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Deleted>>;
    /// Enqueues a job; answers its id.
    fn submit_job<'a>(
        &'a self,
        queue: &'a str,
        input: &'a serde_json::Value,
    ) -> BoxFuture<'a, SaladResult<String>>;
    /// A job of a queue.
    fn job<'a>(&'a self, queue: &'a str, id: &'a str) -> BoxFuture<'a, SaladResult<JobFacts>>;
}

/// A queue job as the engine reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobFacts {
    /// Its state.
    pub status: saladcloud::model::QueueJobStatus,
    /// The server's answer (or the error), once there is one.
    pub output: Option<serde_json::Value>,
    /// From enqueueing to the last update, in milliseconds.
    pub elapsed_ms: Option<i64>,
}

/// A job queue as the engine reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueFacts {
    /// Its name.
    pub name: String,
    /// Jobs waiting.
    pub length: Option<u32>,
    /// Names of the container groups connected to it.
    pub container_groups: Vec<String>,
}

/// Opens the [`ContainerGroups`] an API key reaches in an organization's project.
pub trait SaladCloud: Send + Sync {
    /// The scope; each API key has its own request budget.
    fn scope(
        &self,
        key: &ApiKey,
        organization: &str,
        project: &str,
    ) -> SaladResult<Arc<dyn ContainerGroups>>;
}

/// Idle connections to SaladCloud kept by the shared pool: a few per busy key's steady 4
/// requests a second, capped so that a burst does not leave hundreds open.
const SHARED_IDLE_CONNECTIONS: usize = 16;

/// The real SaladCloud: one client per API key (each with the key's rate budget) and its GPU
/// class cache, all over one connection pool.
pub struct SaladCloudApi {
    base_url: String,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    clients: Mutex<HashMap<[u8; 32], (Client, GpuClassResolver)>>,
    /// One connection pool for every key's client.
    pool: std::sync::OnceLock<reqwest::Client>,
}

impl SaladCloudApi {
    /// SaladCloud at `base_url`, retrying calls by `retry`, recording requests in `metrics`.
    pub fn new(base_url: impl Into<String>, retry: RetryPolicy, metrics: Arc<Metrics>) -> Self {
        Self {
            base_url: base_url.into(),
            retry,
            metrics,
            clients: Mutex::default(),
            pool: std::sync::OnceLock::new(),
        }
    }

    fn client(&self, key: &ApiKey) -> SaladResult<(Client, GpuClassResolver)> {
        let id: [u8; 32] =
            Sha256::digest(format!("{}\n{}", self.base_url, key.expose()).as_bytes()).into();
        let mut clients = self.clients.lock().unwrap();
        if let Some(c) = clients.get(&id) {
            return Ok(c.clone());
        }
        let metrics = self.metrics.clone();
        let config = ClientConfig::new(key.clone())
            .with_base_url(self.base_url.clone())
            .with_retry(self.retry);
        let pool = match self.pool.get() {
            Some(pool) => pool.clone(),
            None => {
                let pool = Client::connection_pool(&config.user_agent, SHARED_IDLE_CONNECTIONS)?;
                self.pool.get_or_init(|| pool).clone()
            }
        };
        let client = Client::new(config.with_connection_pool(pool))?.with_observer(Arc::new(
            move |r: saladcloud::RequestRecord| {
                metrics.record_request(r.operation, r.status, r.duration)
            },
        ));
        let resolver = GpuClassResolver::new(client.clone());
        clients.insert(id, (client.clone(), resolver.clone()));
        Ok((client, resolver))
    }
}

impl SaladCloud for SaladCloudApi {
    fn scope(
        &self,
        key: &ApiKey,
        organization: &str,
        project: &str,
    ) -> SaladResult<Arc<dyn ContainerGroups>> {
        let (client, resolver) = self.client(key)?;
        Ok(Arc::new(ClientScope {
            client,
            resolver,
            org: organization.to_string(),
            project: project.to_string(),
        }))
    }
}

/// [`ContainerGroups`] over the real client.
struct ClientScope {
    client: Client,
    resolver: GpuClassResolver,
    org: String,
    project: String,
}

impl ContainerGroups for ClientScope {
    fn budget_free_in(&self) -> std::time::Duration {
        self.client.budget_free_in()
    }

    fn gpu_classes<'a>(
        &'a self,
        names: &'a [String],
    ) -> BoxFuture<'a, SaladResult<Vec<ResolvedGpuClass>>> {
        Box::pin(self.resolver.resolve(&self.org, names))
    }

    fn list(&self) -> BoxFuture<'_, SaladResult<Vec<ContainerGroup>>> {
        Box::pin(self.client.list_container_groups(&self.org, &self.project))
    }

    fn find<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Option<ContainerGroup>>> {
        Box::pin(
            self.client
                .find_container_group(&self.org, &self.project, name),
        )
    }

    fn instances<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, SaladResult<Vec<ContainerGroupInstance>>> {
        Box::pin(
            self.client
                .list_container_group_instances(&self.org, &self.project, name),
        )
    }

    fn create<'a>(
        &'a self,
        group: &'a ContainerGroupPrototype,
    ) -> BoxFuture<'a, SaladResult<ContainerGroup>> {
        Box::pin(
            self.client
                .create_container_group(&self.org, &self.project, group),
        )
    }

    fn update<'a>(
        &'a self,
        name: &'a str,
        patch: &'a ContainerGroupPatch,
    ) -> BoxFuture<'a, SaladResult<ContainerGroup>> {
        Box::pin(
            self.client
                .update_container_group(&self.org, &self.project, name, patch),
        )
    }

    fn start<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<()>> {
        Box::pin(
            self.client
                .start_container_group(&self.org, &self.project, name),
        )
    }

    fn stop<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<()>> {
        Box::pin(
            self.client
                .stop_container_group(&self.org, &self.project, name),
        )
    }

    fn delete<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Deleted>> {
        Box::pin(
            self.client
                .delete_container_group(&self.org, &self.project, name),
        )
    }

    fn system_logs<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Vec<SystemLog>>> {
        Box::pin(self.client.get_system_logs(&self.org, &self.project, name))
    }

    fn reallocate<'a>(
        &'a self,
        name: &'a str,
        instance_id: &'a str,
    ) -> BoxFuture<'a, SaladResult<()>> {
        Box::pin(
            self.client
                .reallocate_instance(&self.org, &self.project, name, instance_id),
        )
    }

    fn reallocations_per_minute(&self) -> BoxFuture<'_, SaladResult<Option<u32>>> {
        Box::pin(async move {
            let q = self.client.get_quotas(&self.org).await?;
            Ok(q.container_groups_quotas
                .max_container_group_reallocations_per_minute)
        })
    }

    fn find_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Option<QueueFacts>>> {
        Box::pin(async move {
            let q = self
                .client
                .find_queue(&self.org, &self.project, name)
                .await?;
            Ok(q.map(|q| QueueFacts {
                name: q.name,
                length: q.current_queue_length,
                container_groups: q.container_groups.into_iter().map(|g| g.name).collect(),
            }))
        })
    }

    fn create_queue<'a>(
        &'a self,
        name: &'a str,
        description: &'a str,
    ) -> BoxFuture<'a, SaladResult<()>> {
        Box::pin(async move {
            let prototype = QueuePrototype {
                name: name.to_string(),
                display_name: None,
                description: Some(description.chars().take(500).collect()),
            };
            match self
                .client
                .create_queue(&self.org, &self.project, &prototype)
                .await
            {
                Ok(_) => Ok(()),
                // The name is derived from the resource's uid: an existing queue is ours.
                Err(e) if e.is_name_conflict() => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn delete_queue<'a>(&'a self, name: &'a str) -> BoxFuture<'a, SaladResult<Deleted>> {
        Box::pin(self.client.delete_queue(&self.org, &self.project, name))
    }

    fn submit_job<'a>(
        &'a self,
        queue: &'a str,
        input: &'a serde_json::Value,
    ) -> BoxFuture<'a, SaladResult<String>> {
        Box::pin(async move {
            let job = saladcloud::model::QueueJobPrototype {
                input: input.clone(),
                metadata: Some(serde_json::Map::from_iter([(
                    "submitted_by".to_string(),
                    serde_json::json!("salad-sd-operator smoke test"),
                )])),
                webhook: None,
            };
            Ok(self
                .client
                .create_job(&self.org, &self.project, queue, &job)
                .await?
                .id)
        })
    }

    fn job<'a>(&'a self, queue: &'a str, id: &'a str) -> BoxFuture<'a, SaladResult<JobFacts>> {
        Box::pin(async move {
            let j = self
                .client
                .get_job(&self.org, &self.project, queue, id)
                .await?;
            Ok(JobFacts {
                status: j.status,
                elapsed_ms: j
                    .create_time
                    .zip(j.update_time)
                    .map(|(c, u)| u.duration_since(c).as_millis() as i64),
                output: j.output,
            })
        })
    }
}
