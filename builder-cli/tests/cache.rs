//! The build cache, as `docker build` users rely on it: a rebuild reuses the steps whose
//! definition and inputs did not change, re-runs from the first one that did, and never lets a
//! secret's content into a key or a record.

mod common;

use std::path::Path;

use common::*;

/// Builds `ctx` with plain progress and returns, per step index, "CACHED" or "RAN", plus the log.
fn build(store: &Path, ctx: &Path, extra: &[&str]) -> (Vec<&'static str>, String) {
    let out = run_ok(
        rbuild(store)
            .args(["build", "--progress=plain", "-t", "cached:1"])
            .args(extra)
            .arg(ctx),
    );
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let mut steps = Vec::new();
    for line in log.lines() {
        if line.ends_with(" CACHED") {
            steps.push("CACHED");
        } else if line.starts_with('#') && line.contains(" DONE ") {
            steps.push("RAN");
        }
    }
    (steps, log)
}

const DOCKERFILE: &str = "FROM bb:1\n\
    ARG FLAVOUR=plain\n\
    COPY a.txt /a.txt\n\
    RUN echo run-$FLAVOUR | tee /one\n\
    COPY b.txt /b.txt\n\
    RUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /tok-len && echo marker-two\n\
    WORKDIR /w\n";

fn context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("a.txt"), "a\n").unwrap();
    std::fs::write(ctx.join("b.txt"), "b\n").unwrap();
    ctx
}

#[test]
fn rebuild_reuses_unchanged_steps_and_reruns_from_the_first_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = context(dir.path());
    let secret = dir.path().join("tok");
    std::fs::write(&secret, "s3cr3t-value-1").unwrap();
    let sec = format!("id=tok,src={}", secret.display());
    let sec = ["--secret", sec.as_str()];

    // Steps: ARG, COPY a, RUN one, COPY b, RUN two, WORKDIR. ARG is config-only (always "RAN").
    let (first, log) = build(&store, &ctx, &sec);
    assert_eq!(first, ["RAN"; 6], "{log}");
    assert!(log.lines().any(|l| l == "#5 marker-two"), "{log}");

    let (again, log) = build(&store, &ctx, &sec);
    assert_eq!(
        again,
        ["RAN", "CACHED", "CACHED", "CACHED", "CACHED", "CACHED"],
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l == "#3 run-plain" || l == "#5 marker-two"),
        "{log}"
    );

    // A secret's content is not part of the key (as in BuildKit): still cached.
    std::fs::write(&secret, "another-secret-2").unwrap();
    let (new_secret, log) = build(&store, &ctx, &sec);
    assert_eq!(new_secret[4], "CACHED", "{log}");

    // Changing b.txt re-runs COPY b and everything after it, nothing before.
    std::fs::write(ctx.join("b.txt"), "b changed\n").unwrap();
    let (changed, log) = build(&store, &ctx, &sec);
    assert_eq!(
        changed,
        ["RAN", "CACHED", "CACHED", "RAN", "RAN", "RAN"],
        "{log}"
    );

    // A build argument RUN sees is part of its key.
    let (flavour, log) = build(
        &store,
        &ctx,
        &[&sec[..], &["--build-arg", "FLAVOUR=x"]].concat(),
    );
    assert_eq!(&flavour[..3], ["RAN", "CACHED", "RAN"], "{log}");
    assert!(log.lines().any(|l| l == "#3 run-x"), "{log}");

    // SOURCE_DATE_EPOCH changes how layers are written (clamped times): not a hit.
    let out = run_ok(
        rbuild(&store)
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["build", "--progress=plain", "-t", "cached:sde"])
            .args(sec)
            .arg(&ctx),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("CACHED"), "{log}");

    // --no-cache runs every step.
    let (none, log) = build(&store, &ctx, &[&sec[..], &["--no-cache"]].concat());
    assert_eq!(none, ["RAN"; 6], "{log}");

    // No secret value anywhere in the store (records, configs, layers, refs).
    for entry in walkdir(&store) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        for s in ["s3cr3t-value-1", "another-secret-2"] {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} found in {}",
                entry.display()
            );
        }
    }

    // prune drops the records: the next build runs everything again.
    let out = run_ok(rbuild(&store).arg("prune"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Deleted build cache records"),
        "{out:?}"
    );
    let (after_prune, log) = build(&store, &ctx, &sec);
    assert_eq!(after_prune, ["RAN"; 6], "{log}");
}

#[test]
fn cached_result_is_the_same_image_content() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = context(dir.path());
    let secret = dir.path().join("tok");
    std::fs::write(&secret, "x").unwrap();
    let sec = format!("id=tok,src={}", secret.display());
    let inspect = |store: &Path| -> serde_json::Value {
        let out = run_ok(rbuild(store).args(["inspect", "cached:1"]));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    build(&store, &ctx, &["--secret", &sec]);
    let first = inspect(&store);
    let (steps, log) = build(&store, &ctx, &["--secret", &sec]);
    assert_eq!(steps[1..], ["CACHED"; 5], "{log}");
    let second = inspect(&store);
    // Same layers (the RUN was not redone, so not even its timestamps changed).
    let layers = |v: &serde_json::Value| v[0]["RootFS"]["Layers"].clone();
    assert_eq!(layers(&first), layers(&second));
    assert!(layers(&first).as_array().is_some_and(|l| l.len() == 6));
}

fn walkdir(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

/// `--cache-to type=local` in one store and `--cache-from type=local` in a fresh one (another CI
/// job, another machine): the second build runs no step and gives the same layers. A cache that
/// cannot be read is skipped with a warning; an unknown export type is refused.
#[test]
fn exported_cache_seeds_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let tar = busybox_tar(dir.path());
    let first = store_with_base_tar(&tar, &dir.path().join("a"));
    let ctx = context(dir.path());
    let secret = dir.path().join("tok");
    std::fs::write(&secret, "x").unwrap();
    let sec = format!("id=tok,src={}", secret.display());
    let cache = dir.path().join("exported-cache");
    let to = format!("type=local,dest={}", cache.display());
    let (steps, log) = build(&first, &ctx, &["--secret", &sec, "--cache-to", &to]);
    assert_eq!(steps, ["RAN"; 6], "{log}");
    assert!(cache.join("index.json").is_file(), "{log}");

    let second = store_with_base_tar(&tar, &dir.path().join("b"));
    let from = format!("type=local,src={}", cache.display());
    let (steps, log) = build(
        &second,
        &ctx,
        &[
            "--secret",
            &sec,
            "--cache-from",
            &from,
            "--cache-from",
            "type=registry,ref=127.0.0.1:1/app:cache",
        ],
    );
    assert_eq!(steps[1..], ["CACHED"; 5], "{log}");
    assert!(log.contains("importing cache from"), "{log}");
    assert!(
        log.contains("WARNING: cache import from 127.0.0.1:1/app:cache failed"),
        "{log}"
    );
    let layers = |store: &Path| -> serde_json::Value {
        let out = run_ok(rbuild(store).args(["inspect", "cached:1"]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["RootFS"]["Layers"].clone()
    };
    assert_eq!(layers(&first), layers(&second));
    // The image built from imported records exports like any other.
    run_ok(
        rbuild(&second)
            .args(["save", "cached:1", "-o"])
            .arg(dir.path().join("img.tar")),
    );

    let out = rbuild(&second)
        .args(["build", "--cache-to", "type=gha,scope=x"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported type \"gha\""));
}

/// As with BuildKit, a rebuild that comes from the cache throughout is the same image (history
/// and image times are when the layers were made, not when the build ran); `--no-cache` makes
/// new layers and so a new image; metadata steps alone on a base keep the base's time.
#[test]
fn a_rebuild_from_the_cache_is_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = context_with(
        "FROM bb:1\nENV A=1\nCOPY f /f\nRUN echo x > /x\nCMD [\"sh\"]\n",
        &[("f", "f\n")],
    );
    let build = |extra: &[&str]| {
        let out = run_ok(
            rbuild(&store)
                .args(["build", "-q", "-t", "same:1"])
                .args(extra)
                .arg(ctx.path()),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let inspect = |image: &str, format: &str| {
        let out = run_ok(rbuild(&store).args(["inspect", "-f", format, image]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let first = build(&[]);
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(build(&[]), first, "a cached rebuild made another image");
    let fresh = build(&["--no-cache"]);
    assert_ne!(fresh, first, "--no-cache kept the first build's times");

    // Every history entry has a time; ENV takes the COPY's (the first layer step after it), CMD
    // the RUN's, and the image the last step's.
    let archive = dir.path().join("fresh.tar");
    run_ok(
        rbuild(&store)
            .args(["save", "-o"])
            .arg(&archive)
            .arg(&fresh),
    );
    let history = read_docker_archive(&archive).config["history"].clone();
    let times: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            h["created"]
                .as_str()
                .expect("a history entry without a time")
        })
        .collect();
    let n = times.len();
    assert!(n >= 5, "{history}");
    assert_eq!(times[n - 4], times[n - 3], "ENV and COPY: {history}");
    assert_eq!(times[n - 1], times[n - 2], "CMD and RUN: {history}");
    assert_eq!(inspect(&fresh, "{{.Created}}"), times[n - 1]);

    std::fs::write(ctx.path().join("Dockerfile"), "FROM bb:1\nLABEL x=y\n").unwrap();
    let labelled = build(&[]);
    assert_eq!(
        inspect(&labelled, "{{.Created}}"),
        inspect("bb:1", "{{.Created}}"),
        "metadata steps alone took a time of their own"
    );
}
