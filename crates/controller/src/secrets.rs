//! Reading the Secrets a spec refers to. The kube edge reads Kubernetes Secrets; the CLI reads
//! environment variables and files. Values never reach logs, events or status.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use salad_sd_api::{RegistryAuthKind, StableDiffusionDeploymentSpec};
use salad_sd_image::RegistryCredentials;
use saladcloud::ApiKey;
use saladcloud::model::{RegistryAuthentication, Secret};

/// The data of one Secret: key → bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Where Secrets come from.
pub trait SecretStore: Send + Sync {
    /// The data of the Secret `name` in the resource's namespace, or `None` if it does not exist.
    fn secret(&self, name: &str)
    -> impl Future<Output = Result<Option<SecretData>, String>> + Send;
}

/// A Secret the spec names is missing or incomplete: only the user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No such Secret.
    #[error(
        "Secret `{name}` (for {purpose}) does not exist in this namespace: create it or fix the reference"
    )]
    Missing {
        /// Secret name.
        name: String,
        /// What it is for.
        purpose: String,
    },
    /// The Secret lacks the key.
    #[error("Secret `{name}` (for {purpose}) has no key `{key}`: add it or fix the reference")]
    MissingKey {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
        /// What it is for.
        purpose: String,
    },
    /// The Secret's content is unusable.
    #[error("Secret `{name}` (for {purpose}) is not usable: {reason}")]
    Invalid {
        /// Secret name.
        name: String,
        /// What it is for.
        purpose: String,
        /// Why.
        reason: String,
    },
    /// The store could not be read (transient).
    #[error("could not read Secret `{name}`: {reason}")]
    Unavailable {
        /// Secret name.
        name: String,
        /// Why.
        reason: String,
    },
}

impl SecretError {
    /// Only a change of the spec or the Secret fixes it.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, SecretError::Unavailable { .. })
    }
}

/// Every secret value a reconcile needs, read once per reconcile (so a rotated Secret is used at
/// the next reconcile).
#[derive(Clone, Default)]
pub struct ResolvedSecrets {
    /// The SaladCloud API key.
    pub api_key: Option<ApiKey>,
    /// The server environment with `valueFrom` resolved.
    pub env: BTreeMap<String, String>,
    /// Download tokens by model or extension name.
    pub model_tokens: BTreeMap<String, String>,
    /// Tokens the container sends when it fetches a model at start, by model name (only from
    /// `fetchAuthSecretRef`).
    pub fetch_tokens: BTreeMap<String, String>,
    /// Push credentials for the image repository.
    pub push_credentials: RegistryCredentials,
    /// Pull credentials handed to SaladCloud.
    pub pull_auth: Option<RegistryAuthentication>,
}

impl fmt::Debug for ResolvedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedSecrets")
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field(
                "model_tokens",
                &self.model_tokens.keys().collect::<Vec<_>>(),
            )
            .field(
                "fetch_tokens",
                &self.fetch_tokens.keys().collect::<Vec<_>>(),
            )
            .field("pull_auth", &self.pull_auth.is_some())
            .finish()
    }
}

async fn read_key<S: SecretStore>(
    store: &S,
    name: &str,
    key: &str,
    purpose: &str,
) -> Result<String, SecretError> {
    let data = read_all(store, name, purpose).await?;
    let value = data.get(key).ok_or_else(|| SecretError::MissingKey {
        name: name.into(),
        key: key.into(),
        purpose: purpose.into(),
    })?;
    String::from_utf8(value.clone())
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|_| SecretError::Invalid {
            name: name.into(),
            purpose: purpose.into(),
            reason: format!("key `{key}` is not UTF-8 text"),
        })
}

async fn read_all<S: SecretStore>(
    store: &S,
    name: &str,
    purpose: &str,
) -> Result<SecretData, SecretError> {
    store
        .secret(name)
        .await
        .map_err(|reason| SecretError::Unavailable {
            name: name.into(),
            reason,
        })?
        .ok_or_else(|| SecretError::Missing {
            name: name.into(),
            purpose: purpose.into(),
        })
}

/// A store that reads each Secret at most once (one reconcile's worth of reads).
struct Once<'a, S> {
    inner: &'a S,
    seen: std::sync::Mutex<BTreeMap<String, Option<SecretData>>>,
}

impl<'a, S> Once<'a, S> {
    fn new(inner: &'a S) -> Self {
        Self {
            inner,
            seen: Default::default(),
        }
    }
}

impl<S: SecretStore> SecretStore for Once<'_, S> {
    async fn secret(&self, name: &str) -> Result<Option<SecretData>, String> {
        if let Some(hit) = self.seen.lock().unwrap().get(name) {
            return Ok(hit.clone());
        }
        let fetched = self.inner.secret(name).await?;
        self.seen
            .lock()
            .unwrap()
            .insert(name.to_string(), fetched.clone());
        Ok(fetched)
    }
}

/// Reads only the SaladCloud API key (enough to delete the container group).
pub async fn resolve_api_key<S: SecretStore>(
    spec: &StableDiffusionDeploymentSpec,
    store: &S,
) -> Result<ResolvedSecrets, SecretError> {
    let key_ref = &spec.saladcloud.api_key_secret_ref;
    let key = read_key(store, &key_ref.name, &key_ref.key, "the SaladCloud API key").await?;
    Ok(ResolvedSecrets {
        api_key: Some(ApiKey::new(key)),
        ..ResolvedSecrets::default()
    })
}

/// Reads everything `spec` refers to.
pub async fn resolve<S: SecretStore>(
    spec: &StableDiffusionDeploymentSpec,
    store: &S,
) -> Result<ResolvedSecrets, SecretError> {
    // Several keys often live in one Secret (username and password, say): read each once.
    let store = &Once::new(store);
    let mut out = ResolvedSecrets::default();
    let key_ref = &spec.saladcloud.api_key_secret_ref;
    out.api_key = Some(ApiKey::new(
        read_key(store, &key_ref.name, &key_ref.key, "the SaladCloud API key").await?,
    ));
    for env in &spec.server.env {
        let value = match (&env.value, &env.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                let r = &from.secret_key_ref;
                read_key(
                    store,
                    &r.name,
                    &r.key,
                    &format!("environment variable {}", env.name),
                )
                .await?
            }
            (None, None) => continue,
        };
        out.env.insert(env.name.clone(), value);
    }
    let sources = spec
        .models
        .iter()
        .map(|m| (&m.name, &m.source))
        .chain(spec.extensions.iter().map(|e| (&e.name, &e.source)));
    for (name, source) in sources {
        if let Some(r) = &source.auth_secret_ref {
            let token = read_key(
                store,
                &r.name,
                &r.key,
                &format!("the download token of {name}"),
            )
            .await?;
            out.model_tokens.insert(name.clone(), token);
        }
    }
    for m in &spec.models {
        if let Some(r) = &m.source.fetch_auth_secret_ref {
            let token = read_key(
                store,
                &r.name,
                &r.key,
                &format!("the token {} fetches at start with", m.name),
            )
            .await?;
            out.fetch_tokens.insert(m.name.clone(), token);
        }
    }
    if let Some(push) = &spec.image.push_secret_ref {
        let purpose = "pushing the image";
        let data = read_all(store, &push.name, purpose).await?;
        let json = data
            .get(".dockerconfigjson")
            .ok_or_else(|| SecretError::MissingKey {
                name: push.name.clone(),
                key: ".dockerconfigjson".into(),
                purpose: purpose.into(),
            })?;
        out.push_credentials =
            RegistryCredentials::from_dockerconfigjson(json).map_err(|e| SecretError::Invalid {
                name: push.name.clone(),
                purpose: purpose.into(),
                reason: e.to_string(),
            })?;
    }
    if let Some(auth) = &spec.image.registry_auth {
        let name = &auth.secret_ref.name;
        let purpose = "SaladCloud pulling the image";
        let get = |key: &'static str| read_key(store, name, key, purpose);
        out.pull_auth = Some(match auth.kind {
            RegistryAuthKind::Basic => RegistryAuthentication::Basic {
                username: get("username").await?,
                password: Secret::new(get("password").await?),
            },
            RegistryAuthKind::DockerHub => RegistryAuthentication::DockerHub {
                username: get("username").await?,
                personal_access_token: Secret::new(get("personalAccessToken").await?),
            },
            RegistryAuthKind::AwsEcr => RegistryAuthentication::AwsEcr {
                access_key_id: get("accessKeyId").await?,
                secret_access_key: Secret::new(get("secretAccessKey").await?),
            },
            RegistryAuthKind::GcpGar => RegistryAuthentication::GcpGar {
                service_key: Secret::new(get("serviceKey").await?),
            },
            RegistryAuthKind::GcpGcr => RegistryAuthentication::GcpGcr {
                service_key: Secret::new(get("serviceKey").await?),
            },
        });
    }
    Ok(out)
}

/// A store backed by an in-memory map (tests, and the CLI after it has read its sources).
#[derive(Clone, Default, Debug)]
pub struct MapSecretStore(pub BTreeMap<String, BTreeMap<String, Vec<u8>>>);

impl MapSecretStore {
    /// Adds a key.
    pub fn with(mut self, secret: &str, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.0
            .entry(secret.into())
            .or_default()
            .insert(key.into(), value.into());
        self
    }
}

impl SecretStore for MapSecretStore {
    async fn secret(&self, name: &str) -> Result<Option<SecretData>, String> {
        Ok(self.0.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting(MapSecretStore, AtomicUsize);

    impl SecretStore for Counting {
        async fn secret(&self, name: &str) -> Result<Option<SecretData>, String> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.secret(name).await
        }
    }

    #[tokio::test]
    async fn each_secret_is_read_once_per_resolve() {
        let mut sdd: salad_sd_api::StableDiffusionDeployment = serde_saphyr::from_str(
            include_str!("../../../manifests/examples/sdnext-dreamshaper.yaml"),
        )
        .unwrap();
        sdd.spec.image.push_secret_ref = None;
        let store = Counting(
            MapSecretStore::default()
                .with("salad-api-key", "apiKey", "k")
                .with("ghcr-pull", "username", "u")
                .with("ghcr-pull", "password", "p"),
            AtomicUsize::new(0),
        );
        let resolved = resolve(&sdd.spec, &store).await.unwrap();
        assert!(matches!(
            resolved.pull_auth,
            Some(RegistryAuthentication::Basic { .. })
        ));
        assert_eq!(
            store.1.load(Ordering::SeqCst),
            2,
            "salad-api-key and ghcr-pull, once each"
        );
    }
}
