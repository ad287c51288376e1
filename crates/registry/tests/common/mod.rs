//! Test fixtures: a real `docker-registry` on a free loopback port, a tiny JWT token issuer for
//! the registry's token auth, a small content store on disk (the [`Ingester`] and [`Provider`] a
//! program brings), and helpers that make small images in it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rbuild_digest::Digest;
use rbuild_image::manifest::{
    Descriptor, Manifest, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_MANIFEST,
};
use rbuild_registry::{ContentError, ContentWriter, Ingester, Provider};

/// A content store in a directory, as small as the interface allows but as careful as a real one:
/// blobs are written to a temp file under `ingest/`, hashed on the way, and renamed into `blobs/`
/// only when the digest matches, so the tests see what a real store would keep.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<DirStore> {
        let root = root.into();
        std::fs::create_dir_all(root.join("blobs"))?;
        std::fs::create_dir_all(root.join("ingest"))?;
        Ok(DirStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.hex())
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, ContentError> {
        let d = Digest::of(bytes);
        let mut w = self.begin(&d, bytes.len() as u64)?;
        w.write_all(bytes)?;
        w.commit()?;
        Ok(d)
    }

    pub fn read_blob(&self, d: &Digest) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(d))
    }
}

struct DirWriter {
    dest: PathBuf,
    expected: Digest,
    writer: rbuild_digest::DigestWriter<tempfile::NamedTempFile>,
}

impl Write for DirWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

impl ContentWriter for DirWriter {
    fn written(&self) -> u64 {
        self.writer.written()
    }
    fn commit(self: Box<Self>) -> Result<(), ContentError> {
        let (file, actual, size) = self.writer.finish();
        if actual != self.expected {
            return Err(ContentError::DigestMismatch {
                expected: self.expected,
                actual,
                size,
            });
        }
        file.as_file().sync_all()?;
        file.persist(&self.dest).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Ingester for DirStore {
    fn contains(&self, digest: &Digest) -> bool {
        DirStore::contains(self, digest)
    }
    fn begin(&self, digest: &Digest, _size: u64) -> Result<Box<dyn ContentWriter>, ContentError> {
        let tmp = tempfile::NamedTempFile::new_in(self.root.join("ingest"))?;
        Ok(Box::new(DirWriter {
            dest: self.path(digest),
            expected: *digest,
            writer: rbuild_digest::DigestWriter::new(tmp),
        }))
    }
}

impl Provider for DirStore {
    fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        match std::fs::metadata(self.path(digest)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ContentError::NotFound { digest: *digest })
            }
            Err(e) => Err(e.into()),
        }
    }
    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, ContentError> {
        match std::fs::File::open(self.path(digest)) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ContentError::NotFound { digest: *digest })
            }
            Err(e) => Err(e.into()),
        }
    }
}

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A free port on 127.0.0.1 (bound then released; the registry binds it right after).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running `docker-registry serve`, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// Starts an anonymous registry.
    pub fn start() -> Registry {
        Self::start_with_auth("")
    }

    /// Starts a registry with an `auth:` YAML block (already indented under `auth:`).
    pub fn start_with_auth(auth: &str) -> Registry {
        Self::start_full(auth, false)
    }

    /// Starts an anonymous registry serving HTTPS with a fresh self-signed certificate for
    /// 127.0.0.1 (written to `<dir>/tls-cert.pem`).
    pub fn start_tls() -> Registry {
        Self::start_full("", true)
    }

    fn start_full(auth: &str, tls: bool) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_block = if tls {
            let key = rcgen::KeyPair::generate().expect("keygen");
            let params = rcgen::CertificateParams::new(vec![
                "127.0.0.1".to_string(),
                "localhost".to_string(),
            ])
            .expect("params");
            let cert = params.self_signed(&key).expect("cert");
            let (c, k) = (
                dir.path().join("tls-cert.pem"),
                dir.path().join("tls-key.pem"),
            );
            std::fs::write(&c, cert.pem()).expect("write cert");
            std::fs::write(&k, key.serialize_pem()).expect("write key");
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.display(),
                k.display()
            )
        } else {
            String::new()
        };
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("mkdir storage");
        let auth_block = if auth.is_empty() {
            String::new()
        } else {
            format!("auth:\n{auth}\n")
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: rbuild-test-secret\n{tls_block}{auth_block}",
            storage.display()
        );
        let cfg_path = dir.path().join("config.yml");
        std::fs::write(&cfg_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {REGISTRY_BIN} (Debian package docker-registry): {e}")
            });
        let mut reg = Registry { child, port, dir };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            // Any HTTP answer means it listens (a TLS registry answers plain HTTP with 400).
            if http_status(&format!("127.0.0.1:{}", self.port), "/v2/").is_some() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry did not answer /v2/ in 30 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The file the registry serves a blob from.
    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(&hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-shot plain HTTP GET returning the status code, for readiness polling.
pub fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A gzip stream of pseudo-random bytes (incompressible enough to make real-sized blobs).
pub fn gzip_blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&data).expect("gzip");
    enc.finish().expect("gzip")
}

/// A small OCI image (config + 2 gzip layers) in `store`; returns the manifest bytes and parsed.
pub fn make_image(
    store: &DirStore,
    seed: u64,
    arch: &str,
    big_layer: usize,
) -> (Vec<u8>, Manifest) {
    let l1 = gzip_blob(seed, 1000);
    let l2 = gzip_blob(seed + 1, big_layer);
    let d1 = store.put_bytes(&l1).expect("put");
    let d2 = store.put_bytes(&l2).expect("put");
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}","{}"]}},"config":{{"Env":["SEED={seed}"]}}}}"#,
        Digest::of(b"diff1"),
        Digest::of(b"diff2")
    );
    let dc = store.put_bytes(config.as_bytes()).expect("put");
    let m = Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_MANIFEST.into()),
        config: Descriptor::new(MEDIA_TYPE_OCI_CONFIG, dc, config.len() as u64),
        layers: vec![
            Descriptor::new(MEDIA_TYPE_OCI_LAYER_GZIP, d1, l1.len() as u64),
            Descriptor::new(MEDIA_TYPE_OCI_LAYER_GZIP, d2, l2.len() as u64),
        ],
        annotations: Default::default(),
    };
    let bytes = serde_json::to_vec(&m).expect("json");
    store.put_bytes(&bytes).expect("put");
    (bytes, m)
}

/// Files left in the store's ingest directory (should be none after any pull, failed or not).
pub fn leftover_ingests(store: &DirStore) -> Vec<PathBuf> {
    std::fs::read_dir(store.root().join("ingest"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub const TOKEN_SERVICE: &str = "rbuild-test-registry";
pub const TOKEN_ISSUER: &str = "rbuild-test-issuer";

/// A minimal token issuer for the registry's `auth: token:`: checks basic credentials, refuses
/// any request with a scope on `forbidden/...` (as strict services do), grants every requested scope in an ES256 JWT whose `x5c` certificate is the registry's
/// `rootcertbundle`, and records each request's query string.
pub struct TokenServer {
    pub port: u16,
    pub cert_path: PathBuf,
    pub requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    pub fn start(dir: &Path, user: &str, pass: &str) -> TokenServer {
        let key = rcgen::KeyPair::generate().expect("keygen");
        let params =
            rcgen::CertificateParams::new(vec!["rbuild-test-token".to_string()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let cert_path = dir.join("token-cert.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        let cert_der = cert.der().to_vec();
        let rng = ring::rand::SystemRandom::new();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .expect("ring key");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let expected_auth = format!("Basic {}", B64.encode(format!("{user}:{pass}")));
        let (req2, stop2) = (requests.clone(), stop.clone());
        let counter = AtomicU64::new(0);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let Some((target, headers)) = read_head(&mut conn) else {
                    continue;
                };
                let query = target
                    .split_once('?')
                    .map(|(_, q)| q.to_string())
                    .unwrap_or_default();
                req2.lock().expect("lock").push(query.clone());
                let authorized = headers
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case("authorization") && *v == expected_auth);
                // A strict token service: one scope on a repository the user may not read
                // (`forbidden/...`) refuses the whole request instead of leaving it out.
                let forbidden = url::form_urlencoded::parse(query.as_bytes())
                    .any(|(k, v)| k == "scope" && v.contains(":forbidden/"));
                if !authorized || forbidden {
                    let body =
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
                    let _ = write!(
                        conn,
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    continue;
                }
                let mut access = Vec::new();
                for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                    if k != "scope" {
                        continue;
                    }
                    for scope in v.split(' ') {
                        let mut parts = scope.splitn(2, ':');
                        let typ = parts.next().unwrap_or_default();
                        let rest = parts.next().unwrap_or_default();
                        if let Some((name, actions)) = rest.rsplit_once(':') {
                            access.push(serde_json::json!({
                                "type": typ, "name": name,
                                "actions": actions.split(',').collect::<Vec<_>>(),
                            }));
                        }
                    }
                }
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("time")
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [B64.encode(&cert_der)]});
                let claims = serde_json::json!({
                    "iss": TOKEN_ISSUER, "sub": "tester", "aud": TOKEN_SERVICE,
                    "exp": now + 300, "nbf": now - 10, "iat": now,
                    "jti": format!("t{}", counter.fetch_add(1, Ordering::SeqCst)),
                    "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    B64URL.encode(header.to_string()),
                    B64URL.encode(claims.to_string())
                );
                let sig = signer.sign(&rng, signing_input.as_bytes()).expect("sign");
                let jwt = format!("{signing_input}.{}", B64URL.encode(sig.as_ref()));
                let body = serde_json::json!({"token": jwt, "expires_in": 300}).to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer {
            port,
            cert_path,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// The registry `auth:` block that trusts this issuer.
    pub fn registry_auth(&self) -> String {
        format!(
            "  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}",
            self.port,
            self.cert_path.display()
        )
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads an HTTP/1 request head: returns the request target and the headers.
pub fn read_head(conn: &mut TcpStream) -> Option<(String, Vec<(String, String)>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8(buf).ok()?;
    let mut lines = text.split("\r\n");
    let target = lines.next()?.split_whitespace().nth(1)?.to_string();
    let headers = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some((target, headers))
}

/// A one-request-per-connection HTTP proxy in front of a registry that cuts the body of the
/// first `cuts` full (non-Range) GETs whose path contains `needle` after `cut_after` bytes, so
/// the client sees a dropped connection mid-blob. Counts the Range requests it forwards.
pub struct CuttingProxy {
    pub port: u16,
    pub range_requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CuttingProxy {
    pub fn start(upstream: String, needle: String, cut_after: usize, cuts: u64) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let range_requests = Arc::new(AtomicU64::new(0));
        let cuts_left = Arc::new(AtomicU64::new(cuts));
        let (stop2, ranges2) = (stop.clone(), range_requests.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (up, needle, cuts_left, ranges) = (
                    upstream.clone(),
                    needle.clone(),
                    cuts_left.clone(),
                    ranges2.clone(),
                );
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, &up, &needle, cut_after, &cuts_left, &ranges);
                });
            }
        });
        CuttingProxy {
            port,
            range_requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn proxy_one(
    mut conn: TcpStream,
    upstream: &str,
    needle: &str,
    cut_after: usize,
    cuts_left: &AtomicU64,
    ranges: &AtomicU64,
) -> Option<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut first = [0u8; 1];
    if conn.peek(&mut first).ok()? == 0 || first[0] == 0x16 {
        // A TLS ClientHello: this proxy speaks plain HTTP only.
        return None;
    }
    let (target, headers) = read_head(&mut conn)?;
    let has_range = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("range"));
    if has_range {
        ranges.fetch_add(1, Ordering::SeqCst);
    }
    let mut up = TcpStream::connect(upstream).ok()?;
    let mut req = format!("GET {target} HTTP/1.1\r\n");
    for (k, v) in &headers {
        if !k.eq_ignore_ascii_case("connection") && !k.eq_ignore_ascii_case("host") {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str(&format!("Host: {upstream}\r\nConnection: close\r\n\r\n"));
    up.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let (head, body) = resp.split_at(split);
    let head = String::from_utf8_lossy(head);
    let head: String = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        + "Connection: close\r\n\r\n";
    conn.write_all(head.as_bytes()).ok()?;
    let cut = target.contains(needle)
        && !has_range
        && cuts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if cut {
        conn.write_all(body.get(..cut_after.min(body.len()))?)
            .ok()?;
    } else {
        conn.write_all(body).ok()?;
    }
    conn.flush().ok()?;
    Some(())
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
