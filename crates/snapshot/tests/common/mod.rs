//! Shared fixtures: a store, a base layer and a layer with whiteouts, and a helper that runs a
//! shell script the way a sandbox would (overlay mounted in a private mount namespace).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_digest::Digest;
use rbuild_layer::{EntryKind, LayerWriter, TreeEntry};
use rbuild_store::Store;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A store in a world-traversable temp dir (rootless sandboxes must reach it).
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

pub fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Base layer: files, a directory to delete and recreate, a symlink, hardlinks, a fifo and a
/// file with a file capability.
pub fn base_layer(store: &Store) -> Digest {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().display().to_string();
    sh(&format!(
        "cd {r} && echo a > a && echo keep > keep && mkdir dir d0 bin && echo x > dir/x && \
         echo y > dir/y && echo old > d0/old && ln -s a lnk && echo h > hl1 && ln hl1 hl2 && \
         mkfifo p && printf ping > bin/ping && chmod 755 bin/ping && printf cap > bin/cap && \
         setcap cap_net_bind_service+ep bin/cap && chown 12:34 keep"
    ));
    let mut ing = store.ingest().unwrap();
    rbuild_layer::write_tree(t.path(), &mut ing, &rbuild_layer::WriteOptions::default()).unwrap();
    ing.commit(None).unwrap().0
}

/// Second layer: `d0` made opaque with a new file, `dir/y` whited out, a new file.
pub fn whiteout_layer(store: &Store) -> Digest {
    let t = tempfile::tempdir().unwrap();
    let r = t.path().display().to_string();
    sh(&format!(
        "cd {r} && mkdir d0 dir && echo new > d0/new && echo l2 > l2file"
    ));
    let mut ing = store.ingest().unwrap();
    let mut w = LayerWriter::new(&mut ing, rbuild_layer::WriteOptions::default());
    w.append_path(t.path(), Path::new("d0")).unwrap();
    w.append_opaque(Path::new("d0")).unwrap();
    w.append_path(t.path(), Path::new("d0/new")).unwrap();
    w.append_path(t.path(), Path::new("dir")).unwrap();
    w.append_whiteout(Path::new("dir/y")).unwrap();
    w.append_path(t.path(), Path::new("l2file")).unwrap();
    w.finish().unwrap();
    ing.commit(None).unwrap().0
}

/// Runs `script` inside the mounted overlay, in the namespaces `unshare` (e.g. `["unshare", "-m"]`
/// as root, `["unshare", "-Ur", "-m"]` rootless) creates, then copies the merged view to `out`
/// with `cp -a`.
pub fn run_overlay(unshare: &[&str], options: &str, script: &str, out: &Path) {
    let target = tempfile::tempdir().unwrap();
    fs::set_permissions(target.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let t = target.path().display();
    let full = format!(
        "mount -t overlay overlay -o '{options}' {t} && cd {t} && {script} && cp -a {t}/. {}",
        out.display()
    );
    let mut cmd: Vec<&str> = unshare.to_vec();
    cmd.extend(["sh", "-c", &full]);
    let res = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        res.status.success(),
        "{full}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
}

pub fn layer_entries(store: &Store, d: &Digest) -> Vec<TreeEntry> {
    rbuild_layer::list_layer(store.open_blob(d).unwrap()).unwrap()
}

pub fn kinds(entries: &[TreeEntry]) -> Vec<(String, EntryKind)> {
    entries.iter().map(|e| (e.path.clone(), e.kind)).collect()
}

pub fn want(list: &[(&str, EntryKind)]) -> Vec<(String, EntryKind)> {
    list.iter().map(|(p, k)| (p.to_string(), *k)).collect()
}

/// Applies the chain onto a fresh directory.
pub fn applied(
    store: &Store,
    chain: &[Digest],
    opts: &rbuild_layer::ApplyOptions,
) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for d in chain {
        rbuild_layer::apply_layer(t.path(), store.open_blob(d).unwrap(), opts).unwrap();
    }
    t
}

pub fn lstat_kind(p: &Path) -> (bool, u64) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = fs::symlink_metadata(p).unwrap();
    (md.file_type().is_char_device(), md.rdev())
}

pub fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    rustix::fs::lgetxattr(p, name, &mut buf[..])
        .ok()
        .map(|n| buf[..n].to_vec())
}

pub fn scratch_entries(store: &Store) -> Vec<PathBuf> {
    fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}
