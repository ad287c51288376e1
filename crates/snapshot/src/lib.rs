//! Snapshots for RUN steps: a writable filesystem on top of an image's layers that reads only what
//! changed back out as a new layer.
//!
//! Use this crate from the build engine whenever a step has to *execute* something in the rootfs
//! (RUN): [`Snapshotter::prepare`] gives a writable snapshot on top of the parent layers, the sandbox
//! mounts it ([`Active::mount`]) and runs the command, and [`Snapshotter::commit`] turns exactly the
//! changes into a layer in the content store.
//!
//! # Vocabulary
//!
//! * **layer**: an uncompressed tar of filesystem changes (files, `.wh.NAME` whiteouts,
//!   `DIR/.wh..wh..opq` opaque markers), stored in the [`rbuild_store::Store`] under its **diff id**, the
//!   sha256 of the uncompressed tar.
//! * **chain id**: the identity of a *stack* of layers, `rbuild_digest::chain_id` (OCI: `chain(L1) =
//!   diff(L1)`, `chain(L1..Ln) = sha256(chain(L1..Ln-1) + " " + diff(Ln))`). The same layer on a
//!   different parent has a different chain id.
//! * **snapshot**: a directory tree a RUN step sees. *Committed* snapshots are read-only and shared
//!   by every build; *active* snapshots are private, writable and short-lived.
//! * **key**: the name of an active snapshot ([`Active::key`]), unique per prepare, used for its
//!   directories and in messages.
//!
//! # Lifecycle (containerd's snapshotter model)
//!
//! 1. [`Snapshotter::ensure_unpacked`] makes sure the committed parent exists on disk.
//! 2. [`Snapshotter::prepare`] creates an *active* snapshot on that committed parent.
//! 3. The sandbox mounts [`Active::mount`] in its own mount namespace and runs the step.
//! 4. [`Snapshotter::commit`] writes the changes as a layer into the store and returns its
//!    diff id, or [`Snapshotter::remove`] throws the active snapshot away. An active snapshot is
//!    never a parent as such; the next step prepares on `parent + [new diff id]`. As root with
//!    overlay (or root of a user namespace with `userxattr`; no id map), commit renames the upper
//!    directory to the new layer's tree (it already is one: see below), as containerd and Docker
//!    keep a committed upper, so nothing is deleted and the next step unpacks nothing; the
//!    layer's tar is then only hashed and left to the store as a *deferred blob*
//!    ([`rbuild_store::Deferred`]), streamed from the tree whenever an export reads it (see
//!    [`Snapshotter::commit`]). Otherwise the layer is written at once, the active snapshot is
//!    deleted and the next step unpacks the layer like any other.
//!
//! # Two implementations, chosen by [`probe`]
//!
//! **Overlay** ([`Kind::Overlay`]). Each layer is unpacked *once* into its own tree
//! `<store>/snapshots/overlay/<diff id hex>` (`overlay-userxattr/` for rootless). Trees are keyed by
//! **diff id, not chain id**, because an overlay lower directory holds only that layer's own
//! changes (whiteouts converted to overlay's form, see below), which do not depend on the layers
//! below it: the same layer under two different bases is unpacked once and shared. Prepare returns
//! the lower directories (top first), a fresh upper and work directory. Commit reads the upper
//! directory alone (never the whole filesystem): a character device 0/0 becomes `.wh.NAME`, a
//! directory with `trusted.overlay.opaque=y` (`user.overlay.opaque=y` with `userxattr`) becomes
//! `DIR/` + `DIR/.wh..wh..opq` + its contents; directories copied up only because a child changed
//! are written as plain directory entries (as Docker does); overlay's own xattrs
//! (`trusted.overlay.*`, `user.overlay.*`) are dropped, every other xattr (e.g.
//! `security.capability`) is kept.
//!
//! Unpacking a layer for overlay converts its whiteouts: `.wh.NAME` becomes a character device 0/0
//! named NAME (allowed without privilege since Linux 5.8, also in rootless mode), `.wh..wh..opq`
//! becomes the xattr `trusted.overlay.opaque=y` (root) or `user.overlay.opaque=y` (rootless,
//! mounted with `userxattr`). Overlay xattrs that a layer itself carries are stripped, so a layer
//! cannot smuggle redirects or opaque flags into the stack.
//!
//! The sandbox **must** mount with the options in [`MountPlan::Overlay::options`]:
//! `index=off,redirect_dir=off,metacopy=off` as root, `userxattr,index=off,redirect_dir=nofollow,
//! metacopy=off` rootless (the kernel refuses `redirect_dir=off` together with `userxattr`;
//! `nofollow` also never creates redirects). Without redirects a renamed lower directory is copied
//! up in full and without metacopy every changed file is a full copy, so the upper directory alone
//! describes the change.
//!
//! **Copy** ([`Kind::Copy`]), the fallback where overlayfs cannot be mounted. The merged tree of each
//! parent chain is kept under `<store>/snapshots/copy/<chain id hex>` (keyed by chain id because it
//! is the whole stack). Prepare copies it into a private directory (reflinks with `FICLONE` where
//! the filesystem allows, else a normal copy, keeping ownership, modes, xattrs, hardlinks and
//! special files) and records every entry's inode, ctime, mtime, size, mode and owner; commit
//! compares the tree with that record to find changed paths and deletions.
//!
//! # Choosing: [`probe`]
//!
//! [`Snapshotter::new`] with [`Mode::Auto`] tries, on the store's own filesystem, to create a
//! whiteout device, set the opaque xattr and mount overlay with the build's options in a forked
//! child: as root in a new mount namespace with `trusted.*` xattrs, falling back to `userxattr`
//! (root inside a user namespace cannot write `trusted.*`); as any other user in a new user +
//! mount namespace with `userxattr`. If everything works the kind is overlay, else copy, and
//! [`Kind::name`] says which so the engine can show it.
//!
//! # Rootless ownership
//!
//! Files are written to layers with the ids `lstat` reports, translated by
//! [`rbuild_layer::WriteOptions::id_map`] when it is set. A rootless engine passes the sandbox's user
//! namespace map (container 0 -> the caller, 1..=N -> its `/etc/subuid` range) in the `opts` of
//! [`Snapshotter::commit`], so a file a RUN step created as container root (on disk: the caller's
//! uid) or chowned to 5 (on disk: subuid start + 4) is recorded as 0 or 5. Host ids outside the
//! map become 65534 and are listed in [`Committed::unmapped`].
//!
//! Known limitations. Rootless commit reads what the step wrote from outside the namespace, as the caller (container
//! root's host id without its capabilities): a directory the step left unreadable to it (e.g.
//! `chown 5 d && chmod 700 d`) fails the commit with a "Permission denied" naming the path.
//! Removal is different: [`Snapshotter::with_remover`] lets the engine delete such trees from
//! inside the namespace.
//!
//! Also: unpacking runs in the caller's own user namespace, and an unprivileged
//! process cannot chown to its subordinate ids from outside a user namespace, so rootless
//! ([`rbuild_layer::ApplyOptions::same_owner`] off) every unpacked file belongs to the caller, i.e. to
//! container root once mapped. Ownership from *base* layers is therefore not visible to later
//! RUN steps (a step running as a non-root USER may be unable to write files the image gave it),
//! but it is never rewritten either: the copy snapshotter only writes paths a step changed, so
//! unchanged base files keep their owner in the image, which is made of the original layers.
//!
//! # Crash and concurrency safety
//!
//! Unpacked trees, and adopted upper directories, are built in a store scratch directory (swept
//! if the process dies) and renamed into place with `RENAME_NOREPLACE`. Copy trees are synced
//! first; overlay trees are not (neither Docker nor containerd syncs an upper directory): a small
//! durable marker names the boot that published them, and after a reboot such a tree is checked
//! before anything uses it (unpacked again, or read back against its diff id; `unsynced.rs`), so a
//! killed build loses nothing and a machine crash costs a re-run, never a damaged layer. An adopted upper
//! is renamed with excluded bind-mount targets removed and its opaque markers restored, so it
//! holds exactly what unpacking the layer gives, and its deferred-blob record is written only
//! after the rename (a crash in between leaves a tree no record names: the next commit of that
//! layer writes the blob instead of trusting it). A tree that is the only copy of a layer is
//! never pruned, and the blob written from it later must hash to the diff id, so a damaged tree
//! fails loudly instead of exporting wrong bytes. A reader sees a complete tree or none, and when
//! two builds unpack (or commit) the same layer one rename wins and the other build uses the
//! winner's tree (writing the blob itself if it lost the race). Active snapshots live in store
//! scratch directories too, so a killed build leaves nothing behind.
//!
//! # Example
//!
//! ```no_run
//! # fn main() -> Result<(), rbuild_snapshot::SnapshotError> {
//! let store = rbuild_store::Store::open("/var/lib/rbuild")?;
//! let snaps = rbuild_snapshot::Snapshotter::new(&store, rbuild_snapshot::Mode::Auto)?;
//! println!("snapshotter: {}", snaps.kind().name());
//! let parent: Vec<rbuild_digest::Digest> = vec![/* the image's rootfs.diff_ids */];
//! let active = snaps.prepare(&parent)?;
//! match active.mount() {
//!     rbuild_snapshot::MountPlan::Overlay { options, .. } => println!("mount -t overlay -o {options}"),
//!     rbuild_snapshot::MountPlan::Dir(dir) => println!("bind-mount {}", dir.display()),
//! }
//! // ... the sandbox runs the RUN command here ...
//! let committed = snaps.commit(active, &rbuild_layer::WriteOptions::default(), &[])?;
//! println!("new layer {} ({} bytes)", committed.diff_id, committed.size);
//! # Ok(()) }
//! ```

mod copy;
mod diff;
mod error;
mod fsx;
mod probe;
mod stream;
mod unpack;
mod unsynced;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_digest::Digest;
use rbuild_store::{ScratchDir, Store};

pub use error::SnapshotError;
pub use probe::{probe, ProbeResult};

/// Which snapshotter the caller wants; `Auto` lets [`probe`] decide so builds work everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Overlay if it can be mounted here (rootless: with `userxattr`), else copy.
    #[default]
    Auto,
    /// Overlay or an error, for users who would rather fail than copy trees.
    Overlay,
    /// Always copy; for filesystems or sandboxes where overlay misbehaves.
    Copy,
}

/// The snapshotter actually in use, so the engine can show it and the sandbox knows how to mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// overlayfs over per-layer trees; `userxattr` for rootless mounts in a user namespace.
    Overlay {
        /// Overlay metadata lives in `user.overlay.*` instead of `trusted.overlay.*`.
        userxattr: bool,
    },
    /// Full copies of the parent tree, diffed on commit.
    Copy,
}

impl Kind {
    /// A short name for progress output and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Overlay { userxattr: false } => "overlayfs",
            Kind::Overlay { userxattr: true } => "overlayfs (rootless, userxattr)",
            Kind::Copy => "copy",
        }
    }

    /// The mount options the sandbox must use for this kind (empty for [`Kind::Copy`]), without
    /// the `lowerdir`/`upperdir`/`workdir` parts, for callers that build the mount themselves
    /// (e.g. with `fsconfig`).
    pub fn overlay_options(&self) -> &'static str {
        match self {
            Kind::Overlay { userxattr: false } => "index=off,redirect_dir=off,metacopy=off",
            Kind::Overlay { userxattr: true } => {
                "userxattr,index=off,redirect_dir=nofollow,metacopy=off"
            }
            Kind::Copy => "",
        }
    }
}

/// How the sandbox must mount an active snapshot as its rootfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountPlan {
    /// `mount -t overlay overlay -o <options> <target>`.
    Overlay {
        /// Lower directories, top (most recent layer) first, as `lowerdir=` wants them.
        lowers: Vec<PathBuf>,
        /// Where the step's writes land.
        upper: PathBuf,
        /// overlayfs scratch directory on the same filesystem as `upper`.
        work: PathBuf,
        /// Whether the mount must use `userxattr` (rootless).
        userxattr: bool,
        /// The complete `-o` string: `lowerdir=..,upperdir=..,workdir=..` plus the required
        /// options (see the crate docs). The kernel caps it at one page (4096 bytes); with very
        /// many layers use `lowers` with `fsconfig(lowerdir+)` instead.
        options: String,
    },
    /// Bind-mount (or chroot into) this directory read-write.
    Dir(PathBuf),
}

/// A finished step's layer, as the image config and manifest need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// sha256 of the uncompressed layer tar; the blob is in the store under it.
    pub diff_id: Digest,
    /// Length of the uncompressed tar.
    pub size: u64,
    /// The step changed nothing (the tar holds no entries), so the engine may mark the history
    /// entry `empty_layer` and skip the layer.
    pub empty: bool,
    /// Entries written as uid/gid 65534 because their host owner was outside
    /// [`rbuild_layer::WriteOptions::id_map`] (tar names), so the engine can warn about them.
    pub unmapped: Vec<String>,
}

/// What an active copy-mode entry looked like right after prepare, so commit can tell what the
/// step touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) ino: u64,
    pub(crate) ctime: (i64, i64),
    pub(crate) mtime: (i64, i64),
    pub(crate) size: u64,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) rdev: u64,
}

enum ActiveKind {
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        userxattr: bool,
    },
    Copy {
        rootfs: PathBuf,
        baseline: HashMap<Vec<u8>, Stamp>,
    },
}

/// What [`Snapshotter::prune`] deleted, so `prune` can report the space it freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Committed trees deleted.
    pub trees: usize,
    /// Disk space they took (allocated blocks, each hardlinked file counted once).
    pub bytes: u64,
}

/// A prepared, writable snapshot; consumed by [`Snapshotter::commit`] or [`Snapshotter::remove`]
/// so it can never be reused as a parent. Dropping it also deletes its directories.
pub struct Active {
    key: String,
    kind: ActiveKind,
    // Owns the directories; removed on drop (and swept by the store if the process dies).
    scratch: ScratchDir,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("key", &self.key)
            .field("dir", &self.scratch.path())
            .finish()
    }
}

impl Active {
    /// The snapshot's unique name, for logs and error messages.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What the sandbox has to mount to run the step in this snapshot.
    pub fn mount(&self) -> MountPlan {
        match &self.kind {
            ActiveKind::Overlay {
                lowers,
                upper,
                work,
                userxattr,
            } => {
                let kind = Kind::Overlay {
                    userxattr: *userxattr,
                };
                let lowerdir: Vec<String> = lowers
                    .iter()
                    .map(|p| escape_overlay_path(&p.to_string_lossy()))
                    .collect();
                let options = format!(
                    "lowerdir={},upperdir={},workdir={},{}",
                    lowerdir.join(":"),
                    escape_overlay_path(&upper.to_string_lossy()),
                    escape_overlay_path(&work.to_string_lossy()),
                    kind.overlay_options()
                );
                MountPlan::Overlay {
                    lowers: lowers.clone(),
                    upper: upper.clone(),
                    work: work.clone(),
                    userxattr: *userxattr,
                    options,
                }
            }
            ActiveKind::Copy { rootfs, .. } => MountPlan::Dir(rootfs.clone()),
        }
    }
}

/// overlayfs splits options on `,` and lower directories on `:`; both can be escaped with `\`.
fn escape_overlay_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Lets `store` write the layers [`Snapshotter::commit`] left as trees (deferred blobs) when
/// something reads them. Every snapshotter registers it on its store; a program that reads
/// images of a store without opening a snapshotter on it (e.g. to save or push) calls this
/// right after [`rbuild_store::Store::open`].
pub fn register_producer(store: &Store) {
    let root = store.root().join("snapshots");
    store.set_producer(Arc::new(TreeProducer {
        marks: unsynced::Marks::new(store, &root, TREES_OVERLAY),
        marks_userxattr: unsynced::Marks::new(store, &root, TREES_OVERLAY_USERXATTR),
        root,
    }));
}

/// Version of the bytes a committed tree is turned back into: the layer writer's output for
/// [`diff::tree_changes`]. A deferred record of another version is not produced (its tar would
/// not hash to its diff id); bump this whenever the writer's output for a given tree changes
/// (`crates/layer/tests/format.rs` pins it).
const TREE_FORMAT: u64 = 1;

/// The [`rbuild_store::Producer`] of layers committed as overlay trees.
struct TreeProducer {
    root: PathBuf,
    /// The markers of unsynced trees in `overlay/` and in `overlay-userxattr/`.
    marks: unsynced::Marks,
    marks_userxattr: unsynced::Marks,
}

impl TreeProducer {
    /// The tree a record names and whether it uses `user.overlay.*`, or why it cannot be used.
    fn tree(&self, d: &Digest, rec: &rbuild_store::Deferred) -> Result<(PathBuf, bool), String> {
        let format = rec.recipe.get("format").and_then(|f| f.as_u64());
        if format != Some(TREE_FORMAT) {
            return Err(format!(
                "it was recorded by an rbuild whose layer format is {format:?}, not                  {TREE_FORMAT}; build the images that use it again"
            ));
        }
        let (kind, userxattr) = match rec.recipe.get("tree").and_then(|t| t.as_str()) {
            Some(TREES_OVERLAY) => (TREES_OVERLAY, false),
            Some(TREES_OVERLAY_USERXATTR) => (TREES_OVERLAY_USERXATTR, true),
            other => return Err(format!("its record names no known tree kind ({other:?})")),
        };
        let tree = self.root.join(kind).join(d.hex());
        if !tree.is_dir() {
            return Err(format!(
                "its snapshot tree {} is gone (deleted outside rbuild?); build the images that                  use it again",
                tree.display()
            ));
        }
        Ok((tree, userxattr))
    }
}

/// Why a committed tree no longer gives its layer, and what to do.
fn tree_changed(tree: &Path, actual: &Digest) -> String {
    format!(
        "its snapshot tree {} now gives {actual}: the tree was changed, or it is read in a user \
         namespace that maps ids differently than when it was built; {REBUILD}",
        tree.display()
    )
}

/// Why a committed tree could not be read back, and what to do.
fn tree_unreadable(tree: &Path, e: &dyn std::fmt::Display) -> String {
    format!(
        "reading its snapshot tree {} failed: {e}; {REBUILD}",
        tree.display()
    )
}

/// What heals a layer whose tree went wrong: committing it again writes its blob.
const REBUILD: &str = "build the images that use it again with --no-cache";

impl rbuild_store::Producer for TreeProducer {
    fn available(&self, store: &Store, d: &Digest, rec: &rbuild_store::Deferred) -> bool {
        // A tree published before a reboot is checked here, where a build asks whether the
        // layer exists, so a damaged one makes the step run again.
        self.tree(d, rec).is_ok_and(|(tree, userxattr)| {
            let marks = match userxattr {
                false => &self.marks,
                true => &self.marks_userxattr,
            };
            unsynced::settle(store, marks, &tree, userxattr, d).unwrap_or(false)
        })
    }

    fn produce(
        &self,
        store: &Store,
        d: &Digest,
        rec: &rbuild_store::Deferred,
    ) -> Result<(), rbuild_store::StoreError> {
        let fail = |reason: String| rbuild_store::StoreError::Produce { digest: *d, reason };
        let (tree, userxattr) = self.tree(d, rec).map_err(fail)?;
        match diff::write_tree_blob(store, &tree, userxattr, d) {
            Ok(()) => Ok(()),
            Err(SnapshotError::Store(rbuild_store::StoreError::DigestMismatch {
                actual, ..
            })) => Err(fail(tree_changed(&tree, &actual))),
            Err(e) => Err(fail(tree_unreadable(&tree, &e))),
        }
    }

    fn stream(
        &self,
        _: &Store,
        d: &Digest,
        rec: &rbuild_store::Deferred,
    ) -> Result<Box<dyn std::io::Read + Send>, rbuild_store::StoreError> {
        let fail = |reason: String| rbuild_store::StoreError::Produce { digest: *d, reason };
        let (tree, userxattr) = self.tree(d, rec).map_err(fail)?;
        let s = stream::TreeStream::start(tree, userxattr, *d).map_err(|e| fail(e.to_string()))?;
        Ok(Box::new(s))
    }
}

/// Deletes a directory tree this process may not be able to remove by itself; rootless, files a
/// step chowned to subordinate ids can only be removed from inside the build's user namespace,
/// which the sandbox (not this crate) knows how to enter.
pub type RemoveFn = Arc<dyn Fn(&Path) -> std::io::Result<()> + Send + Sync>;

/// [`RemoveFn`] with a `Debug` impl, so [`Snapshotter`] stays `Debug`.
#[derive(Clone)]
struct Remover(RemoveFn);

impl std::fmt::Debug for Remover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remover(..)")
    }
}

/// Creates, tracks and commits snapshots over one store; holds only paths and the probed kind, so
/// it is cheap, has no global state and several can share a store (also across processes).
#[derive(Debug, Clone)]
pub struct Snapshotter {
    store: Store,
    root: PathBuf,
    kind: Kind,
    apply: rbuild_layer::ApplyOptions,
    remover: Option<Remover>,
    /// Markers of this kind's trees published without a sync (see `unsynced`).
    marks: unsynced::Marks,
}

/// Directory (under `<store>/snapshots`) of the overlay trees written as real root.
const TREES_OVERLAY: &str = "overlay";
/// Directory of the overlay trees of rootless builds (`user.overlay.*` xattrs).
const TREES_OVERLAY_USERXATTR: &str = "overlay-userxattr";

/// The directory (under `<store>/snapshots`) of the committed trees of `kind`.
fn kind_dir(kind: Kind) -> &'static str {
    match kind {
        Kind::Overlay { userxattr: false } => TREES_OVERLAY,
        Kind::Overlay { userxattr: true } => TREES_OVERLAY_USERXATTR,
        Kind::Copy => "copy",
    }
}

/// How many layers of one chain are unpacked at once in overlay mode: enough to overlap decoding
/// with file creation on small machines without flooding a shared one.
const UNPACK_THREADS: usize = 3;

impl Snapshotter {
    /// Opens the snapshotter over `store`, probing the kernel when `mode` is [`Mode::Auto`] or
    /// [`Mode::Overlay`] (the latter fails with [`SnapshotError::OverlayUnavailable`] when the
    /// probe says no).
    pub fn new(store: &Store, mode: Mode) -> Result<Snapshotter, SnapshotError> {
        let kind = match mode {
            Mode::Copy => Kind::Copy,
            Mode::Auto | Mode::Overlay => match probe(store) {
                ProbeResult::Overlay { userxattr } => Kind::Overlay { userxattr },
                ProbeResult::Unavailable { reason } => {
                    if mode == Mode::Overlay {
                        return Err(SnapshotError::OverlayUnavailable { reason });
                    }
                    Kind::Copy
                }
            },
        };
        Self::with_kind(store, kind)
    }

    /// Opens the snapshotter with a kind chosen by the caller, skipping the probe (for callers that
    /// probed once already, and for tests).
    pub fn with_kind(store: &Store, kind: Kind) -> Result<Snapshotter, SnapshotError> {
        let root = store.root().join("snapshots");
        let is_root = rustix::process::geteuid().is_root();
        let s = Snapshotter {
            store: store.clone(),
            marks: unsynced::Marks::new(store, &root, kind_dir(kind)),
            root,
            kind,
            apply: rbuild_layer::ApplyOptions {
                same_owner: is_root,
                id_map: None,
            },
            remover: None,
        };
        fsx::mkdir_all(&s.layers_dir())?;
        register_producer(store);
        Ok(s)
    }

    /// Replaces how layers are unpacked (ownership, id mapping for rootless builds).
    pub fn with_apply_options(mut self, opts: rbuild_layer::ApplyOptions) -> Snapshotter {
        self.apply = opts;
        self
    }

    /// Sets how active snapshots that this process cannot delete by itself are removed (rootless:
    /// through the sandbox's user namespace); tried only after a plain removal left something.
    pub fn with_remover(mut self, remove: RemoveFn) -> Snapshotter {
        self.remover = Some(Remover(remove));
        self
    }

    /// Which implementation is in use, so the engine can show it.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where the committed trees of this kind live.
    fn layers_dir(&self) -> PathBuf {
        self.root.join(self.tree_kind_name())
    }

    /// The directory holding one committed tree: per diff id for overlay, per chain id for copy.
    /// `None` for an empty chain (there is nothing to unpack).
    pub fn committed_dir(&self, diff_ids: &[Digest]) -> Option<PathBuf> {
        match self.kind {
            Kind::Overlay { .. } => diff_ids.last().map(|d| self.layers_dir().join(d.hex())),
            Kind::Copy => {
                rbuild_digest::chain_id(diff_ids).map(|c| self.layers_dir().join(c.hex()))
            }
        }
    }

    /// Whether the layer `d` is already here as an overlay tree whose bytes the store holds (a
    /// blob or a deferred record), so a step that would produce exactly that layer can use it
    /// instead of writing its files and deleting them again (on ext4 with `discard`, deleting
    /// 5,000 files took most of a repeated COPY's time). Always `false` for the copy
    /// snapshotter, whose trees are per chain.
    pub fn has_layer(&self, d: &Digest) -> bool {
        let Kind::Overlay { userxattr } = self.kind else {
            return false;
        };
        let tree = self.layers_dir().join(d.hex());
        unsynced::settle(&self.store, &self.marks, &tree, userxattr, d).unwrap_or(false)
            && (self.store.is_written(d) || matches!(self.store.get_deferred(d), Ok(Some(_))))
    }

    /// Makes sure each layer of the chain is unpacked (from the store's uncompressed blobs or their
    /// compressed variants, verified against the diff id), so
    /// `prepare` on that chain is cheap; safe to call concurrently from several builds.
    pub fn ensure_unpacked(&self, diff_ids: &[Digest]) -> Result<(), SnapshotError> {
        match self.kind {
            Kind::Overlay { userxattr } => {
                let mut todo: Vec<&Digest> = Vec::new();
                for d in diff_ids {
                    let tree = self.layers_dir().join(d.hex());
                    if !todo.contains(&d)
                        && !unsynced::settle(&self.store, &self.marks, &tree, userxattr, d)?
                    {
                        todo.push(d);
                    }
                }
                // Each layer's tree is independent in overlay mode: unpack a few at once (each
                // also runs its marker scanner), and report the first failure in chain order.
                let next = std::sync::atomic::AtomicUsize::new(0);
                let failed = std::sync::atomic::AtomicBool::new(false);
                let workers = todo.len().min(UNPACK_THREADS);
                let mut errors: Vec<(usize, SnapshotError)> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..workers)
                        .map(|_| {
                            s.spawn(|| {
                                let mut errs = Vec::new();
                                loop {
                                    if failed.load(std::sync::atomic::Ordering::Relaxed) {
                                        break;
                                    }
                                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    let Some(d) = todo.get(i) else { break };
                                    let dest = self.layers_dir().join(d.hex());
                                    if let Err(e) = unpack::unpack_overlay_layer(
                                        &self.store,
                                        d,
                                        &dest,
                                        userxattr,
                                        &self.apply,
                                        &self.marks,
                                    ) {
                                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                        errs.push((i, e));
                                    }
                                }
                                errs
                            })
                        })
                        .collect();
                    handles
                        .into_iter()
                        .flat_map(|h| {
                            h.join().unwrap_or_else(|_| {
                                let e = SnapshotError::Io {
                                    action: "unpack layers into",
                                    path: self.layers_dir(),
                                    source: std::io::Error::other("an unpack thread panicked"),
                                };
                                vec![(usize::MAX, e)]
                            })
                        })
                        .collect()
                });
                errors.sort_by_key(|(i, _)| *i);
                match errors.into_iter().next() {
                    Some((_, e)) => Err(e),
                    None => Ok(()),
                }
            }
            Kind::Copy => {
                let Some(dest) = self.committed_dir(diff_ids) else {
                    return Ok(());
                };
                if dest.is_dir() {
                    return Ok(());
                }
                // Start from the longest already-merged prefix, if any.
                let mut base = None;
                for k in (1..diff_ids.len()).rev() {
                    if let Some(dir) = diff_ids.get(..k).and_then(|p| self.committed_dir(p)) {
                        if dir.is_dir() {
                            base = Some((k, dir));
                            break;
                        }
                    }
                }
                unpack::unpack_copy_chain(
                    &self.store,
                    diff_ids,
                    base.as_ref().map(|(k, p)| (*k, p.as_path())),
                    &dest,
                    &self.apply,
                )
            }
        }
    }

    /// Creates an active, writable snapshot on the committed chain `parent` (base layer first, as
    /// in `rootfs.diff_ids`; empty for `FROM scratch`).
    pub fn prepare(&self, parent: &[Digest]) -> Result<Active, SnapshotError> {
        self.ensure_unpacked(parent)?;
        let scratch = self.store.temp_dir("snapshot-active")?;
        let dir = scratch.path().to_path_buf();
        let key = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The scratch directory is private (0700); the sandbox's user namespace root must be
        // able to reach the trees inside it.
        fsx::chmod(&dir, 0o755)?;
        // Unlike unpack scratch directories, this one is not marked FS_TOPDIR_FL: spreading it
        // makes ext4 (without a journal) place the step's files in the emptiest block group,
        // which after a mass delete (another builder's clean-up) is the one whose recently freed
        // inodes every new file has to skip: the 20,000-file benchmark step took 6.7-9.4 s that
        // way against 1.7-2.0 s next to its parent, measured alternately on this machine.
        let kind = match self.kind {
            Kind::Overlay { userxattr } => {
                let upper = dir.join("upper");
                let work = dir.join("work");
                fsx::mkdir(&upper, 0o755)?;
                fsx::mkdir(&work, 0o700)?;
                // A layer repeated in the chain (e.g. identical empty RUN layers) appears once, at
                // its topmost position: overlayfs refuses a directory twice (ELOOP), and the deeper
                // copy is fully shadowed by the upper one, so the merged view is the same.
                let mut seen = std::collections::HashSet::new();
                let mut lowers: Vec<PathBuf> = parent
                    .iter()
                    .rev()
                    .filter(|d| seen.insert(**d))
                    .map(|d| self.layers_dir().join(d.hex()))
                    .collect();
                if lowers.is_empty() {
                    // overlayfs needs at least one lower directory.
                    let empty = dir.join("empty");
                    fsx::mkdir(&empty, 0o755)?;
                    lowers.push(empty);
                }
                ActiveKind::Overlay {
                    lowers,
                    upper,
                    work,
                    userxattr,
                }
            }
            Kind::Copy => {
                let rootfs = dir.join("rootfs");
                match self.committed_dir(parent) {
                    Some(src) => {
                        fsx::mkdir(&rootfs, 0o755)?;
                        copy::copy_tree(&src, &rootfs, self.apply.same_owner)?;
                    }
                    None => fsx::mkdir(&rootfs, 0o755)?,
                }
                let baseline = diff::stamp_tree(&rootfs)?;
                ActiveKind::Copy { rootfs, baseline }
            }
        };
        Ok(Active { key, kind, scratch })
    }

    /// Writes the active snapshot's changes as a layer into the store and deletes the snapshot.
    /// Paths in `exclude` (absolute or relative to the rootfs, e.g. `/etc/hosts` bind targets)
    /// and everything below them are never written.
    ///
    /// As root with overlay (or as root of a user namespace with `userxattr`; no id map, no owner
    /// overrides, no `SOURCE_DATE_EPOCH`) the upper directory is not deleted: it already is the
    /// new layer's overlay tree (whiteouts as 0/0 devices, opaque directories marked), so it is
    /// renamed to [`Snapshotter::committed_dir`] of the new diff id, as containerd and Docker
    /// keep a committed upper directory. That saves deleting every file the step wrote and
    /// unpacking the layer again for the next step. The layer's tar is then only hashed, not
    /// stored: the store gets a deferred record ([`rbuild_store::Deferred`]) and the tar is streamed from
    /// the tree, and checked against the diff id, whenever an export (save, push, `-o`, a cache
    /// export) reads it, as Docker's layer store regenerates a layer from its diff directory and
    /// tar-split; only a reader that needs a file (an uncompressed push) stores it. A step that wrote 300 MB costs one pass over those bytes instead of two plus a
    /// 300 MB write, and its content is on disk once, not twice.
    pub fn commit(
        &self,
        active: Active,
        opts: &rbuild_layer::WriteOptions,
        exclude: &[PathBuf],
    ) -> Result<Committed, SnapshotError> {
        self.commit_with(active, |a| self.commit_changes(a, opts, exclude))
    }

    /// Runs `commit` on `active`, then removes it whatever happened (through the remover).
    fn commit_with(
        &self,
        active: Active,
        commit: impl FnOnce(&Active) -> Result<Committed, SnapshotError>,
    ) -> Result<Committed, SnapshotError> {
        let written = commit(&active);
        let removed = self.remove(active);
        let committed = written?;
        removed?;
        Ok(committed)
    }

    /// Commits an overlay upper directory whose layer the caller computed while writing it, entry
    /// by entry in the layer's order, alone (the engine's plain COPY, which writes and hashes its
    /// files in one walk): the upper is adopted as the tree of `layer` without being walked or
    /// read again. The caller answers for the upper holding exactly what `layer` lists, as an
    /// unpack of it would; [`Snapshotter::adopts`] must have said yes for `opts`. When the upper
    /// cannot be adopted after all (another tree holds the layer), this is [`Snapshotter::commit`].
    pub fn commit_written(
        &self,
        active: Active,
        opts: &rbuild_layer::WriteOptions,
        layer: &rbuild_layer::LayerInfo,
    ) -> Result<Committed, SnapshotError> {
        self.commit_with(active, |a| self.adopt_written(a, opts, layer))
    }

    fn adopt_written(
        &self,
        active: &Active,
        opts: &rbuild_layer::WriteOptions,
        layer: &rbuild_layer::LayerInfo,
    ) -> Result<Committed, SnapshotError> {
        if !self.adopts(opts) {
            return self.commit_changes(active, opts, &[]);
        }
        let c = Committed {
            diff_id: layer.diff_id,
            size: layer.size,
            empty: false,
            unmapped: Vec::new(),
        };
        let adopted = self.adopt_upper(active, &c, &[])?;
        if self.in_store_after_adopting(&c, adopted)? {
            return Ok(c);
        }
        self.commit_changes(active, opts, &[])
    }

    /// After [`Snapshotter::adopt_upper`]: whether the store has the layer `c`, as a blob
    /// already, or as a deferred record of the tree just adopted (written here). `false` when
    /// neither: another tree holds the layer, and the caller writes the blob from its upper.
    fn in_store_after_adopting(&self, c: &Committed, adopted: bool) -> Result<bool, SnapshotError> {
        if self.store.is_written(&c.diff_id) {
            return Ok(true);
        }
        if !adopted {
            return Ok(false);
        }
        let record = rbuild_store::Deferred {
            size: c.size,
            recipe: serde_json::json!({ "tree": self.tree_kind_name(), "format": TREE_FORMAT }),
        };
        self.store.set_deferred(&c.diff_id, &record)?;
        Ok(true)
    }

    fn commit_changes(
        &self,
        active: &Active,
        opts: &rbuild_layer::WriteOptions,
        exclude: &[PathBuf],
    ) -> Result<Committed, SnapshotError> {
        let adopt = self.adopts(opts);
        let ActiveKind::Overlay { upper, .. } = &active.kind else {
            return self.commit_plan(active, opts, exclude, adopt);
        };
        // A step that wrote nothing (most often) has nothing to flush, and a tree published with
        // a marker (see `unsynced`) is not flushed at all.
        let wrote = std::fs::read_dir(upper).map_or(true, |mut d| d.next().is_some());
        if !adopt || !wrote || self.marks.can_mark() {
            return self.commit_plan(active, opts, exclude, adopt);
        }
        // The upper directory will be kept and synced before it is published, and the sandbox may
        // have mounted it `volatile` (no sync at unmount): write its data back now, on a second
        // thread, while the walk and the hash read it, so the sync finds little left to do.
        // Opened here, not on the thread: commit renames `upper` away.
        let dir = rustix::fs::open(
            upper,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(error::errno_err("open", upper))?;
        std::thread::scope(|s| {
            let flush = s.spawn(|| rustix::fs::syncfs(&dir));
            let c = self.commit_plan(active, opts, exclude, adopt);
            let flushed = flush.join().unwrap_or(Err(rustix::io::Errno::IO));
            let c = c?;
            flushed.map_err(error::errno_err(
                "sync the filesystem of",
                self.layers_dir(),
            ))?;
            Ok(c)
        })
    }

    fn commit_plan(
        &self,
        active: &Active,
        opts: &rbuild_layer::WriteOptions,
        exclude: &[PathBuf],
        adopt: bool,
    ) -> Result<Committed, SnapshotError> {
        let exclude = diff::Exclude::new(exclude)?;
        let (root, plan): (&Path, _) = match &active.kind {
            ActiveKind::Overlay {
                lowers,
                upper,
                userxattr,
                ..
            } => {
                if adopt {
                    diff::remove_excluded(upper, lowers, *userxattr, &exclude)?;
                }
                (
                    upper,
                    diff::overlay_changes(upper, lowers, *userxattr, &exclude)?,
                )
            }
            ActiveKind::Copy { rootfs, baseline } => {
                (rootfs, diff::copy_changes(rootfs, baseline, &exclude)?)
            }
        };
        if !adopt || plan.is_empty() {
            return diff::write_plan(&self.store, root, plan, opts, active.key());
        }
        let opaque = diff::opaque_dirs(&plan);
        let items = diff::complete_plan(root, plan);
        let c = diff::hash_items(root, &items, opts, active.key())?;
        let adopted = self.adopt_upper(active, &c, &opaque)?;
        if self.in_store_after_adopting(&c, adopted)? {
            return Ok(c);
        }
        // Another tree already holds this layer (unpacked from a blob since deleted, a build
        // that published first and may not have recorded it yet, or a tree whose deferred blob
        // no longer comes out right): its form may differ from ours, so write the tar from our
        // upper, which also heals a record that points at a damaged tree.
        diff::write_plan(&self.store, root, items, opts, active.key())
    }

    /// The directory name of this kind's committed trees, as deferred records name it.
    fn tree_kind_name(&self) -> &'static str {
        kind_dir(self.kind)
    }

    /// Whether a commit with `opts` keeps an overlay upper directory as the layer's tree (see
    /// [`Snapshotter::commit`]), the precondition of [`Snapshotter::commit_written`]: the upper
    /// is exactly what unpacking its layer would give here (root, or root of a user namespace
    /// mapping every id the layer uses, so files keep their owners; overlay xattrs of this kind;
    /// owners written unchanged).
    pub fn adopts(&self, opts: &rbuild_layer::WriteOptions) -> bool {
        matches!(self.kind, Kind::Overlay { .. })
            && self.apply.same_owner
            && self.apply.id_map.is_none()
            // No id map, no owner overrides, and no SOURCE_DATE_EPOCH (the layer clamps times;
            // the upper keeps the real ones, which later steps would see and a reproducible build
            // must not depend on). Also what a deferred blob is produced with.
            && *opts == rbuild_layer::WriteOptions::default()
    }

    /// Makes the upper directory the committed tree of `c.diff_id`: opaque markers back as the
    /// overlay xattr, then marked (or synced) and renamed into place with `RENAME_NOREPLACE`, like
    /// an unpack. Returns whether it did; `false` when a tree for the layer was there first (it
    /// wins and ours is deleted with the active snapshot).
    fn adopt_upper(
        &self,
        active: &Active,
        c: &Committed,
        opaque: &[PathBuf],
    ) -> Result<bool, SnapshotError> {
        let ActiveKind::Overlay { upper, .. } = &active.kind else {
            return Ok(false);
        };
        let dest = self.layers_dir().join(c.diff_id.hex());
        if dest.is_dir() {
            return Ok(false);
        }
        let Kind::Overlay { userxattr } = self.kind else {
            return Ok(false);
        };
        let name = fsx::overlay_xattr(userxattr, "opaque");
        for rel in opaque {
            let p = upper.join(rel);
            rustix::fs::lsetxattr(&p, name.as_str(), b"y", rustix::fs::XattrFlags::empty())
                .map_err(error::errno_err("mark opaque", &p))?;
        }
        unsynced::publish(
            upper,
            &dest,
            unsynced::Durable::Mark(&self.marks, &c.diff_id),
        )
    }

    /// Deletes committed trees of this kind whose name is not in `keep` (diff ids for overlay,
    /// chain ids for copy, see [`Snapshotter::committed_dir`]); returns how many went. A tree that
    /// is the only copy of a layer the store still lists (a deferred blob, see
    /// [`Snapshotter::commit`]) is kept whatever `keep` says: run [`rbuild_store::Store::gc`] first, which
    /// drops the records of unreferenced layers. Trees are
    /// renamed into a scratch directory first, so a crash never leaves a half-deleted tree that
    /// looks complete. Call it with the store's exclusive lock held
    /// ([`rbuild_store::Store::lock_exclusive`]), so no build is using a tree being deleted.
    pub fn prune(&self, keep: &std::collections::HashSet<Digest>) -> Result<Pruned, SnapshotError> {
        let dir = self.layers_dir();
        let trash = self.store.temp_dir("snapshot-prune")?;
        let mut removed = Pruned::default();
        for ent in std::fs::read_dir(&dir).map_err(error::io_err("list", &dir))? {
            let ent = ent.map_err(error::io_err("list", &dir))?;
            let name = ent.file_name();
            let overlay = matches!(self.kind, Kind::Overlay { .. });
            let wanted = name
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
                .is_some_and(|d| keep.contains(&d) || (overlay && self.store.is_deferred_only(&d)));
            if wanted {
                continue;
            }
            let to = trash.path().join(&name);
            std::fs::rename(ent.path(), &to).map_err(error::io_err("move away", ent.path()))?;
            removed.trees += 1;
            removed.bytes += fsx::disk_usage(&to);
        }
        drop(trash);
        self.marks.sweep(&dir)?;
        Ok(removed)
    }

    /// Writes the changes of an overlay upper directory that outlives the call (a container's
    /// writable layer, for `commit`) as a layer into the store, reading it without changing it:
    /// unlike [`Snapshotter::commit`] the upper is neither adopted nor deleted, and overlay's
    /// xattrs in it stay, so the container keeps running on it. `lowers` are its lower
    /// directories, top first, as it was mounted with.
    pub fn commit_upper(
        &self,
        upper: &Path,
        lowers: &[PathBuf],
        opts: &rbuild_layer::WriteOptions,
        exclude: &[PathBuf],
    ) -> Result<Committed, SnapshotError> {
        let Kind::Overlay { userxattr } = self.kind else {
            return Err(SnapshotError::OverlayUnavailable {
                reason: "committing a directory needs the overlay snapshotter".into(),
            });
        };
        let exclude = diff::Exclude::new(exclude)?;
        let plan = diff::overlay_changes_read_only(upper, lowers, userxattr, &exclude)?;
        let key = upper
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        diff::write_plan(&self.store, upper, plan, opts, &key)
    }

    /// The lower directories (top first) of an overlay over the committed chain `parent`, as
    /// [`Snapshotter::prepare`] gives them, for callers that keep their own upper directory (a
    /// container's, which must outlive the process). `None` for the copy snapshotter. Call
    /// [`Snapshotter::ensure_unpacked`] first.
    pub fn overlay_lowers(&self, parent: &[Digest]) -> Option<Vec<PathBuf>> {
        if !matches!(self.kind, Kind::Overlay { .. }) {
            return None;
        }
        let mut seen = std::collections::HashSet::new();
        Some(
            parent
                .iter()
                .rev()
                .filter(|d| seen.insert(**d))
                .map(|d| self.layers_dir().join(d.hex()))
                .collect(),
        )
    }

    /// Throws an active snapshot away (a failed step, or a step whose result is cached).
    pub fn remove(&self, active: Active) -> Result<(), SnapshotError> {
        let path = active.scratch.path().to_path_buf();
        drop(active);
        if let (true, Some(Remover(remove))) = (path.exists(), &self.remover) {
            remove(&path).map_err(|source| SnapshotError::Io {
                action: "remove the active snapshot",
                path: path.clone(),
                source,
            })?;
        }
        if path.exists() {
            return Err(SnapshotError::Io {
                action: "remove the active snapshot",
                path,
                source: std::io::Error::other("directory still present after removal"),
            });
        }
        Ok(())
    }
}
