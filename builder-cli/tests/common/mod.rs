//! Shared set-up for tests that compare rbuild with real tools: the private dockerd started by
//! scripts/test.sh, a busybox base image both builders have, and helpers to read image archives.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The docker CLI (Debian's 20.10) pointed at the test daemon; fails loudly when it is not running.
pub fn docker() -> Command {
    let host = std::env::var("RBUILD_TEST_DOCKER_HOST").unwrap_or_else(|_| {
        panic!(
            "RBUILD_TEST_DOCKER_HOST is not set: run the suite with scripts/test.sh, which starts the \
             test dockerd (this test needs docker as its oracle and must not be skipped)"
        )
    });
    let mut c = Command::new("/usr/bin/docker");
    c.env("DOCKER_HOST", host).env("DOCKER_BUILDKIT", "1");
    c
}

/// Runs a command and returns its output, panicking with both streams when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The rbuild binary with its own store.
pub fn rbuild(store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    c.env("RBUILD_ROOT", store).env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Name of the busybox base image in docker.
pub const BUSYBOX: &str = "rbuild-test/busybox:latest";

/// A busybox rootfs from Debian's busybox-static, with a few users and groups for --chown tests.
pub fn busybox_rootfs(dir: &Path) {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.exists(),
        "/bin/busybox is missing: install Debian's busybox-static (scripts/install-deps.sh)"
    );
    for d in ["bin", "etc", "tmp", "root", "home/app"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(bb, dir.join("bin/busybox")).unwrap();
    let list = run_ok(Command::new(bb).arg("--list")).stdout;
    for applet in String::from_utf8(list).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
         app:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\ndaemon:x:1:\nstaff:x:50:app\napp:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
}

struct Base {
    /// `docker save` of the busybox image, for `rbuild load`.
    archive: PathBuf,
    _dir: tempfile::TempDir,
}

static BASE: OnceLock<Base> = OnceLock::new();

/// The busybox base: imported into docker once per test process, and saved for rbuild.
pub fn base_archive() -> &'static Path {
    &BASE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let rootfs = dir.path().join("rootfs");
            busybox_rootfs(&rootfs);
            let tar = dir.path().join("rootfs.tar");
            run_ok(
                Command::new("tar")
                    .arg("-C")
                    .arg(&rootfs)
                    .arg("--numeric-owner")
                    .arg("-cf")
                    .arg(&tar)
                    .arg("."),
            );
            run_ok(docker().arg("import").arg(&tar).arg(BUSYBOX));
            let archive = dir.path().join("busybox.tar");
            run_ok(docker().arg("save").arg("-o").arg(&archive).arg(BUSYBOX));
            Base { archive, _dir: dir }
        })
        .archive
}

/// A fresh rbuild store with the busybox base loaded.
pub fn store_with_base() -> tempfile::TempDir {
    let store = tempfile::tempdir().unwrap();
    run_ok(
        rbuild(store.path())
            .arg("load")
            .arg("-i")
            .arg(base_archive()),
    );
    store
}

/// A context directory holding `files` (path, contents; parents are created) and `Dockerfile`.
pub fn context_with(dockerfile: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).unwrap();
    for (path, body) in files {
        let p = ctx.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    ctx
}

/// A store with a busybox base imported as `bb:1` (no docker needed).
pub fn store_with_busybox(dir: &Path) -> std::path::PathBuf {
    let tar = busybox_tar(dir);
    store_with_base_tar(&tar, dir)
}

/// A busybox rootfs tarball; two stores importing the same one share the base's layer.
pub fn busybox_tar(dir: &Path) -> std::path::PathBuf {
    let rootfs = dir.join("rootfs");
    busybox_rootfs(&rootfs);
    let tar = dir.join("rootfs.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["--numeric-owner", "-cf"])
            .arg(&tar)
            .arg("."),
    );
    tar
}

pub fn store_with_base_tar(tar: &Path, dir: &Path) -> std::path::PathBuf {
    let store = dir.join("store");
    run_ok(rbuild(&store).arg("import").arg(tar).arg("bb:1"));
    store
}

/// An image read back from a docker-archive: its config and its flattened file tree.
pub struct ArchiveImage {
    pub config: serde_json::Value,
    pub tree: Vec<rbuild_layer::TreeEntry>,
    pub layer_count: usize,
}

/// Reads the first image of a docker-archive (`docker save` / `rbuild save`) and flattens its layers.
pub fn read_docker_archive(path: &Path) -> ArchiveImage {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // `docker save` writes a layer that occurs twice once, the other name being a link to it.
    let mut links: Vec<(String, String)> = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(path).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        if kind.is_file() {
            let mut buf = Vec::new();
            e.read_to_end(&mut buf).unwrap();
            files.insert(name, buf);
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = e
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let target = if kind.is_symlink() {
                let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                let mut parts: Vec<String> = Vec::new();
                for c in base.join(&target).components() {
                    match c {
                        std::path::Component::ParentDir => {
                            parts.pop();
                        }
                        std::path::Component::Normal(n) => {
                            parts.push(n.to_string_lossy().into_owned())
                        }
                        _ => {}
                    }
                }
                parts.join("/")
            } else {
                target
            };
            links.push((name, target));
        }
    }
    for (name, target) in links {
        if let Some(data) = files.get(&target).cloned() {
            files.insert(name, data);
        }
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(files.get("manifest.json").expect("manifest.json")).unwrap();
    let m = &manifest[0];
    let config: serde_json::Value =
        serde_json::from_slice(&files[m["Config"].as_str().unwrap()]).unwrap();
    let root = tempfile::tempdir().unwrap();
    let layers = m["Layers"].as_array().unwrap();
    for l in layers {
        let data = files
            .get(l.as_str().unwrap())
            .unwrap_or_else(|| panic!("{}: layer {l} is not in the archive", path.display()));
        let r = rbuild_layer::compress::decompress(std::io::Cursor::new(data.clone())).unwrap();
        rbuild_layer::apply_layer(
            root.path(),
            r,
            &rbuild_layer::ApplyOptions {
                same_owner: true,
                id_map: None,
            },
        )
        .unwrap();
    }
    ArchiveImage {
        config,
        tree: rbuild_layer::list_tree(root.path()).unwrap(),
        layer_count: layers.len(),
    }
}

/// The config fields the differential tests compare, as docker writes them.
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// A tiny HTTP/1.0 file server on 127.0.0.1 for ADD URL tests; serves `body` at every path with a
/// fixed Last-Modified, and 404 for paths containing "missing". Returns the base URL.
pub fn serve_file(body: &'static [u8]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let head = if first.contains("missing") {
                "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            } else {
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n",
                    body.len()
                )
            };
            let _ = stream.write_all(head.as_bytes());
            if !first.contains("missing") && !first.starts_with("HEAD") {
                let _ = stream.write_all(body);
            }
        }
    });
    format!("http://{addr}")
}

/// `(created_by, empty_layer)` of every history entry, the part of the history Docker defines
/// (timestamps are not compared).
pub fn history_rows(config: &serde_json::Value) -> Vec<(String, bool)> {
    config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|e| {
                    (
                        e["created_by"].as_str().unwrap_or("").to_string(),
                        e["empty_layer"].as_bool().unwrap_or(false),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `docker build` of `ctx` (with `args` before the context, e.g. `-f` or `--build-arg`) tagged `tag`,
/// then `docker save` into `out_dir/docker.tar`; returns the archive.
pub fn docker_build_and_save<I, S>(ctx: &Path, tag: &str, args: I, out_dir: &Path) -> PathBuf
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_ok(
        docker()
            .args(["build", "--network", "host", "-q", "-t", tag])
            .args(args)
            .arg(ctx),
    );
    let tar = out_dir.join("docker.tar");
    run_ok(docker().arg("save").arg("-o").arg(&tar).arg(tag));
    tar
}

/// Runs `rbuild ARGS` as `user` (with `runuser`) with `store` as its store, for rootless tests;
/// fails the test if it fails.
pub fn rbuild_as(user: &str, store: &Path, args: &[&str], cwd: &Path) -> Output {
    run_ok(
        Command::new("runuser")
            .args(["-u", user, "--", "env"])
            .arg(format!("RBUILD_ROOT={}", store.display()))
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .args(args)
            .current_dir(cwd)
            .env_remove("SOURCE_DATE_EPOCH"),
    )
}

pub fn mounts_under(path: &std::path::Path) -> Vec<String> {
    let root = path.canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(root.to_str().unwrap()))
        .collect()
}

/// Pids whose command line is exactly `cmdline` (arguments joined by spaces).
pub fn processes_with_cmdline(cmdline: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let joined = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ");
            if joined == cmdline {
                out.push(pid);
            }
        }
    }
    out
}

const CDI_HOOK: &str = r#"#!/bin/sh
# A createContainer hook as nvidia-ctk's are: the OCI state on stdin names the bundle, whose
# config.json names the container's root.
state=$(cat)
bundle=$(printf '%s' "$state" | sed -n 's/.*"bundle":"\([^"]*\)".*/\1/p')
root=$(sed -n 's/.*"root":{"path":"\([^"]*\)".*/\1/p' "$bundle/config.json")
# As update-ldcache writes /etc/ld.so.cache: a file in the root the step sees, not the image.
printf '%s\n' "$state" > "$root/etc/rbuild-hook"
"#;

/// Writes a CDI spec of a vendor of the tests' own, `rbuild.test/dev=zero` (a device node bound
/// from /dev/zero, a read-only mount of a directory with `data`, environment, a createContainer and
/// a startContainer hook), in YAML in `dir/cdi`, and what it points at;
/// returns the spec directory.
pub fn write_cdi_spec(dir: &Path) -> std::path::PathBuf {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("data"), "shared-data").unwrap();
    let hook = dir.join("hook.sh");
    std::fs::write(&hook, CDI_HOOK).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cdi = dir.join("cdi");
    std::fs::create_dir_all(&cdi).unwrap();
    std::fs::write(
        cdi.join("rbuild-test.yaml"),
        format!(
            r#"cdiVersion: "0.6.0"
kind: rbuild.test/dev
containerEdits:
  env: [RBUILD_TEST_SPEC=1]
devices:
  - name: zero
    containerEdits:
      env: [RBUILD_TEST_DEV=zero]
      deviceNodes:
        - path: /dev/rbuild-zero
          hostPath: /dev/zero
          type: c
          permissions: rw
      mounts:
        - hostPath: {share}
          containerPath: /opt/rbuild-share
          options: [ro, nosuid, nodev, bind]
      hooks:
        - hookName: createContainer
          path: {hook}
          args: [hook.sh, create]
          env: [PATH=/usr/bin:/bin]
          timeout: 30
        - hookName: startContainer
          path: /bin/sh
          args: [sh, -c, "echo started > /dev/rbuild-start"]
"#,
            share = share.display(),
            hook = hook.display()
        ),
    )
    .unwrap();
    cdi
}
