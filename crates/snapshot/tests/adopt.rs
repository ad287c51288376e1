//! As root, a committed overlay upper directory becomes the new layer's tree (no delete, no
//! unpack for the next step); it must hold exactly what unpacking the layer would give, and the
//! layer's bytes must not depend on whether the upper was adopted.

mod common;

use std::path::PathBuf;

use common::*;
use rbuild_snapshot::{Kind, MountPlan, Snapshotter};

const ROOT_NS: &[&str] = &["unshare", "-m"];

/// A step with a deletion (whiteout), a replaced directory (opaque), a new file, a changed xattr,
/// bind-mount targets to exclude (one alone in an otherwise unchanged directory), a socket (never
/// in a layer, so not in the adopted tree either) and fixed times.
const RUN: &str = "rm a && rm -rf dir && mkdir dir && echo n > dir/n && mkdir -p etc && \
                   echo k > etc/keep && touch etc/resolv.conf bin/hosts d0/hosts2 && \
                   setcap cap_net_raw+ep bin/ping && \
                   touch -h -d @1000 dir dir/n etc etc/keep bin bin/ping";

fn excludes() -> Vec<PathBuf> {
    vec![
        PathBuf::from("/etc/resolv.conf"),
        PathBuf::from("/bin/hosts"),
        PathBuf::from("/d0/hosts2"),
        PathBuf::from("/nothere/x"),
    ]
}

fn step(
    s: &Snapshotter,
    parent: &[rbuild_digest::Digest],
    opts: &rbuild_layer::WriteOptions,
) -> rbuild_snapshot::Committed {
    let active = s.prepare(parent).unwrap();
    let MountPlan::Overlay { options, upper, .. } = active.mount() else {
        panic!("expected an overlay plan");
    };
    let out = tempfile::tempdir().unwrap();
    run_overlay(ROOT_NS, &options, RUN, out.path());
    // A socket the step left behind (written straight into the upper, as overlay would).
    drop(std::os::unix::net::UnixListener::bind(upper.join("dir/sock")).unwrap());
    let touch = std::process::Command::new("touch")
        .args(["-h", "-d", "@1000"])
        .arg(upper.join("dir"))
        .status()
        .unwrap();
    assert!(touch.success());
    s.commit(active, opts, &excludes()).unwrap()
}

/// As root, a store with the base layer and an overlay snapshotter on it.
fn root_overlay() -> (
    tempfile::TempDir,
    rbuild_store::Store,
    rbuild_digest::Digest,
    Snapshotter,
) {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (t, store) = store();
    let l1 = base_layer(&store);
    let s = Snapshotter::with_kind(&store, Kind::Overlay { userxattr: false }).unwrap();
    (t, store, l1, s)
}

/// [`root_overlay`] with one step committed on the base layer (its upper adopted).
fn adopted_step() -> (
    tempfile::TempDir,
    rbuild_store::Store,
    rbuild_digest::Digest,
    Snapshotter,
    rbuild_snapshot::Committed,
) {
    let (t, store, l1, s) = root_overlay();
    let c = step(&s, &[l1], &rbuild_layer::WriteOptions::default());
    (t, store, l1, s, c)
}

#[test]
fn committed_upper_is_the_layer_tree_and_layers_do_not_change() {
    let (_t, store, l1, s) = root_overlay();
    let l2 = whiteout_layer(&store);

    let c = step(&s, &[l1, l2], &rbuild_layer::WriteOptions::default());
    let tree = s.committed_dir(&[l1, l2, c.diff_id]).unwrap();
    assert!(tree.is_dir(), "the upper directory became the layer's tree");
    assert!(
        std::fs::symlink_metadata(tree.join("dir/sock")).is_err(),
        "a socket stayed in the adopted tree"
    );
    assert!(
        scratch_entries(&store).is_empty(),
        "nothing left in scratch"
    );
    // Excluded targets are gone, and so is `d0`, copied up only to hold one; `bin` stays (ping
    // changed).
    assert!(!tree.join("etc/resolv.conf").exists());
    assert!(!tree.join("bin/hosts").exists());
    assert!(!tree.join("d0").exists());
    assert!(tree.join("bin/ping").exists());
    assert_eq!(
        xattr(&tree.join("dir"), "trusted.overlay.opaque"),
        Some(b"y".to_vec())
    );
    assert_eq!(
        lstat_kind(&tree.join("a")),
        (true, 0),
        "whiteout kept as a 0/0 device"
    );
    let adopted = comparable(rbuild_layer::list_tree(&tree).unwrap());

    // The same step written the old way (an owner override that matches nothing disables the
    // adoption) gives the same layer bytes.
    let forced = rbuild_layer::WriteOptions {
        owner_overrides: vec![rbuild_layer::OwnerOverride {
            rel: PathBuf::from("no/such/path"),
            recursive: false,
            uid: 1,
            gid: 1,
        }],
        ..Default::default()
    };
    let c2 = step(&s, &[l1, l2], &forced);
    assert_eq!(c.diff_id, c2.diff_id, "adoption does not change the layer");
    assert_eq!(c.size, c2.size);
    assert!(scratch_entries(&store).is_empty());

    // Unpacking the layer from its blob gives the same tree as the adopted upper.
    let keep = [l1, l2].into_iter().collect();
    assert!(s.prune(&keep).unwrap().trees >= 1);
    assert!(!tree.exists());
    s.ensure_unpacked(&[l1, l2, c.diff_id]).unwrap();
    assert_eq!(comparable(rbuild_layer::list_tree(&tree).unwrap()), adopted);

    // The adopted tree stacks as a lower: the next step sees the change.
    let next = s.prepare(&[l1, l2, c.diff_id]).unwrap();
    let MountPlan::Overlay { options, .. } = next.mount() else {
        panic!()
    };
    let out = tempfile::tempdir().unwrap();
    run_overlay(
        ROOT_NS,
        &options,
        "test ! -e a && test \"$(ls dir)\" = n && test ! -e etc/resolv.conf",
        out.path(),
    );
    s.remove(next).unwrap();
}

#[test]
fn rootless_style_options_are_never_adopted() {
    let (_t, store, l1, s) = root_overlay();
    let opts = rbuild_layer::WriteOptions {
        id_map: Some(rbuild_layer::IdMap {
            uids: vec![rbuild_layer::IdRange {
                container: 0,
                host: 0,
                size: 65536,
            }],
            gids: vec![rbuild_layer::IdRange {
                container: 0,
                host: 0,
                size: 65536,
            }],
        }),
        ..Default::default()
    };
    let c = step(&s, &[l1], &opts);
    let tree = s.committed_dir(&[l1, c.diff_id]).unwrap();
    assert!(
        !tree.exists(),
        "an id-mapped commit is unpacked, not adopted"
    );
    assert!(scratch_entries(&store).is_empty());
}

/// A tree listing without whiteout times: a whiteout is invisible to every step, its layer entry
/// carries no time of its own, and overlay and the unpacker create it at different moments.
fn comparable(mut entries: Vec<rbuild_layer::TreeEntry>) -> Vec<rbuild_layer::TreeEntry> {
    for e in &mut entries {
        if e.dev == Some((0, 0)) {
            e.mtime = 0;
        }
    }
    entries
}

/// An adopted layer is not written at commit: the store lists it (size, `contains`) from a
/// deferred record and writes its tar from the tree when something first reads it, checked
/// against the diff id; the tree is kept while it is the only copy.
#[test]
fn an_adopted_layer_is_written_from_its_tree_on_first_read() {
    let (_t, store, l1, s) = root_overlay();
    let l2 = whiteout_layer(&store);
    let c = step(&s, &[l1, l2], &rbuild_layer::WriteOptions::default());
    let d = c.diff_id;
    let tree = s.committed_dir(&[l1, l2, d]).unwrap();
    assert!(store.is_deferred_only(&d), "no blob written at commit");
    assert!(!store.list_blobs().unwrap().contains(&d));
    assert!(store.contains(&d));
    assert_eq!(store.blob_size(&d).unwrap(), c.size);

    // The tree is the only copy: prune keeps it whatever it is told (the base layers' trees,
    // whose blobs are stored, go).
    assert_eq!(s.prune(&Default::default()).unwrap().trees, 2);
    assert!(tree.is_dir());

    // A handle that registered no producer says so, naming the layer.
    let bare = rbuild_store::Store::open(store.root()).unwrap();
    let err = bare.open_blob(&d).unwrap_err().to_string();
    assert!(
        err.contains(&d.to_string()) && err.contains("snapshot tree"),
        "{err}"
    );

    // A tree that is gone, or a record of another layer format, makes the layer missing (so a
    // build runs the step again) instead of failing whoever reads it later.
    let aside = tree.with_extension("aside");
    std::fs::rename(&tree, &aside).unwrap();
    assert!(!store.contains(&d));
    std::fs::rename(&aside, &tree).unwrap();
    assert!(store.contains(&d));
    let record = store.get_deferred(&d).unwrap().unwrap();
    let mut other = record.clone();
    other.recipe["format"] = serde_json::json!(0);
    store.set_deferred(&d, &other).unwrap();
    assert!(!store.contains(&d));
    store.set_deferred(&d, &record).unwrap();
    assert!(store.contains(&d));

    // A changed tree never yields wrong bytes: the read fails and stores nothing.
    std::fs::write(tree.join("dir/n"), b"tampered\n").unwrap();
    let err = store.open_blob(&d).unwrap_err().to_string();
    assert!(
        err.contains(&d.to_string()) && err.contains("was changed"),
        "{err}"
    );
    assert!(store.is_deferred_only(&d));
    let mut streamed = Vec::new();
    let err = std::io::Read::read_to_end(
        &mut rbuild_image::layers::open_layer(&store, &d).unwrap(),
        &mut streamed,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&d.to_string()) && err.contains("was changed"),
        "{err}"
    );
    std::fs::write(tree.join("dir/n"), b"n\n").unwrap();
    sh(&format!(
        "touch -h -d @1000 {}",
        tree.join("dir/n").display()
    ));

    // An export streams the layer from the tree, checked at its end, without storing it.
    let mut r = rbuild_image::layers::open_layer(&store, &d).unwrap();
    let mut streamed = Vec::new();
    std::io::Read::read_to_end(&mut r, &mut streamed).unwrap();
    assert_eq!(r.finish().unwrap(), c.size);
    assert_eq!(rbuild_digest::Digest::of(&streamed), d);
    assert!(store.is_deferred_only(&d), "a stream stores nothing");

    // First read writes the blob: the tar hashes to the diff id and the layer reads back with
    // whiteout, opaque marker and capability (and no overlay xattrs).
    let bytes = store.read_blob(&d).unwrap();
    assert_eq!(rbuild_digest::Digest::of(&bytes), d);
    assert!(store.list_blobs().unwrap().contains(&d));
    assert!(!store.is_deferred_only(&d));
    let entries = layer_entries(&store, &d);
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert!(names.contains(&".wh.a"), "{names:?}");
    assert!(names.contains(&"dir/.wh..wh..opq"), "{names:?}");
    assert!(entries
        .iter()
        .all(|e| e.xattrs.iter().all(|(k, _)| !k.contains(".overlay."))));
    assert!(entries
        .iter()
        .any(|e| e.path == "bin/ping" && e.xattrs.iter().any(|(k, _)| k == "security.capability")));

    // Now that the blob exists the tree may go, and unpacking gives it back.
    let keep = [l1, l2].into_iter().collect();
    assert_eq!(s.prune(&keep).unwrap().trees, 1);
    s.ensure_unpacked(&[l1, l2, d]).unwrap();
    assert!(tree.is_dir());
}

/// gc drops the record of a layer nothing references, after which prune may delete its tree; and
/// when a tree for a layer exists that this commit did not publish (and there is no blob),
/// the commit writes the blob instead of trusting a tree it did not make.
#[test]
fn unreferenced_deferred_layers_go_and_foreign_trees_are_not_trusted() {
    let (_t, store, l1, s, c) = adopted_step();
    assert!(store.is_deferred_only(&c.diff_id));
    let stats = store.gc().unwrap();
    assert_eq!(stats.deferred_removed, 1);
    assert!(!store.contains(&c.diff_id));
    let tree = s.committed_dir(&[l1, c.diff_id]).unwrap();
    assert!(tree.is_dir(), "gc leaves trees to the snapshotter");

    // The tree is now foreign to the next commit of the same layer: it writes the blob.
    let again = step(&s, &[l1], &rbuild_layer::WriteOptions::default());
    assert_eq!(again.diff_id, c.diff_id);
    assert!(store.list_blobs().unwrap().contains(&c.diff_id));
    assert!(!store.is_deferred_only(&c.diff_id));

    let pruned = s.prune(&[l1].into_iter().collect()).unwrap();
    assert_eq!(pruned.trees, 1);
    assert!(pruned.bytes > 0);
    assert!(!tree.exists());
}

/// A deferred layer whose tree was damaged is healed by committing the same layer again (what a
/// `--no-cache` rebuild does): the commit does not trust the existing tree and writes the blob.
#[test]
fn committing_a_layer_again_heals_a_damaged_tree() {
    let (_t, store, l1, s, c) = adopted_step();
    let tree = s.committed_dir(&[l1, c.diff_id]).unwrap();
    std::fs::write(tree.join("etc/keep"), b"damaged").unwrap();
    assert!(store.open_blob(&c.diff_id).is_err());
    let again = step(&s, &[l1], &rbuild_layer::WriteOptions::default());
    assert_eq!(again.diff_id, c.diff_id);
    assert!(store.is_written(&c.diff_id));
    let bytes = store.read_blob(&c.diff_id).unwrap();
    assert_eq!(rbuild_digest::Digest::of(&bytes), c.diff_id);
}

/// The marker of a tree published without a sync, as `unsynced.rs` lays it out.
fn marker(store: &rbuild_store::Store, d: &rbuild_digest::Digest) -> PathBuf {
    store
        .root()
        .join("snapshots/unsynced/overlay")
        .join(d.hex())
}

fn this_boot() -> Vec<u8> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .as_bytes()
        .to_vec()
}

fn inode(p: &std::path::Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap())
}

/// Trees are published without a sync, next to a marker naming this boot: trusted as they are
/// within it. After a reboot (a marker naming another boot) an adopted tree that still hashes to
/// its diff id is kept and unmarked, a damaged one is dropped so its layer is missing (a build
/// runs the step again, which heals it), and an unpacked one is unpacked again from its blob.
#[test]
fn trees_from_an_earlier_boot_are_checked_before_use() {
    let (_t, store, l1, s, c) = adopted_step();
    let d = c.diff_id;
    let tree = s.committed_dir(&[l1, d]).unwrap();
    let base_tree = s.committed_dir(&[l1]).unwrap();
    assert!(store.is_deferred_only(&d));
    assert_eq!(std::fs::read(marker(&store, &d)).unwrap(), this_boot());
    assert_eq!(std::fs::read(marker(&store, &l1)).unwrap(), this_boot());

    // This boot: used as it is, even if (as a crash could leave it) a file lost its data.
    let ino = inode(&tree);
    std::fs::write(tree.join("etc/keep"), b"").unwrap();
    s.ensure_unpacked(&[l1, d]).unwrap();
    assert!(store.contains(&d));
    assert_eq!(inode(&tree), ino);
    std::fs::write(tree.join("etc/keep"), b"k\n").unwrap();
    sh(&format!(
        "touch -h -d @1000 {}",
        tree.join("etc/keep").display()
    ));

    // After a reboot, an intact adopted tree is read back, kept and unmarked.
    std::fs::write(marker(&store, &d), b"an-earlier-boot").unwrap();
    assert!(store.contains(&d));
    assert_eq!(inode(&tree), ino);
    assert!(!marker(&store, &d).exists(), "a checked tree is durable");
    assert!(store.is_deferred_only(&d));

    // A damaged one is dropped: the layer is missing, so a build runs the step again.
    std::fs::write(marker(&store, &d), b"an-earlier-boot").unwrap();
    std::fs::write(tree.join("etc/keep"), b"").unwrap();
    assert!(!store.contains(&d));
    assert!(!tree.exists());
    assert!(!marker(&store, &d).exists());
    assert!(!s.has_layer(&d));
    let err = s.ensure_unpacked(&[l1, d]).unwrap_err().to_string();
    assert!(err.contains(&d.hex()), "{err}");
    let again = step(&s, &[l1], &rbuild_layer::WriteOptions::default());
    assert_eq!(again.diff_id, d);
    assert!(store.contains(&d) && tree.is_dir());
    let bytes = store.read_blob(&d).unwrap();
    assert_eq!(rbuild_digest::Digest::of(&bytes), d);

    // An unpacked tree from an earlier boot is unpacked again from the blob the store holds.
    std::fs::write(marker(&store, &l1), b"an-earlier-boot").unwrap();
    let damaged = std::fs::read_dir(&base_tree)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("the base layer has a file at its root");
    let want = std::fs::read(&damaged).unwrap();
    std::fs::write(&damaged, b"").unwrap();
    s.ensure_unpacked(&[l1, d]).unwrap();
    assert_eq!(std::fs::read(&damaged).unwrap(), want);
    assert_eq!(std::fs::read(marker(&store, &l1)).unwrap(), this_boot());
    assert!(
        scratch_entries(&store).is_empty(),
        "nothing left in scratch"
    );

    // Prune takes the markers of the trees it deletes, and stray ones.
    std::fs::write(
        store.root().join("snapshots/unsynced/overlay/.leftover"),
        b"x",
    )
    .unwrap();
    s.prune(&[d].into_iter().collect()).unwrap();
    assert!(!base_tree.exists());
    let left: Vec<_> = std::fs::read_dir(store.root().join("snapshots/unsynced/overlay"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty() || left == [std::ffi::OsString::from(d.hex())],
        "{left:?}"
    );
}
