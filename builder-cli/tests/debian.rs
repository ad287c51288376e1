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
    /// A shadow(5) file: content compared with each line's last-change day (field 3) blanked.
    ShadowDays,
}

/// Paths whose content differs between two builds of the same Dockerfile by nature, with why.
/// Everything else in the tree is compared by content digest.
const LOOSE: &[(&str, Loose, &str)] = &[
    // Logs that stamp every line with the wall-clock time of the build step.
    (
        "var/log/apt/history.log",
        Loose::Metadata,
        "apt history: Start-Date/End-Date lines",
    ),
    (
        "var/log/apt/term.log",
        Loose::Metadata,
        "apt terminal log: Log started/ended timestamps",
    ),
    (
        "var/log/apt/eipp.log.xz",
        Loose::Metadata,
        "apt solver dump: timestamped, xz-compressed",
    ),
    (
        "var/log/dpkg.log",
        Loose::Metadata,
        "dpkg log: every line starts with date and time",
    ),
    (
        "var/log/alternatives.log",
        Loose::Metadata,
        "update-alternatives log: timestamped lines",
    ),
    // Binary caches that embed inode numbers, mtimes or sizes of the files they index.
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
    // useradd writes the day of the build as the password's last change.
    (
        "etc/shadow",
        Loose::ShadowDays,
        "last password change is the build day",
    ),
    (
        "etc/shadow-",
        Loose::ShadowDays,
        "backup of shadow before useradd, same field",
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
    ours: &layer::TreeEntry,
    theirs: &layer::TreeEntry,
    ours_root: &Path,
    theirs_root: &Path,
) -> Vec<String> {
    let (mut a, mut b) = (ours.clone(), theirs.clone());
    // mtimes are not defined by Docker across builders.
    a.mtime = 0;
    b.mtime = 0;
    match loose(&a.path) {
        Some(Loose::Metadata) => {
            a.sha256 = None;
            b.sha256 = None;
            a.size = 0;
            b.size = 0;
        }
        Some(Loose::ShadowDays) => {
            let read = |root: &Path| {
                std::fs::read_to_string(root.join(&ours.path))
                    .map(|t| shadow_without_days(&t))
                    .unwrap_or_else(|e| format!("<unreadable: {e}>"))
            };
            let (ta, tb) = (read(ours_root), read(theirs_root));
            if ta != tb {
                return vec![format!(
                    "{}: content differs beyond the last-change day\n  rbuild: {ta:?}\n  docker: {tb:?}",
                    a.path
                )];
            }
            a.sha256 = None;
            b.sha256 = None;
            a.size = 0;
            b.size = 0;
        }
        None => {}
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
        let r = layer::compress::decompress(std::io::BufReader::new(f)).unwrap();
        layer::apply_layer(
            root.path(),
            r,
            &layer::ApplyOptions {
                same_owner: true,
                id_map: None,
            },
        )
        .unwrap();
    }
    Unpacked { image, root }
}

fn history(c: &serde_json::Value) -> Vec<(String, bool)> {
    c["history"]
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

    run_ok(
        docker()
            .args(["build", "--network", "host", "-q", "-t", docker_tag])
            .args(&args)
            .arg(&ctx),
    );
    let docker_tar = work.path().join("docker.tar");
    run_ok(
        docker()
            .arg("save")
            .arg("-o")
            .arg(&docker_tar)
            .arg(docker_tag),
    );

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

    let theirs = unpack(&docker_tar);
    let ours = unpack(&ours_tar);

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
    if history(&ours.image.config) != history(&theirs.image.config) {
        diffs.push(format!(
            "history: rbuild {:?}\n  docker {:?}",
            history(&ours.image.config),
            history(&theirs.image.config)
        ));
    }
    if ours.image.layer_count != theirs.image.layer_count {
        diffs.push(format!(
            "layer count: rbuild {} docker {}",
            ours.image.layer_count, theirs.image.layer_count
        ));
    }

    let theirs_by_path: std::collections::BTreeMap<&str, &layer::TreeEntry> = theirs
        .image
        .tree
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
    let ours_by_path: std::collections::BTreeMap<&str, &layer::TreeEntry> = ours
        .image
        .tree
        .iter()
        .map(|e| (e.path.as_str(), e))
        .collect();
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
    assert!(
        diffs.is_empty(),
        "rbuild and docker differ on the bookworm apt case ({} differences):\n{}",
        diffs.len(),
        diffs.join("\n")
    );

    // The loosely compared files exist in both (the case really exercises them).
    for p in ["var/log/dpkg.log", "etc/shadow", "usr/bin/jq", "tmp/id"] {
        assert!(
            ours_by_path.contains_key(p),
            "{p} missing from rbuild's image"
        );
    }
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
