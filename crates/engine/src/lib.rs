//! The build engine: the API a program embeds to build images from Dockerfiles.
//!
//! A build is compiled, then solved, as BuildKit does it: the Dockerfile front end (`dockerfile`)
//! parses and plans stages; `lower` turns the stages the target needs into a graph of ops (base
//! images, file ops, exec ops, config-only steps), each keyed by a versioned encoding (`key`);
//! `solve` runs every op whose inputs are ready, several at once, reusing cached results and
//! explaining each miss; the image crate commits and exports the result. The engine never
//! prints: it reports typed [`Event`]s to a [`ProgressSink`], or as a stream of a [`Build`].
//!
//! Three ways to run a build, all on threads rbuild owns (no async runtime is required):
//! [`Builder::start`] returns a [`Build`] (a future of the outcome, a stream of [`Event`]s, a
//! [`Cancel`] handle; [`Build::wait`] blocks instead of awaiting); [`Builder::build_with`] blocks
//! the calling thread with a [`ProgressSink`] and a [`Cancel`]; [`Builder::build`] is the future
//! alone.
//!
//! Module graph (no cycles): `builder` (the public handle) → `multi` (several platforms) →
//! `frontend` (read, parse, plan options), `resources` (what a builder owns: store, registry,
//! snapshotter, sandboxes), `deliver` (commit and export) and `outcome`; each of these →
//! `lower` → `ops`, `meta`, `graph`, and → `solve` → `ops`, `explain` → `cache`; `ops` → `view`,
//! `ctxmount`, `fetch`, `fsutil`, `key`, `shared` → `cacheio` (exported caches: local layouts,
//! registries) → `cachefmt` → `cache`; `lower`, `cacheio`, `deliver` → `transfer` (registry
//! pulls and pushes) → `progress`.
//!
//! ```no_run
//! use rbuild_engine::{Builder, BuilderOptions, BuildRequest, Event};
//! # fn run() -> Result<(), rbuild_engine::BuildError> {
//! let builder = Builder::open(BuilderOptions { root: "/tmp/rbuild-store".into(), registry: Default::default(), isolation: Default::default() })?;
//! let mut build = builder.start(BuildRequest::new(".").tag("app:1"));
//! for event in build.events() {
//!     if let Event::StepStarted(step) = event {
//!         println!("#{} {}", step.index, step.text);
//!     }
//! }
//! let out = build.wait()?; // or `build.await?` in async code, under any runtime
//! println!("{}", out.image_id());
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
mod deliver;
mod devices;
mod error;
mod explain;
mod fetch;
mod frontend;
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
mod outcome;
mod platform;
pub mod progress;
mod request;
mod resources;
mod sandboxes;
pub mod save;
mod shared;
mod solve;
pub mod spec;
mod task;
pub mod transfer;
mod userenv;
mod view;

pub use builder::{Builder, BuilderOptions};
pub use cachespec::{CacheExport, CacheImport, CacheMode};
pub use error::BuildError;
pub use frontend::host_platform;
pub use hostinfo::HostInfo;
pub use import::import_rootfs;
pub use maintenance::{check, CheckReport, PruneReport};
pub use meta::apply_change;
pub use outcome::{BuildOutcome, Pushed};
pub use progress::MissReason;
pub use progress::{
    BlobState, CacheResult, CollectProgress, Direction, Event, NoProgress, ProgressSink,
    RegistryEvent, StepId, StepResult,
};
pub use request::{BuildRequest, Output, SecretFrom, SecretSource, SshSource};
pub use shared::Cancel;
pub use solve::Explained;
pub use task::{BlockingEvents, Build, Events};
/// Pulling base images and pushing results, by the path embedders have used so far
/// (`rbuild_engine::pull::pull_base`, `…::pull::PushSettings`); [`transfer`] is the module.
pub use transfer as pull;

/// Re-exported so callers can build [`BuildRequest::devices`] (and parse `--gpus`).
pub use rbuild_cdi as cdi;
/// Re-exported for `rbuild build --check` and other front-end uses.
pub use rbuild_dockerfile as dockerfile;
/// Re-exported so embedders can list, tag, export and load images without naming more crates.
pub use rbuild_image as image;
/// Re-exported so a program's `main` can call [`rbuild_sandbox::enter_user_namespace`] before it starts
/// threads, which rootless builds of images with several owners need.
pub use rbuild_sandbox as sandbox;
