//! The Kubernetes edge: watches StableDiffusionDeployments (and the Secrets they reference),
//! runs the engine, and writes back status (server-side apply), Events, the finalizer and the
//! endpoint ConfigMap. Leader election keeps a second replica from writing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use salad_sd_api::names::{API_KEY_FINALIZER, FIELD_MANAGER, FINALIZER, PAUSED_ANNOTATION};
use salad_sd_api::validate::validate;
use salad_sd_api::{StableDiffusionDeployment, StableDiffusionDeploymentStatus};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::builds::BuildSettings;
use crate::engine::{Engine, EngineConfig, EventType, Mode};
use crate::failure::{Backoff, Failure};
use crate::leader::{self, LeaderLease, LeaseLost, LeaseTiming};
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::report::{EndpointWrite, same_ignoring_times};
use crate::secrets::{SecretData, SecretStore};

/// How the operator runs. The `salad-sd operator` flags fill it; tests and embedders build it
/// directly.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// SaladCloud API base URL.
    pub salad_api_url: String,
    /// Drift check interval per resource (jittered).
    pub poll_interval: Duration,
    /// Image builds running at once.
    pub build_concurrency: usize,
    /// Registries reached over plain http (HOST:PORT). For tests and demos only.
    pub insecure_registries: Vec<String>,
    /// Allow model URLs over http or in private networks. For tests and demos only.
    pub allow_private_sources: bool,
    /// Watch only this namespace (`None`: all).
    pub namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    pub listen: SocketAddr,
    /// Leader election; `None` runs without it (single replica only).
    pub leader_election: Option<LeaderElection>,
    /// Send smoke tests to this URL with the access domain as Host (the simulator's gateway).
    pub gateway_url: Option<String>,
    /// When failed reconciles and builds are tried again.
    pub backoff: Backoff,
    /// Reconciles running at once (0: no limit). See [`DEFAULT_MAX_CONCURRENT_RECONCILES`].
    pub max_concurrent_reconciles: u16,
}

/// Reconciles running at once by default. Without a bound, 1,000 resources due together (a
/// restart, a rotated shared Secret) run 1,000 reconciles at once: as many HTTP connections
/// to the API server, registry and SaladCloud, and their buffers, which the allocator keeps
/// after the burst. A reconcile takes milliseconds (builds run in the background), so 32 at
/// once still converges 1,000 resources in seconds. A resource whose API key's budget is spent
/// for longer than [`crate::engine::DEFER_AFTER`] does not wait in its slot: it keeps its
/// status and comes back when the budget frees.
pub const DEFAULT_MAX_CONCURRENT_RECONCILES: u16 = 32;

/// Leader-election settings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// Namespace of the Lease; `None`: the pod's own in a cluster (service-account namespace
    /// file), the kubeconfig context's outside.
    pub namespace: Option<String>,
    /// This replica's identity in the Lease (unique per replica).
    pub identity: String,
    /// Lease duration, renew deadline, retry period.
    pub timing: LeaseTiming,
}

/// Why [`run`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No Kubernetes API to talk to.
    #[error("cannot reach the Kubernetes API ({0}); run inside a cluster or set KUBECONFIG")]
    NoCluster(kube::Error),
    /// The CRD is not installed (or RBAC refuses it).
    #[error(
        "the StableDiffusionDeployment CRD is not queryable ({0}); install it: kubectl apply -f crds/ (or kubectl apply -k manifests/base)"
    )]
    CrdNotQueryable(kube::Error),
    /// The health and metrics address cannot be bound.
    #[error("cannot listen on {addr} for /metrics and health ({source}); pick another --listen")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Leadership ended while running; the process must exit so that only one replica writes.
    #[error("lost the leader lease ({0}); exiting so that only one replica writes")]
    LeadershipLost(LeaseLost),
}

/// Errors of the Kubernetes edge (engine failures are reported in status, not here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// The object has no namespace or name.
    #[error("the object lacks {0}")]
    Malformed(&'static str),
}

impl Error {
    /// Metric label and Event reason.
    pub fn reason(&self) -> Reason {
        match self {
            Error::Kube(_) => Reason::KubernetesApi,
            Error::Malformed(_) => Reason::Malformed,
        }
    }
}

/// Shared state of the reconciler.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// The engine.
    pub engine: Arc<Engine>,
    /// Event recorder.
    pub recorder: Recorder,
    /// API-key Secrets (`namespace/name`) this process has seen carry our finalizer.
    guarded: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Cancelled on shutdown: reconciles stop at their next safe point (see [`reconcile`]).
    shutdown: CancellationToken,
}

impl Context {
    /// A context.
    pub fn new(client: Client, engine: Arc<Engine>, identity: &str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(identity.into()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            engine,
            guarded: Default::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// This context with reconciles that stop when `shutdown` is cancelled.
    pub fn stopping_on(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// Secrets from the resource's namespace.
pub struct KubeSecretStore {
    api: Api<Secret>,
}

impl SecretStore for KubeSecretStore {
    async fn secret(&self, name: &str) -> Result<Option<SecretData>, String> {
        match self.api.get_opt(name).await {
            Ok(Some(s)) => Ok(Some(
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .chain(
                        s.string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes())),
                    )
                    .collect(),
            )),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn is_paused(sdd: &StableDiffusionDeployment) -> bool {
    sdd.annotations()
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// One reconcile of one resource.
///
/// # Guarantees
/// - The finalizer `salad-sd.dev/cleanup` is on the resource before any container group can be
///   created for it (added with a JSON patch that tests the current list, so a concurrent
///   change is never dropped).
/// - The API key's Secret carries `salad-sd.dev/api-key-in-use` before the first create, so a
///   namespace deletion cannot take the key while a group may exist.
/// - On deletion the order is: the groups are deleted (SaladCloud answers 202; the resource
///   waits until they are gone), then **status** says no group is left, then the **Secret's
///   finalizer** is released (only when no other resource of the namespace uses the key), then
///   the **resource's finalizer**. A crash between any two steps repeats the later ones: status
///   saying no group was recorded lets a restarted operator release without the key.
///
/// # Caveats
/// - A resource whose key is gone while a group is recorded stays (Stalled, `SecretMissing`)
///   until the key is restored or `deletionPolicy: Orphan` is set: deleting it anyway would
///   leak a billed group.
/// - With the operator down, deletions wait; nothing is released behind its back.
///
/// On shutdown (the context's token) a reconcile stops at a safe point: before it starts, or
/// while the engine observes, builds or waits on SaladCloud (the engine's future is dropped,
/// which abandons a hanging SaladCloud call; nothing is lost, because the next leader observes
/// the world again: builds are found by their recipe tag, groups by their owner label, and an
/// abandoned upload leaves nothing the registry serves). Once the engine has an outcome, its
/// few Kubernetes writes (Events, status, finalizers, in their crash-safe order) finish.
pub async fn reconcile(
    sdd: Arc<StableDiffusionDeployment>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = sdd.namespace().ok_or(Error::Malformed("a namespace"))?;
    let name = sdd
        .metadata
        .name
        .clone()
        .ok_or(Error::Malformed("a name"))?;
    if ctx.shutdown.is_cancelled() {
        return Ok(Action::await_change());
    }
    let api: Api<StableDiffusionDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    if is_paused(&sdd) {
        tracing::info!(%ns, %name, "paused by annotation {PAUSED_ANNOTATION}; not reconciling");
        return Ok(Action::await_change());
    }
    let deleting = sdd.metadata.deletion_timestamp.is_some();
    let has_finalizer = sdd.finalizers().iter().any(|f| f == FINALIZER);
    if deleting && !has_finalizer {
        return Ok(Action::await_change());
    }
    let sdd = if !deleting && !has_finalizer {
        // Guard the container group before creating it. The reconcile goes on with the object
        // the API server returned: a requeue would read the cache, which may not have seen the
        // finalizer yet, and patch again against a stale list (a failed `test`, 422).
        let patch = json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current_finalizers(&sdd) },
            { "op": "add",
              "path": if sdd.finalizers().is_empty() { "/metadata/finalizers" } else { "/metadata/finalizers/-" },
              "value": if sdd.finalizers().is_empty() { json!([FINALIZER]) } else { json!(FINALIZER) } }
        ]);
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("valid JSON patch");
        let patched = api
            .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await?;
        Arc::new(patched)
    } else {
        sdd
    };

    let key_secret = sdd.spec.saladcloud.api_key_secret_ref.name.clone();
    if !deleting && validate(&sdd.spec).is_empty() {
        guard_api_key(&ctx, &ns, &key_secret).await?;
    }

    let store = KubeSecretStore {
        api: Api::namespaced(ctx.client.clone(), &ns),
    };
    let out = tokio::select! {
        biased;
        () = ctx.shutdown.cancelled() => {
            tracing::info!(%ns, %name, "shutting down: reconcile abandoned before it wrote anything; the next leader redoes it");
            return Ok(Action::await_change());
        }
        out = ctx.engine.reconcile_with(&sdd, &store, Mode::Apply, Some(&name)) => out,
    };
    if out
        .failure
        .as_ref()
        .is_some_and(|f| f.reason() == Reason::SecretMissing)
    {
        // Guard it again when it comes back (it may be a new Secret).
        ctx.guarded
            .lock()
            .unwrap()
            .remove(&format!("{ns}/{key_secret}"));
    }

    let reference = sdd.object_ref(&());
    for e in &out.events {
        let event = KubeEvent {
            type_: match e.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: e.reason.as_str().into(),
            note: Some(truncate(&e.message, 1024)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%ns, %name, error = %err, "could not publish event");
        }
    }

    if out.release_finalizer {
        // Crash-safe order: first status says no group is left (a restart with the key gone then
        // releases at once), then the key's Secret is let go, then the resource.
        write_status(&api, &name, sdd.status.as_ref(), &out.status).await?;
        release_api_key(&ctx, &ns, &key_secret, &sdd).await?;
        let patch = json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current_finalizers(&sdd) },
            { "op": "replace", "path": "/metadata/finalizers",
              "value": sdd.finalizers().iter().filter(|f| *f != FINALIZER).collect::<Vec<_>>() }
        ]);
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("valid JSON patch");
        api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await?;
        return Ok(Action::await_change());
    }

    if let Some(endpoint) = &out.endpoint {
        write_endpoint(&ctx.client, &sdd, &ns, endpoint).await?;
    }
    write_status(&api, &name, sdd.status.as_ref(), &out.status).await?;
    Ok(Action::requeue(out.requeue_after))
}

/// Puts [`API_KEY_FINALIZER`] on the API-key Secret before any container group can exist, so
/// that a namespace deletion cannot take the key away while a group needs deleting. A missing
/// Secret is left to the engine (it stalls with `SecretMissing`).
async fn guard_api_key(ctx: &Context, ns: &str, secret: &str) -> Result<(), Error> {
    let id = format!("{ns}/{secret}");
    if ctx.guarded.lock().unwrap().contains(&id) {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(meta) = api.get_metadata_opt(secret).await? else {
        return Ok(());
    };
    let finalizers = meta.metadata.finalizers.clone().unwrap_or_default();
    if meta.metadata.deletion_timestamp.is_none()
        && !finalizers.iter().any(|f| f == API_KEY_FINALIZER)
    {
        let patch = finalizer_patch(&finalizers, {
            let mut f = finalizers.clone();
            f.push(API_KEY_FINALIZER.to_string());
            f
        });
        api.patch_metadata(secret, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await?;
    }
    ctx.guarded.lock().unwrap().insert(id);
    Ok(())
}

/// Takes [`API_KEY_FINALIZER`] off the API-key Secret once no other resource of the namespace
/// uses it.
async fn release_api_key(
    ctx: &Context,
    ns: &str,
    secret: &str,
    sdd: &StableDiffusionDeployment,
) -> Result<(), Error> {
    let sdds: Api<StableDiffusionDeployment> = Api::namespaced(ctx.client.clone(), ns);
    let others = sdds.list(&ListParams::default()).await?;
    let still_used = others.items.iter().any(|o| {
        o.metadata.uid != sdd.metadata.uid && o.spec.saladcloud.api_key_secret_ref.name == secret
    });
    if still_used {
        return Ok(());
    }
    ctx.guarded
        .lock()
        .unwrap()
        .remove(&format!("{ns}/{secret}"));
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(meta) = api.get_metadata_opt(secret).await? else {
        return Ok(());
    };
    let finalizers = meta.metadata.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == API_KEY_FINALIZER) {
        return Ok(());
    }
    let kept = finalizers
        .iter()
        .filter(|f| *f != API_KEY_FINALIZER)
        .cloned()
        .collect();
    let patch = finalizer_patch(&finalizers, kept);
    api.patch_metadata(secret, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}

/// A JSON patch that sets the finalizers from `current` to `new`, failing (rather than dropping
/// someone else's change) when the list moved in between.
fn finalizer_patch(current: &[String], new: Vec<String>) -> json_patch::Patch {
    let current = if current.is_empty() {
        serde_json::Value::Null
    } else {
        json!(current)
    };
    let patch = if current.is_null() {
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current },
            { "op": "add", "path": "/metadata/finalizers", "value": new }
        ])
    } else {
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current },
            { "op": "replace", "path": "/metadata/finalizers", "value": new }
        ])
    };
    serde_json::from_value(patch).expect("valid JSON patch")
}

/// The finalizers as the API server stores them (an empty list is absent), for a `test` op that
/// makes the patch fail rather than drop someone else's concurrent change.
fn current_finalizers(sdd: &StableDiffusionDeployment) -> serde_json::Value {
    if sdd.finalizers().is_empty() {
        serde_json::Value::Null
    } else {
        json!(sdd.finalizers())
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Server-side apply of the status, skipped when only condition times would change.
pub async fn write_status(
    api: &Api<StableDiffusionDeployment>,
    name: &str,
    previous: Option<&StableDiffusionDeploymentStatus>,
    status: &StableDiffusionDeploymentStatus,
) -> Result<(), Error> {
    if previous.is_some_and(|p| same_ignoring_times(p, status)) {
        return Ok(());
    }
    let body = json!({
        "apiVersion": "salad-sd.dev/v1alpha1",
        "kind": "StableDiffusionDeployment",
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// Writes the ConfigMap `<name>-endpoint` (owned by the resource) that [`crate::report::endpoint`]
/// asked for, so apps can mount an endpoint that follows BlueGreen switches.
async fn write_endpoint(
    client: &Client,
    sdd: &StableDiffusionDeployment,
    ns: &str,
    endpoint: &EndpointWrite,
) -> Result<(), Error> {
    let owner = sdd
        .controller_owner_ref(&())
        .ok_or(Error::Malformed("a uid"))?;
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": endpoint.config_map,
            "namespace": ns,
            "labels": { "app.kubernetes.io/managed-by": FIELD_MANAGER },
            "ownerReferences": [owner],
        },
        "data": { "url": endpoint.url, "containerGroup": endpoint.container_group },
    });
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.patch(
        &endpoint.config_map,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(cm),
    )
    .await?;
    Ok(())
}

/// What to do after an error from [`reconcile`] (Kubernetes API trouble): back off with jitter.
pub fn error_policy(
    sdd: Arc<StableDiffusionDeployment>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(name = %sdd.name_any(), error = %error, "reconcile failed");
    // The engine's one rule, counted with the resource's other failures in a row.
    let failure = Failure::retry(error.reason(), error.to_string());
    let uid = sdd.metadata.uid.as_deref().unwrap_or_default();
    Action::requeue(ctx.engine.failed_outside(uid, &failure))
}

/// Runs the operator until SIGTERM or Ctrl-C (then the leader stops its reconciles, releases
/// the Lease and returns within [`SHUTDOWN_DRAIN`] plus one Lease write) or until leadership is
/// lost.
pub async fn run(config: OperatorConfig) -> Result<(), RunError> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        namespace = config.namespace.as_deref().unwrap_or("(all)"),
        leader_election = config.leader_election.is_some(),
        "salad-sd operator starting"
    );
    let client = Client::try_default().await.map_err(RunError::NoCluster)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run_with(client, config, shutdown).await
}

async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!(
        "shutting down: taking no new work, stopping running reconciles, then releasing the leader lease"
    );
    token.cancel();
}

/// How long reconciles get to stop after shutdown began before they are dropped. Most stop at
/// once (see [`reconcile`]); only Kubernetes writes of an outcome already reached may run on.
pub const SHUTDOWN_DRAIN: std::time::Duration = Duration::from_secs(3);

/// [`run`] with a given client, stopping when `shutdown` is cancelled.
///
/// `/readyz` answers 200 as soon as the API and the CRD answered: a standby replica is ready (it
/// is healthy and can take over). Leadership is the `salad_sd_leader` metric and the log.
pub async fn run_with(
    client: Client,
    config: OperatorConfig,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let sdds: Api<StableDiffusionDeployment> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    sdds.list(&ListParams::default().limit(1))
        .await
        .map_err(RunError::CrdNotQueryable)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    let metrics = Arc::new(Metrics::new());
    let engine = Arc::new(Engine::new(
        EngineConfig {
            salad_api_url: config.salad_api_url.clone(),
            poll_interval: config.poll_interval,
            builds: BuildSettings {
                concurrency: config.build_concurrency,
                insecure_registries: config.insecure_registries.clone(),
                allow_private_sources: config.allow_private_sources,
                ..BuildSettings::default()
            },
            gateway_override: config.gateway_url.clone(),
            backoff: config.backoff,
            ..EngineConfig::default()
        },
        metrics.clone(),
    ));
    let http = tokio::spawn(serve_http(listener, metrics.clone()));
    tracing::info!(listen = %config.listen, "ready; serving /metrics, /healthz and /readyz");

    let (lease, identity) = match &config.leader_election {
        None => (None, "salad-sd-operator".to_string()),
        Some(election) => {
            let namespace = leader::lease_namespace(election.namespace.as_deref(), &client);
            tracing::info!(identity = %election.identity, %namespace, lease = leader::LEASE_NAME, "waiting for the leader lease");
            tokio::select! {
                lease = LeaderLease::acquire(client.clone(), &namespace, &election.identity, election.timing) => {
                    (Some(lease), election.identity.clone())
                }
                () = shutdown.cancelled() => {
                    http.abort();
                    return Ok(());
                }
            }
        }
    };
    metrics.leader.set(1);
    tracing::info!(%identity, "leading; starting the controller");

    let ctx =
        Arc::new(Context::new(client.clone(), engine, &identity).stopping_on(shutdown.clone()));
    let controller = Controller::new(sdds, watcher::Config::default().any_semantic()).with_config(
        kube::runtime::controller::Config::default().concurrency(config.max_concurrent_reconciles),
    );
    let store = controller.store();
    let controller = controller
        .watches(
            secrets_metadata(&client, config.namespace.as_deref()),
            watcher::Config::default(),
            move |secret| {
                let ns = secret.namespace();
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == ns && references_secret(s, &name))
                    .map(|s| kube::runtime::reflector::ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown.clone().cancelled_owned());
    let run = controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        });
    // The controller stops taking work on shutdown and its reconciles stop at their next safe
    // point; what has not stopped within SHUTDOWN_DRAIN is dropped with the controller, so the
    // Lease is released (and a standby leads) seconds after SIGTERM, well inside the pod's
    // grace period, however long a SaladCloud call or a build would have taken.
    let drained = async {
        let mut run = std::pin::pin!(run);
        tokio::select! {
            () = &mut run => return,
            () = shutdown.cancelled() => {}
        }
        let started = tokio::time::Instant::now();
        tokio::select! {
            () = run => tracing::info!(took_ms = started.elapsed().as_millis() as u64, "reconciles stopped"),
            () = tokio::time::sleep(SHUTDOWN_DRAIN) => tracing::warn!(
                "reconciles still running {SHUTDOWN_DRAIN:?} after shutdown began; abandoning them (the next leader redoes them)"
            ),
        }
    };
    let result = match &lease {
        Some(lease) => tokio::select! {
            () = drained => Ok(()),
            lost = lease.hold() => Err(RunError::LeadershipLost(lost)),
        },
        None => {
            drained.await;
            Ok(())
        }
    };
    metrics.leader.set(0);
    if let (Ok(()), Some(lease)) = (&result, &lease) {
        lease.release().await;
    }
    http.abort();
    result
}

/// The Secrets the operator watches, by metadata only (list and watch ask the API server for
/// `PartialObjectMetadata`): a change of a Secret triggers the resources that name it, and the
/// operator never holds the data of Secrets it does not need; it reads the few a resource names,
/// by name, at reconcile time.
pub fn secrets_metadata(
    client: &Client,
    namespace: Option<&str>,
) -> Api<PartialObjectMeta<Secret>> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Does the resource refer to the Secret `name`?
pub fn references_secret(sdd: &StableDiffusionDeployment, name: &str) -> bool {
    sdd.spec
        .secret_refs()
        .iter()
        .any(|(secret, _)| secret == name)
}

async fn serve_http(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    use axum::{Router, routing::get};
    let leading = metrics.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let leader = leading.leader.get() == 1;
                async move {
                    if leader {
                        "ready (leader)"
                    } else {
                        "ready (standby)"
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "health server stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../../manifests/examples/sdxl-lora.yaml");

    #[test]
    fn every_secret_a_spec_names_triggers_it() {
        let sdd: StableDiffusionDeployment = serde_saphyr::from_str(SEED).unwrap();
        for name in ["salad-api-key", "registry-push", "ghcr-pull", "huggingface"] {
            assert!(references_secret(&sdd, name), "{name}");
        }
        assert!(!references_secret(&sdd, "unrelated"));
    }

    #[test]
    fn event_notes_are_cut_on_a_character_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, 1024);
        assert!(t.len() <= 1024 && s.starts_with(&t));
        assert_eq!(truncate("short", 1024), "short");
    }

    #[test]
    fn an_empty_finalizer_list_is_tested_as_absent() {
        let mut sdd: StableDiffusionDeployment = serde_saphyr::from_str(SEED).unwrap();
        sdd.metadata.finalizers = Some(vec![]);
        assert_eq!(current_finalizers(&sdd), serde_json::Value::Null);
        sdd.metadata.finalizers = Some(vec!["other.io/x".into()]);
        assert_eq!(current_finalizers(&sdd), json!(["other.io/x"]));
    }
}
