//! Errors of the SaladCloud client, with a terminal/transient split and a stable category.

use std::time::Duration;

use crate::model::ProblemDetails;

/// Maximum length of a response-body snippet kept in an error.
const SNIPPET_MAX: usize = 200;

/// An error from a SaladCloud API call. Never contains the API key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path name failed the local check before anything was sent.
    #[error(
        "{operation}: invalid {kind} name `{value}`: it must be 2-63 characters of lowercase letters, \
         digits and hyphens, start with a letter and end with a letter or digit; fix the name in the spec"
    )]
    InvalidName {
        /// Operation (API operationId).
        operation: &'static str,
        /// Which name (`organization`, `project`, `container group`).
        kind: &'static str,
        /// The rejected value (sanitized).
        value: String,
    },

    /// The API answered with a non-success status.
    #[error("{}", api_message(operation, *status, problem.as_deref(), snippet))]
    Api {
        /// Operation (API operationId).
        operation: &'static str,
        /// HTTP method.
        method: http::Method,
        /// HTTP status.
        status: u16,
        /// Decoded problem details, when the body was JSON.
        problem: Option<Box<ProblemDetails>>,
        /// Short, sanitized snippet of a body that was not problem JSON (HTML, text, empty).
        snippet: String,
        /// The server's `Retry-After`, when it sent one (429, 503).
        retry_after: Option<Duration>,
    },

    /// The request timed out.
    #[error(
        "{operation}: SaladCloud did not answer within {after:?}; the call will be retried, \
         check network egress to api.salad.com if this persists"
    )]
    Timeout {
        /// Operation (API operationId).
        operation: &'static str,
        /// The configured request timeout.
        after: Duration,
    },

    /// The connection failed (DNS, connect, TLS, reset).
    #[error(
        "{operation}: could not reach SaladCloud: {message}; the call will be retried, check network \
         egress and proxy settings if this persists"
    )]
    Network {
        /// Operation (API operationId).
        operation: &'static str,
        /// Sanitized transport error.
        message: String,
    },

    /// A success response whose body could not be decoded.
    #[error(
        "{operation}: unexpected response body from SaladCloud (HTTP {status}): {message}; the API may \
         have changed, upgrade the operator if this persists"
    )]
    Decode {
        /// Operation (API operationId).
        operation: &'static str,
        /// HTTP status.
        status: u16,
        /// Decoder message and body snippet (sanitized).
        message: String,
    },

    /// A GPU class name is unknown in the organization.
    #[error(
        "GPU class `{name}` not found in organization `{organization}`; known: {}; use one of these \
         names or a GPU class id",
        known_list(known)
    )]
    GpuClassNotFound {
        /// Organization.
        organization: String,
        /// The requested name.
        name: String,
        /// Known GPU class names, sorted.
        known: Vec<String>,
    },

    /// The client configuration is unusable (bad base URL, API key with invalid characters…).
    #[error("invalid SaladCloud client configuration: {0}")]
    Config(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "(none)".to_owned()
    } else {
        known.join(", ")
    }
}

fn api_message(
    operation: &str,
    status: u16,
    problem: Option<&ProblemDetails>,
    snippet: &str,
) -> String {
    let detail = problem
        .and_then(|p| p.detail.as_deref().or(p.title.as_deref()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if snippet.is_empty() {
                "(empty body)".to_owned()
            } else {
                snippet.to_owned()
            }
        });
    let advice = match status {
        400 if problem.is_some_and(is_name_conflict_problem) => {
            "the container group name is already used (names cannot be reused, even after \
             deletion); choose a new name"
        }
        400 | 422 => {
            "fix the spec (check image, resources, replicas against quota, probes and country codes)"
        }
        401 => {
            "check the API key in the Secret referenced by the resource (a key refreshed in the \
             portal invalidates the old one)"
        }
        403 => {
            "check that the API key's user can access this organization and project, and that \
             replicas fit the organization quota"
        }
        404 => "check the organization, project and container group names",
        408 => "SaladCloud timed out; the call will be retried",
        429 => {
            "SaladCloud rate limit hit; the call will be retried, reduce the number of clients \
             sharing this API key if this persists"
        }
        500..=599 => "SaladCloud is unavailable; the call will be retried",
        _ => "unexpected status; check the request and SaladCloud status",
    };
    format!("{operation}: SaladCloud returned HTTP {status}: {detail}; {advice}")
}

fn is_name_conflict_problem(p: &ProblemDetails) -> bool {
    p.type_.as_deref().is_some_and(|t| {
        let t = t.trim_end_matches('/');
        t == "name_conflict" || t.ends_with("/name_conflict")
    })
}

impl Error {
    /// HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The operation that failed, when it is known.
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            Error::InvalidName { operation, .. }
            | Error::Api { operation, .. }
            | Error::Timeout { operation, .. }
            | Error::Network { operation, .. }
            | Error::Decode { operation, .. } => Some(operation),
            Error::GpuClassNotFound { .. } | Error::Config(_) => None,
        }
    }

    /// The decoded problem details, if any.
    pub fn problem(&self) -> Option<&ProblemDetails> {
        match self {
            Error::Api { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }

    /// 404 Not Found.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 400 with problem `type` `name_conflict` (the name is, or was, used).
    pub fn is_name_conflict(&self) -> bool {
        matches!(self, Error::Api { status: 400, problem: Some(p), .. } if is_name_conflict_problem(p))
    }

    /// Only a spec or configuration change can fix this: do not retry.
    ///
    /// A 404 on a read (`GET`) is neither terminal nor transient: callers treat it as "absent".
    pub fn is_terminal(&self) -> bool {
        match self {
            Error::InvalidName { .. } | Error::GpuClassNotFound { .. } | Error::Config(_) => true,
            Error::Api { status, method, .. } => match status {
                404 => *method != http::Method::GET,
                408 | 429 => false,
                400..=499 => true,
                _ => false,
            },
            Error::Timeout { .. } | Error::Network { .. } | Error::Decode { .. } => false,
        }
    }

    /// Time may fix this: retry later with backoff.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Network { .. } | Error::Decode { .. } => true,
            Error::Api { status, .. } => matches!(status, 408 | 429 | 500..=599),
            Error::InvalidName { .. } | Error::GpuClassNotFound { .. } | Error::Config(_) => false,
        }
    }

    /// Worth retrying inside the client (transport failures, 408, 429, 5xx).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Network { .. } => true,
            Error::Api { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    /// The outcome on the server is unknown (the request may have been applied).
    pub(crate) fn is_ambiguous(&self) -> bool {
        match self {
            Error::Timeout { .. } | Error::Network { .. } => true,
            Error::Api { status, .. } => matches!(status, 500..=599),
            _ => false,
        }
    }

    /// SaladCloud's rate limit (429): wait for its window, not for a growing backoff.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, Error::Api { status: 429, .. })
    }

    /// How long the server asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Stable CamelCase label, used as Kubernetes Event reason and metric label.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidName { .. } => "SaladValidation",
            Error::GpuClassNotFound { .. } => "SaladGpuClassNotFound",
            Error::Config(_) => "SaladConfig",
            Error::Timeout { .. } | Error::Network { .. } => "SaladNetwork",
            Error::Decode { .. } => "SaladProtocol",
            Error::Api { status, .. } => match status {
                400 if self.is_name_conflict() => "SaladNameConflict",
                400 | 422 => "SaladValidation",
                401 | 403 => "SaladAuth",
                404 => "SaladNotFound",
                408 => "SaladNetwork",
                429 => "SaladRateLimited",
                500..=599 => "SaladUnavailable",
                _ => "SaladApiError",
            },
        }
    }
}

/// Builds an [`Error::Api`] from a raw error response body, decoding problem JSON leniently.
pub(crate) fn api_error(
    operation: &'static str,
    method: http::Method,
    status: u16,
    body: &[u8],
    secret: &str,
) -> Error {
    let problem = serde_json::from_slice::<ProblemDetails>(body)
        .ok()
        .filter(|p| *p != ProblemDetails::default())
        .map(|p| ProblemDetails {
            type_: p.type_.map(|s| sanitize(&s, secret)),
            title: p.title.map(|s| sanitize(&s, secret)),
            status: p.status,
            detail: p.detail.map(|s| sanitize(&s, secret)),
            instance: p.instance.map(|s| sanitize(&s, secret)),
        })
        .map(Box::new);
    let snippet = if problem.is_some() {
        String::new()
    } else {
        sanitize(&String::from_utf8_lossy(body), secret)
    };
    Error::Api {
        operation,
        method,
        status,
        problem,
        snippet,
        retry_after: None,
    }
}

/// Makes untrusted text safe for errors and logs: removes the secret, HTML tags (when the text
/// is markup), control characters, collapses whitespace and truncates to a short snippet.
pub(crate) fn sanitize(text: &str, secret: &str) -> String {
    let text = if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "***")
    };
    let strip_tags = text.trim_start().starts_with('<');
    let mut out = String::with_capacity(text.len().min(SNIPPET_MAX + 8));
    let mut in_tag = false;
    let mut last_space = true;
    let mut count = 0usize;
    for c in text.chars() {
        match c {
            '<' if strip_tags => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                if !last_space {
                    out.push(' ');
                    last_space = true;
                    count += 1;
                }
            }
            _ if in_tag => {}
            c if c.is_whitespace() || c.is_control() => {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                    count += 1;
                }
            }
            c => {
                out.push(c);
                last_space = false;
                count += 1;
            }
        }
        if count >= SNIPPET_MAX {
            out.push('…');
            break;
        }
    }
    out.trim().to_owned()
}
