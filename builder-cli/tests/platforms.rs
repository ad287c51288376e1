//! Multi-platform builds end to end: an arm64 busybox base made from Debian's arm64
//! busybox-static package, an index of amd64 and arm64 bases in a real `docker-registry`, a
//! Dockerfile built for `linux/amd64,linux/arm64` whose RUN step runs under qemu-user-static for
//! arm64, and the index checked with skopeo and in the OCI layout.
//!
//! Needs (scripts/install-deps.sh installs and registers them, as root): qemu-user-static with a
//! binfmt_misc handler `qemu-aarch64` carrying the F flag, and the arm64 busybox-static .deb in
//! /var/cache/rbuild-test/arm64 (or `$RBUILD_TEST_ARM64_BUSYBOX_DEB`). Missing either fails.

mod common;
#[path = "common/registry.rs"]
mod reg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use reg::{skopeo_manifest, Registry};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The arm64 busybox-static package, downloaded by scripts/install-deps.sh.
fn arm64_busybox_deb() -> PathBuf {
    if let Ok(p) = std::env::var("RBUILD_TEST_ARM64_BUSYBOX_DEB") {
        return PathBuf::from(p);
    }
    let dir = Path::new("/var/cache/rbuild-test/arm64");
    std::fs::read_dir(dir)
        .ok()
        .and_then(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                let n = p.file_name().unwrap_or_default().to_string_lossy();
                n.starts_with("busybox-static_") && n.ends_with("_arm64.deb")
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no arm64 busybox-static .deb in {}: run scripts/install-deps.sh as root (it runs \
                 dpkg --add-architecture arm64 and apt-get download busybox-static:arm64)",
                dir.display()
            )
        })
}

/// Fails loudly unless the kernel runs aarch64 binaries through qemu with the F flag.
fn require_aarch64_emulation() {
    let h = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
    let desc = std::fs::read_to_string(h).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: install qemu-user-static and register its handlers (scripts/install-deps.sh \
             as root mounts binfmt_misc and registers them)",
            h.display()
        )
    });
    assert!(
        desc.lines().any(|l| l == "enabled"),
        "{}: {desc}",
        h.display()
    );
    assert!(
        desc.lines()
            .any(|l| l.starts_with("flags:") && l.contains('F')),
        "{} lacks the F flag: {desc}",
        h.display()
    );
}

/// A busybox rootfs for arm64: the arm64 binary, the applet links of the host's busybox (same
/// Debian version), and the users of the amd64 base.
fn arm64_rootfs(dir: &Path) {
    busybox_rootfs(dir);
    let unpacked = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(arm64_busybox_deb())
            .arg(unpacked.path()),
    );
    let bin = unpacked.path().join("bin/busybox");
    let head = std::fs::read(&bin).unwrap();
    assert_eq!(&head[..4], b"\x7fELF", "{} is not an ELF", bin.display());
    assert_eq!(u16::from_le_bytes([head[18], head[19]]), 183, "not aarch64");
    std::fs::copy(&bin, dir.join("bin/busybox")).unwrap();
}

/// Pushes `REG/base:1` as an index of an amd64 and an arm64 busybox, built by rbuild itself
/// (`COPY rootfs-$TARGETARCH/ /` into scratch for both platforms).
fn push_base_index(reg: &Registry, work: &Path) -> String {
    let ctx = work.join("base-ctx");
    busybox_rootfs(&ctx.join("rootfs-amd64"));
    arm64_rootfs(&ctx.join("rootfs-arm64"));
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\n",
    )
    .unwrap();
    let tag = format!("{}/test/base:1", reg.host());
    run_ok(
        rbuild(&work.join("base-store"))
            .args([
                "build",
                "--platform",
                "linux/amd64,linux/arm64",
                "--push",
                "-t",
            ])
            .arg(&tag)
            .arg(&ctx),
    );
    tag
}

/// The `architecture` of each entry of an index, as skopeo reads it from the registry.
fn index_platforms(index: &serde_json::Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("not an index: {index}"))
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The content of `name` in a gzip layer blob.
fn file_in_layer(layer: &Path, name: &str) -> String {
    let out = run_ok(
        Command::new("tar")
            .arg("-xzOf")
            .arg(layer)
            .arg("--wildcards")
            .arg(format!("*{name}")),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn multi_platform_build_runs_arm64_under_emulation_and_writes_one_index() {
    require_aarch64_emulation();
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let base = push_base_index(&reg, work.path());
    let raw = skopeo_manifest(&base);
    assert_eq!(
        raw["mediaType"].as_str(),
        Some("application/vnd.oci.image.index.v1+json"),
        "{raw}"
    );
    assert_eq!(index_platforms(&raw), ["linux/amd64", "linux/arm64"]);

    let ctx = work.path().join("app");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM --platform=$TARGETPLATFORM {base}\nARG TARGETPLATFORM\nARG BUILDPLATFORM\n\
             RUN uname -m > /arch && echo \"$TARGETPLATFORM on $BUILDPLATFORM\" > /info\n"
        ),
    )
    .unwrap();
    let app = format!("{}/test/app:1", reg.host());
    let layout = work.path().join("layout");
    let store = work.path().join("store");
    let out = run_ok(
        rbuild(&store)
            .args(["build", "--progress", "plain", "--push", "-t", &app])
            .args(["--platform", "linux/amd64,linux/arm64", "-o"])
            .arg(format!("type=oci,dest={},tar=false", layout.display()))
            .arg(&ctx),
    );
    let log = text(&out);

    // The registry holds one index whose entries are each platform's image.
    let pushed = skopeo_manifest(&app);
    assert_eq!(
        pushed["mediaType"].as_str(),
        Some("application/vnd.oci.image.index.v1+json"),
        "{pushed}"
    );
    assert_eq!(index_platforms(&pushed), ["linux/amd64", "linux/arm64"]);
    for m in pushed["manifests"].as_array().unwrap() {
        let digest = m["digest"].as_str().unwrap();
        let cfg = run_ok(Command::new("skopeo").args([
            "inspect",
            "--config",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/test/app@{digest}", reg.host()),
        ]));
        let cfg: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
        assert_eq!(cfg["architecture"], m["platform"]["architecture"], "{cfg}");
    }

    // The OCI layout names an index; each manifest's config and RUN output match its platform.
    let top = json(&layout.join("index.json"));
    let entry = &top["manifests"][0];
    assert_eq!(
        entry["mediaType"].as_str(),
        Some("application/vnd.oci.image.index.v1+json"),
        "{top}"
    );
    let index = json(&blob(&layout, entry["digest"].as_str().unwrap()));
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    for m in index["manifests"].as_array().unwrap() {
        let arch = m["platform"]["architecture"].as_str().unwrap();
        let manifest = json(&blob(&layout, m["digest"].as_str().unwrap()));
        let cfg = json(&blob(
            &layout,
            manifest["config"]["digest"].as_str().unwrap(),
        ));
        assert_eq!(cfg["architecture"].as_str(), Some(arch), "{cfg}");
        assert_eq!(cfg["os"].as_str(), Some("linux"));
        let last = manifest["layers"].as_array().unwrap().last().unwrap();
        let layer = blob(&layout, last["digest"].as_str().unwrap());
        let machine = match arch {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            other => panic!("unexpected platform {other}"),
        };
        assert_eq!(
            file_in_layer(&layer, "arch"),
            format!("{machine}\n"),
            "{log}"
        );
        assert_eq!(
            file_in_layer(&layer, "info"),
            format!("linux/{arch} on linux/amd64\n"),
            "{log}"
        );
    }

    // The store's tag is the index: inspect shows this host's image.
    let inspect = run_ok(rbuild(&store).args(["inspect", &app]));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v[0]["Architecture"].as_str(), Some("amd64"), "{v}");

    // `rbuild push` of the multi-platform tag pushes the index again, under another name.
    let copy = format!("{}/test/copy:1", reg.host());
    run_ok(rbuild(&store).args(["push", &app, &copy]));
    assert_eq!(
        index_platforms(&skopeo_manifest(&copy)),
        ["linux/amd64", "linux/arm64"]
    );

    // A second build is cached for both platforms (the platform is in the RUN's key: had the
    // arm64 step reused the amd64 result, /arch above would say x86_64).
    let again = run_ok(
        rbuild(&store)
            .args(["build", "--progress", "plain", "-t", &app])
            .args(["--platform", "linux/amd64,linux/arm64"])
            .arg(&ctx),
    );
    let again = text(&again);
    assert_eq!(again.matches("CACHED").count(), 2, "{again}");

    // A docker archive holds one platform and says so.
    let bad = rbuild(&store)
        .args(["build", "--platform", "linux/amd64,linux/arm64", "-o"])
        .arg(format!(
            "type=docker,dest={}",
            work.path().join("x.tar").display()
        ))
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(text(&bad).contains("one platform"), "{}", text(&bad));
}

#[test]
fn a_local_image_of_another_platform_is_never_used_in_its_place() {
    require_aarch64_emulation();
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let base = push_base_index(&reg, work.path());
    // The store has an amd64 image under the base's name, and one the registry lacks.
    let store = work.path().join("store");
    let tar = busybox_tar(&work.path().join("amd64"));
    let lonely = format!("{}/test/lonely:1", reg.host());
    for name in [&base, &lonely] {
        run_ok(
            rbuild(&store)
                .args(["import", "--platform", "linux/amd64"])
                .arg(&tar)
                .arg(name),
        );
    }

    // Asked for arm64, the build pulls the base's arm64 image instead of using the local one.
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM --platform=linux/arm64 {base}\nRUN uname -m > /arch\n"),
    )
    .unwrap();
    let out_dir = work.path().join("out");
    run_ok(rbuild(&store).args(["build", "-o"]).arg(&out_dir).arg(&ctx));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("arch")).unwrap(),
        "aarch64\n"
    );

    // Where the registry has no image for it, the build fails naming both platforms.
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {lonely}\nRUN true\n")).unwrap();
    let out = rbuild(&store)
        .args(["build", "--platform", "linux/arm64"])
        .arg(&ctx)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("is for linux/amd64, not for linux/arm64"),
        "the error does not name both platforms: {t}"
    );
}
