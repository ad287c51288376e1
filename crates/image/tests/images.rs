//! The local image database: commit, tag, resolve, list, history, remove, prune.

mod common;

use common::*;
use rbuild_image::{ImageError, Reference};

#[test]
fn commit_is_deterministic_and_resolvable() {
    let (_d, images) = setup();
    let a = sample_image(&images, "a");
    let again = sample_image(&images, "a");
    assert_eq!(a.id, again.id);
    assert_eq!(a.manifest_digest, again.manifest_digest);
    assert_eq!(a.config.rootfs.diff_ids.len(), 2);
    assert_eq!(
        a.manifest.layers[0].media_type,
        "application/vnd.oci.image.layer.v1.tar"
    );
    // image id is the digest of the stored config bytes
    let stored = images.store().read_blob(&a.id).unwrap();
    assert_eq!(rbuild_digest::Digest::of(&stored), a.id);

    images
        .tag(&a, &Reference::parse("detection:1.0").unwrap())
        .unwrap();
    for name in [
        "detection:1.0",
        "docker.io/library/detection:1.0",
        &a.id.to_string(),
        &a.id.hex(),
        &a.id.hex()[..4],
        &a.id.short(),
        &format!("detection@{}", a.manifest_digest),
    ] {
        assert_eq!(images.resolve(name).unwrap().id, a.id, "{name}");
    }
    for missing in ["detection", "detection:2.0", "abc", "zzzz", "sha256:0000"] {
        match images.resolve(missing) {
            Err(ImageError::NotFound(s)) => assert_eq!(s, missing),
            other => panic!("{missing}: {other:?}"),
        }
    }
}

#[test]
fn list_shows_tags_and_dangling() {
    let (_d, images) = setup();
    let a = sample_image(&images, "a");
    let b = sample_image(&images, "bb");
    images
        .tag(&a, &Reference::parse("detection:1.0").unwrap())
        .unwrap();
    images
        .tag(&a, &Reference::parse("localhost:5000/x/y:t").unwrap())
        .unwrap();
    let rows = images.list().unwrap();
    let mut view: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.repository.clone(), r.tag.clone(), r.id.short()))
        .collect();
    view.sort();
    let mut want = vec![
        ("<none>".to_string(), "<none>".to_string(), b.id.short()),
        ("detection".into(), "1.0".into(), a.id.short()),
        ("localhost:5000/x/y".into(), "t".into(), a.id.short()),
    ];
    want.sort();
    assert_eq!(view, want);
    assert!(rows.iter().all(|r| r.size > 0));
    // newest first
    assert_eq!(rows[0].id, b.id);
}

#[test]
fn history_matches_layers_newest_first() {
    let (_d, images) = setup();
    let a = sample_image(&images, "a");
    let rows = images.history(&a.id.hex()).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].id, a.id.short());
    assert_eq!(rows[0].image_id, Some(a.id));
    assert!(rows[0].created.ends_with(" ago"), "{}", rows[0].created);
    assert_eq!(rows[0].created_by, "COPY hello a");
    assert_eq!(rows[0].size, a.layers[1].size);
    assert_eq!(rows[1].size, 0);
    assert!(rows[1].empty_layer);
    assert_eq!(rows[1].id, "<missing>");
    assert_eq!(rows[2].size, a.layers[0].size);
}

#[test]
fn remove_untags_then_deletes() {
    let (_d, images) = setup();
    let a = sample_image(&images, "a");
    images.tag(&a, &Reference::parse("one:1").unwrap()).unwrap();
    images.tag(&a, &Reference::parse("two:2").unwrap()).unwrap();

    // by id with tags from two repositories: refused unless forced
    match images.remove(&a.id.short(), false) {
        Err(ImageError::Conflict { tags, .. }) => assert_eq!(tags.len(), 2),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        images.remove("one:1", false).unwrap(),
        vec!["Untagged: one:1".to_string()]
    );
    assert_eq!(images.resolve("two:2").unwrap().id, a.id);
    assert_eq!(
        images.remove("two:2", false).unwrap(),
        vec!["Untagged: two:2".to_string(), format!("Deleted: {}", a.id)]
    );
    assert!(matches!(
        images.resolve(&a.id.hex()),
        Err(ImageError::NotFound(_))
    ));
    assert!(images.list().unwrap().is_empty());

    // forced removal by id removes every tag
    let b = sample_image(&images, "b");
    images.tag(&b, &Reference::parse("x:1").unwrap()).unwrap();
    images.tag(&b, &Reference::parse("y:1").unwrap()).unwrap();
    let out = images.remove(&b.id.to_string(), true).unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(images.list().unwrap().is_empty());
}

#[test]
fn ambiguous_prefix_is_an_error() {
    let (_d, images) = setup();
    // find (in memory, deterministically) two configs whose ids share the first 4 hex digits
    let mut seen: std::collections::HashMap<String, rbuild_image::config::ImageConfig> =
        Default::default();
    let mut pair = None;
    for i in 0..20_000 {
        let mut c = rbuild_image::config::ImageConfig::empty("linux", "amd64", None);
        c.set_label("n", &i.to_string());
        let id = rbuild_digest::Digest::of(&c.to_canonical_json());
        let prefix = id.hex()[..4].to_string();
        if let Some(prev) = seen.insert(prefix.clone(), c.clone()) {
            pair = Some((prev, c, prefix));
            break;
        }
    }
    let (c1, c2, prefix) = pair.expect("birthday bound guarantees a 4-hex collision");
    let a = images.commit(&c1, &[]).unwrap();
    let b = images.commit(&c2, &[]).unwrap();
    assert!(a.id.hex().starts_with(&prefix) && b.id.hex().starts_with(&prefix));
    match images.resolve(&prefix) {
        Err(ImageError::Ambiguous { input, matches }) => {
            assert_eq!(input, prefix);
            assert_eq!(matches.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        images.remove(&prefix, true),
        Err(ImageError::Ambiguous { .. })
    ));
    // below docker's 4-digit minimum a prefix is "not found", never a guess
    assert!(matches!(
        images.resolve(&prefix[..3]),
        Err(ImageError::NotFound(_))
    ));
    // the full ids are never ambiguous
    assert_eq!(images.resolve(&a.id.hex()).unwrap().id, a.id);
    assert_eq!(images.resolve(&b.id.to_string()).unwrap().id, b.id);
}

#[test]
fn prune_forgets_dangling_and_collects_blobs() {
    let (_d, images) = setup();
    let a = sample_image(&images, "a");
    let b = sample_image(&images, "b");
    images
        .tag(&a, &Reference::parse("keep:1").unwrap())
        .unwrap();
    let stats = images.prune().unwrap();
    assert_eq!(stats.images_deleted, vec![b.id]);
    assert!(stats.bytes_freed > 0);
    assert!(stats.gc.blobs_removed >= 3, "{:?}", stats.gc); // config, manifest, its own layer
    assert!(!images.store().contains(&b.id));
    assert!(images.store().contains(&a.id));
    for l in &a.layers {
        assert!(images.store().contains(&l.diff_id));
    }
    assert_eq!(images.resolve("keep:1").unwrap().id, a.id);
}

#[test]
fn commit_refuses_missing_layer_blob() {
    let (_d, images) = setup();
    let missing = rbuild_digest::Digest::of(b"not stored");
    let err = images
        .commit(
            &Default::default(),
            &[rbuild_image::LayerDesc {
                diff_id: missing,
                size: 1,
            }],
        )
        .unwrap_err();
    assert!(
        matches!(err, ImageError::MissingBlob(d) if d == missing),
        "{err}"
    );
}

#[test]
fn inspect_looks_like_docker() {
    let (_d, images) = setup();
    let a = sample_image(&images, "a");
    images
        .tag(&a, &Reference::parse("detection:1.0").unwrap())
        .unwrap();
    let img = images.resolve("detection:1.0").unwrap();
    let i = images.inspect(&img).unwrap();
    let v = serde_json::to_value(&i).unwrap();
    assert_eq!(v["Id"], a.id.to_string());
    assert_eq!(v["RepoTags"][0], "detection:1.0");
    assert_eq!(v["Config"]["Labels"]["seed"], "a");
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(v["Descriptor"]["digest"], a.manifest_digest.to_string());
    let (manifest, config) = images.raw_json(&img).unwrap();
    assert_eq!(rbuild_digest::Digest::of(&config), a.id);
    assert_eq!(rbuild_digest::Digest::of(&manifest), a.manifest_digest);
}
