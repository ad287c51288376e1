//! Images whose layers exist only as compressed variants (as a pull leaves them): read through
//! `open_layer`, exported, kept by gc, and refused when the variant lies about its content.

use std::io::Read;

use rbuild_digest::Digest;
use rbuild_image::config::ImageConfig;
use rbuild_image::export::ExportCompression;
use rbuild_image::{ImageError, Images, LayerDesc, LocalImage};
use rbuild_store::{Store, Variant};

fn layer_tar(name: &str, body: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, body).unwrap();
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    rbuild_layer::compress::compress(
        bytes,
        Vec::new(),
        rbuild_layer::compress::Compression::Gzip,
        None,
    )
    .unwrap()
}

/// Commits an image whose one layer (`diff_id` of `claimed`) is stored only as `variant_of`
/// gzipped; returns the image, the diff id and the variant digest.
fn lazy_image(images: &Images, claimed: &[u8], variant_of: &[u8]) -> (LocalImage, Digest, Digest) {
    let store = images.store();
    let diff_id = Digest::of(claimed);
    let gz = gzip(variant_of);
    let vd = store.put_bytes(&gz).unwrap();
    let v = Variant {
        digest: vd,
        size: gz.len() as u64,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
    };
    store.set_variant(&diff_id, "gzip", &v).unwrap();
    let mut config = ImageConfig::empty("linux", "amd64", None);
    config.rootfs.diff_ids.push(diff_id);
    let img = images
        .commit(
            &config,
            &[LayerDesc {
                diff_id,
                size: gz.len() as u64,
            }],
        )
        .unwrap();
    images
        .tag(&img, &rbuild_image::Reference::parse("lazy:1").unwrap())
        .unwrap();
    assert!(!store.contains(&diff_id));
    (img, diff_id, vd)
}

fn setup() -> (tempfile::TempDir, Images) {
    let t = tempfile::tempdir().unwrap();
    let images = Images::new(Store::open(t.path().join("store")).unwrap());
    (t, images)
}

#[test]
fn variant_only_layer_reads_exports_and_survives_gc() {
    let (t, images) = setup();
    let tar = layer_tar("etc/hello", b"hello lazy\n");
    let (img, diff_id, vd) = lazy_image(&images, &tar, &tar);

    let mut got = Vec::new();
    let mut r = images.open_layer(&diff_id).unwrap();
    assert_eq!(r.variant(), Some(vd));
    r.read_to_end(&mut got).unwrap();
    assert_eq!(got, tar);
    assert_eq!(r.finish().unwrap(), tar.len() as u64);

    // gc keeps the variant of a reachable layer that has no uncompressed blob.
    images.store().gc().unwrap();
    assert!(images.store().contains(&vd));
    assert!(images
        .store()
        .get_variant(&diff_id, "gzip")
        .unwrap()
        .is_some());

    // docker-archive: layer.tar is the uncompressed tar.
    let items = vec![(
        img.clone(),
        vec![rbuild_image::Reference::parse("lazy:1").unwrap()],
    )];
    let out = rbuild_image::export::docker_archive(&images, &items, Vec::new()).unwrap();
    let mut ar = tar::Archive::new(&out[..]);
    let mut found = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("layer.tar") {
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            assert_eq!(b, tar);
            found = true;
        }
    }
    assert!(found);

    // OCI layout: gzip reuses the variant; uncompressed writes the diff id blob.
    for (c, blob) in [
        (ExportCompression::Gzip, vd),
        (ExportCompression::None, diff_id),
    ] {
        let dest = t.path().join(format!("layout-{c:?}"));
        rbuild_image::export::oci_layout(&images, &items, &dest, false, c).unwrap();
        let p = dest.join("blobs/sha256").join(blob.hex());
        assert_eq!(Digest::of(&std::fs::read(&p).unwrap()), blob, "{c:?}");
    }

    // Flattened rootfs.
    let flat = rbuild_image::export::rootfs_tar(&images, &img, Vec::new()).unwrap();
    let mut ar = tar::Archive::new(&flat[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.iter().any(|n| n == "etc/hello"), "{names:?}");
    assert!(!images.store().contains(&diff_id));
}

#[test]
fn tampered_variant_is_refused_naming_both_digests() {
    let (_t, images) = setup();
    let claimed = layer_tar("etc/hello", b"genuine\n");
    let other = layer_tar("etc/hello", b"forged!\n");
    let (img, diff_id, vd) = lazy_image(&images, &claimed, &other);

    let err = images.open_layer(&diff_id).unwrap().finish().unwrap_err();
    match &err {
        ImageError::CorruptVariant(c) => {
            assert_eq!((c.diff_id, c.variant), (diff_id, vd));
            assert_eq!(c.actual, Digest::of(&other));
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&diff_id.to_string()) && msg.contains(&vd.to_string()),
        "{msg}"
    );

    let items = vec![(img.clone(), vec![])];
    let e = rbuild_image::export::docker_archive(&images, &items, Vec::new()).unwrap_err();
    assert!(e.to_string().contains(&vd.to_string()), "{e}");
    let e = rbuild_image::export::rootfs_tar(&images, &img, Vec::new()).unwrap_err();
    assert!(e.to_string().contains(&vd.to_string()), "{e}");
}
