//! Differential tests: the same Dockerfile and context built by `docker build` (BuildKit in Debian's
//! docker.io 20.10) and by rbuild must give the same config and the same flattened file tree.
//!
//! Each case is a folder under testdata/differential with a Dockerfile and its context. Docker 20.10's
//! front end predates heredocs, `--link`, `--parents`, `--exclude` and `${v#p}`: for those a case also
//! has `Dockerfile.docker`, an equivalent in the older syntax that docker builds instead. Differences
//! Docker itself does not define are not compared: mtimes (they depend on when
//! the files were checked out and on BuildKit's own clamping) and the history's timestamps.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/differential")
        .join(name)
}

/// Copies a case into a temp dir so files git cannot hold (empty dirs, fifos) can be added by `setup`.
fn prepare(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", case_dir(name).display()))
            .arg(dir.path()),
    );
    dir
}

/// Paths docker 20.10 leaves in an image that current BuildKit does not, per case, with the reason:
/// 20.10's BuildKit (0.8) kept the empty mount-point directories it created for a RUN step
/// (`/dev`, `/proc`, `/sys`, `RUN --mount` targets); BuildKit 0.11 and later remove them
/// (moby/buildkit#3307, #3314), and rbuild follows the current behaviour.
fn known_differences(name: &str) -> &'static [&'static str] {
    match name {
        "run-basic" => &["dev", "proc", "scratch", "sys"],
        "bind-from" => &["data.txt", "dev", "mnt", "proc", "sys"],
        _ => &[],
    }
}

fn compare(name: &str, extra_args: &[&str]) {
    let ctx = prepare(name);
    let store = store_with_base();
    let work = tempfile::tempdir().unwrap();
    let tag = format!("rbuild-diff/{name}:latest");

    let older = ctx.path().join("Dockerfile.docker");
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if older.exists() {
        args.push("-f".into());
        args.push(older.clone().into());
    }
    args.extend(extra_args.iter().map(Into::into));
    let docker_tar = docker_build_and_save(ctx.path(), &tag, &args, work.path());

    let mut r = rbuild(store.path());
    r.args(["-q", "-t", &tag]).args(extra_args).arg(ctx.path());
    run_ok(&mut r);
    let ours_tar = work.path().join("rbuild.tar");
    run_ok(
        rbuild(store.path())
            .arg("save")
            .arg("-o")
            .arg(&ours_tar)
            .arg(&tag),
    );

    let mut theirs = read_docker_archive(&docker_tar);
    let skip = known_differences(name);
    theirs.tree.retain(|e| !skip.contains(&e.path.as_str()));
    let ours = read_docker_archive(&ours_tar);
    for field in CONFIG_FIELDS {
        assert_eq!(
            ours.config["config"][field], theirs.config["config"][field],
            "case {name}: config field {field} differs (left rbuild, right docker)"
        );
    }
    assert_eq!(
        ours.config["author"], theirs.config["author"],
        "case {name}: author"
    );
    // With an older-syntax stand-in the instructions differ by construction, so history and layer
    // count are only compared when both built the same Dockerfile.
    if !older.exists() {
        assert_eq!(
            history_rows(&ours.config),
            history_rows(&theirs.config),
            "case {name}: history differs"
        );
        assert_eq!(
            ours.layer_count, theirs.layer_count,
            "case {name}: layer count"
        );
    }
    let theirs_paths: Vec<_> = theirs.tree.iter().map(|e| &e.path).collect();
    let ours_paths: Vec<_> = ours.tree.iter().map(|e| &e.path).collect();
    assert_eq!(ours_paths, theirs_paths, "case {name}: file lists differ");
    for (a, b) in ours.tree.iter().zip(theirs.tree.iter()) {
        // mtimes are not defined by Docker across builders (see the module doc).
        let (mut a, mut b) = (a.clone(), b.clone());
        a.mtime = 0;
        b.mtime = 0;
        assert_eq!(
            a, b,
            "case {name}: entry differs (left rbuild, right docker)"
        );
    }
}

macro_rules! differential {
    ($($test:ident => $case:literal $(, [$($arg:literal),*])?;)*) => {
        $(
            #[test]
            fn $test() {
                compare($case, &[$($($arg),*)?]);
            }
        )*
    };
}

differential! {
    metadata => "metadata";
    copy_rules => "copy-rules";
    dockerignore => "dockerignore";
    multistage_target => "multistage", ["--target", "final"];
    add_archives => "add-archives";
    context_symlinks => "symlinks";
    onbuild_trigger => "onbuild";
    expansion => "expansion", ["--build-arg", "VERSION=2.5"];
    new_syntax_copy => "new-syntax";
    run_basic => "run-basic";
    run_bind_from => "bind-from";
}

#[test]
fn add_url() {
    let base = serve_file(b"downloaded content\n");
    compare("add-url", &["--build-arg", &format!("BASE={base}")]);
}
