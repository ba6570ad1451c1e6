use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Username and password (or identity token) for one registry host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryCredential {
    /// Username (for identity tokens, `<token>` as Docker writes it).
    pub username: String,
    /// Password or token; redacted in Debug output.
    pub password: Secret,
}

/// Registry credentials per host, as found in a `kubernetes.io/dockerconfigjson` secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryCredentials {
    by_host: BTreeMap<String, RegistryCredential>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

impl RegistryCredentials {
    /// Parses the `.dockerconfigjson` value of a `kubernetes.io/dockerconfigjson` secret.
    /// Keys may be `host`, `host:port`, `https://host/v1/`; Docker Hub aliases are unified.
    pub fn from_dockerconfigjson(data: &[u8]) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidRecipe(format!(
                "registry credentials secret is not valid dockerconfigjson: {why}"
            ))
        };
        let cfg: DockerConfig = serde_json::from_slice(data).map_err(|e| {
            bad(&format!(
                "JSON error at line {} column {}",
                e.line(),
                e.column()
            ))
        })?;
        let mut out = Self::default();
        for (key, entry) in cfg.auths {
            let (username, password) =
                if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
                    (u.clone(), p.clone())
                } else if let Some(auth) = &entry.auth {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| {
                            bad(&format!("auth for {} is not base64", normalize_host(&key)))
                        })?;
                    let text = String::from_utf8(raw).map_err(|_| bad("auth is not UTF-8"))?;
                    let (u, p) = text.split_once(':').ok_or_else(|| {
                        bad(&format!(
                            "auth for {} is not user:password",
                            normalize_host(&key)
                        ))
                    })?;
                    (u.to_owned(), p.to_owned())
                } else if let Some(token) = &entry.identity_token {
                    ("<token>".to_owned(), token.clone())
                } else {
                    continue;
                };
            out.insert(&key, username, Secret::new(password));
        }
        Ok(out)
    }

    /// Adds or replaces the credential for a host.
    pub fn insert(&mut self, host: &str, username: impl Into<String>, password: Secret) {
        self.by_host.insert(
            normalize_host(host),
            RegistryCredential {
                username: username.into(),
                password,
            },
        );
    }

    /// The credential for a registry host (`host` or `host:port`), if any.
    pub fn get(&self, host: &str) -> Option<&RegistryCredential> {
        self.by_host.get(&normalize_host(host))
    }

    /// Hosts that have credentials.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.by_host.keys().map(String::as_str)
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `ghcr.io/` → `ghcr.io`.
pub(crate) fn normalize_host(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let k = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match k.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => k,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dockerconfigjson() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:s3cret:x");
        let json = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"127.0.0.1:5000":{{"username":"u","password":"p"}}}}}}"#
        );
        let c = RegistryCredentials::from_dockerconfigjson(json.as_bytes()).unwrap();
        let hub = c.get("registry-1.docker.io").unwrap();
        assert_eq!(hub.username, "bob");
        assert_eq!(hub.password.expose(), "s3cret:x");
        assert_eq!(c.get("127.0.0.1:5000").unwrap().password.expose(), "p");
        assert!(c.get("ghcr.io").is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
        let err = RegistryCredentials::from_dockerconfigjson(br#"{"auths":{"h":{"auth":"!!"}}}"#)
            .unwrap_err();
        assert!(err.is_terminal());
    }
}
