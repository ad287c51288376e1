//! The async registry client: endpoint selection, authentication, pull and push.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use rbuild_digest::Digest;
use rbuild_image::manifest::{
    Descriptor, Index, Manifest, Platform, MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST,
};
use rbuild_image::Reference;
use reqwest::header::{
    HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, RANGE, WWW_AUTHENTICATE,
};
use reqwest::StatusCode;

use crate::auth::{self, AuthSource, Challenge, Credentials};
use crate::config::{Endpoint, RegistriesConf, SYSTEM_REGISTRIES_CONF};
use crate::content::{self, ContentError, ContentWriter, Ingester, Provider};
use crate::error::{http_err, io_err, RegistryError};
use crate::platform;

/// Largest manifest, index or config accepted, so a hostile registry cannot exhaust memory
/// (containerd uses the same 4 MiB limit for manifests).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// The system CA bundle on Debian-like systems, used when no other trust store is configured.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// How the client finds its configuration and behaves; every path is injectable, so nothing is
/// read from the process environment unless [`ClientOptions::from_env`] is used.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// A registries.conf to read (mirrors, insecure and blocked registries); `None` = no rewrites.
    pub registries_conf: Option<PathBuf>,
    /// Hosts (`host` or `host:port`) for which plain HTTP and unverified TLS are allowed, like
    /// docker's `--insecure-registry`.
    pub insecure_registries: Vec<String>,
    /// Where credentials come from.
    pub auth: AuthSource,
    /// Sent as `User-Agent`, so registry operators can tell rbuild apart.
    pub user_agent: String,
    /// How many blobs are transferred at once (at least 1).
    pub max_concurrent: usize,
    /// How many times a dropped blob download is resumed or restarted before giving up.
    pub retries: u32,
    /// PEM bundle of trusted CAs; `None` = [`SYSTEM_CA_BUNDLE`] when it exists.
    pub ca_file: Option<PathBuf>,
    /// Size of each PATCH when pushing blobs in chunks; 0 = one monolithic PUT per blob.
    pub chunk_size: usize,
}

/// How many source repositories one push asks mount rights for (see [`Client::push`]).
const MAX_MOUNT_SOURCES: usize = 8;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            registries_conf: None,
            insecure_registries: Vec::new(),
            auth: AuthSource::default(),
            user_agent: format!("rbuild/{}", env!("CARGO_PKG_VERSION")),
            max_concurrent: 4,
            retries: 3,
            ca_file: None,
            chunk_size: 8 << 20,
        }
    }
}

impl ClientOptions {
    /// The options a CLI wants: registries.conf from `$RBUILD_REGISTRIES_CONF`,
    /// `~/.config/containers/registries.conf` or `/etc/containers/registries.conf`; docker and
    /// podman credentials; `$SSL_CERT_FILE` as trust store. `env` is the environment lookup
    /// (pass `|k| std::env::var(k).ok()`).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> ClientOptions {
        ClientOptions {
            registries_conf: RegistriesConf::discover_path(
                env,
                std::path::Path::new(SYSTEM_REGISTRIES_CONF),
            ),
            auth: AuthSource::from_env(env),
            ca_file: env("SSL_CERT_FILE")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            ..ClientOptions::default()
        }
    }
}

/// What happened to one blob during a pull, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PullEvent {
    /// A download began.
    Started {
        /// The blob.
        digest: Digest,
        /// Its size per the manifest.
        size: u64,
    },
    /// Bytes arrived; `done` counts the whole blob so far.
    Progress {
        /// The blob.
        digest: Digest,
        /// Bytes received so far.
        done: u64,
        /// Its size per the manifest.
        size: u64,
    },
    /// The connection dropped; the download is resumed (`resumed_at > 0`) or restarted.
    Retrying {
        /// The blob.
        digest: Digest,
        /// Which retry this is (1-based).
        attempt: u32,
        /// Offset the download continues from.
        resumed_at: u64,
    },
    /// The blob is verified and committed.
    Done {
        /// The blob.
        digest: Digest,
    },
    /// The ingester already had the blob; nothing was fetched.
    Skipped {
        /// The blob.
        digest: Digest,
    },
}

/// What happened to one blob during a push, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushEvent {
    /// An upload began.
    Started {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes were sent; `done` counts the whole blob so far.
    Progress {
        /// The blob.
        digest: Digest,
        /// Bytes sent so far.
        done: u64,
        /// Its size.
        size: u64,
    },
    /// The upload finished and the registry accepted the blob.
    Done {
        /// The blob.
        digest: Digest,
    },
    /// The registry already had the blob (HEAD answered 200); nothing was sent.
    Exists {
        /// The blob.
        digest: Digest,
    },
    /// The registry linked the blob from another repository; nothing was sent.
    Mounted {
        /// The blob.
        digest: Digest,
        /// The repository it was mounted from.
        from: String,
    },
    /// A manifest (or index) was stored under a tag or digest.
    ManifestPushed {
        /// Its digest.
        digest: Digest,
        /// The tag or digest it was put under.
        reference: String,
    },
}

/// A manifest resolved for a platform, with its config, and where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The endpoint (mirror or origin) that answered.
    pub endpoint: Endpoint,
    /// The index or manifest list the tag pointed at, if it was one: digest, media type, bytes.
    pub index: Option<(Digest, String, Vec<u8>)>,
    /// Digest of the platform's manifest (the image's "RepoDigest").
    pub manifest_digest: Digest,
    /// Media type of the manifest (OCI or Docker schema 2).
    pub manifest_media_type: String,
    /// The manifest exactly as served (its digest is over these bytes).
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The config blob, verified against `manifest.config.digest`.
    pub config_bytes: Vec<u8>,
}

impl Resolved {
    /// The config digest, the image ID docker shows.
    pub fn config_digest(&self) -> Digest {
        self.manifest.config.digest
    }
}

/// A pulled image: everything in [`Resolved`], with the manifest, config (and index) and every
/// layer blob, still compressed, verified and committed through the [`Ingester`].
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The resolved manifest and config.
    pub resolved: Resolved,
    /// The layer descriptors, bottom first, exactly as in the manifest (compressed media types).
    pub layers: Vec<Descriptor>,
    /// Layers that were downloaded (the ingester had the others).
    pub fetched: Vec<Digest>,
}

/// Options of a push beyond the destination.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Repositories that may already hold the blobs (the image's base, for instance); blobs are
    /// mounted from those on the destination's registry instead of uploaded.
    pub mount_from: Vec<Reference>,
    /// Repositories known to hold one particular blob (recorded when it was pulled from or
    /// pushed to them), tried before `mount_from` for that blob: a mount is only worth a request
    /// where the blob is known to be. Sources on other registries are ignored.
    pub blob_sources: HashMap<Digest, Vec<Reference>>,
}

#[derive(Default)]
struct State {
    /// Base URL (`https://host` or `http://host`) that answered for each host.
    bases: HashMap<String, String>,
    /// The last `WWW-Authenticate` challenge of each host.
    challenges: HashMap<String, Challenge>,
    /// Bearer tokens by (host, scopes) with their expiry.
    tokens: HashMap<(String, String), (String, Instant)>,
}

/// A registry client: holds HTTP connections, the registries.conf, credentials and a token cache.
/// Cheap to share by reference; every method takes `&self`. Each client has its own caches; there
/// is no global state.
pub struct Client {
    http: reqwest::Client,
    http_insecure: reqwest::Client,
    conf: RegistriesConf,
    opts: ClientOptions,
    state: Mutex<State>,
    /// Held while a token is fetched, so concurrent requests wait for it instead of each
    /// asking the token service.
    token_fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("conf", &self.conf.path)
            .field("opts", &self.opts)
            .finish()
    }
}

fn scope_pull(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// Joins a possibly relative `Location` header onto the base URL.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}

/// Reads a body of at most `limit` bytes, so a hostile server cannot exhaust memory.
async fn read_limited(
    mut resp: reqwest::Response,
    url: &str,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(http_err(url))? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(RegistryError::InvalidContent {
                what,
                url: url.to_string(),
                reason: format!("larger than {limit} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The start of an error response body, for messages.
async fn error_body(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    let t = text.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}

pub(crate) async fn status_err(resp: reqwest::Response, url: &str) -> RegistryError {
    let status = resp.status().as_u16();
    RegistryError::Status {
        url: url.to_string(),
        status,
        body: error_body(resp).await,
    }
}

fn classify_manifest(content_type: &str, bytes: &[u8], url: &str) -> Result<String, RegistryError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let known = [
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_DOCKER_MANIFEST,
        MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    ];
    if known.contains(&ct) {
        return Ok(ct.to_string());
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let bad = |reason: String| RegistryError::InvalidContent {
        what: "manifest",
        url: url.to_string(),
        reason,
    };
    let p: Probe = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if p.schema_version == Some(1) {
        return Err(bad(
            "Docker schema 1 manifests are not supported (push the image again with a current client)"
                .into(),
        ));
    }
    match p.media_type {
        Some(mt) if known.contains(&mt.as_str()) => Ok(mt),
        Some(mt) => Err(bad(format!("unsupported media type {mt:?}"))),
        None if p.manifests.is_some() => Ok(MEDIA_TYPE_OCI_INDEX.to_string()),
        None => Ok(MEDIA_TYPE_OCI_MANIFEST.to_string()),
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

impl Client {
    /// Builds a client: reads the registries.conf and the trust store named in `opts`.
    pub fn new(opts: ClientOptions) -> Result<Client, RegistryError> {
        let conf = match &opts.registries_conf {
            Some(p) => RegistriesConf::load(p)?,
            None => RegistriesConf::default(),
        };
        Self::with_conf(opts, conf)
    }

    /// Builds a client with an already parsed registries.conf (`opts.registries_conf` is ignored).
    pub fn with_conf(opts: ClientOptions, conf: RegistriesConf) -> Result<Client, RegistryError> {
        let ca = match &opts.ca_file {
            Some(p) => Some(p.clone()),
            None => {
                let p = PathBuf::from(SYSTEM_CA_BUNDLE);
                p.is_file().then_some(p)
            }
        };
        let mut certs = Vec::new();
        if let Some(p) = &ca {
            let pem = std::fs::read(p).map_err(io_err("read CA bundle", p))?;
            certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| RegistryError::Setup(format!("CA bundle {}: {e}", p.display())))?;
        }
        let build = |insecure: bool| {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .user_agent(opts.user_agent.clone())
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120));
            for c in &certs {
                b = b.add_root_certificate(c.clone());
            }
            if insecure {
                b = b.danger_accept_invalid_certs(true);
            }
            b.build()
                .map_err(|e| RegistryError::Setup(format!("HTTP client: {e}")))
        };
        Ok(Client {
            http: build(false)?,
            http_insecure: build(true)?,
            conf,
            opts,
            state: Mutex::new(State::default()),
            token_fetch: tokio::sync::Mutex::new(()),
        })
    }

    /// The parsed registries.conf in use, for diagnostics.
    pub fn registries_conf(&self) -> &RegistriesConf {
        &self.conf
    }

    /// The verifying HTTP client, for downloads that are not registry requests.
    pub(crate) fn plain_http(&self) -> &reqwest::Client {
        &self.http
    }

    fn http_for(&self, ep: &Endpoint) -> &reqwest::Client {
        if ep.insecure {
            &self.http_insecure
        } else {
            &self.http
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the caches inconsistent (plain inserts).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record_challenge(&self, host: &str, resp: &reqwest::Response) {
        if let Some(c) = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
        {
            self.lock().challenges.insert(host.to_string(), c);
        }
    }

    /// The base URL for an endpoint: `https://host`, or `http://host` when the endpoint is
    /// insecure and HTTPS does not answer. Probes `/v2/` once per host and learns its challenge.
    async fn base(&self, ep: &Endpoint) -> Result<String, RegistryError> {
        if let Some(b) = self.lock().bases.get(&ep.host) {
            return Ok(b.clone());
        }
        let mut candidates = vec![format!("https://{}", ep.host)];
        if ep.insecure {
            candidates.push(format!("http://{}", ep.host));
        }
        let mut last = None;
        for base in candidates {
            let url = format!("{base}/v2/");
            match self.http_for(ep).get(&url).send().await {
                Ok(resp) => {
                    self.record_challenge(&ep.host, &resp);
                    self.lock().bases.insert(ep.host.clone(), base.clone());
                    return Ok(base);
                }
                Err(e) => last = Some(http_err(&url)(e)),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Setup("no URL to try".into())))
    }

    /// The `Authorization` header for a request with `scopes`, fetching a token when needed.
    async fn auth_header(
        &self,
        ep: &Endpoint,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let challenge = self.lock().challenges.get(&ep.host).cloned();
        let Some(ch) = challenge else {
            return Ok(None);
        };
        let creds = auth::load(&ep.host, &self.opts.auth)?;
        match ch.scheme.as_str() {
            "basic" => Ok(creds.map(|c| c.basic_header())),
            "bearer" => {
                let key = (ep.host.clone(), scopes.join(" "));
                let cached = |c: &Client| {
                    c.lock()
                        .tokens
                        .get(&key)
                        .filter(|(_, exp)| *exp > Instant::now())
                        .map(|(tok, _)| format!("Bearer {tok}"))
                };
                if let Some(h) = cached(self) {
                    return Ok(Some(h));
                }
                // Concurrent blob transfers need the same token: fetch it once.
                let _fetching = self.token_fetch.lock().await;
                if let Some(h) = cached(self) {
                    return Ok(Some(h));
                }
                let (tok, ttl) = self.fetch_token(ep, &ch, scopes, creds.as_ref()).await?;
                let exp = Instant::now() + ttl;
                self.lock().tokens.insert(key, (tok.clone(), exp));
                Ok(Some(format!("Bearer {tok}")))
            }
            _ => Ok(None),
        }
    }

    /// Runs the token flow of the distribution spec against the challenge's realm.
    async fn fetch_token(
        &self,
        ep: &Endpoint,
        ch: &Challenge,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<(String, Duration), RegistryError> {
        let realm = ch.params.get("realm").cloned().unwrap_or_default();
        let unauthorized = |detail: String| RegistryError::Unauthorized {
            registry: ep.host.clone(),
            url: realm.clone(),
            detail,
        };
        let mut url = url::Url::parse(&realm)
            .map_err(|e| unauthorized(format!("bad token realm {realm:?}: {e}")))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(unauthorized(format!(
                "token realm {realm:?} is not HTTP(S)"
            )));
        }
        let service = ch.params.get("service").cloned();
        let req = match creds.and_then(|c| c.identity_token.clone().map(|t| (c, t))) {
            Some((_, refresh)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", refresh),
                    ("client_id", "rbuild".to_string()),
                ];
                if let Some(s) = &service {
                    form.push(("service", s.clone()));
                }
                if !scopes.is_empty() {
                    form.push(("scope", scopes.join(" ")));
                }
                self.http_for(ep).post(url.clone()).form(&form)
            }
            None => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let mut r = self.http_for(ep).get(url.clone());
                if let Some(c) = creds {
                    r = r.header(AUTHORIZATION, c.basic_header());
                }
                r
            }
        };
        let resp = req.send().await.map_err(http_err(&realm))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let status = resp.status().as_u16();
            let body = error_body(resp).await;
            return Err(unauthorized(format!(
                "token service answered {status}: {body}"
            )));
        }
        if !resp.status().is_success() {
            return Err(status_err(resp, &realm).await);
        }
        let bytes = read_limited(resp, &realm, 1 << 20, "token response").await?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidContent {
                what: "token response",
                url: realm.clone(),
                reason: e.to_string(),
            })?;
        let token = t
            .token
            .filter(|t| !t.is_empty())
            .or(t.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| RegistryError::InvalidContent {
                what: "token response",
                url: realm.clone(),
                reason: "no token in the response".into(),
            })?;
        // Docker treats tokens as valid for at least 60 s; renew a little early.
        let ttl = t.expires_in.unwrap_or(60).max(60).saturating_sub(10);
        Ok((token, Duration::from_secs(ttl)))
    }

    /// Sends a request built by `mk` (given the client and the endpoint's base URL), with
    /// authentication; on a 401 it learns the challenge, gets fresh credentials and retries once.
    /// Returns the response and the URL (for messages).
    async fn send(
        &self,
        ep: &Endpoint,
        scopes: &[String],
        mk: &(dyn Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Sync),
    ) -> Result<(reqwest::Response, String), RegistryError> {
        let base = self.base(ep).await?;
        let client = self.http_for(ep);
        for attempt in 0..2 {
            let mut req = mk(client, &base)
                .build()
                .map_err(|e| RegistryError::Setup(format!("cannot build request: {e}")))?;
            let url = req.url().to_string();
            if let Some(h) = self.auth_header(ep, scopes).await? {
                let v = HeaderValue::from_str(&h).map_err(|_| RegistryError::Credentials {
                    source_name: ep.host.clone(),
                    reason: "credentials contain characters not allowed in HTTP headers".into(),
                })?;
                req.headers_mut().insert(AUTHORIZATION, v);
            }
            let resp = client.execute(req).await.map_err(http_err(&url))?;
            if resp.status() == StatusCode::UNAUTHORIZED {
                if attempt == 0 {
                    self.record_challenge(&ep.host, &resp);
                    self.lock()
                        .tokens
                        .remove(&(ep.host.clone(), scopes.join(" ")));
                    continue;
                }
                let detail = error_body(resp).await;
                return Err(RegistryError::Unauthorized {
                    registry: ep.host.clone(),
                    url,
                    detail,
                });
            }
            return Ok((resp, url));
        }
        Err(RegistryError::Setup("unreachable: retry loop ended".into()))
    }

    /// Fetches a manifest or index by tag or digest, checks its digest, and returns
    /// `(digest, media type, bytes)`.
    async fn fetch_manifest(
        &self,
        ep: &Endpoint,
        scopes: &[String],
        tag_or_digest: &str,
        expected: Option<&Digest>,
    ) -> Result<(Digest, String, Vec<u8>), RegistryError> {
        let path = format!("/v2/{}/manifests/{tag_or_digest}", ep.repository);
        let mk = |c: &reqwest::Client, base: &str| {
            c.get(format!("{base}{path}"))
                .header(reqwest::header::ACCEPT, ACCEPT_MANIFESTS)
        };
        let (resp, url) = self.send(ep, scopes, &mk).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what: format!("manifest {}/{}:{tag_or_digest}", ep.host, ep.repository),
                url,
            });
        }
        if !resp.status().is_success() {
            return Err(status_err(resp, &url).await);
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<Digest>().ok());
        let bytes = read_limited(resp, &url, MAX_MANIFEST_SIZE, "manifest").await?;
        let actual = Digest::of(&bytes);
        if let Some(want) = expected.or(header_digest.as_ref()) {
            if *want != actual {
                return Err(RegistryError::DigestMismatch {
                    url,
                    expected: *want,
                    actual,
                    size: bytes.len() as u64,
                });
            }
        }
        let media_type = classify_manifest(&content_type, &bytes, &url)?;
        Ok((actual, media_type, bytes))
    }

    /// Fetches a small blob (a config) into memory, verifying size and digest.
    async fn fetch_small_blob(
        &self,
        ep: &Endpoint,
        scopes: &[String],
        desc: &Descriptor,
    ) -> Result<Vec<u8>, RegistryError> {
        let path = format!("/v2/{}/blobs/{}", ep.repository, desc.digest);
        let mk = |c: &reqwest::Client, base: &str| c.get(format!("{base}{path}"));
        let (resp, url) = self.send(ep, scopes, &mk).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                what: format!("blob {}", desc.digest),
                url,
            });
        }
        if !resp.status().is_success() {
            return Err(status_err(resp, &url).await);
        }
        let bytes = read_limited(resp, &url, desc.size.min(MAX_MANIFEST_SIZE), "config").await?;
        if bytes.len() as u64 != desc.size {
            return Err(RegistryError::SizeMismatch {
                url,
                digest: desc.digest,
                expected: desc.size,
                actual: bytes.len() as u64,
            });
        }
        let actual = Digest::of(&bytes);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                url,
                expected: desc.digest,
                actual,
                size: desc.size,
            });
        }
        Ok(bytes)
    }

    async fn resolve_at(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        want: &Platform,
    ) -> Result<Resolved, RegistryError> {
        let scopes = vec![scope_pull(&ep.repository)];
        let (tag_or_digest, expected) = match (reference.digest(), reference.tag()) {
            (Some(d), _) => (d.to_string(), Some(*d)),
            (None, Some(t)) => (t.to_string(), None),
            (None, None) => ("latest".to_string(), None),
        };
        let (digest, media_type, bytes) = self
            .fetch_manifest(ep, &scopes, &tag_or_digest, expected.as_ref())
            .await?;
        let (index, digest, media_type, bytes) = if is_index(&media_type) {
            let parsed = Index::from_json(&bytes, format!("index {digest}")).map_err(|e| {
                RegistryError::InvalidContent {
                    what: "index",
                    url: format!(
                        "{}/v2/{}/manifests/{tag_or_digest}",
                        ep.url_base, ep.repository
                    ),
                    reason: e.to_string(),
                }
            })?;
            let chosen = platform::select(&parsed, want).ok_or_else(|| {
                RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    wanted: platform::platform_string(want),
                    available: platform::available(&parsed),
                }
            })?;
            let child = chosen.digest;
            let (d, mt, b) = self
                .fetch_manifest(ep, &scopes, &child.to_string(), Some(&child))
                .await?;
            if is_index(&mt) {
                return Err(RegistryError::InvalidContent {
                    what: "index",
                    url: format!("{}/v2/{}/manifests/{child}", ep.url_base, ep.repository),
                    reason: "nested indexes are not supported".into(),
                });
            }
            (Some((digest, media_type, bytes)), d, mt, b)
        } else {
            (None, digest, media_type, bytes)
        };
        let manifest = Manifest::from_json(&bytes, format!("manifest {digest}")).map_err(|e| {
            RegistryError::InvalidContent {
                what: "manifest",
                url: format!("{}/v2/{}/manifests/{digest}", ep.url_base, ep.repository),
                reason: e.to_string(),
            }
        })?;
        let config_bytes = self.fetch_small_blob(ep, &scopes, &manifest.config).await?;
        Ok(Resolved {
            endpoint: ep.clone(),
            index,
            manifest_digest: digest,
            manifest_media_type: media_type,
            manifest_bytes: bytes,
            manifest,
            config_bytes,
        })
    }

    /// Finds the manifest of `reference` for `platform` (through an index if the tag names one)
    /// and its config, trying mirrors first and then the origin, without downloading layers. Use
    /// it to learn a base image's digest and config (e.g. for cache keys) before pulling.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        let endpoints = self
            .conf
            .endpoints_for(reference, &self.opts.insecure_registries)?;
        let mut errors = Vec::new();
        let single = endpoints.len() == 1;
        for ep in &endpoints {
            match self.resolve_at(ep, reference, platform).await {
                Ok(r) => return Ok(r),
                // These are facts about the image, not the endpoint: another mirror cannot help.
                Err(e @ RegistryError::NoMatchingPlatform { .. }) => return Err(e),
                Err(e) if single => return Err(e),
                Err(e) => {
                    tracing::debug!(endpoint = %ep.url_base, error = %e, "endpoint failed");
                    errors.push(format!("{}/{}: {e}", ep.host, ep.repository));
                }
            }
        }
        Err(RegistryError::AllEndpointsFailed {
            reference: reference.to_string(),
            errors,
        })
    }

    /// Pulls `reference` for `platform` into `sink`: the manifest, config (and index) and every
    /// layer blob, compressed as served, each checked for size while it streams and committed
    /// only when its digest matches. Blobs the sink already has are not fetched. Layers
    /// download concurrently (`max_concurrent`), and a dropped connection is resumed with
    /// `Range` (or restarted)
    /// up to `retries` times. A corrupt blob is never committed.
    pub async fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        sink: &dyn Ingester,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<Pulled, RegistryError> {
        let resolved = self.resolve(reference, platform).await?;
        let ep = resolved.endpoint.clone();
        let scopes = vec![scope_pull(&ep.repository)];
        let layers = resolved.manifest.layers.clone();
        let fetched = Mutex::new(Vec::new());
        futures_util::stream::iter(layers.iter().map(Ok))
            .try_for_each_concurrent(self.opts.max_concurrent.max(1), |desc| {
                let (ep, scopes, fetched) = (&ep, &scopes, &fetched);
                async move {
                    if self.fetch_blob(ep, scopes, desc, sink, progress).await? {
                        fetched
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(desc.digest);
                    }
                    Ok::<(), RegistryError>(())
                }
            })
            .await?;
        // Configs and manifests last: their presence means the whole image is there.
        content::put_bytes(
            sink,
            &resolved.manifest.config.digest,
            &resolved.config_bytes,
        )?;
        if let Some((d, _, b)) = &resolved.index {
            content::put_bytes(sink, d, b)?;
        }
        content::put_bytes(sink, &resolved.manifest_digest, &resolved.manifest_bytes)?;
        let fetched = fetched.into_inner().unwrap_or_else(|p| p.into_inner());
        Ok(Pulled {
            resolved,
            layers,
            fetched,
        })
    }

    /// Fetches some blobs of what [`Client::resolve`] found (a cache artifact's layers, say) from
    /// the endpoint that served it, each verified by digest and size while it streams, so a
    /// caller can download only the blobs it lacks. Returns the digests actually fetched.
    pub async fn pull_blobs(
        &self,
        resolved: &Resolved,
        blobs: &[Descriptor],
        sink: &dyn Ingester,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<Vec<Digest>, RegistryError> {
        let ep = &resolved.endpoint;
        let scopes = vec![scope_pull(&ep.repository)];
        let fetched = Mutex::new(Vec::new());
        futures_util::stream::iter(blobs.iter().map(Ok))
            .try_for_each_concurrent(self.opts.max_concurrent.max(1), |desc| {
                let (scopes, fetched) = (&scopes, &fetched);
                async move {
                    if self.fetch_blob(ep, scopes, desc, sink, progress).await? {
                        fetched
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(desc.digest);
                    }
                    Ok::<(), RegistryError>(())
                }
            })
            .await?;
        Ok(fetched.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// Streams one blob into the sink. Returns `false` when it was already there.
    async fn fetch_blob(
        &self,
        ep: &Endpoint,
        scopes: &[String],
        desc: &Descriptor,
        sink: &dyn Ingester,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<bool, RegistryError> {
        let digest = desc.digest;
        if sink.contains(&digest) {
            progress(PullEvent::Skipped { digest });
            return Ok(false);
        }
        progress(PullEvent::Started {
            digest,
            size: desc.size,
        });
        let path = format!("/v2/{}/blobs/{digest}", ep.repository);
        let mut ingest: Option<Box<dyn ContentWriter>> = None;
        let mut attempt = 0u32;
        loop {
            let w = match ingest.as_mut() {
                Some(w) => w,
                None => ingest.insert(sink.begin(&digest, desc.size)?),
            };
            let offset = w.written();
            let mk = |c: &reqwest::Client, base: &str| {
                let r = c.get(format!("{base}{path}"));
                if offset > 0 {
                    r.header(RANGE, format!("bytes={offset}-"))
                } else {
                    r
                }
            };
            // `transient` = worth retrying (connection dropped, short body, 5xx).
            let (transient, err) = match self.send(ep, scopes, &mk).await {
                Err(e @ RegistryError::Http { .. }) => (true, e),
                Err(e) => return Err(e),
                Ok((resp, url)) => {
                    let status = resp.status();
                    if status == StatusCode::NOT_FOUND {
                        return Err(RegistryError::NotFound {
                            what: format!("blob {digest}"),
                            url,
                        });
                    }
                    let resumed = status == StatusCode::PARTIAL_CONTENT
                        && offset > 0
                        && resp
                            .headers()
                            .get(reqwest::header::CONTENT_RANGE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.starts_with(&format!("bytes {offset}-")));
                    if status == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
                        // The server has no bytes past what we hold: the blob is truncated there.
                        return Err(RegistryError::SizeMismatch {
                            url,
                            digest,
                            expected: desc.size,
                            actual: offset,
                        });
                    }
                    if status.is_server_error() {
                        (true, status_err(resp, &url).await)
                    } else if status != StatusCode::OK && !resumed {
                        return Err(status_err(resp, &url).await);
                    } else {
                        if offset > 0 && !resumed {
                            // The server ignored Range: start over with a fresh ingest.
                            ingest = Some(sink.begin(&digest, desc.size)?);
                        }
                        match self
                            .stream_into(&mut ingest, resp, &url, desc, progress)
                            .await
                        {
                            Ok(()) => {
                                let w = ingest.take().ok_or_else(|| {
                                    RegistryError::Setup("ingest vanished".into())
                                })?;
                                return match w.commit() {
                                    Ok(()) => {
                                        progress(PullEvent::Done { digest });
                                        Ok(true)
                                    }
                                    Err(ContentError::DigestMismatch {
                                        expected,
                                        actual,
                                        size,
                                    }) => Err(RegistryError::DigestMismatch {
                                        url,
                                        expected,
                                        actual,
                                        size,
                                    }),
                                    Err(e) => Err(e.into()),
                                };
                            }
                            Err((true, e)) => (true, e),
                            Err((false, e)) => return Err(e),
                        }
                    }
                }
            };
            if !transient || attempt >= self.opts.retries {
                return Err(err);
            }
            attempt += 1;
            let resumed_at = ingest.as_ref().map_or(0, |w| w.written());
            tracing::debug!(%digest, attempt, resumed_at, error = %err, "retrying blob download");
            progress(PullEvent::Retrying {
                digest,
                attempt,
                resumed_at,
            });
        }
    }

    /// Copies a blob response into the ingest, enforcing the descriptor size. Errors are
    /// `(transient, error)`.
    async fn stream_into(
        &self,
        ingest: &mut Option<Box<dyn ContentWriter>>,
        mut resp: reqwest::Response,
        url: &str,
        desc: &Descriptor,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<(), (bool, RegistryError)> {
        let Some(w) = ingest.as_mut() else {
            return Err((false, RegistryError::Setup("no ingest".into())));
        };
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let done = w.written() + chunk.len() as u64;
                    if done > desc.size {
                        return Err((
                            false,
                            RegistryError::SizeMismatch {
                                url: url.to_string(),
                                digest: desc.digest,
                                expected: desc.size,
                                actual: done,
                            },
                        ));
                    }
                    w.write_all(&chunk).map_err(|e| {
                        (
                            false,
                            RegistryError::Io {
                                action: "write blob into the content store",
                                path: PathBuf::from(desc.digest.to_string()),
                                source: e,
                            },
                        )
                    })?;
                    progress(PullEvent::Progress {
                        digest: desc.digest,
                        done,
                        size: desc.size,
                    });
                }
                Ok(None) => break,
                Err(e) => return Err((true, http_err(url)(e))),
            }
        }
        if w.written() < desc.size {
            return Err((
                true,
                RegistryError::SizeMismatch {
                    url: url.to_string(),
                    digest: desc.digest,
                    expected: desc.size,
                    actual: w.written(),
                },
            ));
        }
        Ok(())
    }

    /// Pushes the image whose manifest (or index) is `manifest` from `source` to `dest`: blobs the
    /// registry lacks are uploaded, then the manifest is put under `dest`'s tag (or digest).
    /// Returns the manifest digest.
    pub async fn push(
        &self,
        source: &dyn Provider,
        manifest: &[u8],
        manifest_media_type: &str,
        dest: &Reference,
        progress: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<Digest, RegistryError> {
        self.push_with(
            source,
            manifest,
            manifest_media_type,
            dest,
            &PushOptions::default(),
            progress,
        )
        .await
    }

    /// [`Client::push`] with options: `mount_from` names repositories on the same registry whose
    /// blobs can be mounted instead of uploaded. For an index, every child manifest (read from
    /// `source`) is pushed by digest first.
    pub async fn push_with(
        &self,
        source: &dyn Provider,
        manifest: &[u8],
        manifest_media_type: &str,
        dest: &Reference,
        opts: &PushOptions,
        progress: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<Digest, RegistryError> {
        let first = self
            .push_once(source, manifest, manifest_media_type, dest, opts, progress)
            .await;
        match first {
            // Recorded mount hints widen the token's scopes; a token service that refuses the
            // whole request over one of them (no pull right on an old source any more) must not
            // fail a push a plain upload can do: once more without the hints.
            Err(RegistryError::Unauthorized { .. }) if !opts.blob_sources.is_empty() => {
                let plain = PushOptions {
                    blob_sources: HashMap::new(),
                    ..opts.clone()
                };
                self.push_once(
                    source,
                    manifest,
                    manifest_media_type,
                    dest,
                    &plain,
                    progress,
                )
                .await
            }
            other => other,
        }
    }

    async fn push_once(
        &self,
        source: &dyn Provider,
        manifest: &[u8],
        manifest_media_type: &str,
        dest: &Reference,
        opts: &PushOptions,
        progress: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<Digest, RegistryError> {
        let ep = self
            .conf
            .push_endpoint(dest, &self.opts.insecure_registries)?;
        // Only a repository of the destination's own registry (not a mirror), other than the
        // destination itself, can be a mount source.
        let same_registry = |r: &Reference| {
            let eps = self
                .conf
                .endpoints_for(r, &self.opts.insecure_registries)
                .ok()?;
            let src = eps.into_iter().find(|e| !e.is_mirror)?;
            (src.host == ep.host && src.repository != ep.repository).then_some(src.repository)
        };
        let mut mounts: Vec<String> = Vec::new();
        for m in opts.mount_from.iter().filter_map(same_registry) {
            if !mounts.contains(&m) {
                mounts.push(m);
            }
        }
        let mut blob_mounts: HashMap<Digest, Vec<String>> = HashMap::new();
        for (digest, refs) in &opts.blob_sources {
            let mut list: Vec<String> = Vec::new();
            for m in refs.iter().filter_map(same_registry) {
                if !list.contains(&m) {
                    list.push(m);
                }
            }
            if !list.is_empty() {
                blob_mounts.insert(*digest, list);
            }
        }
        // The token must allow pulling from every repository a blob may be mounted from.
        let mut sources: Vec<String> = mounts
            .iter()
            .chain(blob_mounts.values().flatten())
            .cloned()
            .collect();
        sources.sort();
        sources.dedup();
        // Explicit sources first; recorded hints only up to a bound, so the token request stays
        // small (its URL carries every scope) and one stale hint cannot crowd out the rest.
        sources.sort_by_key(|m| !mounts.contains(m));
        sources.truncate(MAX_MOUNT_SOURCES);
        let blob_mounts: HashMap<Digest, Vec<String>> = blob_mounts
            .into_iter()
            .map(|(d, l)| (d, l.into_iter().filter(|m| sources.contains(m)).collect()))
            .collect();
        let mut scopes = vec![format!("repository:{}:pull,push", ep.repository)];
        scopes.extend(sources.iter().map(|m| scope_pull(m)));
        let tag = match (dest.tag(), dest.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_string(),
        };
        let ctx = PushCtx {
            ep: &ep,
            scopes: &scopes,
            mounts: &mounts,
            blob_mounts: &blob_mounts,
            source,
            progress,
        };
        if is_index(manifest_media_type) {
            let index = Index::from_json(manifest, "index to push").map_err(|e| {
                RegistryError::InvalidContent {
                    what: "index",
                    url: "(local store)".into(),
                    reason: e.to_string(),
                }
            })?;
            for child in &index.manifests {
                let bytes = content::read_limited(source, &child.digest, MAX_MANIFEST_SIZE)?;
                self.push_image(&ctx, &bytes, &child.media_type, &child.digest.to_string())
                    .await?;
            }
            self.put_manifest(&ctx, manifest, manifest_media_type, &tag)
                .await
        } else {
            self.push_image(&ctx, manifest, manifest_media_type, &tag)
                .await
        }
    }

    async fn push_image(
        &self,
        ctx: &PushCtx<'_>,
        manifest: &[u8],
        media_type: &str,
        tag: &str,
    ) -> Result<Digest, RegistryError> {
        let m = Manifest::from_json(manifest, "manifest to push").map_err(|e| {
            RegistryError::InvalidContent {
                what: "manifest",
                url: "(local store)".into(),
                reason: e.to_string(),
            }
        })?;
        let blobs: Vec<&Descriptor> = std::iter::once(&m.config).chain(m.layers.iter()).collect();
        futures_util::stream::iter(blobs.into_iter().map(Ok))
            .try_for_each_concurrent(self.opts.max_concurrent.max(1), |d| {
                self.push_blob(ctx, d.digest)
            })
            .await?;
        self.put_manifest(ctx, manifest, media_type, tag).await
    }

    async fn put_manifest(
        &self,
        ctx: &PushCtx<'_>,
        manifest: &[u8],
        media_type: &str,
        tag: &str,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(manifest);
        let path = format!("/v2/{}/manifests/{tag}", ctx.ep.repository);
        let body = bytes::Bytes::copy_from_slice(manifest);
        let mk = |c: &reqwest::Client, base: &str| {
            c.put(format!("{base}{path}"))
                .header(CONTENT_TYPE, media_type)
                .body(body.clone())
        };
        let (resp, url) = self.send(ctx.ep, ctx.scopes, &mk).await?;
        if !resp.status().is_success() {
            return Err(status_err(resp, &url).await);
        }
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<Digest>().ok())
        {
            if d != digest {
                return Err(RegistryError::DigestMismatch {
                    url,
                    expected: digest,
                    actual: d,
                    size: manifest.len() as u64,
                });
            }
        }
        (ctx.progress)(PushEvent::ManifestPushed {
            digest,
            reference: tag.to_string(),
        });
        Ok(digest)
    }

    async fn push_blob(&self, ctx: &PushCtx<'_>, digest: Digest) -> Result<(), RegistryError> {
        let ep = ctx.ep;
        let size = ctx.source.size(&digest)?;
        let head_path = format!("/v2/{}/blobs/{digest}", ep.repository);
        let mk = |c: &reqwest::Client, base: &str| c.head(format!("{base}{head_path}"));
        let (resp, _) = self.send(ep, ctx.scopes, &mk).await?;
        if resp.status() == StatusCode::OK {
            (ctx.progress)(PushEvent::Exists { digest });
            return Ok(());
        }
        let mut session: Option<String> = None;
        let known = ctx
            .blob_mounts
            .get(&digest)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let candidates = known
            .iter()
            .chain(ctx.mounts.iter().filter(|m| !known.contains(m)));
        for from in candidates {
            let path = format!("/v2/{}/blobs/uploads/", ep.repository);
            let from_q = from.clone();
            let mk = |c: &reqwest::Client, base: &str| {
                c.post(format!("{base}{path}"))
                    .query(&[("mount", digest.to_string()), ("from", from_q.clone())])
                    .header(reqwest::header::CONTENT_LENGTH, "0")
            };
            // A mount is only an optimisation: a refused or failed one (no pull right on the
            // source any more, a stale record) falls through to the next source or an upload.
            let Ok((resp, _)) = self.send(ep, ctx.scopes, &mk).await else {
                continue;
            };
            match resp.status() {
                StatusCode::CREATED => {
                    (ctx.progress)(PushEvent::Mounted {
                        digest,
                        from: from.clone(),
                    });
                    return Ok(());
                }
                StatusCode::ACCEPTED => {
                    session = location(&resp, &self.base(ep).await?);
                    break;
                }
                _ => {}
            }
        }
        (ctx.progress)(PushEvent::Started { digest, size });
        let location = match session {
            Some(l) => l,
            None => self.start_upload(ctx).await?,
        };
        let chunked = if self.opts.chunk_size > 0 {
            self.upload_chunked(ctx, digest, size, location).await?
        } else {
            Some(location)
        };
        let location = match chunked {
            Some(l) => l,
            None => {
                // The chunked upload was refused: start over with one monolithic PUT.
                let l = self.start_upload(ctx).await?;
                self.upload_monolithic(ctx, digest, size, &l).await?;
                (ctx.progress)(PushEvent::Done { digest });
                return Ok(());
            }
        };
        if self.opts.chunk_size == 0 {
            self.upload_monolithic(ctx, digest, size, &location).await?;
        } else {
            self.finish_upload(ctx, digest, &location, bytes::Bytes::new())
                .await?;
        }
        (ctx.progress)(PushEvent::Done { digest });
        Ok(())
    }

    async fn start_upload(&self, ctx: &PushCtx<'_>) -> Result<String, RegistryError> {
        let path = format!("/v2/{}/blobs/uploads/", ctx.ep.repository);
        let mk = |c: &reqwest::Client, base: &str| {
            c.post(format!("{base}{path}"))
                .header(reqwest::header::CONTENT_LENGTH, "0")
        };
        let (resp, url) = self.send(ctx.ep, ctx.scopes, &mk).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_err(resp, &url).await);
        }
        let base = self.base(ctx.ep).await?;
        location(&resp, &base).ok_or_else(|| RegistryError::InvalidContent {
            what: "upload response",
            url,
            reason: "202 without a Location header".into(),
        })
    }

    /// PATCHes the blob in `chunk_size` pieces. Returns the final upload location, or `None`
    /// when the registry refused the first chunk (the caller falls back to a monolithic PUT).
    async fn upload_chunked(
        &self,
        ctx: &PushCtx<'_>,
        digest: Digest,
        size: u64,
        mut location: String,
    ) -> Result<Option<String>, RegistryError> {
        let path = PathBuf::from(digest.to_string());
        let mut file = ctx.source.open(&digest)?;
        let mut offset = 0u64;
        let mut buf = vec![0u8; self.opts.chunk_size];
        while offset < size {
            let mut n = 0;
            while n < buf.len() {
                let got = file
                    .read(buf.get_mut(n..).unwrap_or_default())
                    .map_err(io_err("read", &path))?;
                if got == 0 {
                    break;
                }
                n += got;
            }
            if n == 0 {
                break;
            }
            let chunk = bytes::Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
            let range = format!("{offset}-{}", offset + n as u64 - 1);
            let loc = location.clone();
            let mk = |c: &reqwest::Client, _base: &str| {
                c.patch(loc.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(reqwest::header::CONTENT_RANGE, range.clone())
                    .body(chunk.clone())
            };
            let (resp, url) = self.send(ctx.ep, ctx.scopes, &mk).await?;
            if resp.status() != StatusCode::ACCEPTED {
                if offset == 0 && resp.status().is_client_error() {
                    tracing::debug!(%digest, status = %resp.status(), "chunked upload refused, falling back to monolithic");
                    return Ok(None);
                }
                return Err(status_err(resp, &url).await);
            }
            let base = self.base(ctx.ep).await?;
            location = location_or(&resp, &base, location);
            offset += n as u64;
            (ctx.progress)(PushEvent::Progress {
                digest,
                done: offset,
                size,
            });
        }
        if offset != size {
            return Err(RegistryError::Io {
                action: "read blob (it changed size while pushing)",
                path,
                source: std::io::Error::other(format!("expected {size} bytes, read {offset}")),
            });
        }
        Ok(Some(location))
    }

    async fn upload_monolithic(
        &self,
        ctx: &PushCtx<'_>,
        digest: Digest,
        size: u64,
        location: &str,
    ) -> Result<(), RegistryError> {
        let source = ctx.source;
        let mk = move |c: &reqwest::Client, _base: &str| {
            let file = source.open(&digest);
            let stream = futures_util::stream::unfold(Some(file), |state| async move {
                let mut file = match state? {
                    Ok(f) => f,
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), None)),
                };
                let mut buf = vec![0u8; 1 << 20];
                match file.read(&mut buf) {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(bytes::Bytes::from(buf)), Some(Ok(file))))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            });
            c.put(with_digest(location, &digest))
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, size.to_string())
                .body(reqwest::Body::wrap_stream(stream))
        };
        let (resp, url) = self.send(ctx.ep, ctx.scopes, &mk).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_err(resp, &url).await);
        }
        (ctx.progress)(PushEvent::Progress {
            digest,
            done: size,
            size,
        });
        Ok(())
    }

    async fn finish_upload(
        &self,
        ctx: &PushCtx<'_>,
        digest: Digest,
        location: &str,
        body: bytes::Bytes,
    ) -> Result<(), RegistryError> {
        let url = with_digest(location, &digest);
        let mk = |c: &reqwest::Client, _base: &str| {
            c.put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body.clone())
        };
        let (resp, url) = self.send(ctx.ep, ctx.scopes, &mk).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_err(resp, &url).await);
        }
        Ok(())
    }

    /// Checks that `creds` are accepted by `registry` (a host such as `quay.io` or
    /// `localhost:5000`), for `rbuild login` before the credentials are saved.
    pub async fn login_check(
        &self,
        registry: &str,
        creds: &Credentials,
    ) -> Result<(), RegistryError> {
        let ep = Endpoint::new(
            &format!("{registry}/"),
            false,
            false,
            &self.opts.insecure_registries,
        );
        let ep = Endpoint {
            insecure: ep.insecure
                || self.conf.registries.iter().any(|r| {
                    r.insecure
                        && auth::normalize_registry(&r.location)
                            == auth::normalize_registry(registry)
                }),
            ..ep
        };
        let base = self.base(&ep).await?;
        let url = format!("{base}/v2/");
        let challenge = self.lock().challenges.get(&ep.host).cloned();
        let Some(ch) = challenge else {
            return Ok(());
        };
        match ch.scheme.as_str() {
            "basic" => {
                let resp = self
                    .http_for(&ep)
                    .get(&url)
                    .header(AUTHORIZATION, creds.basic_header())
                    .send()
                    .await
                    .map_err(http_err(&url))?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    let status = resp.status().as_u16();
                    Err(RegistryError::Unauthorized {
                        registry: registry.to_string(),
                        url,
                        detail: format!("HTTP {status}: {}", error_body(resp).await),
                    })
                }
            }
            "bearer" => self
                .fetch_token(&ep, &ch, &[], Some(creds))
                .await
                .map(|_| ()),
            other => Err(RegistryError::Unauthorized {
                registry: registry.to_string(),
                url,
                detail: format!("unsupported authentication scheme {other:?}"),
            }),
        }
    }
}

struct PushCtx<'a> {
    ep: &'a Endpoint,
    scopes: &'a [String],
    mounts: &'a [String],
    blob_mounts: &'a HashMap<Digest, Vec<String>>,
    source: &'a dyn Provider,
    progress: &'a (dyn Fn(PushEvent) + Send + Sync),
}

fn location(resp: &reqwest::Response, base: &str) -> Option<String> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .filter(|l| !l.is_empty())
        .map(|l| absolute(base, l))
}

fn location_or(resp: &reqwest::Response, base: &str, old: String) -> String {
    location(resp, base).unwrap_or(old)
}

/// Adds `digest=<d>` to an upload URL that may already carry query parameters (`_state`).
fn with_digest(location: &str, digest: &Digest) -> String {
    match url::Url::parse(location) {
        Ok(mut u) => {
            u.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            u.to_string()
        }
        Err(_) => {
            let sep = if location.contains('?') { '&' } else { '?' };
            format!("{location}{sep}digest={digest}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_manifests() {
        let table: &[(&str, &str, Result<&str, ()>)] = &[
            (MEDIA_TYPE_OCI_MANIFEST, "{}", Ok(MEDIA_TYPE_OCI_MANIFEST)),
            (
                "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8",
                "{}",
                Ok(MEDIA_TYPE_DOCKER_MANIFEST),
            ),
            (
                "application/json",
                r#"{"schemaVersion":2,"manifests":[]}"#,
                Ok(MEDIA_TYPE_OCI_INDEX),
            ),
            (
                "",
                r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json"}"#,
                Ok(MEDIA_TYPE_DOCKER_MANIFEST_LIST),
            ),
            (
                "",
                r#"{"schemaVersion":2,"config":{}}"#,
                Ok(MEDIA_TYPE_OCI_MANIFEST),
            ),
            ("", r#"{"schemaVersion":1,"fsLayers":[]}"#, Err(())),
            ("", r#"{"mediaType":"text/html"}"#, Err(())),
            ("", "not json", Err(())),
        ];
        for (ct, body, want) in table {
            let got = classify_manifest(ct, body.as_bytes(), "http://x/v2/");
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{ct} {body}"),
                (Err(e), Err(())) => assert!(e.to_string().contains("http://x/v2/"), "{e}"),
                (g, w) => panic!("{ct} {body}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn futures_are_send() {
        fn is_send<T: Send>(_: T) {}
        let c = Client::new(ClientOptions::default()).unwrap();
        let r = Reference::parse("x").unwrap();
        let p = platform::host_platform();
        struct Nothing;
        impl Ingester for Nothing {
            fn contains(&self, _: &Digest) -> bool {
                false
            }
            fn begin(&self, d: &Digest, _: u64) -> Result<Box<dyn ContentWriter>, ContentError> {
                Err(ContentError::NotFound { digest: *d })
            }
        }
        impl Provider for Nothing {
            fn size(&self, d: &Digest) -> Result<u64, ContentError> {
                Err(ContentError::NotFound { digest: *d })
            }
            fn open(&self, d: &Digest) -> Result<Box<dyn Read + Send>, ContentError> {
                Err(ContentError::NotFound { digest: *d })
            }
        }
        is_send(c.resolve(&r, &p));
        is_send(c.pull(&r, &p, &Nothing, &|_| {}));
        is_send(c.push(&Nothing, b"{}", MEDIA_TYPE_OCI_MANIFEST, &r, &|_| {}));
    }

    #[test]
    fn upload_urls() {
        let d = Digest::of(b"x");
        assert_eq!(
            absolute("http://h:1", "/v2/a/blobs/uploads/u"),
            "http://h:1/v2/a/blobs/uploads/u"
        );
        assert_eq!(absolute("http://h:1", "https://s3/x"), "https://s3/x");
        assert_eq!(
            with_digest("http://h/v2/a/blobs/uploads/u?_state=abc", &d),
            format!(
                "http://h/v2/a/blobs/uploads/u?_state=abc&digest=sha256%3A{}",
                d.hex()
            )
        );
        assert_eq!(
            with_digest("http://h/u", &d),
            format!("http://h/u?digest=sha256%3A{}", d.hex())
        );
    }
}
