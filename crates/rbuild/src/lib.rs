//! Build OCI images from Dockerfiles inside a Rust program: no daemon, no root, one dependency.
//!
//! This is the facade over rbuild's crates: everything an embedder needs to open a store, build,
//! watch progress, cancel, and list or export images is re-exported here, so a program names
//! one package in its `Cargo.toml`: `rbuild-lib = "0.1"` (its library is `rbuild`). The command
//! line (`rbuild build …`) is a thin client of the same API, in the `rbuild-cli` package.
//!
//! A build runs on threads rbuild owns. [`Builder::start`] returns a [`Build`]: await it under any
//! async runtime (or call [`Build::wait`] without one), read its typed [`Event`]s as a stream or an
//! iterator, and stop it with its [`Cancel`] handle or by dropping it; a cancelled build kills its
//! steps and removes their mounts and scratch directories before it returns.
//!
//! Rootless builds of images whose files have several owners need the process to be root of a
//! user namespace mapped with the caller's subordinate ids: call [`enter_user_namespace`] first
//! thing in `main`, while the process has one thread. A `#[tokio::main]` program has started its
//! runtime's threads before its body runs, so it cannot: write a plain `fn main` that enters the
//! namespace and then builds the runtime (`examples/tokio_userns.rs`).
//!
//! ```no_run
//! use rbuild::{Builder, BuilderOptions, BuildRequest, Event};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! rbuild::enter_user_namespace()?;
//! let builder = Builder::open(BuilderOptions::from_env())?;
//! let mut build = builder.start(BuildRequest::new("./app").tag("app:1").build_arg("V", "2"));
//! for event in build.events() {
//!     if let Event::StepStarted(step) = event {
//!         eprintln!("#{} {}", step.index, step.text);
//!     }
//! }
//! let outcome = build.wait()?;
//! println!("{} ({} steps)", outcome.image_id(), outcome.steps.len());
//! # Ok(()) }
//! ```
//!
//! Features: `registry` (default) pulls base images and pushes results over the OCI distribution
//! API with reqwest and rustls; without it, bases must already be in the store (imported, loaded
//! or built) and the TLS stack is not compiled.

#![warn(missing_docs)]

pub use rbuild_engine::{
    host_platform, import_rootfs, BlobState, BlockingEvents, Build, BuildError, BuildOutcome,
    BuildRequest, Builder, BuilderOptions, CacheResult, Cancel, CollectProgress, Direction, Event,
    Events, Explained, MissReason, NoProgress, Output, ProgressSink, Pushed, RegistryEvent,
    SecretFrom, SecretSource, SshSource, StepId, StepResult,
};

/// Registry settings for [`BuilderOptions::registry`] (`registries.conf`, insecure registries).
pub use rbuild_engine::pull::RegistryOptions;

/// Content digests (`sha256:…`): image ids, manifest and layer digests.
pub use rbuild_digest::{Digest, ParseDigestError};

/// Dockerfile parsing and planning, for tools that lint or inspect Dockerfiles without building.
pub use rbuild_engine::dockerfile;
/// The image store: list, tag, remove, export and load images.
pub use rbuild_engine::image;
/// The rootless sandbox steps run in; [`enter_user_namespace`] is the part a `main` calls.
pub use rbuild_engine::sandbox;
/// The content store underneath the images (blobs by digest, locking).
pub use rbuild_store as store;

pub use rbuild_engine::sandbox::{enter_user_namespace, UserNamespace};
