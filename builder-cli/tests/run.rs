//! RUN behaviour that docker 20.10 cannot be the oracle for (heredocs, `--network`, secrets) or that
//! is about rbuild's own reporting: asserted against the Dockerfile reference directly.

mod common;

use common::*;

fn build(store: &std::path::Path, dockerfile: &str, args: &[&str]) -> std::process::Output {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    let mut c = rbuild(store);
    c.args(["--progress", "plain"]).args(args).arg(ctx.path());
    let out = c.output().unwrap();
    drop(ctx);
    out
}

fn file_in_image(store: &std::path::Path, image: &str, path: &str) -> Option<Vec<u8>> {
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("fs.tar");
    run_ok(rbuild(store).args(["save", image, "-o"]).arg(&tar));
    let img = read_docker_archive(&tar);
    img.tree.iter().find(|e| e.path == path)?;
    // The flattened tree only has digests; read the content through a rootfs export instead.
    let fs = work.path().join("rootfs.tar");
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {image}\n")).unwrap();
    run_ok(
        rbuild(store)
            .args(["-q", "-o"])
            .arg(format!("type=tar,dest={}", fs.display()))
            .arg(ctx.path()),
    );
    let mut ar = tar::Archive::new(std::fs::File::open(&fs).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if p == path {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
            return Some(buf);
        }
    }
    None
}

#[test]
fn failing_step_names_step_line_exit_code_and_last_output() {
    let store = store_with_base();
    let out = build(
        store.path(),
        &format!(
            "FROM {BUSYBOX}\nRUN echo fine\nRUN echo first-line && echo second-line >&2 && exit 3\nRUN echo never\n"
        ),
        &["-t", "fails:1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("step 2/3"), "{err}");
    assert!(err.contains("exit code: 3"), "{err}");
    assert!(
        err.contains("first-line") && err.contains("second-line"),
        "{err}"
    );
    assert!(!err.contains("never"), "a later step ran: {err}");
    // Nothing was committed under the tag.
    let images = run_ok(rbuild(store.path()).args(["images"]));
    assert!(!String::from_utf8_lossy(&images.stdout).contains("fails"));
}

#[test]
fn heredoc_run_forms() {
    let store = store_with_base();
    let dockerfile = format!(
        "FROM {BUSYBOX}\n\
RUN <<EOF\n\
echo script > /script.txt\n\
echo more >> /script.txt\n\
EOF\n\
RUN cat > /stdin.txt <<EOT\n\
from a heredoc\n\
EOT\n\
RUN <<-EOF\n\
\techo tabs-stripped > /tabs.txt\n\
\tEOF\n\
RUN <<EOF\n\
#!/bin/sh -e\n\
echo shebang > /shebang.txt\n\
EOF\n"
    );
    let out = build(store.path(), &dockerfile, &["-t", "heredoc:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cases = [
        ("script.txt", "script\nmore\n"),
        ("stdin.txt", "from a heredoc\n"),
        ("tabs.txt", "tabs-stripped\n"),
        ("shebang.txt", "shebang\n"),
    ];
    for (path, want) in cases {
        let got = file_in_image(store.path(), "heredoc:1", path)
            .unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(String::from_utf8_lossy(&got), want, "{path}");
    }
}

#[test]
fn network_none_has_only_loopback() {
    let store = store_with_base();
    let out = build(
        store.path(),
        &format!(
            "FROM {BUSYBOX}\nRUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifaces\n\
             RUN cat /proc/net/dev | tail -n +3 | wc -l > /host-ifaces\n"
        ),
        &["-t", "net:1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ifaces = file_in_image(store.path(), "net:1", "ifaces").unwrap();
    assert_eq!(String::from_utf8_lossy(&ifaces).trim(), "lo");
    // The default is the host network (docker build's default), which has more than loopback.
    let host = file_in_image(store.path(), "net:1", "host-ifaces").unwrap();
    let n: usize = String::from_utf8_lossy(&host).trim().parse().unwrap();
    assert!(n >= 2, "host network should have more than lo, saw {n}");
}

#[test]
fn secrets_reach_the_step_but_never_the_image() {
    let store = store_with_base();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("token");
    let value = "s3cr3t-value-4f9a";
    std::fs::write(&secret, value).unwrap();
    // The Dockerfile names only the value's hash, so finding the value anywhere means a leak.
    let hash = rbuild_digest::Digest::of(value.as_bytes()).hex();
    let out = build(
        store.path(),
        &format!(
            "FROM {BUSYBOX}\n\
             RUN --mount=type=secret,id=token test \"$(sha256sum < /run/secrets/token | cut -c1-64)\" = {hash} && echo seen > /seen\n\
             RUN --mount=type=secret,id=token,env=TOKEN test \"$(printf %s \"$TOKEN\" | sha256sum | cut -c1-64)\" = {hash}\n\
             RUN test ! -e /run/secrets/token\n"
        ),
        &[
            "-t",
            "secret:1",
            "--secret",
            &format!("id=token,src={}", secret.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not in any layer, config or history: search the whole saved archive for the value.
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("img.tar");
    run_ok(
        rbuild(store.path())
            .args(["save", "secret:1", "-o"])
            .arg(&tar),
    );
    let bytes = std::fs::read(&tar).unwrap();
    let found = bytes.windows(value.len()).any(|w| w == value.as_bytes());
    assert!(!found, "the secret's value is in the saved image");
    let img = read_docker_archive(&tar);
    assert!(img.tree.iter().any(|e| e.path == "seen"));
    assert!(!img.tree.iter().any(|e| e.path.starts_with("run/secrets")));

    // A required secret that was not given fails clearly.
    let out = build(
        store.path(),
        &format!("FROM {BUSYBOX}\nRUN --mount=type=secret,id=missing,required=true true\n"),
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
}

#[test]
fn ssh_agent_socket_reaches_the_step_but_not_the_image() {
    let store = store_with_base();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    // Any listening socket stands for the agent: the step sees it at the target, typed a socket.
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let out = build(
        store.path(),
        &format!(
            "FROM {BUSYBOX}\n\
             RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /default-sock\n\
             RUN --mount=type=tmpfs,target=/t --mount=type=ssh,id=deploy,target=/agent \
             test -S /agent && echo \"$SSH_AUTH_SOCK\" > /deploy-sock\n\
             RUN --mount=type=ssh,id=absent test -z \"$SSH_AUTH_SOCK\" && touch /absent-skipped\n"
        ),
        &[
            "-t",
            "ssh:1",
            "--ssh",
            &format!("default={}", sock.display()),
            "--ssh",
            &format!("deploy={}", sock.display()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, want) in [
        ("default-sock", "/run/buildkit/ssh_agent.0\n"),
        ("deploy-sock", "/agent\n"),
        ("absent-skipped", ""),
    ] {
        assert_eq!(
            file_in_image(store.path(), "ssh:1", path).as_deref(),
            Some(want.as_bytes()),
            "{path}"
        );
    }
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("img.tar");
    run_ok(rbuild(store.path()).args(["save", "ssh:1", "-o"]).arg(&tar));
    let img = read_docker_archive(&tar);
    assert!(
        !img.tree
            .iter()
            .any(|e| e.path.starts_with("run/buildkit") || e.path == "agent"),
        "mount targets leaked into the image"
    );

    // A required agent that was not given, a key file instead of a socket, and no agent at all
    // each fail with what to do.
    let cases: &[(&str, Vec<String>, &str)] = &[
        (
            "RUN --mount=type=ssh,id=deploy,required=true true\n",
            vec![],
            "--ssh deploy=SOCKET",
        ),
        (
            "RUN true\n",
            vec![
                "--ssh".into(),
                format!("default={}", dir.path().join("nokey").display()),
            ],
            "nokey",
        ),
    ];
    std::fs::write(dir.path().join("key"), "not a socket").unwrap();
    let key_case = vec![
        "--ssh".to_string(),
        format!("default={}", dir.path().join("key").display()),
    ];
    for (run, args, want) in
        cases
            .iter()
            .cloned()
            .chain([("RUN true\n", key_case, "load the key into ssh-agent")])
    {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = build(store.path(), &format!("FROM {BUSYBOX}\n{run}"), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    let mut no_agent = rbuild(store.path());
    no_agent
        .env_remove("SSH_AUTH_SOCK")
        .args(["build", "--ssh", "default"])
        .arg(dir.path());
    let out = no_agent.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SSH_AUTH_SOCK is not set"));
}

/// A RUN step's layer stays a snapshot tree until something reads it. `prune` deletes the trees no
/// image needs any more (and counts their space), keeps the ones still needed, and those still
/// save to exactly the bytes their diff ids name.
#[test]
fn prune_deletes_unused_snapshot_trees_and_kept_layers_still_save() {
    let store = store_with_base();
    let df = format!("FROM {BUSYBOX}\nRUN head -c 2000000 /dev/urandom > /r\n");
    for tag in ["gone:1", "kept:1"] {
        let out = build(store.path(), &df, &["--no-cache", "-q", "-t", tag]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let trees = || {
        std::fs::read_dir(store.path().join("snapshots/overlay"))
            .unwrap()
            .count()
    };
    let before = trees();
    let deferred = std::fs::read_dir(store.path().join("meta/deferred"))
        .unwrap()
        .count();
    assert_eq!(deferred, 2, "both RUN layers are kept as trees, not blobs");

    run_ok(rbuild(store.path()).args(["rmi", "gone:1"]));
    let pruned =
        String::from_utf8_lossy(&run_ok(rbuild(store.path()).arg("prune")).stdout).into_owned();
    assert!(pruned.contains("Deleted snapshot trees: 1"), "{pruned}");
    assert!(
        !pruned.contains("reclaimed space: 0B"),
        "the tree's 2 MB count as reclaimed: {pruned}"
    );
    assert_eq!(trees(), before - 1);

    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("kept.tar");
    run_ok(
        rbuild(store.path())
            .args(["save", "kept:1", "-o"])
            .arg(&tar),
    );
    let img = read_docker_archive(&tar);
    assert!(img
        .tree
        .iter()
        .any(|e| e.path == "r" && e.size == 2_000_000));
    // The saved layers are named by their digests; each must hash to its name.
    let mut ar = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name.ends_with("/layer.tar") {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut buf).unwrap();
            let config = &img.config["rootfs"]["diff_ids"];
            let d = rbuild_digest::Digest::of(&buf).to_string();
            assert!(
                config.as_array().unwrap().iter().any(|x| x == &d),
                "{name}: {d} is not a diff id"
            );
        }
    }
}

/// `rbuild build ARGS CTX` with plain progress.
fn build_context(
    store: &std::path::Path,
    ctx: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let mut c = rbuild(store);
    c.args(["--progress", "plain"]).args(args).arg(ctx);
    c.output().unwrap()
}

/// Every entry below `root` with its type, mode, owner, mtime (ns), link target and content, in
/// path order: what a build must leave exactly as it was.
fn host_state(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let body = if md.is_file() {
                format!("{:?}", std::fs::read(&p).unwrap())
            } else if md.file_type().is_symlink() {
                std::fs::read_link(&p).unwrap().display().to_string()
            } else {
                stack.push(p.clone());
                String::new()
            };
            out.push(format!(
                "{} {:o} {}:{} {}.{} {body}",
                p.strip_prefix(root).unwrap().display(),
                md.mode(),
                md.uid(),
                md.gid(),
                md.mtime(),
                md.mtime_nsec()
            ));
        }
    }
    out.sort();
    out
}

/// What `RUN --mount=type=bind` shows of the context is what `.dockerignore` lets through
/// (exceptions included), owned by root and readable by a non-root USER even when the context
/// directory itself is private; an ignored `source=` fails naming it, as BuildKit's "not found".
#[test]
fn context_bind_mount_shows_only_what_dockerignore_lets_through() {
    let store = store_with_base();
    let dockerfile = format!(
        "FROM {BUSYBOX}\n\
         RUN --mount=type=bind,target=/ctx cd /ctx && find . | sort > /listing && \
         stat -c '%u:%g %a' . owned.txt > /owners\n\
         RUN --mount=type=bind,source=logs,target=/logs ls -A /logs > /logs-listing\n\
         USER app\n\
         RUN --mount=type=bind,target=/ctx cat /ctx/a.txt /ctx/sub/b.txt /ctx/logs/keep.log\n"
    );
    let ctx = context_with(
        &dockerfile,
        &[
            (".dockerignore", "secret.txt\nlogs/\n!logs/keep.log\n"),
            ("a.txt", "a\n"),
            ("owned.txt", "owned\n"),
            ("secret.txt", "do not show\n"),
            ("logs/keep.log", "keep\n"),
            ("logs/other.log", "other\n"),
            ("sub/b.txt", "b\n"),
        ],
    );
    std::os::unix::fs::chown(ctx.path().join("owned.txt"), Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(
        ctx.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let out = build_context(store.path(), ctx.path(), &["-t", "ctxbind:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = file_in_image(store.path(), "ctxbind:1", "listing").unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing),
        ".\n./.dockerignore\n./Dockerfile\n./a.txt\n./logs\n./logs/keep.log\n./owned.txt\n./sub\n./sub/b.txt\n"
    );
    let owners = file_in_image(store.path(), "ctxbind:1", "owners").unwrap();
    assert_eq!(String::from_utf8_lossy(&owners), "0:0 755\n0:0 644\n");
    let logs = file_in_image(store.path(), "ctxbind:1", "logs-listing").unwrap();
    assert_eq!(String::from_utf8_lossy(&logs), "keep.log\n");

    for source in ["secret.txt", "logs/other.log"] {
        let df =
            format!("FROM {BUSYBOX}\nRUN --mount=type=bind,source={source},target=/s cat /s\n");
        std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
        let out = build_context(store.path(), ctx.path(), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("{source:?}: not found")), "{err}");
        assert!(
            !err.contains("do not show") && !err.contains("other\n"),
            "{err}"
        );
    }
}

/// `rw` lets a step change its copy of the context; the changes are gone after the step and the
/// user's directory is left exactly as it was, even by `rm -rf`.
#[test]
fn context_bind_mount_rw_writes_are_discarded_and_never_reach_the_host() {
    let store = store_with_base();
    let dockerfile = format!(
        "FROM {BUSYBOX}\n\
         RUN --mount=type=bind,rw,target=/ctx rm /ctx/a.txt && rm -r /ctx/dir && echo changed > /ctx/b.txt && \
         echo new > /ctx/new && test -e /ctx/new && ! test -e /ctx/a.txt && grep -qx changed /ctx/b.txt && \
         touch /rw-saw-own-writes\n\
         RUN --mount=type=bind,rw,target=/ctx test -e /ctx/a.txt && ! test -e /ctx/new && rm -rf /ctx/* && \
         touch /second-rw-saw-originals\n\
         RUN --mount=type=bind,rw,source=dir,target=/d rm /d/c.txt && ! test -e /d/c.txt\n\
         RUN --mount=type=bind,target=/ctx cat /ctx/a.txt /ctx/b.txt /ctx/dir/c.txt > /after && \
         ! test -e /ctx/new && if touch /ctx/ro-write 2>/dev/null; then exit 1; fi\n"
    );
    let ctx = context_with(
        &dockerfile,
        &[
            (".dockerignore", "ignored.txt\n"),
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            ("dir/c.txt", "c\n"),
            ("ignored.txt", "i\n"),
        ],
    );
    std::os::unix::fs::symlink("a.txt", ctx.path().join("link")).unwrap();
    let before = host_state(ctx.path());
    let out = build_context(store.path(), ctx.path(), &["-t", "ctxrw:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        host_state(ctx.path()),
        before,
        "the build changed the host context"
    );
    let after = file_in_image(store.path(), "ctxrw:1", "after").unwrap();
    assert_eq!(String::from_utf8_lossy(&after), "a\nb\nc\n");
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("img.tar");
    run_ok(
        rbuild(store.path())
            .args(["save", "ctxrw:1", "-o"])
            .arg(&tar),
    );
    let img = read_docker_archive(&tar);
    let paths: Vec<&str> = img.tree.iter().map(|e| e.path.as_str()).collect();
    for want in ["rw-saw-own-writes", "second-rw-saw-originals"] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("ctx/") || p.starts_with("d/")),
        "mount contents leaked into the image: {paths:?}"
    );
}

/// Docker 20.10 (BuildKit) is the oracle for what the step sees of the context: names, modes,
/// owners, types and sizes, for the whole context, a `source=` subdirectory, and after `rw`.
#[test]
fn context_bind_mount_matches_docker() {
    let stat = "while read -r f; do stat -c '%n %a %u:%g %F %s' \"$f\"; done";
    let dockerfile = format!(
        "FROM {BUSYBOX}\n\
         RUN --mount=type=bind,target=/ctx find /ctx | sort | {stat} > /listing\n\
         RUN --mount=type=bind,source=sub,target=/s find /s | sort | {stat} > /sub-listing\n\
         RUN --mount=type=bind,rw,target=/ctx rm -rf /ctx/* && echo new > /ctx/new && ls -A /ctx > /rw-listing\n\
         RUN --mount=type=bind,target=/ctx ls -A /ctx > /after-rw\n\
         USER app\n\
         RUN --mount=type=bind,target=/ctx cat /ctx/a.txt /ctx/logs/keep.log\n"
    );
    let ctx = context_with(
        &dockerfile,
        &[
            (
                ".dockerignore",
                "secret.txt\nlogs/\n!logs/keep.log\n*.tmp\n",
            ),
            ("a.txt", "a\n"),
            ("private.txt", "p\n"),
            ("owned.txt", "owned\n"),
            ("secret.txt", "s\n"),
            ("x.tmp", "t\n"),
            ("logs/keep.log", "keep\n"),
            ("logs/other.log", "other\n"),
            ("sub/deep/f", "f\n"),
            ("sub/run.sh", "#!/bin/sh\n"),
        ],
    );
    let p = ctx.path();
    let mode = |rel: &str, m: u32| {
        std::fs::set_permissions(p.join(rel), std::os::unix::fs::PermissionsExt::from_mode(m))
            .unwrap()
    };
    mode("private.txt", 0o600);
    mode("sub", 0o750);
    mode("sub/run.sh", 0o755);
    mode(".", 0o700);
    std::os::unix::fs::chown(p.join("owned.txt"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::symlink("a.txt", p.join("link")).unwrap();
    std::os::unix::fs::symlink("secret.txt", p.join("to-secret")).unwrap();

    let store = store_with_base();
    let work = tempfile::tempdir().unwrap();
    let theirs_tag = "rbuild-diff/ctxbind-docker:latest";
    let archive = docker_build_and_save(p, theirs_tag, Vec::<&str>::new(), work.path());
    run_ok(rbuild(store.path()).arg("load").arg("-i").arg(&archive));
    run_ok(docker().args(["rmi", theirs_tag]));
    let out = build_context(store.path(), p, &["-t", "ctxbind-rbuild:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in ["listing", "sub-listing", "rw-listing", "after-rw"] {
        let theirs = file_in_image(store.path(), theirs_tag, file)
            .unwrap_or_else(|| panic!("docker's image has no /{file}"));
        let ours = file_in_image(store.path(), "ctxbind-rbuild:1", file)
            .unwrap_or_else(|| panic!("rbuild's image has no /{file}"));
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "/{file} differs (left rbuild, right docker)"
        );
    }
    // The oracle itself shows the filter at work, so the comparison is not of two empty lists.
    let listing = file_in_image(store.path(), theirs_tag, "listing").unwrap();
    let listing = String::from_utf8_lossy(&listing);
    assert!(listing.contains("/ctx/logs/keep.log 644 0:0"), "{listing}");
    assert!(
        !listing.contains("secret.txt 644") && !listing.contains("other.log"),
        "{listing}"
    );
}

/// Rootless (rbuild as the unprivileged `rbuildtest`, root of a user namespace with its
/// subordinate ids): the step sees the filtered context as root's, a non-root USER can read it,
/// `rw` writes (even ones owned by a subordinate id in a private directory) are discarded without
/// touching the host context, and nothing is left in the store's scratch space.
#[test]
fn rootless_context_bind_mount_is_filtered_and_rw_writes_discarded() {
    use std::process::Command;
    let user = "rbuildtest";
    run_ok(&mut Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/test-users.sh"
    )));
    let dir = tempfile::Builder::new()
        .prefix("rbuild-ctxbind-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path();
    let dockerfile = format!(
        "FROM {BUSYBOX}\n\
         RUN --mount=type=bind,target=/ctx cd /ctx && find . | sort > /listing && stat -c '%u:%g' . a.txt > /owners\n\
         RUN --mount=type=bind,rw,target=/ctx rm /ctx/a.txt && mkdir /ctx/priv && echo p > /ctx/priv/f && \
         chown -R 5:5 /ctx/priv && chmod 700 /ctx/priv && echo new > /ctx/new\n\
         RUN --mount=type=bind,target=/ctx test -e /ctx/a.txt && ! test -e /ctx/new && ! test -e /ctx/priv\n\
         USER app\n\
         RUN --mount=type=bind,target=/ctx cat /ctx/a.txt /ctx/sub/b.txt\n"
    );
    let ctx = root.join("ctx");
    for (path, body) in [
        ("Dockerfile", dockerfile.as_str()),
        (".dockerignore", ".env\n"),
        (".env", "TOKEN=hidden\n"),
        ("a.txt", "a\n"),
        ("sub/b.txt", "b\n"),
    ] {
        let p = ctx.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::copy(base_archive(), root.join("base.tar")).unwrap();
    run_ok(
        Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(root),
    );
    run_ok(Command::new("chmod").arg("755").arg(root));
    let store = root.join("store");
    let as_user = |args: &[&str]| rbuild_as(user, &store, args, root);
    as_user(&["load", "-i", "base.tar"]);
    let before = host_state(&ctx);
    as_user(&["build", "-q", "-o", "type=local,dest=out", "ctx"]);
    assert_eq!(
        host_state(&ctx),
        before,
        "the build changed the host context"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("out/listing")).unwrap(),
        ".\n./.dockerignore\n./Dockerfile\n./a.txt\n./sub\n./sub/b.txt\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("out/owners")).unwrap(),
        "0:0\n0:0\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
