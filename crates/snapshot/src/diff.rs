//! Finding what a step changed (from an overlay upper directory, or by comparing a copied tree
//! with its record) and writing exactly that as a layer.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rbuild_store::Store;

use crate::error::{io_err, SnapshotError};
use crate::{fsx, Committed, Stamp};

/// Paths commit must never write (bind-mount targets such as `/etc/hosts`), as joined
/// relative path bytes.
pub(crate) struct Exclude(HashSet<Vec<u8>>);

impl Exclude {
    pub(crate) fn new(paths: &[PathBuf]) -> Result<Exclude, SnapshotError> {
        let mut set = HashSet::new();
        for p in paths {
            let mut comps: Vec<&[u8]> = Vec::new();
            for c in p.components() {
                match c {
                    Component::Normal(n) => comps.push(n.as_bytes()),
                    Component::RootDir | Component::CurDir => {}
                    Component::ParentDir | Component::Prefix(_) => {
                        return Err(SnapshotError::BadExclude { path: p.clone() })
                    }
                }
            }
            if comps.is_empty() {
                return Err(SnapshotError::BadExclude { path: p.clone() });
            }
            set.insert(comps.join(&b'/'));
        }
        Ok(Exclude(set))
    }

    fn contains(&self, rel: &[u8]) -> bool {
        self.0.contains(rel)
    }

    /// `rel` or one of its ancestors is excluded.
    fn covers(&self, rel: &[u8]) -> bool {
        if self.0.is_empty() {
            return false;
        }
        rel.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(i, _)| self.0.contains(rel.get(..i).unwrap_or_default()))
            || self.0.contains(rel)
    }
}

/// What to write for one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// The file or directory entry itself, as found on disk.
    Path,
    /// `.wh.NAME`: the path was deleted.
    Whiteout,
    /// `DIR/.wh..wh..opq`: hide everything the parents had in this directory.
    Opaque,
}

/// One planned layer entry; `comps` is the path split into components.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    comps: Vec<Vec<u8>>,
    op: Op,
}

impl Item {
    /// Orders entries depth first with names sorted inside each directory, the opaque marker
    /// right after its directory, and whiteouts where their `.wh.` name sorts. The definition
    /// [`layer_order`] implements without allocating; tests check they agree.
    #[cfg(test)]
    fn sort_key(&self) -> Vec<Vec<u8>> {
        let mut k = self.comps.clone();
        match self.op {
            Op::Path => {}
            Op::Opaque => k.push(Vec::new()),
            Op::Whiteout => {
                if let Some(last) = k.last_mut() {
                    let mut n = rbuild_layer::WHITEOUT_PREFIX.as_bytes().to_vec();
                    n.extend_from_slice(last);
                    *last = n;
                }
            }
        }
        k
    }

    fn rel(&self) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&self.comps.join(&b'/')))
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<Vec<u8>>, SnapshotError> {
    let mut names = Vec::new();
    for ent in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let ent = ent.map_err(io_err("list", dir))?;
        names.push(ent.file_name().as_bytes().to_vec());
    }
    names.sort();
    Ok(names)
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn rel_path(root: &Path, comps: &[Vec<u8>]) -> PathBuf {
    root.join(OsStr::from_bytes(&join(comps)))
}

/// Whether `comps` is, in the topmost lower that has it, a directory with the same mode and
/// owner as `md` (so an upper copy of it carries no change of its own).
fn same_dir_in_lowers(lowers: &[PathBuf], comps: &[Vec<u8>], md: &Metadata) -> bool {
    for lower in lowers {
        if let Ok(l) = fs::symlink_metadata(rel_path(lower, comps)) {
            return l.is_dir()
                && l.mode() == md.mode()
                && l.uid() == md.uid()
                && l.gid() == md.gid();
        }
    }
    false
}

struct UpperWalk<'a> {
    upper: &'a Path,
    lowers: &'a [PathBuf],
    opaque_name: Vec<u8>,
    exclude: &'a Exclude,
    /// Reading a committed tree (to write its deferred blob): change nothing on disk.
    read_only: bool,
    out: Vec<Item>,
}

impl UpperWalk<'_> {
    /// Plans the entries below `comps`; returns (entries planned, whether something was excluded).
    fn walk(&mut self, comps: &mut Vec<Vec<u8>>) -> Result<(usize, bool), SnapshotError> {
        let dir = rel_path(self.upper, comps);
        let mut added = 0;
        let mut excluded = false;
        for name in sorted_names(&dir)? {
            comps.push(name);
            let r = self.visit(comps);
            comps.pop();
            let (n, ex) = r?;
            added += n;
            excluded |= ex;
        }
        Ok((added, excluded))
    }

    fn visit(&mut self, comps: &mut Vec<Vec<u8>>) -> Result<(usize, bool), SnapshotError> {
        if self.exclude.contains(&join(comps)) {
            return Ok((0, true));
        }
        let full = rel_path(self.upper, comps);
        let md = fs::symlink_metadata(&full).map_err(io_err("stat", &full))?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            self.out.push(Item {
                comps: comps.clone(),
                op: Op::Whiteout,
            });
            return Ok((1, false));
        }
        if ft.is_socket() {
            // Layers never hold sockets (as docker's); drop it here too so an upper adopted as
            // the layer's tree shows later steps exactly what unpacking the layer would.
            if !self.read_only {
                remove_keeping_parent_times(&full, &md)?;
            }
            return Ok((0, false));
        }
        if !ft.is_dir() {
            if !self.read_only {
                fsx::strip_overlay_xattrs(&full)?;
            }
            self.out.push(Item {
                comps: comps.clone(),
                op: Op::Path,
            });
            return Ok((1, false));
        }
        let opaque = fsx::get_xattr(&full, &self.opaque_name)?.is_some_and(|v| v == b"y");
        if !self.read_only {
            fsx::strip_overlay_xattrs(&full)?;
        }
        let at = self.out.len();
        self.out.push(Item {
            comps: comps.clone(),
            op: Op::Path,
        });
        if opaque {
            self.out.push(Item {
                comps: comps.clone(),
                op: Op::Opaque,
            });
        }
        let (n, ex) = self.walk(comps)?;
        if !opaque && n == 0 && ex && same_dir_in_lowers(self.lowers, comps, &md) {
            // Only here to hold an excluded bind-mount target: nothing of it belongs in the layer.
            self.out.truncate(at);
            return Ok((0, true));
        }
        Ok((n + 1 + usize::from(opaque), ex))
    }
}

/// The changes recorded in an overlay upper directory; overlay's xattrs are stripped from it
/// on the way (the upper directory is discarded after commit).
pub(crate) fn overlay_changes(
    upper: &Path,
    lowers: &[PathBuf],
    userxattr: bool,
    exclude: &Exclude,
) -> Result<Vec<Item>, SnapshotError> {
    let mut w = UpperWalk {
        upper,
        lowers,
        opaque_name: fsx::overlay_xattr(userxattr, "opaque").into_bytes(),
        exclude,
        read_only: false,
        out: Vec::new(),
    };
    w.walk(&mut Vec::new())?;
    Ok(w.out)
}

/// The changes recorded in an overlay upper directory that stays in use (a container's), read
/// without changing anything in it.
pub(crate) fn overlay_changes_read_only(
    upper: &Path,
    lowers: &[PathBuf],
    userxattr: bool,
    exclude: &Exclude,
) -> Result<Vec<Item>, SnapshotError> {
    let mut w = UpperWalk {
        upper,
        lowers,
        opaque_name: fsx::overlay_xattr(userxattr, "opaque").into_bytes(),
        exclude,
        read_only: true,
        out: Vec::new(),
    };
    w.walk(&mut Vec::new())?;
    Ok(w.out)
}

/// The entries of a committed overlay tree (an upper directory adopted at commit, see
/// [`crate::Snapshotter::commit`]), read without changing anything: the same plan
/// [`overlay_changes`] made when the tree was still an upper directory, because commit removed
/// excluded paths and sockets from it and only overlay's own xattrs (which layers never carry)
/// differ.
pub(crate) fn tree_changes(tree: &Path, userxattr: bool) -> Result<Vec<Item>, SnapshotError> {
    let none = Exclude(HashSet::new());
    let mut w = UpperWalk {
        upper: tree,
        lowers: &[],
        opaque_name: fsx::overlay_xattr(userxattr, "opaque").into_bytes(),
        exclude: &none,
        read_only: true,
        out: Vec::new(),
    };
    w.walk(&mut Vec::new())?;
    Ok(w.out)
}

/// Sets a path's access and modification times back to what `md` recorded, so removing an
/// entry below a directory does not change the directory's mtime in the layer.
fn restore_times(path: &Path, md: &Metadata) -> Result<(), SnapshotError> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(crate::error::errno_err("restore the times of", path))
}

/// Removes `full` (a file or a whole directory), keeping its parent directory's times.
fn remove_keeping_parent_times(full: &Path, md: &Metadata) -> Result<(), SnapshotError> {
    let parent = full.parent().map(Path::to_path_buf);
    let parent_md = match &parent {
        Some(p) => Some(fs::symlink_metadata(p).map_err(io_err("stat", p))?),
        None => None,
    };
    if md.is_dir() {
        fs::remove_dir_all(full).map_err(io_err("remove excluded", full))?;
    } else {
        fs::remove_file(full).map_err(io_err("remove excluded", full))?;
    }
    if let (Some(p), Some(pmd)) = (parent, parent_md) {
        restore_times(&p, &pmd)?;
    }
    Ok(())
}

/// Deletes the excluded paths (bind-mount targets) from an upper directory that is about to
/// become a layer's own tree, plus every directory that was copied up only to hold them (the
/// entries [`overlay_changes`] would leave out of the layer), so the tree holds exactly what the
/// layer holds. Never follows a symlink: an excluded path below a symlink in the upper is not
/// there (the walk would not have reached it either).
pub(crate) fn remove_excluded(
    upper: &Path,
    lowers: &[PathBuf],
    userxattr: bool,
    exclude: &Exclude,
) -> Result<(), SnapshotError> {
    let opaque_name = fsx::overlay_xattr(userxattr, "opaque").into_bytes();
    let mut rels: Vec<&Vec<u8>> = exclude.0.iter().collect();
    rels.sort();
    for rel in rels {
        let comps: Vec<Vec<u8>> = rel.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
        let reachable = (1..comps.len()).all(|n| {
            comps
                .get(..n)
                .and_then(|anc| fs::symlink_metadata(rel_path(upper, anc)).ok())
                .is_some_and(|m| m.is_dir())
        });
        if !reachable {
            continue;
        }
        let full = rel_path(upper, &comps);
        let md = match fs::symlink_metadata(&full) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err("stat", &full)(e)),
        };
        remove_keeping_parent_times(&full, &md)?;
        // Ancestors left empty that carry no change of their own go too, deepest first.
        for k in (1..comps.len()).rev() {
            let Some(anc) = comps.get(..k) else { break };
            let p = rel_path(upper, anc);
            let md = fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
            let empty = fs::read_dir(&p)
                .map_err(io_err("list", &p))?
                .next()
                .is_none();
            let opaque = fsx::get_xattr(&p, &opaque_name)?.is_some_and(|v| v == b"y");
            if !empty || opaque || !same_dir_in_lowers(lowers, anc, &md) {
                break;
            }
            remove_keeping_parent_times(&p, &md)?;
        }
    }
    Ok(())
}

/// The directories of a plan that carry an opaque marker, for setting overlay's opaque xattr
/// back on them when the upper directory becomes the layer's tree.
pub(crate) fn opaque_dirs(plan: &[Item]) -> Vec<PathBuf> {
    plan.iter()
        .filter(|i| i.op == Op::Opaque)
        .map(Item::rel)
        .collect()
}

fn stamp_of(md: &Metadata) -> Stamp {
    Stamp {
        ino: md.ino(),
        ctime: (md.ctime(), md.ctime_nsec()),
        mtime: (md.mtime(), md.mtime_nsec()),
        size: md.len(),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        rdev: md.rdev(),
    }
}

fn walk_stamps(
    root: &Path,
    comps: &mut Vec<Vec<u8>>,
    f: &mut dyn FnMut(&[Vec<u8>], &Metadata) -> bool,
) -> Result<(), SnapshotError> {
    let dir = rel_path(root, comps);
    for name in sorted_names(&dir)? {
        comps.push(name);
        let full = rel_path(root, comps);
        let r = fs::symlink_metadata(&full)
            .map_err(io_err("stat", &full))
            .and_then(|md| {
                if f(comps, &md) && md.is_dir() {
                    walk_stamps(root, comps, f)
                } else {
                    Ok(())
                }
            });
        comps.pop();
        r?;
    }
    Ok(())
}

/// Records every entry of a freshly copied tree, for [`copy_changes`].
pub(crate) fn stamp_tree(root: &Path) -> Result<HashMap<Vec<u8>, Stamp>, SnapshotError> {
    let mut out = HashMap::new();
    walk_stamps(root, &mut Vec::new(), &mut |comps, md| {
        out.insert(join(comps), stamp_of(md));
        true
    })?;
    Ok(out)
}

/// The changes in a copied tree relative to its record: new or changed entries (inode, ctime,
/// mtime, size, mode, owner or device differ; ctime also moves on xattr and symlink changes) and
/// deletions (topmost deleted path only).
pub(crate) fn copy_changes(
    root: &Path,
    baseline: &HashMap<Vec<u8>, Stamp>,
    exclude: &Exclude,
) -> Result<Vec<Item>, SnapshotError> {
    let mut out = Vec::new();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut dirs: HashSet<Vec<u8>> = HashSet::new();
    dirs.insert(Vec::new());
    walk_stamps(root, &mut Vec::new(), &mut |comps, md| {
        let rel = join(comps);
        if exclude.contains(&rel) {
            return false;
        }
        if baseline.get(&rel) != Some(&stamp_of(md)) {
            out.push(Item {
                comps: comps.to_vec(),
                op: Op::Path,
            });
        }
        if md.is_dir() {
            dirs.insert(rel.clone());
        }
        seen.insert(rel);
        true
    })?;
    for rel in baseline.keys() {
        if seen.contains(rel) || exclude.covers(rel) {
            continue;
        }
        let parent = match rel.iter().rposition(|b| *b == b'/') {
            Some(i) => rel.get(..i).unwrap_or_default(),
            None => &[][..],
        };
        // Below a deleted or replaced directory the parent's whiteout (or replacement) covers it.
        if dirs.contains(parent) {
            out.push(Item {
                comps: rel.split(|b| *b == b'/').map(<[u8]>::to_vec).collect(),
                op: Op::Whiteout,
            });
        }
    }
    Ok(out)
}

/// The planned entries plus any missing parent directories (as containerd's differ adds them),
/// in layer order. Takes the plan by value and sorts it in place without per-entry keys, so a
/// 100,000-file step holds one list of entries, not four.
pub(crate) fn complete_plan(root: &Path, mut items: Vec<Item>) -> Vec<Item> {
    let parents: HashSet<Vec<Vec<u8>>> = {
        let have: HashSet<&[Vec<u8>]> = items
            .iter()
            .filter(|i| i.op == Op::Path)
            .map(|i| i.comps.as_slice())
            .collect();
        let mut parents = HashSet::new();
        for it in &items {
            for n in 1..it.comps.len() {
                let p = it.comps.get(..n).unwrap_or_default();
                if !have.contains(p)
                    && !parents.contains(p)
                    && fs::symlink_metadata(rel_path(root, p)).is_ok_and(|m| m.is_dir())
                {
                    parents.insert(p.to_vec());
                }
            }
        }
        parents
    };
    items.extend(parents.into_iter().map(|comps| Item {
        comps,
        op: Op::Path,
    }));
    items.sort_by(layer_order);
    items.dedup_by(|a, b| a.op == b.op && a.comps == b.comps);
    items
}

/// The order of [`Item::sort_key`], compared component by component without building keys.
fn layer_order(a: &Item, b: &Item) -> std::cmp::Ordering {
    use std::borrow::Cow;
    fn part(item: &Item, idx: usize) -> Option<Cow<'_, [u8]>> {
        let n = item.comps.len();
        let at = |i: usize| item.comps.get(i).map(|c| Cow::Borrowed(c.as_slice()));
        match item.op {
            Op::Path => at(idx),
            Op::Opaque if idx == n => Some(Cow::Borrowed(&[][..])),
            Op::Opaque => at(idx),
            Op::Whiteout if idx + 1 == n => {
                let mut w = rbuild_layer::WHITEOUT_PREFIX.as_bytes().to_vec();
                w.extend_from_slice(item.comps.get(idx).map(Vec::as_slice).unwrap_or_default());
                Some(Cow::Owned(w))
            }
            Op::Whiteout => at(idx),
        }
    }
    for idx in 0.. {
        match (part(a, idx), part(b, idx)) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(&y) {
                std::cmp::Ordering::Equal => continue,
                o => return o,
            },
        }
    }
    std::cmp::Ordering::Equal
}

/// Writes `items` (from [`complete_plan`]) as one layer tar to `out`.
fn write_items<W: std::io::Write>(
    out: W,
    root: &Path,
    items: &[Item],
    opts: &rbuild_layer::WriteOptions,
    key: &str,
) -> Result<(W, rbuild_layer::LayerInfo, Vec<String>), SnapshotError> {
    let werr = |source| SnapshotError::Write {
        key: key.to_string(),
        source,
    };
    let mut w = rbuild_layer::LayerWriter::new(out, opts.clone());
    for it in items {
        let rel = it.rel();
        match it.op {
            Op::Path => w.append_path(root, &rel),
            Op::Whiteout => w.append_whiteout(&rel),
            Op::Opaque => w.append_opaque(&rel),
        }
        .map_err(werr)?;
    }
    let unmapped = w.unmapped_paths().to_vec();
    let (out, info) = w.finish().map_err(werr)?;
    Ok((out, info, unmapped))
}

/// Writes the planned entries (plus any missing parent directories) as one layer into the store.
pub(crate) fn write_plan(
    store: &Store,
    root: &Path,
    plan: Vec<Item>,
    opts: &rbuild_layer::WriteOptions,
    key: &str,
) -> Result<Committed, SnapshotError> {
    let items = complete_plan(root, plan);
    let (ingest, info, unmapped) = write_items(store.ingest()?, root, &items, opts, key)?;
    let (diff_id, size) = ingest.commit(Some(&info.diff_id))?;
    Ok(Committed {
        diff_id,
        size,
        empty: items.is_empty(),
        unmapped,
    })
}

/// What [`write_plan`] would store for `items`, computed without storing anything: the tar only
/// passes through the hash.
pub(crate) fn hash_items(
    root: &Path,
    items: &[Item],
    opts: &rbuild_layer::WriteOptions,
    key: &str,
) -> Result<Committed, SnapshotError> {
    let (_, info, unmapped) = write_items(std::io::sink(), root, items, opts, key)?;
    Ok(Committed {
        diff_id: info.diff_id,
        size: info.size,
        empty: items.is_empty(),
        unmapped,
    })
}

/// The entries of a committed overlay tree's layer, in layer order.
fn tree_items(tree: &Path, userxattr: bool) -> Result<Vec<Item>, SnapshotError> {
    Ok(complete_plan(tree, tree_changes(tree, userxattr)?))
}

/// Trees are only adopted for layers written with the default options (see `Snapshotter::adopts`).
fn tree_write_options() -> rbuild_layer::WriteOptions {
    rbuild_layer::WriteOptions::default()
}

/// Writes the layer `expected` from its committed overlay tree into the store, refusing (and
/// storing nothing) if the tree no longer gives exactly those bytes.
pub(crate) fn write_tree_blob(
    store: &Store,
    tree: &Path,
    userxattr: bool,
    expected: &rbuild_digest::Digest,
) -> Result<(), SnapshotError> {
    let mut ingest = store.ingest()?;
    write_tree_to(&mut ingest, tree, userxattr, expected)?;
    ingest.commit(Some(expected))?;
    Ok(())
}

/// Writes the layer of a committed overlay tree to `out` and returns its diff id, for a stream
/// that checks it against `expected` (only used in messages here).
pub(crate) fn write_tree_to<W: std::io::Write>(
    out: W,
    tree: &Path,
    userxattr: bool,
    expected: &rbuild_digest::Digest,
) -> Result<rbuild_digest::Digest, SnapshotError> {
    let items = tree_items(tree, userxattr)?;
    let key = format!("layer {expected}");
    let (_, info, _) = write_items(out, tree, &items, &tree_write_options(), &key)?;
    Ok(info.diff_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(p: &str, op: Op) -> Item {
        Item {
            comps: p.split('/').map(|s| s.as_bytes().to_vec()).collect(),
            op,
        }
    }

    #[test]
    fn order_is_depth_first_with_opaque_after_its_dir() {
        let mut v = [
            item("a.txt", Op::Path),
            item("a/z", Op::Path),
            item("a", Op::Opaque),
            item("a", Op::Path),
            item("a/b", Op::Whiteout),
            item("a/.a", Op::Path),
        ]
        .to_vec();
        let mut by_order = v.clone();
        by_order.sort_by(layer_order);
        v.sort_by_cached_key(Item::sort_key);
        assert_eq!(
            by_order.iter().map(Item::rel).collect::<Vec<_>>(),
            v.iter().map(Item::rel).collect::<Vec<_>>()
        );
        let got: Vec<(String, Op)> = v
            .iter()
            .map(|i| (i.rel().to_string_lossy().into_owned(), i.op))
            .collect();
        let want = [
            ("a", Op::Path),
            ("a", Op::Opaque),
            ("a/.a", Op::Path),
            ("a/b", Op::Whiteout),
            ("a/z", Op::Path),
            ("a.txt", Op::Path),
        ];
        let want: Vec<(String, Op)> = want.iter().map(|(p, o)| (p.to_string(), *o)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn exclude_normalizes_and_rejects_escapes() {
        let e = Exclude::new(&[PathBuf::from("/etc/hosts"), PathBuf::from("./run/x/")]).unwrap();
        assert!(e.contains(b"etc/hosts"));
        assert!(e.covers(b"run/x/y"));
        assert!(!e.covers(b"etc"));
        assert!(!e.covers(b"etc/hostsx"));
        for bad in ["/", "../etc", "a/../../b", ""] {
            assert!(Exclude::new(&[PathBuf::from(bad)]).is_err(), "{bad}");
        }
    }
}
