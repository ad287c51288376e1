//! What a builder owns and every build borrows: the image store, registry access, the
//! snapshotter (chosen on first use) and the sandboxes of RUN steps. The public [`crate::Builder`]
//! is a handle on these; single- and multi-platform builds (`builder`, `multi`) take them from
//! here, so neither depends on the other's module.

use std::path::Path;
use std::sync::Arc;

use rbuild_dockerfile::{Plan, PlanOptions};
use rbuild_image::Images;

use crate::frontend::dockerfile_id;
use crate::progress::{Event, ProgressSink};
use crate::request::BuildRequest;
use crate::shared::{Cancel, Shared};
use crate::BuildError;

pub(crate) struct Resources {
    pub(crate) images: Images,
    pub(crate) registry: crate::transfer::RegistryOptions,
    pub(crate) snapshotter: std::sync::OnceLock<Result<rbuild_snapshot::Snapshotter, String>>,
    pub(crate) sandboxes: crate::sandboxes::Sandboxes,
}

impl Resources {
    /// The snapshotter, chosen on first use: overlay when this process may mount it (root), else
    /// the copy fallback; its kind is reported so users know which one ran.
    pub(crate) fn snapshotter(
        self: &Arc<Self>,
        progress: &dyn ProgressSink,
    ) -> Result<&rbuild_snapshot::Snapshotter, BuildError> {
        let first = self.snapshotter.get().is_none();
        let snap = self
            .snapshotter
            .get_or_init(|| {
                let root = crate::fsutil::is_root();
                // Chroot isolation cannot mount the overlay a step's rootfs would be.
                let mode = if root && !self.sandboxes.is_chroot() {
                    rbuild_snapshot::Mode::Auto
                } else {
                    rbuild_snapshot::Mode::Copy
                };
                let snap = rbuild_snapshot::Snapshotter::new(self.images.store(), mode)
                    .map_err(|e| e.to_string())?;
                if root {
                    return Ok(snap);
                }
                // Rootless, a step's files may belong to subordinate ids the caller cannot delete:
                // active snapshots are removed from inside the sandbox's user namespace.
                let inner = Arc::downgrade(self);
                Ok(snap.with_remover(Arc::new(move |path: &Path| {
                    let inner = inner
                        .upgrade()
                        .ok_or_else(|| std::io::Error::other("builder was dropped"))?;
                    inner.sandboxes.remove_tree(path)
                })))
            })
            .as_ref()
            .map_err(|e| BuildError::Snapshot(e.clone()))?;
        if first {
            let copy = matches!(snap.kind(), rbuild_snapshot::Kind::Copy);
            let fallback_reason = copy.then(|| {
                if self.sandboxes.is_chroot() {
                    "chroot isolation: RUN steps cannot mount an overlay".to_string()
                } else if crate::fsutil::is_root() {
                    "overlayfs cannot be mounted here".to_string()
                } else {
                    "not root and not in a user namespace with subordinate ids (call \
                     rbuild_sandbox::enter_user_namespace at the start of main, as rbuild does)"
                        .to_string()
                }
            });
            progress.event(Event::Snapshotter {
                name: snap.kind().name().to_string(),
                fallback_reason,
            });
        }
        Ok(snap)
    }

    /// What every op of one build shares.
    pub(crate) fn shared<'a>(
        &'a self,
        snap: &'a rbuild_snapshot::Snapshotter,
        ctx: &'a rbuild_context::Context,
        req: &'a BuildRequest,
        progress: &'a dyn ProgressSink,
        cancel: &Cancel,
        file_name: &'a str,
    ) -> Shared<'a> {
        Shared {
            images: &self.images,
            snap,
            sandbox: &self.sandboxes,
            context: ctx,
            req,
            progress,
            cancel: cancel.clone(),
            file_name,
            id_map: self.sandboxes.id_map(),
            imported: &crate::cacheio::NO_IMPORTS,
            devices: &crate::devices::NO_DEVICES,
            registry: &self.registry,
        }
    }

    /// Lowers the plan into the build graph (resolving, and pulling if needed, base images).
    pub(crate) fn lower(
        &self,
        req: &BuildRequest,
        plan: &Plan,
        opts: &PlanOptions,
        progress: &dyn ProgressSink,
    ) -> Result<crate::lower::Lowered, BuildError> {
        let dockerfile_id = dockerfile_id(req);
        crate::lower::lower(
            plan,
            opts,
            &crate::lower::LowerEnv {
                images: &self.images,
                registry: &self.registry,
                progress,
                pull: req.pull,
                network: req.network.as_deref(),
                dockerfile_id: &dockerfile_id,
            },
        )
    }
}
