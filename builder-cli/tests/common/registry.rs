//! A real `docker-registry` (Debian's distribution 2.x) on a free loopback port, killed on drop,
//! for the push/pull tests; optionally behind htpasswd basic auth.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A free port on 127.0.0.1 (bound then released; the registry binds it right after).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running `docker-registry serve`.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Self::start_with_auth("")
    }

    /// A registry that wants `user`/`pass` (htpasswd, bcrypt as the registry requires).
    pub fn start_htpasswd(user: &str, pass: &str) -> Registry {
        let hash = bcrypt::hash(pass, 5).expect("bcrypt");
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
        let reg = Self::start_in(
            dir,
            &format!(
                "  htpasswd:\n    realm: rbuild-test\n    path: {}",
                htpasswd.display()
            ),
        );
        reg
    }

    fn start_with_auth(auth: &str) -> Registry {
        Self::start_in(tempfile::tempdir().expect("tempdir"), auth)
    }

    fn start_in(dir: tempfile::TempDir, auth: &str) -> Registry {
        let port = free_port();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).expect("mkdir storage");
        let auth_block = if auth.is_empty() {
            String::new()
        } else {
            format!("auth:\n{auth}\n")
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: rbuild-test-secret\n{auth_block}",
            storage.display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {REGISTRY_BIN} (Debian package docker-registry): {e}")
            });
        let mut reg = Registry {
            child: Some(child),
            port,
            dir,
        };
        reg.wait_ready();
        reg
    }

    /// Polls `/v2/` until the registry answers (it exits or 30 s pass: panic with its log).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("docker-registry exited with {status}: {}", self.log());
            }
            if http_status(&self.host(), "/v2/").is_some() {
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

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Kills the registry and waits for it, so the port no longer answers.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The file the registry serves blob `digest` (`sha256:<hex>`) from.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
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

/// `skopeo copy` of the busybox docker-archive into `dest` (`127.0.0.1:PORT/repo:tag`).
pub fn skopeo_push_base(archive: &std::path::Path, dest: &str) {
    crate::common::run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{dest}")),
    );
}

/// The raw manifest of `image` in a registry, via skopeo.
pub fn skopeo_manifest(image: &str) -> serde_json::Value {
    let out = crate::common::run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    serde_json::from_slice(&out.stdout).expect("manifest json")
}
