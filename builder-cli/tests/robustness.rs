//! The store under stress: concurrent builds into one store, and a build killed in the middle of a
//! step, after which the store must work without complaint and leave nothing mounted.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;

#[test]
fn concurrent_builds_share_one_store() {
    let store = store_with_base();
    let contexts: Vec<tempfile::TempDir> = (0..3)
        .map(|i| {
            let ctx = tempfile::tempdir().unwrap();
            std::fs::write(ctx.path().join("f.txt"), format!("file {i}\n")).unwrap();
            std::fs::write(
                ctx.path().join("Dockerfile"),
                format!(
                    "FROM {BUSYBOX}\nCOPY f.txt /f.txt\nRUN echo run {i} > /r.txt && cat /f.txt\n\
                     RUN true\n"
                ),
            )
            .unwrap();
            ctx
        })
        .collect();
    let children: Vec<_> = contexts
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            rbuild(store.path())
                .args(["-q", "-t", &format!("conc:{i}")])
                .arg(ctx.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "build {i} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let work = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let tar = work.path().join(format!("{i}.tar"));
        run_ok(
            rbuild(store.path())
                .args(["save", &format!("conc:{i}"), "-o"])
                .arg(&tar),
        );
        let img = read_docker_archive(&tar);
        let f = img.tree.iter().find(|e| e.path == "f.txt").unwrap();
        assert_eq!(f.size, format!("file {i}\n").len() as u64);
    }
    assert!(mounts_under(store.path()).is_empty());
}

#[test]
fn a_killed_build_leaves_a_usable_store() {
    let store = store_with_base();
    let ctx = tempfile::tempdir().unwrap();
    let big = ctx.path().join("big");
    std::fs::create_dir(&big).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    for i in 0..3000 {
        std::fs::write(big.join(format!("f{i}")), &chunk).unwrap();
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY big /big\nRUN sleep 30\n"),
    )
    .unwrap();
    // Kill at two moments: while COPY runs (engine-side overlay mount) and while RUN runs.
    for marker in ["COPY big /big", "RUN sleep 30"] {
        let mut child = rbuild(store.path())
            .args(["--progress", "plain", "-t", "killed:1"])
            .arg(ctx.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains(marker) && line.contains('[') {
                seen = true;
                break;
            }
        }
        assert!(seen, "the build never reached {marker}");
        // Wait (bounded) for the state worth killing: the engine's overlay mount during COPY, the
        // step's process during RUN.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let ready = || match marker {
            "COPY big /big" => !mounts_under(store.path()).is_empty(),
            _ => !processes_with_cmdline("sleep 30").is_empty(),
        };
        while !ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "never saw the state for {marker}"
            );
            std::thread::yield_now();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if marker.starts_with("RUN") {
            // The step dies with the build (no process outlives it): bounded wait for the kernel.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !processes_with_cmdline("sleep 30").is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the RUN step outlived its build"
                );
                std::thread::yield_now();
            }
        }

        // The next command opens the store without complaint and cleans up after the dead build.
        let images = run_ok(rbuild(store.path()).arg("images"));
        assert!(!String::from_utf8_lossy(&images.stdout).contains("killed"));
        assert!(
            mounts_under(store.path()).is_empty(),
            "mounts left after killing at {marker}: {:?}",
            mounts_under(store.path())
        );
    }
    // And a full build in the same store works.
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {BUSYBOX}\nCOPY big /big\nRUN ls /big | wc -l > /count\n"),
    )
    .unwrap();
    run_ok(
        rbuild(store.path())
            .args(["-q", "-t", "after:1"])
            .arg(ctx.path()),
    );
    let leftovers: Vec<_> = std::fs::read_dir(store.path().join("tmp"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "scratch left behind: {leftovers:?}");
}
