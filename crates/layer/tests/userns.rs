//! The applier running as uid 0 inside a user namespace with a single-id map, the way rootless
//! builds run it: device nodes other than the overlay whiteout cannot be created and ids outside
//! the map cannot be given to files. Each test re-runs itself under `unshare -r` (map "0 <uid> 1")
//! and does the real work in that child.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use common::{checksum, header, Arena, RawTar};
use rbuild_layer::{apply_layer, ApplyOptions};

const CHILD_ENV: &str = "RBUILD_LAYER_USERNS_CHILD";

fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

/// A header with explicit owner and device numbers.
fn header_ids(name: &str, typ: u8, uid: u64, gid: u64, dev: (u64, u64)) -> [u8; 512] {
    let mut h = header(name.as_bytes(), typ, 0, b"", 0o644);
    octal(&mut h[108..116], uid);
    octal(&mut h[116..124], gid);
    octal(&mut h[329..337], dev.0);
    octal(&mut h[337..345], dev.1);
    checksum(&mut h);
    h
}

/// Runs `test` again in a child under `unshare -r` and asserts it passed there; returns true when
/// this process is that child and should do the work.
fn in_userns(test: &str) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        return true;
    }
    if !Command::new("unshare")
        .args(["-r", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        panic!("{test}: `unshare -r` failed: unprivileged user namespaces are needed here");
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("-r")
        .arg(&exe)
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child in the user namespace failed:\n{stdout}\n{stderr}"
    );
    false
}

#[test]
fn devices_are_skipped_and_counted_but_whiteouts_are_made() {
    if !in_userns("devices_are_skipped_and_counted_but_whiteouts_are_made") {
        return;
    }
    let a = Arena::new();
    let tar = RawTar::new()
        .dir("dev")
        .raw_header(header_ids("dev/null", b'3', 0, 0, (1, 3)))
        .raw_header(header_ids("dev/sda", b'4', 0, 0, (8, 0)))
        .raw_header(header_ids("dev/wh", b'3', 0, 0, (0, 0)))
        .raw_header(header_ids("dev/fifo", b'6', 0, 0, (0, 0)))
        .file("after", b"still applied")
        .end();
    let stats = apply_layer(
        &a.root,
        &tar[..],
        &ApplyOptions {
            same_owner: true,
            id_map: None,
        },
    )
    .unwrap();
    assert_eq!(stats.skipped_devices, 2, "{stats:?}");
    assert_eq!(stats.unmapped_owners, 0, "{stats:?}");
    assert!(!a.root.join("dev/null").exists());
    assert!(!a.root.join("dev/sda").exists());
    assert!(stats.warnings.iter().any(|w| w.starts_with("dev/null:")));
    assert!(stats.warnings.iter().any(|w| w.starts_with("dev/sda:")));
    let wh = fs::symlink_metadata(a.root.join("dev/wh")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(fs::symlink_metadata(a.root.join("dev/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(fs::read(a.root.join("after")).unwrap(), b"still applied");
    a.assert_outside_untouched();
}

#[test]
fn unmapped_owners_fall_back_to_the_applying_user() {
    if !in_userns("unmapped_owners_fall_back_to_the_applying_user") {
        return;
    }
    let a = Arena::new();
    let mut dir = header_ids("home/", b'5', 1000, 1000, (0, 0));
    octal(&mut dir[100..108], 0o750);
    checksum(&mut dir);
    let mut file = header_ids("home/f", b'0', 1000, 0, (0, 0));
    octal(&mut file[124..136], 2);
    checksum(&mut file);
    let tar = RawTar::new()
        .raw_header(dir)
        .raw_header(file)
        .data(b"hi")
        .raw_header({
            let mut h = header_ids("home/l", b'2', 0, 1000, (0, 0));
            h[157..158].copy_from_slice(b"f");
            checksum(&mut h);
            h
        })
        .raw_header(header_ids("mine", b'0', 0, 0, (0, 0)))
        .raw_header({
            // setuid, owned by an unmapped uid: must not become setuid to the applying user.
            let mut h = header_ids("suid", b'0', 1000, 0, (0, 0));
            octal(&mut h[100..108], 0o4755);
            checksum(&mut h);
            h
        })
        .end();
    let stats = apply_layer(
        &a.root,
        &tar[..],
        &ApplyOptions {
            same_owner: true,
            id_map: None,
        },
    )
    .unwrap();
    assert_eq!(stats.unmapped_owners, 4, "{stats:?}");
    // Warned once for the layer, naming the first path and the unmapped id only.
    let w: Vec<_> = stats
        .warnings
        .iter()
        .filter(|w| w.contains("not mapped"))
        .collect();
    assert_eq!(w.len(), 1, "{:?}", stats.warnings);
    assert!(
        w[0].starts_with("home/:") && w[0].contains("uid 1000") && w[0].contains("gid 1000"),
        "{}",
        w[0]
    );
    let me = rustix::process::geteuid().as_raw();
    for p in ["home", "home/f", "home/l", "mine"] {
        let md = fs::symlink_metadata(a.root.join(p)).unwrap();
        assert_eq!((md.uid(), md.gid()), (me, 0), "{p}");
    }
    let suid = fs::metadata(a.root.join("suid")).unwrap();
    assert_eq!(
        suid.mode() & 0o7777,
        0o755,
        "setuid bit kept on an unmapped owner's file"
    );
    let home = fs::metadata(a.root.join("home")).unwrap();
    assert_eq!(home.mode() & 0o7777, 0o750);
    assert_eq!(fs::read(a.root.join("home/f")).unwrap(), b"hi");
    a.assert_outside_untouched();
}
