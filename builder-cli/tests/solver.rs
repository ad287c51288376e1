//! The solver as a user sees it: independent stages run at the same time, identical steps run
//! once, a failing step stops its siblings, SIGTERM leaves a clean store, and a cache miss says
//! why.
//!
//! Overlap is proven without timing: two steps meet at a rendezvous in a shared cache mount, each
//! waiting (boundedly) for the other's mark, which only works if both run at once.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::*;

/// A step that marks `me` in the shared cache mount /sync, then waits up to `secs` seconds for
/// `other`'s mark and fails without it.
fn rendezvous(me: &str, other: &str, secs: u32) -> String {
    format!(
        "RUN --mount=type=cache,id=sync,target=/sync,sharing=shared \
         touch /sync/{me} && i=0; while [ ! -e /sync/{other} ]; do \
         i=$((i+1)); [ $i -gt {ticks} ] && echo no-{other} && exit 7; sleep 0.1; done; \
         echo {me} > /{me}",
        ticks = secs * 10
    )
}

fn write_ctx(dir: &Path, dockerfile: &str) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let df = format!(
        "FROM bb:1 AS left\n{}\n\
         FROM bb:1 AS right\n{}\n\
         FROM bb:1\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n",
        rendezvous("left", "right", 60),
        rendezvous("right", "left", 60),
    );
    let ctx = write_ctx(dir.path(), &df);
    let out_dir = dir.path().join("out");
    run_ok(
        rbuild(&store)
            .args(["build", "--progress=plain", "--jobs", "2", "-o"])
            .arg(format!("type=local,dest={}", out_dir.display()))
            .arg(&ctx),
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("left")).unwrap(),
        "left\n"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("right")).unwrap(),
        "right\n"
    );
}

#[test]
fn identical_steps_of_two_stages_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let step =
        "RUN --mount=type=cache,id=count,target=/count echo ran >> /count/log && echo x > /x";
    let df = format!(
        "FROM bb:1 AS one\n{step}\n\
         FROM bb:1 AS two\n{step}\n\
         FROM bb:1\nCOPY --from=one /x /one\nCOPY --from=two /x /two\n\
         RUN --mount=type=cache,id=count,target=/count wc -l < /count/log > /runs\n"
    );
    let ctx = write_ctx(dir.path(), &df);
    let out_dir = dir.path().join("out");
    run_ok(
        rbuild(&store)
            .args(["build", "--progress=plain", "-o"])
            .arg(format!("type=local,dest={}", out_dir.display()))
            .arg(&ctx),
    );
    let runs = std::fs::read_to_string(out_dir.join("runs")).unwrap();
    assert_eq!(runs.trim(), "1", "the shared step ran {runs} times");
}

#[test]
fn a_failing_step_cancels_the_running_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    // `slow` marks the rendezvous and sleeps; `bad` fails once `slow` is running.
    let df = "FROM bb:1 AS slow\n\
         RUN --mount=type=cache,id=sync2,target=/sync touch /sync/slow && sleep 120\n\
         FROM bb:1 AS bad\n\
         RUN --mount=type=cache,id=sync2,target=/sync i=0; while [ ! -e /sync/slow ]; do \
         i=$((i+1)); [ $i -gt 600 ] && exit 9; sleep 0.1; done; exit 3\n\
         FROM bb:1\nCOPY --from=slow / /s\nCOPY --from=bad / /b\n";
    let ctx = write_ctx(dir.path(), df);
    let out = rbuild(&store)
        .args(["build", "--progress=plain", "--jobs", "2"])
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("exit code: 3"),
        "not the failing step's error: {err}"
    );
    assert!(
        err.contains("CANCELED"),
        "the sleeping step was not cancelled: {err}"
    );
    // The step's pid namespace was killed; the kernel reaps its processes right after (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Some(pid) = processes_with_cmdline("sleep 120").first() {
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled step's process outlived the build: {}",
            std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
        );
        std::thread::yield_now();
    }
    assert!(
        mounts_under(&store).is_empty(),
        "{:?}",
        mounts_under(&store)
    );
}

#[test]
fn sigterm_mid_build_leaves_a_clean_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = write_ctx(dir.path(), "FROM bb:1\nRUN echo started-step && sleep 97\n");
    let mut child = rbuild(&store)
        .args(["build", "--progress=plain"])
        .arg(&ctx)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    assert!(
        lines
            .by_ref()
            .any(|l| l.unwrap().ends_with(" started-step")),
        "the step never started"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while processes_with_cmdline("sleep 97").is_empty() {
        assert!(std::time::Instant::now() < deadline, "no sleep process");
        std::thread::yield_now();
    }
    // SAFETY: signalling a child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("build cancelled")),
        "{rest:?}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes_with_cmdline("sleep 97").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step's process outlived the build"
        );
        std::thread::yield_now();
    }
    assert!(
        mounts_under(&store).is_empty(),
        "{:?}",
        mounts_under(&store)
    );
    let tmp = store.join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch directories left: {left:?}");
    // The store works afterwards.
    std::fs::write(ctx.join("Dockerfile"), "FROM bb:1\nRUN echo ok > /ok\n").unwrap();
    run_ok(rbuild(&store).args(["build", "-q"]).arg(&ctx));
}

/// Per step of a plain-progress log: "CACHED", or the cache-miss reason.
fn outcomes(log: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in log.lines() {
        if line.ends_with(" CACHED") {
            out.push("CACHED".to_string());
        } else if let Some((_, why)) = line.split_once(" cache miss: ") {
            out.push(why.to_string());
        }
    }
    out
}

#[test]
fn a_rebuild_explains_every_cache_miss() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = write_ctx(
        dir.path(),
        "FROM bb:1\nARG V=1\nCOPY a.txt /a\nCOPY src/ /src/\nRUN echo $V > /v\nRUN cat /src/app.py\n",
    );
    std::fs::write(ctx.join("a.txt"), "a").unwrap();
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    std::fs::write(ctx.join("src/app.py"), "print(1)\n").unwrap();
    std::fs::write(ctx.join("src/util.py"), "x = 1\n").unwrap();
    let build = |extra: &[&str]| {
        let out = run_ok(
            rbuild(&store)
                .args(["build", "--progress=plain"])
                .args(extra)
                .arg(&ctx),
        );
        outcomes(&String::from_utf8_lossy(&out.stderr))
    };
    assert_eq!(build(&[]), vec!["first build of this step"; 4]);
    assert_eq!(build(&[]), vec!["CACHED"; 4]);

    std::fs::write(ctx.join("src/app.py"), "print(2)\n").unwrap();
    // --explain tells the same without building.
    let explained = run_ok(rbuild(&store).args(["build", "--explain"]).arg(&ctx));
    let explained = String::from_utf8_lossy(&explained.stdout).into_owned();
    assert!(
        explained.contains("COPY src/ /src/: runs: 1 file changed in the context: src/app.py"),
        "{explained}"
    );
    assert!(explained.contains("COPY a.txt /a: CACHED"), "{explained}");
    assert!(
        explained.contains("RUN echo $V > /v: runs: a step it depends on runs"),
        "{explained}"
    );
    assert_eq!(
        build(&[]),
        [
            "CACHED",
            "1 file changed in the context: src/app.py",
            "the step before it changed",
            "the step before it changed"
        ]
    );
    assert_eq!(
        build(&["--build-arg", "V=2"]),
        [
            "CACHED",
            "CACHED",
            "build argument V changed",
            "the step before it changed"
        ]
    );
    assert_eq!(build(&["--no-cache"]), vec!["--no-cache"; 4]);
}

#[test]
fn copy_and_workdir_layers_do_not_depend_on_when_they_were_built() {
    // Two runners: two stores from the same base, the same context, builds at different times.
    let dir = tempfile::tempdir().unwrap();
    let tar = busybox_tar(dir.path());
    let ctx = write_ctx(
        dir.path(),
        "FROM bb:1\nCOPY a.txt /app/sub/a.txt\nCOPY a.txt /etc/\nWORKDIR /srv/www\n",
    );
    std::fs::write(ctx.join("a.txt"), "a\n").unwrap();
    let mut images = Vec::new();
    for runner in ["one", "two"] {
        let rdir = dir.path().join(runner);
        std::fs::create_dir_all(&rdir).unwrap();
        let store = store_with_base_tar(&tar, &rdir);
        run_ok(rbuild(&store).args(["build", "-q", "-t", "c:1"]).arg(&ctx));
        let saved = rdir.join("c.tar");
        run_ok(rbuild(&store).args(["save", "-o"]).arg(&saved).arg("c:1"));
        images.push(read_docker_archive(&saved));
    }
    assert_eq!(
        images[0].config["rootfs"], images[1].config["rootfs"],
        "the same COPY or WORKDIR gave different layers"
    );
    for dir in ["app", "app/sub", "etc", "srv", "srv/www"] {
        let e = images[0]
            .tree
            .iter()
            .find(|e| e.path == dir)
            .unwrap_or_else(|| panic!("{dir} missing"));
        assert_eq!(e.mtime, 0, "{dir} has the build's time");
    }
}
