//! Layers stored only as a compressed variant (what a pull leaves): unpacked by decoding the
//! variant and verifying it against the diff id, and refused without a trace when it lies.

mod common;

use common::*;
use rbuild_digest::Digest;
use rbuild_snapshot::{Kind, Snapshotter};
use rbuild_store::{Store, Variant};

fn root_opts() -> rbuild_layer::ApplyOptions {
    rbuild_layer::ApplyOptions {
        same_owner: is_root(),
        id_map: None,
    }
}

/// Stores the gzip of `content`'s blob as the variant of `diff_id` and deletes `diff_id`'s
/// uncompressed blob, as a pull does; returns the variant digest.
fn make_lazy(store: &Store, diff_id: &Digest, content: &Digest) -> Digest {
    let src = store.open_blob(content).unwrap();
    let ingest = store.ingest().unwrap();
    let ingest = rbuild_layer::compress::compress(
        src,
        ingest,
        rbuild_layer::compress::Compression::Gzip,
        None,
    )
    .unwrap();
    let (digest, size) = ingest.commit(None).unwrap();
    let v = Variant {
        digest,
        size,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
    };
    store.set_variant(diff_id, "gzip", &v).unwrap();
    if store.contains(diff_id) {
        store.delete_blob(diff_id).unwrap();
    }
    digest
}

fn kinds(store: &Store) -> Vec<Kind> {
    let mut k = vec![Kind::Copy];
    if let Ok(s) = Snapshotter::new(store, rbuild_snapshot::Mode::Overlay) {
        k.push(s.kind());
    }
    k
}

fn find_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    walkdir(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect()
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

#[test]
fn variant_only_layers_unpack_to_the_same_tree() {
    assert!(
        is_root(),
        "this test needs root, as the suite runs it (scripts/test.sh); it is not skipped"
    );
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    let reference = applied(&store, &[l1, l2], &root_opts());
    let want = rbuild_layer::list_tree(reference.path()).unwrap();
    make_lazy(&store, &l1, &l1);
    make_lazy(&store, &l2, &l2);
    assert!(!store.contains(&l1) && !store.contains(&l2));
    for kind in kinds(&store) {
        let s = Snapshotter::with_kind(&store, kind).unwrap();
        let active = s.prepare(&[l1, l2]).unwrap();
        if let rbuild_snapshot::MountPlan::Dir(d) = active.mount() {
            assert_eq!(rbuild_layer::list_tree(&d).unwrap(), want, "{kind:?}");
        }
        s.remove(active).unwrap();
        // Unpacking read the variants; it did not store the uncompressed blobs.
        assert!(!store.contains(&l1), "{kind:?}");
    }
}

#[test]
fn tampered_variant_is_refused_naming_both_digests_and_leaves_no_tree() {
    let (_t, store) = store();
    let (l1, l2) = (base_layer(&store), whiteout_layer(&store));
    // The variant recorded for l1 is really the gzip of l2: valid gzip, valid tar, wrong content.
    let variant = make_lazy(&store, &l1, &l2);
    for kind in kinds(&store) {
        let s = Snapshotter::with_kind(&store, kind).unwrap();
        let err = s.ensure_unpacked(&[l1]).unwrap_err().to_string();
        assert!(err.contains(&l1.to_string()), "{kind:?}: {err}");
        assert!(err.contains(&variant.to_string()), "{kind:?}: {err}");
        assert!(err.contains(&l2.to_string()), "{kind:?}: {err}");
        assert!(
            !s.committed_dir(&[l1]).is_some_and(|d| d.exists()),
            "{kind:?}"
        );
        // l2's file never shows up anywhere in the store, not even half-unpacked.
        assert_eq!(
            find_named(store.root(), "l2file"),
            Vec::<std::path::PathBuf>::new()
        );
    }
    assert!(scratch_entries(&store).is_empty());
}
