//! Writable views of a stage's filesystem for one step, on top of the snapshotter.
//!
//! A step that touches files (COPY, ADD, WORKDIR, RUN) *prepares* an active snapshot on the stage's
//! layer chain, changes it, and *commits* it as a layer (or throws it away). RUN hands the snapshot's
//! mount plan to the sandbox, which mounts it in its own namespaces. The engine's own file steps need
//! a path to write through: with the overlay snapshotter (root only) the overlay is mounted at a
//! private mount point for the step and unmounted before the commit; with the copy snapshotter the
//! active snapshot is a plain directory.

use std::path::{Path, PathBuf};

use rbuild_digest::Digest;
use rbuild_snapshot::{Active, MountPlan, Snapshotter};

use crate::BuildError;

/// An active snapshot, optionally mounted so the engine can write through a path.
pub struct View<'s> {
    snap: &'s Snapshotter,
    active: Option<Active>,
    mount: Option<OverlayMount>,
    /// The copy snapshotter's writable directory.
    dir: Option<PathBuf>,
    /// Owners file steps gave paths, recorded in the layer even where the filesystem could not
    /// store them (a rootless `COPY --chown` to a subordinate id).
    owners: Vec<rbuild_layer::OwnerOverride>,
}

/// An overlay mounted by the engine itself (root only); unmounted on drop so a failing step never
/// leaves a mount behind.
struct OverlayMount {
    target: PathBuf,
    _dir: rbuild_store::ScratchDir,
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.target, rustix::mount::UnmountFlags::DETACH);
    }
}

fn snap_err(e: rbuild_snapshot::SnapshotError) -> BuildError {
    BuildError::Snapshot(e.to_string())
}

impl<'s> View<'s> {
    /// Prepares an active snapshot on `chain` without mounting it (RUN: the sandbox mounts it).
    pub fn prepare(snap: &'s Snapshotter, chain: &[Digest]) -> Result<View<'s>, BuildError> {
        let active = snap.prepare(chain).map_err(snap_err)?;
        let dir = match active.mount() {
            MountPlan::Dir(p) => Some(p),
            MountPlan::Overlay { .. } => None,
        };
        Ok(View {
            snap,
            active: Some(active),
            mount: None,
            dir,
            owners: Vec::new(),
        })
    }

    /// Prepares and makes the snapshot writable through a host path (COPY, ADD, WORKDIR).
    pub fn open(
        snap: &'s Snapshotter,
        store: &rbuild_store::Store,
        chain: &[Digest],
    ) -> Result<View<'s>, BuildError> {
        let mut v = View::prepare(snap, chain)?;
        if let Some(MountPlan::Overlay { options, .. }) = v.plan() {
            let dir = store.temp_dir("overlay-mount")?;
            let target = dir.path().join("merged");
            std::fs::create_dir(&target).map_err(|e| BuildError::io(&target, e))?;
            let data = std::ffi::CString::new(options.as_str())
                .map_err(|_| BuildError::Task("overlay options contain a NUL byte".into()))?;
            rustix::mount::mount(
                "overlay",
                &target,
                "overlay",
                rustix::mount::MountFlags::empty(),
                Some(data.as_c_str()),
            )
            .map_err(|e| {
                BuildError::io(
                    &target,
                    std::io::Error::other(format!("mount overlay: {e}")),
                )
            })?;
            v.mount = Some(OverlayMount { target, _dir: dir });
        }
        Ok(v)
    }

    /// How the sandbox must mount this snapshot.
    pub fn plan(&self) -> Option<MountPlan> {
        self.active.as_ref().map(|a| a.mount())
    }

    /// The path to write through, when the view was opened writable.
    pub fn path(&self) -> Option<&Path> {
        match &self.mount {
            Some(m) => Some(&m.target),
            None => self.dir.as_deref(),
        }
    }

    /// Remembers the owner a copy gave every path it wrote, so the layer records it even when
    /// this (rootless) process could not chown to it.
    pub fn record_owner(&mut self, out: &rbuild_context::CopyOutcome) {
        let Some((uid, gid)) = out.owner else {
            return;
        };
        // Root (of the host or of the build's user namespace) chowned every path for real (the
        // copy fails otherwise), so the files already say it; an override would only stop the
        // snapshotter from adopting the upper directory as the layer's tree, and make the commit
        // write the whole layer and delete what the step wrote.
        if rustix::process::geteuid().is_root() {
            return;
        }
        self.owners
            .extend(out.changed.iter().map(|c| rbuild_layer::OwnerOverride {
                rel: c.rel.clone(),
                recursive: c.recursive,
                uid,
                gid,
            }));
    }

    /// Writes what changed as a layer into the store; `None` when nothing changed.
    pub fn commit(
        mut self,
        opts: &rbuild_layer::WriteOptions,
        exclude: &[PathBuf],
    ) -> Result<rbuild_snapshot::Committed, BuildError> {
        let active = self.take_active()?;
        let mut opts = opts.clone();
        opts.owner_overrides.append(&mut self.owners);
        self.snap.commit(active, &opts, exclude).map_err(snap_err)
    }

    /// Unmounts the view and hands over its active snapshot, for a commit.
    fn take_active(&mut self) -> Result<Active, BuildError> {
        self.mount = None;
        self.active
            .take()
            .ok_or_else(|| BuildError::Task("snapshot committed twice".into()))
    }

    /// Commits a view whose layer the caller computed while writing every change itself, in the
    /// layer's order (see [`rbuild_snapshot::Snapshotter::commit_written`]).
    pub fn commit_written(
        mut self,
        opts: &rbuild_layer::WriteOptions,
        layer: &rbuild_layer::LayerInfo,
    ) -> Result<rbuild_snapshot::Committed, BuildError> {
        let active = self.take_active()?;
        self.snap
            .commit_written(active, opts, layer)
            .map_err(snap_err)
    }
}

impl Drop for View<'_> {
    fn drop(&mut self) {
        self.mount = None;
        if let Some(a) = self.active.take() {
            let _ = self.snap.remove(a);
        }
    }
}
