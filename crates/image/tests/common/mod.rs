//! Helpers shared by the integration tests: a fresh store and small real layer tars.
#![allow(dead_code)]

use rbuild_image::config::{History, ImageConfig};
use rbuild_image::{Images, LayerDesc, LocalImage};

pub fn setup() -> (tempfile::TempDir, Images) {
    let dir = tempfile::tempdir().unwrap();
    let store = rbuild_store::Store::open(dir.path().join("store")).unwrap();
    (dir, Images::new(store))
}

/// A layer tar with the given regular files (and their parent directories).
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn put_layer(images: &Images, tar: &[u8]) -> LayerDesc {
    let d = images.store().put_bytes(tar).unwrap();
    LayerDesc {
        diff_id: d,
        size: tar.len() as u64,
    }
}

/// Commits a two-layer image whose content depends on `seed`.
pub fn sample_image(images: &Images, seed: &str) -> LocalImage {
    let l1 = put_layer(images, &layer_tar(&[("etc/base.txt", b"base layer\n")]));
    let l2 = put_layer(
        images,
        &layer_tar(&[("app/hello.txt", format!("hello {seed}\n").as_bytes())]),
    );
    let mut config = ImageConfig::empty("linux", "amd64", None);
    config.created = Some(format!("2026-11-26T00:00:0{}Z", seed.len() % 10));
    config.set_env("PATH", "/usr/bin:/bin");
    config.config.cmd = Some(vec!["/bin/sh".into()]);
    config.set_label("seed", seed);
    config.history = vec![
        History {
            created_by: Some("ADD base".into()),
            ..Default::default()
        },
        History {
            created_by: Some("ENV PATH=/usr/bin:/bin".into()),
            empty_layer: Some(true),
            ..Default::default()
        },
        History {
            created: Some("2026-11-26T00:00:00Z".into()),
            created_by: Some(format!("COPY hello {seed}")),
            comment: Some("buildkit.dockerfile.v0".into()),
            ..Default::default()
        },
    ];
    images.commit(&config, &[l1, l2]).unwrap()
}

/// Runs a command and fails loudly (never skips) when the tool is missing or fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "required tool `{cmd}` could not be run ({e}); install it (apt-get install {cmd})"
            )
        });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
