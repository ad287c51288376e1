//! Commit with a user-namespace id map: what a rootless step left on disk under host ids is
//! recorded with the container ids the step saw.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;
use rbuild_layer::{IdMap, IdRange};
use rbuild_snapshot::{Kind, MountPlan, Snapshotter};

#[test]
fn copy_commit_translates_host_owners_to_container_ids() {
    let (_t, store) = store();
    let s = Snapshotter::with_kind(&store, Kind::Copy).unwrap();
    let active = s.prepare(&[]).unwrap();
    let MountPlan::Dir(root) = active.mount() else {
        panic!("copy snapshots are plain directories")
    };
    std::fs::write(root.join("by-root"), b"r").unwrap();
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/by-5"), b"5").unwrap();
    std::fs::write(root.join("stray"), b"x").unwrap();
    let me = std::fs::metadata(root.join("by-root")).unwrap();
    let (uid, gid) = (me.uid(), me.gid());
    // Root can put files at subordinate ids like a rootless step's chown would; otherwise the
    // caller-owned files alone exercise the container-root range.
    let sub = 100_000;
    if is_root() {
        std::os::unix::fs::lchown(root.join("dir/by-5"), Some(sub + 4), Some(sub + 4)).unwrap();
        std::os::unix::fs::lchown(root.join("stray"), Some(7), Some(7)).unwrap();
    }
    let ranges = |own: u32| {
        vec![
            IdRange {
                container: 0,
                host: own,
                size: 1,
            },
            IdRange {
                container: 1,
                host: sub,
                size: 65_536,
            },
        ]
    };
    let opts = rbuild_layer::WriteOptions {
        id_map: Some(IdMap {
            uids: ranges(uid),
            gids: ranges(gid),
        }),
        ..Default::default()
    };
    let c = s.commit(active, &opts, &[]).unwrap();
    let owners: Vec<(String, u64, u64)> = layer_entries(&store, &c.diff_id)
        .into_iter()
        .map(|e| (e.path, e.uid, e.gid))
        .collect();
    let mut want = vec![
        ("by-root".to_string(), 0, 0),
        ("dir".to_string(), 0, 0),
        ("dir/by-5".to_string(), 0, 0),
        ("stray".to_string(), 0, 0),
    ];
    let mut unmapped: Vec<String> = Vec::new();
    if is_root() {
        want[2] = ("dir/by-5".to_string(), 5, 5);
        want[3] = ("stray".to_string(), 65534, 65534);
        unmapped.push("stray".to_string());
    }
    assert_eq!(owners, want);
    assert_eq!(c.unmapped, unmapped);
}
