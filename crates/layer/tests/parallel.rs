//! The applier creates small files and symlinks on writer threads; these layers put entries that
//! depend on such a file right behind it (same path, a path below it, a hardlink to it, a
//! whiteout of it) and check the result is what a sequential apply gives, and that the error
//! reported is the first one in tar order whichever thread hit it.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{Arena, RawTar};
use rbuild_layer::{apply_layer, ApplyOptions, LayerError};

fn apply(a: &Arena, tar: &[u8]) -> Result<rbuild_layer::ApplyStats, LayerError> {
    apply_layer(&a.root, tar, &ApplyOptions::default())
}

/// Enough files in one directory that the writers are still busy when the dependent entry comes.
fn filler(t: &mut RawTar, dir: &str, n: usize) {
    for i in 0..n {
        t.file(&format!("{dir}/f{i:04}"), format!("body {i}").as_bytes());
    }
}

#[test]
fn dependent_entries_see_the_files_before_them() {
    let a = Arena::new();
    let mut t = RawTar::new();
    t.dir("d");
    filler(&mut t, "d", 300);
    // Same path again: the later entry wins.
    t.file("d/f0001", b"replaced");
    // A file replaced by a directory with children.
    t.dir("d/f0002/");
    t.file("d/f0002/child", b"child");
    // A file replaced by a symlink, and a symlink replaced by a file.
    t.symlink("d/f0003", "f0004");
    t.symlink("d/s", "nowhere");
    t.file("d/s", b"not a link");
    // A hardlink to a file just queued.
    t.file("d/orig", b"shared");
    t.hardlink("d/hl", "d/orig");
    // A whiteout of a file just queued (same layer: the file goes).
    t.file("d/gone", b"x");
    t.file("d/.wh.gone", b"");
    let tar = t.end();
    let stats = apply(&a, &tar).unwrap();
    assert_eq!(stats.entries, 1 + 300 + 10);
    assert_eq!(fs::read(a.root.join("d/f0000")).unwrap(), b"body 0");
    assert_eq!(fs::read(a.root.join("d/f0299")).unwrap(), b"body 299");
    assert_eq!(fs::read(a.root.join("d/f0001")).unwrap(), b"replaced");
    assert_eq!(fs::read(a.root.join("d/f0002/child")).unwrap(), b"child");
    assert_eq!(
        fs::read_link(a.root.join("d/f0003")).unwrap(),
        std::path::Path::new("f0004")
    );
    let s = fs::symlink_metadata(a.root.join("d/s")).unwrap();
    assert!(s.is_file());
    assert_eq!(fs::read(a.root.join("d/s")).unwrap(), b"not a link");
    let o = fs::metadata(a.root.join("d/orig")).unwrap();
    let h = fs::metadata(a.root.join("d/hl")).unwrap();
    assert_eq!((o.ino(), o.nlink()), (h.ino(), 2));
    assert!(!a.root.join("d/gone").exists());
    assert_eq!(fs::read_dir(a.root.join("d")).unwrap().count(), 300 + 3);
    a.assert_outside_untouched();
}

#[test]
fn a_file_then_a_path_below_it_is_refused_like_sequential_apply() {
    // `x` is a file, so `x/y` cannot be created whether or not `x` is on disk yet.
    let a = Arena::new();
    let mut t = RawTar::new();
    filler(&mut t, "d", 50);
    t.file("x", b"file");
    t.file("x/y", b"below a file");
    let err = apply(&a, &t.end()).unwrap_err();
    assert!(
        matches!(err, LayerError::Apply { ref path, .. } if path == "x/y"),
        "{err}"
    );
    assert_eq!(fs::read(a.root.join("x")).unwrap(), b"file");
}

#[test]
fn the_first_error_in_tar_order_is_reported() {
    // Entry 10 fails on a writer thread (an xattr name longer than the kernel accepts), entry 60
    // fails on the main thread (hardlink to nothing); the earlier one must be reported, every time.
    let long = format!("SCHILY.xattr.user.{}", "n".repeat(300));
    for _ in 0..5 {
        let a = Arena::new();
        let mut t = RawTar::new();
        filler(&mut t, "d", 10);
        t.pax(&[(long.as_str(), b"v")]);
        t.file("d/bad-xattr", b"x");
        filler(&mut t, "e", 50);
        t.hardlink("e/link", "missing");
        let err = apply(&a, &t.end()).unwrap_err();
        assert!(
            matches!(err, LayerError::Apply { ref path, .. } if path == "d/bad-xattr"),
            "{err}"
        );
    }
    // Without the earlier failure, the main thread's error is the one reported.
    let a = Arena::new();
    let mut t = RawTar::new();
    filler(&mut t, "e", 50);
    t.hardlink("e/link", "missing");
    let err = apply(&a, &t.end()).unwrap_err();
    assert!(
        matches!(err, LayerError::Apply { ref path, .. } if path == "e/link"),
        "{err}"
    );
}

#[test]
fn warnings_come_in_tar_order() {
    let a = Arena::new();
    let mut t = RawTar::new();
    for i in 0..40 {
        // trusted.* needs CAP_SYS_ADMIN; as root it is set, so use a namespace nobody may set.
        t.pax(&[("SCHILY.xattr.bogusns.k", b"v")]);
        t.file(&format!("w{i:02}"), b"x");
    }
    let stats = apply(&a, &t.end()).unwrap();
    let paths: Vec<&str> = stats
        .warnings
        .iter()
        .map(|w| w.split(':').next().unwrap())
        .collect();
    let want: Vec<String> = (0..40).map(|i| format!("w{i:02}")).collect();
    assert_eq!(paths, want);
}

#[test]
fn large_and_small_files_keep_content_mode_and_times() {
    let a = Arena::new();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut t = RawTar::new();
    t.file_mode("big", &big, 0o4755);
    t.file_mode("small", b"s", 0o444);
    let stats = apply(&a, &t.end()).unwrap();
    assert_eq!(stats.bytes, big.len() as u64 + 1);
    assert_eq!(fs::read(a.root.join("big")).unwrap(), big);
    let b = fs::metadata(a.root.join("big")).unwrap();
    let s = fs::metadata(a.root.join("small")).unwrap();
    assert_eq!(b.mode() & 0o7777, 0o4755);
    assert_eq!(s.mode() & 0o7777, 0o444);
    assert_eq!((b.mtime(), s.mtime()), (1_000_000, 1_000_000));
}

/// The same file reached through a symlinked parent (`l -> d`) right after it was queued as
/// `d/x`: replacing it, linking to it and writing below its sibling behave as a sequential apply,
/// every time (the entry waits for the writers instead of racing them).
#[test]
fn paths_through_a_symlinked_parent_wait_for_queued_files() {
    for round in 0..20 {
        let a = Arena::new();
        let mut t = RawTar::new();
        t.dir("d");
        t.symlink("l", "d");
        filler(&mut t, "d", 100);
        t.file("d/x", b"first");
        t.file("l/x", b"second");
        t.file("d/y", b"y");
        t.hardlink("l/z", "l/y");
        let tar = t.end();
        apply(&a, &tar).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            fs::read(a.root.join("d/x")).unwrap(),
            b"second",
            "round {round}"
        );
        let (y, z) = (
            fs::metadata(a.root.join("d/y")).unwrap(),
            fs::metadata(a.root.join("d/z")).unwrap(),
        );
        assert_eq!(y.ino(), z.ino(), "round {round}");
        a.assert_outside_untouched();
    }
}
