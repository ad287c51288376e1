//! Overlay trees published before the disk has them, and how they are checked after a reboot.
//!
//! Syncing a tree before publishing it made a RUN step that writes 300 MB wait about 1.6 s of its
//! 2.7 s for writeback (≈200 MB/s on the test machine), while Docker's overlay2 and containerd
//! never sync an upper directory. A killed process loses nothing it wrote: the page cache
//! outlives it, and only a crash of the machine (or a power cut) can lose data that was not yet
//! written back. So an overlay tree is published without a sync, next to a small durable
//! *marker* holding the kernel's boot id (`/proc/sys/kernel/random/boot_id`, new at every boot):
//!
//! * within the boot that wrote it, a marked tree is trusted as it is;
//! * after a reboot, it is trusted only once checked ([`settle`]): a tree unpacked from a blob
//!   the store holds is unpacked again; a tree that is the only copy of its layer (an adopted
//!   upper directory, see [`crate::Snapshotter::commit`]) is read back and must hash to its
//!   diff id, then it is synced and unmarked; one that does not is moved away, so its layer is
//!   missing and the next build runs the step again instead of building on damaged files.
//!
//! A tree without a marker is durable (synced before it was published, or checked since). The
//! marker is made durable before the tree is renamed into place, so a tree never appears
//! without the marker that says it may need checking. Where the boot id cannot be read, trees
//! are synced before they are published, as before. The copy snapshotter always syncs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbuild_digest::Digest;
use rbuild_store::Store;
use rustix::fs::{Mode, OFlags};

use crate::error::{errno_err, io_err, SnapshotError};
use crate::fsx;

/// Where the kernel says which boot this is.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// The markers of one directory of trees: `<snapshots>/unsynced/<kind>/<diff id hex>`, each
/// holding the boot id of the boot that published the tree.
#[derive(Debug, Clone)]
pub(crate) struct Marks {
    dir: PathBuf,
    boot: Option<Arc<str>>,
    /// Where a marker is written before it is renamed into place.
    store: Store,
}

/// How far a published tree can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// On disk: synced before it was published, or checked after a reboot.
    Durable,
    /// Published in this boot without a sync: the page cache has everything.
    ThisBoot,
    /// Published without a sync before the last reboot: check before use.
    Unchecked,
}

impl Marks {
    /// The markers of the trees in `<snapshots>/<kind>` of `store`.
    pub(crate) fn new(store: &Store, snapshots: &Path, kind: &str) -> Marks {
        let boot = std::fs::read_to_string(BOOT_ID)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .map(Arc::from);
        Marks {
            dir: snapshots.join("unsynced").join(kind),
            boot,
            store: store.clone(),
        }
    }

    /// Whether [`Marks::mark`] can write markers here (the boot id is known).
    pub(crate) fn can_mark(&self) -> bool {
        self.boot.is_some()
    }

    fn path(&self, d: &Digest) -> PathBuf {
        self.dir.join(d.hex())
    }

    /// Makes a durable marker for the tree of `d`, to be written before the tree is published.
    /// `false` when there is no boot id to write: the caller syncs the tree instead.
    pub(crate) fn mark(&self, d: &Digest) -> Result<bool, SnapshotError> {
        let Some(boot) = &self.boot else {
            return Ok(false);
        };
        fsx::mkdir_all(&self.dir)?;
        let path = self.path(d);
        // Written whole in a scratch directory of the store (swept if the process dies), then
        // renamed into place.
        let scratch = self.store.temp_dir("unsynced")?;
        let tmp = scratch.path().join("marker");
        std::fs::File::create_new(&tmp)
            .and_then(|mut f| {
                f.write_all(boot.as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(io_err("write", &path))?;
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// How far the tree of `d` can be trusted; an unreadable marker is [`Trust::Unchecked`].
    pub(crate) fn trust(&self, d: &Digest) -> Trust {
        match std::fs::read(self.path(d)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Trust::Durable,
            Ok(id) if self.boot.as_deref().is_some_and(|b| b.as_bytes() == id) => Trust::ThisBoot,
            _ => Trust::Unchecked,
        }
    }

    /// Removes the marker of `d` (the tree is durable now, or gone).
    pub(crate) fn clear(&self, d: &Digest) -> Result<(), SnapshotError> {
        let path = self.path(d);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Removes the markers whose tree in `trees` is gone (pruned, or lost in a crash before its
    /// rename); returns how many.
    pub(crate) fn sweep(&self, trees: &Path) -> Result<usize, SnapshotError> {
        let list = match std::fs::read_dir(&self.dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err("list", &self.dir)(e)),
        };
        let mut n = 0;
        for ent in list {
            let ent = ent.map_err(io_err("list", &self.dir))?;
            let name = ent.file_name();
            if !trees.join(&name).is_dir() {
                let p = ent.path();
                match std::fs::remove_file(&p) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &p)(e)),
                }
            }
        }
        Ok(n)
    }
}

fn open_dir(p: &Path) -> Result<std::os::fd::OwnedFd, SnapshotError> {
    rustix::fs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_err("open", p))
}

fn sync_dir(p: &Path) -> Result<(), SnapshotError> {
    rustix::fs::fsync(open_dir(p)?).map_err(errno_err("fsync", p))
}

/// Writes back everything of the filesystem that holds `tree`.
pub(crate) fn sync_tree(tree: &Path) -> Result<(), SnapshotError> {
    rustix::fs::syncfs(open_dir(tree)?).map_err(errno_err("sync", tree))
}

/// Moves `tree` to `dest` with `RENAME_NOREPLACE`, made durable first: by a marker when `marks`
/// can write one, else by a sync. `false` when a tree for the layer was there first (ours stays
/// where it was, to be deleted).
pub(crate) fn publish(
    tree: &Path,
    dest: &Path,
    durable: Durable<'_>,
) -> Result<bool, SnapshotError> {
    use rustix::fs::{RenameFlags, CWD};
    use rustix::io::Errno;
    let marked = match durable {
        Durable::Mark(marks, d) => marks.mark(d)?,
        Durable::Sync => false,
    };
    if !marked {
        sync_tree(tree)?;
    }
    if let Some(parent) = dest.parent() {
        fsx::mkdir_all(parent)?;
    }
    match rustix::fs::renameat_with(CWD, tree, CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => {}
        // The winner's tree keeps our marker: at worst it is checked once after a reboot.
        Err(Errno::EXIST | Errno::NOTEMPTY) => return Ok(false),
        Err(e) => return Err(errno_err("rename into place", dest)(e)),
    }
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(true)
}

/// How [`publish`] makes a tree durable.
#[derive(Clone, Copy)]
pub(crate) enum Durable<'a> {
    /// A marker for the layer, checked after a reboot.
    Mark(&'a Marks, &'a Digest),
    /// `syncfs` before the rename.
    Sync,
}

/// Makes the published tree of `d` at `tree` trustworthy after a reboot; returns whether it is
/// there to use. A tree from an earlier boot that the store can unpack again (its blob, or a
/// compressed variant, is stored) is moved away, to be unpacked afresh; one that is the only copy
/// of its layer is read back: if it hashes to `d` it is synced and unmarked, else moved away.
pub(crate) fn settle(
    store: &Store,
    marks: &Marks,
    tree: &Path,
    userxattr: bool,
    d: &Digest,
) -> Result<bool, SnapshotError> {
    if !tree.is_dir() {
        return Ok(false);
    }
    if marks.trust(d) != Trust::Unchecked {
        return Ok(true);
    }
    let keep = store.is_deferred_only(d)
        && crate::diff::write_tree_to(std::io::sink(), tree, userxattr, d)
            .is_ok_and(|got| got == *d);
    if keep {
        sync_tree(tree)?;
        marks.clear(d)?;
        return Ok(true);
    }
    let trash = store.temp_dir("snapshot-unchecked")?;
    match std::fs::rename(tree, trash.path().join("tree")) {
        Ok(()) => {}
        // Another build settled it first.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("move away", tree)(e)),
    }
    marks.clear(d)?;
    Ok(false)
}
