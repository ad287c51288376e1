//! Differential suite: every case folder under testdata/differential is built by `docker build`
//! (BuildKit in Debian's docker.io 20.10, the private test dockerd) and by rbuild, and the two images
//! must have the same config (times aside), history, layer count and flattened file tree (type,
//! path, mode, owner, size, content digest, link target, device numbers, xattrs).
//!
//! A case folder holds a Dockerfile and its context, and optionally:
//! - `Dockerfile.docker`: an equivalent in older syntax that docker builds instead, for features
//!   docker 20.10's front end predates (heredocs, `--link`, `--parents`, `--exclude`, `${v#p}`,
//!   `RUN --network`); history and layer count are then not compared.
//! - `case.args`: extra build arguments, one per line; `{SERVER}` is the URL of a local HTTP
//!   server (see [`serve_file`]) for ADD of URLs, `{CTX}` the copied context (for `--secret`).
//! - `case.error`: the build must fail in both; the file holds text rbuild's error must contain
//!   (the `Dockerfile:LINE` it names).
//! - `case.presence`: paths compared by presence and type only, because a step writes them with
//!   the time of the build (each line `PATH  # why`).
//! - `case.base`: `bookworm` for a case on a debootstrapped Debian base (scripts/make-bookworm.sh,
//!   cached per day) tagged `rbuild-test/bookworm:latest`, imported once and loaded into the case's
//!   store; such cases are few, for steps that need a real distribution (useradd, dpkg).
//! - `setup.sh`: run (then deleted) in the copied context, for what git cannot hold: empty
//!   directories, fifos, hard links, modes, odd names, archives built on the fly.
//!
//! All cases run in one test on a small thread pool sharing the dockerd and the base image; the
//! test prints every difference and `N passed, N failed`, and fails if any case failed.
//! `RBUILD_DIFF_CASES=a,b` runs only the named cases; `RBUILD_DIFF_JOBS` sets the pool size.
//! Mtimes and history timestamps are not compared: Docker does not define them across builders.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use common::*;

fn cases_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/differential")
}

/// Copies a case into a temp dir and runs its `setup.sh` there.
fn prepare(name: &str) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", cases_root().join(name).display()))
        .arg(dir.path())
        .output()
        .map_err(|e| format!("cannot run cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cp failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let setup = dir.path().join("setup.sh");
    if setup.exists() {
        let out = std::process::Command::new("/bin/sh")
            .arg("-e")
            .arg(&setup)
            .current_dir(dir.path())
            .output()
            .map_err(|e| format!("cannot run setup.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "setup.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::remove_file(&setup).map_err(|e| e.to_string())?;
    }
    for f in ["case.args", "case.base", "case.error", "case.presence"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    Ok(dir)
}

/// Paths docker 20.10 leaves in an image that current BuildKit does not, per case, with the reason:
/// 20.10's BuildKit (0.8) kept the empty mount-point directories it created for a RUN step
/// (`/dev`, `/proc`, `/sys`, `RUN --mount` targets); BuildKit 0.11 and later remove them
/// (moby/buildkit#3307, #3314), and rbuild follows the current behaviour. A path listed here may
/// be missing from rbuild's image; where both have it, it is compared as any other.
fn known_differences(name: &str) -> &'static [&'static str] {
    const RUN_STUBS: &[&str] = &["dev", "proc", "sys"];
    match name {
        "run-basic" => &["dev", "proc", "scratch", "sys"],
        "bind-from" => &["data.txt", "dev", "mnt", "proc", "sys"],
        "run-mount-tmpfs" => &["dev", "proc", "sys", "tmpfs-here"],
        "run-mount-cache" => &["dev", "proc", "sys", "cache"],
        "run-mount-secret" => &["dev", "proc", "run", "run/secrets", "sys"],
        _ => RUN_STUBS,
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split("  #").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn output(cmd: &mut std::process::Command) -> Result<std::process::Output, String> {
    cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))
}

fn fail_text(what: &str, out: &std::process::Output) -> String {
    format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The bookworm base for `case.base` cases: made (or taken from today's cache) by
/// scripts/make-bookworm.sh, imported into docker and saved for rbuild, once per run.
fn bookworm_archive() -> Result<&'static Path, String> {
    static BOOKWORM: OnceLock<Result<(tempfile::TempDir, PathBuf), String>> = OnceLock::new();
    let made = BOOKWORM.get_or_init(|| {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let rootfs = dir.path().join("bookworm-rootfs.tar");
        let script = cases_root().join("../../scripts/make-bookworm.sh");
        let out = output(std::process::Command::new(script).arg(&rootfs))?;
        if !out.status.success() {
            return Err(fail_text(
                "scripts/make-bookworm.sh (debootstrap and the Debian mirror are needed)",
                &out,
            ));
        }
        let tag = "rbuild-test/bookworm:latest";
        let out = output(docker().arg("import").arg(&rootfs).arg(tag))?;
        if !out.status.success() {
            return Err(fail_text("docker import", &out));
        }
        let archive = dir.path().join("bookworm-image.tar");
        let out = output(docker().arg("save").arg("-o").arg(&archive).arg(tag))?;
        if !out.status.success() {
            return Err(fail_text("docker save", &out));
        }
        Ok((dir, archive))
    });
    match made {
        Ok((_, archive)) => Ok(archive.as_path()),
        Err(e) => Err(e.clone()),
    }
}

/// Builds one case with both builders; returns the differences found (empty: the case passed).
fn run_case(name: &str, store: &Path, server: &str) -> Vec<String> {
    let src = cases_root().join(name);
    let expect_error = std::fs::read_to_string(src.join("case.error"))
        .ok()
        .map(|s| s.trim().to_string());
    let presence = read_lines(&src.join("case.presence"));
    if std::fs::read_to_string(src.join("case.base")).is_ok_and(|b| b.trim() == "bookworm") {
        let archive = match bookworm_archive() {
            Ok(a) => a,
            Err(e) => return vec![e],
        };
        match output(rbuild(store).arg("load").arg("-i").arg(archive)) {
            Ok(o) if o.status.success() => {}
            Ok(o) => return vec![fail_text("rbuild load of bookworm", &o)],
            Err(e) => return vec![e],
        }
    }
    let ctx = match prepare(name) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let args: Vec<String> = read_lines(&src.join("case.args"))
        .into_iter()
        .map(|a| {
            a.replace("{SERVER}", server)
                .replace("{CTX}", &ctx.path().display().to_string())
        })
        .collect();
    let work = match tempfile::tempdir() {
        Ok(w) => w,
        Err(e) => return vec![e.to_string()],
    };
    let tag = format!("rbuild-diff/{name}:latest");
    let older = src.join("Dockerfile.docker");

    let mut d = docker();
    d.args(["build", "--network", "host", "-q", "-t", &tag]);
    if older.exists() {
        d.arg("-f").arg(ctx.path().join("Dockerfile.docker"));
    }
    d.args(&args).arg(ctx.path());
    let docker_out = match output(&mut d) {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    let mut r = rbuild(store);
    r.args(["build", "-q", "-t", &tag])
        .args(&args)
        .arg(ctx.path());
    let ours_out = match output(&mut r) {
        Ok(o) => o,
        Err(e) => return vec![e],
    };

    if let Some(want) = expect_error {
        let mut diffs = Vec::new();
        if docker_out.status.success() {
            diffs.push("docker accepted a case expected to fail".to_string());
        }
        if ours_out.status.success() {
            diffs.push("rbuild accepted a case docker rejects".to_string());
        } else {
            let err = String::from_utf8_lossy(&ours_out.stderr);
            if !err.contains(&want) {
                diffs.push(format!("rbuild's error does not contain {want:?}:\n{err}"));
            }
        }
        return diffs;
    }
    if !docker_out.status.success() {
        return vec![fail_text("docker build", &docker_out)];
    }
    if !ours_out.status.success() {
        return vec![fail_text("rbuild build", &ours_out)];
    }
    let docker_tar = work.path().join("docker.tar");
    match output(docker().arg("save").arg("-o").arg(&docker_tar).arg(&tag)) {
        Ok(o) if o.status.success() => {}
        Ok(o) => return vec![fail_text("docker save", &o)],
        Err(e) => return vec![e],
    }
    let ours_tar = work.path().join("rbuild.tar");
    match output(rbuild(store).arg("save").arg("-o").arg(&ours_tar).arg(&tag)) {
        Ok(o) if o.status.success() => {}
        Ok(o) => return vec![fail_text("rbuild save", &o)],
        Err(e) => return vec![e],
    }
    let theirs = read_docker_archive(&docker_tar);
    let ours = read_docker_archive(&ours_tar);
    compare_images(
        &ours,
        &theirs,
        !older.exists(),
        &presence,
        known_differences(name),
    )
}

fn compare_images(
    ours: &ArchiveImage,
    theirs: &ArchiveImage,
    same_dockerfile: bool,
    presence: &[String],
    stubs: &[&str],
) -> Vec<String> {
    let mut diffs = Vec::new();
    for field in CONFIG_FIELDS {
        let (a, b) = (
            &ours.config["config"][field],
            &theirs.config["config"][field],
        );
        if a != b {
            diffs.push(format!("config {field}: rbuild {a} / docker {b}"));
        }
    }
    for field in ["author", "os", "architecture"] {
        let (a, b) = (&ours.config[field], &theirs.config[field]);
        if a != b {
            diffs.push(format!("{field}: rbuild {a} / docker {b}"));
        }
    }
    // With an older-syntax stand-in the instructions differ by construction.
    if same_dockerfile {
        let (a, b) = (history_rows(&ours.config), history_rows(&theirs.config));
        if a != b {
            diffs.push(format!("history: rbuild {a:?}\n  docker {b:?}"));
        }
        if ours.layer_count != theirs.layer_count {
            diffs.push(format!(
                "layer count: rbuild {} / docker {}",
                ours.layer_count, theirs.layer_count
            ));
        }
    }
    let index = |t: &[rbuild_layer::TreeEntry]| {
        t.iter()
            .map(|e| (e.path.clone(), e.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (a, b) = (index(&ours.tree), index(&theirs.tree));
    for (path, e) in &a {
        let Some(t) = b.get(path) else {
            diffs.push(format!("only in rbuild: /{path} ({:?})", e.kind));
            continue;
        };
        let (mut x, mut y) = (e.clone(), t.clone());
        // mtimes are not defined by Docker across builders (see the module doc).
        x.mtime = 0;
        y.mtime = 0;
        if presence.iter().any(|p| p == path) {
            // Written with the time of the build: only presence and type are defined.
            if x.kind != y.kind {
                diffs.push(format!(
                    "/{path}: kind rbuild {:?} / docker {:?}",
                    x.kind, y.kind
                ));
            }
            continue;
        }
        if x != y {
            diffs.push(format!("/{path} differs:\n  rbuild {x:?}\n  docker {y:?}"));
        }
    }
    for (path, e) in &b {
        if !a.contains_key(path) && !stubs.contains(&path.as_str()) {
            diffs.push(format!("only in docker: /{path} ({:?})", e.kind));
        }
    }
    diffs
}

/// Writes straight to the process's stderr, which libtest does not capture, so the differences and
/// the summary show even when the suite passes.
fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

#[test]
fn differential_suite() {
    let started = std::time::Instant::now();
    let only: Option<Vec<String>> = std::env::var("RBUILD_DIFF_CASES")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let mut names: Vec<String> = std::fs::read_dir(cases_root())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("Dockerfile").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| only.as_ref().is_none_or(|o| o.contains(n)))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no differential cases selected");
    // The base is imported into docker and saved once, before the workers start.
    base_archive();
    let server = serve_file(b"downloaded content\n");
    let jobs: usize = std::env::var("RBUILD_DIFF_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .unwrap_or(3);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(String, Vec<String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(name) = names.get(i) else { break };
                let store = store_with_base();
                let t = std::time::Instant::now();
                // A panic in one case (an unreadable archive) is that case's failure, not the suite's.
                let diffs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_case(name, store.path(), &server)
                }))
                .unwrap_or_else(|p| {
                    let why = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    vec![format!("panicked: {why}")]
                });
                say(&format!(
                    "case {name}: {} in {:.1}s",
                    if diffs.is_empty() { "ok" } else { "FAILED" },
                    t.elapsed().as_secs_f64()
                ));
                results.lock().unwrap().push((name.clone(), diffs));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort();
    let failed: Vec<&(String, Vec<String>)> =
        results.iter().filter(|(_, d)| !d.is_empty()).collect();
    for (name, diffs) in &failed {
        say(&format!("--- case {name}: {} difference(s)", diffs.len()));
        for d in diffs {
            say(&format!("  {d}"));
        }
    }
    let summary = format!(
        "{} passed, {} failed ({} cases in {:.0}s)",
        results.len() - failed.len(),
        failed.len(),
        results.len(),
        started.elapsed().as_secs_f64()
    );
    say(&summary);
    assert!(
        failed.is_empty(),
        "{summary}; failed: {:?}",
        failed.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
}
