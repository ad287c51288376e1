//! Containers (issue 11): the session `build`, `run -v -w -e`, a detached container and `exec`,
//! `ps -a`, `commit`, `save`, then `docker load` + `docker run` of the committed image; detached
//! containers surviving the CLI, `logs`, `stop`; a kill -9 of rbuild leaving no half record; bad
//! input refused without changing anything.
//!
//! Needs root (containers mount overlayfs), busybox-static, and for the session debootstrap
//! with the Debian mirror and the test dockerd (scripts/dockerd.sh); fails loudly without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs rbuild with `args` on `store`; returns (exit code, stdout, stderr).
fn rb(store: &Path, args: &[&str]) -> (i32, String, String) {
    let o = rbuild(store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    (o.status.code().unwrap_or(-1), out, err)
}

fn rb_ok(store: &Path, args: &[&str]) -> String {
    let (code, out, err) = rb(store, args);
    assert_eq!(
        code, 0,
        "rbuild {args:?} failed:\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

/// Polls `cond` until it holds or 60 s pass (then fails with `what`).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ps -a` rows as (name, status) pairs.
fn ps_rows(store: &Path) -> Vec<(String, String)> {
    let out = rb_ok(store, &["ps", "-a"]);
    let mut lines = out.lines();
    let header = lines.next().expect("ps prints a header");
    assert!(
        header.starts_with("CONTAINER ID")
            && ["IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]
                .iter()
                .all(|c| header.contains(c)),
        "ps header: {header}"
    );
    let status_at = header.find("STATUS").unwrap();
    let ports_at = header.find("PORTS").unwrap();
    lines
        .map(|l| {
            let name = l.split_whitespace().last().unwrap_or_default().to_string();
            let status = l
                .get(status_at..ports_at)
                .unwrap_or_default()
                .trim()
                .to_string();
            (name, status)
        })
        .collect()
}

fn status_of(store: &Path, name: &str) -> Option<String> {
    ps_rows(store)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
}

/// Every container record in the store parses and no creation or removal is half done.
fn assert_store_consistent(store: &Path) {
    let dir = store.join("containers");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return; // killed before it made any
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "names" {
            continue;
        }
        if name.starts_with(".create-") {
            // A create killed mid-way leaves its temp dir; it is never listed. Fine, but
            // it must not be a listed container.
            continue;
        }
        let rec = e.path().join("container.json");
        let bytes = std::fs::read(&rec).unwrap_or_else(|err| panic!("{}: {err}", rec.display()));
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|err| panic!("half-written record {}: {err}", rec.display()));
        assert_eq!(v["id"].as_str(), Some(name.as_str()));
    }
}

#[test]
fn session_on_debian_build_run_exec_ps_commit_save_and_docker_run() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let rootfs = work.path().join("bookworm-rootfs.tar");
    let out = Command::new(repo_root().join("scripts/make-bookworm.sh"))
        .arg(&rootfs)
        .output()
        .expect("cannot run scripts/make-bookworm.sh");
    assert!(
        out.status.success(),
        "scripts/make-bookworm.sh failed: debootstrap or the Debian mirror is unavailable, and this \
         test needs both.\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rb_ok(
        &store,
        &["import", rootfs.to_str().unwrap(), "bookworm:test"],
    );
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bookworm:test\nRUN echo built > /built\nWORKDIR /srv\nCMD [\"bash\"]\n",
    )
    .unwrap();
    rb_ok(
        &store,
        &[
            "build",
            "-f",
            ctx.join("Dockerfile").to_str().unwrap(),
            "-t",
            "detection:1.0",
            ctx.to_str().unwrap(),
        ],
    );

    // run --rm with the code mounted: reads and writes the host directory.
    let code_dir = work.path().join("detection");
    std::fs::create_dir(&code_dir).unwrap();
    std::fs::write(code_dir.join("input.txt"), "from the host\n").unwrap();
    let vol = format!("{}:/detection", code_dir.display());
    let out = rb_ok(
        &store,
        &[
            "run",
            "--rm",
            "--name=superpoint",
            "-v",
            &vol,
            "-w",
            "/detection",
            "-e",
            "NVIDIA_DRIVER_CAPABILITIES=video,compute,utility",
            "detection:1.0",
            "bash",
            "-c",
            "cat input.txt; cat /built; pwd; echo \"$NVIDIA_DRIVER_CAPABILITIES\" > output.txt",
        ],
    );
    assert_eq!(out, "from the host\nbuilt\n/detection\n");
    assert_eq!(
        std::fs::read_to_string(code_dir.join("output.txt")).unwrap(),
        "video,compute,utility\n"
    );
    // --rm removed it.
    assert_eq!(status_of(&store, "superpoint"), None);

    // A finished container, and a detached one that writes a file for a second process to see.
    rb_ok(
        &store,
        &["run", "--name", "finished", "detection:1.0", "true"],
    );
    let id = rb_ok(
        &store,
        &[
            "run",
            "-d",
            "--name",
            "superpoint",
            "detection:1.0",
            "bash",
            "-c",
            "echo first > /srv/shared.txt; exec sleep 1000",
        ],
    );
    assert_eq!(id.trim().len(), 64, "run -d prints the full id: {id:?}");
    wait_for("the detached container's file", || {
        rb(&store, &["exec", "superpoint", "cat", "/srv/shared.txt"]).1 == "first\n"
    });
    let (code, out, _) = rb(
        &store,
        &[
            "exec",
            "-w",
            "/",
            "superpoint",
            "bash",
            "-c",
            "pwd; echo second >> /srv/shared.txt",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "/\n"));
    let rows = ps_rows(&store);
    let st = |n: &str| {
        rows.iter()
            .find(|(name, _)| name == n)
            .map(|(_, s)| s.clone())
    };
    assert!(
        st("superpoint").is_some_and(|s| s.starts_with("Up ")),
        "{rows:?}"
    );
    assert!(
        st("finished").is_some_and(|s| s.starts_with("Exited (0) ")),
        "{rows:?}"
    );
    // Plain ps lists running containers only.
    let running = rb_ok(&store, &["ps", "-q"]);
    assert_eq!(running.trim(), &id.trim()[..12]);

    // commit the running container, save it, and docker runs the result with the change.
    let img = rb_ok(
        &store,
        &[
            "commit",
            "-c",
            "CMD [\"cat\", \"/srv/shared.txt\"]",
            "-m",
            "session",
            "superpoint",
            "detection:2.0",
        ],
    );
    assert!(img.trim().starts_with("sha256:"), "{img}");
    let archive = work.path().join("detection.tar");
    rb_ok(
        &store,
        &["save", "detection:2.0", "-o", archive.to_str().unwrap()],
    );
    run_ok(docker().arg("load").arg("-i").arg(&archive));
    let out = run_ok(docker().args(["run", "--rm", "detection:2.0"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\n");
    let out = run_ok(docker().args(["run", "--rm", "detection:2.0", "cat", "/built"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built\n");
    let _ = docker().args(["rmi", "detection:2.0"]).output();

    // rmi refuses an image a container uses.
    let (code, _, err) = rb(&store, &["rmi", "detection:1.0"]);
    assert_ne!(code, 0);
    assert!(err.contains("is using its referenced image"), "{err}");
    rb_ok(&store, &["rm", "-f", "superpoint", "finished"]);
    assert!(ps_rows(&store).is_empty());
}

#[test]
fn detached_container_survives_the_cli_logs_and_stop() {
    let work = tempfile::tempdir().unwrap();
    let store = store_with_busybox(work.path());
    let id = rb_ok(
        &store,
        &[
            "run",
            "-d",
            "--name",
            "bg",
            "bb:1",
            "sh",
            "-c",
            "echo hello from bg; echo err >&2; exec sleep 1000",
        ],
    );
    // The CLI that started it has exited (rb_ok waited for it); the container still runs.
    assert!(status_of(&store, "bg").is_some_and(|s| s.starts_with("Up ")));
    wait_for("logs to show the output", || {
        let out = rb_ok(&store, &["logs", "bg"]);
        out.contains("hello from bg") && out.contains("err")
    });
    // By id prefix too.
    let (code, out, _) = rb(&store, &["logs", &id.trim()[..6]]);
    assert_eq!(code, 0);
    assert!(out.contains("hello from bg"));
    // sleep is PID 1 and ignores SIGTERM: stop must kill it after its timeout.
    let (code, out, err) = rb(&store, &["stop", "-t", "1", "bg"]);
    assert_eq!((code, out.as_str()), (0, "bg\n"), "{err}");
    let st = status_of(&store, "bg").unwrap();
    assert!(st.starts_with("Exited (137) "), "{st}");
    // logs -f of a stopped container ends.
    assert!(rb_ok(&store, &["logs", "-f", "bg"]).contains("hello from bg"));
    // start brings it back; kill ends it with the signal's code.
    assert_eq!(rb_ok(&store, &["start", "bg"]), "bg\n");
    assert!(status_of(&store, "bg").is_some_and(|s| s.starts_with("Up ")));
    rb_ok(&store, &["kill", "bg"]);
    wait_for("the killed container to exit", || {
        status_of(&store, "bg").is_some_and(|s| s.starts_with("Exited (137)"))
    });
    // A command's own exit code, and docker's 127 for a missing one.
    assert_eq!(
        rb(&store, &["run", "--rm", "bb:1", "sh", "-c", "exit 7"]).0,
        7
    );
    let (code, _, err) = rb(&store, &["run", "--rm", "bb:1", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("no-such-command"), "{err}");
    rb_ok(&store, &["rm", "bg"]);
    assert_store_consistent(&store);
}

#[test]
fn kill_9_of_rbuild_during_run_leaves_no_half_written_record() {
    let work = tempfile::tempdir().unwrap();
    let store = store_with_busybox(work.path());
    for (i, delay_ms) in [0u64, 20, 60, 150, 400].into_iter().enumerate() {
        let name = format!("k{i}");
        let mut child = rbuild(&store)
            .args(["run", "--name", &name, "bb:1", "sleep", "1000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_store_consistent(&store);
        // ps still works and the name is either free or held by a complete container.
        let rows = ps_rows(&store);
        if rows.iter().any(|(n, _)| *n == name) {
            rb_ok(&store, &["rm", "-f", &name]);
        }
    }
    assert!(ps_rows(&store).is_empty());
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let store = store_with_busybox(work.path());
    rb_ok(&store, &["run", "--name", "taken", "bb:1", "true"]);
    let before = rb_ok(&store, &["ps", "-a", "-q"]);
    // An empty CDI spec directory: the device errors must not depend on this machine's specs.
    let cdi = work.path().join("cdi");
    std::fs::create_dir(&cdi).unwrap();
    let cdi = cdi.to_str().unwrap();

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["run", "127.0.0.1:1/nosuch:1"], 125, "nosuch"),
        (
            vec!["run", "--name", "taken", "bb:1", "true"],
            125,
            "already in use",
        ),
        (
            vec!["run", "-v", "/no/such/host/dir:/x", "bb:1", "true"],
            125,
            "/no/such/host/dir",
        ),
        (
            vec![
                "run",
                "--cdi-spec-dir",
                cdi,
                "--device",
                "example.com/gpu=nope",
                "bb:1",
                "true",
            ],
            125,
            "example.com/gpu=nope",
        ),
        (
            vec![
                "run",
                "--cdi-spec-dir",
                cdi,
                "--gpus",
                "all",
                "bb:1",
                "true",
            ],
            125,
            "nvidia.com/gpu=all: no CDI spec for nvidia.com/gpu",
        ),
        (vec!["rm", "nosuch"], 1, "No such container: nosuch"),
        (vec!["stop", "nosuch"], 1, "No such container: nosuch"),
        (vec!["logs", "nosuch"], 1, "No such container: nosuch"),
        (vec!["exec", "taken", "true"], 1, "is not running"),
        (
            vec!["exec", "nosuch", "true"],
            1,
            "No such container: nosuch",
        ),
        (vec!["commit", "nosuch"], 1, "No such container: nosuch"),
    ];
    for (args, want_code, want_msg) in cases {
        let (code, out, err) = rb(&store, &args);
        assert_eq!(code, want_code, "{args:?}: stdout {out} stderr {err}");
        assert!(
            err.contains(want_msg),
            "{args:?}: {err:?} does not name {want_msg:?}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            rb_ok(&store, &["ps", "-a", "-q"]),
            before,
            "{args:?} changed the containers"
        );
    }
    // Nothing left behind in the container directory either.
    let leftovers: Vec<_> = std::fs::read_dir(store.join("containers"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let names: Vec<_> = std::fs::read_dir(store.join("containers/names"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["taken"]);
}

#[test]
fn rootless_run_exec_stop_commit_as_an_unprivileged_user() {
    const USER: &str = "rbuildtest";
    run_ok(&mut Command::new(repo_root().join("scripts/test-users.sh")));
    let dir = tempfile::Builder::new()
        .prefix("rbuild-containers-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path();
    let tar = busybox_tar(root);
    run_ok(
        Command::new("chown")
            .args(["-R", &format!("{USER}:{USER}")])
            .arg(root),
    );
    run_ok(Command::new("chmod").arg("755").arg(root));
    let store = root.join("store");
    let as_user = |args: &[&str]| -> (i32, String, String) {
        let o = Command::new("runuser")
            .args(["-u", USER, "--", "env"])
            .arg(format!("RBUILD_ROOT={}", store.display()))
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .args(args)
            .current_dir(root)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (out, err) = text(&o);
        (o.status.code().unwrap_or(-1), out, err)
    };
    let ok = |args: &[&str]| -> String {
        let (code, out, err) = as_user(args);
        assert_eq!(code, 0, "{args:?} as {USER}:\n{out}\n{err}");
        out
    };
    ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    // Container root is the user; ids 1.. are its subordinate range (chown to 5 works).
    let out = ok(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "id -u; touch /f; chown 5:5 /f; stat -c %u /f",
    ]);
    assert_eq!(out, "0\n5\n");
    ok(&[
        "run",
        "-d",
        "--name",
        "rl",
        "bb:1",
        "sh",
        "-c",
        "echo made > /made; chown 7 /made; exec sleep 1000",
    ]);
    wait_for("exec to see the detached container's file", || {
        as_user(&["exec", "rl", "cat", "/made"]).1 == "made\n"
    });
    assert_eq!(ok(&["exec", "rl", "stat", "-c", "%u", "/made"]), "7\n");
    ok(&["stop", "-t", "1", "rl"]);
    ok(&["commit", "rl", "bb:2"]);
    assert_eq!(
        ok(&["run", "--rm", "bb:2", "stat", "-c", "%u %n", "/made"]),
        "7 /made\n"
    );
    ok(&["rm", "rl"]);
    assert_eq!(ok(&["ps", "-a", "-q"]), "");
}

#[test]
fn devices_and_gpus_come_through_cdi() {
    let work = tempfile::tempdir().unwrap();
    let store = store_with_busybox(work.path());
    let cdi = write_cdi_spec(work.path());
    // GPUs as nvidia-ctk describes them, with an edit per device the container can show.
    std::fs::write(
        cdi.join("gpu.json"),
        r#"{"cdiVersion":"0.5.0","kind":"nvidia.com/gpu","devices":[
            {"name":"0","containerEdits":{"env":["GPU0=yes"]}},
            {"name":"1","containerEdits":{"env":["GPU1=yes"]}}]}"#,
    )
    .unwrap();
    let cdi = cdi.to_str().unwrap();
    let check = "test -c /dev/rbuild-zero && test \"$(cat /opt/rbuild-share/data)\" = shared-data \
                 && test \"$RBUILD_TEST_DEV\" = zero && test \"$RBUILD_TEST_SPEC\" = 1 \
                 && grep -q '\"status\":\"creating\"' /etc/rbuild-hook \
                 && grep -qx started /dev/rbuild-start && echo devices-ok";
    let out = rb_ok(
        &store,
        &[
            "run",
            "--rm",
            "--cdi-spec-dir",
            cdi,
            "--device",
            "rbuild.test/dev=zero",
            "bb:1",
            "sh",
            "-c",
            check,
        ],
    );
    assert_eq!(out.trim(), "devices-ok");
    let gpus = |flag: &str| {
        rb_ok(
            &store,
            &[
                "run",
                "--rm",
                "--cdi-spec-dir",
                cdi,
                "--gpus",
                flag,
                "bb:1",
                "sh",
                "-c",
                "echo ${GPU0:-no} ${GPU1:-no}",
            ],
        )
        .trim()
        .to_string()
    };
    assert_eq!(gpus("all"), "yes yes");
    assert_eq!(gpus("1"), "yes no");
    assert_eq!(gpus("device=1"), "no yes");
    // Without the flags the container sees none of it.
    let out = rb_ok(
        &store,
        &[
            "run",
            "--rm",
            "bb:1",
            "sh",
            "-c",
            "test ! -e /dev/rbuild-zero && echo none",
        ],
    );
    assert_eq!(out.trim(), "none");
}

#[test]
fn init_runs_as_pid_1_and_the_command_under_it() {
    let work = tempfile::tempdir().unwrap();
    let store = store_with_busybox(work.path());
    let out = rb_ok(
        &store,
        &[
            "run",
            "--rm",
            "--init",
            "bb:1",
            "sh",
            "-c",
            "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("/sbin/docker-init -- sh -c"),
        "PID 1 is {:?}",
        lines[0]
    );
    assert_ne!(lines[1], "1", "the command must not be PID 1 under --init");
    // Without --init the command is PID 1, as docker runs it.
    let out = rb_ok(&store, &["run", "--rm", "bb:1", "sh", "-c", "echo $$"]);
    assert_eq!(out.trim(), "1");
    // Committing a container that ran with --init leaves no init in the image.
    rb_ok(
        &store,
        &["run", "--init", "--name", "inited", "bb:1", "true"],
    );
    rb_ok(&store, &["commit", "inited", "bb:init"]);
    let out = rb_ok(
        &store,
        &[
            "run",
            "--rm",
            "bb:init",
            "sh",
            "-c",
            "test -e /sbin/docker-init && echo present || echo absent",
        ],
    );
    assert_eq!(out.trim(), "absent");
}
