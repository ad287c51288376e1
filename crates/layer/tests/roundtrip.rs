//! Writer tests: byte-level format, determinism, and write -> apply -> list round trips.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_layer::{
    apply_layer, list_layer, list_tree, write_paths, write_tree, ApplyOptions, EntryKind,
    LayerWriter, PathEntry, WriteOptions,
};

fn set_mtime(p: &Path, secs: i64) {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A tree with one of everything the writer must handle.
fn sample_tree() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().join("src");
    fs::create_dir_all(r.join("usr/bin")).unwrap();
    fs::create_dir_all(r.join("empty")).unwrap();
    fs::create_dir_all(r.join("a-b")).unwrap();
    fs::write(r.join("usr/bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(r.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(r.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(r.join("a-b/x"), vec![b'x'; 5000]).unwrap();
    fs::hard_link(r.join("a-b/x"), r.join("usr/x-link")).unwrap();
    symlink("../usr/bin/tool", r.join("a-b/tool-link")).unwrap();
    let long_dir = r.join("l".repeat(90));
    fs::create_dir(&long_dir).unwrap();
    fs::write(long_dir.join("n".repeat(60)), b"long name").unwrap();
    symlink("t".repeat(150), r.join("long-target")).unwrap();
    fs::write(r.join("ünïcode"), b"u").unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let _ = rustix::fs::setxattr(
        r.join("a-b/x"),
        "user.note",
        b"hello",
        rustix::fs::XattrFlags::empty(),
    );
    // Deterministic times, children before parents so the parent's time sticks.
    let mut all = Vec::new();
    walk(&r, &mut all);
    all.sort();
    for p in all.iter().rev() {
        set_mtime(p, 1_600_000_000);
    }
    (tmp, r)
}

fn walk(d: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        out.push(p.clone());
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            walk(&p, out);
        }
    }
}

fn opts() -> WriteOptions {
    WriteOptions::default()
}

#[test]
fn write_apply_list_round_trip() {
    let (tmp, src) = sample_tree();
    let (tar, info) = write_tree(&src, Vec::new(), &opts()).unwrap();
    assert_eq!(info.size, tar.len() as u64);
    assert_eq!(info.diff_id, rbuild_digest::Digest::of(&tar));

    let dst = tmp.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let same_owner = rustix::process::geteuid().is_root();
    let stats = apply_layer(
        &dst,
        &tar[..],
        &ApplyOptions {
            same_owner,
            id_map: None,
        },
    )
    .unwrap();
    assert_eq!(stats.bytes, 5000 + 18 + 9 + 1);

    let want = list_tree(&src).unwrap();
    let got = list_tree(&dst).unwrap();
    assert_eq!(got, want);
    // And the layer's own listing says the same (paths, kinds, modes, contents).
    let from_tar = list_layer(&tar[..]).unwrap();
    assert_eq!(from_tar, want);
    let mut buf = [0u8; 16];
    if let Ok(n) = rustix::fs::getxattr(src.join("a-b/x"), "user.note", &mut buf[..]) {
        let x = from_tar.iter().find(|e| e.path == "a-b/x").unwrap();
        assert_eq!(x.xattrs, vec![("user.note".to_string(), buf[..n].to_vec())]);
    }
    // Hardlink kept as one inode.
    assert_eq!(
        fs::metadata(dst.join("a-b/x")).unwrap().ino(),
        fs::metadata(dst.join("usr/x-link")).unwrap().ino()
    );
}

#[test]
fn same_tree_gives_same_bytes() {
    let (_t1, a) = sample_tree();
    let (_t2, b) = sample_tree();
    let (ta, ia) = write_tree(&a, Vec::new(), &opts()).unwrap();
    let (tb, ib) = write_tree(&b, Vec::new(), &opts()).unwrap();
    let (tc, ic) = write_tree(&a, Vec::new(), &opts()).unwrap();
    // Two separately built trees differ only in inode numbers, which never reach the tar.
    assert_eq!(ia, ib);
    assert_eq!(ia, ic);
    assert_eq!(ta, tb);
    assert_eq!(ta, tc);
}

#[test]
fn tar_format_is_what_docker_writes() {
    let (_t, src) = sample_tree();
    let (tar, _) = write_tree(&src, Vec::new(), &opts()).unwrap();
    assert_eq!(tar.len() % 512, 0);
    assert!(
        tar[tar.len() - 1024..].iter().all(|b| *b == 0),
        "two zero blocks at the end"
    );

    let mut ar = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    let mut saw_pax_path = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        assert_eq!(h.as_ustar().map(|u| &u.magic), Some(b"ustar\0"));
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        assert!(!name.starts_with("./") && !name.starts_with('/'), "{name}");
        assert_eq!(name.ends_with('/'), h.entry_type().is_dir(), "{name}");
        if name.len() > 100 {
            saw_pax_path = e
                .pax_extensions()
                .unwrap()
                .unwrap()
                .any(|x| x.unwrap().key() == Ok("path"));
        }
        assert!(!matches!(
            h.entry_type(),
            tar::EntryType::GNUSparse | tar::EntryType::GNULongName
        ));
        names.push(name.trim_end_matches('/').as_bytes().to_vec());
    }
    assert!(saw_pax_path);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries sorted by path bytes");
    // Second name of the hardlinked pair is a link entry to the first (sorted) name.
    let list = list_layer(&tar[..]).unwrap();
    let link = list.iter().find(|e| e.path == "usr/x-link").unwrap();
    assert_eq!(link.kind, EntryKind::Hardlink);
    assert_eq!(link.link.as_deref(), Some("a-b/x"));
    let long = list.iter().find(|e| e.path == "long-target").unwrap();
    assert_eq!(long.link.as_deref(), Some("t".repeat(150).as_str()));
}

#[test]
fn gnu_tar_accepts_and_extracts_the_layer() {
    if Command::new("tar").arg("--version").output().is_err() {
        return;
    }
    let (tmp, src) = sample_tree();
    let (tar, _) = write_tree(&src, Vec::new(), &opts()).unwrap();
    let path = tmp.path().join("layer.tar");
    fs::write(&path, &tar).unwrap();
    let out_dir = tmp.path().join("gnu");
    fs::create_dir(&out_dir).unwrap();
    let st = Command::new("tar")
        .arg("-xpf")
        .arg(&path)
        .arg("-C")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let long = out_dir.join("l".repeat(90)).join("n".repeat(60));
    assert_eq!(fs::read(long).unwrap(), b"long name");
    assert_eq!(
        fs::read_link(out_dir.join("long-target")).unwrap(),
        PathBuf::from("t".repeat(150))
    );
    assert_eq!(
        fs::metadata(out_dir.join("usr/bin/tool")).unwrap().mode() & 0o7777,
        0o4755
    );
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let (_t, src) = sample_tree();
    set_mtime(&src.join("ünïcode"), 50);
    let (tar, info) = write_tree(
        &src,
        Vec::new(),
        &WriteOptions {
            source_date_epoch: Some(100),
            ..Default::default()
        },
    )
    .unwrap();
    for e in list_layer(&tar[..]).unwrap() {
        let want = if e.path == "ünïcode" { 50 } else { 100 };
        assert_eq!(e.mtime, want, "{}", e.path);
    }
    // Touching a file after the epoch does not change the layer.
    set_mtime(&src.join("a-b/x"), 1_700_000_000);
    let (_, info2) = write_tree(
        &src,
        Vec::new(),
        &WriteOptions {
            source_date_epoch: Some(100),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(info, info2);
}

#[test]
fn write_paths_adds_parents_recursion_and_whiteouts() {
    let (_t, src) = sample_tree();
    let paths = vec![
        PathEntry {
            rel: "usr/bin/tool".into(),
            recursive: false,
            whiteout: false,
        },
        PathEntry {
            rel: "a-b".into(),
            recursive: true,
            whiteout: false,
        },
        PathEntry {
            rel: "empty".into(),
            recursive: false,
            whiteout: false,
        },
        PathEntry {
            rel: "usr/bin/deleted".into(),
            recursive: false,
            whiteout: true,
        },
        PathEntry {
            rel: "usr/bin/tool".into(),
            recursive: false,
            whiteout: false,
        },
    ];
    let (tar, _) = write_paths(&src, &paths, Vec::new(), &opts()).unwrap();
    let got: Vec<(String, EntryKind)> = list_layer(&tar[..])
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.kind))
        .collect();
    let want = vec![
        ("a-b".to_string(), EntryKind::Dir),
        ("a-b/tool-link".to_string(), EntryKind::Symlink),
        ("a-b/x".to_string(), EntryKind::File),
        ("empty".to_string(), EntryKind::Dir),
        ("usr".to_string(), EntryKind::Dir),
        ("usr/bin".to_string(), EntryKind::Dir),
        ("usr/bin/.wh.deleted".to_string(), EntryKind::Whiteout),
        ("usr/bin/tool".to_string(), EntryKind::File),
    ];
    assert_eq!(got, want);

    // Applying it on a root that has the deleted file removes it.
    let dst = tempfile::tempdir().unwrap();
    fs::create_dir_all(dst.path().join("usr/bin")).unwrap();
    fs::write(dst.path().join("usr/bin/deleted"), b"old").unwrap();
    apply_layer(dst.path(), &tar[..], &ApplyOptions::default()).unwrap();
    assert!(!dst.path().join("usr/bin/deleted").exists());
    assert!(dst.path().join("usr/bin/tool").exists());

    for bad in ["../x", "/abs"] {
        let p = [PathEntry {
            rel: bad.into(),
            recursive: false,
            whiteout: false,
        }];
        assert!(matches!(
            write_paths(&src, &p, Vec::new(), &opts()),
            Err(rbuild_layer::LayerError::BadSourcePath { .. })
        ));
    }
}

#[test]
fn layer_writer_markers_and_empty_layer() {
    let (tar, info) = LayerWriter::new(Vec::new(), opts()).finish().unwrap();
    assert_eq!(tar, vec![0u8; 1024]);
    assert_eq!(info.size, 1024);

    let mut w = LayerWriter::new(Vec::new(), opts());
    w.append_opaque(Path::new("etc")).unwrap();
    w.append_whiteout(Path::new("etc/old.conf")).unwrap();
    let (tar, _) = w.finish().unwrap();
    let list = list_layer(&tar[..]).unwrap();
    assert_eq!(list[0].path, "etc/.wh..wh..opq");
    assert_eq!(list[0].kind, EntryKind::Opaque);
    assert_eq!(list[1].path, "etc/.wh.old.conf");
    assert_eq!(list[1].kind, EntryKind::Whiteout);
}

#[test]
fn compressed_layer_round_trips_through_decompress() {
    let (_t, src) = sample_tree();
    let (tar, info) = write_tree(&src, Vec::new(), &opts()).unwrap();
    for c in [
        rbuild_layer::compress::Compression::Gzip,
        rbuild_layer::compress::Compression::Zstd,
    ] {
        let blob = rbuild_layer::compress::compress(&tar[..], Vec::new(), c, None).unwrap();
        let mut back = Vec::new();
        rbuild_layer::compress::decompress(std::io::Cursor::new(blob))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(rbuild_digest::Digest::of(&back), info.diff_id, "{c:?}");
    }
}
