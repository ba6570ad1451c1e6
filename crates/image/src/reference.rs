use std::fmt;

use crate::error::{Error, Result};

/// A parsed image reference: registry host, repository, and tag and/or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry host as used for API calls (`registry-1.docker.io` for Docker Hub), with port if any.
    pub registry: String,
    /// Repository path, e.g. `library/ubuntu`.
    pub repository: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// Digest (`sha256:…`), if given.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses `[host[:port]/]path[:tag][@sha256:…]`. Without a host, Docker Hub is assumed.
    pub fn parse(reference: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        let s = reference.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("digest must be sha256:<64 hex>"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("digest must be sha256:<64 hex>"));
                }
                (r, Some(d.to_ascii_lowercase()))
            }
            None => (s, None),
        };
        let (host, path) = match rest.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), remainder.to_owned())
            }
            _ => ("docker.io".to_owned(), rest.to_owned()),
        };
        let (path, tag) = match path.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p.to_owned(), Some(t.to_owned())),
            _ => (path, None),
        };
        if path.is_empty()
            || !path.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'/' | b'.' | b'_' | b'-')
            })
        {
            return Err(bad(
                "repository must be lowercase letters, digits and . _ - /",
            ));
        }
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
        {
            return Err(bad("invalid tag"));
        }
        let (registry, repository) = if host == "docker.io" || host == "index.docker.io" {
            let repo = if path.contains('/') {
                path
            } else {
                format!("library/{path}")
            };
            ("registry-1.docker.io".to_owned(), repo)
        } else {
            (host, path)
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Parses a target repository (`host[:port]/path`, no tag or digest).
    pub fn parse_repository(repository: &str) -> Result<Self> {
        let r = Self::parse(repository)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(Error::InvalidReference {
                reference: repository.to_owned(),
                reason: "a target repository must not carry a tag or digest".into(),
            });
        }
        Ok(r)
    }

    /// The tag or digest to ask the registry for (`latest` when neither is given).
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// `host/repository` without tag or digest.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageReference::parse("saladtechnologies/sdnext:base").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            (
                "registry-1.docker.io",
                "saladtechnologies/sdnext",
                Some("base")
            )
        );
        let r = ImageReference::parse("ubuntu").unwrap();
        assert_eq!(r.repository, "library/ubuntu");
        assert_eq!(r.manifest_ref(), "latest");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageReference::parse(&format!("127.0.0.1:5000/a/b:v1@{d}")).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "a/b")
        );
        assert_eq!(r.manifest_ref(), d);
        assert!(ImageReference::parse("Upper/case").is_err());
        assert!(ImageReference::parse_repository("ghcr.io/x/y:tag").is_err());
        assert_eq!(
            ImageReference::parse_repository("ghcr.io/x/y")
                .unwrap()
                .repository,
            "x/y"
        );
    }
}
