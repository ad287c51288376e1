//! The builder: one store, its snapshotter and sandbox, and the build entry point that parses,
//! plans, lowers to a graph (`lower`), solves it (`solve`), commits the image and exports it.
//!
//! Vocabulary: a *stage* is one `FROM` section; a *step* is one instruction of a stage; a *vertex*
//! is an op of the build graph; a *layer* is the uncompressed tar of what a step changed, stored
//! by its diff id; a *chain* is a stage's layers, base first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_dockerfile::{Plan, PlanOptions, Platform};
use rbuild_image::reference::Reference;
use rbuild_image::{Images, LocalImage};
use rbuild_store::Store;

use crate::progress::{Event, ProgressSink};
use crate::request::{BuildRequest, Output};
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

/// The result of a successful build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOutcome {
    /// The image (config digest as id, manifest, layers).
    pub image: LocalImage,
    /// Normalized tags that were applied in the store.
    pub tags: Vec<String>,
    /// Every reference the image was pushed to, with the manifest digest the registry holds
    /// (the registry's manifest has compressed layers, so it differs from the local one).
    pub pushed: Vec<Pushed>,
    /// Every step that ran or came from the cache, in step order.
    pub steps: Vec<crate::progress::StepResult>,
    /// A multi-platform build (`--platform a,b`): each platform's image, in the order asked
    /// (`image` is the first); empty for a single-platform build.
    pub platforms: Vec<LocalImage>,
    /// A multi-platform build: the digest of the OCI index the tags point at.
    pub index: Option<rbuild_digest::Digest>,
}

impl BuildOutcome {
    /// The image id (config digest), as `docker build` prints it.
    pub fn image_id(&self) -> rbuild_digest::Digest {
        self.image.id
    }

    /// The digest of the image's manifest in the local store (uncompressed layers); see
    /// [`BuildOutcome::pushed`] for the digests registries hold.
    pub fn manifest_digest(&self) -> rbuild_digest::Digest {
        self.image.manifest_digest
    }
}

/// One push of a build's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Pushed {
    /// The normalized reference pushed to.
    pub name: String,
    /// The manifest digest in that registry (`sha256:…`).
    pub digest: rbuild_digest::Digest,
}

/// An image builder over one store; clone it freely (it is a handle).
#[derive(Clone)]
pub struct Builder {
    inner: Arc<Inner>,
}

struct Inner {
    images: Images,
    registry: crate::transfer::RegistryOptions,
    snapshotter: std::sync::OnceLock<Result<rbuild_snapshot::Snapshotter, String>>,
    sandboxes: crate::sandboxes::Sandboxes,
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
            inner: Arc::new(Inner {
                images: Images::new(store),
                registry: opts.registry,
                snapshotter: std::sync::OnceLock::new(),
                sandboxes: crate::sandboxes::Sandboxes::new(opts.isolation),
            }),
        })
    }

    /// The snapshotter, chosen on first use: overlay when this process may mount it (root), else
    /// the copy fallback; its kind is reported so users know which one ran.
    pub(crate) fn snapshotter(
        &self,
        progress: &dyn ProgressSink,
    ) -> Result<&rbuild_snapshot::Snapshotter, BuildError> {
        let first = self.inner.snapshotter.get().is_none();
        let snap = self
            .inner
            .snapshotter
            .get_or_init(|| {
                let root = crate::fsutil::is_root();
                // Chroot isolation cannot mount the overlay a step's rootfs would be.
                let mode = if root && !self.inner.sandboxes.is_chroot() {
                    rbuild_snapshot::Mode::Auto
                } else {
                    rbuild_snapshot::Mode::Copy
                };
                let snap = rbuild_snapshot::Snapshotter::new(self.images().store(), mode)
                    .map_err(|e| e.to_string())?;
                if root {
                    return Ok(snap);
                }
                // Rootless, a step's files may belong to subordinate ids the caller cannot delete:
                // active snapshots are removed from inside the sandbox's user namespace.
                let inner = Arc::downgrade(&self.inner);
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
                if self.inner.sandboxes.is_chroot() {
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
            let mut out = crate::multi::build(self, req, &platforms, progress, cancel)?;
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
        let lowered = self.lower(req, &plan, &opts, progress)?;
        progress.event(Event::Planned {
            steps: lowered.total_steps,
            stages: lowered.stages.clone(),
        });

        let ctx = rbuild_context::Context::open(&req.context, dockerfile_path(req).as_deref())?
            .with_stat_cache_in(&images.store().root().join("contexts"));
        let snap = self.snapshotter(progress)?;
        let imported =
            crate::cacheio::import_all(self.images(), &self.inner.registry, req, progress);
        let shared = Shared {
            imported: &imported,
            devices: &devices,
            ..self.shared(snap, &ctx, req, progress, cancel, &file_name)
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
        let lowered = self.lower(req, &plan, &opts, progress)?;
        let ctx = rbuild_context::Context::open(&req.context, dockerfile_path(req).as_deref())?
            .with_stat_cache_in(&images.store().root().join("contexts"));
        let snap = self.snapshotter(progress)?;
        // What a build would find in its `--cache-from` sources is what it would reuse.
        let imported = crate::cacheio::import_all(images, &self.inner.registry, req, progress);
        let shared = Shared {
            imported: &imported,
            devices: &devices,
            ..self.shared(snap, &ctx, req, progress, &Cancel::new(), &file_name)
        };
        let mut targets = lowered.ends.clone();
        targets.push(lowered.target.fs);
        crate::solve::explain(&lowered.graph, &targets, &shared)
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
            images: self.images(),
            snap,
            sandbox: &self.inner.sandboxes,
            context: ctx,
            req,
            progress,
            cancel: cancel.clone(),
            file_name,
            id_map: self.inner.sandboxes.id_map(),
            imported: &crate::cacheio::NO_IMPORTS,
            devices: &crate::devices::NO_DEVICES,
            registry: &self.inner.registry,
        }
    }

    /// Lowers the plan into the build graph (resolving, and pulling if needed, base images).
    fn lower(
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
                images: self.images(),
                registry: &self.inner.registry,
                progress,
                pull: req.pull,
                network: req.network.as_deref(),
                dockerfile_id: &dockerfile_id,
            },
        )
    }
}

/// Identifies the Dockerfile across builds, for step lineages (see `explain`).
pub(crate) fn dockerfile_id(req: &BuildRequest) -> String {
    match dockerfile_path(req) {
        Some(p) => std::fs::canonicalize(&p)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned(),
        None => {
            let ctx = std::fs::canonicalize(&req.context).unwrap_or(req.context.clone());
            format!("{}#stdin", ctx.to_string_lossy())
        }
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

pub(crate) fn export(
    images: &Images,
    registry: &crate::transfer::RegistryOptions,
    image: &LocalImage,
    tags: &[Reference],
    req: &BuildRequest,
    inline_cache: &std::collections::BTreeMap<String, String>,
    progress: &dyn ProgressSink,
) -> Result<Vec<Pushed>, BuildError> {
    let mut pushed = Vec::new();
    // --- registry: `--push` is `-o type=registry` with the request's tags ---
    let mut outputs = req.outputs.clone();
    if req.push && !outputs.iter().any(|o| matches!(o, Output::Registry { .. })) {
        outputs.push(Output::Registry {
            names: Vec::new(),
            compression: Default::default(),
        });
    }
    for out in &outputs {
        let items = vec![(image.clone(), tags.to_vec())];
        let (kind, dest) = match out {
            Output::Store => continue,
            Output::Oci { dest, tar: false } => {
                rbuild_image::export::oci_layout(
                    images,
                    &items,
                    dest,
                    false,
                    rbuild_image::export::ExportCompression::Gzip,
                )?;
                ("oci", dest)
            }
            // One exporter for archives, shared with `save` (and `dest=-` for stdout).
            Output::Oci { dest, tar: true } | Output::Docker { dest } | Output::Tar { dest } => {
                use rbuild_image::export::ArchiveFormat;
                let (format, kind) = match out {
                    Output::Oci { .. } => (ArchiveFormat::Oci, "oci"),
                    Output::Docker { .. } => (ArchiveFormat::Docker, "docker"),
                    _ => (ArchiveFormat::Rootfs, "tar"),
                };
                crate::save::save(images, &items, format, Default::default(), dest)?;
                (kind, dest)
            }
            Output::Local { dest } => {
                // The flattened tree streams through a pipe into the safe applier, so nothing in
                // the image can write outside `dest`.
                std::fs::create_dir_all(dest).map_err(|e| BuildError::io(dest, e))?;
                let (reader, writer) = std::io::pipe().map_err(|e| BuildError::io(dest, e))?;
                let applied = std::thread::scope(|s| {
                    let apply = s.spawn(|| {
                        rbuild_layer::apply_layer(
                            dest,
                            std::io::BufReader::new(reader),
                            &rbuild_layer::ApplyOptions {
                                // Files land in the caller's directory: keep the image's
                                // owners only for real root, never as subordinate ids the
                                // rootless caller could not delete.
                                same_owner: crate::fsutil::is_root()
                                    && !rbuild_sandbox::in_user_namespace(),
                                ..Default::default()
                            },
                        )
                    });
                    let written = rbuild_image::export::rootfs_tar(images, image, writer).map(drop);
                    let applied = apply
                        .join()
                        .map_err(|_| BuildError::Task("local export thread panicked".into()))?;
                    written?;
                    applied.map_err(BuildError::from)
                });
                applied?;
                ("local", dest)
            }
            // --- registry push (owned by the registry integration) ---
            Output::Registry { names, compression } => {
                let dests = push_destinations(names, tags)?;
                let settings = crate::transfer::PushSettings {
                    compression: *compression,
                    mount_from: Vec::new(),
                    annotations: inline_cache.clone(),
                };
                let digests = crate::transfer::push_all(
                    images, registry, image, &dests, &settings, progress,
                )?;
                pushed.extend(dests.iter().zip(digests).map(|(d, digest)| Pushed {
                    name: d.to_string(),
                    digest,
                }));
                continue;
            }
        };
        progress.event(Event::Exported {
            kind: kind.into(),
            dest: dest.display().to_string(),
        });
    }
    Ok(pushed)
}

/// Where `-o type=registry` pushes: its `name=`s, else the build's tags.
pub(crate) fn push_destinations(
    names: &[String],
    tags: &[Reference],
) -> Result<Vec<Reference>, BuildError> {
    let dests = if names.is_empty() {
        tags.to_vec()
    } else {
        names
            .iter()
            .map(|n| Reference::parse(n).map_err(BuildError::from))
            .collect::<Result<Vec<_>, _>>()?
    };
    if dests.is_empty() {
        return Err(BuildError::Request(
            "pushing needs a name: give -t NAME or -o type=registry,name=NAME".into(),
        ));
    }
    Ok(dests)
}

/// Commits a target stage as an image, history times from the steps that ran (the build's time
/// for those that did not); `platform` names it in the error of a multi-platform build.
pub(crate) fn commit_target(
    images: &Images,
    target: &crate::lower::LoweredStage,
    platform: Option<&Platform>,
    solved: &crate::solve::Solved,
    req: &BuildRequest,
) -> Result<LocalImage, BuildError> {
    let chain = solved.results[target.fs].clone().ok_or_else(|| {
        BuildError::Task(match platform {
            Some(p) => format!("target stage for {p} did not run"),
            None => "target stage did not run".into(),
        })
    })?;
    let mut config = target.config.config.clone();
    let now = crate::meta::timestamp(req.source_date_epoch);
    for &(i, v) in &target.slots {
        if let Some(h) = config.history.get_mut(i) {
            let ran = v.and_then(|v| solved.results[v].as_ref()?.created.clone());
            h.created = Some(ran.unwrap_or_else(|| now.clone()));
        }
    }
    for (k, v) in &req.labels {
        config.set_label(k, v);
    }
    config.created = Some(now);
    Ok(images.commit(&config, &chain.layers)?)
}

pub(crate) fn dockerfile_path(req: &BuildRequest) -> Option<PathBuf> {
    if req.dockerfile_text.is_some() {
        return None;
    }
    Some(
        req.dockerfile
            .clone()
            .unwrap_or_else(|| req.context.join("Dockerfile")),
    )
}

/// Reads and parses the request's Dockerfile; the name is the one errors and steps give it.
pub(crate) fn parse_dockerfile(
    req: &BuildRequest,
) -> Result<(String, rbuild_dockerfile::Dockerfile), BuildError> {
    let (file_name, text) = read_dockerfile(req)?;
    let df = rbuild_dockerfile::parse(&file_name, &text)?;
    Ok((file_name, df))
}

/// [`parse_dockerfile`], reporting the parser's warnings as a build shows them, before its steps.
pub(crate) fn parse_reporting(
    req: &BuildRequest,
    progress: &dyn ProgressSink,
) -> Result<(String, rbuild_dockerfile::Dockerfile), BuildError> {
    let (file_name, df) = parse_dockerfile(req)?;
    for w in &df.warnings {
        progress.event(Event::Warning {
            message: format!("{}:{}: {}", w.file_name, w.line, w.message),
        });
    }
    Ok((file_name, df))
}

fn read_dockerfile(req: &BuildRequest) -> Result<(String, String), BuildError> {
    if let Some(text) = &req.dockerfile_text {
        return Ok(("Dockerfile".into(), text.clone()));
    }
    let path = dockerfile_path(req).unwrap_or_else(|| req.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::ReadDockerfile {
        path: path.clone(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    Ok((name, text))
}

/// The platform of the machine we run on, in OCI terms (normalised: `linux/arm64` on arm64, as
/// the registry client and `BUILDPLATFORM` see it).
pub fn host_platform() -> Platform {
    Platform::host()
}

/// The plan options of `req`; with several `--platform`s, for the first one (a multi-platform
/// build plans once per platform, see `multi`).
pub(crate) fn plan_options(req: &BuildRequest) -> Result<PlanOptions, BuildError> {
    let build_platform = host_platform();
    let target_platform = match crate::multi::requested(req)? {
        Some(mut list) => list.remove(0),
        None => build_platform.clone(),
    };
    Ok(PlanOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        build_platform,
        target_platform,
    })
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
