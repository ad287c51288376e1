//! The build engine: the API a program embeds to build images from Dockerfiles.
//!
//! A build is compiled, then solved, as BuildKit does it: the Dockerfile front end (`dockerfile`)
//! parses and plans stages; the engine runs only the stages the target needs, in dependency order,
//! turning each filesystem-changing step into a layer in the content store and each metadata step
//! into a history entry; the image crate commits and exports the result. The engine never prints:
//! it reports typed [`Event`]s to a [`ProgressSink`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use engine::{Builder, BuilderOptions, BuildRequest, NoProgress};
//! # async fn run() -> Result<(), engine::BuildError> {
//! let builder = Builder::open(BuilderOptions { root: "/tmp/rbuild-store".into(), registry: Default::default() })?;
//! let req = BuildRequest { context: ".".into(), tags: vec!["app:1".into()], ..Default::default() };
//! let out = builder.build(req, Arc::new(NoProgress)).await?;
//! println!("{}", out.image.id);
//! # Ok(()) }
//! ```

mod addsrc;
mod builder;
pub mod cache;
mod ctxmount;
mod error;
mod fetch;
mod fsutil;
mod import;
pub mod progress;
pub mod pull;
mod request;
mod run;
mod stage;
mod userenv;
mod view;

pub use builder::{host_platform, BuildOutcome, Builder, BuilderOptions};
pub use error::BuildError;
pub use import::import_rootfs;
pub use progress::{CollectProgress, Event, NoProgress, ProgressSink, StepId};
pub use request::{BuildRequest, Output, SecretFrom, SecretSource, SshSource};

/// Re-exported for `rbuild build --check` and other front-end uses.
pub use dockerfile;
/// Re-exported so embedders can list, tag, export and load images without naming more crates.
pub use image;
/// Re-exported so a program's `main` can call [`sandbox::enter_user_namespace`] before it starts
/// threads, which rootless builds of images with several owners need.
pub use sandbox;
