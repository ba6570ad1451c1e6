//! Image builds off the reconcile path: started by a reconcile, run in the background with a
//! concurrency limit, observed by later reconciles (with progress for status).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use salad_sd_image::{
    Builder, BuilderOptions, BuiltImage, Progress, ProgressSink, Recipe, RegistryCredentials,
    SourcePolicy,
};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::failure::{Backoff, Failure};
use crate::metrics::Metrics;

/// How builds are run.
#[derive(Clone, Debug)]
pub struct BuildSettings {
    /// Builds at once across all resources.
    pub concurrency: usize,
    /// `HOST:PORT` registries reached over plain http (tests, demo).
    pub insecure_registries: Vec<String>,
    /// Allow http and private-network model URLs (tests, demo).
    pub allow_private_sources: bool,
    /// A found image is trusted without asking the registry again for this long.
    pub cache_ttl: Duration,
}

impl Default for BuildSettings {
    fn default() -> Self {
        Self {
            concurrency: 2,
            insecure_registries: Vec::new(),
            allow_private_sources: false,
            cache_ttl: Duration::from_secs(600),
        }
    }
}

/// What is known about the image of one recipe in one repository.
#[derive(Clone, Debug)]
pub enum BuildState {
    /// Nothing known: neither found nor being built.
    Unknown,
    /// Being built; bytes done / total per layer.
    Running(LayerBytes),
    /// In the registry.
    Ready(BuiltImage),
    /// The build (or the look-up) failed; it is retried when its backoff has passed.
    Failed(Failure),
}

/// Bytes done and total, per layer name.
pub type LayerBytes = BTreeMap<String, (u64, Option<u64>)>;

enum Job {
    Running(Arc<Mutex<LayerBytes>>),
    Ready(BuiltImage, Instant),
    Failed { failure: Failure, until: Instant },
}

/// Tracks builds by `(repository, recipe key)`.
pub struct BuildManager {
    settings: BuildSettings,
    /// When a failed recipe is built again ([`Backoff::build_after`]).
    backoff: Backoff,
    permits: Arc<Semaphore>,
    jobs: Mutex<HashMap<String, Job>>,
    /// Failed builds in a row, per recipe key (reset by a success).
    failures: Mutex<HashMap<String, u32>>,
    metrics: Arc<Metrics>,
}

struct ProgressMap(Arc<Mutex<LayerBytes>>);

impl ProgressSink for ProgressMap {
    fn on_progress(&self, p: &Progress) {
        if p.layer.starts_with("base:") {
            return;
        }
        self.0
            .lock()
            .unwrap()
            .insert(p.layer.clone(), (p.bytes_done, p.bytes_total));
    }
}

/// The key of a recipe in a repository: everything that determines the image except the base
/// digest (resolved by the builder). Secrets are redacted by the recipe's Debug.
pub fn job_key(repository: &str, recipe: &Recipe) -> String {
    use sha2::{Digest, Sha256};
    let text = format!("{repository}\n{recipe:?}");
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl BuildManager {
    /// A manager with its own concurrency limit.
    pub fn new(settings: BuildSettings, backoff: Backoff, metrics: Arc<Metrics>) -> Self {
        Self {
            backoff,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
            jobs: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn builder(
        &self,
        credentials: RegistryCredentials,
        progress: Option<Arc<dyn ProgressSink>>,
    ) -> Result<Builder, salad_sd_image::Error> {
        Builder::new(BuilderOptions {
            insecure_registries: self.settings.insecure_registries.clone(),
            source_policy: SourcePolicy {
                allow_private_sources: self.settings.allow_private_sources,
                allow_file_sources: false,
            },
            registry_credentials: credentials,
            progress,
            ..BuilderOptions::default()
        })
    }

    /// What is known, asking the registry when nothing is cached (one HEAD of the base and
    /// one of the recipe tag).
    pub async fn observe(
        &self,
        repository: &str,
        recipe: &Recipe,
        credentials: &RegistryCredentials,
    ) -> BuildState {
        let key = job_key(repository, recipe);
        {
            let mut jobs = self.jobs.lock().unwrap();
            match jobs.get(&key) {
                Some(Job::Running(p)) => return BuildState::Running(p.lock().unwrap().clone()),
                Some(Job::Ready(img, at)) if at.elapsed() < self.settings.cache_ttl => {
                    return BuildState::Ready(img.clone());
                }
                Some(Job::Failed { failure, until }) => {
                    if Instant::now() < *until {
                        return BuildState::Failed(failure.clone());
                    }
                    jobs.remove(&key);
                }
                _ => {}
            }
        }
        let found = match self.builder(credentials.clone(), None) {
            Ok(b) => b.find_existing(recipe, repository).await,
            Err(e) => Err(e),
        };
        match found {
            Ok(Some(img)) => {
                self.jobs
                    .lock()
                    .unwrap()
                    .insert(key, Job::Ready(img.clone(), Instant::now()));
                BuildState::Ready(img)
            }
            Ok(None) => BuildState::Unknown,
            Err(e) => BuildState::Failed(Failure::from(e).context("cannot look up the image")),
        }
    }

    /// Builds (or finds) the image of `recipe` in this task, with `progress` told of every
    /// layer: `salad-sd build` and `apply`, on the same builder settings as the background
    /// builds. The image is then known to [`BuildManager::observe`].
    pub async fn build_now(
        &self,
        repository: &str,
        recipe: &Recipe,
        credentials: RegistryCredentials,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<BuiltImage, Failure> {
        let builder = self
            .builder(credentials, Some(progress))
            .map_err(Failure::from)?;
        let started = Instant::now();
        let img = builder
            .build(recipe, repository)
            .await
            .map_err(|e| Failure::from(e).context("image build failed"))?;
        self.metrics.record_build(&img, started.elapsed());
        self.jobs.lock().unwrap().insert(
            job_key(repository, recipe),
            Job::Ready(img.clone(), Instant::now()),
        );
        Ok(img)
    }

    /// Takes `image` as the built image of `recipe` (tests without a registry).
    #[cfg(feature = "testing")]
    pub fn assume_built(&self, repository: &str, recipe: &Recipe, image: BuiltImage) {
        self.jobs.lock().unwrap().insert(
            job_key(repository, recipe),
            Job::Ready(image, Instant::now()),
        );
    }

    /// Starts a build unless one for the same recipe is running or done.
    pub fn start(
        self: &Arc<Self>,
        repository: &str,
        recipe: Recipe,
        credentials: RegistryCredentials,
    ) {
        let key = job_key(repository, &recipe);
        let progress = Arc::new(Mutex::new(BTreeMap::new()));
        {
            let mut jobs = self.jobs.lock().unwrap();
            if matches!(jobs.get(&key), Some(Job::Running(_)) | Some(Job::Ready(..))) {
                return;
            }
            jobs.insert(key.clone(), Job::Running(progress.clone()));
        }
        self.metrics.builds_in_progress.inc();
        let builder = match self.builder(credentials, Some(Arc::new(ProgressMap(progress)))) {
            Ok(b) => b,
            Err(e) => {
                self.finish(&key, Err(e), Duration::ZERO);
                return;
            }
        };
        let permits = self.permits.clone();
        let repository = repository.to_string();
        let me = Arc::clone(self);
        // The build outlives the reconcile that started it: it keeps the reconcile's span, so its
        // logs name the resource.
        let span = tracing::info_span!(parent: tracing::Span::current(), "build", repository = %repository);
        tokio::spawn(
            async move {
                let _permit = permits.acquire_owned().await;
                let started = Instant::now();
                let result = builder.build(&recipe, &repository).await;
                me.finish(&key, result, started.elapsed());
            }
            .instrument(span),
        );
    }

    fn finish(&self, key: &str, result: Result<BuiltImage, salad_sd_image::Error>, took: Duration) {
        self.metrics.builds_in_progress.dec();
        let job = match result {
            Ok(img) => {
                self.metrics.record_build(&img, took);
                self.failures.lock().unwrap().remove(key);
                Job::Ready(img, Instant::now())
            }
            Err(e) => {
                tracing::warn!(error = %e, "image build failed");
                let failures = {
                    let mut f = self.failures.lock().unwrap();
                    let n = f.entry(key.to_string()).or_default();
                    *n = n.saturating_add(1);
                    *n
                };
                Job::Failed {
                    failure: Failure::from(e).context("image build failed"),
                    until: Instant::now() + self.backoff.build_after(failures),
                }
            }
        };
        self.jobs.lock().unwrap().insert(key.to_string(), job);
    }
}
