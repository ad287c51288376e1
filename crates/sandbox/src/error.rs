//! Typed errors of the sandbox.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can stop a step from running (the step's own non-zero exit is NOT an error:
/// it is reported in [`crate::RunResult`]), so callers can tell "the sandbox broke" from "the
/// command failed".
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The [`crate::RunSpec`] cannot be run as given; the message names the offending field.
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),

    /// A host-side operation failed (creating a pipe, a temp file, forking...).
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path involved if any.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The sandbox's child failed while setting the step up; `step` names the operation and its
    /// arguments, e.g. `mount overlay on /tmp/x/root`, and `source` is the errno it got.
    #[error("sandbox set-up failed: {step}: {source}")]
    Setup {
        /// The failed set-up operation, with its paths.
        step: String,
        /// The errno the child reported.
        #[source]
        source: std::io::Error,
    },

    /// The step's command could not be executed (not found, not executable...).
    #[error("exec {program:?} failed: {source}")]
    Exec {
        /// `argv[0]` as given.
        program: String,
        /// The errno of the last `execve` attempt.
        #[source]
        source: std::io::Error,
    },

    /// A line of /etc/subuid or /etc/subgid could not be parsed.
    #[error("{path}:{line}: {message}")]
    SubId {
        /// The file being parsed.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },

    /// `newuidmap`/`newgidmap` (or the direct write of a single-id map) was refused.
    #[error("writing the {which} map of the sandbox failed: {detail}")]
    IdMap {
        /// `uid` or `gid`.
        which: &'static str,
        /// The tool's status and stderr, or the errno of the write.
        detail: String,
    },

    /// The step ran longer than [`crate::RunSpec::timeout`]; all its processes were killed.
    #[error("step timed out after {0:?} and was killed")]
    TimedOut(Duration),

    /// The caller's cancel flag was raised; all the step's processes were killed.
    #[error("step cancelled and killed")]
    Cancelled,

    /// This host (or this caller) cannot isolate steps as asked; the message says what is
    /// missing and what to change.
    #[error("{0}")]
    Unsupported(String),

    /// The sandbox's helper process died without reporting a result.
    #[error("sandbox helper process died unexpectedly (wait status {0:#x})")]
    HelperDied(i32),
}

impl SandboxError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> SandboxError {
        SandboxError::Io {
            what: what.into(),
            source,
        }
    }
}
