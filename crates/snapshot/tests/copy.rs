//! The copy fallback: merged trees per chain, prepare by copying, commit by comparing.

mod common;

use std::path::PathBuf;

use common::*;
use rbuild_layer::EntryKind::*;
use rbuild_snapshot::{Kind, Mode, MountPlan, Snapshotter};

fn root_opts() -> rbuild_layer::ApplyOptions {
    rbuild_layer::ApplyOptions {
        same_owner: is_root(),
        id_map: None,
    }
}

fn rootfs(active: &rbuild_snapshot::Active) -> PathBuf {
    match active.mount() {
        MountPlan::Dir(d) => d,
        other => panic!("expected a directory, got {other:?}"),
    }
}

#[test]
fn copy_mode_is_named_and_chosen_on_request() {
    let (_t, store) = store();
    let s = Snapshotter::new(&store, Mode::Copy).unwrap();
    assert_eq!(s.kind(), Kind::Copy);
    assert_eq!(s.kind().name(), "copy");
    assert_eq!(s.kind().overlay_options(), "");
}

#[test]
fn prepare_copies_the_merged_parent_exactly() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    let s = Snapshotter::with_kind(&store, Kind::Copy).unwrap();
    s.ensure_unpacked(&[l1, l2]).unwrap();
    let merged = s.committed_dir(&[l1, l2]).unwrap();
    let chain = rbuild_digest::chain_id(&[l1, l2]).unwrap();
    assert_eq!(
        merged,
        store.root().join("snapshots/copy").join(chain.hex())
    );
    let reference = applied(&store, &[l1, l2], &root_opts());
    let want = rbuild_layer::list_tree(reference.path()).unwrap();
    assert_eq!(rbuild_layer::list_tree(&merged).unwrap(), want);
    // Ownership, xattrs, hardlinks, the fifo and the symlink survive the copy.
    let active = s.prepare(&[l1, l2]).unwrap();
    let got = rbuild_layer::list_tree(&rootfs(&active)).unwrap();
    assert_eq!(got, want);
    let find = |p: &str| got.iter().find(|e| e.path == p).unwrap().clone();
    assert_eq!((find("keep").uid, find("keep").gid), (12, 34));
    assert_eq!(find("hl2").kind, Hardlink);
    assert_eq!(find("p").kind, Fifo);
    assert!(find("bin/cap")
        .xattrs
        .iter()
        .any(|(k, _)| k == "security.capability"));
    s.remove(active).unwrap();
    assert!(scratch_entries(&store).is_empty());
}

#[test]
fn run_step_in_a_copy_commits_changes_and_deletions() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    let s = Snapshotter::with_kind(&store, Kind::Copy).unwrap();
    let active = s.prepare(&[l1, l2]).unwrap();
    let dir = rootfs(&active);
    sh(&format!(
        "cd {} && rm a && mkdir -p d && echo hi > d/f && rm -rf dir && mkdir dir && \
         echo n > dir/n && setcap cap_net_raw+ep bin/ping && echo more >> keep && ln hl1 hl3",
        dir.display()
    ));
    let after = rbuild_layer::list_tree(&dir).unwrap();
    let c = s
        .commit(active, &rbuild_layer::WriteOptions::default(), &[])
        .unwrap();
    assert!(!c.empty);
    assert!(!dir.exists());
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
            ("dir/.wh.x", Whiteout),
            ("dir/n", File),
            ("hl1", File),
            ("hl2", Hardlink),
            ("hl3", Hardlink),
            ("keep", File),
        ])
    );
    let ping = entries.iter().find(|e| e.path == "bin/ping").unwrap();
    assert!(ping.xattrs.iter().any(|(k, _)| k == "security.capability"));
    let applied = applied(&store, &[l1, l2, c.diff_id], &root_opts());
    assert_eq!(rbuild_layer::list_tree(applied.path()).unwrap(), after);
}

#[test]
fn same_size_same_mtime_rewrite_is_still_seen() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let l1 = base_layer(&store);
    let s = Snapshotter::with_kind(&store, Kind::Copy).unwrap();
    let active = s.prepare(&[l1]).unwrap();
    let dir = rootfs(&active);
    let ref_file = tempfile::NamedTempFile::new().unwrap();
    sh(&format!(
        "cd {} && touch -r keep {r} && printf 'KEEP\\n' > keep && touch -r {r} keep && \
         touch hosts",
        dir.display(),
        r = ref_file.path().display()
    ));
    let c = s
        .commit(
            active,
            &rbuild_layer::WriteOptions::default(),
            &[PathBuf::from("/hosts")],
        )
        .unwrap();
    let entries = layer_entries(&store, &c.diff_id);
    assert_eq!(kinds(&entries), want(&[("keep", File)]));
    assert_eq!(
        entries[0].sha256,
        Some(rbuild_digest::Digest::of(b"KEEP\n"))
    );
}

#[test]
fn longer_chains_start_from_a_merged_prefix() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    let s = Snapshotter::with_kind(&store, Kind::Copy).unwrap();
    let active = s.prepare(&[l1]).unwrap();
    sh(&format!(
        "cd {} && echo z > z && rm keep",
        rootfs(&active).display()
    ));
    let c = s.commit(active, &Default::default(), &[]).unwrap();
    s.ensure_unpacked(&[l1, c.diff_id, l2]).unwrap();
    let got = s.committed_dir(&[l1, c.diff_id, l2]).unwrap();
    let reference = applied(&store, &[l1, c.diff_id, l2], &root_opts());
    assert_eq!(
        rbuild_layer::list_tree(&got).unwrap(),
        rbuild_layer::list_tree(reference.path()).unwrap()
    );
    assert!(!got.join("keep").exists() && got.join("z").exists());
}
