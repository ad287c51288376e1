//! Rootless runs: the tests run as root, so they create unprivileged users (the same commands
//! as scripts/test-users.sh) and run the `sandbox-run` example as those users with `setpriv`.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const WITH_RANGE: &str = "rbuildtest";
const NO_RANGE: &str = "rbuildnosub";
const RANGE_START: u32 = 100000;

/// Idempotently creates the test users and the subordinate range of `rbuildtest` (and none
/// for `rbuildnosub`). Mirrors scripts/test-users.sh.
fn setup_users() -> &'static (u32, u32) {
    static USERS: OnceLock<(u32, u32)> = OnceLock::new();
    USERS.get_or_init(|| {
        for u in [WITH_RANGE, NO_RANGE] {
            if uid_of(u).is_none() {
                let st = Command::new("useradd")
                    .args(["--create-home", "--shell", "/bin/sh", u])
                    .status()
                    .unwrap();
                assert!(st.success(), "useradd {u}");
            }
        }
        for f in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{NO_RANGE}:")))
                .map(str::to_string)
                .collect();
            if !lines
                .iter()
                .any(|l| l.starts_with(&format!("{WITH_RANGE}:")))
            {
                lines.push(format!("{WITH_RANGE}:{RANGE_START}:65536"));
            }
            let mut new = lines.join("\n");
            new.push('\n');
            if new != text {
                std::fs::write(f, new).unwrap();
            }
        }
        (uid_of(WITH_RANGE).unwrap(), uid_of(NO_RANGE).unwrap())
    })
}

fn uid_of(user: &str) -> Option<u32> {
    let out = Command::new("id").args(["-u", user]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// The `sandbox-run` example, which `cargo test` builds next to the test binaries, copied
/// where any user can execute it.
fn example_bin(dir: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let src = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/sandbox-run");
    if !src.is_file() {
        // `cargo test --test rootless` alone does not build examples: build it now.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let target_dir = exe.ancestors().nth(3).unwrap();
        let st = Command::new(cargo)
            .args(["build", "-p", "rbuild-sandbox", "--example", "sandbox-run"])
            .arg("--target-dir")
            .arg(target_dir)
            .status()
            .unwrap();
        assert!(st.success(), "building the sandbox-run example failed");
    }
    assert!(src.is_file(), "{} not built", src.display());
    let dst = dir.join("sandbox-run");
    std::fs::copy(&src, &dst).unwrap();
    dst
}

fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

struct Run {
    stdout: String,
    stderr: String,
}

impl Run {
    fn result_line(&self) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with("RESULT ") || l.starts_with("ERROR "))
            .unwrap_or("")
    }
    fn warnings(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("WARNING "))
            .collect()
    }
}

/// Runs `sandbox-run ARGS` as `uid` (its primary gid equals its uid for useradd'd users).
fn run_as(uid: u32, bin: &Path, args: &[&str]) -> Run {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(bin)
        .args(args)
        .env("TMPDIR", "/tmp")
        .current_dir("/")
        .output()
        .unwrap();
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temp dir owned by `uid` holding the example binary and a busybox rootfs at `root`.
fn user_tree(uid: u32) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let bin = example_bin(t.path());
    let root = t.path().join("root");
    common::busybox_rootfs(&root);
    chown_tree(t.path(), uid);
    (t, bin, root)
}

#[test]
fn subuid_user_is_root_inside_and_chown_works() {
    let &(uid, _) = setup_users();
    let (_t, bin, root) = user_tree(uid);
    let r = run_as(
        uid,
        &bin,
        &[
            "--dir",
            root.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "id -u; id -g; touch /tmp/mine /tmp/other; chown 1:1 /tmp/other; \
             chown 1000:1000 /tmp/mine2 2>/dev/null; mkdir /tmp/d && chown 65535:65535 /tmp/d; \
             echo rc=$?; grep CapBnd /proc/self/status | tr -d '\\t'",
        ],
    );
    assert_eq!(
        r.result_line(),
        "RESULT code=0 signal=-",
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // Docker's default capability set, MKNOD included (the user namespace forbids real
    // device nodes anyway).
    assert!(
        r.stdout
            .starts_with("0\n0\nrc=0\nCapBnd:00000000a80425fb\n"),
        "{}",
        r.stdout
    );
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    let m = std::fs::metadata(root.join("tmp/mine")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (uid, uid),
        "container root is the caller"
    );
    let o = std::fs::metadata(root.join("tmp/other")).unwrap();
    assert_eq!(
        (o.uid(), o.gid()),
        (RANGE_START, RANGE_START),
        "container 1 -> first subuid"
    );
    let d = std::fs::metadata(root.join("tmp/d")).unwrap();
    assert_eq!(d.uid(), RANGE_START + 65534);
    // Mount stubs were cleaned by the (unprivileged) caller.
    assert!(!root.join("proc").exists() && !root.join("etc/hosts").exists());
}

#[test]
fn subuid_user_can_run_steps_as_another_user() {
    let &(uid, _) = setup_users();
    let (_t, bin, root) = user_tree(uid);
    let r = run_as(
        uid,
        &bin,
        &[
            "--uid",
            "1000",
            "--gid",
            "1000",
            "--dir",
            root.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "id -u; touch /tmp/by1000",
        ],
    );
    assert_eq!(
        r.result_line(),
        "RESULT code=0 signal=-",
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.starts_with("1000\n"), "{}", r.stdout);
    let m = std::fs::metadata(root.join("tmp/by1000")).unwrap();
    assert_eq!(m.uid(), RANGE_START + 999);
}

#[test]
fn no_ranges_gives_single_map_and_a_warning() {
    let &(_, uid) = setup_users();
    let (_t, bin, root) = user_tree(uid);
    let r = run_as(
        uid,
        &bin,
        &[
            "--net-none",
            "--dir",
            root.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "id -u; touch /tmp/f; chown 1:1 /tmp/f 2>/dev/null; echo chown=$?; \
             tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ls /sys/class/net",
        ],
    );
    assert_eq!(
        r.result_line(),
        "RESULT code=0 signal=-",
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.starts_with("0\nchown=1\nlo\nlo\n"), "{}", r.stdout);
    let w = r.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("no subordinate id ranges") && w[0].contains("chown"),
        "{}",
        w[0]
    );
    let m = std::fs::metadata(root.join("tmp/f")).unwrap();
    assert_eq!(m.uid(), uid);

    // A USER other than root cannot be entered with a single map: a clear set-up error.
    let r = run_as(
        uid,
        &bin,
        &[
            "--uid",
            "1000",
            "--dir",
            root.to_str().unwrap(),
            "--",
            "true",
        ],
    );
    assert!(
        r.result_line().starts_with("ERROR ") && r.result_line().contains("setuid(1000)"),
        "{}",
        r.stdout
    );
}

#[test]
fn rootless_overlay_writes_upper_with_whiteouts() {
    let &(uid, _) = setup_users();
    let (t, bin, lower) = user_tree(uid);
    std::fs::write(lower.join("etc/gone"), "bye").unwrap();
    let upper = t.path().join("upper");
    let work = t.path().join("work");
    for d in [&upper, &work] {
        std::fs::create_dir(d).unwrap();
    }
    chown_tree(t.path(), uid);
    let spec = format!("{},{},{}", lower.display(), upper.display(), work.display());
    let r = run_as(
        uid,
        &bin,
        &[
            "--overlay",
            &spec,
            "--",
            "sh",
            "-c",
            "echo new > /tmp/new; rm /etc/gone; chown 5:5 /tmp/new; test ! -e /etc/gone",
        ],
    );
    assert_eq!(
        r.result_line(),
        "RESULT code=0 signal=-",
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/new")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::metadata(upper.join("tmp/new")).unwrap().uid(),
        RANGE_START + 4
    );
    let wh = std::fs::symlink_metadata(upper.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device(), "whiteout in upper");
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        std::fs::read_to_string(lower.join("etc/gone")).unwrap(),
        "bye"
    );
    assert!(!lower.join("tmp/new").exists());
    assert!(!upper.join("proc").exists() && !upper.join("etc/hosts").exists());
}

#[test]
fn rootless_background_processes_do_not_outlive_the_step() {
    let &(uid, _) = setup_users();
    let (_t, bin, root) = user_tree(uid);
    let needle = format!("{}", 700_000 + std::process::id() % 100_000);
    let script = format!("sleep {needle} & ps | tail -n +2 | wc -l");
    let r = run_as(
        uid,
        &bin,
        &["--dir", root.to_str().unwrap(), "--", "sh", "-c", &script],
    );
    assert_eq!(
        r.result_line(),
        "RESULT code=0 signal=-",
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    // sh, sleep, ps, tail, wc — and nothing from the host.
    let n: u32 = r.stdout.lines().next().unwrap().trim().parse().unwrap();
    assert!((3..=5).contains(&n), "{}", r.stdout);
    assert_eq!(
        common::host_pids_with(&format!("sleep {needle}")),
        Vec::<u32>::new()
    );
}

#[test]
fn probe_as_unprivileged_users() {
    let &(with, without) = setup_users();
    let t = tempfile::tempdir().unwrap();
    let bin = example_bin(t.path());
    chown_tree(t.path(), with);
    let r = run_as(with, &bin, &["--probe"]);
    assert!(
        r.stdout.contains("is_root=false"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("subuid=100000+65536"), "{}", r.stdout);
    assert!(r.stdout.contains("overlay_in_userns=true"), "{}", r.stdout);
    let r = run_as(without, &bin, &["--probe"]);
    assert!(r.stdout.contains("subuid=\n"), "{}", r.stdout);
    assert!(r.stdout.contains("NOTE no /etc/subuid"), "{}", r.stdout);
}

/// Without a namespace of its own, an unprivileged caller gives a file a subordinate owner and
/// changes it afterwards, and copies a tree with such owners (unreadable to it) keeping them,
/// through root of a user namespace with the steps' map; ids the map lacks fail with the path.
#[test]
fn subuid_user_sets_owners_and_copies_trees_in_the_namespace() {
    let &(uid, _) = setup_users();
    let (t, bin, _root) = user_tree(uid);
    let file = t.path().join("f");
    std::fs::write(&file, "x").unwrap();
    std::os::unix::fs::lchown(&file, Some(uid), Some(uid)).unwrap();
    let path = file.to_str().unwrap();
    let r = run_as(uid, &bin, &["--set-owner-mode", path, "1000:50", "640"]);
    assert_eq!(r.result_line(), "RESULT ok", "{}{}", r.stdout, r.stderr);
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (RANGE_START + 999, RANGE_START + 49, 0o640)
    );
    // No longer the caller's: only the namespace's root may change its mode again.
    let r = run_as(uid, &bin, &["--set-owner-mode", path, "-", "600"]);
    assert_eq!(r.result_line(), "RESULT ok", "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);

    let src = t.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/secret"), "s").unwrap();
    std::fs::set_permissions(src.join("sub"), std::fs::Permissions::from_mode(0o700)).unwrap();
    chown_tree(&src, RANGE_START + 4);
    let dest = t.path().join("dest");
    let r = run_as(
        uid,
        &bin,
        &["--copy-tree", src.to_str().unwrap(), dest.to_str().unwrap()],
    );
    assert_eq!(r.result_line(), "RESULT ok", "{}{}", r.stdout, r.stderr);
    let m = std::fs::metadata(dest.join("sub")).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (RANGE_START + 4, 0o700));
    assert_eq!(std::fs::read(dest.join("sub/secret")).unwrap(), b"s");

    let r = run_as(
        uid,
        &bin,
        &["--single", "--set-owner-mode", path, "7:7", "600"],
    );
    assert!(r.result_line().starts_with("ERROR "), "{}", r.stdout);
    assert!(r.stdout.contains(path), "{}", r.stdout);
}
