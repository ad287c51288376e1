//! rbuild inside an unprivileged container: the static binary (scripts/build-static.sh) is built
//! into its own FROM scratch image (images/rbuild/Dockerfile) by rbuild, loaded into the test
//! dockerd, and run there with docker's default seccomp profile and no added privileges (no
//! `--privileged`, `--cap-add` or `--security-opt`), where neither user nor mount namespaces can
//! be created. It builds a Debian Dockerfile with an `apt-get install` RUN step under chroot
//! isolation, with a build secret, and docker runs the result.
//!
//! Needs root, docker (scripts/test.sh starts the daemon), debootstrap and the Debian mirror;
//! fails loudly without them. The static build is incremental (its own target directory), so
//! only the first run after a change pays for it; `RBUILD_STATIC_BIN` names a prebuilt one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const RBUILD_IMAGE: &str = "rbuild-test/rbuild:latest";
const RESULT_IMAGE: &str = "rbuild-test/incontainer-hello:latest";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The static rbuild: `RBUILD_STATIC_BIN`, else what scripts/build-static.sh builds (its last
/// stdout line).
fn static_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RBUILD_STATIC_BIN") {
        return PathBuf::from(p);
    }
    // Unoptimised: the same static binary at a fraction of a release build's time.
    let out = run_ok(
        Command::new("bash")
            .arg(repo_root().join("scripts/build-static.sh"))
            .env("RBUILD_STATIC_PROFILE", "dev"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("build-static.sh printed nothing"),
    );
    let ldd = Command::new("ldd")
        .arg(&path)
        .output()
        .expect("cannot run ldd");
    let said =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        said.contains("not a dynamic executable"),
        "{} is not static: ldd says {said}",
        path.display()
    );
    path
}

/// Proxy settings of the environment as build args, so apt reaches the mirror as on the host.
fn proxy_args() -> Vec<String> {
    let mut args = Vec::new();
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    ] {
        if let Ok(v) = std::env::var(name) {
            args.push("--build-arg".to_string());
            args.push(format!("{name}={v}"));
        }
    }
    args
}

fn docker_run_rbuild(mounts: &[(&Path, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = docker();
    cmd.args(["run", "--rm", "--network", "host"]);
    for (host, inner) in mounts {
        cmd.arg("-v").arg(format!("{}:{inner}", host.display()));
    }
    cmd.arg(RBUILD_IMAGE).args(args);
    run_ok(&mut cmd)
}

#[test]
fn static_rbuild_image_builds_apt_get_install_in_an_unprivileged_container() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // 1. rbuild builds its own image from the static binary and the host's CA bundle.
    let bin = static_binary();
    let ctx = w.join("image-ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::copy(&bin, ctx.join("rbuild")).unwrap();
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        ctx.join("ca-certificates.crt"),
    )
    .expect("/etc/ssl/certs/ca-certificates.crt is missing: install ca-certificates");
    std::fs::copy(
        repo_root().join("images/rbuild/Dockerfile"),
        ctx.join("Dockerfile"),
    )
    .unwrap();
    let host_store = w.join("host-store");
    let image_tar = w.join("rbuild-image.tar");
    run_ok(
        rbuild(&host_store)
            .args(["build", "-q", "-t", RBUILD_IMAGE, "-o"])
            .arg(format!("type=docker,dest={}", image_tar.display()))
            .arg(&ctx),
    );
    run_ok(docker().arg("load").arg("-i").arg(&image_tar));

    // 2. The Debian base, as a tar the container imports into its store.
    let base = w.join("bookworm.tar");
    let out = Command::new(repo_root().join("scripts/make-bookworm.sh"))
        .arg(&base)
        .output()
        .expect("cannot run scripts/make-bookworm.sh");
    assert!(
        out.status.success(),
        "scripts/make-bookworm.sh failed: debootstrap or the Debian mirror is unavailable\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = w.join("store");
    let io = w.join("io");
    std::fs::create_dir_all(io.join("ctx")).unwrap();
    std::fs::copy(&base, io.join("bookworm.tar")).unwrap();
    std::fs::write(
        io.join("host-ca.crt"),
        std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap(),
    )
    .unwrap();
    // The CA bundle comes in as a secret (as a proxy's CA would for HTTPS mirrors): it must be
    // there for the step and in no layer.
    std::fs::write(
        io.join("ctx/Dockerfile"),
        "FROM bookworm\n\
         RUN --mount=type=secret,id=hostca,target=/etc/ssl/host-ca.crt \\\n\
         \x20   test -s /etc/ssl/host-ca.crt && apt-get update -qq \\\n\
         \x20   -o Acquire::https::CaInfo=/etc/ssl/host-ca.crt \\\n\
         \x20   && apt-get install -y -qq --no-install-recommends hello && rm -rf /var/lib/apt/lists/*\n\
         CMD [\"hello\"]\n",
    )
    .unwrap();
    let mounts = [(store.as_path(), "/var/lib/rbuild"), (io.as_path(), "/io")];

    // 3. Inside the container: what it offers, the import, the build.
    let info = docker_run_rbuild(&mounts, &["info", "--format", "json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info --format json");
    assert_eq!(info["isolation"]["mode"], "chroot", "{info:#}");
    assert_eq!(info["snapshotter"], "copy", "{info:#}");
    assert_eq!(info["namespaces"]["user"]["allowed"], false, "{info:#}");
    docker_run_rbuild(&mounts, &["import", "/io/bookworm.tar", "bookworm"]);
    let mut build = vec![
        "build",
        "--progress",
        "plain",
        "--secret",
        "id=hostca,src=/io/host-ca.crt",
        "-t",
        RESULT_IMAGE,
        "-o",
        "type=docker,dest=/io/result.tar",
    ];
    let proxies = proxy_args();
    build.extend(proxies.iter().map(String::as_str));
    build.push("/io/ctx");
    let out = docker_run_rbuild(&mounts, &build);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("WARNING: chroot isolation:").count(),
        1,
        "the chroot warning must come exactly once:\n{log}"
    );
    assert!(log.contains("Setting up hello"), "{log}");

    // 4. The secret is in no layer, and docker runs the result.
    let archive = read_docker_archive(&io.join("result.tar"));
    let listing = format!("{:?}", archive.tree);
    assert!(
        !listing.contains("host-ca.crt"),
        "the secret leaked into the image"
    );
    assert!(
        !listing.contains("dev/null") && !listing.contains("etc/resolv.conf"),
        "chroot isolation's stubs leaked into the image"
    );
    run_ok(docker().arg("load").arg("-i").arg(io.join("result.tar")));
    let ran = run_ok(docker().args(["run", "--rm", "--network", "none", RESULT_IMAGE]));
    assert_eq!(String::from_utf8_lossy(&ran.stdout).trim(), "Hello, world!");
    let _ = docker().args(["rmi", RESULT_IMAGE]).output();

    // 5. Not root in the same container: no chroot fallback, but an error that says what is
    // missing and what to change.
    let user_dir = w.join("user");
    std::fs::create_dir_all(user_dir.join("ctx")).unwrap();
    std::fs::write(
        user_dir.join("ctx/Dockerfile"),
        "FROM scratch\nCOPY Dockerfile /\nRUN true\n",
    )
    .unwrap();
    std::os::unix::fs::chown(&user_dir, Some(1000), Some(1000)).unwrap();
    let out = docker()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "1000:1000",
            "-e",
            "HOME=/io",
        ])
        .arg("-v")
        .arg(format!("{}:/io", user_dir.display()))
        .arg(RBUILD_IMAGE)
        .args([
            "--root",
            "/io/store",
            "build",
            "--progress",
            "plain",
            "/io/ctx",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a rootless RUN without user namespaces must fail:\n{err}"
    );
    for needle in ["refuses user namespaces", "seccomp", "run rbuild as root"] {
        assert!(
            err.contains(needle),
            "the error should mention {needle:?}:\n{err}"
        );
    }
    // Files the container wrote as its root; the tempdir's drop removes them.
    drop(work);
}
