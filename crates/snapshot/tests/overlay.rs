//! The overlay snapshotter as root: unpack with overlay-form whiteouts, a simulated RUN step in
//! a private mount namespace, and commit from the upper directory alone.

mod common;

use std::path::PathBuf;

use common::*;
use rbuild_layer::EntryKind::*;
use rbuild_snapshot::{Kind, MountPlan, Snapshotter};

const RUN: &str = "rm a && mkdir -p d && echo hi > d/f && rm -rf dir && mkdir dir && \
                   echo n > dir/n && setcap cap_net_raw+ep bin/ping && echo more >> keep && \
                   test \"$(ls d0)\" = new && test ! -e dir/y";

const ROOT_NS: &[&str] = &["unshare", "-m"];

fn overlay(store: &rbuild_store::Store) -> Snapshotter {
    Snapshotter::with_kind(store, Kind::Overlay { userxattr: false }).unwrap()
}

#[test]
fn probe_finds_overlay_as_root() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    assert_eq!(
        rbuild_snapshot::probe(&store),
        rbuild_snapshot::ProbeResult::Overlay { userxattr: false }
    );
    let s = Snapshotter::new(&store, rbuild_snapshot::Mode::Auto).unwrap();
    assert_eq!(s.kind(), Kind::Overlay { userxattr: false });
    assert_eq!(s.kind().name(), "overlayfs");
    // The probe leaves nothing behind.
    assert!(scratch_entries(&store).is_empty());
}

#[test]
fn unpack_converts_whiteouts_to_overlay_form() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    let s = overlay(&store);
    s.ensure_unpacked(&[l1, l2]).unwrap();
    let dir2 = s.committed_dir(&[l1, l2]).unwrap();
    assert_eq!(dir2, store.root().join("snapshots/overlay").join(l2.hex()));
    assert_eq!(
        lstat_kind(&dir2.join("dir/y")),
        (true, 0),
        "whiteout is char 0/0"
    );
    assert_eq!(
        xattr(&dir2.join("d0"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dir2.join(".wh.y").exists() && !dir2.join("dir/.wh.y").exists());
    assert!(!dir2.join("d0/.wh..wh..opq").exists());
    // The base layer keeps ownership and the file capability.
    let dir1 = s.committed_dir(&[l1]).unwrap();
    let keep = std::fs::symlink_metadata(dir1.join("keep")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&keep), 12);
    assert!(xattr(&dir1.join("bin/cap"), "security.capability").is_some());
    // Unpacking again is a no-op, and no scratch directories are left.
    s.ensure_unpacked(&[l1, l2]).unwrap();
    assert!(scratch_entries(&store).is_empty());
}

#[test]
fn concurrent_unpacks_of_one_layer_both_succeed() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let l1 = base_layer(&store);
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| sc.spawn(|| overlay(&store).ensure_unpacked(&[l1])))
            .collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    });
    let dir = overlay(&store).committed_dir(&[l1]).unwrap();
    assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"a\n");
    assert_eq!(
        std::fs::read_dir(dir.parent().unwrap()).unwrap().count(),
        1,
        "exactly one tree"
    );
    assert!(scratch_entries(&store).is_empty());
}

#[test]
fn run_step_commits_only_the_upper_changes() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    let s = overlay(&store);
    let active = s.prepare(&[l1, l2]).unwrap();
    let MountPlan::Overlay {
        lowers,
        upper,
        options,
        userxattr,
        ..
    } = active.mount()
    else {
        panic!("expected an overlay plan");
    };
    assert!(!userxattr);
    assert_eq!(
        lowers,
        vec![
            s.committed_dir(&[l1, l2]).unwrap(),
            s.committed_dir(&[l1]).unwrap()
        ]
    );
    assert!(
        options.ends_with("index=off,redirect_dir=off,metacopy=off"),
        "{options}"
    );
    let merged = tempfile::tempdir().unwrap();
    run_overlay(ROOT_NS, &options, RUN, merged.path());
    let upper_parent = upper.parent().unwrap().to_path_buf();

    let c = s
        .commit(active, &rbuild_layer::WriteOptions::default(), &[])
        .unwrap();
    assert!(!c.empty);
    assert!(
        !upper_parent.exists(),
        "active snapshot removed after commit"
    );
    assert_eq!(store.blob_size(&c.diff_id).unwrap(), c.size);

    let entries = layer_entries(&store, &c.diff_id);
    assert_eq!(
        kinds(&entries),
        want(&[
            (".wh.a", Whiteout),
            ("bin", Dir),
            ("bin/ping", File),
            ("d", Dir),
            ("d/f", File),
            ("dir", Dir),
            ("dir/.wh..wh..opq", Opaque),
            ("dir/n", File),
            ("keep", File),
        ])
    );
    let ping = entries.iter().find(|e| e.path == "bin/ping").unwrap();
    assert!(
        ping.xattrs.iter().any(|(k, _)| k == "security.capability"),
        "{ping:?}"
    );
    for e in &entries {
        assert!(
            !e.xattrs.iter().any(|(k, _)| k.contains(".overlay.")),
            "overlay xattr leaked: {e:?}"
        );
    }
    let keep = entries.iter().find(|e| e.path == "keep").unwrap();
    assert_eq!((keep.uid, keep.gid), (12, 34));

    // Base + L2 + the new layer applied from tars gives exactly the merged view.
    let opts = rbuild_layer::ApplyOptions {
        same_owner: true,
        id_map: None,
    };
    let applied = applied(&store, &[l1, l2, c.diff_id], &opts);
    assert_eq!(
        rbuild_layer::list_tree(applied.path()).unwrap(),
        rbuild_layer::list_tree(merged.path()).unwrap()
    );

    // The new layer stacks as a lower like any other.
    let next = s.prepare(&[l1, l2, c.diff_id]).unwrap();
    let MountPlan::Overlay { options, .. } = next.mount() else {
        panic!()
    };
    let out = tempfile::tempdir().unwrap();
    run_overlay(
        ROOT_NS,
        &options,
        "test ! -e a && test \"$(cat d/f)\" = hi && test \"$(ls dir)\" = n",
        out.path(),
    );
    s.remove(next).unwrap();
    assert!(scratch_entries(&store).is_empty());
}

#[test]
fn unchanged_step_is_empty_and_excluded_paths_are_dropped() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let l1 = base_layer(&store);
    let s = overlay(&store);

    let active = s.prepare(&[l1]).unwrap();
    let c = s
        .commit(active, &rbuild_layer::WriteOptions::default(), &[])
        .unwrap();
    assert!(c.empty);
    assert_eq!(c.size, 1024);

    let active = s.prepare(&[l1]).unwrap();
    let MountPlan::Overlay { options, .. } = active.mount() else {
        panic!()
    };
    let out = tempfile::tempdir().unwrap();
    run_overlay(
        ROOT_NS,
        &options,
        "touch bin/hosts && mkdir -p etc && touch etc/resolv.conf etc/keepme",
        out.path(),
    );
    let exclude = [
        PathBuf::from("/bin/hosts"),
        PathBuf::from("/etc/resolv.conf"),
    ];
    let c = s
        .commit(active, &rbuild_layer::WriteOptions::default(), &exclude)
        .unwrap();
    // `bin` was only copied up for the excluded file; the new `etc` stays.
    assert_eq!(
        kinds(&layer_entries(&store, &c.diff_id)),
        want(&[("etc", Dir), ("etc/keepme", File)])
    );
    assert!(s
        .commit(
            s.prepare(&[l1]).unwrap(),
            &Default::default(),
            &[PathBuf::from("../x")]
        )
        .is_err());
}

#[test]
fn scratch_base_and_deterministic_layers() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let s = overlay(&store);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let active = s.prepare(&[]).unwrap();
        let MountPlan::Overlay {
            lowers, options, ..
        } = active.mount()
        else {
            panic!()
        };
        assert_eq!(lowers.len(), 1, "an empty lower for FROM scratch");
        let out = tempfile::tempdir().unwrap();
        run_overlay(
            ROOT_NS,
            &options,
            "mkdir -p usr/bin && echo x > usr/bin/tool && touch -d @1000 usr/bin/tool usr/bin usr",
            out.path(),
        );
        let c = s
            .commit(
                active,
                &rbuild_layer::WriteOptions {
                    source_date_epoch: Some(0),
                    ..Default::default()
                },
                &[],
            )
            .unwrap();
        ids.push(c.diff_id);
    }
    assert_eq!(ids[0], ids[1], "same changes, same diff id");
    assert_eq!(
        kinds(&layer_entries(&store, &ids[0])),
        want(&[("usr", Dir), ("usr/bin", Dir), ("usr/bin/tool", File)])
    );
}

#[test]
fn missing_layer_names_the_digest() {
    let (_t, store) = store();
    let s = Snapshotter::with_kind(&store, Kind::Overlay { userxattr: false }).unwrap();
    let d = rbuild_digest::Digest::of(b"nope");
    let err = s.ensure_unpacked(&[d]).unwrap_err().to_string();
    assert!(err.contains(&d.hex()), "{err}");
}

#[test]
fn prune_keeps_only_wanted_trees() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    for kind in [Kind::Overlay { userxattr: false }, Kind::Copy] {
        let s = Snapshotter::with_kind(&store, kind).unwrap();
        s.ensure_unpacked(&[l1]).unwrap();
        s.ensure_unpacked(&[l1, l2]).unwrap();
        let keep_id = match kind {
            Kind::Copy => rbuild_digest::chain_id(&[l1, l2]).unwrap(),
            _ => l2,
        };
        let _gc = store.lock_exclusive().unwrap();
        let removed = s.prune(&[keep_id].into_iter().collect()).unwrap().trees;
        assert_eq!(removed, 1, "{kind:?}");
        assert!(s.committed_dir(&[l1, l2]).unwrap().is_dir());
        assert!(!s.committed_dir(&[l1]).unwrap().exists());
    }
    assert!(scratch_entries(&store).is_empty());
}
