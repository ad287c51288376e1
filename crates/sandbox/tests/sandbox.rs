//! Real runs of the sandbox as root (the test harness runs as root): no mocks, a busybox rootfs.

mod common;

use common::{host_pids_with, rootfs, run, run_with, sh};
use rbuild_sandbox::{
    MountKind, MountSpec, Network, RootfsSpec, RunSpec, Sandbox, SandboxError, SandboxOptions,
    Stream,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn exit_codes_and_signals() {
    let (_t, root) = rootfs();
    let cases: &[(&str, Option<i32>, Option<i32>)] = &[
        ("exit 0", Some(0), None),
        ("exit 3", Some(3), None),
        ("false", Some(1), None),
        ("exit 255", Some(255), None),
        // The step is PID 1 of its pid namespace: like `docker build`, signals it sends
        // itself without a handler are ignored, so it goes on and exits 0.
        ("kill -9 $$; echo still here", Some(0), None),
        ("sh -c 'kill -9 $$'; exit $?", Some(137), None),
    ];
    for (script, code, signal) in cases {
        let out = run(&sh(&root, script));
        let r = out.result.unwrap_or_else(|e| panic!("{script}: {e}"));
        assert_eq!((r.code, r.signal), (*code, *signal), "{script}");
    }
    // SIGKILL from the host (an ancestor pid namespace) does reach PID 1: reported as signal.
    let needle = format!("{}", 600_000 + std::process::id() % 100_000);
    let sb = Sandbox::new(SandboxOptions::default()).unwrap();
    let spec = sh(&root, &format!("echo {needle}; exec sleep {needle}"));
    let r = sb
        .run(&spec, &mut |_, b| {
            if b.starts_with(needle.as_bytes()) {
                let pids = host_pids_with(&format!("sleep {needle}"));
                assert_eq!(pids.len(), 1, "{pids:?}");
                // SAFETY: plain kill(2) of the step's PID 1, found by its unique command line.
                unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
            }
        })
        .unwrap();
    assert_eq!((r.code, r.signal), (None, Some(9)));
}

#[test]
fn env_cwd_hostname_user() {
    let (_t, root) = rootfs();
    let mut spec = sh(
        &root,
        "echo \"$FOO|$(pwd)|$(hostname)|$(id -u):$(id -g):$(id -G)\"; touch made-here",
    );
    spec.env.push("FOO=bar baz".into());
    spec.cwd = "/work/dir".into();
    spec.hostname = "stephost".into();
    spec.uid = 1000;
    spec.gid = 1001;
    spec.additional_gids = vec![1001, 20, 30];
    // The cwd is created as root; make it writable for uid 1000 through a pre-made dir.
    std::fs::create_dir_all(root.join("work/dir")).unwrap();
    std::os::unix::fs::chown(root.join("work/dir"), Some(1000), Some(1001)).unwrap();
    let out = run(&spec);
    let r = out.result.unwrap();
    assert_eq!(r.code, Some(0), "stderr: {}", out.stderr);
    assert_eq!(
        out.stdout,
        "bar baz|/work/dir|stephost|1000:1001:1001 20 30\n"
    );
    let meta = std::fs::metadata(root.join("work/dir/made-here")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
}

#[test]
fn missing_cwd_is_created_and_path_search_uses_step_env() {
    let (_t, root) = rootfs();
    std::fs::create_dir_all(root.join("opt/tools")).unwrap();
    std::fs::write(
        root.join("opt/tools/hello"),
        "#!/bin/sh\necho tool \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("opt/tools/hello"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let spec = RunSpec {
        rootfs: RootfsSpec::Dir(root.clone()),
        args: vec!["hello".into(), "a".into()],
        env: vec!["PATH=/nonexistent:/opt/tools:/bin".into()],
        cwd: "/new/deep/dir".into(),
        ..RunSpec::default()
    };
    let out = run(&spec);
    assert_eq!(out.result.unwrap().code, Some(0));
    assert_eq!(out.stdout, "tool a\n");
    assert!(root.join("new/deep/dir").is_dir());
}

#[test]
fn etc_files_are_bind_mounted_and_stubs_cleaned() {
    let (_t, root) = rootfs();
    let mut spec = sh(
        &root,
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hostname; \
         echo junk >> /etc/hosts; grep -c ' /etc/hosts ' /proc/self/mountinfo",
    );
    spec.hostname = "h1".into();
    spec.hosts = vec![("db.local".into(), "10.1.2.3".into())];
    let out = run(&spec);
    let r = out.result.unwrap();
    assert_eq!(r.code, Some(0), "{}", out.stderr);
    let parts: Vec<&str> = out.stdout.split("---\n").collect();
    assert_eq!(parts.len(), 3, "{}", out.stdout);
    assert!(
        parts[0].contains("127.0.0.1\tlocalhost h1\n"),
        "{}",
        parts[0]
    );
    assert!(parts[0].contains("10.1.2.3\tdb.local\n"), "{}", parts[0]);
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(parts[1].starts_with(&host_resolv), "{}", parts[1]);
    assert!(parts[2].starts_with("h1\n1\n"), "{}", parts[2]);
    // The stubs were created for the run, reported, and removed again.
    for stub in [
        "/proc",
        "/dev",
        "/sys",
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
    ] {
        assert!(
            r.mount_stubs.iter().any(|s| s == stub),
            "{stub} in {:?}",
            r.mount_stubs
        );
        let host = root.join(stub.trim_start_matches('/'));
        assert!(
            std::fs::symlink_metadata(&host).is_err(),
            "{} left in the layer",
            host.display()
        );
    }
}

#[test]
fn existing_mount_points_are_not_stubs_and_keep_content() {
    let (_t, root) = rootfs();
    for d in ["proc", "dev", "sys"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    std::fs::write(root.join("etc/hosts"), "image hosts\n").unwrap();
    let out = run(&sh(&root, "cat /etc/hosts"));
    let r = out.result.unwrap();
    assert!(out.stdout.contains("localhost"), "{}", out.stdout);
    assert!(!r
        .mount_stubs
        .iter()
        .any(|s| s == "/proc" || s == "/etc/hosts"));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
        "image hosts\n"
    );
    assert!(root.join("proc").is_dir());
}

#[test]
fn proc_shows_only_the_steps_processes() {
    let (_t, root) = rootfs();
    let out = run(&sh(
        &root,
        "readlink /proc/self >/dev/null && echo self-ok; echo $$; ls /proc | grep -c '^[0-9]'",
    ));
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "self-ok");
    assert_eq!(lines[1], "1", "the step is PID 1 of its pid namespace");
    // sh, and the ls + grep of the pipeline (the $(...) subshell may or may not fork).
    let n: u32 = lines[2].parse().unwrap();
    assert!(
        (2..=4).contains(&n),
        "{n} processes visible: {}",
        out.stdout
    );
}

#[test]
fn dev_and_sys() {
    let (_t, root) = rootfs();
    let out = run(&sh(
        &root,
        "echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | od -An -tx1; \
         head -c 8 /dev/urandom | wc -c; ls /dev/pts/ptmx >/dev/null && echo pts-ok; \
         touch /dev/shm/x && echo shm-ok; \
         if touch /sys/kernel/x 2>/dev/null || mkdir /sys/x 2>/dev/null; then echo sys-rw; else echo sys-ro; fi",
    ));
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stdout, "null-ok\n 00 00 00 00\n8\npts-ok\nshm-ok\nsys-ro\n",
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn capabilities_and_kernel_interfaces_are_restricted() {
    let (_t, root) = rootfs();
    let out = run(&sh(
        &root,
        "grep -E '^Cap(Bnd|Eff|Inh|Amb)' /proc/self/status | tr -d '\\t'; \
         echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-rw; \
         echo h > /proc/sysrq-trigger 2>/dev/null && echo sysrq-rw; \
         wc -c < /proc/timer_list; ls /proc/acpi 2>/dev/null | wc -l; \
         mount -t tmpfs x /mnt 2>/dev/null && echo mounted; \
         mknod /tmp/disk b 254 0 2>/dev/null && echo mknod-ok; true",
    ));
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    // Docker's default set without MKNOD (no device cgroup protects a root step here).
    assert_eq!(
        out.stdout,
        "CapInh:0000000000000000\nCapEff:00000000a00425fb\nCapBnd:00000000a00425fb\n\
         CapAmb:0000000000000000\n0\n0\n",
        "stderr: {}",
        out.stderr
    );
    // A non-root USER has no effective capabilities at all.
    let mut spec = sh(&root, "grep CapEff /proc/self/status | tr -d '\\t'");
    spec.uid = 1000;
    spec.gid = 1000;
    let out = run(&spec);
    assert_eq!(out.stdout, "CapEff:0000000000000000\n");
}

#[test]
fn network_none_has_only_loopback_up() {
    let (_t, root) = rootfs();
    let mut spec = sh(
        &root,
        "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; ip link | grep -c 'UP'; \
         ls /sys/class/net; touch /sys/x 2>/dev/null || echo sys-ro",
    );
    spec.network = Network::None;
    let out = run(&spec);
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "lo\n1\nlo\nsys-ro\n");
    // Host network (default) sees more than loopback on this host, or at least the same set
    // as the host does.
    let out = run(&sh(&root, "tail -n +3 /proc/net/dev | wc -l"));
    let host = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count()
        - 2;
    assert_eq!(out.stdout.trim(), host.to_string());
}

#[test]
fn host_paths_are_not_visible() {
    let (t, root) = rootfs();
    let marker = t.path().join("host-marker");
    std::fs::write(&marker, "secret").unwrap();
    let script = format!(
        "for p in {m} {root} /work /root/.cargo /etc/shadow; do test -e $p && echo visible $p; done; \
         cat /proc/1/mountinfo | grep -c .",
        m = marker.display(),
        root = root.display()
    );
    let out = run(&sh(&root, &script));
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert!(!out.stdout.contains("visible"), "{}", out.stdout);
}

#[test]
fn background_processes_die_with_the_step() {
    let (_t, root) = rootfs();
    let needle = format!("{}", 400_000 + std::process::id() % 100_000);
    let out = run(&sh(
        &root,
        &format!("sleep {needle} & sleep {needle} & echo started"),
    ));
    let r = out.result.unwrap();
    assert_eq!(r.code, Some(0));
    assert_eq!(out.stdout, "started\n");
    assert_eq!(
        host_pids_with(&format!("sleep {needle}")),
        Vec::<u32>::new()
    );
}

#[test]
fn stdin_is_delivered_and_closed() {
    let (_t, root) = rootfs();
    let mut spec = sh(&root, "cat; echo; wc -c </dev/stdin");
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    spec.stdin = Some(body.clone());
    let out = run(&spec);
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    let mut want = String::from_utf8(body).unwrap();
    want.push_str("\n0\n");
    assert_eq!(out.stdout, want);

    // No stdin: reads see EOF immediately.
    let out = run(&sh(&root, "wc -c"));
    assert_eq!(out.stdout.trim(), "0");
}

#[test]
fn step_ignoring_stdin_does_not_block_or_kill_the_caller() {
    let (_t, root) = rootfs();
    let mut spec = sh(&root, "exit 0");
    spec.stdin = Some(vec![b'x'; 4 << 20]);
    let out = run(&spec);
    assert_eq!(out.result.unwrap().code, Some(0));
}

#[test]
fn output_is_streamed_as_it_arrives() {
    let (t, root) = rootfs();
    let sync = t.path().join("sync");
    std::fs::create_dir(&sync).unwrap();
    let mut spec = sh(
        &root,
        "echo first; i=0; while [ ! -e /sync/go ]; do sleep 0.05; i=$((i+1)); \
         [ $i -gt 400 ] && exit 9; done; echo second >&2; echo third",
    );
    spec.mounts = vec![MountSpec {
        target: "/sync".into(),
        kind: MountKind::Bind {
            source: sync.clone(),
            readonly: false,
        },
    }];
    let sb = Sandbox::new(SandboxOptions::default()).unwrap();
    let mut seen = Vec::new();
    let r = sb
        .run(&spec, &mut |s, b| {
            if b == b"first\n" {
                // Only a streamed chunk can unblock the step.
                std::fs::write(sync.join("go"), "").unwrap();
            }
            seen.push((s, b.to_vec()));
        })
        .unwrap();
    assert_eq!(r.code, Some(0));
    let first = seen.iter().position(|(_, b)| b == b"first\n").unwrap();
    let second = seen.iter().position(|(_, b)| b == b"second\n").unwrap();
    assert!(first < second);
    assert_eq!(seen[second].0, Stream::Stderr);
}

#[test]
fn extra_mounts_bind_ro_rw_tmpfs_and_secret() {
    let (t, root) = rootfs();
    let cache = t.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("old"), "cached").unwrap();
    let secret = t.path().join("secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let ro = t.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut spec = sh(
        &root,
        "cat /root/.cache/x/old; echo new > /root/.cache/x/new; \
         cat /run/secrets/token; echo; echo hack > /run/secrets/token 2>/dev/null || echo secret-ro; \
         touch /ro/f 2>/dev/null || echo ro-ok; \
         echo t > /scratch/t && grep -c ' /scratch .*tmpfs' /proc/self/mountinfo",
    );
    spec.mounts = vec![
        MountSpec {
            target: "/root/.cache/x".into(),
            kind: MountKind::Bind {
                source: cache.clone(),
                readonly: false,
            },
        },
        MountSpec {
            target: "/run/secrets/token".into(),
            kind: MountKind::Bind {
                source: secret.clone(),
                readonly: true,
            },
        },
        MountSpec {
            target: "/ro".into(),
            kind: MountKind::Bind {
                source: ro.clone(),
                readonly: true,
            },
        },
        MountSpec {
            target: "/scratch".into(),
            kind: MountKind::Tmpfs {
                size: Some(1 << 20),
            },
        },
    ];
    let out = run(&spec);
    let r = out.result.unwrap();
    assert_eq!(r.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "cacheds3cr3t\nsecret-ro\nro-ok\n1\n");
    assert_eq!(std::fs::read_to_string(cache.join("new")).unwrap(), "new\n");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cr3t");
    assert!(!ro.join("f").exists());
    // Every mount point was a stub and is gone again (root/ existed before, so it stays).
    for stub in [
        "/root/.cache/x",
        "/root/.cache",
        "/run/secrets/token",
        "/run/secrets",
        "/run",
        "/ro",
        "/scratch",
    ] {
        assert!(
            r.mount_stubs.iter().any(|s| s == stub),
            "{stub}: {:?}",
            r.mount_stubs
        );
        assert!(
            !root.join(stub.trim_start_matches('/')).exists(),
            "{stub} left behind"
        );
    }
    assert!(root.join("root").is_dir());
}

#[test]
fn symlinks_in_the_rootfs_cannot_redirect_mounts_to_the_host() {
    let (t, root) = rootfs();
    let host_dir = t.path().join("host-dir");
    std::fs::create_dir(&host_dir).unwrap();
    let inside = root.join(host_dir.strip_prefix("/").unwrap());

    // A dangling (inside the rootfs) absolute symlink as a mount point's parent: the set-up
    // fails, naming the path, and nothing is written on the host.
    std::fs::rename(root.join("etc"), root.join("etc.real")).unwrap();
    std::os::unix::fs::symlink(&host_dir, root.join("etc")).unwrap();
    match run(&sh(&root, "true")).result {
        Err(e @ SandboxError::Setup { .. }) => assert!(e.to_string().contains("/etc/hosts"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0);

    // The same symlink with its target present inside the rootfs: mounts land inside.
    std::fs::create_dir_all(&inside).unwrap();
    std::os::unix::fs::symlink(&host_dir, root.join("cache")).unwrap();
    let mut spec = sh(&root, "cat /etc/hosts >/dev/null && ls -d /cache/x");
    spec.mounts = vec![MountSpec {
        target: "/cache/x".into(),
        kind: MountKind::Tmpfs { size: None },
    }];
    let out = run(&spec);
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "/cache/x\n");
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0);
    // Stubs were created behind the symlink inside the rootfs, and cleaned there too.
    assert!(!inside.join("x").exists(), "tmpfs stub left behind");
    assert!(!inside.join("hosts").exists(), "hosts stub left behind");
}

/// `volatile` reaches the kernel (its marker directory appears in the work directory), the step
/// can still fsync and sync, and a renamed lower directory is copied up in full, never recorded
/// as a redirect (which the upper directory alone could not describe).
#[test]
fn volatile_overlay_mounts_and_never_redirects() {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    common::busybox_rootfs(&lower);
    std::fs::create_dir_all(lower.join("srv/d")).unwrap();
    std::fs::write(lower.join("srv/d/f"), "f").unwrap();
    let upper = t.path().join("upper");
    let work = t.path().join("work");
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let mut spec = sh(
        &lower,
        "echo x > /x && sync && mv /srv/d /srv/e && cat /srv/e/f",
    );
    spec.rootfs = RootfsSpec::Overlay {
        lowers: vec![lower.clone()],
        upper: upper.clone(),
        work: work.clone(),
        volatile: true,
    };
    let out = run(&spec);
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "f");
    assert!(
        work.join("work/incompat/volatile").is_dir(),
        "the kernel did not get `volatile`"
    );
    assert_eq!(std::fs::read_to_string(upper.join("x")).unwrap(), "x\n");
    assert_eq!(std::fs::read_to_string(upper.join("srv/e/f")).unwrap(), "f");
    let path =
        std::ffi::CString::new(upper.join("srv/e").into_os_string().into_encoded_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: a valid C string and a buffer of the length passed.
    let n = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "{}", std::io::Error::last_os_error());
    let names = String::from_utf8_lossy(&names[..n as usize]).into_owned();
    assert!(!names.contains("redirect"), "{names}");
}

#[test]
fn overlay_rootfs_writes_land_in_upper() {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    common::busybox_rootfs(&lower);
    std::fs::write(lower.join("etc/gone"), "bye").unwrap();
    std::fs::write(lower.join("etc/keep"), "keep").unwrap();
    let lower2 = t.path().join("lower2");
    std::fs::create_dir_all(lower2.join("etc")).unwrap();
    std::fs::write(lower2.join("etc/keep"), "top").unwrap();
    let upper = t.path().join("upper");
    let work = t.path().join("work");
    std::fs::create_dir(&upper).unwrap();
    std::fs::create_dir(&work).unwrap();
    let mut spec = sh(
        &lower,
        "cat /etc/keep; echo; echo new > /tmp/new; rm /etc/gone; echo more >> /etc/keep",
    );
    spec.rootfs = RootfsSpec::Overlay {
        lowers: vec![lower2.clone(), lower.clone()],
        upper: upper.clone(),
        work: work.clone(),
        volatile: false,
    };
    let out = run(&spec);
    let r = out.result.unwrap();
    assert_eq!(r.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "top\n");
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/new")).unwrap(),
        "new\n"
    );
    assert_eq!(
        std::fs::read_to_string(upper.join("etc/keep")).unwrap(),
        "topmore\n"
    );
    let wh = std::fs::symlink_metadata(upper.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        std::fs::read_to_string(lower.join("etc/gone")).unwrap(),
        "bye"
    );
    assert_eq!(
        std::fs::read_to_string(lower.join("etc/keep")).unwrap(),
        "keep"
    );
    assert!(!lower.join("tmp/new").exists());
    assert!(!lower.join("proc").exists() && !upper.join("proc").exists());
    assert!(!upper.join("etc/hosts").exists());
    assert!(r.mount_stubs.is_empty(), "{:?}", r.mount_stubs);

    // A step that writes nothing leaves `upper` empty: mount points and their parents (with a
    // RUN --mount target below an existing directory) come from the sandbox's stub layer.
    let upper2 = t.path().join("upper2");
    let work2 = t.path().join("work2");
    std::fs::create_dir(&upper2).unwrap();
    std::fs::create_dir(&work2).unwrap();
    let mut spec = sh(&lower, "ls -d /proc/1 /etc/hosts /root/.cache/x >/dev/null");
    spec.rootfs = RootfsSpec::Overlay {
        lowers: vec![lower.clone()],
        upper: upper2.clone(),
        work: work2,
        volatile: false,
    };
    spec.mounts = vec![MountSpec {
        target: "/root/.cache/x".into(),
        kind: MountKind::Tmpfs { size: None },
    }];
    let out = run(&spec);
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(&upper2).unwrap().count(), 0);
}

#[test]
fn timeout_and_cancel_kill_everything() {
    let (_t, root) = rootfs();
    let needle = format!("{}", 500_000 + std::process::id() % 100_000);
    let mut spec = sh(&root, &format!("sleep {needle} & sleep {needle}"));
    spec.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    match run(&spec).result {
        Err(SandboxError::TimedOut(d)) => assert_eq!(d, Duration::from_millis(300)),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(20));
    assert_eq!(
        host_pids_with(&format!("sleep {needle}")),
        Vec::<u32>::new()
    );

    let cancel = Arc::new(AtomicBool::new(false));
    let mut spec = sh(&root, &format!("echo go; sleep {needle}"));
    spec.cancel = Some(cancel.clone());
    let sb = Sandbox::new(SandboxOptions::default()).unwrap();
    let res = sb.run(&spec, &mut |_, b| {
        if b == b"go\n" {
            cancel.store(true, Ordering::SeqCst);
        }
    });
    assert!(matches!(res, Err(SandboxError::Cancelled)), "{res:?}");
    assert_eq!(
        host_pids_with(&format!("sleep {needle}")),
        Vec::<u32>::new()
    );
}

#[test]
fn errors_name_what_failed() {
    let (t, root) = rootfs();
    let spec = RunSpec {
        rootfs: RootfsSpec::Dir(root.clone()),
        args: vec!["no-such-program".into()],
        ..RunSpec::default()
    };
    match run(&spec).result {
        Err(SandboxError::Exec { program, source }) => {
            assert_eq!(program, "no-such-program");
            assert_eq!(source.raw_os_error(), Some(libc::ENOENT));
        }
        other => panic!("{other:?}"),
    }
    // Overlay whose upper does not exist: the mount fails inside the child.
    let mut spec = sh(&root, "true");
    spec.rootfs = RootfsSpec::Overlay {
        lowers: vec![root.clone()],
        upper: t.path().join("missing-upper"),
        work: t.path().join("missing-work"),
        volatile: false,
    };
    match run(&spec).result {
        Err(e @ SandboxError::Setup { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("mount overlay") && msg.contains("missing-upper"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    // upper == work: EINVAL, with a pointer to where overlayfs explains it.
    std::fs::create_dir(t.path().join("uw")).unwrap();
    let mut spec = sh(&root, "true");
    spec.rootfs = RootfsSpec::Overlay {
        lowers: vec![root.clone()],
        upper: t.path().join("uw"),
        work: t.path().join("uw"),
        volatile: false,
    };
    match run(&spec).result {
        Err(e @ SandboxError::Setup { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("dmesg") && msg.contains("Invalid argument"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A user that the mount target can't become (bind source missing) is caught before fork.
    let mut spec = sh(&root, "true");
    spec.mounts = vec![MountSpec {
        target: "/x".into(),
        kind: MountKind::Bind {
            source: t.path().join("nope"),
            readonly: true,
        },
    }];
    let err = run(&spec).result.unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn invalid_specs_are_rejected() {
    let (_t, root) = rootfs();
    type Edit = Box<dyn Fn(&mut RunSpec)>;
    let table: Vec<(&str, Edit)> = vec![
        ("empty args", Box::new(|s| s.args.clear())),
        ("relative cwd", Box::new(|s| s.cwd = "work".into())),
        ("dotdot cwd", Box::new(|s| s.cwd = "/a/../..".into())),
        ("nul in env", Box::new(|s| s.env.push("A=\0".into()))),
        ("bad hostname", Box::new(|s| s.hostname = "a b".into())),
        (
            "dotdot mount",
            Box::new(|s| {
                s.mounts.push(MountSpec {
                    target: "/../etc".into(),
                    kind: MountKind::Tmpfs { size: None },
                })
            }),
        ),
        (
            "root mount",
            Box::new(|s| {
                s.mounts.push(MountSpec {
                    target: "/".into(),
                    kind: MountKind::Tmpfs { size: None },
                })
            }),
        ),
        (
            "rootfs missing",
            Box::new(|s| s.rootfs = RootfsSpec::Dir("/nonexistent-rootfs".into())),
        ),
    ];
    for (name, edit) in table {
        let mut spec = sh(&root, "true");
        edit(&mut spec);
        match run(&spec).result {
            Err(SandboxError::InvalidSpec(_)) => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn four_threads_at_once() {
    // One rootfs per run: a Dir rootfs is the step's writable layer and must not be shared
    // by concurrent runs (their mount stubs would race).
    let roots: Vec<_> = (0..4).map(|_| rootfs()).collect();
    let sb = Sandbox::new(SandboxOptions::default()).unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let sb = &sb;
                let root = &roots[i].1;
                s.spawn(move || {
                    let mut spec = sh(root, &format!("echo step-{i}; hostname"));
                    spec.hostname = format!("host{i}");
                    let out = run_with(sb, &spec);
                    (i, out.result.map(|r| r.code), out.stdout)
                })
            })
            .collect();
        for h in handles {
            let (i, code, stdout) = h.join().unwrap();
            assert_eq!(code.unwrap(), Some(0));
            assert_eq!(stdout, format!("step-{i}\nhost{i}\n"));
        }
    });
}

#[test]
fn inside_a_tokio_runtime() {
    let roots: Vec<_> = (0..5).map(|_| rootfs()).collect();
    let root = roots[4].1.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let sb = Arc::new(Sandbox::new(SandboxOptions::default()).unwrap());
    let outputs = rt.block_on(async {
        // Keep other async work (and a tokio child process) going while steps run.
        let ticker = tokio::spawn(async {
            let mut n = 0u32;
            for _ in 0..20 {
                tokio::task::yield_now().await;
                n += 1;
            }
            n
        });
        let mut tasks = Vec::new();
        for (i, (_, root)) in roots.iter().take(4).enumerate() {
            let sb = sb.clone();
            let root = root.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let out = run_with(&sb, &sh(&root, &format!("echo tokio-{i}")));
                (out.result.map(|r| r.code).ok().flatten(), out.stdout)
            }));
        }
        // Directly on a worker thread too.
        let direct = tokio::task::block_in_place(|| run_with(&sb, &sh(&root, "echo direct")));
        let mut outs = vec![(direct.result.unwrap().code, direct.stdout)];
        for t in tasks {
            outs.push(t.await.unwrap());
        }
        assert_eq!(ticker.await.unwrap(), 20);
        outs
    });
    assert_eq!(outputs[0], (Some(0), "direct\n".to_string()));
    for (i, out) in outputs[1..].iter().enumerate() {
        assert_eq!(out, &(Some(0), format!("tokio-{i}\n")));
    }
}

#[test]
fn force_user_ns_as_root() {
    let (_t, root) = rootfs();
    let sb = Sandbox::new(SandboxOptions {
        id_map: rbuild_sandbox::IdMapMode::ForceUserNs,
        ..Default::default()
    })
    .unwrap();
    assert!(sb.uses_user_namespace());
    let out = run_with(
        &sb,
        &sh(
            &root,
            "cat /proc/self/uid_map; id -u; touch /tmp/f; chown 7:8 /tmp/f",
        ),
    );
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("4294967295"), "{}", out.stdout);
    let meta = std::fs::metadata(root.join("tmp/f")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (7, 8));
}

#[test]
fn probe_reports_root() {
    let c = rbuild_sandbox::probe();
    assert!(c.is_root);
    assert_eq!(c.euid, 0);
    assert!(
        c.newuidmap.is_some(),
        "uidmap is installed on the test host"
    );
    assert!(c.kernel.0 >= 5);
    assert!(c.user_namespaces);
    assert!(c.overlay_in_userns, "{:?}", c.notes);
}

#[test]
fn single_map_as_root_warns_and_limits_ids() {
    let (_t, root) = rootfs();
    let sb = Sandbox::new(SandboxOptions {
        id_map: rbuild_sandbox::IdMapMode::Single,
        ..Default::default()
    })
    .unwrap();
    assert!(sb.uses_user_namespace());
    let mut spec = sh(
        &root,
        "id -u; touch /tmp/f; chown 1:1 /tmp/f 2>/dev/null; echo chown=$?",
    );
    spec.additional_gids = vec![5];
    let out = run_with(&sb, &spec);
    let r = out.result.unwrap();
    assert_eq!(out.stdout, "0\nchown=1\n", "{}", out.stderr);
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert!(r.warnings[0].contains("single-id map"));
    assert!(r.warnings[1].contains("supplementary groups [5] ignored"));
}

#[test]
fn a_panicking_output_callback_leaves_no_process_behind() {
    let (_t, root) = rootfs();
    let needle = format!("{}", 800_000 + std::process::id() % 100_000);
    let spec = sh(&root, &format!("echo boom; exec sleep {needle}"));
    let sb = Sandbox::new(SandboxOptions::default()).unwrap();
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sb.run(&spec, &mut |_, _| panic!("callback failed"))
    }));
    assert!(res.is_err());
    assert_eq!(
        host_pids_with(&format!("sleep {needle}")),
        Vec::<u32>::new()
    );
}
