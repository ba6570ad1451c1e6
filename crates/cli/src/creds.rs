//! Credentials for the file-driven commands: read from environment variables and files, never
//! from command-line arguments (which show in `ps` and shell history).
//!
//! Every Secret key the spec refers to is looked up, first match wins:
//! 1. for `spec.saladcloud.apiKeySecretRef` only: `SALAD_API_KEY`, then the file named by
//!    `SALAD_API_KEY_FILE`;
//! 2. `SALAD_SD_SECRET_<SECRET>_<KEY>`, then the file named by `SALAD_SD_SECRET_<SECRET>_<KEY>_FILE`,
//!    where `<SECRET>` and `<KEY>` are upper-cased, camelCase split with `_`, and every other
//!    character turned into `_` (`registry-push` / `.dockerconfigjson` →
//!    `SALAD_SD_SECRET_REGISTRY_PUSH_DOCKERCONFIGJSON`; `hf` / `token` → `SALAD_SD_SECRET_HF_TOKEN`);
//! 3. the file `<secrets-dir>/<secret>/<key>` (`--secrets-dir` or `SALAD_SD_SECRETS_DIR`), the
//!    layout of a Kubernetes Secret mounted as a volume.
//!
//! A key found nowhere is left out; the engine then reports which Secret and key is missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use salad_sd_api::StableDiffusionDeploymentSpec;
use salad_sd_controller::secrets::MapSecretStore;

/// Environment variable with the SaladCloud API key.
pub const API_KEY_ENV: &str = "SALAD_API_KEY";
/// Environment variable naming a file with the SaladCloud API key.
pub const API_KEY_FILE_ENV: &str = "SALAD_API_KEY_FILE";
/// Prefix of the generic Secret variables.
pub const SECRET_ENV_PREFIX: &str = "SALAD_SD_SECRET_";

/// Every `(secret, key)` the spec refers to.
pub fn referenced(spec: &StableDiffusionDeploymentSpec) -> BTreeSet<(String, String)> {
    spec.secret_refs()
}

/// `SALAD_SD_SECRET_<SECRET>_<KEY>` for a Secret key.
pub fn env_name(secret: &str, key: &str) -> String {
    format!("{SECRET_ENV_PREFIX}{}_{}", norm(secret), norm(key))
}

fn norm(s: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in s.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_uppercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// Where credentials come from.
pub struct Sources<'a> {
    /// Reads an environment variable.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// `--secrets-dir`.
    pub secrets_dir: Option<PathBuf>,
}

impl Sources<'_> {
    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    fn var_or_file(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(v) = self.var(name) {
            return Ok(Some(v.into_bytes()));
        }
        let file_var = format!("{name}_FILE");
        match self.var(&file_var) {
            Some(path) => std::fs::read(&path)
                .map(Some)
                .with_context(|| format!("reading the file named by {file_var} ({path})")),
            None => Ok(None),
        }
    }

    fn dir_file(&self, secret: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(dir) = &self.secrets_dir else {
            return Ok(None);
        };
        if secret.contains(['/', '\\']) || key.contains(['/', '\\']) || secret.starts_with("..") {
            return Ok(None);
        }
        let path = dir.join(secret).join(key);
        match std::fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// The store the engine reads, filled from `sources` for every key the spec refers to.
/// Returns whether the SaladCloud API key was found.
pub fn store(
    spec: &StableDiffusionDeploymentSpec,
    sources: &Sources<'_>,
) -> anyhow::Result<(MapSecretStore, bool)> {
    let mut store = MapSecretStore::default();
    let api = &spec.saladcloud.api_key_secret_ref;
    let mut have_api_key = false;
    for (secret, key) in referenced(spec) {
        let is_api_key = secret == api.name && key == api.key;
        let mut value = None;
        if is_api_key {
            value = sources.var_or_file(API_KEY_ENV)?;
        }
        if value.is_none() {
            value = sources.var_or_file(&env_name(&secret, &key))?;
        }
        if value.is_none() {
            value = sources.dir_file(&secret, &key)?;
        }
        if let Some(v) = value {
            have_api_key |= is_api_key;
            store = store.with(&secret, &key, v);
        }
    }
    Ok((store, have_api_key))
}

/// The sources of this process: its environment and `--secrets-dir`.
pub fn from_process(secrets_dir: Option<&Path>) -> Sources<'static> {
    Sources {
        env: &|name| std::env::var(name).ok(),
        secrets_dir: secrets_dir.map(Path::to_path_buf),
    }
}

/// What to tell the user when the API key is missing.
pub fn missing_api_key_help(spec: &StableDiffusionDeploymentSpec) -> String {
    let r = &spec.saladcloud.api_key_secret_ref;
    format!(
        "no SaladCloud API key: set {API_KEY_ENV} (or {API_KEY_FILE_ENV} to a file holding it), or {} (or its _FILE variant), or put it in <secrets-dir>/{}/{}",
        env_name(&r.name, &r.key),
        r.name,
        r.key
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use salad_sd_controller::secrets::SecretStore;

    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(
            env_name("registry-push", ".dockerconfigjson"),
            "SALAD_SD_SECRET_REGISTRY_PUSH_DOCKERCONFIGJSON"
        );
        assert_eq!(
            env_name("salad-api-key", "apiKey"),
            "SALAD_SD_SECRET_SALAD_API_KEY_API_KEY"
        );
        assert_eq!(
            env_name("hub", "personalAccessToken"),
            "SALAD_SD_SECRET_HUB_PERSONAL_ACCESS_TOKEN"
        );
        assert_eq!(env_name("hf.token", "v2"), "SALAD_SD_SECRET_HF_TOKEN_V2");
    }

    fn spec() -> StableDiffusionDeploymentSpec {
        let doc = "apiVersion: salad-sd.dev/v1alpha1\nkind: StableDiffusionDeployment\nmetadata: {name: sd}\nspec:\n  saladcloud:\n    organization: acme\n    project: p\n    apiKeySecretRef: {name: salad, key: apiKey}\n  server:\n    kind: SDNext\n    env:\n      - name: X\n        valueFrom: {secretKeyRef: {name: app, key: token}}\n  models:\n    - name: a.safetensors\n      kind: Checkpoint\n      source: {url: 'https://example.com/a', authSecretRef: {name: hf, key: token}}\n  image:\n    repository: ghcr.io/acme/sd\n    pushSecretRef: {name: push}\n    registryAuth: {type: Basic, secretRef: {name: pull}}\n  resources: {cpu: 2, memory: 8Gi, gpuClasses: [RTX 3060]}\n";
        crate::resource::parse(doc).unwrap().spec
    }

    #[tokio::test]
    async fn every_reference_is_read_from_its_source() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pull")).unwrap();
        std::fs::write(dir.path().join("pull/username"), "bob").unwrap();
        std::fs::write(dir.path().join("pull/password"), "dir-pass\n").unwrap();
        let keyfile = dir.path().join("key");
        std::fs::write(&keyfile, "file-key").unwrap();
        let env: BTreeMap<&str, String> = [
            ("SALAD_API_KEY_FILE", keyfile.display().to_string()),
            ("SALAD_SD_SECRET_APP_TOKEN", "app-token".to_string()),
            ("SALAD_SD_SECRET_HF_TOKEN", "hf-token".to_string()),
            ("SALAD_SD_SECRET_PULL_PASSWORD", "env-pass".to_string()),
        ]
        .into();
        let lookup = |n: &str| env.get(n).cloned();
        let sources = Sources {
            env: &lookup,
            secrets_dir: Some(dir.path().to_path_buf()),
        };
        let spec = spec();
        assert_eq!(referenced(&spec).len(), 6);
        let (store, have_key) = store(&spec, &sources).unwrap();
        assert!(have_key);
        let get = |s: &str, k: &str| {
            let store = store.clone();
            let (s, k) = (s.to_string(), k.to_string());
            async move {
                store
                    .secret(&s)
                    .await
                    .unwrap()
                    .and_then(|m| m.get(&k).cloned())
            }
        };
        assert_eq!(get("salad", "apiKey").await.unwrap(), b"file-key");
        assert_eq!(get("app", "token").await.unwrap(), b"app-token");
        assert_eq!(get("hf", "token").await.unwrap(), b"hf-token");
        assert_eq!(get("pull", "username").await.unwrap(), b"bob");
        assert_eq!(get("pull", "password").await.unwrap(), b"env-pass");
        assert_eq!(get("push", ".dockerconfigjson").await, None);

        let direct = |n: &str| (n == "SALAD_API_KEY").then(|| "direct".to_string());
        let (store, have_key) = store_for(&spec, &direct);
        assert!(have_key);
        assert_eq!(
            store.secret("salad").await.unwrap().unwrap()["apiKey"],
            b"direct"
        );
        let none = |_: &str| None;
        assert!(!store_for(&spec, &none).1);
        assert!(missing_api_key_help(&spec).contains("SALAD_SD_SECRET_SALAD_API_KEY"));
    }

    fn store_for(
        spec: &StableDiffusionDeploymentSpec,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> (MapSecretStore, bool) {
        store(
            spec,
            &Sources {
                env,
                secrets_dir: None,
            },
        )
        .unwrap()
    }
}
