//! The build cache shared through a registry, as CI fleets use it: ephemeral runners with fresh
//! stores export to and import from the registry they push to (`--cache-to/--cache-from
//! type=registry`, `type=inline`), against a real `docker-registry` on 127.0.0.1.

mod common;
#[path = "common/registry.rs"]
mod reg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use reg::Registry;

/// Steps: tool stage `RUN` (index 1), then the final stage's COPY a, RUN one, COPY b, RUN two,
/// COPY --from=tool. Every step is keyed (no config-only step), so each is CACHED or RAN.
const DOCKERFILE: &str = "FROM bb:1 AS tool\n\
    RUN echo tool-built > /tool.txt\n\
    FROM bb:1\n\
    COPY a.txt /a.txt\n\
    RUN cat /a.txt > /one && echo ran-one\n\
    COPY b.txt /b.txt\n\
    RUN cat /b.txt > /two\n\
    COPY --from=tool /tool.txt /tool.txt\n";

struct Run {
    /// Step text → "CACHED" or "RAN".
    steps: BTreeMap<String, &'static str>,
    log: String,
}

impl Run {
    fn status(&self, text_start: &str) -> &'static str {
        self.steps
            .iter()
            .find(|(t, _)| t.starts_with(text_start))
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("no step {text_start:?} in:\n{}", self.log))
    }
}

fn build(store: &Path, ctx: &Path, tag: &str, extra: &[&str]) -> Run {
    let out = run_ok(
        rbuild(store)
            .args(["build", "--progress=plain", "-t", tag])
            .args(extra)
            .arg(ctx),
    );
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let mut text: BTreeMap<String, String> = BTreeMap::new();
    let mut steps = BTreeMap::new();
    for line in log.lines() {
        let Some((idx, rest)) = line.split_once(' ') else {
            continue;
        };
        if !idx.starts_with('#') || idx == "#0" {
            continue;
        }
        if rest.starts_with('[') {
            if let Some((_, t)) = rest.split_once("] ") {
                text.insert(idx.to_string(), t.to_string());
            }
        } else if rest == "CACHED" || rest.starts_with("DONE ") {
            let t = text.get(idx).cloned().unwrap_or_default();
            steps.insert(t, if rest == "CACHED" { "CACHED" } else { "RAN" });
        }
    }
    Run { steps, log }
}

fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("a.txt"), "a\n").unwrap();
    std::fs::write(ctx.join("b.txt"), "b\n").unwrap();
    ctx
}

fn layers(store: &Path, tag: &str) -> serde_json::Value {
    let out = run_ok(rbuild(store).args(["inspect", tag]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["RootFS"]["Layers"].clone()
}

/// Two "runners": each has its own fresh store holding only the base image.
struct Runners {
    dir: tempfile::TempDir,
    tar: PathBuf,
}

impl Runners {
    fn new() -> Runners {
        let dir = tempfile::tempdir().unwrap();
        let tar = busybox_tar(dir.path());
        Runners { dir, tar }
    }
    fn fresh(&self, name: &str) -> PathBuf {
        store_with_base_tar(&self.tar, &self.dir.path().join(name))
    }
}

const ALL: [&str; 6] = [
    "RUN echo tool-built",
    "COPY a.txt",
    "RUN cat /a.txt",
    "COPY b.txt",
    "RUN cat /b.txt",
    "COPY --from=tool",
];

#[test]
fn second_runner_reuses_every_step_from_the_registry_cache() {
    let reg = Registry::start();
    let runners = Runners::new();
    let ctx = context(runners.dir.path());
    let cache = format!("{}/app/cache:main", reg.host());
    let image = format!("{}/app/img:1", reg.host());

    let first = runners.fresh("runner-1");
    let meta = runners.dir.path().join("meta.json");
    let r = build(
        &first,
        &ctx,
        &image,
        &[
            "--push",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "--metadata-file",
            meta.to_str().unwrap(),
        ],
    );
    for s in ALL {
        assert_eq!(r.status(s), "RAN", "{s}: {}", r.log);
    }
    // The metadata names what the registry serves.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let raw = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    let served = rbuild_digest::Digest::of(&raw.stdout).to_string();
    assert_eq!(doc["containerimage.digest"], served.as_str(), "{doc}");
    assert_eq!(doc["containerimage.descriptor"]["digest"], served.as_str());
    assert_eq!(
        doc["containerimage.descriptor"]["size"],
        raw.stdout.len() as u64
    );
    assert_eq!(doc["image.name"], image.as_str());
    assert_eq!(doc["rbuild.pushed"][0]["digest"], served.as_str());
    let inspect = run_ok(rbuild(&first).args(["inspect", &image]));
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        doc["containerimage.config.digest"], inspect[0]["Id"],
        "{doc}"
    );
    // The cache's layers that the image has were mounted from the image's repository, not
    // uploaded again.
    assert!(r.log.contains("Mounted from app/img"), "{}", r.log);
    // The cache is an artifact with its own config media type.
    let m = reg::skopeo_manifest(&cache);
    assert_eq!(
        m["config"]["mediaType"], "application/vnd.rbuild.cache.config.v1+json",
        "{m}"
    );

    let second = runners.fresh("runner-2");
    let from = format!("type=registry,ref={cache}");
    let r = build(&second, &ctx, "app:1", &["--cache-from", &from]);
    for s in ALL {
        assert_eq!(r.status(s), "CACHED", "{s}: {}", r.log);
    }
    assert!(r.log.contains("importing cache from"), "{}", r.log);
    assert_eq!(layers(&first, &image), layers(&second, "app:1"));
    let second_log = r.log.clone();
    // What the second runner got from the cache exports like anything built locally.
    run_ok(
        rbuild(&second)
            .args(["save", "app:1", "-o"])
            .arg(runners.dir.path().join("img.tar")),
    );

    // One context file changes: only the steps that depend on it run again.
    std::fs::write(ctx.join("b.txt"), "b changed\n").unwrap();
    let third = runners.fresh("runner-3");
    let r = build(
        &third,
        &ctx,
        "app:2",
        &[
            "--cache-from",
            &from,
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
        ],
    );
    // Layers are fetched when a step hits, so the records of the changed steps cost nothing.
    let downloads = |log: &str| log.matches("Download complete").count();
    assert!(
        downloads(&r.log) > 0 && downloads(&r.log) < downloads(&second_log),
        "third runner: {}\nsecond runner: {second_log}",
        r.log
    );
    // Re-exporting uploads only the new layers: the registry has the others.
    assert!(r.log.contains("Already exists"), "{}", r.log);
    for s in ["RUN echo tool-built", "COPY a.txt", "RUN cat /a.txt"] {
        assert_eq!(r.status(s), "CACHED", "{s}: {}", r.log);
    }
    for s in ["COPY b.txt", "RUN cat /b.txt", "COPY --from=tool"] {
        assert_eq!(r.status(s), "RAN", "{s}: {}", r.log);
    }
}

#[test]
fn mode_min_carries_only_the_final_image_steps() {
    let reg = Registry::start();
    let runners = Runners::new();
    let ctx = context(runners.dir.path());
    let cache = format!("{}/app/cache:min", reg.host());
    let first = runners.fresh("runner-1");
    let r = build(
        &first,
        &ctx,
        "app:1",
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},compression=zstd"),
            // A registry that is not there: with ignore-error=true, one warning.
            "--cache-to",
            "type=registry,ref=127.0.0.1:1/app/cache:gone,ignore-error=true",
        ],
    );
    assert!(
        r.log.contains(
            "WARNING: cache export to 127.0.0.1:1/app/cache:gone failed (ignore-error=true)"
        ),
        "{}",
        r.log
    );
    let m = reg::skopeo_manifest(&cache);
    let types: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert!(
        !types.is_empty()
            && types
                .iter()
                .all(|t| *t == "application/vnd.oci.image.layer.v1.tar+zstd"),
        "{m}"
    );
    // Without ignore-error, a failed cache export fails the build and says so.
    let out = rbuild(&first)
        .args(["build", "-t", "app:1", "--cache-to"])
        .arg("type=registry,ref=127.0.0.1:1/app/cache:gone")
        .arg(&ctx)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cache export to 127.0.0.1:1/app/cache:gone failed"),
        "{err}"
    );
    let second = runners.fresh("runner-2");
    let r = build(
        &second,
        &ctx,
        "app:1",
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    // The tool stage's step is not part of the final image: min leaves it out.
    assert_eq!(r.status("RUN echo tool-built"), "RAN", "{}", r.log);
    for s in [
        "COPY a.txt",
        "RUN cat /a.txt",
        "COPY b.txt",
        "RUN cat /b.txt",
    ] {
        assert_eq!(r.status(s), "CACHED", "{s}: {}", r.log);
    }
}

#[test]
fn inline_cache_in_the_pushed_image_seeds_the_next_build() {
    let reg = Registry::start();
    let runners = Runners::new();
    let ctx = context(runners.dir.path());
    let image = format!("{}/app/inline:1", reg.host());
    let first = runners.fresh("runner-1");
    build(
        &first,
        &ctx,
        &image,
        &["--push", "--cache-to", "type=inline"],
    );
    let m = reg::skopeo_manifest(&image);
    assert!(
        m["annotations"]["dev.rbuild.cache.v1"].is_string(),
        "no inline cache in {m}"
    );
    // The image itself is unchanged: docker-style id, ordinary config media type.
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );

    let second = runners.fresh("runner-2");
    // A bare reference is a registry cache source, as with docker.
    let r = build(&second, &ctx, "app:1", &["--cache-from", &image]);
    for s in [
        "COPY a.txt",
        "RUN cat /a.txt",
        "COPY b.txt",
        "RUN cat /b.txt",
    ] {
        assert_eq!(r.status(s), "CACHED", "{s}: {}", r.log);
    }
    assert_eq!(r.status("RUN echo tool-built"), "RAN", "{}", r.log);
}

#[test]
fn unreadable_caches_are_warnings_and_the_build_succeeds() {
    let reg = Registry::start();
    let runners = Runners::new();
    let ctx = context(runners.dir.path());
    let first = runners.fresh("runner-1");
    // A local cache whose layer blob was tampered with after export.
    let local = runners.dir.path().join("local-cache");
    build(
        &first,
        &ctx,
        "app:1",
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", local.display()),
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(local.join("index.json")).unwrap()).unwrap();
    let blob = |d: &serde_json::Value| {
        local.join("blobs/sha256").join(
            d["digest"]
                .as_str()
                .unwrap()
                .strip_prefix("sha256:")
                .unwrap(),
        )
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&index["manifests"][0])).unwrap()).unwrap();
    // The last layer is a step's (the first ones are the base's, which the runner has).
    let all = manifest["layers"].as_array().unwrap();
    let layer = blob(&all[all.len() - 1]);
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    // And a registry cache whose config is not JSON, pushed by hand the way any tool could.
    let bad_ref = format!("{}/app/cache:bad", reg.host());
    let bad = runners.dir.path().join("bad-layout");
    std::fs::create_dir_all(bad.join("blobs/sha256")).unwrap();
    let put = |bytes: &[u8]| {
        let d = rbuild_digest::Digest::of(bytes);
        std::fs::write(bad.join("blobs/sha256").join(d.hex()), bytes).unwrap();
        d
    };
    let config = put(b"{not json");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.rbuild.cache.config.v1+json","digest":"{config}","size":9}},"layers":[]}}"#
    );
    let m = put(manifest.as_bytes());
    std::fs::write(bad.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        bad.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    run_ok(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}", bad.display()),
        &format!("docker://{bad_ref}"),
    ]));

    let second = runners.fresh("runner-2");
    let missing = format!("{}/app/cache:none", reg.host());
    let r = build(
        &second,
        &ctx,
        "app:1",
        &[
            "--cache-from",
            &format!("type=local,src={}", local.display()),
            "--cache-from",
            &format!("type=registry,ref={missing}"),
            "--cache-from",
            &format!("type=registry,ref={bad_ref}"),
            "--cache-from",
            "type=local,src=/nonexistent/rbuild-cache",
        ],
    );
    for s in ALL {
        assert_eq!(r.status(s), "RAN", "{s}: {}", r.log);
    }
    let warnings: Vec<&str> = r
        .log
        .lines()
        .filter(|l| l.starts_with("WARNING: cache import from"))
        .collect();
    assert_eq!(warnings.len(), 4, "{}", r.log);
    for (w, what) in warnings.iter().zip([
        local.display().to_string(),
        missing,
        bad_ref,
        "/nonexistent/rbuild-cache".into(),
    ]) {
        assert!(w.contains(&what), "{w} should name {what}");
    }
    assert!(warnings[0].contains("digest"), "{}", warnings[0]);
}

/// A registry cache whose layer blobs were corrupted in the registry: the first step that hits
/// fetches one, its digest does not match, the cache is dropped with one warning and every step
/// runs; the build succeeds.
#[test]
fn corrupt_blobs_in_a_registry_cache_are_a_warning() {
    let reg = Registry::start();
    let runners = Runners::new();
    let ctx = context(runners.dir.path());
    let cache = format!("{}/app/cache:corrupt", reg.host());
    let first = runners.fresh("runner-1");
    build(
        &first,
        &ctx,
        "app:1",
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    let m = reg::skopeo_manifest(&cache);
    let mut corrupted = 0;
    for l in m["layers"].as_array().unwrap() {
        let path = reg.blob_data(l["digest"].as_str().unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        corrupted += 1;
    }
    assert!(corrupted > 1, "{m}");

    let second = runners.fresh("runner-2");
    let r = build(
        &second,
        &ctx,
        "app:1",
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    for s in ALL {
        assert_eq!(r.status(s), "RAN", "{s}: {}", r.log);
    }
    let warnings: Vec<&str> = r
        .log
        .lines()
        .filter(|l| l.starts_with(&format!("WARNING: cache import from {cache} failed")))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", r.log);
    assert!(warnings[0].contains("digest"), "{}", warnings[0]);
}
