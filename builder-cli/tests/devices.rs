//! `rbuild build --device`: a CDI spec written by the test (a vendor of its own with a device
//! node, a mount, environment and hooks) resolved once, applied to every RUN step, and kept out
//! of the image; an unknown device fails before anything is built.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

const DOCKERFILE: &str = r#"FROM bb:1
RUN test -c /dev/rbuild-zero && test "$(head -c 4 /dev/rbuild-zero | od -An -tx1 | tr -d ' \n')" = 00000000
RUN test "$(cat /opt/rbuild-share/data)" = shared-data && test "$RBUILD_TEST_DEV" = zero && test "$RBUILD_TEST_SPEC" = 1
RUN grep -q '"status":"creating"' /etc/rbuild-hook && grep -qx started /dev/rbuild-start && echo built > /built
"#;

fn context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    ctx
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn run_steps_get_the_device_and_the_image_none_of_it() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_busybox(t.path());
    let cdi = write_cdi_spec(t.path());
    let ctx = context(t.path());
    run_ok(
        rbuild(&store)
            .args(["build", "--progress", "plain", "-t", "dev:1"])
            .args(["--device", "rbuild.test/dev=zero", "--cdi-spec-dir"])
            .arg(&cdi)
            .arg(&ctx),
    );
    let tar = t.path().join("dev.tar");
    run_ok(rbuild(&store).arg("save").arg("-o").arg(&tar).arg("dev:1"));
    let img = read_docker_archive(&tar);
    let paths: Vec<&str> = img.tree.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"built"), "{paths:?}");
    for p in &paths {
        assert!(
            !(p.starts_with("opt")
                || p.starts_with("dev")
                || p.starts_with(".rbuild")
                || p.contains("rbuild-hook")),
            "{p} reached the image: {paths:?}"
        );
    }
    // The history holds the Dockerfile's text, which names the device's paths; nothing the
    // device itself brings (its values, the host paths, the request) is anywhere in the config.
    let runtime = img.config["config"].to_string();
    assert!(!runtime.contains("RBUILD_TEST"), "{runtime}");
    let config = img.config.to_string();
    let share = t.path().join("share").display().to_string();
    let hook = t.path().join("hook.sh").display().to_string();
    for leak in [
        "RBUILD_TEST_DEV=zero",
        "RBUILD_TEST_SPEC=1",
        "rbuild.test/dev",
        share.as_str(),
        hook.as_str(),
    ] {
        assert!(
            !config.contains(leak),
            "{leak} reached the config: {config}"
        );
    }

    // The same build without the device must not reuse steps that ran with it: the first RUN
    // runs again and fails, as no /dev/rbuild-zero exists then.
    let out = rbuild(&store)
        .args(["build", "--progress", "plain", "-t", "dev:2"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("did not complete successfully"),
        "{}",
        text(&out)
    );
    // With the device again, every step comes from the cache.
    let out = run_ok(
        rbuild(&store)
            .args(["build", "--progress", "plain", "-t", "dev:3"])
            .args(["--device", "rbuild.test/dev=zero", "--cdi-spec-dir"])
            .arg(&cdi)
            .arg(&ctx),
    );
    assert_eq!(text(&out).matches("CACHED").count(), 3, "{}", text(&out));
}

#[test]
fn unknown_device_fails_before_building() {
    let t = tempfile::tempdir().unwrap();
    let store = store_with_busybox(t.path());
    let cdi = write_cdi_spec(t.path());
    let ctx = context(t.path());
    for dev in ["nvidia.com/gpu=all", "rbuild.test/dev=one"] {
        let out = rbuild(&store)
            .args([
                "build",
                "--progress",
                "plain",
                "--device",
                dev,
                "--cdi-spec-dir",
            ])
            .arg(&cdi)
            .arg(&ctx)
            .output()
            .unwrap();
        let msg = text(&out);
        assert!(!out.status.success(), "{msg}");
        assert!(msg.contains(&format!("unknown device {dev}")), "{msg}");
        assert!(msg.contains("Dockerfile"), "{msg}");
        assert!(
            msg.contains("nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"),
            "{msg}"
        );
        assert!(!msg.contains("RUN test"), "a step ran: {msg}");
    }
    // A broken spec names its file.
    std::fs::write(cdi.join("broken.json"), "{\"cdiVersion\": \"0.6.0\"").unwrap();
    let out = rbuild(&store)
        .args([
            "build",
            "--device",
            "rbuild.test/dev=zero",
            "--cdi-spec-dir",
        ])
        .arg(&cdi)
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("broken.json"), "{}", text(&out));
    // A malformed flag is refused by the command line.
    let out = rbuild(&store)
        .args(["build", "--device", "dev/null"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("--device"), "{}", text(&out));
}

/// The same, rootless: `rbuild` as the unprivileged `rbuildtest` (scripts/test-users.sh), which
/// cannot create device nodes and binds the host's instead.
#[test]
fn rootless_build_gets_the_device() {
    const USER: &str = "rbuildtest";
    run_ok(&mut std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/test-users.sh"
    )));
    let dir = tempfile::Builder::new()
        .prefix("rbuild-devices-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path();
    write_cdi_spec(root);
    context(root);
    busybox_tar(root);
    run_ok(
        std::process::Command::new("chown")
            .args(["-R", &format!("{USER}:{USER}")])
            .arg(root),
    );
    run_ok(std::process::Command::new("chmod").arg("755").arg(root));
    let store = root.join("store");
    rbuild_as(USER, &store, &["import", "rootfs.tar", "bb:1"], root);
    rbuild_as(
        USER,
        &store,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "dev:1",
            "--device",
            "rbuild.test/dev=zero",
            "--cdi-spec-dir",
            "cdi",
            "ctx",
        ],
        root,
    );
    rbuild_as(USER, &store, &["save", "-o", "dev.tar", "dev:1"], root);
    let img = read_docker_archive(&root.join("dev.tar"));
    let paths: Vec<&str> = img.tree.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"built"), "{paths:?}");
    assert!(
        !paths.iter().any(|p| p.starts_with("opt")
            || p.starts_with("dev")
            || p.starts_with(".rbuild")
            || p.contains("rbuild-hook")),
        "{paths:?}"
    );
}
