//! Layers that try to use the overlay conversion to write outside the tree or to smuggle overlay
//! metadata into a lower directory.

mod common;

use std::path::Path;

use common::*;
use rbuild_layer::LayerWriter;
use rbuild_snapshot::{Kind, SnapshotError, Snapshotter};

fn put(
    store: &rbuild_store::Store,
    build: impl FnOnce(&mut LayerWriter<&mut rbuild_store::Ingest>),
) -> rbuild_digest::Digest {
    let mut ing = store.ingest().unwrap();
    let mut w = LayerWriter::new(&mut ing, rbuild_layer::WriteOptions::default());
    build(&mut w);
    w.finish().unwrap();
    ing.commit(None).unwrap().0
}

#[test]
fn whiteout_through_a_symlink_is_refused_and_writes_nothing_outside() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), b"keep").unwrap();
    let src = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), src.path().join("link")).unwrap();
    let d = put(&store, |w| {
        w.append_path(src.path(), Path::new("link")).unwrap();
        w.append_whiteout(Path::new("link/victim")).unwrap();
        w.append_whiteout(Path::new("link/new")).unwrap();
    });
    for kind in [
        Kind::Overlay { userxattr: false },
        Kind::Overlay { userxattr: true },
    ] {
        let s = Snapshotter::with_kind(&store, kind).unwrap();
        let err = s.ensure_unpacked(&[d]).unwrap_err();
        assert!(
            matches!(&err, SnapshotError::InvalidLayer { path, .. } if path.starts_with("link/")),
            "{err}"
        );
        assert!(
            s.committed_dir(&[d]).is_some_and(|p| !p.exists()),
            "nothing published"
        );
    }
    assert_eq!(
        std::fs::read(outside.path().join("victim")).unwrap(),
        b"keep"
    );
    assert!(!outside.path().join("new").exists());
    assert!(scratch_entries(&store).is_empty());
}

#[test]
fn overlay_xattrs_carried_by_a_layer_are_stripped() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    // Our own writer never writes overlay xattrs, so the hostile layer is made by hand.
    let mut b = tar::Builder::new(Vec::new());
    type Pax<'a> = &'a [(&'a str, &'a [u8])];
    let entries: [(&str, tar::EntryType, Pax); 2] = [
        (
            "dir/",
            tar::EntryType::Directory,
            &[
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ],
        ),
        (
            "f",
            tar::EntryType::Regular,
            &[
                ("SCHILY.xattr.user.keep", b"1"),
                ("SCHILY.xattr.user.overlay.metacopy", b""),
            ],
        ),
    ];
    for (name, kind, pax) in entries {
        b.append_pax_extensions(pax.iter().copied()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let data: &[u8] = if kind == tar::EntryType::Regular {
            b"x"
        } else {
            b""
        };
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    }
    let mut ing = store.ingest().unwrap();
    std::io::Write::write_all(&mut ing, &b.into_inner().unwrap()).unwrap();
    let d = ing.commit(None).unwrap().0;
    let listed = layer_entries(&store, &d);
    assert!(
        listed[0]
            .xattrs
            .iter()
            .any(|(k, _)| k == "trusted.overlay.opaque"),
        "fixture"
    );
    let s = Snapshotter::with_kind(&store, Kind::Overlay { userxattr: false }).unwrap();
    s.ensure_unpacked(&[d]).unwrap();
    let tree = s.committed_dir(&[d]).unwrap();
    assert_eq!(xattr(&tree.join("dir"), "trusted.overlay.opaque"), None);
    assert_eq!(xattr(&tree.join("dir"), "trusted.overlay.redirect"), None);
    assert_eq!(xattr(&tree.join("f"), "user.overlay.metacopy"), None);
    assert_eq!(
        xattr(&tree.join("f"), "user.keep").as_deref(),
        Some(&b"1"[..])
    );
}
