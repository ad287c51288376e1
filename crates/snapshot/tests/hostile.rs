//! Layers that try to use the overlay conversion to write outside the tree or to smuggle overlay
//! metadata into a lower directory.

mod common;

use std::path::Path;

use common::*;
use layer::LayerWriter;
use snapshot::{Kind, SnapshotError, Snapshotter};

fn put(
    store: &store::Store,
    build: impl FnOnce(&mut LayerWriter<&mut store::Ingest>),
) -> digest::Digest {
    let mut ing = store.ingest().unwrap();
    let mut w = LayerWriter::new(&mut ing, layer::WriteOptions::default());
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
    let src = tempfile::tempdir().unwrap();
    let dir = src.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(src.path().join("f"), b"x").unwrap();
    for (p, name, value) in [
        (&dir, "trusted.overlay.opaque", &b"y"[..]),
        (&dir, "trusted.overlay.redirect", b"/etc"),
        (&src.path().join("f"), "user.overlay.metacopy", b""),
        (&src.path().join("f"), "user.keep", b"1"),
    ] {
        rustix::fs::setxattr(p, name, value, rustix::fs::XattrFlags::empty()).unwrap();
    }
    let d = put(&store, |w| {
        w.append_path(src.path(), Path::new("dir")).unwrap();
        w.append_path(src.path(), Path::new("f")).unwrap();
    });
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
