//! Functional rules of the store: blobs, digest checks, refs with hostile names, variants, gc,
//! locks, scratch dirs, default root.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rbuild_digest::Digest;
use rbuild_store::{LockMode, RefTarget, Store, StoreError, Variant};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn target(digest: Digest) -> RefTarget {
    RefTarget {
        digest,
        media_type: MANIFEST.into(),
        created: None,
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn open_creates_documented_layout() {
    let (_d, store) = new_store();
    for p in ["blobs/sha256", "ingest", "refs", "meta/variants", "tmp"] {
        assert!(store.root().join(p).is_dir(), "{p} missing");
    }
    assert!(store.root().join("lock").is_file());
    // Reopening an existing store is fine.
    Store::open(store.root()).unwrap();
}

#[test]
fn blob_roundtrip_and_idempotent_put() {
    let (_d, store) = new_store();
    let data = b"hello blob".repeat(10_000);
    let d = store.put_bytes(&data).unwrap();
    assert_eq!(d, Digest::of(&data));
    assert!(store.contains(&d));
    assert_eq!(store.read_blob(&d).unwrap(), data);
    assert_eq!(store.blob_size(&d).unwrap(), data.len() as u64);
    assert_eq!(
        store.blob_path(&d),
        store.root().join("blobs/sha256").join(d.hex())
    );
    // Read-only on disk.
    let mode = fs::metadata(store.blob_path(&d)).unwrap().permissions();
    assert!(mode.readonly());
    // Second put is a no-op returning the same digest.
    assert_eq!(store.put_bytes(&data).unwrap(), d);
    assert_eq!(store.list_blobs().unwrap(), vec![d]);
    assert!(entries(&store.root().join("ingest")).is_empty());
}

#[test]
fn ingest_streams_and_drop_discards() {
    let (_d, store) = new_store();
    let mut ing = store.ingest().unwrap();
    for i in 0..100u32 {
        ing.write_all(&i.to_le_bytes()).unwrap();
    }
    assert_eq!(ing.written(), 400);
    assert_eq!(entries(&store.root().join("ingest")).len(), 1);
    drop(ing);
    assert!(entries(&store.root().join("ingest")).is_empty());
    assert!(store.list_blobs().unwrap().is_empty());

    let mut ing = store.ingest().unwrap();
    ing.write_all(b"abc").unwrap();
    let (d, n) = ing.commit(Some(&Digest::of(b"abc"))).unwrap();
    assert_eq!((d, n), (Digest::of(b"abc"), 3));
    assert!(entries(&store.root().join("ingest")).is_empty());
}

#[test]
fn digest_mismatch_names_both_and_stores_nothing() {
    let (_d, store) = new_store();
    let wrong = Digest::of(b"something else");
    let mut ing = store.ingest().unwrap();
    ing.write_all(b"actual content").unwrap();
    let err = ing.commit(Some(&wrong)).unwrap_err();
    match &err {
        StoreError::DigestMismatch {
            expected,
            actual,
            size,
        } => {
            assert_eq!(*expected, wrong);
            assert_eq!(*actual, Digest::of(b"actual content"));
            assert_eq!(*size, 14);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong.to_string())
            && msg.contains(&Digest::of(b"actual content").to_string())
    );
    assert!(store.list_blobs().unwrap().is_empty());
    assert!(entries(&store.root().join("ingest")).is_empty());
}

#[test]
fn put_file_copies_and_verifies() {
    let (dir, store) = new_store();
    let src = dir.path().join("layer.tar");
    fs::write(&src, b"layer bytes").unwrap();
    let (d, n) = store.put_file(&src, None).unwrap();
    assert_eq!((d, n), (Digest::of(b"layer bytes"), 11));
    assert!(src.exists(), "source must be left alone");
    // Expected digest already present: no read needed, same answer.
    assert_eq!(store.put_file(&src, Some(&d)).unwrap(), (d, 11));
    // Wrong expected digest.
    let other = dir.path().join("other");
    fs::write(&other, b"other").unwrap();
    assert!(matches!(
        store.put_file(&other, Some(&Digest::of(b"nope"))),
        Err(StoreError::DigestMismatch { .. })
    ));
    // Missing source names the path.
    let err = store
        .put_file(&dir.path().join("missing"), None)
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn missing_blob_errors_name_the_digest() {
    let (_d, store) = new_store();
    let d = Digest::of(b"absent");
    assert!(!store.contains(&d));
    for err in [
        store.open_blob(&d).map(|_| ()).unwrap_err(),
        store.read_blob(&d).map(|_| ()).unwrap_err(),
        store.blob_size(&d).map(|_| ()).unwrap_err(),
        store.delete_blob(&d).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::BlobNotFound { digest, .. } if digest == d));
        assert!(err.to_string().contains(&d.to_string()));
    }
}

#[test]
fn delete_and_list_blobs_ignore_foreign_files() {
    let (_d, store) = new_store();
    let a = store.put_bytes(b"a").unwrap();
    let b = store.put_bytes(b"b").unwrap();
    fs::write(store.root().join("blobs/sha256/not-a-digest"), b"x").unwrap();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(store.list_blobs().unwrap(), want);
    store.delete_blob(&a).unwrap();
    assert_eq!(store.list_blobs().unwrap(), vec![b]);
}

#[test]
fn refs_set_get_list_delete() {
    let (_d, store) = new_store();
    let d1 = store.put_bytes(b"m1").unwrap();
    let d2 = store.put_bytes(b"m2").unwrap();
    let name = "docker.io/library/detection:1.0";
    assert_eq!(store.get_ref(name).unwrap(), None);
    store.set_ref(name, &target(d1)).unwrap();
    let t2 = RefTarget {
        digest: d2,
        media_type: INDEX.into(),
        created: Some("2026-11-26T00:00:00Z".into()),
    };
    store.set_ref(name, &t2).unwrap();
    assert_eq!(store.get_ref(name).unwrap(), Some(t2.clone()));
    store.set_ref("a:b", &target(d1)).unwrap();
    assert_eq!(
        store.list_refs().unwrap(),
        vec![("a:b".to_string(), target(d1)), (name.to_string(), t2)]
    );
    assert!(store.delete_ref(name).unwrap());
    assert!(!store.delete_ref(name).unwrap());
    assert_eq!(store.get_ref(name).unwrap(), None);
    assert_eq!(store.list_refs().unwrap().len(), 1);
}

#[test]
fn hostile_ref_names_stay_inside_refs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let d = store.put_bytes(b"manifest").unwrap();
    let long = "r".repeat(1000);
    let names = [
        "..",
        ".",
        "../../../../etc/passwd",
        "/etc/passwd",
        "a/b/../../../c",
        "name:with:colons",
        "a/b",
        "a%2Fb",
        "%long-abc",
        "back\\slash",
        "new\nline",
        "ünïcødé/tag:1",
        ".hidden",
        long.as_str(),
    ];
    let outside_before = entries(dir.path());
    for name in names {
        store.set_ref(name, &target(d)).unwrap();
    }
    assert_eq!(
        entries(dir.path()),
        outside_before,
        "something escaped the store"
    );
    // Every ref is exactly one regular file directly in refs/.
    let files = entries(&root.join("refs"));
    assert_eq!(files.len(), names.len());
    for f in &files {
        let m = fs::symlink_metadata(f).unwrap();
        assert!(m.is_file(), "{f:?}");
        assert!(f.file_name().unwrap().len() <= 255);
        assert!(!f.file_name().unwrap().to_string_lossy().starts_with('.'));
    }
    for name in names {
        assert_eq!(store.get_ref(name).unwrap(), Some(target(d)), "{name:?}");
    }
    let listed: Vec<String> = store
        .list_refs()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    for name in names {
        assert!(store.delete_ref(name).unwrap(), "{name:?}");
    }
    assert!(entries(&root.join("refs")).is_empty());
}

#[test]
fn invalid_names_are_rejected() {
    let (_d, store) = new_store();
    let d = Digest::of(b"x");
    let too_long = "x".repeat(5000);
    for bad in ["", "nul\0byte", too_long.as_str()] {
        let err = store.set_ref(bad, &target(d)).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::InvalidName {
                    kind: "reference",
                    ..
                }
            ),
            "{bad:?}"
        );
        assert!(store.get_ref(bad).is_err());
        let v = Variant {
            digest: d,
            size: 1,
            media_type: "x".into(),
        };
        assert!(matches!(
            store.set_variant(&d, bad, &v),
            Err(StoreError::InvalidName {
                kind: "compression",
                ..
            })
        ));
    }
}

#[test]
fn corrupt_ref_record_is_reported_with_path() {
    let (_d, store) = new_store();
    fs::write(store.root().join("refs/broken"), b"{not json").unwrap();
    let err = store.list_refs().unwrap_err();
    assert!(
        matches!(&err, StoreError::CorruptRecord { path, .. } if path.ends_with("refs/broken"))
    );
    // gc refuses to delete anything when it cannot know the roots.
    let keep = store.put_bytes(b"maybe referenced").unwrap();
    assert!(store.gc().is_err());
    assert!(store.contains(&keep));
}

#[test]
fn variants_roundtrip() {
    let (_d, store) = new_store();
    let u = store.put_bytes(b"uncompressed").unwrap();
    let c = store.put_bytes(b"gz").unwrap();
    let v = Variant {
        digest: c,
        size: 2,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
    };
    assert_eq!(store.get_variant(&u, "gzip").unwrap(), None);
    store.set_variant(&u, "gzip", &v).unwrap();
    assert_eq!(store.get_variant(&u, "gzip").unwrap(), Some(v.clone()));
    assert_eq!(store.get_variant(&u, "zstd").unwrap(), None);
    store.set_variant(&u, "../zstd", &v).unwrap();
    assert_eq!(
        store.list_variants(&u).unwrap(),
        vec![("../zstd".to_string(), v.clone()), ("gzip".to_string(), v)]
    );
}

fn manifest(config: Digest, layers: &[Digest]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|d| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": 1}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 1},
        "layers": layers,
    }))
    .unwrap()
}

#[test]
fn gc_follows_index_manifest_config_layers_and_variants() {
    let (_d, store) = new_store();
    let config = store.put_bytes(br#"{"architecture":"amd64"}"#).unwrap();
    let l1 = store.put_bytes(b"layer one (uncompressed tar)").unwrap();
    let l2 = store.put_bytes(b"layer two").unwrap();
    let l1gz = store.put_bytes(b"layer one gzipped").unwrap();
    store
        .set_variant(
            &l1,
            "gzip",
            &Variant {
                digest: l1gz,
                size: 17,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            },
        )
        .unwrap();
    let m = store.put_bytes(&manifest(config, &[l1, l2])).unwrap();
    let index = store
        .put_bytes(
            &serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "manifests": [{"mediaType": MANIFEST, "digest": m.to_string(), "size": 1},
                              {"mediaType": MANIFEST, "digest": "sha256:not-valid", "size": 1}],
            }))
            .unwrap(),
        )
        .unwrap();
    // Garbage: an orphan manifest sharing l2, its own orphan layer, a non-JSON blob, a JSON blob
    // that merely looks like it references things through other fields.
    let orphan_layer = store.put_bytes(b"orphan layer").unwrap();
    let orphan_manifest = store
        .put_bytes(&manifest(config, &[l2, orphan_layer]))
        .unwrap();
    let binary = store.put_bytes(&[0xff, 0x00, 0x7b]).unwrap();
    let decoy_target = store.put_bytes(b"decoy target").unwrap();
    let decoy = store
        .put_bytes(
            &serde_json::to_vec(
                &serde_json::json!({"subjectish": {"digest": decoy_target.to_string()}}),
            )
            .unwrap(),
        )
        .unwrap();
    store
        .set_ref(
            "example.com/app:1",
            &RefTarget {
                digest: index,
                media_type: INDEX.into(),
                created: None,
            },
        )
        .unwrap();

    let stats = store.gc().unwrap();
    let mut kept = vec![config, l1, l2, l1gz, m, index];
    kept.sort();
    assert_eq!(store.list_blobs().unwrap(), kept);
    for gone in [orphan_layer, orphan_manifest, binary, decoy, decoy_target] {
        assert!(!store.contains(&gone));
    }
    assert_eq!(stats.blobs_removed, 5);
    assert_eq!(stats.blobs_kept, 6);
    assert!(stats.bytes_removed > 0);
    assert_eq!(stats.variants_removed, 0);
    assert!(store.get_variant(&l1, "gzip").unwrap().is_some());

    // Second run is stable.
    assert_eq!(store.gc().unwrap().blobs_removed, 0);

    // Dropping the ref frees everything, and the variant record goes with its blob.
    assert!(store.delete_ref("example.com/app:1").unwrap());
    let stats = store.gc().unwrap();
    assert_eq!(stats.blobs_removed, 6);
    assert_eq!(stats.variants_removed, 1);
    assert!(store.list_blobs().unwrap().is_empty());
    assert_eq!(store.get_variant(&l1, "gzip").unwrap(), None);
    assert!(entries(&store.root().join("meta/variants")).is_empty());
}

#[test]
fn gc_keeps_directly_referenced_layer_and_tolerates_dangling_refs() {
    let (_d, store) = new_store();
    let blob = store.put_bytes(b"plain").unwrap();
    store.set_ref("direct", &target(blob)).unwrap();
    store
        .set_ref("dangling", &target(Digest::of(b"never stored")))
        .unwrap();
    let stats = store.gc().unwrap();
    assert_eq!(stats.blobs_removed, 0);
    assert!(store.contains(&blob));
}

#[test]
fn exclusive_lock_excludes_shared() {
    let (_d, store) = new_store();
    let shared = store.lock_shared().unwrap();
    assert_eq!(shared.mode(), LockMode::Shared);
    let shared2 = store.lock_shared().unwrap();
    assert!(store.try_lock_exclusive().unwrap().is_none());
    drop(shared);
    assert!(store.try_lock_exclusive().unwrap().is_none());
    drop(shared2);
    let ex = store.try_lock_exclusive().unwrap().expect("free now");
    assert_eq!(ex.mode(), LockMode::Exclusive);
    // A second handle on the same store sees the exclusive lock too.
    let other = Store::open(store.root()).unwrap();
    assert!(other.try_lock_exclusive().unwrap().is_none());
    drop(ex);
    assert!(other.lock_exclusive().is_ok());
}

#[test]
fn temp_dir_lives_in_store_and_is_removed_on_drop() {
    let (_d, store) = new_store();
    let scratch = store.temp_dir("rootfs/../../x y").unwrap();
    let path = scratch.path().to_path_buf();
    assert_eq!(path.parent().unwrap(), store.root().join("tmp"));
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("{}-rootfsxy-", std::process::id())),
        "{name}"
    );
    fs::create_dir_all(path.join("a/b")).unwrap();
    fs::write(path.join("a/b/f"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc", path.join("a/link")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path.join("a/b"), fs::Permissions::from_mode(0o555)).unwrap();
    }
    // A live scratch dir survives a reopen (its owner holds the lock).
    Store::open(store.root()).unwrap();
    assert!(path.is_dir());
    drop(scratch);
    assert!(!path.exists());
    assert!(
        Path::new("/etc").is_dir(),
        "symlink target must be untouched"
    );
}

#[test]
fn default_root_rules() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    type Env = &'static [(&'static str, &'static str)];
    let cases: &[(Env, u32, &str)] = &[
        (
            &[
                ("RBUILD_ROOT", "/r"),
                ("XDG_DATA_HOME", "/x"),
                ("HOME", "/h"),
            ],
            1000,
            "/r",
        ),
        (
            &[("RBUILD_ROOT", ""), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")],
            1000,
            "/x/rbuild",
        ),
        (&[("XDG_DATA_HOME", "/x")], 0, "/x/rbuild"),
        (
            &[("XDG_DATA_HOME", "relative"), ("HOME", "/h")],
            1000,
            "/h/.local/share/rbuild",
        ),
        (&[("HOME", "/root")], 0, "/var/lib/rbuild"),
        (&[("HOME", "/home/u")], 1000, "/home/u/.local/share/rbuild"),
        (&[], 1000, "/tmp/rbuild-1000"),
    ];
    for (pairs, uid, want) in cases {
        assert_eq!(
            Store::default_root_from(env(pairs), *uid),
            PathBuf::from(want),
            "{pairs:?} uid {uid}"
        );
    }
}

#[test]
fn open_sweeps_only_dead_or_old_unlocked_temp_files() {
    use std::time::{Duration, SystemTime};
    let (_d, store) = new_store();
    let ingest = store.root().join("ingest");
    let me = std::process::id();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    // (name, age it gets, whether the next open keeps it)
    let cases: &[(String, Option<SystemTime>, bool)] = &[
        // Owner alive (us), fresh, lock free: a writer between create and flock; keep.
        (format!("{me}-fresh"), None, true),
        // Owner alive but ancient: leaked or pid reused; remove.
        (format!("{me}-ancient"), Some(two_hours_ago), false),
        // Owner pid cannot exist (above pid_max); remove.
        ("2147483646-dead".to_string(), None, false),
        // Not our naming at all; remove.
        ("garbage".to_string(), None, false),
    ];
    for (name, mtime, _) in cases {
        let f = fs::File::create(ingest.join(name)).unwrap();
        if let Some(t) = mtime {
            f.set_modified(*t).unwrap();
        }
    }
    // A live ingest of this process is never touched, however old its file looks.
    let mut live = store.ingest().unwrap();
    live.write_all(b"in flight").unwrap();
    let live_files: Vec<PathBuf> = entries(&ingest)
        .into_iter()
        .filter(|p| !cases.iter().any(|(n, _, _)| p.ends_with(n)))
        .collect();
    assert_eq!(live_files.len(), 1);
    fs::File::options()
        .write(true)
        .open(&live_files[0])
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    Store::open(store.root()).unwrap();
    for (name, _, keep) in cases {
        assert_eq!(ingest.join(name).exists(), *keep, "{name}");
    }
    assert!(live_files[0].exists());
    let (d, _) = live.commit(None).unwrap();
    assert_eq!(store.read_blob(&d).unwrap(), b"in flight");
}

#[test]
fn planted_symlink_is_not_a_blob() {
    let (dir, store) = new_store();
    let secret = dir.path().join("secret");
    fs::write(&secret, b"secret").unwrap();
    let d = Digest::of(b"secret");
    std::os::unix::fs::symlink(&secret, store.blob_path(&d)).unwrap();
    assert!(!store.contains(&d));
    assert!(store.open_blob(&d).is_err());
    assert!(store.read_blob(&d).is_err());
}

#[test]
fn verify_blob_detects_damage() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, store) = new_store();
    let d = store.put_bytes(b"intact content").unwrap();
    assert!(store.verify_blob(&d).unwrap());
    let path = store.blob_path(&d);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, b"damaged").unwrap();
    assert!(!store.verify_blob(&d).unwrap());
    assert!(matches!(
        store.verify_blob(&Digest::of(b"absent")),
        Err(StoreError::BlobNotFound { .. })
    ));
}
