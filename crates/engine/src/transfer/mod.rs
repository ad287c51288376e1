//! Registry transfers: pulling base images into the store, pushing results from it, and the
//! progress events both report, in one place.
//!
//! The registry client (`rbuild_registry`) is transport only; this module is the store's side of
//! it. `content` adapts the store to the client's content interface (the client writes pulled
//! blobs through an ingester and reads pushed ones from a provider, as containerd's transport
//! does) and keeps the hints of which repository holds which blob; `events` turns the client's
//! per-blob reports into [`RegistryEvent`]s; `pull` and `push` are the two directions.
//!
//! Dependencies go one way: this module uses `progress` (where every event type of a build is
//! defined, registry events included), `progress` uses nothing here.
//!
//! Without the `registry` feature the same names exist (`off`), and every transfer fails saying
//! which feature brings it back; base images must then already be in the store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rbuild_image::export::ExportCompression;
use rbuild_image::reference::Reference;

/// The events of a transfer, re-exported where the transfer functions are.
pub use crate::progress::{BlobState, Direction, RegistryEvent};

#[cfg(feature = "registry")]
mod content;
#[cfg(feature = "registry")]
mod error;
#[cfg(feature = "registry")]
mod events;
#[cfg(not(feature = "registry"))]
mod off;
#[cfg(feature = "registry")]
mod pull;
#[cfg(feature = "registry")]
mod push;

#[cfg(feature = "registry")]
pub use content::StoreContent;
#[cfg(feature = "registry")]
pub(crate) use content::{mount_sources, record_sources};
#[cfg(feature = "registry")]
pub use error::TransferError;
#[cfg(feature = "registry")]
pub(crate) use events::{pull_event, push_event};
#[cfg(not(feature = "registry"))]
pub use off::{pull_base, push_all, push_index, TransferError};
#[cfg(feature = "registry")]
pub use pull::{pull_base, pull_image};
#[cfg(feature = "registry")]
pub use push::{push_all, push_image, push_index};

/// How the builder reaches registries; no global state, so each builder can have its own.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// A `registries.conf` to use instead of the standard places.
    pub registries_conf: Option<PathBuf>,
    /// Registries that may be reached over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// The client these options make, built on first use and shared by every clone: one HTTP
    /// stack, one runtime and one token cache serve a builder's pulls, pushes, registry caches
    /// and `ADD https://…`. Leave it at its default.
    pub shared: SharedClient,
}

/// A registry client made once and shared by clones of [`RegistryOptions`]; opaque.
#[derive(Clone, Default)]
pub struct SharedClient {
    #[cfg(feature = "registry")]
    cell: std::sync::Arc<std::sync::OnceLock<Result<rbuild_registry::BlockingClient, String>>>,
}

impl std::fmt::Debug for SharedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedClient")
    }
}

#[cfg(feature = "registry")]
impl RegistryOptions {
    /// The registry client's options: the environment's defaults (`$RBUILD_REGISTRIES_CONF`,
    /// docker/podman credentials, `$SSL_CERT_FILE`) with this builder's overrides on top, so the
    /// CLI and embedders configure registries in one place.
    pub fn client_options(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> rbuild_registry::ClientOptions {
        let mut o = rbuild_registry::ClientOptions::from_env(env);
        if let Some(p) = &self.registries_conf {
            o.registries_conf = Some(p.clone());
        }
        o.insecure_registries
            .extend(self.insecure_registries.iter().cloned());
        o
    }

    /// The blocking client configured from the process environment and these options, made on
    /// first use and then shared (see [`RegistryOptions::shared`]).
    pub fn client(&self) -> Result<&rbuild_registry::BlockingClient, TransferError> {
        let made = self.shared.cell.get_or_init(|| {
            let env = |k: &str| std::env::var(k).ok();
            rbuild_registry::BlockingClient::new(self.client_options(&env))
                .map_err(|e| e.to_string())
        });
        made.as_ref().map_err(|e| TransferError::Registry {
            reference: String::new(),
            source: Box::new(rbuild_registry::RegistryError::Setup(e.clone())),
        })
    }
}

/// How a push compresses layers and where it may mount them from.
#[derive(Debug, Clone, Default)]
pub struct PushSettings {
    /// Layer compression (gzip by default; stored variants are reused).
    pub compression: ExportCompression,
    /// Repositories on the destination registry that may already hold the layers, so the registry
    /// links them instead of receiving them again. Sources recorded in the store (by earlier pulls
    /// and pushes) are used per blob without being listed here.
    pub mount_from: Vec<Reference>,
    /// Annotations of the pushed manifest (an inline build cache, see `cachefmt`).
    pub annotations: BTreeMap<String, String>,
}

#[cfg(all(test, feature = "registry"))]
mod tests {
    use super::*;

    #[test]
    fn options_override_environment() {
        let env = |k: &str| match k {
            "RBUILD_REGISTRIES_CONF" => Some("/env/registries.conf".to_string()),
            _ => None,
        };
        let from_env = RegistryOptions::default().client_options(&env);
        assert_eq!(
            from_env.registries_conf,
            Some(PathBuf::from("/env/registries.conf"))
        );
        let opts = RegistryOptions {
            registries_conf: Some("/mine.conf".into()),
            insecure_registries: vec!["127.0.0.1:5000".into()],
            ..Default::default()
        };
        let o = opts.client_options(&env);
        assert_eq!(o.registries_conf, Some(PathBuf::from("/mine.conf")));
        assert_eq!(o.insecure_registries, vec!["127.0.0.1:5000".to_string()]);
    }
}
