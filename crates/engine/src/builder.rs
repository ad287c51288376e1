//! The builder: one store, its snapshotter and sandbox, and the build entry point that parses,
//! plans, lowers to a graph (`lower`), solves it (`solve`), commits the image and exports it.
//!
//! Vocabulary: a *stage* is one `FROM` section; a *step* is one instruction of a stage; a *vertex*
//! is an op of the build graph; a *layer* is the uncompressed tar of what a step changed, stored
//! by its diff id; a *chain* is a stage's layers, base first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_image::reference::Reference;
use rbuild_image::Images;
use rbuild_store::Store;

use crate::deliver::{commit_target, export};
use crate::frontend::{open_context, parse_dockerfile, parse_reporting, plan_options};
use crate::outcome::BuildOutcome;
use crate::progress::{Event, ProgressSink};
use crate::request::BuildRequest;
use crate::shared::{Cancel, Shared};
use crate::BuildError;

/// Where the builder keeps its state; no global state, so two builders in one process never interfere.
#[derive(Debug, Clone)]
pub struct BuilderOptions {
    /// Store root (`Store::default_root()` when built from the environment).
    pub root: PathBuf,
    /// Registry access for base images and pushes.
    pub registry: crate::transfer::RegistryOptions,
    /// How RUN steps are isolated (`--isolation`); `Auto` falls back to chroot isolation where
    /// a root caller may create no namespaces (an unprivileged container).
    pub isolation: rbuild_sandbox::Isolation,
}

impl BuilderOptions {
    /// Options from the environment (`$RBUILD_ROOT`, `$XDG_DATA_HOME`, ...), as the CLI uses them.
    pub fn from_env() -> Self {
        BuilderOptions {
            root: Store::default_root(),
            registry: crate::transfer::RegistryOptions::default(),
            isolation: rbuild_sandbox::Isolation::Auto,
        }
    }
}

/// An image builder over one store; clone it freely (it is a handle).
#[derive(Clone)]
pub struct Builder {
    inner: Arc<crate::resources::Resources>,
}

impl Builder {
    /// Opens (creating if needed) the store at `opts.root`.
    pub fn open(opts: BuilderOptions) -> Result<Builder, BuildError> {
        detach_stale_mounts(&opts.root);
        let store = Store::open(&opts.root)?;
        // Layers of earlier builds may be kept as snapshot trees only; saving or pushing them
        // writes their tars on first read.
        rbuild_snapshot::register_producer(&store);
        Ok(Builder {
            inner: Arc::new(crate::resources::Resources {
                images: Images::new(store),
                registry: opts.registry,
                snapshotter: std::sync::OnceLock::new(),
                sandboxes: crate::sandboxes::Sandboxes::new(opts.isolation),
            }),
        })
    }

    /// Registry settings this builder was opened with.
    pub fn registry_options(&self) -> &crate::transfer::RegistryOptions {
        &self.inner.registry
    }

    /// The image store, for listing, tagging, exporting and loading images.
    pub fn images(&self) -> &Images {
        &self.inner.images
    }

    /// Deletes the snapshot trees (unpacked and committed layers) that no layer left in the store
    /// needs, so `prune` frees what repeated builds leave on disk; run it after
    /// [`Images::prune`], whose gc decides which layers are left. Trees of layers the store still
    /// holds stay (they save the next build an unpack, and a committed step's tree may be the
    /// layer's only copy). Waits for running builds (it holds the store's exclusive lock).
    pub fn prune_snapshots(&self) -> Result<rbuild_snapshot::Pruned, BuildError> {
        let store = self.images().store();
        let _lock = store.lock_exclusive()?;
        let snap_err = |e: rbuild_snapshot::SnapshotError| BuildError::Snapshot(e.to_string());
        // Overlay trees are per layer: keep the layers still stored (as blobs, deferred, or
        // compressed variants of a pulled image's layers).
        let mut layers: std::collections::HashSet<rbuild_digest::Digest> = store
            .list_blobs()?
            .into_iter()
            .chain(store.list_deferred()?)
            .collect();
        // Copy-snapshotter trees are per chain: keep every prefix of every image's layers.
        let mut chains = std::collections::HashSet::new();
        for summary in self.images().list()? {
            let Ok(img) = self.images().resolve(&summary.id.to_string()) else {
                continue;
            };
            let ids = &img.config.rootfs.diff_ids;
            layers.extend(ids.iter().copied());
            chains.extend((1..=ids.len()).filter_map(|n| rbuild_digest::chain_id(ids.get(..n)?)));
        }
        let mut removed = rbuild_snapshot::Pruned::default();
        for (kind, keep) in [
            (rbuild_snapshot::Kind::Overlay { userxattr: false }, &layers),
            (rbuild_snapshot::Kind::Overlay { userxattr: true }, &layers),
            (rbuild_snapshot::Kind::Copy, &chains),
        ] {
            let snap = rbuild_snapshot::Snapshotter::with_kind(store, kind).map_err(snap_err)?;
            let p = snap.prune(keep).map_err(snap_err)?;
            removed.trees += p.trees;
            removed.bytes += p.bytes;
        }
        Ok(removed)
    }

    /// Starts a build on threads rbuild owns and returns its handle at once: a future of the
    /// outcome (any runtime, or [`Build::wait`] without one), a stream of its events and a
    /// cancel handle. Dropping the handle before the build ends cancels it.
    pub fn start(&self, req: BuildRequest) -> crate::task::Build {
        let cancel = Cancel::new();
        let (tx, rx) = futures_channel::mpsc::unbounded();
        let this = self.clone();
        let c = cancel.clone();
        let task = crate::task::spawn(cancel.clone(), move || {
            this.build_with(&req, &crate::task::ChannelSink(tx), &c)
        });
        crate::task::Build::new(task, rx, cancel)
    }

    /// Builds on a thread of its own and resolves when the build ends; works under any async
    /// runtime (or none). Dropping the future cancels the build, which then cleans up and stops
    /// within about a second. [`Builder::start`] gives the events as a stream instead.
    pub fn build(
        &self,
        req: BuildRequest,
        progress: Arc<dyn ProgressSink>,
    ) -> impl std::future::Future<Output = Result<BuildOutcome, BuildError>> + Send + 'static {
        let cancel = Cancel::new();
        let this = self.clone();
        let c = cancel.clone();
        crate::task::spawn(cancel, move || this.build_with(&req, progress.as_ref(), &c))
    }

    /// Builds on the calling thread; for programs without an async runtime.
    pub fn build_blocking(
        &self,
        req: &BuildRequest,
        progress: &dyn ProgressSink,
    ) -> Result<BuildOutcome, BuildError> {
        self.build_with(req, progress, &Cancel::new())
    }

    /// Builds on the calling thread until done or until `cancel` is raised (from another thread
    /// or a signal handler's thread): then running steps are killed, their snapshots, mounts and
    /// scratch directories removed, and [`BuildError::Cancelled`] returned.
    pub fn build_with(
        &self,
        req: &BuildRequest,
        progress: &dyn ProgressSink,
        cancel: &Cancel,
    ) -> Result<BuildOutcome, BuildError> {
        let recorder = crate::progress::Recorder::new(progress);
        let progress: &dyn ProgressSink = &recorder;
        if let Some(platforms) = crate::multi::platforms(req)? {
            let mut out = crate::multi::build(&self.inner, req, &platforms, progress, cancel)?;
            out.steps = recorder.steps();
            return Ok(out);
        }
        let images = self.images();
        let _lock = images.store().lock_shared()?;
        let (file_name, df) = parse_reporting(req, progress)?;
        let opts = plan_options(req)?;
        let plan = rbuild_dockerfile::plan(&df, &opts)?;
        for arg in &plan.unused_build_args {
            progress.event(Event::Warning {
                message: format!("build argument {arg:?} was not consumed by any stage"),
            });
        }
        let tags = req
            .tags
            .iter()
            .map(|t| Reference::parse(t).map_err(BuildError::from))
            .collect::<Result<Vec<_>, _>>()?;
        let devices = crate::devices::resolve(req, &file_name)?;
        let lowered = self.inner.lower(req, &plan, &opts, progress)?;
        progress.event(Event::Planned {
            steps: lowered.total_steps,
            stages: lowered.stages.clone(),
        });

        let ctx = open_context(req, images.store())?;
        let snap = self.inner.snapshotter(progress)?;
        let imported =
            crate::cacheio::import_all(self.images(), &self.inner.registry, req, progress);
        let shared = Shared {
            imported: &imported,
            devices: &devices,
            ..self
                .inner
                .shared(snap, &ctx, req, progress, cancel, &file_name)
        };
        let jobs = req.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let target = &lowered.target;
        let mut targets = lowered.ends.clone();
        targets.push(target.fs);
        let solved = crate::solve::solve(&lowered.graph, &targets, &shared, jobs)?;
        let image = commit_target(images, target, None, &solved, req)?;
        let mut applied = Vec::new();
        for t in &tags {
            images.tag(&image, t)?;
            applied.push(t.to_string());
        }
        progress.event(Event::ImageWritten {
            id: image.id.to_string(),
            tags: applied.clone(),
        });
        let inline =
            crate::cacheio::inline_annotations(images.store(), req, &solved.keys, &image, progress);
        let pushed = export(
            images,
            &self.inner.registry,
            &image,
            &tags,
            req,
            &inline,
            progress,
        )?;
        crate::cacheio::export_all(
            images,
            &self.inner.registry,
            req,
            &solved.keys,
            &image,
            progress,
        )?;
        Ok(BuildOutcome {
            image,
            tags: applied,
            pushed,
            platforms: Vec::new(),
            index: None,
            steps: recorder.steps(),
        })
    }

    /// What a build of `req` would do, step by step, without building: which steps would come
    /// from the cache and why the others would run (`rbuild build --explain`). Base images
    /// that are not local are pulled, since their config shapes the steps.
    pub fn explain(
        &self,
        req: &BuildRequest,
        progress: &dyn ProgressSink,
    ) -> Result<Vec<crate::solve::Explained>, BuildError> {
        let images = self.images();
        let _lock = images.store().lock_shared()?;
        let (file_name, df) = parse_dockerfile(req)?;
        let opts = plan_options(req)?;
        let plan = rbuild_dockerfile::plan(&df, &opts)?;
        let devices = crate::devices::resolve(req, &file_name)?;
        let lowered = self.inner.lower(req, &plan, &opts, progress)?;
        let ctx = open_context(req, images.store())?;
        let snap = self.inner.snapshotter(progress)?;
        // What a build would find in its `--cache-from` sources is what it would reuse.
        let imported = crate::cacheio::import_all(images, &self.inner.registry, req, progress);
        let shared = Shared {
            imported: &imported,
            devices: &devices,
            ..self
                .inner
                .shared(snap, &ctx, req, progress, &Cancel::new(), &file_name)
        };
        let mut targets = lowered.ends.clone();
        targets.push(lowered.target.fs);
        crate::solve::explain(&lowered.graph, &targets, &shared)
    }
}

/// A build killed while the engine had a snapshot mounted for a COPY leaves that overlay mounted
/// under the store's scratch area; detach those whose process is gone, so the store's own sweep can
/// remove their directories. Mounts of live builds (other processes) are left alone.
fn detach_stale_mounts(root: &Path) {
    let Ok(root) = root.canonicalize() else {
        return;
    };
    let tmp = root.join("tmp");
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in info.lines() {
        let Some(field) = line.split(' ').nth(4) else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mountinfo(field));
        let Ok(rel) = mount_point.strip_prefix(&tmp) else {
            continue;
        };
        let owner = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|n| n.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        let Some(pid) = owner else { continue };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = rustix::mount::unmount(&mount_point, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
        assert_eq!(unescape_mountinfo("/x\\134y"), "/x\\y");
    }
}
