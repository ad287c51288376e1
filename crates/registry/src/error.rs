//! The one error type of the registry client.

use std::io;
use std::path::PathBuf;

use rbuild_digest::Digest;

/// Everything that can go wrong talking to a registry; each variant names the URL, digest, file or
/// registry the user has to look at to fix it. Secrets never appear in these messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The HTTP request could not be made or its body could not be read (DNS, TCP, TLS, timeout).
    #[error("request to {url} failed: {source}")]
    Http {
        /// The URL that was requested (never contains credentials).
        url: String,
        /// What the HTTP stack said.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with a status this operation cannot continue from.
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        /// The URL that was requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body (registries put their error JSON there).
        body: String,
    },
    /// The registry refused the credentials (or there were none) for this operation.
    #[error("not authorized at {url}: {detail} (check `rbuild login {registry}`)")]
    Unauthorized {
        /// The registry host the credentials are for.
        registry: String,
        /// The URL that was refused.
        url: String,
        /// What the registry or token service said.
        detail: String,
    },
    /// The manifest or blob does not exist at the registry.
    #[error("{what} not found at {url}")]
    NotFound {
        /// What was looked for ("manifest docker.io/library/x:1", "blob sha256:...").
        what: String,
        /// The URL that answered 404.
        url: String,
    },
    /// Downloaded content does not hash to the digest it was asked for; nothing was stored.
    #[error("content from {url} does not match its digest: expected {expected}, got {actual} ({size} bytes); the registry's copy is corrupt or was tampered with")]
    DigestMismatch {
        /// Where the content came from.
        url: String,
        /// The digest the manifest (or reference) promised.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
        /// How many bytes arrived.
        size: u64,
    },
    /// Downloaded content is shorter or longer than its descriptor says; nothing was stored.
    #[error(
        "blob {digest} from {url} has the wrong size: expected {expected} bytes, got {actual}"
    )]
    SizeMismatch {
        /// Where the content came from.
        url: String,
        /// The blob.
        digest: Digest,
        /// The size in the descriptor.
        expected: u64,
        /// The bytes received (or at least received, when the server sent too much).
        actual: u64,
    },
    /// A manifest, index or config could not be understood.
    #[error("invalid {what} from {url}: {reason}")]
    InvalidContent {
        /// "manifest", "index", "config", "token response".
        what: &'static str,
        /// Where it came from.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An index has no manifest for the requested platform.
    #[error("{reference} has no image for platform {wanted}; available: {}", available.join(", "))]
    NoMatchingPlatform {
        /// The image reference.
        reference: String,
        /// The platform asked for, as `os/arch[/variant]`.
        wanted: String,
        /// The platforms the index offers.
        available: Vec<String>,
    },
    /// The content store behind the [`Ingester`](crate::Ingester) or [`Provider`](crate::Provider)
    /// failed (disk full, permissions, a blob missing for a push, ...).
    #[error("content store: {0}")]
    Content(#[from] crate::content::ContentError),
    /// A local file (config, credentials, blob) could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `registries.conf` (or a reference's rewrite through it) is invalid.
    #[error("registries configuration {}: {reason}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The registry is marked `blocked = true` in registries.conf.
    #[error("registry {registry} is blocked by {}", path.display())]
    Blocked {
        /// The blocked registry or prefix.
        registry: String,
        /// The configuration that blocks it.
        path: PathBuf,
    },
    /// A credentials file or helper could not be used.
    #[error("credentials from {source_name}: {reason}")]
    Credentials {
        /// The file or helper involved.
        source_name: String,
        /// What is wrong (never the secret itself).
        reason: String,
    },
    /// A reference could not be parsed or used for this operation.
    #[error("invalid reference {reference:?}: {reason}")]
    Reference {
        /// The reference text.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// Every endpoint (mirrors, then the origin) failed; each failure is listed in order.
    #[error("pulling {reference} failed at every endpoint:\n  {}", errors.join("\n  "))]
    AllEndpointsFailed {
        /// The image reference.
        reference: String,
        /// `endpoint: error` for each endpoint tried.
        errors: Vec<String>,
    },
    /// The HTTP client or the private runtime of the blocking facade could not be built.
    #[error("cannot set up the registry client: {0}")]
    Setup(String),
}

/// Builds a closure that wraps an `io::Error` with the action and path, for `map_err`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> RegistryError {
    let path = path.into();
    move |source| RegistryError::Io {
        action,
        path,
        source,
    }
}

/// Wraps a reqwest error with the URL, for `map_err`.
pub(crate) fn http_err(url: &str) -> impl FnOnce(reqwest::Error) -> RegistryError + '_ {
    move |source| RegistryError::Http {
        url: url.to_string(),
        source: source.without_url(),
    }
}
