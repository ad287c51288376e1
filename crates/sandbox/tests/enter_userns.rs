//! `rbuild_sandbox::enter_user_namespace` as a program's `main` calls it: this test has no harness
//! (its `main` is single-threaded, as a real program's is at start-up). Run as root by `cargo
//! test`, it re-runs itself as the unprivileged test users (scripts/test-users.sh makes them) in
//! three roles and checks what each one printed:
//! - `rbuildtest` (subuid range 100000:65536), single-threaded: becomes uid 0 of a namespace with
//!   the range mapped, can chown to a subordinate id and mount overlay with `userxattr` in its
//!   private mount namespace; a second call says it is already root.
//! - `rbuildtest` with a second thread running: refused with an error that says why, and the
//!   process is left as it was.
//! - `rbuildnosub` (no ranges): told the namespace is unavailable and why, nothing changed.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use rbuild_sandbox::{enter_user_namespace, in_user_namespace, UserNamespace};

const ROLE: &str = "RBUILD_ENTER_USERNS_ROLE";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("single") => single(),
        Ok("threads") => threads(),
        _ => driver(),
    }
}

fn driver() {
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-users.sh");
    let st = Command::new("bash").arg(scripts).status().unwrap();
    assert!(st.success(), "{scripts} failed");
    // The test binary may live where the test users cannot read: run a copy from /tmp.
    let dir = tempfile::Builder::new()
        .prefix("rbuild-enter-userns-")
        .tempdir_in("/tmp")
        .unwrap();
    let exe = dir.path().join("enter_userns");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    for p in [dir.path(), exe.as_path()] {
        let st = Command::new("chmod").arg("755").arg(p).status().unwrap();
        assert!(st.success());
    }
    let run = |user: &str, role: &str| -> String {
        let out = Command::new("runuser")
            .args(["-u", user, "--", "env", &format!("{ROLE}={role}")])
            .arg(&exe)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{role} as {user}: {}\nstdout: {text}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };

    let single = run("rbuildtest", "single");
    for want in [
        "entered host_uid",
        "uid 0",
        "uid_map 1 100000 65536",
        "chown 42:42 ok",
        "overlay userxattr ok",
        "again AlreadyRoot",
    ] {
        assert!(single.contains(want), "missing {want:?} in:\n{single}");
    }
    let threads = run("rbuildtest", "threads");
    assert!(
        threads.contains("refused") && threads.contains("single-threaded"),
        "{threads}"
    );
    assert!(threads.contains("still not root"), "{threads}");
    let nosub = run("rbuildnosub", "single");
    assert!(
        nosub.contains("unavailable: no subordinate id ranges for user rbuildnosub"),
        "{nosub}"
    );
    println!("enter_user_namespace: 3 roles checked");
}

fn single() {
    match enter_user_namespace() {
        Ok(UserNamespace::Entered { host_uid, .. }) => println!("entered host_uid {host_uid}"),
        Ok(UserNamespace::Unavailable(why)) => {
            println!("unavailable: {why}");
            return;
        }
        other => panic!("unexpected {other:?}"),
    }
    // SAFETY: getuid cannot fail.
    println!("uid {}", unsafe { libc::getuid() });
    assert!(in_user_namespace());
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap();
    let fields: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for f in &fields {
        println!("uid_map {}", f.join(" "));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    std::os::unix::fs::chown(&file, Some(42), Some(42)).unwrap();
    let m = std::fs::metadata(&file).unwrap();
    if (m.uid(), m.gid()) == (42, 42) {
        println!("chown 42:42 ok");
    }
    let sub = |n: &str| {
        let p = dir.path().join(n);
        std::fs::create_dir(&p).unwrap();
        p
    };
    let (lower, upper, work, merged) = (sub("l"), sub("u"), sub("w"), sub("m"));
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.display(),
        upper.display(),
        work.display()
    );
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .unwrap();
    if st.success() {
        std::fs::write(merged.join("new"), "y").unwrap();
        if upper.join("new").exists() {
            println!("overlay userxattr ok");
        }
        let _ = Command::new("umount").arg(&merged).status();
    }
    match enter_user_namespace() {
        Ok(UserNamespace::AlreadyRoot) => println!("again AlreadyRoot"),
        other => println!("again {other:?}"),
    }
}

fn threads() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || rx.recv());
    match enter_user_namespace() {
        Err(e) => println!("refused: {e}"),
        Ok(other) => println!("accepted: {other:?}"),
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 && !in_user_namespace() {
        println!("still not root");
    }
    drop(tx);
    let _ = t.join();
}
