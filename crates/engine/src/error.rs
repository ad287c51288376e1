//! Build errors: typed, carrying the Dockerfile position or the path/digest at fault; the CLI renders them.

use std::path::PathBuf;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The request itself is inconsistent (bad flag value, unknown output type).
    #[error("{0}")]
    Request(String),
    /// A RUN step is for a platform this host cannot execute (no registered emulator); the
    /// message names what to install.
    #[error("{0}")]
    Emulation(String),
    /// The Dockerfile could not be parsed or planned; carries file, line and column.
    #[error(transparent)]
    Dockerfile(#[from] rbuild_dockerfile::ParseError),
    /// A Dockerfile could not be read.
    #[error("cannot read Dockerfile {path}: {source}")]
    ReadDockerfile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A step failed; `step` is `N/M` and `line` the Dockerfile line.
    #[error("{file}:{line}: step {step} `{text}` failed: {message}")]
    Step {
        /// Dockerfile name.
        file: String,
        /// Line of the instruction.
        line: usize,
        /// `N/M`.
        step: String,
        /// The instruction text.
        text: String,
        /// What went wrong.
        message: String,
    },
    /// A base image is neither local nor reachable.
    #[error("{file}:{line}: base image {image:?} not found: {why}")]
    BaseImage {
        /// Dockerfile name.
        file: String,
        /// Line of the FROM.
        line: usize,
        /// The image reference as written (expanded).
        image: String,
        /// Why it could not be used.
        why: String,
    },
    /// The build context is unusable.
    #[error(transparent)]
    Context(#[from] rbuild_context::ContextError),
    /// The image store failed.
    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),
    /// Image handling (config, export, references) failed.
    #[error(transparent)]
    Image(#[from] rbuild_image::ImageError),
    /// Writing or applying a layer failed.
    #[error(transparent)]
    Layer(#[from] rbuild_layer::LayerError),
    /// A snapshot could not be prepared, mounted or committed.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The RUN sandbox could not be set up.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Some other I/O failure, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `--device` could not be resolved (unknown device, bad CDI spec); nothing was built.
    #[error("{file}: {source}")]
    Device {
        /// Dockerfile name, for context.
        file: String,
        /// What is wrong.
        source: rbuild_cdi::CdiError,
    },
    /// The build was cancelled (Ctrl-C, SIGTERM, or the library's cancel handle).
    #[error("build cancelled")]
    Cancelled,
    /// The build task was cancelled or panicked (a bug: please report).
    #[error("build task failed: {0}")]
    Task(String),
}

impl BuildError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BuildError::Io {
            path: path.into(),
            source,
        }
    }
}
