//! Hostile and edge-case layers: each one is built byte by byte, applied, and must leave
//! everything outside the root untouched.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::{checksum, header, Arena, RawTar};
use rbuild_layer::{apply_layer, ApplyOptions, LayerError};

fn apply(a: &Arena, tar: &[u8]) -> Result<rbuild_layer::ApplyStats, LayerError> {
    apply_layer(&a.root, tar, &ApplyOptions::default())
}

#[test]
fn dotdot_paths_are_refused() {
    for name in ["../x", "a/../../x", "/../x", "./../outside/sentinel"] {
        let a = Arena::new();
        let tar = RawTar::new().file(name, b"evil").end();
        let err = apply(&a, &tar).unwrap_err();
        assert!(
            matches!(err, LayerError::Breakout { ref path, .. } if path == name),
            "{name}: {err}"
        );
        a.assert_outside_untouched();
        assert!(!a.tmp.path().join("x").exists());
    }
}

#[test]
fn absolute_paths_land_inside_the_root() {
    let a = Arena::new();
    let tar = RawTar::new()
        .file("/abs", b"ok")
        .file("/etc/conf", b"c")
        .end();
    let stats = apply(&a, &tar).unwrap();
    assert_eq!(stats.entries, 2);
    assert_eq!(fs::read(a.root.join("abs")).unwrap(), b"ok");
    assert_eq!(fs::read(a.root.join("etc/conf")).unwrap(), b"c");
    a.assert_outside_untouched();
}

#[test]
fn symlink_to_outside_then_write_through_it_stays_in_root() {
    let a = Arena::new();
    let outside_abs = a.outside.display().to_string();
    // `l -> /abs/path/of/outside`, then `l/sentinel`: resolved as in a chroot, so it would be
    // root/<abs>/sentinel, which does not exist -> refused, and the real sentinel is untouched.
    let tar = RawTar::new()
        .symlink("l", &outside_abs)
        .file("l/sentinel", b"pwned")
        .end();
    assert!(apply(&a, &tar).is_err());
    a.assert_outside_untouched();

    // `l -> /etc` with an etc inside the root: writes root/etc/passwd.
    let a = Arena::new();
    let tar = RawTar::new()
        .dir("etc/")
        .symlink("l", "/etc")
        .file("l/passwd", b"inroot")
        .end();
    apply(&a, &tar).unwrap();
    assert_eq!(fs::read(a.root.join("etc/passwd")).unwrap(), b"inroot");
    a.assert_outside_untouched();
}

#[test]
fn relative_symlink_climbing_out_is_clamped_to_root() {
    let a = Arena::new();
    let tar = RawTar::new()
        .symlink("l", "../../..")
        .file("l/passwd", b"clamped")
        .symlink("m", "../outside")
        .file("m/sentinel", b"clamped2")
        .end();
    // `m -> ../outside` resolves to root/outside (missing) inside the root; creating through a
    // dangling link is refused.
    let r = apply(&a, &tar);
    assert_eq!(fs::read(a.root.join("passwd")).unwrap(), b"clamped");
    assert!(r.is_err());
    a.assert_outside_untouched();
}

#[test]
fn hardlinks_out_of_the_root_are_refused() {
    for target in [
        "../../etc/passwd",
        "../outside/sentinel",
        "a/../../outside/sentinel",
    ] {
        let a = Arena::new();
        let tar = RawTar::new().hardlink("h", target).end();
        let err = apply(&a, &tar).unwrap_err();
        assert!(
            matches!(err, LayerError::LinkBreakout { .. }),
            "{target}: {err}"
        );
        a.assert_outside_untouched();
    }
    // Absolute targets are inside the root; the outside file's link count must not change.
    let a = Arena::new();
    let abs = a.outside.join("sentinel").display().to_string();
    let tar = RawTar::new()
        .hardlink("h", &abs)
        .hardlink("h2", "/etc/passwd")
        .end();
    assert!(apply(&a, &tar).is_err());
    assert_eq!(fs::metadata(a.outside.join("sentinel")).unwrap().nlink(), 1);
    a.assert_outside_untouched();
}

#[test]
fn hardlink_through_symlinks_never_reaches_outside() {
    let a = Arena::new();
    let abs_dir = a.outside.display().to_string();
    let abs_file = a.outside.join("sentinel").display().to_string();
    // Through a symlinked directory: resolved in root -> missing.
    let tar = RawTar::new()
        .symlink("d", &abs_dir)
        .hardlink("h", "d/sentinel")
        .end();
    assert!(apply(&a, &tar).is_err());
    a.assert_outside_untouched();

    // To a chain of symlinks: links the first symlink itself, never the file at the end.
    let a = Arena::new();
    let tar = RawTar::new()
        .symlink("s2", &abs_file)
        .symlink("s1", "s2")
        .hardlink("h", "s1")
        .end();
    apply(&a, &tar).unwrap();
    let md = fs::symlink_metadata(a.root.join("h")).unwrap();
    assert!(md.file_type().is_symlink());
    assert_eq!(
        fs::read_link(a.root.join("h")).unwrap().to_str(),
        Some("s2")
    );
    assert_eq!(fs::metadata(a.outside.join("sentinel")).unwrap().nlink(), 1);
    a.assert_outside_untouched();
}

#[test]
fn symlink_replaced_by_directory_is_a_real_directory() {
    let a = Arena::new();
    let abs = a.outside.display().to_string();
    let tar = RawTar::new()
        .symlink("l", &abs)
        .dir("l/")
        .file("l/sentinel", b"mine")
        .end();
    apply(&a, &tar).unwrap();
    let md = fs::symlink_metadata(a.root.join("l")).unwrap();
    assert!(md.is_dir());
    assert_eq!(fs::read(a.root.join("l/sentinel")).unwrap(), b"mine");
    a.assert_outside_untouched();
}

#[test]
fn existing_symlink_in_root_is_replaced_not_followed() {
    let a = Arena::new();
    std::os::unix::fs::symlink(a.outside.join("sentinel"), a.root.join("f")).unwrap();
    let tar = RawTar::new().file("f", b"replaced").end();
    apply(&a, &tar).unwrap();
    assert!(fs::symlink_metadata(a.root.join("f")).unwrap().is_file());
    assert_eq!(fs::read(a.root.join("f")).unwrap(), b"replaced");
    a.assert_outside_untouched();
}

#[test]
fn hostile_whiteouts() {
    let a = Arena::new();
    let err = apply(&a, &RawTar::new().file("../.wh.sentinel", b"").end()).unwrap_err();
    assert!(matches!(err, LayerError::Breakout { .. }), "{err}");
    a.assert_outside_untouched();

    for bad in [".wh.", "d/.wh..", ".wh.."] {
        let a = Arena::new();
        let err = apply(&a, &RawTar::new().file(bad, b"").end()).unwrap_err();
        assert!(
            matches!(
                err,
                LayerError::InvalidEntry { .. } | LayerError::Breakout { .. }
            ),
            "{bad}: {err}"
        );
        a.assert_outside_untouched();
    }

    // Through a symlink to outside: resolves inside the root, nothing there, nothing happens.
    let a = Arena::new();
    let abs = a.outside.display().to_string();
    let tar = RawTar::new()
        .symlink("l", &abs)
        .file("l/.wh.sentinel", b"")
        .symlink("up", "../../..")
        .file("up/.wh.outside", b"")
        .end();
    apply(&a, &tar).unwrap();
    a.assert_outside_untouched();

    // Opaque marker through a symlink that climbs: clears the root's own children only.
    let a = Arena::new();
    fs::write(a.root.join("lower"), b"x").unwrap();
    let tar = RawTar::new()
        .symlink("up", "../..")
        .file("up/.wh..wh..opq", b"")
        .end();
    apply(&a, &tar).unwrap();
    assert!(!a.root.join("lower").exists());
    a.assert_outside_untouched();
}

#[test]
fn device_nodes_are_created_or_warned_about() {
    let a = Arena::new();
    let mut h = header(b"dev/null", b'3', 0, b"", 0o666);
    h[329..337].copy_from_slice(b"0000001\0");
    h[337..345].copy_from_slice(b"0000003\0");
    checksum(&mut h);
    let tar = RawTar::new()
        .raw_header(h)
        .raw_header(header(b"fifo", b'6', 0, b"", 0o600))
        .end();
    let stats = apply(&a, &tar).unwrap();
    match fs::symlink_metadata(a.root.join("dev/null")) {
        Ok(md) => {
            assert!(md.file_type().is_char_device());
            assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
        }
        Err(_) => assert!(!stats.warnings.is_empty(), "skipped without a warning"),
    }
    assert!(fs::symlink_metadata(a.root.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    a.assert_outside_untouched();
}

#[test]
fn corrupt_sizes_and_truncation_are_errors() {
    let a = Arena::new();
    // Huge size with only a little data behind it.
    let mut t = RawTar::new();
    t.raw_header(header(b"big", b'0', 0o77777777777, b"", 0o644))
        .data(b"abc");
    let err = apply(&a, &t.bytes).unwrap_err();
    assert!(matches!(err, LayerError::Tar { .. }), "{err}");

    // Negative size in base-256.
    let mut h = header(b"neg", b'0', 0, b"", 0o644);
    h[124..136].copy_from_slice(&[0xff; 12]);
    checksum(&mut h);
    let tar = RawTar::new().raw_header(h).end();
    assert!(apply(&a, &tar).is_err());

    // Garbage in the size field.
    let mut h = header(b"garbage", b'0', 0, b"", 0o644);
    h[124..136].copy_from_slice(b"zzzzzzzzzzz\0");
    checksum(&mut h);
    assert!(apply(&a, &RawTar::new().raw_header(h).end()).is_err());

    // A good tar cut in the middle of a body and in the middle of a header.
    let good = RawTar::new()
        .file("one", &[7u8; 2000])
        .file("two", b"2")
        .end();
    for cut in [700, 512 * 5 + 100] {
        let err = apply(&a, &good[..cut]).unwrap_err();
        assert!(matches!(err, LayerError::Tar { .. }), "cut {cut}: {err}");
    }
    // Bad checksum.
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(apply(&a, &bad).is_err());
    a.assert_outside_untouched();
}

#[test]
fn whiteouts_and_opaque_dirs_follow_the_oci_rules() {
    let a = Arena::new();
    fs::create_dir_all(a.root.join("d/sub")).unwrap();
    fs::write(a.root.join("d/a"), b"lower").unwrap();
    fs::write(a.root.join("d/sub/x"), b"lower").unwrap();
    fs::create_dir_all(a.root.join("gone/deep")).unwrap();
    fs::write(a.root.join("gone/deep/f"), b"x").unwrap();
    fs::write(a.root.join("keep"), b"x").unwrap();
    let tar = RawTar::new()
        .dir("d/")
        .file("d/new-before", b"n")
        .file("d/.wh..wh..opq", b"")
        .file("d/new-after", b"n")
        .file(".wh.gone", b"")
        .file(".wh.never-existed", b"")
        .end();
    let stats = apply(&a, &tar).unwrap();
    assert_eq!(stats.entries, 6);
    let mut names: Vec<_> = fs::read_dir(a.root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["new-after", "new-before"]);
    assert!(!a.root.join("gone").exists());
    assert!(a.root.join("keep").exists());
    assert!(
        !a.root.join(".wh.gone").exists(),
        "whiteout files are not materialised"
    );
}

#[test]
fn type_changes_replace_what_was_there() {
    let a = Arena::new();
    fs::create_dir_all(a.root.join("was-dir/child")).unwrap();
    fs::write(a.root.join("was-file"), b"x").unwrap();
    fs::create_dir(a.root.join("stays-dir")).unwrap();
    fs::write(a.root.join("stays-dir/old"), b"x").unwrap();
    let tar = RawTar::new()
        .file("was-dir", b"now a file")
        .dir("was-file/")
        .file("was-file/inner", b"i")
        .dir("stays-dir/")
        .end();
    apply(&a, &tar).unwrap();
    assert_eq!(fs::read(a.root.join("was-dir")).unwrap(), b"now a file");
    assert_eq!(fs::read(a.root.join("was-file/inner")).unwrap(), b"i");
    assert!(a.root.join("stays-dir/old").exists(), "dir over dir merges");
}

#[test]
fn modes_times_pax_names_and_xattrs_are_applied() {
    let a = Arena::new();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    let tar = RawTar::new()
        .file_mode("suid", b"#!", 0o4755)
        .pax(&[
            ("path", long.as_bytes()),
            ("mtime", b"1234.5"),
            ("SCHILY.xattr.user.test", b"v"),
        ])
        .file("ignored-name", b"long")
        .end();
    let stats = apply(&a, &tar).unwrap();
    let md = fs::metadata(a.root.join("suid")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o4755);
    assert_eq!(md.mtime(), 1_000_000);
    let md = fs::metadata(a.root.join(&long)).unwrap();
    assert_eq!(md.mtime(), 1234);
    assert_eq!(md.mtime_nsec(), 500_000_000);
    assert_eq!(fs::read(a.root.join(&long)).unwrap(), b"long");
    // user xattrs may be unsupported on the test filesystem; then a warning must say so.
    let mut buf = [0u8; 16];
    match rustix::fs::getxattr(a.root.join(&long), "user.test", &mut buf[..]) {
        Ok(n) => assert_eq!(&buf[..n], b"v"),
        Err(_) => assert!(stats.warnings.iter().any(|w| w.contains("user.test"))),
    }
    assert!(!a.root.join("ignored-name").exists());
}

#[test]
fn same_owner_chowns_through_the_id_map() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let a = Arena::new();
    let mut h = header(b"owned", b'0', 1, b"", 0o640);
    h[108..116].copy_from_slice(b"0000012\0"); // uid 10
    h[116..124].copy_from_slice(b"0000024\0"); // gid 20
    checksum(&mut h);
    let tar = RawTar::new().raw_header(h).data(b"x").end();
    let opts = ApplyOptions {
        same_owner: true,
        id_map: Some(rbuild_layer::IdMap::shifted(100_000, 65_536)),
    };
    apply_layer(&a.root, &tar[..], &opts).unwrap();
    let md = fs::metadata(a.root.join("owned")).unwrap();
    assert_eq!((md.uid(), md.gid()), (100_010, 100_020));
    assert_eq!(md.mode() & 0o7777, 0o640);
}

#[test]
fn read_only_dirs_get_their_mode_after_their_children() {
    let a = Arena::new();
    let mut t = RawTar::new();
    t.raw_header(header(b"ro/", b'5', 0, b"", 0o555));
    let tar = t.file("ro/child", b"c").end();
    apply(&a, &tar).unwrap();
    assert_eq!(fs::read(a.root.join("ro/child")).unwrap(), b"c");
    let md = fs::metadata(a.root.join("ro")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o555);
    assert_eq!(md.mtime(), 1_000_000, "dir mtime set after its children");
}

#[test]
fn whiteout_removes_deep_trees_without_following_symlinks() {
    let a = Arena::new();
    let mut deep = a.root.join("gone");
    for _ in 0..200 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("f"), b"x").unwrap();
    std::os::unix::fs::symlink(&a.outside, a.root.join("gone/link-out")).unwrap();
    let tar = RawTar::new().file(".wh.gone", b"").end();
    apply(&a, &tar).unwrap();
    assert!(!a.root.join("gone").exists());
    a.assert_outside_untouched();
}
