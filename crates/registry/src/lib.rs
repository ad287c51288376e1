//! Registry client: pulls base images from, and pushes build results to, OCI distribution
//! registries (Docker Hub, quay, ghcr, `docker-registry`, ...), with docker/podman credentials,
//! bearer-token and basic auth, `registries.conf` mirrors and insecure registries, and platform
//! selection from multi-platform indexes. It also downloads plain `https://` URLs
//! ([`Client::get`]) with the same trust store and proxy settings, so a program needs one HTTP
//! stack.
//!
//! The crate is transport only: it never knows where blobs live. A pull writes through an
//! [`Ingester`] and a push reads from a [`Provider`] (containerd's content interfaces are the
//! model); rbuild's engine implements them over its store, a test or another program over
//! anything else.
//!
//! Use [`Client`] from async code and [`BlockingClient`] from plain threads. Pulled layers stay
//! compressed: [`Client::pull`] checks every blob's size while it streams, commits it only when its
//! digest matches, and returns the manifest, config and layer descriptors for the caller to
//! record. [`Client::push`] uploads what the registry lacks (HEAD first, cross-repository mounts,
//! chunked with a monolithic fallback) and puts the manifest last.
//!
//! ```no_run
//! use rbuild_registry::{platform::host_platform, BlockingClient, ClientOptions, Ingester, PullEvent};
//! # fn pull(sink: &dyn Ingester) -> Result<(), Box<dyn std::error::Error>> {
//! let client = BlockingClient::new(ClientOptions::from_env(&|k| std::env::var(k).ok()))?;
//! let reference = rbuild_image::Reference::parse("alpine:3.20")?;
//! let pulled = client.pull(&reference, &host_platform(), sink, &|ev| {
//!     if let PullEvent::Done { digest } = ev {
//!         eprintln!("{digest}: done");
//!     }
//! })?;
//! println!("{} has {} layers", pulled.resolved.manifest_digest, pulled.layers.len());
//! # Ok(()) }
//! ```

pub mod auth;
mod blocking;
mod client;
pub mod config;
mod content;
mod download;
mod error;
pub mod platform;

pub use auth::{AuthSource, Credentials};
pub use blocking::BlockingClient;
pub use client::{
    Client, ClientOptions, PullEvent, Pulled, PushEvent, PushOptions, Resolved, MAX_MANIFEST_SIZE,
    SYSTEM_CA_BUNDLE,
};
pub use config::{Endpoint, RegistriesConf};
pub use content::{ContentError, ContentWriter, Ingester, Provider};
pub use download::{BlockingDownload, Download};
pub use error::RegistryError;
pub use rbuild_image::manifest::{Descriptor, Manifest, Platform};
pub use rbuild_image::Reference;
