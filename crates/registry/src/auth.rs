//! Credentials and the registry authentication handshake.
//!
//! Credentials are found the way docker and podman find them, so `docker login` / `podman login`
//! done before keep working: explicit overrides first, then the docker config
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: `credHelpers`, `credsStore`,
//! `auths`), then podman's `${XDG_RUNTIME_DIR}/containers/auth.json` (or `$REGISTRY_AUTH_FILE`).
//! [`store_login`] / [`remove_login`] write docker's format for `rbuild login` / `rbuild logout`.
//!
//! ```
//! use rbuild_registry::auth::{self, AuthSource, Credentials};
//! let dir = tempfile::tempdir().unwrap();
//! let cfg = dir.path().join("config.json");
//! auth::store_login("localhost:5000", &Credentials::new("ci", "s3cret"), &cfg).unwrap();
//! let src = AuthSource { docker_config: Some(cfg.clone()), ..AuthSource::default() };
//! let creds = auth::load("localhost:5000", &src).unwrap().unwrap();
//! assert_eq!(creds.username, "ci");
//! assert!(!format!("{creds:?}").contains("s3cret"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{io_err, RegistryError};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The key docker uses for Docker Hub in `auths` and with credential helpers.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// A username and secret for one registry. `Debug` never shows the secret, so credentials can be
/// logged or put in errors without leaking.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account name.
    pub username: String,
    /// The password or access token.
    pub password: String,
    /// An OAuth2 refresh token (docker's `identitytoken`), used instead of the password when set.
    pub identity_token: Option<String>,
}

impl Credentials {
    /// Username and password credentials, the common case.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
            identity_token: None,
        }
    }

    /// The `Authorization: Basic` value for these credentials.
    pub(crate) fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            B64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where credentials come from; every path is injectable so tests and embedders never read the
/// real user's files. [`AuthSource::from_env`] gives docker's and podman's defaults.
#[derive(Clone, Default)]
pub struct AuthSource {
    /// Docker's `config.json` (with `auths`, `credsStore`, `credHelpers`).
    pub docker_config: Option<PathBuf>,
    /// Podman's `auth.json` (same `auths` format, no helpers).
    pub podman_auth_file: Option<PathBuf>,
    /// Credentials given directly (e.g. `--creds`), by registry host; they win over files.
    pub overrides: BTreeMap<String, Credentials>,
}

impl fmt::Debug for AuthSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSource")
            .field("docker_config", &self.docker_config)
            .field("podman_auth_file", &self.podman_auth_file)
            .field("overrides", &self.overrides.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AuthSource {
    /// Docker's and podman's default locations, from the given environment lookup:
    /// `$DOCKER_CONFIG/config.json` else `$HOME/.docker/config.json`, and `$REGISTRY_AUTH_FILE`
    /// else `$XDG_RUNTIME_DIR/containers/auth.json`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> AuthSource {
        let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
        let docker_config = nonempty("DOCKER_CONFIG")
            .map(|d| PathBuf::from(d).join("config.json"))
            .or_else(|| nonempty("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")));
        let podman_auth_file = nonempty("REGISTRY_AUTH_FILE")
            .map(PathBuf::from)
            .or_else(|| {
                nonempty("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("containers/auth.json"))
            });
        AuthSource {
            docker_config,
            podman_auth_file,
            overrides: BTreeMap::new(),
        }
    }
}

/// Normalises a registry name or auth-file key (`https://index.docker.io/v1/`, `quay.io`,
/// `registry-1.docker.io`) to the host docker compares them by.
pub fn normalize_registry(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// The key docker writes for a registry in `auths` and passes to credential helpers.
fn auth_key(registry: &str) -> String {
    let n = normalize_registry(registry);
    if n == "docker.io" {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        n
    }
}

/// Finds the credentials for `registry` (a host such as `quay.io` or `localhost:5000`), or `None`
/// for anonymous access.
pub fn load(registry: &str, src: &AuthSource) -> Result<Option<Credentials>, RegistryError> {
    let want = normalize_registry(registry);
    if let Some(c) = src
        .overrides
        .iter()
        .find(|(k, _)| normalize_registry(k) == want)
        .map(|(_, c)| c.clone())
    {
        return Ok(Some(c));
    }
    if let Some(path) = &src.docker_config {
        if let Some(cfg) = read_json(path)? {
            if let Some(helper) = helper_for(&cfg, &want) {
                if let Some(c) = helper_get(helper, &auth_key(&want))? {
                    return Ok(Some(c));
                }
            }
            if let Some(c) = from_auths(&cfg, &want, path)? {
                return Ok(Some(c));
            }
        }
    }
    if let Some(path) = &src.podman_auth_file {
        if let Some(cfg) = read_json(path)? {
            if let Some(c) = from_auths(&cfg, &want, path)? {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

fn read_json(path: &Path) -> Result<Option<Value>, RegistryError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| RegistryError::Credentials {
            source_name: path.display().to_string(),
            reason: format!("not valid JSON: {e}"),
        })
}

fn from_auths(cfg: &Value, want: &str, path: &Path) -> Result<Option<Credentials>, RegistryError> {
    let Some(auths) = cfg.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let Some((key, entry)) = auths.iter().find(|(k, _)| normalize_registry(k) == want) else {
        return Ok(None);
    };
    let bad = |reason: String| RegistryError::Credentials {
        source_name: format!("{} (entry {key:?})", path.display()),
        reason,
    };
    let identity_token = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let decoded = B64
            .decode(auth.trim())
            .map_err(|_| bad("\"auth\" is not base64".into()))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("\"auth\" is not UTF-8".into()))?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| bad("\"auth\" is not user:password".into()))?;
        return Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
            identity_token,
        }));
    }
    let user = entry.get("username").and_then(Value::as_str);
    let pass = entry.get("password").and_then(Value::as_str);
    match (user, pass, identity_token) {
        (Some(u), Some(p), t) => Ok(Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
            identity_token: t,
        })),
        (_, _, Some(t)) => Ok(Some(Credentials {
            username: user.unwrap_or("<token>").to_string(),
            password: String::new(),
            identity_token: Some(t),
        })),
        _ => Ok(None),
    }
}

/// The credential helper docker would use for `want` (a normalised host): its `credHelpers`
/// entry, else `credsStore`.
fn helper_for<'a>(cfg: &'a Value, want: &str) -> Option<&'a str> {
    cfg.get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalize_registry(k) == want)
                .and_then(|(_, v)| v.as_str())
        })
        .or_else(|| cfg.get("credsStore").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
}

/// What a helper run printed, and whether it succeeded.
struct HelperRun {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl HelperRun {
    /// The helpers' own "nothing stored for this server" answer (docker-credential-helpers'
    /// `credentials not found in native keychain`).
    fn not_found(&self) -> bool {
        !self.ok
            && (self.stdout.contains("credentials not found")
                || self.stderr.contains("credentials not found")
                || self.stdout.is_empty() && self.stderr.is_empty())
    }
}

/// Runs `docker-credential-<helper> <action>` with `input` on stdin, docker's credential-helper
/// protocol (`get` and `erase` take the server URL, `store` a JSON document).
fn run_helper(helper: &str, action: &str, input: &[u8]) -> Result<HelperRun, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let fail = |reason: String| RegistryError::Credentials {
        source_name: program.clone(),
        reason,
    };
    if !helper
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(fail("invalid helper name".into()));
    }
    let mut child = match Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Err(fail(format!("cannot run it: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        match stdin.write_all(input) {
            Ok(()) => {}
            // A helper may answer (and exit) without reading its input, e.g. when it fails;
            // its status and message below say what happened.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("cannot write to it: {e}")));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot wait for it: {e}")))?;
    Ok(HelperRun {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn helper_failed(helper: &str, action: &str, run: &HelperRun) -> RegistryError {
    let why = if run.stderr.is_empty() {
        run.stdout.trim()
    } else {
        &run.stderr
    };
    RegistryError::Credentials {
        source_name: format!("docker-credential-{helper}"),
        reason: format!("{action} failed: {why}"),
    }
}

/// Runs `docker-credential-<helper> get`, docker's credential-helper protocol.
fn helper_get(helper: &str, server: &str) -> Result<Option<Credentials>, RegistryError> {
    let run = run_helper(helper, "get", server.as_bytes())?;
    if !run.ok {
        if run.not_found() {
            return Ok(None);
        }
        return Err(helper_failed(helper, "get", &run));
    }
    let v: Value = serde_json::from_str(&run.stdout).map_err(|e| RegistryError::Credentials {
        source_name: format!("docker-credential-{helper}"),
        reason: format!("printed invalid JSON: {e}"),
    })?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if user == "<token>" {
        Credentials {
            username: user.to_string(),
            password: String::new(),
            identity_token: Some(secret.to_string()),
        }
    } else {
        Credentials::new(user, secret)
    }))
}

/// Runs `docker-credential-<helper> store`: `{"ServerURL", "Username", "Secret"}` on stdin, an
/// identity token stored as user `<token>`, as docker does.
fn helper_store(helper: &str, server: &str, creds: &Credentials) -> Result<(), RegistryError> {
    let (user, secret) = match &creds.identity_token {
        Some(t) => ("<token>", t.as_str()),
        None => (creds.username.as_str(), creds.password.as_str()),
    };
    let doc = serde_json::json!({ "ServerURL": server, "Username": user, "Secret": secret });
    let run = run_helper(helper, "store", doc.to_string().as_bytes())?;
    if run.ok {
        Ok(())
    } else {
        Err(helper_failed(helper, "store", &run))
    }
}

/// Runs `docker-credential-<helper> erase`; `false` when it held nothing for `server`.
fn helper_erase(helper: &str, server: &str) -> Result<bool, RegistryError> {
    let run = run_helper(helper, "erase", server.as_bytes())?;
    if run.ok {
        Ok(true)
    } else if run.not_found() {
        Ok(false)
    } else {
        Err(helper_failed(helper, "erase", &run))
    }
}

fn write_json_atomic(path: &Path, v: &Value) -> Result<(), RegistryError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config.json"),
        std::process::id()
    ));
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| RegistryError::Credentials {
        source_name: path.display().to_string(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err("rename into place", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves credentials for `rbuild login` as docker does: in the credential helper the config names
/// for this registry (`credHelpers`, else `credsStore`), leaving only an empty `auths` entry in
/// the file, and otherwise in `auths.<registry>.auth` (base64 of `user:password`). Every other
/// key is kept; the file is replaced atomically and is readable by its owner only. When a
/// helper is configured and fails, the error is returned and the secret is never written to
/// the file instead.
pub fn store_login(
    registry: &str,
    creds: &Credentials,
    config_path: &Path,
) -> Result<(), RegistryError> {
    let mut cfg = read_json(config_path)?.unwrap_or_else(|| Value::Object(Map::new()));
    let snapshot = cfg.clone();
    let Some(obj) = cfg.as_object_mut() else {
        return Err(RegistryError::Credentials {
            source_name: config_path.display().to_string(),
            reason: "top level is not a JSON object".into(),
        });
    };
    let auths = obj
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let want = normalize_registry(registry);
    if let Some(helper) = helper_for(&snapshot, &want) {
        helper_store(helper, &auth_key(registry), creds)?;
        if let Some(auths) = auths.as_object_mut() {
            auths.retain(|k, _| normalize_registry(k) != want);
            auths.insert(auth_key(registry), Value::Object(Map::new()));
        }
        return write_json_atomic(config_path, &cfg);
    }
    if let Some(auths) = auths.as_object_mut() {
        auths.retain(|k, _| normalize_registry(k) != want);
        let mut entry = Map::new();
        entry.insert(
            "auth".into(),
            Value::String(B64.encode(format!("{}:{}", creds.username, creds.password))),
        );
        if let Some(t) = &creds.identity_token {
            entry.insert("identitytoken".into(), Value::String(t.clone()));
        }
        auths.insert(auth_key(registry), Value::Object(entry));
    }
    write_json_atomic(config_path, &cfg)
}

/// Forgets the credentials for `registry`, for `rbuild logout`: erased from the credential
/// helper the docker `config.json` names for it, and its `auths` entry removed. Returns whether
/// there were any.
pub fn remove_login(registry: &str, config_path: &Path) -> Result<bool, RegistryError> {
    let Some(mut cfg) = read_json(config_path)? else {
        return Ok(false);
    };
    let want = normalize_registry(registry);
    let erased = match helper_for(&cfg, &want) {
        Some(helper) => helper_erase(helper, &auth_key(registry))?,
        None => false,
    };
    let Some(auths) = cfg.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(erased);
    };
    let before = auths.len();
    auths.retain(|k, _| normalize_registry(k) != want);
    if auths.len() == before {
        return Ok(erased);
    }
    write_json_atomic(config_path, &cfg)?;
    Ok(true)
}

/// A parsed `WWW-Authenticate` challenge: which scheme the registry wants and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased scheme: `basic` or `bearer`.
    pub scheme: String,
    /// Lower-cased parameter names with their values (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// Parses the first challenge of a `WWW-Authenticate` header value
    /// (`Bearer realm="https://auth.example/token",service="registry",scope="repository:a:pull"`).
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = BTreeMap::new();
        let b = rest.as_bytes();
        let mut i = 0;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b',') {
                i += 1;
            }
            if i >= b.len() {
                break;
            }
            let start = i;
            while i < b.len() && b[i] != b'=' && b[i] != b',' {
                i += 1;
            }
            let name = rest.get(start..i)?.trim().to_ascii_lowercase();
            if i >= b.len() || b[i] != b'=' {
                // A token68 or bare word: keep going, it carries no parameter we use.
                continue;
            }
            i += 1;
            let mut value = String::new();
            if b.get(i) == Some(&b'"') {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch_end = (i + 1..=b.len()).find(|&e| rest.is_char_boundary(e))?;
                    value.push_str(rest.get(i..ch_end)?);
                    i = ch_end;
                }
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && b[i] != b',' {
                    i += 1;
                }
                value = rest.get(vs..i)?.trim().to_string();
            }
            params.insert(name, value);
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn helper_for_prefers_cred_helpers_then_creds_store() {
        let cfg = serde_json::json!({
            "credsStore": "desktop",
            "credHelpers": { "https://quay.io": "quay", "gcr.io": "" }
        });
        assert_eq!(helper_for(&cfg, "quay.io"), Some("quay"));
        assert_eq!(helper_for(&cfg, "localhost:5000"), Some("desktop"));
        // An empty credHelpers entry falls back to nothing, as docker treats "" as no helper.
        assert_eq!(helper_for(&cfg, "gcr.io"), None);
        assert_eq!(helper_for(&serde_json::json!({}), "quay.io"), None);
    }

    #[test]
    fn a_missing_helper_fails_login_without_writing_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.json");
        std::fs::write(&cfg, r#"{"credsStore": "rbuild-no-such-helper"}"#).unwrap();
        let e = store_login("localhost:5000", &Credentials::new("u", "pw-123"), &cfg).unwrap_err();
        assert!(
            e.to_string()
                .contains("docker-credential-rbuild-no-such-helper"),
            "{e}"
        );
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(!text.contains("auths"), "{text}");
    }

    use super::*;

    #[test]
    fn parses_challenges() {
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let table: &[Case] = &[
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("scope", "repository:library/alpine:pull"),
                    ("service", "registry.docker.io"),
                ],
            ),
            (
                r#"Basic realm="Registry Realm""#,
                "basic",
                &[("realm", "Registry Realm")],
            ),
            (
                r#"bearer realm="http://h/t", scope="repository:a:pull,push", error="insufficient_scope""#,
                "bearer",
                &[
                    ("error", "insufficient_scope"),
                    ("realm", "http://h/t"),
                    ("scope", "repository:a:pull,push"),
                ],
            ),
            ("Basic", "basic", &[]),
            (
                r#"Bearer realm=unquoted,service="a\"b""#,
                "bearer",
                &[("realm", "unquoted"), ("service", "a\"b")],
            ),
        ];
        for (input, scheme, params) in table {
            let c = Challenge::parse(input).unwrap_or_else(|| panic!("{input}"));
            assert_eq!(c.scheme, *scheme, "{input}");
            let want: BTreeMap<String, String> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(c.params, want, "{input}");
        }
        assert_eq!(Challenge::parse(""), None);
        // Hostile input must not panic.
        for weird in [
            "Bearer =",
            "Bearer realm=\"unterminated",
            "Bearer ,,,=,",
            "Bearer r=\"é\\",
        ] {
            let _ = Challenge::parse(weird);
        }
    }

    #[test]
    fn reads_docker_and_podman_files() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("docker.json");
        let podman = dir.path().join("auth.json");
        std::fs::write(
            &docker,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"quay.io":{{"username":"q","password":"qp"}},"tok.io":{{"identitytoken":"refresh"}}}}}}"#,
                B64.encode("hub:hubpass")
            ),
        )
        .unwrap();
        std::fs::write(
            &podman,
            format!(
                r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}}}}}}"#,
                B64.encode("gh:ghp:with:colons")
            ),
        )
        .unwrap();
        let src = AuthSource {
            docker_config: Some(docker),
            podman_auth_file: Some(podman),
            overrides: BTreeMap::from([("override.io".to_string(), Credentials::new("o", "op"))]),
        };
        let get = |r: &str| {
            load(r, &src)
                .unwrap()
                .map(|c| (c.username, c.password, c.identity_token))
        };
        assert_eq!(
            get("docker.io"),
            Some(("hub".into(), "hubpass".into(), None))
        );
        assert_eq!(
            get("registry-1.docker.io"),
            Some(("hub".into(), "hubpass".into(), None))
        );
        assert_eq!(get("quay.io"), Some(("q".into(), "qp".into(), None)));
        assert_eq!(
            get("ghcr.io"),
            Some(("gh".into(), "ghp:with:colons".into(), None))
        );
        assert_eq!(get("override.io"), Some(("o".into(), "op".into(), None)));
        assert_eq!(
            get("tok.io"),
            Some(("<token>".into(), String::new(), Some("refresh".into())))
        );
        assert_eq!(get("nothing.io"), None);
        let dbg = format!("{:?}", load("quay.io", &src).unwrap());
        assert!(!dbg.contains("qp"), "{dbg}");
    }

    #[test]
    fn broken_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        for bad in [
            "{",
            r#"{"auths":{"x.io":{"auth":"!!!"}}}"#,
            r#"{"auths":{"x.io":{"auth":"bm9jb2xvbg=="}}}"#,
        ] {
            std::fs::write(&f, bad).unwrap();
            let src = AuthSource {
                docker_config: Some(f.clone()),
                ..AuthSource::default()
            };
            let e = load("x.io", &src).unwrap_err();
            assert!(e.to_string().contains("config.json"), "{e}");
        }
    }

    #[test]
    fn login_logout_round_trip_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/config.json");
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(
            &f,
            r#"{"auths":{"keep.io":{"auth":"a2VlcDprZWVw"}},"psFormat":"x"}"#,
        )
        .unwrap();
        store_login("docker.io", &Credentials::new("me", "pw"), &f).unwrap();
        store_login("localhost:5000", &Credentials::new("me2", "pw2"), &f).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "x");
        assert_eq!(v["auths"][DOCKER_HUB_AUTH_KEY]["auth"], B64.encode("me:pw"));
        assert_eq!(v["auths"]["localhost:5000"]["auth"], B64.encode("me2:pw2"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(remove_login("index.docker.io", &f).unwrap());
        assert!(!remove_login("docker.io", &f).unwrap());
        let src = AuthSource {
            docker_config: Some(f.clone()),
            ..AuthSource::default()
        };
        assert_eq!(load("docker.io", &src).unwrap(), None);
        assert_eq!(
            load("keep.io", &src).unwrap(),
            Some(Credentials::new("keep", "keep"))
        );
        assert!(!remove_login("x", &dir.path().join("absent.json")).unwrap());
    }
}
