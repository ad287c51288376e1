//! The writer's exact output for a fixed tree. Layers committed as snapshot trees are written
//! later, from the tree, by whatever rbuild reads them (the snapshot crate's deferred blobs), and
//! must hash to the diff id recorded at commit: a change to these bytes (header fields, PAX
//! records, ordering, hardlinks, the xattr filter) breaks every such layer in existing stores.
//! If this test fails after an intended change, bump `TREE_FORMAT` in crates/snapshot/src/lib.rs
//! and update the digest here.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn set(path: &Path, mode: u32, mtime: i64) {
    // chown first: it clears the setuid bit.
    std::os::unix::fs::lchown(path, Some(0), Some(0)).unwrap();
    if !std::fs::symlink_metadata(path).unwrap().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let t = rustix::fs::Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

#[test]
fn the_bytes_written_for_a_fixed_tree_do_not_change() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (fixed owners), as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    std::fs::create_dir_all(r.join("etc/deep")).unwrap();
    std::fs::write(r.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    std::fs::hard_link(r.join("etc/hosts"), r.join("etc/hosts.link")).unwrap();
    std::os::unix::fs::symlink("hosts", r.join("etc/alias")).unwrap();
    let long = format!("etc/deep/{}", "n".repeat(120));
    std::fs::write(r.join(&long), b"long name").unwrap();
    std::fs::write(r.join("run.sh"), b"#!/bin/sh\n").unwrap();
    rustix::fs::setxattr(
        r.join("run.sh"),
        "user.origin",
        b"fixture",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    rustix::fs::setxattr(
        r.join("etc/deep"),
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    for (p, mode) in [
        ("etc/hosts", 0o644),
        (long.as_str(), 0o600),
        ("run.sh", 0o4755),
        ("etc/alias", 0o777),
        ("etc/deep", 0o700),
        ("etc", 0o755),
    ] {
        set(&r.join(p), mode, 1_000_000_000);
    }
    let (_, info) =
        rbuild_layer::write_tree(r, std::io::sink(), &rbuild_layer::WriteOptions::default())
            .unwrap();
    assert_eq!(
        info.diff_id.to_string(),
        "sha256:34fe8a25c1e0b125329d8e6f9ab6347c65592e06462821ac5f592f3c7217feea",
        "the layer writer's output changed: bump TREE_FORMAT in crates/snapshot/src/lib.rs"
    );
}
