//! The image leaves the store in forms real tools accept: `docker load` + `docker run`, skopeo and
//! umoci on OCI layouts, the flattened rootfs tar; and the store commands behave like docker's.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// A small context on the busybox base; `marker` makes images distinct between tests.
fn context(marker: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {BUSYBOX}\nCOPY hello.txt /hello.txt\nENV MARKER={marker}\n\
             CMD [\"cat\", \"/hello.txt\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.path().join("hello.txt"), format!("hello {marker}\n")).unwrap();
    ctx
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn quiet_build_prints_only_the_image_id_and_iidfile_matches() {
    let store = store_with_base();
    let ctx = context("quiet");
    let iid = ctx.path().join("iid");
    let out = run_ok(
        rbuild(store.path())
            .args(["-q", "-t", "quiet:1", "--iidfile"])
            .arg(&iid)
            .arg(ctx.path()),
    );
    let printed = stdout(&out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 1, "-q printed more than the id: {printed:?}");
    assert!(
        lines[0].starts_with("sha256:") && lines[0].len() == 71,
        "{printed:?}"
    );
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), lines[0]);
    assert!(out.stderr.is_empty(), "-q wrote progress to stderr");
}

#[test]
fn saved_archive_is_loaded_and_run_by_docker() {
    let store = store_with_base();
    let ctx = context("docker-run");
    run_ok(
        rbuild(store.path())
            .args(["-q", "-t", "rbuild-out/docker-run:1.0"])
            .arg(ctx.path()),
    );
    let tar = ctx.path().join("image.tar");
    run_ok(
        rbuild(store.path())
            .args(["save", "rbuild-out/docker-run:1.0", "-o"])
            .arg(&tar),
    );
    let load = run_ok(docker().arg("load").arg("-i").arg(&tar));
    assert!(
        stdout(&load).contains("Loaded image: rbuild-out/docker-run:1.0"),
        "{}",
        stdout(&load)
    );
    let run = run_ok(docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        "rbuild-out/docker-run:1.0",
    ]));
    assert_eq!(stdout(&run), "hello docker-run\n");
    let env = run_ok(docker().args([
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        "rbuild-out/docker-run:1.0",
    ]));
    assert!(
        stdout(&env).contains("MARKER=docker-run"),
        "{}",
        stdout(&env)
    );
}

#[test]
fn build_outputs_docker_oci_and_rootfs_tar() {
    let store = store_with_base();
    let ctx = context("outputs");
    let work = tempfile::tempdir().unwrap();
    let docker_tar = work.path().join("d.tar");
    let oci_dir = work.path().join("layout");
    let oci_tar = work.path().join("layout.tar");
    let fs_tar = work.path().join("fs.tar");
    run_ok(
        rbuild(store.path())
            .args(["-q", "-t", "outputs:1"])
            .arg("-o")
            .arg(format!("type=docker,dest={}", docker_tar.display()))
            .arg("-o")
            .arg(format!("type=oci,dest={}", oci_dir.display()))
            .arg("-o")
            .arg(format!("type=oci,dest={}", oci_tar.display()))
            .arg("-o")
            .arg(format!("type=tar,dest={}", fs_tar.display()))
            .arg(ctx.path()),
    );
    // docker-archive: same config as the store's image.
    let img = read_docker_archive(&docker_tar);
    assert_eq!(
        img.config["config"]["Cmd"],
        serde_json::json!(["cat", "/hello.txt"])
    );

    // OCI layout directory: skopeo reads it, umoci unpacks it.
    let inspect = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:1", oci_dir.display())),
    );
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        v["Layers"].as_array().map(|l| l.len()),
        Some(img.layer_count)
    );
    let bundle = work.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:1", oci_dir.display()))
            .arg(&bundle),
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
        "hello outputs\n"
    );
    assert!(bundle.join("rootfs/bin/busybox").is_file());

    // OCI layout tar: skopeo reads it as an oci-archive.
    run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", oci_tar.display())),
    );

    // Flattened rootfs: one tar with the merged tree.
    let list = run_ok(Command::new("tar").arg("-tf").arg(&fs_tar));
    let names = stdout(&list);
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "hello.txt"),
        "{names}"
    );
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "bin/busybox"),
        "{names}"
    );
}

#[test]
fn same_dockerfile_and_context_give_the_same_layers() {
    let ctx = context("determinism");
    let digests = |store: &Path| -> Vec<serde_json::Value> {
        run_ok(rbuild(store).args(["-q", "-t", "det:1"]).arg(ctx.path()));
        let out = run_ok(rbuild(store).args(["inspect", "det:1"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["RootFS"]["Layers"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no RootFS.Layers in inspect output: {v}"))
    };
    let a = store_with_base();
    let b = store_with_base();
    let first = digests(a.path());
    let second = digests(b.path());
    assert!(first.len() >= 2, "{first:?}");
    assert_eq!(first, second, "layer digests differ between two builds");
    // And a rebuild in the same store keeps them too.
    assert_eq!(digests(a.path()), first);
}

#[test]
fn store_commands_tag_list_history_rmi_prune() {
    let store = store_with_base();
    let ctx = context("store-cmds");
    run_ok(
        rbuild(store.path())
            .args(["-q", "-t", "cmds:1"])
            .arg(ctx.path()),
    );
    run_ok(rbuild(store.path()).args(["tag", "cmds:1", "registry.example:5000/team/cmds:2"]));
    let images = stdout(&run_ok(rbuild(store.path()).arg("images")));
    assert!(
        images.contains("cmds") && images.contains("registry.example:5000/team/cmds"),
        "{images}"
    );
    let history = stdout(&run_ok(rbuild(store.path()).args([
        "history",
        "--no-trunc",
        "cmds:1",
    ])));
    assert!(
        history.contains("COPY hello.txt /hello.txt # buildkit"),
        "{history}"
    );
    assert!(history.contains("ENV MARKER=store-cmds"), "{history}");

    // Removing one of two tags only untags.
    let rmi = stdout(&run_ok(rbuild(store.path()).args(["rmi", "cmds:1"])));
    assert!(rmi.contains("Untagged"), "{rmi}");
    run_ok(rbuild(store.path()).args(["inspect", "registry.example:5000/team/cmds:2"]));
    let missing = rbuild(store.path())
        .args(["inspect", "cmds:1"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cmds:1"));

    run_ok(rbuild(store.path()).args(["rmi", "registry.example:5000/team/cmds:2"]));
    let pruned = stdout(&run_ok(rbuild(store.path()).arg("prune")));
    assert!(pruned.contains("reclaimed"), "{pruned}");
    // The base image is still usable after prune.
    run_ok(
        rbuild(store.path())
            .args(["-q", "-t", "again:1"])
            .arg(ctx.path()),
    );
}

#[test]
fn load_round_trips_rbuild_and_skopeo_archives() {
    let store = store_with_base();
    let ctx = context("roundtrip");
    run_ok(
        rbuild(store.path())
            .args(["-q", "-t", "rt:1"])
            .arg(ctx.path()),
    );
    let work = tempfile::tempdir().unwrap();
    let ours = work.path().join("ours.tar");
    run_ok(
        rbuild(store.path())
            .args(["save", "--format", "oci", "rt:1", "-o"])
            .arg(&ours),
    );
    // skopeo converts our OCI archive into a docker-archive; both load into a fresh store.
    let theirs = work.path().join("skopeo.tar");
    run_ok(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci-archive:{}", ours.display()))
            .arg(format!("docker-archive:{}:skopeo/rt:1", theirs.display())),
    );
    let fresh = tempfile::tempdir().unwrap();
    let a = stdout(&run_ok(
        rbuild(fresh.path()).args(["load", "-i"]).arg(&ours),
    ));
    let b = stdout(&run_ok(
        rbuild(fresh.path()).args(["load", "-i"]).arg(&theirs),
    ));
    assert!(b.contains("skopeo/rt:1"), "{b}");
    let id = |name: &str| {
        let out = run_ok(rbuild(fresh.path()).args(["inspect", name]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["Id"].clone()
    };
    assert_eq!(
        id("skopeo/rt:1"),
        id(a.trim().trim_start_matches("Loaded image: "))
    );
}

#[test]
fn errors_name_the_file_and_line_and_exit_nonzero() {
    let store = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY nothing-here /x\n",
    )
    .unwrap();
    let out = rbuild(store.path()).arg(ctx.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("nothing-here"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY ../outside /x\n",
    )
    .unwrap();
    let out = rbuild(store.path()).arg(ctx.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside"), "{err}");

    let out = rbuild(store.path())
        .args(["--definitely-not-a-flag", "."])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn add_url_checksum_is_verified() {
    let base = serve_file(b"checked\n");
    let good = "sha256:1d9a5b2ba6ec9eb7a2fc05a4e2ee09ab50d4e6f6f2dd9ab4ab8ee3c6d4c2a8f5";
    let real = format!("sha256:{}", {
        let d = rbuild_digest::Digest::of(b"checked\n");
        d.hex()
    });
    let store = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM scratch\nADD --checksum={good} {base}/f.txt /f.txt\n"),
    )
    .unwrap();
    let out = rbuild(store.path()).arg(ctx.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checksum mismatch") && err.contains(&real) && err.contains(good),
        "{err}"
    );
    assert!(err.contains(&base), "error should name the URL: {err}");

    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM scratch\nADD --checksum={real} {base}/f.txt /f.txt\nADD {base}/missing /m\n"),
    )
    .unwrap();
    let out = rbuild(store.path()).arg(ctx.path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Dockerfile:3") && err.contains("404"),
        "a 404 fails at its line: {err}"
    );
}

#[test]
fn identical_layers_repeated_in_a_chain_still_mount() {
    // Steps that change nothing all produce the same empty layer; overlayfs refuses a lower
    // directory listed twice, so the chain must be deduplicated (found by benches/run-steps.sh).
    let store = store_with_base();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {BUSYBOX}\nRUN true\nRUN true\nRUN echo a > /dev/null\nRUN echo done > /done\n\
             RUN cat /done\n"
        ),
    )
    .unwrap();
    let out = run_ok(
        rbuild(store.path())
            .args(["--progress", "plain", "-t", "rep:1"])
            .arg(ctx.path()),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("done"));
    let inspect = run_ok(rbuild(store.path()).args(["inspect", "rep:1"]));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let layers = v[0]["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 6, "base + 5 RUN layers: {layers:?}");
    assert_eq!(layers[1], layers[2], "empty RUN layers are identical");
}

#[test]
fn from_oci_layout_uses_an_exported_layout_as_base() {
    let store = store_with_base();
    let ctx = context("layout-base");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    run_ok(
        rbuild(store.path())
            .args(["-q", "-t", "layout-base:1", "-o"])
            .arg(format!("type=oci,dest={}", layout.display()))
            .arg(ctx.path()),
    );
    // A fresh store that has never seen the image builds on the layout.
    let fresh = tempfile::tempdir().unwrap();
    let child = tempfile::tempdir().unwrap();
    std::fs::write(
        child.path().join("Dockerfile"),
        format!(
            "FROM oci-layout://{}:1\nRUN cat /hello.txt > /copied.txt\n",
            layout.display()
        ),
    )
    .unwrap();
    run_ok(
        rbuild(fresh.path())
            .args(["-q", "-t", "child:1"])
            .arg(child.path()),
    );
    let tar = work.path().join("child.tar");
    run_ok(
        rbuild(fresh.path())
            .args(["save", "child:1", "-o"])
            .arg(&tar),
    );
    let img = read_docker_archive(&tar);
    let copied = img
        .tree
        .iter()
        .find(|e| e.path == "copied.txt")
        .expect("copied.txt");
    assert_eq!(copied.size, "hello layout-base\n".len() as u64);
    assert!(img.config["config"]["Env"]
        .to_string()
        .contains("MARKER=layout-base"));

    // A tag the layout does not have is a clear error naming it.
    std::fs::write(
        child.path().join("Dockerfile"),
        format!("FROM oci-layout://{}:nope\n", layout.display()),
    )
    .unwrap();
    let out = rbuild(fresh.path()).arg(child.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn local_output_writes_the_tree_into_a_directory() {
    let store = store_with_base();
    let ctx = context("local-out");
    let work = tempfile::tempdir().unwrap();
    let bare = work.path().join("bare");
    let typed = work.path().join("typed");
    run_ok(
        rbuild(store.path())
            .args(["-q", "-o"])
            .arg(&bare)
            .arg("-o")
            .arg(format!("type=local,dest={}", typed.display()))
            .arg(ctx.path()),
    );
    for dir in [&bare, &typed] {
        assert_eq!(
            std::fs::read_to_string(dir.join("hello.txt")).unwrap(),
            "hello local-out\n"
        );
        assert!(std::fs::symlink_metadata(dir.join("bin/sh"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
