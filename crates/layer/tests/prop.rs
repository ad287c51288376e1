//! Property: for any small tree, write_tree -> apply_layer -> list_tree gives the same listing,
//! and writing twice gives the same diff id.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;

use proptest::prelude::*;
use rbuild_layer::{apply_layer, list_tree, write_tree, ApplyOptions, WriteOptions};

#[derive(Debug, Clone)]
enum Node {
    File(Vec<u8>, u32),
    Dir(u32),
    Symlink(String),
    Hardlink(usize),
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("a-b".to_string()),
        Just("ä".to_string()),
        Just(".hidden".to_string()),
        "[a-z]{1,3}",
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let mode = prop_oneof![
        Just(0o644u32),
        Just(0o755),
        Just(0o600),
        Just(0o4755),
        Just(0o1777)
    ];
    prop_oneof![
        (proptest::collection::vec(any::<u8>(), 0..700), mode.clone())
            .prop_map(|(d, m)| Node::File(d, m)),
        mode.prop_map(|m| Node::Dir(m | 0o700)),
        "[a-z./]{1,12}".prop_map(Node::Symlink),
        (0usize..8).prop_map(Node::Hardlink),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn round_trip(spec in proptest::collection::vec((proptest::collection::vec(name(), 1..4), node()), 1..12)) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        let mut files: Vec<PathBuf> = Vec::new();
        for (comps, node) in &spec {
            let rel: PathBuf = comps.iter().collect();
            let full = src.join(&rel);
            if fs::symlink_metadata(&full).is_ok() {
                continue;
            }
            let Some(parent) = full.parent() else { continue };
            if fs::create_dir_all(parent).is_err() {
                continue; // a file is in the way
            }
            match node {
                Node::File(data, mode) => {
                    fs::write(&full, data).unwrap();
                    fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).unwrap();
                    files.push(full);
                }
                Node::Dir(mode) => {
                    fs::create_dir(&full).unwrap();
                    fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).unwrap();
                }
                Node::Symlink(t) => symlink(t, &full).unwrap(),
                Node::Hardlink(i) => {
                    if let Some(target) = files.get(*i % files.len().max(1)) {
                        fs::hard_link(target, &full).unwrap();
                    }
                }
            }
        }
        let opts = WriteOptions::default();
        let (tar, info) = write_tree(&src, Vec::new(), &opts).unwrap();
        let (_, info2) = write_tree(&src, Vec::new(), &opts).unwrap();
        prop_assert_eq!(info, info2);

        let dst = tmp.path().join("dst");
        fs::create_dir(&dst).unwrap();
        let same_owner = rustix::process::geteuid().is_root();
        apply_layer(&dst, &tar[..], &ApplyOptions { same_owner, id_map: None }).unwrap();
        prop_assert_eq!(list_tree(&dst).unwrap(), list_tree(&src).unwrap());

        // Applying the same layer again over its own result changes nothing.
        apply_layer(&dst, &tar[..], &ApplyOptions { same_owner, id_map: None }).unwrap();
        prop_assert_eq!(list_tree(&dst).unwrap(), list_tree(&src).unwrap());
    }
}
