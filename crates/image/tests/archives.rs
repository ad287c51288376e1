//! Export and import through real archive formats, checked with skopeo and umoci where they read
//! what rbuild writes, and round-tripped through `load`.

mod common;

use std::path::Path;

use common::*;
use rbuild_image::export::{self, ExportCompression};
use rbuild_image::{import, ImageError, Images, LocalImage, Reference};

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn assert_same_image(loaded: &LocalImage, original: &LocalImage) {
    assert_eq!(
        loaded.id, original.id,
        "image id (config digest) must survive the trip"
    );
    assert_eq!(loaded.config, original.config);
    let ids: Vec<_> = loaded.layers.iter().map(|l| l.diff_id).collect();
    assert_eq!(ids, original.config.rootfs.diff_ids);
}

fn load_into_fresh(path: &Path) -> (tempfile::TempDir, Images, Vec<import::Loaded>) {
    let (d, images) = setup();
    let loaded =
        import::load(&images, path).unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    (d, images, loaded)
}

#[test]
fn oci_layout_dir_is_read_by_skopeo_and_umoci_and_loads_back() {
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let layout = d.path().join("layout");
    export::oci_layout(
        &images,
        &[(a.clone(), vec![r("detection:1.0")])],
        &layout,
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    assert!(layout.join("oci-layout").is_file());

    let inspect = run(
        "skopeo",
        &["inspect", &format!("oci:{}:1.0", layout.display())],
    );
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(v["Labels"]["seed"], "a");
    let cfg = run(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            &format!("oci:{}:1.0", layout.display()),
        ],
    );
    assert_eq!(rbuild_digest::Digest::of(cfg.as_bytes()), a.id);

    let bundle = d.path().join("bundle");
    run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:1.0", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/app/hello.txt")).unwrap(),
        "hello a\n"
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/etc/base.txt")).unwrap(),
        "base layer\n"
    );

    // full name annotation brings the tag back
    let (_d2, images2, loaded) = load_into_fresh(&layout);
    assert_eq!(loaded.len(), 1);
    assert_same_image(&loaded[0].image, &a);
    assert_eq!(
        loaded[0].messages(),
        vec!["Loaded image: detection:1.0".to_string()]
    );
    assert_eq!(images2.resolve("detection:1.0").unwrap().id, a.id);
}

#[test]
fn second_export_reuses_compressed_variant() {
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let items = [(a.clone(), vec![r("x:1")])];
    export::oci_layout(
        &images,
        &items,
        &d.path().join("one"),
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    let v = images
        .store()
        .get_variant(&a.layers[0].diff_id, "gzip")
        .unwrap()
        .expect("variant recorded");
    let before = images.store().list_blobs().unwrap().len();
    export::oci_layout(
        &images,
        &items,
        &d.path().join("two"),
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    assert_eq!(
        images.store().list_blobs().unwrap().len(),
        before,
        "no new compressed blob"
    );
    let blob = d.path().join("two/blobs/sha256").join(v.digest.hex());
    assert_eq!(std::fs::metadata(blob).unwrap().len(), v.size);
    // compressed variants survive gc while their image lives
    images.tag(&a, &r("x:1")).unwrap();
    images.prune().unwrap();
    assert!(images.store().contains(&v.digest));
}

#[test]
fn oci_tar_uncompressed_and_multiple_names() {
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let b = sample_image(&images, "b");
    let tar = d.path().join("out.tar");
    export::oci_layout(
        &images,
        &[
            (a.clone(), vec![r("app:1"), r("app:latest")]),
            (b.clone(), vec![r("other/b:2")]),
        ],
        &tar,
        true,
        ExportCompression::None,
    )
    .unwrap();
    let inspect = run(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:2", tar.display()),
        ],
    );
    assert!(
        inspect.contains("application/vnd.oci.image.layer.v1.tar\""),
        "{inspect}"
    );

    let (_d2, images2, loaded) = load_into_fresh(&tar);
    assert_eq!(loaded.len(), 2);
    assert_same_image(&loaded[0].image, &a);
    assert_same_image(&loaded[1].image, &b);
    assert_eq!(loaded[0].names.len(), 2);
    assert_eq!(images2.resolve("other/b:2").unwrap().id, b.id);
    assert_eq!(images2.resolve("app").unwrap().id, a.id);
}

#[test]
fn docker_archive_round_trips_and_skopeo_reads_it() {
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let b = sample_image(&images, "b"); // shares the base layer with a
    let path = d.path().join("save.tar");
    let f = std::fs::File::create(&path).unwrap();
    export::docker_archive(
        &images,
        &[
            (a.clone(), vec![r("detection:1.0")]),
            (b.clone(), vec![r("b:2")]),
            (a.clone(), vec![r("detection:latest")]),
        ],
        f,
    )
    .unwrap();

    // what docker 20.10 `load` reads
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&path).unwrap());
    let mut manifest = None;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "manifest.json" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            manifest = Some(s);
        }
        names.push(p);
    }
    let manifest: serde_json::Value = serde_json::from_str(&manifest.unwrap()).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["detection:1.0", "detection:latest"])
    );
    assert_eq!(
        manifest.as_array().unwrap().len(),
        2,
        "same image saved twice is one entry"
    );
    assert_eq!(manifest[0]["Config"], format!("{}.json", a.id.hex()));
    assert_eq!(
        manifest[0]["Layers"][0], manifest[1]["Layers"][0],
        "shared base layer"
    );
    assert!(names.contains(&"repositories".to_string()));
    let base_dirs = names.iter().filter(|n| n.ends_with("/layer.tar")).count();
    assert_eq!(base_dirs, 3, "base layer written once: {names:?}");

    let inspect = run(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            &format!("docker-archive:{}:b:2", path.display()),
        ],
    );
    assert_eq!(rbuild_digest::Digest::of(inspect.as_bytes()), b.id);

    let (_d2, images2, loaded) = load_into_fresh(&path);
    assert_eq!(loaded.len(), 2);
    assert_same_image(&loaded[0].image, &a);
    assert_same_image(&loaded[1].image, &b);
    assert_eq!(images2.resolve("detection:1.0").unwrap().id, a.id);
}

#[test]
fn loads_what_skopeo_writes() {
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let layout = d.path().join("layout");
    export::oci_layout(
        &images,
        &[(a.clone(), vec![r("detection:1.0")])],
        &layout,
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    let src = format!("oci:{}:1.0", layout.display());

    let da = d.path().join("skopeo-docker.tar");
    run(
        "skopeo",
        &[
            "copy",
            &src,
            &format!("docker-archive:{}:detection:1.0", da.display()),
        ],
    );
    let (_d2, images2, loaded) = load_into_fresh(&da);
    assert_same_image(&loaded[0].image, &a);
    assert_eq!(images2.resolve("detection:1.0").unwrap().id, a.id);

    let oa = d.path().join("skopeo-oci.tar");
    run(
        "skopeo",
        &[
            "copy",
            &src,
            &format!("oci-archive:{}:localhost/detection:1.0", oa.display()),
        ],
    );
    let (_d3, images3, loaded) = load_into_fresh(&oa);
    assert_same_image(&loaded[0].image, &a);
    assert_eq!(images3.resolve("localhost/detection:1.0").unwrap().id, a.id);
}

/// Writes a docker-archive by hand from (name, bytes) entries, including hostile ones.
fn hand_tar(path: &Path, entries: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name like a hostile tool would
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.finish().unwrap();
}

fn config_for(diff_ids: &[rbuild_digest::Digest]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| d.to_string()).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": null, "Env": null},
        "rootfs": {"type": "layers", "diff_ids": ids}
    }))
    .unwrap()
}

#[test]
fn diff_id_mismatch_names_both_digests_and_the_file() {
    let (d, images) = setup();
    let layer = layer_tar(&[("a", b"real")]);
    let wrong = rbuild_digest::Digest::of(b"something else");
    let cfg = config_for(&[wrong]);
    let cfg_name = format!("{}.json", rbuild_digest::Digest::of(&cfg).hex());
    let manifest =
        format!(r#"[{{"Config":"{cfg_name}","RepoTags":["x:1"],"Layers":["l/layer.tar"]}}]"#);
    let path = d.path().join("bad.tar");
    hand_tar(
        &path,
        &[
            ("l/layer.tar", &layer),
            (&cfg_name, &cfg),
            ("manifest.json", manifest.as_bytes()),
        ],
    );
    let err = import::load(&images, &path).unwrap_err();
    match &err {
        ImageError::DiffIdMismatch {
            file,
            expected,
            actual,
            ..
        } => {
            assert_eq!(file, "l/layer.tar");
            assert_eq!(*expected, wrong);
            assert_eq!(*actual, rbuild_digest::Digest::of(&layer));
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&wrong.to_string()) && msg.contains("l/layer.tar"),
        "{msg}"
    );
    assert!(images.list().unwrap().is_empty());
}

#[test]
fn hostile_names_never_reach_outside_the_archive() {
    let (d, images) = setup();
    // a secret next to the archive that `..` would reach if paths were trusted
    let secret = layer_tar(&[("secret", b"outside")]);
    std::fs::write(d.path().join("secret.tar"), &secret).unwrap();
    let cfg = config_for(&[rbuild_digest::Digest::of(&secret)]);
    let cfg_name = format!("{}.json", rbuild_digest::Digest::of(&cfg).hex());
    for layer_name in ["../secret.tar", "/etc/passwd", "a/../../secret.tar"] {
        let manifest =
            format!(r#"[{{"Config":"{cfg_name}","RepoTags":["x:1"],"Layers":["{layer_name}"]}}]"#);
        let path = d.path().join("evil.tar");
        hand_tar(
            &path,
            &[(&cfg_name, &cfg), ("manifest.json", manifest.as_bytes())],
        );
        let err = import::load(&images, &path).unwrap_err();
        assert!(
            matches!(err, ImageError::MissingFile { .. }),
            "{layer_name}: {err}"
        );
    }
    // symlinks inside the archive that point outside are not followed
    let path = d.path().join("evil-link.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "l/layer.tar", "../../secret.tar")
            .unwrap();
        let manifest =
            format!(r#"[{{"Config":"{cfg_name}","RepoTags":["x:1"],"Layers":["l/layer.tar"]}}]"#);
        for (n, data) in [
            (cfg_name.as_str(), &cfg[..]),
            ("manifest.json", manifest.as_bytes()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, n, data).unwrap();
        }
        b.finish().unwrap();
    }
    let err = import::load(&images, &path).unwrap_err();
    assert!(matches!(err, ImageError::MissingFile { .. }), "{err}");
    // and an OCI layout directory whose blob is a symlink out of it is refused too
    let (d2, images2) = setup();
    let a = sample_image(&images2, "a");
    let layout = d2.path().join("layout");
    export::oci_layout(
        &images2,
        &[(a.clone(), vec![r("x:1")])],
        &layout,
        false,
        ExportCompression::None,
    )
    .unwrap();
    let blob = layout.join("blobs/sha256").join(a.layers[0].diff_id.hex());
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink(d.path().join("secret.tar"), &blob).unwrap();
    let (_d3, images3) = setup();
    assert!(matches!(
        import::load(&images3, &layout),
        Err(ImageError::MissingFile { .. })
    ));
}

#[test]
fn in_archive_symlinks_for_duplicate_layers_are_followed() {
    // docker 20.10 save writes a symlink when two images share a layer
    let (d, images) = setup();
    let layer = layer_tar(&[("a", b"data")]);
    let cfg = config_for(&[rbuild_digest::Digest::of(&layer)]);
    let cfg_name = format!("{}.json", rbuild_digest::Digest::of(&cfg).hex());
    let path = d.path().join("linked.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(layer.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "one/layer.tar", &layer[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "two/layer.tar", "../one/layer.tar")
            .unwrap();
        let manifest =
            format!(r#"[{{"Config":"{cfg_name}","RepoTags":null,"Layers":["two/layer.tar"]}}]"#);
        for (n, data) in [
            (cfg_name.as_str(), &cfg[..]),
            ("manifest.json", manifest.as_bytes()),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, n, data).unwrap();
        }
        b.finish().unwrap();
    }
    let loaded = import::load(&images, &path).unwrap();
    assert_eq!(
        loaded[0].messages(),
        vec![format!("Loaded image ID: {}", loaded[0].image.id)]
    );
    assert_eq!(loaded[0].image.id, rbuild_digest::Digest::of(&cfg));
}

#[test]
fn gzip_compressed_archive_and_gzip_layers_load() {
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let tar = d.path().join("gz-layers.tar");
    export::oci_layout(
        &images,
        &[(a.clone(), vec![r("x:1")])],
        &tar,
        true,
        ExportCompression::Gzip,
    )
    .unwrap();
    // compress the whole archive, as `docker save | gzip` users do
    let gz = d.path().join("whole.tar.gz");
    let raw = std::fs::read(&tar).unwrap();
    let out = std::fs::File::create(&gz).unwrap();
    rbuild_layer::compress::compress(
        &raw[..],
        out,
        rbuild_layer::compress::Compression::Gzip,
        None,
    )
    .unwrap();
    let (_d2, images2, loaded) = load_into_fresh(&gz);
    assert_same_image(&loaded[0].image, &a);
    // the compressed layer is remembered as the gzip variant, so re-export reproduces it
    let v = images2
        .store()
        .get_variant(&a.layers[0].diff_id, "gzip")
        .unwrap()
        .unwrap();
    let orig = images
        .store()
        .get_variant(&a.layers[0].diff_id, "gzip")
        .unwrap()
        .unwrap();
    assert_eq!(v.digest, orig.digest);
}

#[test]
fn corrupt_compressed_blob_is_caught() {
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let layout = d.path().join("layout");
    export::oci_layout(
        &images,
        &[(a.clone(), vec![r("x:1")])],
        &layout,
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    let v = images
        .store()
        .get_variant(&a.layers[1].diff_id, "gzip")
        .unwrap()
        .unwrap();
    let blob = layout.join("blobs/sha256").join(v.digest.hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff; // flip a byte of the gzip trailer
    std::fs::write(&blob, bytes).unwrap();
    let (_d2, images2) = setup();
    let err = import::load(&images2, &layout).unwrap_err();
    match err {
        ImageError::BlobDigestMismatch { expected, file, .. } => {
            assert_eq!(expected, v.digest);
            assert!(file.ends_with(&v.digest.hex()));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn rootfs_tar_merges_layers_and_honours_whiteouts() {
    let (_d, images) = setup();
    let l1 = put_layer(
        &images,
        &layer_tar(&[("etc/base.txt", b"base"), ("etc/keep.txt", b"keep")]),
    );
    let l2 = put_layer(
        &images,
        &layer_tar(&[
            ("etc/.wh.base.txt", b""),
            ("etc/keep.txt", b"changed"),
            ("new.txt", b"new"),
        ]),
    );
    let cfg = rbuild_image::config::ImageConfig::empty("linux", "amd64", None);
    let img = images.commit(&cfg, &[l1, l2]).unwrap();
    let out = export::rootfs_tar(&images, &img, Vec::new()).unwrap();
    let mut files = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(&out[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let name = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            files.insert(name, s);
        }
    }
    let want: std::collections::BTreeMap<String, String> = [
        ("etc/keep.txt".to_string(), "changed".to_string()),
        ("new.txt".to_string(), "new".to_string()),
    ]
    .into();
    assert_eq!(files, want);
}

#[test]
fn zstd_export_is_read_by_skopeo_and_loads_back() {
    let (d, images) = setup();
    let a = sample_image(&images, "z");
    let layout = d.path().join("zst");
    export::oci_layout(
        &images,
        &[(a.clone(), vec![r("z:1")])],
        &layout,
        false,
        ExportCompression::Zstd,
    )
    .unwrap();
    let raw = run(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:1", layout.display())],
    );
    assert!(
        raw.contains("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{raw}"
    );
    let (_d2, images2, loaded) = load_into_fresh(&layout);
    assert_same_image(&loaded[0].image, &a);
    assert!(images2
        .store()
        .get_variant(&a.layers[0].diff_id, "zstd")
        .unwrap()
        .is_some());
}

#[test]
fn loads_docker25_style_archive_with_index_and_manifest_json() {
    // docker 25+ writes an OCI layout plus a manifest.json whose paths are blobs/sha256/<hex>
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let dir = d.path().join("d25");
    export::oci_layout(
        &images,
        &[(a.clone(), vec![r("ignored:0")])],
        &dir,
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    let layers: Vec<String> = a
        .layers
        .iter()
        .map(|l| {
            let v = images
                .store()
                .get_variant(&l.diff_id, "gzip")
                .unwrap()
                .unwrap();
            format!("blobs/sha256/{}", v.digest.hex())
        })
        .collect();
    let manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", a.id.hex()),
        "RepoTags": ["detection:1.0"],
        "Layers": layers,
    }]);
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let tar_path = d.path().join("d25.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        b.append_dir_all(".", &dir).unwrap();
        b.finish().unwrap();
    }
    let (_d2, images2, loaded) = load_into_fresh(&tar_path);
    assert_eq!(loaded.len(), 1);
    assert_same_image(&loaded[0].image, &a);
    assert_eq!(
        loaded[0].messages(),
        vec!["Loaded image: detection:1.0".to_string()]
    );
    assert!(
        images2.resolve("ignored:0").is_err(),
        "manifest.json RepoTags win over index names"
    );

    // a corrupted blob is caught through its file name digest
    let p = dir.join(&layers[0]);
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let (_d3, images3) = setup();
    let res = import::load(&images3, &dir);
    assert!(
        matches!(res, Err(ImageError::BlobDigestMismatch { .. })),
        "{res:?}"
    );
}

#[test]
fn not_an_image_archive() {
    let (d, images) = setup();
    let p = d.path().join("plain.tar");
    hand_tar(&p, &[("hello.txt", b"hi")]);
    assert!(matches!(
        import::load(&images, &p),
        Err(ImageError::BadArchive { .. })
    ));
    let missing = d.path().join("nope.tar");
    assert!(matches!(
        import::load(&images, &missing),
        Err(ImageError::Io { .. })
    ));
}

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str, u64),
    Link(&'a str, &'a str),
}

fn rich_layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1);
        h.set_gid(0);
        match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_uid(0);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::File(p, data, uid) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o600);
                h.set_uid(*uid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data.as_bytes()).unwrap();
            }
            E::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_uid(0);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn rootfs_tar_follows_oci_changeset_rules() {
    let (_d, images) = setup();
    let lower = rich_layer(&[
        E::Dir("opq/"),
        E::File("opq/old", "old", 0),
        E::Dir("gone/"),
        E::File("gone/inner", "x", 0),
        E::Dir("becomes-file/"),
        E::File("becomes-file/child", "c", 0),
        E::File("owned", "mine", 1000),
        E::Link("link", "owned"),
    ]);
    let upper = rich_layer(&[
        E::Dir("opq/"),
        E::File("opq/.wh..wh..opq", "", 0),
        E::File("opq/new", "new", 0),
        E::File(".wh.gone", "", 0),
        E::File("becomes-file", "now a file", 0),
    ]);
    let cfg = rbuild_image::config::ImageConfig::default();
    let img = images
        .commit(
            &cfg,
            &[put_layer(&images, &lower), put_layer(&images, &upper)],
        )
        .unwrap();
    let out = export::rootfs_tar(&images, &img, Vec::new()).unwrap();
    let mut got = Vec::new();
    let mut ar = tar::Archive::new(&out[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let uid = e.header().uid().unwrap();
        let kind = e.header().entry_type();
        let mut s = String::new();
        if kind.is_file() {
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
        } else if kind.is_symlink() {
            s = format!("-> {}", e.link_name().unwrap().unwrap().display());
        }
        got.push((name, uid, s));
    }
    got.sort();
    let want: Vec<(String, u64, String)> = [
        ("becomes-file", 0, "now a file"),
        ("link", 0, "-> owned"),
        ("opq", 0, ""),
        ("opq/new", 0, "new"),
        ("owned", 1000, "mine"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), *b, c.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn exporting_into_an_existing_layout_merges_names() {
    let (d, images) = setup();
    let a = sample_image(&images, "a");
    let b = sample_image(&images, "b");
    let layout = d.path().join("layout");
    export::oci_layout(
        &images,
        &[(a.clone(), vec![r("x:1")])],
        &layout,
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    export::oci_layout(
        &images,
        &[(b.clone(), vec![r("y:2")])],
        &layout,
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    // re-exporting a name replaces its entry instead of duplicating it
    export::oci_layout(
        &images,
        &[(b.clone(), vec![r("x:1")])],
        &layout,
        false,
        ExportCompression::Gzip,
    )
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, vec!["2", "1"]);
    let cfg = run(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            &format!("oci:{}:1", layout.display()),
        ],
    );
    assert_eq!(rbuild_digest::Digest::of(cfg.as_bytes()), b.id);
    let cfg = run(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            &format!("oci:{}:2", layout.display()),
        ],
    );
    assert_eq!(rbuild_digest::Digest::of(cfg.as_bytes()), b.id);
}

#[test]
fn nested_multi_platform_index_picks_the_host_platform() {
    // buildx / skopeo --all layouts: index.json -> image index -> one manifest per platform,
    // plus an attestation manifest with platform unknown/unknown
    let (d, images) = setup();
    let host = sample_image(&images, "host");
    let other = sample_image(&images, "other");
    let layout = d.path().join("multi");
    export::oci_layout(
        &images,
        &[(host.clone(), vec![]), (other.clone(), vec![])],
        &layout,
        false,
        ExportCompression::None,
    )
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let mut host_entry = entries[0].clone();
    host_entry["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
    let mut other_entry = entries[1].clone();
    other_entry["platform"] = serde_json::json!({"architecture": "s390x", "os": "linux"});
    let mut attestation = entries[1].clone();
    attestation["platform"] = serde_json::json!({"architecture": "unknown", "os": "unknown"});
    let inner = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [other_entry, attestation, host_entry],
    }))
    .unwrap();
    let inner_digest = rbuild_digest::Digest::of(&inner);
    std::fs::write(layout.join("blobs/sha256").join(inner_digest.hex()), &inner).unwrap();
    let outer = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": inner_digest.to_string(),
            "size": inner.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}
        }]
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&outer).unwrap(),
    )
    .unwrap();
    let (_d2, images2, loaded) = load_into_fresh(&layout);
    assert_eq!(loaded.len(), 1);
    assert_same_image(&loaded[0].image, &host);
    assert_eq!(images2.resolve("multi:1").unwrap().id, host.id);
}
