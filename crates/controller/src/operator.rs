//! The Kubernetes edge: watches StableDiffusionDeployments (and the Secrets they reference),
//! runs the engine, and writes back status (server-side apply), Events, the finalizer and the
//! endpoint ConfigMap. Leader election keeps a second replica from writing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use salad_sd_api::names::{FIELD_MANAGER, FINALIZER, PAUSED_ANNOTATION};
use salad_sd_api::{StableDiffusionDeployment, StableDiffusionDeploymentStatus};
use serde_json::json;

use crate::builds::BuildSettings;
use crate::engine::{Engine, EngineConfig, EventType, Mode, parse_duration};
use crate::failure::Failure;
use crate::metrics::Metrics;
use crate::report::same_ignoring_times;
use crate::secrets::{SecretData, SecretStore};

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
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "salad-sd-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "salad-sd-operator")]
    pub identity: String,
    /// Send smoke tests to this URL with the access domain as Host (the simulator's gateway).
    #[arg(long)]
    pub gateway_url: Option<String>,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration like 30s, 5m or 1h"))
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
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApi",
            Error::Malformed(_) => "Malformed",
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
        }
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
    if !deleting && !has_finalizer {
        // Guard the container group before creating it; the watch brings us back.
        let patch = json!([
            { "op": "test", "path": "/metadata/finalizers", "value": current_finalizers(&sdd) },
            { "op": "add",
              "path": if sdd.finalizers().is_empty() { "/metadata/finalizers" } else { "/metadata/finalizers/-" },
              "value": if sdd.finalizers().is_empty() { json!([FINALIZER]) } else { json!(FINALIZER) } }
        ]);
        let patch: json_patch::Patch = serde_json::from_value(patch).expect("valid JSON patch");
        api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await?;
        return Ok(Action::requeue(Duration::from_millis(1)));
    }

    let store = KubeSecretStore {
        api: Api::namespaced(ctx.client.clone(), &ns),
    };
    let out = ctx.engine.reconcile(&sdd, &store, Mode::Apply).await;

    let reference = sdd.object_ref(&());
    for e in &out.events {
        let event = KubeEvent {
            type_: match e.type_ {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: e.reason.clone(),
            note: Some(truncate(&e.message, 1024)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(%ns, %name, error = %err, "could not publish event");
        }
    }

    if out.release_finalizer {
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

    let mut status = out.status;
    if !deleting {
        status.endpoint_config_map =
            ensure_endpoint(&ctx.client, &sdd, &ns, &name, &status).await?;
    }
    write_status(&api, &name, sdd.status.as_ref(), &status).await?;
    Ok(Action::requeue(out.requeue_after))
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

/// The ConfigMap `<name>-endpoint` (owned by the resource) holding the current access URL, so
/// apps can mount an endpoint that follows BlueGreen switches.
async fn ensure_endpoint(
    client: &Client,
    sdd: &StableDiffusionDeployment,
    ns: &str,
    name: &str,
    status: &StableDiffusionDeploymentStatus,
) -> Result<Option<String>, Error> {
    let Some(url) = status
        .container_group
        .as_ref()
        .and_then(|g| g.access_url.clone())
    else {
        return Ok(status.endpoint_config_map.clone());
    };
    let cm_name = format!("{name}-endpoint");
    let ready = status.is_true("Ready");
    // Follow the group only once it serves, so the endpoint never points at a cold group.
    if !ready && status.endpoint_config_map.is_some() {
        return Ok(status.endpoint_config_map.clone());
    }
    // Written already for this URL (the previous status says so): no write per poll.
    let previous = sdd.status.as_ref();
    let written_url = previous
        .filter(|p| p.endpoint_config_map.as_deref() == Some(cm_name.as_str()))
        .and_then(|p| p.container_group.as_ref())
        .and_then(|g| g.access_url.as_deref());
    let previously_ready = previous.is_some_and(|p| p.is_true("Ready"));
    if ready && previously_ready && written_url == Some(url.as_str()) {
        return Ok(Some(cm_name));
    }
    let owner = sdd
        .controller_owner_ref(&())
        .ok_or(Error::Malformed("a uid"))?;
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cm_name,
            "namespace": ns,
            "labels": { "app.kubernetes.io/managed-by": FIELD_MANAGER },
            "ownerReferences": [owner],
        },
        "data": { "url": url, "containerGroup": status.container_group.as_ref().map(|g| g.name.clone()).unwrap_or_default() },
    });
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.patch(
        &cm_name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(cm),
    )
    .await?;
    Ok(Some(cm_name))
}

/// What to do after an error from [`reconcile`] (Kubernetes API trouble): back off with jitter.
pub fn error_policy(
    sdd: Arc<StableDiffusionDeployment>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(name = %sdd.name_any(), error = %error, "reconcile failed");
    ctx.engine.metrics().record_error(error.category());
    // The engine's one backoff policy, as for a third transient failure in a row (20-40 s).
    let failure = Failure::retry(error.category(), error.to_string());
    Action::requeue(ctx.engine.backoff().after(&failure, 3))
}

/// Runs the operator until a signal arrives or leadership is lost.
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the Kubernetes API ({e}); run inside a cluster or set KUBECONFIG"
        )
    })?;
    let sdds: Api<StableDiffusionDeployment> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = sdds.list(&ListParams::default().limit(1)).await {
        anyhow::bail!(
            "the StableDiffusionDeployment CRD is not queryable ({e}); install it: kubectl apply -f crds/ (or kustomize build manifests/base)"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let engine = Arc::new(Engine::new(
        EngineConfig {
            salad_api_url: args.salad_api_url.clone(),
            poll_interval: args.poll_interval,
            builds: BuildSettings {
                concurrency: args.build_concurrency,
                insecure_registries: args.insecure_registries.clone(),
                allow_private_sources: args.allow_private_sources,
                ..BuildSettings::default()
            },
            gateway_override: args.gateway_url.clone(),
            ..EngineConfig::default()
        },
        metrics.clone(),
    ));
    let ready = Arc::new(AtomicBool::new(false));
    tokio::spawn(serve_http(args.listen, metrics.clone(), ready.clone()));

    let lease = if args.no_leader_election {
        None
    } else {
        Some(LeaderLease::acquire(client.clone(), &args.lease_namespace, &args.identity).await?)
    };
    ready.store(true, Ordering::Relaxed);
    tracing::info!(identity = %args.identity, "leading; starting the controller");

    let ctx = Arc::new(Context::new(client.clone(), engine, &args.identity));
    let controller = Controller::new(sdds, watcher::Config::default().any_semantic());
    let store = controller.store();
    let secrets: Api<Secret> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = controller
        .watches(
            secrets,
            watcher::Config::default(),
            move |secret: Secret| {
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
        .shutdown_on_signal();
    let run = controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "controller event");
            }
        });
    match lease {
        Some(lease) => {
            tokio::select! {
                _ = run => {}
                lost = lease.hold() => {
                    anyhow::bail!("lost the leader lease ({lost}); exiting so that only one replica writes");
                }
            }
        }
        None => run.await,
    }
    Ok(())
}

/// Does the resource refer to the Secret `name`?
pub fn references_secret(sdd: &StableDiffusionDeployment, name: &str) -> bool {
    let s = &sdd.spec;
    s.saladcloud.api_key_secret_ref.name == name
        || s.image
            .push_secret_ref
            .as_ref()
            .is_some_and(|r| r.name == name)
        || s.image
            .registry_auth
            .as_ref()
            .is_some_and(|r| r.secret_ref.name == name)
        || s.server.env.iter().any(|e| {
            e.value_from
                .as_ref()
                .is_some_and(|v| v.secret_key_ref.name == name)
        })
        || s.models.iter().any(|m| {
            m.source
                .auth_secret_ref
                .as_ref()
                .is_some_and(|r| r.name == name)
        })
        || s.extensions.iter().any(|m| {
            m.source
                .auth_secret_ref
                .as_ref()
                .is_some_and(|r| r.name == name)
        })
}

async fn serve_http(addr: SocketAddr, metrics: Arc<Metrics>, ready: Arc<AtomicBool>) {
    use axum::{Router, http::StatusCode, routing::get};
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
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    if ready {
                        (StatusCode::OK, "ready")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "waiting for the leader lease",
                        )
                    }
                }
            }),
        );
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "health server stopped");
            }
        }
        Err(e) => tracing::error!(%addr, error = %e, "cannot listen for /metrics and health"),
    }
}

/// A held leader-election Lease (coordination.k8s.io/v1).
pub struct LeaderLease {
    api: Api<Lease>,
    identity: String,
}

const LEASE_NAME: &str = "salad-sd-operator";
const LEASE_SECONDS: i32 = 30;

impl LeaderLease {
    /// Waits until this replica holds the Lease.
    pub async fn acquire(client: Client, namespace: &str, identity: &str) -> anyhow::Result<Self> {
        let lease = Self {
            api: Api::namespaced(client, namespace),
            identity: identity.into(),
        };
        loop {
            match lease.try_take().await {
                Ok(true) => return Ok(lease),
                Ok(false) => tracing::info!("another replica leads; waiting"),
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }

    /// Takes or renews the Lease; `false` when another live holder has it.
    async fn try_take(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        match self.api.get_opt(LEASE_NAME).await? {
            None => {
                let lease: Lease = serde_json::from_value(json!({
                    "metadata": { "name": LEASE_NAME },
                    "spec": { "holderIdentity": self.identity, "leaseDurationSeconds": LEASE_SECONDS,
                              "acquireTime": now, "renewTime": now, "leaseTransitions": 0 }
                }))
                .expect("valid lease");
                self.api.create(&PostParams::default(), &lease).await?;
                Ok(true)
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let expired = spec.renew_time.as_ref().is_none_or(|t| {
                    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
                    t.0.as_second() + secs < now.0.as_second()
                });
                if !mine && !expired {
                    return Ok(false);
                }
                if !mine {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(now.clone());
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.renew_time = Some(now);
                spec.lease_duration_seconds = Some(LEASE_SECONDS);
                // resourceVersion makes this a compare-and-swap: a concurrent taker gets 409.
                self.api
                    .replace(LEASE_NAME, &PostParams::default(), &lease)
                    .await?;
                Ok(true)
            }
        }
    }

    /// Renews until renewal fails; returns why.
    pub async fn hold(self) -> String {
        let mut failures = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            match self.try_take().await {
                Ok(true) => failures = 0,
                Ok(false) => return "another replica holds the lease".into(),
                Err(e) => {
                    failures += 1;
                    if failures * 10 >= LEASE_SECONDS as u32 - 5 {
                        return format!("could not renew: {e}");
                    }
                }
            }
        }
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
