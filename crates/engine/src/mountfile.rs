//! The files `RUN --mount=type=secret` and `type=ssh` put in a step, with BuildKit's `mode`,
//! `uid` and `gid` (defaults: a secret is 0400 and an agent socket 0600, both root's), so a step
//! running as another user sees exactly the access the Dockerfile grants.
//!
//! The ssh agent is not bound in itself: its socket's owner and mode are the host's and cannot be
//! changed for one step. As BuildKit does, the step gets a socket of its own with the requested
//! owner and mode, and every connection to it is forwarded to the agent.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rbuild_sandbox::Sandbox;

use crate::BuildError;

/// BuildKit's default mode of a secret file.
pub(crate) const SECRET_MODE: u32 = 0o400;
/// BuildKit's default mode of an ssh agent socket.
pub(crate) const SSH_MODE: u32 = 0o600;

/// Owner and permission bits a mounted file gets, as the step sees ids.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileAccess {
    /// `uid=` (default 0).
    pub uid: Option<u32>,
    /// `gid=` (default 0).
    pub gid: Option<u32>,
    /// `mode=`, or the mount type's default.
    pub mode: u32,
}

/// Applies `access` to a file this process just created (hence container root's already).
fn apply(sandbox: &Sandbox, path: &Path, access: FileAccess) -> Result<(), BuildError> {
    let owner = (access.uid.unwrap_or(0), access.gid.unwrap_or(0));
    sandbox
        .set_owner_mode(path, (owner != (0, 0)).then_some(owner), Some(access.mode))
        .map_err(|e| BuildError::io(path, io::Error::other(e.to_string())))
}

/// Writes a secret's value to the new file `path` with the requested owner and mode.
pub(crate) fn write_secret(
    sandbox: &Sandbox,
    path: &Path,
    value: &[u8],
    access: FileAccess,
) -> Result<(), BuildError> {
    // Never readable by others, even for the moment before the requested mode is applied.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BuildError::io(path, e))?;
    io::Write::write_all(&mut f, value).map_err(|e| BuildError::io(path, e))?;
    drop(f);
    apply(sandbox, path, access)
}

/// A socket at `path` forwarding every connection to an ssh agent, until dropped.
pub(crate) struct AgentProxy {
    path: PathBuf,
    /// The listening socket, shut down on drop to wake the accepting thread.
    listener: UnixListener,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Listens at the new socket `path` (owner and mode as requested) and forwards its connections to
/// the agent's socket `agent`.
pub(crate) fn agent_proxy(
    sandbox: &Sandbox,
    agent: &Path,
    path: &Path,
    access: FileAccess,
) -> Result<AgentProxy, BuildError> {
    let listener = UnixListener::bind(path).map_err(|e| BuildError::io(path, e))?;
    apply(sandbox, path, access)?;
    let stop = Arc::new(AtomicBool::new(false));
    let agent = agent.to_path_buf();
    let ours = listener.try_clone().map_err(|e| BuildError::io(path, e))?;
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("ssh-agent-proxy".into())
        .spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                // An agent that went away fails this connection only, as it would unproxied.
                let Ok(upstream) = UnixStream::connect(&agent) else {
                    continue;
                };
                forward(client, upstream);
            }
        })
        .map_err(|e| BuildError::io(path, e))?;
    Ok(AgentProxy {
        path: path.to_path_buf(),
        listener: ours,
        stop,
        thread: Some(thread),
    })
}

/// Copies both directions of one connection on their own threads; each ends when its side
/// closes (at the latest when the step's processes are killed at its end).
fn forward(client: UnixStream, upstream: UnixStream) {
    let pair =
        |from: &UnixStream, to: &UnixStream| Some((from.try_clone().ok()?, to.try_clone().ok()?));
    let (Some(a), Some(b)) = (pair(&client, &upstream), pair(&upstream, &client)) else {
        return;
    };
    for (mut from, mut to) in [a, b] {
        let _ = std::thread::Builder::new()
            .name("ssh-agent-copy".into())
            .spawn(move || {
                let _ = io::copy(&mut from, &mut to);
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Linux fails a blocked accept on a listening socket that is shut down, which wakes the
        // thread to see the flag (connecting to the socket could be refused by its new mode).
        // SAFETY: shutdown on a socket fd this struct owns; no memory is passed.
        let woken = unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) } == 0;
        if let (true, Some(t)) = (woken, self.thread.take()) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// An "agent" answering each connection's line reversed, for as many connections as asked.
    fn agent(path: &Path, connections: usize) -> JoinHandle<()> {
        let listener = UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(connections) {
                let mut conn = conn.unwrap();
                let mut line = String::new();
                BufReader::new(conn.try_clone().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                let reply: String = line.trim_end().chars().rev().collect();
                writeln!(conn, "{reply}").unwrap();
            }
        })
    }

    fn ask(path: &Path, line: &str) -> String {
        let mut c = UnixStream::connect(path).unwrap();
        writeln!(c, "{line}").unwrap();
        let mut reply = String::new();
        BufReader::new(c).read_line(&mut reply).unwrap();
        reply
    }

    #[test]
    fn proxy_forwards_every_connection_and_stops_on_drop() {
        let sb = Sandbox::new(rbuild_sandbox::SandboxOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (real, ours) = (dir.path().join("agent"), dir.path().join("proxy"));
        let served = agent(&real, 2);
        let proxy = agent_proxy(
            &sb,
            &real,
            &ours,
            FileAccess {
                uid: None,
                gid: None,
                mode: SSH_MODE,
            },
        )
        .unwrap();
        let meta = std::fs::metadata(&ours).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(ask(&ours, "hello"), "olleh\n");
        assert_eq!(ask(&ours, "abc"), "cba\n");
        served.join().unwrap();
        drop(proxy);
        assert!(!ours.exists(), "the proxy's socket outlived it");
    }

    /// Run as root, as the suite is: the file is chowned directly.
    #[test]
    fn secret_file_gets_owner_and_mode() {
        let sb = Sandbox::new(rbuild_sandbox::SandboxOptions::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        let access = FileAccess {
            uid: Some(1000),
            gid: None,
            mode: 0o640,
        };
        write_secret(&sb, &f, b"value", access).unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (1000, 0, 0o640)
        );
        assert_eq!(std::fs::read(&f).unwrap(), b"value");
    }
}
