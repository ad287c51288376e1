//! The container record: one JSON file per container, replaced atomically (temp + fsync +
//! rename), so a reader or a kill at any moment sees the old record or the new one, never half.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ContainerError;

/// File name of the record inside the container's directory.
pub(crate) const RECORD: &str = "container.json";

/// A bind or tmpfs mount of the container, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mount {
    /// `-v HOST:CTR[:ro]` or `--mount type=bind`.
    Bind {
        /// Absolute host path (must exist).
        source: PathBuf,
        /// Absolute path in the container.
        target: String,
        /// Read-only.
        readonly: bool,
    },
    /// `--mount type=tmpfs`.
    Tmpfs {
        /// Absolute path in the container.
        target: String,
        /// Size limit in bytes.
        size: Option<u64>,
    },
}

/// How the container's process runs, resolved from the image config and the options once, at
/// create time, so `start` runs the same thing again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    /// Entrypoint + command.
    pub args: Vec<String>,
    /// The environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// The user as given (`-u` or the image's `USER`), resolved at each start.
    pub user: String,
    /// Allocate a pseudo-terminal.
    pub tty: bool,
    /// Keep stdin open (`-i`).
    pub stdin_open: bool,
}

/// Docker's `HostConfig` subset rbuild implements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Hostname (default: the short id).
    pub hostname: String,
    /// `host` or `none`.
    pub network: String,
    /// Extra /etc/hosts entries (name, address).
    pub extra_hosts: Vec<(String, String)>,
    /// Mounts, in order.
    pub mounts: Vec<Mount>,
    /// `/dev/shm` size in bytes (default 64 MiB).
    pub shm_size: Option<u64>,
    /// `--ulimit` as (resource number, soft, hard).
    pub ulimits: Vec<(i32, u64, u64)>,
    /// Remove the container when it exits.
    pub auto_remove: bool,
    /// `--device`: CDI names or /dev paths.
    pub devices: Vec<String>,
    /// `--gpus`, resolved through CDI as `nvidia.com/gpu=…`.
    pub gpus: Option<String>,
    /// CDI spec directories given at create time (empty: the defaults).
    #[serde(default)]
    pub cdi_spec_dirs: Vec<std::path::PathBuf>,
    /// Signal `stop` sends first (default SIGTERM).
    pub stop_signal: Option<String>,
}

/// Lifecycle state, written by the creating CLI (created) and the monitor (running, exited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Never started.
    #[default]
    Created,
    /// The monitor says it runs (only believed while the monitor is alive).
    Running,
    /// It ended (or its monitor died).
    Exited,
}

/// Where the container is in its lifecycle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// As recorded.
    pub status: Status,
    /// Host pid of the container's PID 1.
    pub pid: i32,
    /// Its start time (clock ticks since boot, /proc/PID/stat field 22), so a recycled pid is
    /// never taken for it.
    pub pid_start: u64,
    /// The monitor process.
    pub monitor_pid: i32,
    /// Its start time.
    pub monitor_start: u64,
    /// Exit code (128+N for a signal), when exited.
    pub exit_code: Option<i32>,
    /// Why it could not start, when it could not.
    pub error: Option<String>,
    /// Unix time of the last start.
    pub started_at: Option<i64>,
    /// Unix time of the last exit.
    pub finished_at: Option<i64>,
}

/// One container, as stored in `<store>/containers/<id>/container.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image id (config digest).
    pub image_id: String,
    /// The image's layers (diff ids), base first.
    pub diff_ids: Vec<String>,
    /// Overlay lower directories, top first.
    pub lowers: Vec<PathBuf>,
    /// Unix time of creation.
    pub created: i64,
    /// Nanoseconds within `created`, so containers created in the same second list in order.
    #[serde(default)]
    pub created_nanos: u32,
    /// What runs.
    pub process: Process,
    /// How it runs.
    pub host: Host,
    /// Lifecycle.
    pub state: State,
}

impl Record {
    /// The 12-digit id `ps` shows.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}

pub(crate) fn read(dir: &Path) -> Result<Record, ContainerError> {
    let path = dir.join(RECORD);
    let bytes = std::fs::read(&path).map_err(|e| ContainerError::io("read", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerError::Corrupt { path, source })
}

/// Replaces the record atomically: a temp file in the same directory, synced, renamed.
pub(crate) fn write(dir: &Path, rec: &Record) -> Result<(), ContainerError> {
    let path = dir.join(RECORD);
    let tmp = dir.join(format!(".{RECORD}.{}.tmp", std::process::id()));
    let json = serde_json::to_vec_pretty(rec).map_err(|source| ContainerError::Corrupt {
        path: path.clone(),
        source,
    })?;
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map_err(|e| ContainerError::io("write", &path, e))
}

/// A process's start time (field 22 of /proc/PID/stat), `None` when it does not exist.
pub fn process_start(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // After ')': field 3 is state, so field 22 is the 20th.
    let f = rest.split_whitespace().nth(19)?;
    // A zombie still has its stat: it is not running.
    let state = rest.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    f.parse().ok()
}

/// Whether the process recorded as (`pid`, `start`) still exists, and is the same process.
pub(crate) fn alive(pid: i32, start: u64) -> bool {
    pid > 0 && process_start(pid) == Some(start)
}

pub(crate) fn now_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
