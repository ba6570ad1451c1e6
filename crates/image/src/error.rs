/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Coarse classification of an [`Error`], for status conditions and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCategory {
    /// The model source failed (404, HTTP error, network, HTML page, truncated download).
    Source,
    /// Downloaded content did not match what the recipe pinned.
    Integrity,
    /// A source was refused by the source policy, or a size limit was hit.
    Policy,
    /// The registry refused the credentials.
    RegistryAuth,
    /// The registry was unreachable or answered unexpectedly.
    Registry,
    /// The base image is missing or unusable.
    BaseImage,
    /// The recipe itself is invalid.
    Recipe,
    /// Local I/O or an internal failure.
    Internal,
}

impl ErrorCategory {
    /// Short stable name (`source`, `integrity`, …) for conditions and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Integrity => "integrity",
            Self::Policy => "policy",
            Self::RegistryAuth => "registry-auth",
            Self::Registry => "registry",
            Self::BaseImage => "base-image",
            Self::Recipe => "recipe",
            Self::Internal => "internal",
        }
    }
}

/// Everything that can go wrong while building an image. Messages never contain secrets;
/// source URLs are shown without their query string.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model URL answered 404 or 410.
    #[error("model {name}: source {url} returned HTTP {status} (not found): check the model URL")]
    SourceNotFound {
        name: String,
        url: String,
        status: u16,
    },
    /// The model URL refused the request (401/403).
    #[error(
        "model {name}: source {url} refused the request (HTTP {status}): the model needs a token or the token in the model's auth secret is wrong"
    )]
    SourceUnauthorized {
        name: String,
        url: String,
        status: u16,
    },
    /// Any other unexpected HTTP status from the model URL.
    #[error("model {name}: source {url} returned HTTP {status}")]
    SourceHttp {
        name: String,
        url: String,
        status: u16,
    },
    /// Network failure while talking to the model source.
    #[error("model {name}: download from {url} failed: {detail}")]
    SourceNetwork {
        name: String,
        url: String,
        detail: String,
    },
    /// The source sent an HTML page instead of a file (login page, landing page, wrong link).
    #[error(
        "model {name}: source {url} returned an HTML page (Content-Type {content_type}) instead of a file: use a direct download link, and a token if the site needs a login"
    )]
    HtmlInsteadOfFile {
        name: String,
        url: String,
        content_type: String,
    },
    /// The download ended before the announced size.
    #[error(
        "model {name}: download from {url} was truncated: expected {expected} bytes, got {got}"
    )]
    Truncated {
        name: String,
        url: String,
        expected: u64,
        got: u64,
    },
    /// The source did not announce the file size, which the layer format needs up front.
    #[error(
        "model {name}: source {url} did not send a Content-Length; the builder needs the file size before streaming it into the image"
    )]
    MissingContentLength { name: String, url: String },
    /// The downloaded file does not have the pinned sha256.
    #[error(
        "model {name}: sha256 mismatch for {url}: expected {expected}, got {got}; fix the pinned sha256 or the URL"
    )]
    Sha256Mismatch {
        name: String,
        url: String,
        expected: String,
        got: String,
    },
    /// A size limit from [`crate::BuilderOptions`] was exceeded.
    #[error("model {name}: {what} is larger than the limit of {limit} bytes")]
    SizeLimit {
        name: String,
        what: String,
        limit: u64,
    },
    /// The source URL is not allowed by the source policy.
    #[error("model {name}: source {url} is not allowed: {reason}")]
    ForbiddenSource {
        name: String,
        url: String,
        reason: String,
    },
    /// An archive could not be read or contains something the builder refuses.
    #[error("model {name}: archive from {url} is unusable: {detail}")]
    BadArchive {
        name: String,
        url: String,
        detail: String,
    },
    /// The recipe is invalid.
    #[error("invalid recipe: {0}")]
    InvalidRecipe(String),
    /// An image reference or repository name could not be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// The registry answered 401/403 after authentication.
    #[error(
        "registry {host} refused credentials for {repository} (HTTP {status}): check pushSecretRef (a kubernetes.io/dockerconfigjson secret with an entry for {host}) and that the account may {access} {repository}"
    )]
    RegistryAuth {
        host: String,
        repository: String,
        status: u16,
        access: &'static str,
    },
    /// The registry could not be reached.
    #[error("registry {host} is unreachable: {detail}")]
    RegistryUnreachable { host: String, detail: String },
    /// The registry answered with an unexpected status.
    #[error("registry {host}: {operation} failed with HTTP {status}: {detail}")]
    RegistryProtocol {
        host: String,
        operation: String,
        status: u16,
        detail: String,
    },
    /// The base image (or the tag) does not exist.
    #[error("base image {reference} not found: check the base image reference")]
    BaseImageNotFound { reference: String },
    /// The base image has no linux/amd64 variant.
    #[error(
        "base image {reference} has no linux/amd64 image (platforms: {platforms}): SaladCloud runs linux/amd64"
    )]
    NoLinuxAmd64 {
        reference: String,
        platforms: String,
    },
    /// The base image uses a layer format the Docker v2 output cannot carry.
    #[error(
        "base image {reference} has a layer of media type {media_type}, which a Docker v2 manifest cannot carry: use a base image with gzip or uncompressed layers"
    )]
    UnsupportedBaseLayer {
        reference: String,
        media_type: String,
    },
    /// Local I/O failure (process spawn, temp files).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Internal failure (task panicked, protocol invariant broken).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Which bucket this error belongs to.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::SourceNotFound { .. }
            | Self::SourceUnauthorized { .. }
            | Self::SourceHttp { .. }
            | Self::SourceNetwork { .. }
            | Self::HtmlInsteadOfFile { .. }
            | Self::Truncated { .. }
            | Self::MissingContentLength { .. }
            | Self::BadArchive { .. } => ErrorCategory::Source,
            Self::Sha256Mismatch { .. } => ErrorCategory::Integrity,
            Self::SizeLimit { .. } | Self::ForbiddenSource { .. } => ErrorCategory::Policy,
            Self::InvalidRecipe(_) | Self::InvalidReference { .. } => ErrorCategory::Recipe,
            Self::RegistryAuth { .. } => ErrorCategory::RegistryAuth,
            Self::RegistryUnreachable { .. } | Self::RegistryProtocol { .. } => {
                ErrorCategory::Registry
            }
            Self::BaseImageNotFound { .. }
            | Self::NoLinuxAmd64 { .. }
            | Self::UnsupportedBaseLayer { .. } => ErrorCategory::BaseImage,
            Self::Io { .. } | Self::Internal(_) => ErrorCategory::Internal,
        }
    }

    /// True when retrying cannot help: only a change of the recipe, the secrets or the
    /// source/registry contents fixes it. False for transient failures (network, 5xx, 429, truncation).
    pub fn is_terminal(&self) -> bool {
        match self {
            Self::SourceNotFound { .. }
            | Self::SourceUnauthorized { .. }
            | Self::HtmlInsteadOfFile { .. }
            | Self::MissingContentLength { .. }
            | Self::Sha256Mismatch { .. }
            | Self::SizeLimit { .. }
            | Self::ForbiddenSource { .. }
            | Self::BadArchive { .. }
            | Self::InvalidRecipe(_)
            | Self::InvalidReference { .. }
            | Self::RegistryAuth { .. }
            | Self::BaseImageNotFound { .. }
            | Self::NoLinuxAmd64 { .. }
            | Self::UnsupportedBaseLayer { .. } => true,
            Self::SourceHttp { status, .. } | Self::RegistryProtocol { status, .. } => {
                !retryable_status(*status)
            }
            Self::SourceNetwork { .. }
            | Self::Truncated { .. }
            | Self::RegistryUnreachable { .. }
            | Self::Io { .. }
            | Self::Internal(_) => false,
        }
    }
}

fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// Formats an error chain without URLs (reqwest puts full URLs, query strings included, in Display).
/// The client in `cell`, built by `builder` the first time: one per process for what shares
/// its settings, so that every builder shares a connection pool and TLS roots (a client per
/// look-up cost a root store and a pool each, hundreds at once after a restart).
pub(crate) fn shared_client(
    cell: &'static std::sync::OnceLock<reqwest::Client>,
    builder: impl FnOnce() -> reqwest::ClientBuilder,
) -> Result<reqwest::Client, Error> {
    if let Some(http) = cell.get() {
        return Ok(http.clone());
    }
    let http = builder()
        .user_agent(concat!("salad-sd-image/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Internal(format!("building HTTP client: {}", describe_reqwest(e))))?;
    Ok(cell.get_or_init(|| http).clone())
}

pub(crate) fn describe_reqwest(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut out = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
