//! Differential test on a real distribution: a debootstrapped Debian bookworm base (Docker Hub is
//! out of reach, so scripts/make-bookworm.sh makes one from the Debian mirror apt uses), imported
//! into docker and loaded into rbuild from `docker save`; the same Dockerfile (apt-get install,
//! useradd, USER, a RUN as that user) built by both must give the same config and file tree, and
//! rbuild's image must be loaded and run by `docker run`.
//!
//! Needs root, debootstrap and the Debian mirror; fails loudly (never skips) without them. The
//! rootfs is cached per day under /var/cache/rbuild-test, so only the first run of a day pays for
//! debootstrap.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Name of the bookworm base in docker (and, after `rbuild load`, in rbuild's store).
const BOOKWORM: &str = "rbuild-test/bookworm:latest";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// How a path whose content Docker does not define is compared instead of by content digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loose {
    /// Kind, mode, owner, link and xattrs are compared; the content (digest and size) is not.
    Metadata,
    /// A text log: content compared with every `YYYY-MM-DD HH:MM:SS` stamp blanked.
    Timestamps,
    /// A shadow(5) file: content compared with each line's last-change day (field 3) blanked.
    ShadowDays,
}

/// Paths whose content differs between two builds of the same Dockerfile by nature, with why.
/// Everything else in the tree is compared by content digest; each of these must exist in both
/// images, so the list cannot silently go stale.
const LOOSE: &[(&str, Loose, &str)] = &[
    // Logs that stamp lines with the wall-clock time of the build step; the rest must match.
    (
        "var/log/apt/history.log",
        Loose::Timestamps,
        "apt history: Start-Date/End-Date lines",
    ),
    (
        "var/log/apt/term.log",
        Loose::Timestamps,
        "apt terminal log: Log started/Log ended lines",
    ),
    (
        "var/log/dpkg.log",
        Loose::Timestamps,
        "dpkg log: every line starts with date and time",
    ),
    // Binary caches that embed inode numbers, ctimes or mtimes of the files they index.
    (
        "var/cache/ldconfig/aux-cache",
        Loose::Metadata,
        "ldconfig's aux cache keys libraries by inode, device and ctime",
    ),
    (
        "var/cache/apt/pkgcache.bin",
        Loose::Metadata,
        "apt's binary cache records the mtimes of the index files it was built from",
    ),
    (
        "var/cache/apt/srcpkgcache.bin",
        Loose::Metadata,
        "apt's binary cache records the mtimes of the index files it was built from",
    ),
    // useradd writes the day of the build as the password's last change (differs across midnight).
    (
        "etc/shadow",
        Loose::ShadowDays,
        "last password change is the build day",
    ),
];

fn loose(path: &str) -> Option<Loose> {
    LOOSE
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, l, _)| *l)
}

/// Blanks the last-change day of each shadow(5) line.
fn shadow_without_days(text: &str) -> String {
    text.lines()
        .map(|l| {
            let mut f: Vec<&str> = l.split(':').collect();
            if let Some(day) = f.get_mut(2) {
                *day = "";
            }
            f.join(":")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replaces every `YYYY-MM-DD<spaces>HH:MM:SS` (dpkg's and apt's log stamps) with `<time>`.
fn without_timestamps(text: &str) -> String {
    fn shape(s: &[u8], pattern: &[u8]) -> bool {
        s.len() >= pattern.len()
            && pattern.iter().zip(s).all(|(p, c)| match p {
                b'D' => c.is_ascii_digit(),
                other => other == c,
            })
    }
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(rest) = b.get(i..) {
        if rest.is_empty() {
            break;
        }
        if shape(rest, b"DDDD-DD-DD ") {
            let mut j = 10;
            while rest.get(j) == Some(&b' ') {
                j += 1;
            }
            if rest.get(j..).is_some_and(|t| shape(t, b"DD:DD:DD")) {
                out.extend_from_slice(b"<time>");
                i += j + 8;
                continue;
            }
        }
        out.push(rest[0]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn timestamps_are_blanked() {
    let cases = [
        ("2026-11-26 04:33:32 install jq", "<time> install jq"),
        ("Start-Date: 2026-11-26  04:33:32\n", "Start-Date: <time>\n"),
        ("no stamp 2026-11-26 here", "no stamp 2026-11-26 here"),
        ("", ""),
        ("x 1234-56-78 12:34", "x 1234-56-78 12:34"),
    ];
    for (input, want) in cases {
        assert_eq!(without_timestamps(input), want, "input {input:?}");
    }
    assert_eq!(
        shadow_without_days("root:*:20418:0:99999:7:::\napp:!:20419:0:99999:7:::"),
        "root:*::0:99999:7:::\napp:!::0:99999:7:::"
    );
}

/// Proxy settings of the environment, passed to both builders as build args (predefined ARGs in
/// both, never part of the image config) so the apt-get step reaches the mirror the same way.
fn proxy_args() -> Vec<String> {
    let mut args = Vec::new();
    for name in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "FTP_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "ftp_proxy",
        "no_proxy",
        "all_proxy",
    ] {
        if let Ok(v) = std::env::var(name) {
            args.push("--build-arg".to_string());
            args.push(format!("{name}={v}"));
        }
    }
    args
}

/// Makes (or reuses today's cached) bookworm rootfs tar and imports it into docker.
fn import_bookworm(work: &Path) -> PathBuf {
    let rootfs = work.join("bookworm-rootfs.tar");
    let out = Command::new(repo_root().join("scripts/make-bookworm.sh"))
        .arg(&rootfs)
        .output()
        .expect("cannot run scripts/make-bookworm.sh");
    assert!(
        out.status.success(),
        "scripts/make-bookworm.sh failed ({}): debootstrap or the Debian mirror is unavailable, and \
         this test needs both.\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    run_ok(docker().arg("import").arg(&rootfs).arg(BOOKWORM));
    let archive = work.join("bookworm-image.tar");
    run_ok(docker().arg("save").arg("-o").arg(&archive).arg(BOOKWORM));
    archive
}

/// Every difference between two entries that Docker defines, as readable lines.
fn entry_diffs(
    ours: &rbuild_layer::TreeEntry,
    theirs: &rbuild_layer::TreeEntry,
    ours_root: &Path,
    theirs_root: &Path,
) -> Vec<String> {
    let (mut a, mut b) = (ours.clone(), theirs.clone());
    // mtimes are not defined by Docker across builders.
    a.mtime = 0;
    b.mtime = 0;
    let normalize: Option<fn(&str) -> String> = match loose(&a.path) {
        Some(Loose::Metadata) => None,
        Some(Loose::Timestamps) => Some(without_timestamps),
        Some(Loose::ShadowDays) => Some(shadow_without_days),
        None => None,
    };
    if let Some(normalize) = normalize {
        let read = |root: &Path| {
            std::fs::read(root.join(&ours.path))
                .map(|t| normalize(&String::from_utf8_lossy(&t)))
                .unwrap_or_else(|e| format!("<unreadable: {e}>"))
        };
        let (ta, tb) = (read(ours_root), read(theirs_root));
        if ta != tb {
            return vec![format!(
                "{}: content differs beyond its timestamps\n  rbuild: {ta:?}\n  docker: {tb:?}",
                a.path
            )];
        }
    }
    if loose(&a.path).is_some() {
        a.sha256 = None;
        b.sha256 = None;
        a.size = 0;
        b.size = 0;
    }
    if a == b {
        Vec::new()
    } else {
        vec![format!("{}:\n  rbuild: {a:?}\n  docker: {b:?}", a.path)]
    }
}

/// A docker-archive unpacked for comparison: config, flattened tree and the directory it lives in.
struct Unpacked {
    image: ArchiveImage,
    root: tempfile::TempDir,
}

/// Unpacks the image's layers into a directory, so loosely compared files can be read.
fn unpack(archive: &Path) -> Unpacked {
    let image = read_docker_archive(archive);
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-xf")
            .arg(archive),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    for l in manifest[0]["Layers"].as_array().unwrap() {
        let f = std::fs::File::open(dir.path().join(l.as_str().unwrap())).unwrap();
        let r = rbuild_layer::compress::decompress(std::io::BufReader::new(f)).unwrap();
        rbuild_layer::apply_layer(
            root.path(),
            r,
            &rbuild_layer::ApplyOptions {
                same_owner: true,
                ..Default::default()
            },
        )
        .unwrap();
    }
    Unpacked { image, root }
}

/// Every difference Docker defines between rbuild's image and docker's, as readable lines.
fn differences(ours: &Unpacked, theirs: &Unpacked) -> Vec<String> {
    let mut diffs: Vec<String> = Vec::new();
    for field in CONFIG_FIELDS {
        let (a, b) = (
            &ours.image.config["config"][field],
            &theirs.image.config["config"][field],
        );
        if a != b {
            diffs.push(format!("config {field}: rbuild {a} docker {b}"));
        }
    }
    if ours.image.config["author"] != theirs.image.config["author"] {
        diffs.push("author differs".to_string());
    }
    if history_rows(&ours.image.config) != history_rows(&theirs.image.config) {
        diffs.push(format!(
            "history: rbuild {:?}\n  docker {:?}",
            history_rows(&ours.image.config),
            history_rows(&theirs.image.config)
        ));
    }
    if ours.image.layer_count != theirs.image.layer_count {
        diffs.push(format!(
            "layer count: rbuild {} docker {}",
            ours.image.layer_count, theirs.image.layer_count
        ));
    }
    let theirs_by_path = by_path(theirs);
    let ours_by_path = by_path(ours);
    for (p, e) in &ours_by_path {
        match theirs_by_path.get(p) {
            None => diffs.push(format!("only in rbuild: {e:?}")),
            Some(t) => diffs.extend(entry_diffs(e, t, ours.root.path(), theirs.root.path())),
        }
    }
    for (p, e) in &theirs_by_path {
        if !ours_by_path.contains_key(p) {
            diffs.push(format!("only in docker: {e:?}"));
        }
    }
    // The loosely compared files exist in both (the list is not stale), and so do the files the
    // steps exist to make.
    let must_exist =
        LOOSE
            .iter()
            .map(|(p, _, _)| *p)
            .chain(["usr/bin/jq", "home/app/.bashrc", "tmp/id"]);
    for p in must_exist {
        if !(ours_by_path.contains_key(p) && theirs_by_path.contains_key(p)) {
            diffs.push(format!(
                "{p} is missing from an image (rbuild: {}, docker: {})",
                ours_by_path.contains_key(p),
                theirs_by_path.contains_key(p)
            ));
        }
    }
    diffs
}

fn by_path(u: &Unpacked) -> std::collections::BTreeMap<&str, &rbuild_layer::TreeEntry> {
    u.image.tree.iter().map(|e| (e.path.as_str(), e)).collect()
}

/// The unprivileged user (subordinate range 100000:65536, from scripts/test-users.sh) the rootless
/// build runs as: apt drops to `_apt` (uid 42) and dpkg chowns to root, so the step needs the
/// whole mapped range, not just the caller's id.
const ROOTLESS_USER: &str = "rbuildtest";

/// Builds the case as [`ROOTLESS_USER`] with its own store; returns the `rbuild save` archive.
fn build_rootless(
    base: &Path,
    ctx: &Path,
    args: &[String],
    tag: &str,
) -> (tempfile::TempDir, PathBuf) {
    run_ok(&mut Command::new(repo_root().join("scripts/test-users.sh")));
    let dir = tempfile::Builder::new()
        .prefix("rbuild-debian-rootless-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path();
    std::fs::copy(base, root.join("base.tar")).unwrap();
    run_ok(Command::new("cp").arg("-r").arg(ctx).arg(root.join("ctx")));
    run_ok(
        Command::new("chown")
            .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
            .arg(root),
    );
    run_ok(Command::new("chmod").arg("755").arg(root));
    let as_user = |rbuild_args: &[&str]| {
        run_ok(
            Command::new("runuser")
                .args(["-u", ROOTLESS_USER, "--", "env"])
                .arg(format!("RBUILD_ROOT={}", root.join("store").display()))
                .arg(env!("CARGO_BIN_EXE_rbuild"))
                .args(rbuild_args)
                .current_dir(root)
                .env_remove("SOURCE_DATE_EPOCH"),
        )
    };
    as_user(&["load", "-i", "base.tar"]);
    let mut build = vec!["build", "-q", "-t", tag];
    build.extend(args.iter().map(String::as_str));
    build.push("ctx");
    as_user(&build);
    as_user(&["save", "-o", "out.tar", tag]);
    let archive = root.join("out.tar");
    (dir, archive)
}

#[test]
fn apt_get_install_useradd_user() {
    let work = tempfile::tempdir().unwrap();
    let base = import_bookworm(work.path());
    let store = tempfile::tempdir().unwrap();
    run_ok(rbuild(store.path()).arg("load").arg("-i").arg(&base));

    let ctx = repo_root().join("testdata/debian/apt-user");
    let args = proxy_args();
    let docker_tag = "rbuild-debian/apt-user:docker";
    let ours_tag = "rbuild-debian/apt-user:rbuild";

    let docker_tar = docker_build_and_save(&ctx, docker_tag, &args, work.path());
    let theirs = unpack(&docker_tar);

    run_ok(
        rbuild(store.path())
            .args(["-q", "-t", ours_tag])
            .args(&args)
            .arg(&ctx),
    );
    let ours_tar = work.path().join("rbuild.tar");
    run_ok(
        rbuild(store.path())
            .arg("save")
            .arg("-o")
            .arg(&ours_tar)
            .arg(ours_tag),
    );
    let ours = unpack(&ours_tar);
    let diffs = differences(&ours, &theirs);
    assert!(
        diffs.is_empty(),
        "rbuild (as root) and docker differ on the bookworm apt case ({} differences):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    let id = std::fs::read_to_string(ours.root.path().join("tmp/id")).unwrap();
    assert!(
        id.starts_with("uid=1000(app) gid=1000(app)"),
        "RUN after USER app ran as {id:?}"
    );

    // rbuild's image is loaded and run by docker.
    run_ok(docker().arg("load").arg("-i").arg(&ours_tar));
    let run = run_ok(docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        ours_tag,
        "jq",
        "--version",
    ]));
    let version = String::from_utf8_lossy(&run.stdout);
    assert!(
        version.starts_with("jq-1."),
        "docker run {ours_tag} jq --version printed {version:?}"
    );
    let whoami = run_ok(docker().args(["run", "--rm", "--network", "none", ours_tag, "id", "-un"]));
    assert_eq!(String::from_utf8_lossy(&whoami.stdout), "app\n");
    let _ = docker().args(["rmi", "-f", ours_tag, docker_tag]).output();
}

/// The same build by an unprivileged user must give the same image content as docker's, and
/// docker must run it. apt's download step leaves `/var/cache/apt/archives/partial` owned by
/// `_apt` (uid 42, subordinate host uid 100041) mode 0700, and dpkg renames new directories into
/// place: the build reads and commits them only because `rbuild` runs as root of its own user
/// namespace (`rbuild_sandbox::enter_user_namespace`) and mounts overlays there with `userxattr`.
#[test]
fn apt_get_install_rootless() {
    let work = tempfile::tempdir().unwrap();
    let base = import_bookworm(work.path());
    let ctx = repo_root().join("testdata/debian/apt-user");
    let args = proxy_args();
    let docker_tag = "rbuild-debian/apt-rootless:docker";
    let docker_tar = docker_build_and_save(&ctx, docker_tag, &args, work.path());
    let theirs = unpack(&docker_tar);
    let (_rootless_dir, rootless_tar) =
        build_rootless(&base, &ctx, &args, "rbuild-debian/apt-rootless:rbuild");
    let rootless = unpack(&rootless_tar);
    let diffs = differences(&rootless, &theirs);
    let _ = docker().args(["rmi", "-f", docker_tag]).output();
    assert!(
        diffs.is_empty(),
        "rootless rbuild (as {ROOTLESS_USER}) and docker differ on the bookworm apt case ({} \
         differences):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    let tag = "rbuild-debian/apt-rootless:rbuild";
    run_ok(docker().arg("load").arg("-i").arg(&rootless_tar));
    let run = run_ok(docker().args(["run", "--rm", "--network", "none", tag, "jq", "--version"]));
    let version = String::from_utf8_lossy(&run.stdout).into_owned();
    let _ = docker().args(["rmi", "-f", tag]).output();
    assert!(
        version.starts_with("jq-1."),
        "docker run {tag} jq --version printed {version:?}"
    );
}
