//! Rootless builds record the ids steps saw in their user namespace: the built `rbuild` runs as
//! the unprivileged `rbuildtest` (subuid range 100000:65536, created by scripts/test-users.sh),
//! and its layers must carry container ids (0 for container root, 5 for `chown 5:5`), never the
//! caller's host uid or the subordinate host ids; docker must run the image.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const USER: &str = "rbuildtest";

/// Runs `rbuild ARGS` as the test user with `store` as its store.
fn rbuild_as_user(store: &Path, args: &[&str], cwd: &Path) -> std::process::Output {
    rbuild_as(USER, store, args, cwd)
}

/// (path, uid, gid) of every entry of every layer after the first (the busybox base), by layer.
fn layer_owners(archive: &Path) -> Vec<Vec<(String, u64, u64)>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        files.insert(name, buf);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    layers
        .iter()
        .skip(1)
        .map(|l| {
            let data = &files[l.as_str().unwrap()];
            let r = rbuild_layer::compress::decompress(std::io::Cursor::new(data.clone())).unwrap();
            rbuild_layer::list_layer(r)
                .unwrap()
                .into_iter()
                .map(|e| (e.path, e.uid, e.gid))
                .collect()
        })
        .collect()
}

/// A work directory owned by `user` (made by scripts/test-users.sh; never skipped: without the
/// user this fails with the script's own error) holding `base.tar` (busybox), `ctx/` with
/// `dockerfile` and `files`, and room for `store/`; the store has the base loaded.
fn user_fixture(
    user: &str,
    dockerfile: &str,
    files: &[(&str, &str)],
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    run_ok(&mut Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/test-users.sh"
    )));
    let dir = tempfile::Builder::new()
        .prefix(&format!("rbuild-{user}-"))
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().to_path_buf();
    let (ctx, store) = (root.join("ctx"), root.join("store"));
    std::fs::create_dir(&ctx).unwrap();
    std::fs::copy(base_archive(), root.join("base.tar")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (name, body) in files {
        std::fs::write(ctx.join(name), body).unwrap();
    }
    run_ok(
        Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(&root),
    );
    run_ok(Command::new("chmod").arg("755").arg(&root));
    rbuild_as(user, &store, &["load", "-i", "base.tar"], &root);
    (dir, root, store)
}

#[test]
fn rootless_build_records_container_ids() {
    let (_dir, root, store) = user_fixture(
        USER,
        &format!(
            "FROM {BUSYBOX}\n\
             RUN echo hi > /hi && chown 5:5 /hi && mkdir -p /d/sub && touch /d/sub/f && \
             chown -R 5:5 /d && mkdir /made && touch /made/by-root\n\
             COPY --chown=5:5 file.txt /owned/\n\
             COPY file.txt /plain.txt\n\
             RUN chown 1000:50 /home/app && touch /tmp/t && chown 5:0 /tmp/t\n\
             CMD [\"sh\", \"-c\", \"stat -c '%u:%g %n' /hi /d /d/sub/f /made/by-root /owned \
             /owned/file.txt /plain.txt /home/app /tmp/t\"]\n"
        ),
        &[("file.txt", "copied\n")],
    );
    let root = root.as_path();

    let build = rbuild_as_user(&store, &["build", "-t", "rootless-owners:1", "ctx"], root);
    let log = String::from_utf8_lossy(&build.stderr).into_owned()
        + &String::from_utf8_lossy(&build.stdout);
    assert!(!log.contains("65534 (nobody)"), "{log}");
    // rbuild made itself root of a namespace with the subordinate ranges, so steps ran on overlay.
    assert!(
        log.contains("snapshotter: overlayfs (rootless, userxattr)"),
        "{log}"
    );
    rbuild_as_user(
        &store,
        &["save", "-o", "out.tar", "rootless-owners:1"],
        root,
    );
    let archive = root.join("out.tar");

    let layers = layer_owners(&archive);
    assert_eq!(layers.len(), 4, "{layers:?}");
    let all: BTreeMap<String, (u64, u64)> = layers
        .iter()
        .flatten()
        .map(|(p, u, g)| (p.clone(), (*u, *g)))
        .collect();
    for (path, want) in [
        ("hi", (5, 5)),
        ("d", (5, 5)),
        ("d/sub", (5, 5)),
        ("d/sub/f", (5, 5)),
        ("made", (0, 0)),
        ("made/by-root", (0, 0)),
        ("owned", (5, 5)),
        ("owned/file.txt", (5, 5)),
        ("plain.txt", (0, 0)),
        ("home/app", (1000, 50)),
        ("tmp/t", (5, 0)),
    ] {
        assert_eq!(all.get(path), Some(&want), "{path} in {layers:?}");
    }
    // Nothing leaks the caller's host uid or a subordinate host id.
    let host_uid = u64::from(
        String::from_utf8(run_ok(Command::new("id").args(["-u", USER])).stdout)
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap(),
    );
    for (p, u, g) in layers.iter().flatten() {
        for id in [*u, *g] {
            assert!(id != host_uid && id < 100_000, "{p} owned by {u}:{g}");
        }
    }
    // The store's scratch space is empty again: snapshots with subuid-owned files were removed.
    let leftovers: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A local export lands in the caller's directory as the caller's files, which the caller
    // can delete (not as subordinate ids), like BuildKit's rootless local exporter.
    rbuild_as_user(
        &store,
        &["build", "-q", "-o", "type=local,dest=local", "ctx"],
        root,
    );
    let hi = std::fs::symlink_metadata(root.join("local/hi")).unwrap();
    assert_eq!(u64::from(hi.uid()), host_uid, "local/hi owner");
    run_ok(
        Command::new("runuser")
            .args(["-u", USER, "--", "rm", "-rf"])
            .arg(root.join("local")),
    );

    // Real tools accept it and see the same owners.
    run_ok(docker().arg("load").arg("-i").arg(&archive));
    let out = run_ok(docker().args(["run", "--rm", "rootless-owners:1"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "5:5 /hi\n5:5 /d\n5:5 /d/sub/f\n0:0 /made/by-root\n5:5 /owned\n5:5 /owned/file.txt\n\
         0:0 /plain.txt\n1000:50 /home/app\n5:0 /tmp/t\n"
    );
    run_ok(docker().args(["rmi", "rootless-owners:1"]));
}

/// A user without subordinate ranges cannot get a mapped namespace: the build still runs its RUN
/// steps (container root mapped to the caller alone), on the copy snapshotter, and says so and
/// what will not work, instead of failing or pretending.
#[test]
fn user_without_subordinate_ids_falls_back_with_warnings() {
    let user = "rbuildnosub";
    let (_dir, root, store) = user_fixture(
        user,
        &format!("FROM {BUSYBOX}\nRUN echo made > /made && mkdir /dir\n"),
        &[],
    );
    let root = root.as_path();
    let build = rbuild_as(
        user,
        &store,
        &["build", "--progress=plain", "-t", "nosub:1", "ctx"],
        root,
    );
    let log = String::from_utf8_lossy(&build.stderr).into_owned()
        + &String::from_utf8_lossy(&build.stdout);
    assert!(log.contains("WARNING: using the copy snapshotter"), "{log}");
    assert!(log.contains("only container uid/gid 0 is mapped"), "{log}");
    rbuild_as(user, &store, &["save", "-o", "out.tar", "nosub:1"], root);
    let layers = layer_owners(&root.join("out.tar"));
    let last: BTreeMap<String, (u64, u64)> = layers
        .last()
        .unwrap()
        .iter()
        .map(|(p, u, g)| (p.clone(), (*u, *g)))
        .collect();
    assert_eq!(last.get("made"), Some(&(0, 0)), "{layers:?}");
    assert_eq!(last.get("dir"), Some(&(0, 0)), "{layers:?}");
}

/// Without `--root`/`RBUILD_ROOT`, a rootless `rbuild` keeps using the caller's own store
/// (`$HOME/.local/share/rbuild`), although it runs as root of its user namespace.
#[test]
fn rootless_default_store_is_the_callers() {
    let (_dir, root, _store) = user_fixture(USER, &format!("FROM {BUSYBOX}\n"), &[]);
    let home = root.join("home");
    run_ok(
        Command::new("runuser")
            .args(["-u", USER, "--", "mkdir"])
            .arg(&home),
    );
    run_ok(
        Command::new("runuser")
            .args([
                "-u",
                USER,
                "--",
                "env",
                "-u",
                "RBUILD_ROOT",
                "-u",
                "XDG_DATA_HOME",
            ])
            .arg(format!("HOME={}", home.display()))
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .arg("images")
            .current_dir(&root),
    );
    let store = home.join(".local/share/rbuild");
    assert!(
        store.join("blobs").is_dir(),
        "no store at {}",
        store.display()
    );
}
