//! Rootless overlay end to end: the whole snapshotter runs as an unprivileged user (uid 65534),
//! probes overlay with `userxattr` in a user namespace, unpacks, and commits a step that ran in
//! `unshare -Ur -m`. The unprivileged half is an ignored test of this same binary, started through
//! `setpriv` by the root half.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use rbuild_layer::EntryKind::*;
use rbuild_snapshot::{Kind, Mode, MountPlan, Snapshotter};

const RUN: &str = "rm a && mkdir -p d && echo hi > d/f && rm -rf dir && mkdir dir && \
                   echo n > dir/n && test \"$(ls d0)\" = new && test ! -e dir/y";

#[test]
fn rootless_overlay_end_to_end() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    sh(&format!("chown -R 65534:65534 {}", store.root().display()));
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe)
        .args(["--ignored", "--exact", "rootless_helper", "--nocapture"])
        .env("SNAP_STORE", store.root())
        .env("SNAP_CHAIN", format!("{l1} {l2}"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("rootless helper ok"), "{text}");
}

#[test]
#[ignore = "run by rootless_overlay_end_to_end as an unprivileged user"]
fn rootless_helper() {
    assert!(!is_root(), "must run unprivileged");
    let root = PathBuf::from(std::env::var_os("SNAP_STORE").unwrap());
    let chain: Vec<rbuild_digest::Digest> = std::env::var("SNAP_CHAIN")
        .unwrap()
        .split(' ')
        .map(|d| d.parse().unwrap())
        .collect();
    let store = rbuild_store::Store::open(root).unwrap();
    let s = Snapshotter::new(&store, Mode::Auto).unwrap();
    assert_eq!(s.kind(), Kind::Overlay { userxattr: true });

    let active = s.prepare(&chain).unwrap();
    let top = s.committed_dir(&chain).unwrap();
    assert!(top.starts_with(store.root().join("snapshots/overlay-userxattr")));
    assert_eq!(
        lstat_kind(&top.join("dir/y")),
        (true, 0),
        "whiteout is char 0/0"
    );
    assert_eq!(
        xattr(&top.join("d0"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );

    let MountPlan::Overlay {
        options, userxattr, ..
    } = active.mount()
    else {
        panic!("expected an overlay plan")
    };
    assert!(userxattr);
    assert!(options.contains(",userxattr,"), "{options}");
    let merged = tempfile::tempdir().unwrap();
    run_overlay(&["unshare", "-Ur", "-m"], &options, RUN, merged.path());

    let c = s
        .commit(active, &rbuild_layer::WriteOptions::default(), &[])
        .unwrap();
    let entries = layer_entries(&store, &c.diff_id);
    assert_eq!(
        kinds(&entries),
        want(&[
            (".wh.a", Whiteout),
            ("d", Dir),
            ("d/f", File),
            ("dir", Dir),
            ("dir/.wh..wh..opq", Opaque),
            ("dir/n", File),
        ])
    );
    for e in &entries {
        assert!(
            !e.xattrs.iter().any(|(k, _)| k.contains(".overlay.")),
            "{e:?}"
        );
    }
    let mut chain3 = chain.clone();
    chain3.push(c.diff_id);
    let applied = applied(&store, &chain3, &rbuild_layer::ApplyOptions::default());
    assert_eq!(
        rbuild_layer::list_tree(applied.path()).unwrap(),
        rbuild_layer::list_tree(merged.path()).unwrap()
    );
    assert!(scratch_entries(&store).is_empty());
    println!("rootless helper ok");
}
