//! The build engine: the API a program embeds to build images from Dockerfiles.
//!
//! A build is compiled, then solved, as BuildKit does it: the Dockerfile front end (`dockerfile`)
//! parses and plans stages; `lower` turns the stages the target needs into a graph of ops (base
//! images, file ops, exec ops, config-only steps), each keyed by a versioned encoding (`key`);
//! `solve` runs every op whose inputs are ready, several at once, reusing cached results and
//! explaining each miss; the image crate commits and exports the result. The engine never
//! prints: it reports typed [`Event`]s to a [`ProgressSink`].
//!
//! Module graph (no cycles): `builder` → `lower` → `ops`, `meta`, `graph`; `builder` → `solve` →
//! `ops`, `cache`, `explain`; `ops` → `view`, `ctxmount`, `fetch`, `fsutil`, `key`, `shared`;
//! `builder` → `cacheio` (exported caches: local layouts, registries) → `cachefmt` → `cache`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use rbuild_engine::{Builder, BuilderOptions, BuildRequest, NoProgress};
//! # async fn run() -> Result<(), rbuild_engine::BuildError> {
//! let builder = Builder::open(BuilderOptions { root: "/tmp/rbuild-store".into(), registry: Default::default(), isolation: Default::default() })?;
//! let req = BuildRequest { context: ".".into(), tags: vec!["app:1".into()], ..Default::default() };
//! let out = builder.build(req, Arc::new(NoProgress)).await?;
//! println!("{}", out.image.id);
//! # Ok(()) }
//! ```

mod addsrc;
mod builder;
pub mod cache;
pub mod cachefmt;
mod cacheio;
mod cachemount;
pub mod cachespec;
mod chain;
mod ctxmount;
mod devices;
mod error;
mod explain;
mod fetch;
mod fsutil;
mod graph;
mod hostinfo;
mod import;
pub mod key;
mod lower;
mod maintenance;
mod meta;
pub mod metadata;
mod mountfile;
mod multi;
mod ops;
mod platform;
pub mod progress;
pub mod pull;
mod request;
mod sandboxes;
pub mod save;
mod shared;
mod solve;
pub mod spec;
mod task;
mod userenv;
mod view;

pub use builder::{host_platform, BuildOutcome, Builder, BuilderOptions, Pushed};
pub use cachespec::{CacheExport, CacheImport, CacheMode};
pub use error::BuildError;
pub use hostinfo::HostInfo;
pub use import::import_rootfs;
pub use maintenance::{check, CheckReport, PruneReport};
pub use meta::apply_change;
pub use progress::MissReason;
pub use progress::{CollectProgress, Event, NoProgress, ProgressSink, StepId};
pub use request::{BuildRequest, Output, SecretFrom, SecretSource, SshSource};
pub use shared::Cancel;
pub use solve::Explained;

/// Re-exported so callers can build [`BuildRequest::devices`] (and parse `--gpus`).
pub use rbuild_cdi as cdi;
/// Re-exported for `rbuild build --check` and other front-end uses.
pub use rbuild_dockerfile as dockerfile;
/// Re-exported so embedders can list, tag, export and load images without naming more crates.
pub use rbuild_image as image;
/// Re-exported so a program's `main` can call [`rbuild_sandbox::enter_user_namespace`] before it starts
/// threads, which rootless builds of images with several owners need.
pub use rbuild_sandbox as sandbox;
