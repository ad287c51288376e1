//! A blocking facade over [`Client`] for callers that are not async (the CLI, build steps run on
//! plain threads). Each [`BlockingClient`] owns a private single-threaded tokio runtime; there is
//! no global runtime.

use rbuild_digest::Digest;
use rbuild_image::manifest::{Descriptor, Platform};
use rbuild_image::Reference;

use crate::auth::Credentials;
use crate::client::{Client, ClientOptions, PullEvent, Pulled, PushEvent, PushOptions, Resolved};
use crate::content::{Ingester, Provider};
use crate::download::BlockingDownload;
use crate::error::RegistryError;

/// [`Client`] with blocking methods. Do not call it from inside an async runtime (tokio refuses
/// to block a runtime thread); use [`Client`] there.
#[derive(Debug)]
pub struct BlockingClient {
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl BlockingClient {
    /// Builds the client and its private runtime.
    pub fn new(opts: ClientOptions) -> Result<BlockingClient, RegistryError> {
        Self::from_client(Client::new(opts)?)
    }

    /// Wraps an existing client (e.g. one built with [`Client::with_conf`]).
    pub fn from_client(client: Client) -> Result<BlockingClient, RegistryError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RegistryError::Setup(format!("tokio runtime: {e}")))?;
        Ok(BlockingClient { client, rt })
    }

    /// The async client inside, for callers that mix both styles.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Blocking [`Client::resolve`].
    pub fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        self.rt.block_on(self.client.resolve(reference, platform))
    }

    /// Blocking [`Client::pull`].
    pub fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        sink: &dyn Ingester,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<Pulled, RegistryError> {
        self.rt
            .block_on(self.client.pull(reference, platform, sink, progress))
    }

    /// Blocking [`Client::pull_blobs`].
    pub fn pull_blobs(
        &self,
        resolved: &Resolved,
        blobs: &[Descriptor],
        sink: &dyn Ingester,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<Vec<Digest>, RegistryError> {
        self.rt
            .block_on(self.client.pull_blobs(resolved, blobs, sink, progress))
    }

    /// Blocking [`Client::push`].
    pub fn push(
        &self,
        source: &dyn Provider,
        manifest: &[u8],
        manifest_media_type: &str,
        dest: &Reference,
        progress: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<Digest, RegistryError> {
        self.rt.block_on(
            self.client
                .push(source, manifest, manifest_media_type, dest, progress),
        )
    }

    /// Blocking [`Client::push_with`].
    pub fn push_with(
        &self,
        source: &dyn Provider,
        manifest: &[u8],
        manifest_media_type: &str,
        dest: &Reference,
        opts: &PushOptions,
        progress: &(dyn Fn(PushEvent) + Send + Sync),
    ) -> Result<Digest, RegistryError> {
        self.rt.block_on(self.client.push_with(
            source,
            manifest,
            manifest_media_type,
            dest,
            opts,
            progress,
        ))
    }

    /// Blocking [`Client::get`]: the body is read through [`std::io::Read`], each read driven by
    /// this client's runtime.
    pub fn get(&self, url: &str) -> Result<BlockingDownload<'_>, RegistryError> {
        let inner = self.rt.block_on(self.client.get(url))?;
        Ok(BlockingDownload {
            rt: &self.rt,
            inner,
            pending: bytes::Bytes::new(),
        })
    }

    /// Blocking [`Client::login_check`].
    pub fn login_check(&self, registry: &str, creds: &Credentials) -> Result<(), RegistryError> {
        self.rt.block_on(self.client.login_check(registry, creds))
    }
}
