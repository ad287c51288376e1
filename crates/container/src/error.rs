//! Errors of the container runtime; each names the container, image, path or option involved.

use std::path::PathBuf;

/// Everything that can go wrong creating, running or managing a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container has this name or id (prefix).
    #[error("No such container: {0}")]
    NotFound(String),
    /// An id prefix matches several containers.
    #[error("multiple containers match {0:?}: give more of the id")]
    Ambiguous(String),
    /// `--name` is taken.
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse {
        /// The name asked for.
        name: String,
        /// The container holding it.
        id: String,
    },
    /// A name docker would refuse.
    #[error("Invalid container name ({0}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    /// A bad option value (volume, mount, env file, ulimit, user...).
    #[error("{0}")]
    Invalid(String),
    /// The container is not running (exec, stop-only operations that need it).
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The container is running and the operation needs it stopped (rm without -f, start).
    #[error("{0}")]
    Running(String),
    /// A requested device has no CDI spec or a bad one (the message names the device).
    #[error(transparent)]
    Device(rbuild_cdi::CdiError),
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: String,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A record on disk cannot be read.
    #[error("container record {} is damaged: {source}", path.display())]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The sandbox failed (set-up, exec, namespaces).
    #[error(transparent)]
    Sandbox(#[from] rbuild_sandbox::SandboxError),
    /// The snapshotter failed (unpacking the image, diffing for commit).
    #[error(transparent)]
    Snapshot(#[from] rbuild_snapshot::SnapshotError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] rbuild_image::ImageError),
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// Resolving a user or group in the image failed.
    #[error(transparent)]
    User(#[from] rbuild_context::ContextError),
}

impl ContainerError {
    pub(crate) fn io(
        action: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ContainerError::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }
}
