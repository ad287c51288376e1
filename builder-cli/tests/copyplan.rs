//! A plain context COPY works from a plan of its layer computed from the sources: when the store
//! already holds that layer it copies nothing; otherwise it writes the files and hashes the
//! layer in one walk and keeps what it wrote as the layer's tree. These tests make each COPY's
//! layer three ways: in one store through the copy-and-commit path (the same COPY with an
//! `--exclude` that matches nothing, which the plan does not cover), and in another store with
//! `--no-cache` twice: the first build must write it in one walk, the second must find it from its
//! sources alone (it says "nothing copied"). All three must give the same diff id, and the one-walk
//! tree must give back its layer on `save`, which checks every tar streamed from a tree against
//! its diff id. A plan or a writer that got one header byte or one mode wrong fails the test.
//! COPYs the plan does not cover must keep copying.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Output;

use common::*;

const SKIPPED: &str = "is already in the store: nothing copied";
/// The engine's debug record of a COPY written and hashed in one walk.
const ONE_WALK: &str = "written and hashed in one walk";

fn set_mtime(p: &Path, secs: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 123_456_789,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A context with what a COPY has to get right: nested and empty directories, modes (setuid,
/// private, executable), old mtimes, symlinks, a name longer than ustar holds, a fifo and
/// `.dockerignore`d files.
fn write_context(ctx: &Path) {
    let tree = ctx.join("tree");
    std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
    std::fs::create_dir_all(tree.join("empty")).unwrap();
    std::fs::create_dir_all(tree.join("build")).unwrap();
    std::fs::write(tree.join("a/b/c/deep.txt"), "deep\n").unwrap();
    std::fs::write(tree.join("a.txt"), "a\n").unwrap();
    std::fs::write(tree.join("build/out.o"), "ignored\n").unwrap();
    std::fs::write(tree.join("debug.log"), "ignored\n").unwrap();
    std::fs::write(tree.join("zero"), "").unwrap();
    let run = tree.join("run.sh");
    std::fs::write(&run, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let private = tree.join("a/private");
    std::fs::write(&private, vec![7u8; 70_000]).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(tree.join("a").join("n".repeat(150)), "long\n").unwrap();
    symlink("a/b/c/deep.txt", tree.join("link")).unwrap();
    symlink("/etc/passwd", tree.join("abs-link")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        tree.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    set_mtime(&tree.join("a.txt"), 1_000_000_000);
    set_mtime(&tree.join("link"), 1_100_000_000);
    set_mtime(&tree.join("a/b"), 1_200_000_000);
    set_mtime(&tree.join("empty"), 1_300_000_000);
    std::fs::write(ctx.join(".dockerignore"), "*.log\n**/*.log\ntree/build\n").unwrap();
}

fn build(store: &Path, ctx: &Path, dockerfile: &str, tag: &str) -> (Vec<String>, String) {
    // Outside the context, so writing it does not change what `COPY . .` copies.
    let file = ctx.with_file_name(format!("Dockerfile.{tag}"));
    std::fs::write(&file, dockerfile).unwrap();
    let out: Output = run_ok(
        rbuild(store)
            .env("RUST_LOG", "rbuild_engine=debug")
            .args(["build", "--progress=plain", "--no-cache", "-t", tag, "-f"])
            .arg(&file)
            .arg(ctx),
    );
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect = run_ok(rbuild(store).args(["inspect", tag]));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let layers = v[0]["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (layers, log)
}

#[test]
fn a_plain_copy_writes_in_one_walk_and_finds_the_layer_the_copy_made() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the plan applies to root builds with the overlay snapshotter: run this test as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let reference = store_with_busybox(&dir.path().join("reference"));
    let store = store_with_busybox(&dir.path().join("plain"));
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    write_context(&ctx);
    let cases = [
        // The destination and its parents are created.
        "FROM bb:1\nCOPY tree /opt/app/\n",
        // The destination exists (WORKDIR), named relative to it; the whole context.
        "FROM bb:1\nWORKDIR /srv/www\nCOPY . .\n",
        // --chown and a symbolic --chmod, no trailing slash.
        "FROM bb:1\nCOPY --chown=1000:1000 --chmod=u+rwX,go=rX tree /data\n",
    ];
    for (i, df) in cases.iter().enumerate() {
        let copied = df.replacen("COPY ", "COPY --exclude=no-such-file ", 1);
        let (want, log0) = build(&reference, &ctx, &copied, &format!("p{i}:0"));
        assert!(
            !log0.contains(SKIPPED) && !log0.contains(ONE_WALK),
            "case {i}: a COPY with --exclude took the plan:\n{log0}"
        );
        let (first, log1) = build(&store, &ctx, df, &format!("p{i}:1"));
        assert!(
            log1.contains(ONE_WALK) && !log1.contains(SKIPPED),
            "case {i}: the first build did not write the copy in one walk:\n{log1}"
        );
        assert_eq!(
            want.last(),
            first.last(),
            "case {i}: the one-walk COPY made another layer than the copy-and-commit path"
        );
        let (second, log2) = build(&store, &ctx, df, &format!("p{i}:2"));
        assert!(
            log2.contains(SKIPPED),
            "case {i}: the plan did not find the layer the copy made ({:?}):\n{log2}",
            first.last()
        );
        assert_eq!(
            first.last(),
            second.last(),
            "case {i}: the COPY layers differ"
        );
    }
    // The trees written in one walk give back their layers.
    let saved = dir.path().join("saved.tar");
    run_ok(
        rbuild(&store)
            .args(["save", "-o"])
            .arg(&saved)
            .args(["p0:1", "p1:1", "p2:1"]),
    );
    // The layers the plan found or wrote are usable: a later step sees the files, with the
    // source's mtime to the nanosecond as the copy keeps it.
    for (dest, said) in [("/opt/app", SKIPPED), ("/opt/new", ONE_WALK)] {
        let (_, log) = build(
            &store,
            &ctx,
            &format!(
                "FROM bb:1\nCOPY tree {dest}/\nRUN cat {dest}/link {dest}/a/b/c/deep.txt && test ! -e {dest}/debug.log && test -u {dest}/run.sh && stat -c %y {dest}/a.txt | grep -F 40.123456789\n"
            ),
            "p9:1",
        );
        assert!(log.contains(said), "{dest}: {log}");
    }
    // `prune` drops the plan's index and the contexts' stat caches with the build cache; the next
    // COPY copies again.
    assert!(store.join("copyplan").is_dir());
    assert!(store.join("contexts").is_dir());
    run_ok(rbuild(&store).arg("prune"));
    assert!(!store.join("copyplan").exists());
    assert!(!store.join("contexts").exists());
    let (_, log) = build(&store, &ctx, cases[0], "p0:3");
    assert!(!log.contains(SKIPPED), "{log}");
}

#[test]
fn copies_the_plan_does_not_cover_still_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(ctx.join("tree")).unwrap();
    std::fs::write(ctx.join("tree/f"), "f\n").unwrap();
    std::fs::hard_link(ctx.join("tree/f"), ctx.join("tree/g")).unwrap();
    std::fs::write(ctx.join("one.txt"), "one\n").unwrap();
    let cases = [
        // Hard links.
        "FROM bb:1\nCOPY tree /h/\n",
        // Into a directory the base already fills.
        "FROM bb:1\nCOPY tree/ /etc/\n",
        // A single file, two sources, --parents.
        "FROM bb:1\nCOPY one.txt /o/\n",
        "FROM bb:1\nCOPY one.txt tree /o/\n",
        "FROM bb:1\nCOPY --parents tree/f /p/\n",
    ];
    for (i, df) in cases.iter().enumerate() {
        let (first, log1) = build(&store, &ctx, df, &format!("f{i}:1"));
        assert!(
            !log1.contains(ONE_WALK),
            "case {i} is not a plain copy:\n{log1}"
        );
        let (second, log) = build(&store, &ctx, df, &format!("f{i}:2"));
        assert!(
            !log.contains(SKIPPED),
            "case {i} is not a plain copy:\n{log}"
        );
        assert_eq!(first.last(), second.last(), "case {i}");
    }
}
