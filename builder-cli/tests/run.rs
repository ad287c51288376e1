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
    let hash = digest::Digest::of(value.as_bytes()).hex();
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
            let d = digest::Digest::of(&buf).to_string();
            assert!(
                config.as_array().unwrap().iter().any(|x| x == &d),
                "{name}: {d} is not a diff id"
            );
        }
    }
}
