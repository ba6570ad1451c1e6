//! One way for tests and benchmarks to build an [`Engine`]: test defaults (quick progress
//! polls), the SaladCloud to talk to (the simulator's URL or the in-memory [`FakeSalad`]), the
//! local registry, the simulator's gateway, fast retries.

use std::sync::Arc;
use std::time::Duration;

use saladcloud::RetryPolicy;

use crate::engine::{Engine, EngineConfig};
use crate::fake::FakeSalad;
use crate::metrics::Metrics;
use crate::salad::SaladCloud;

/// Builds a test [`Engine`].
pub struct EngineBuilder {
    cfg: EngineConfig,
    salad: Option<Arc<dyn SaladCloud>>,
    metrics: Arc<Metrics>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            cfg: EngineConfig {
                progress_interval: Duration::from_millis(100),
                ..EngineConfig::default()
            },
            salad: None,
            metrics: Arc::new(Metrics::new()),
        }
    }
}

impl EngineBuilder {
    /// Test defaults; SaladCloud at the default URL until one is given.
    pub fn new() -> Self {
        Self::default()
    }

    /// SaladCloud at `base_url` (the simulator's).
    pub fn simulator(mut self, base_url: impl Into<String>) -> Self {
        self.cfg.salad_api_url = base_url.into();
        self
    }

    /// The in-memory SaladCloud.
    pub fn fake(mut self, fake: &FakeSalad) -> Self {
        self.salad = Some(Arc::new(fake.clone()));
        self
    }

    /// Push to the local registry at `host_port` over http, and allow model URLs on loopback.
    pub fn local_registry(mut self, host_port: impl Into<String>) -> Self {
        self.cfg.builds.insecure_registries = vec![host_port.into()];
        self.cfg.builds.allow_private_sources = true;
        self
    }

    /// Smoke tests go to the simulator's gateway at `addr` (`host:port`).
    pub fn gateway(mut self, addr: impl std::fmt::Display) -> Self {
        self.cfg.gateway_override = Some(format!("http://{addr}"));
        self
    }

    /// SaladCloud calls retried by `salad_retry`, failed builds built again within a fraction
    /// of a second: failure tests run in seconds.
    pub fn fast_retries(mut self, salad_retry: RetryPolicy) -> Self {
        self.cfg.salad_retry = salad_retry;
        self.cfg.backoff.build.initial_backoff = Duration::from_millis(200);
        self
    }

    /// Requeue while work is in progress.
    pub fn progress_interval(mut self, d: Duration) -> Self {
        self.cfg.progress_interval = d;
        self
    }

    /// Drift check interval.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.cfg.poll_interval = d;
        self
    }

    /// Any other setting.
    pub fn configure(mut self, f: impl FnOnce(&mut EngineConfig)) -> Self {
        f(&mut self.cfg);
        self
    }

    /// The engine.
    pub fn build(self) -> Engine {
        match self.salad {
            Some(salad) => Engine::with_salad(self.cfg, self.metrics, salad),
            None => Engine::new(self.cfg, self.metrics),
        }
    }
}

/// Takes the image of `sdd`'s recipe as built, with a digest of `digit` repeated: engine tests
/// that need no registry.
pub async fn assume_image_built<S: crate::secrets::SecretStore>(
    engine: &Engine,
    sdd: &salad_sd_api::StableDiffusionDeployment,
    store: &S,
    digit: char,
) {
    let resolved = crate::secrets::resolve(&sdd.spec, store)
        .await
        .expect("the test's Secrets resolve");
    let recipe = crate::desired::recipe(&sdd.spec, &resolved);
    let hex = digit.to_string().repeat(64);
    let repository = &sdd.spec.image.repository;
    engine.builds().assume_built(
        repository,
        &recipe,
        salad_sd_image::BuiltImage {
            reference: format!("{repository}@sha256:{hex}"),
            digest: format!("sha256:{hex}"),
            tag: "recipe".into(),
            recipe_hash: "recipe".into(),
            layers: Vec::new(),
            bytes_uploaded: 0,
            bytes_downloaded: 0,
        },
    );
}
