//! The engine through the embedding API, as a program using the `rbuild` crate drives it (no
//! binary): a build streams typed events and reports per-step cache results; a long RUN is
//! stopped by the cancel handle and, in a second build, by dropping the `Build`; afterwards no
//! mount, process or scratch directory of the build is left and the store builds again.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild::{BuildError, BuildRequest, Builder, BuilderOptions, CacheResult, Event, MissReason};

/// A one-layer busybox image tagged `bb:1` (Debian's busybox-static), so RUN has a shell.
fn busybox_image(builder: &Builder, dir: &Path) {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.exists(),
        "/bin/busybox is missing: install busybox-static (scripts/install-deps.sh)"
    );
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy(bb, rootfs.join("bin/busybox")).unwrap();
    for app in ["sh", "sleep", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let reference = rbuild::image::reference::Reference::parse("bb:1").unwrap();
    rbuild::import_rootfs(
        builder.images(),
        &tar,
        Some(&reference),
        &rbuild::host_platform(),
        None,
    )
    .unwrap();
}

/// Processes whose command line is exactly `cmdline`.
fn processes(cmdline: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                        == cmdline
                })
                .unwrap_or(false)
        })
        .count()
}

/// Mount points of this process under `root`.
fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.canonicalize().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(&root))
        .map(str::to_string)
        .collect()
}

/// Everything a cancelled build must not leave behind.
fn assert_clean(root: &Path, cmdline: &str) {
    // The step's pid namespace was killed; the kernel reaps its processes right after (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while processes(cmdline) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "`{cmdline}` outlived the cancelled build"
        );
        std::thread::yield_now();
    }
    let mounts = mounts_under(root);
    assert!(mounts.is_empty(), "mounts left in the store: {mounts:?}");
    let left: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch directories left: {left:?}");
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, Builder) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let builder = Builder::open(BuilderOptions {
        root: root.clone(),
        registry: Default::default(),
        isolation: Default::default(),
    })
    .unwrap();
    busybox_image(&builder, dir.path());
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("f"), "from the context\n").unwrap();
    (dir, root, ctx, builder)
}

#[test]
fn a_build_streams_events_and_reports_each_steps_cache_result() {
    let (_dir, _root, ctx, builder) = setup();
    let dockerfile = "FROM bb:1\nCOPY f /f\nRUN cat /f && echo ran > /ran\nENV A=1\n";
    let req = BuildRequest::new(&ctx)
        .dockerfile_text(dockerfile)
        .tag("api/streamed:1")
        // The same image id on a rebuild: timestamps come from here, not the clock.
        .source_date_epoch(1_700_000_000);

    let mut build = builder.start(req.clone());
    let events: Vec<Event> = build.events().into_iter().collect();
    let outcome = build.wait().unwrap();

    assert!(
        matches!(events.first(), Some(Event::Planned { steps: 3, .. })),
        "first event: {:?}",
        events.first()
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::StepLog { text, .. } if text.contains("from the context"))),
        "the RUN's output was not streamed: {events:?}"
    );
    let written = events.iter().find_map(|e| match e {
        Event::ImageWritten { id, .. } => Some(id.clone()),
        _ => None,
    });
    assert_eq!(written, Some(outcome.image_id().to_string()));
    assert_eq!(outcome.tags, ["docker.io/api/streamed:1"]);
    assert_eq!(
        builder
            .images()
            .resolve("api/streamed:1")
            .unwrap()
            .manifest_digest,
        outcome.manifest_digest()
    );
    let caches: Vec<_> = outcome.steps.iter().map(|s| s.cache.clone()).collect();
    assert_eq!(
        caches,
        [
            CacheResult::Miss {
                reason: MissReason::FirstBuild
            },
            CacheResult::Miss {
                reason: MissReason::FirstBuild
            },
            CacheResult::ConfigOnly,
        ]
    );
    // Events serialize for embedders that forward them.
    let line = serde_json::to_string(&events[0]).unwrap();
    assert!(line.starts_with(r#"{"event":"planned""#), "{line}");

    // Again: the same image, every cacheable step from the cache.
    let again = builder.start(req).wait().unwrap();
    assert_eq!(again.image_id(), outcome.image_id());
    let caches: Vec<_> = again.steps.iter().map(|s| s.cache.clone()).collect();
    assert_eq!(
        caches,
        [CacheResult::Hit, CacheResult::Hit, CacheResult::ConfigOnly]
    );
}

#[test]
fn cancelling_or_dropping_a_build_stops_its_run_and_leaves_the_store_clean() {
    let (_dir, root, ctx, builder) = setup();

    // 1. The cancel handle, raised while the RUN's process runs.
    let mut build = builder
        .start(BuildRequest::new(&ctx).dockerfile_text("FROM bb:1\nRUN echo go && sleep 91\n"));
    let cancel = build.canceller();
    let mut events = build.events().into_iter();
    for e in events.by_ref() {
        if matches!(&e, Event::StepLog { text, .. } if text == "go") {
            cancel.cancel();
            break;
        }
    }
    let rest: Vec<Event> = events.collect();
    let result = build.wait();
    assert!(
        matches!(result, Err(BuildError::Cancelled)),
        "not cancelled: {result:?}"
    );
    assert!(
        rest.iter().any(|e| matches!(e, Event::StepCancelled(_))),
        "no StepCancelled event: {rest:?}"
    );
    assert_clean(&root, "sleep 91");

    // 2. Dropping the Build: the build thread cancels and cleans up; its event stream ends when
    //    that thread is done.
    let mut build = builder
        .start(BuildRequest::new(&ctx).dockerfile_text("FROM bb:1\nRUN echo go && sleep 92\n"));
    let mut events = build.events().into_iter();
    assert!(
        events
            .by_ref()
            .any(|e| matches!(&e, Event::StepLog { text, .. } if text == "go")),
        "the RUN never printed"
    );
    drop(build);
    let rest: Vec<Event> = events.collect();
    assert!(
        rest.iter().any(|e| matches!(e, Event::StepCancelled(_))),
        "dropping did not cancel: {rest:?}"
    );
    assert_clean(&root, "sleep 92");

    // 3. The store is usable: a build with a RUN succeeds and its result is listed.
    let ok = builder
        .start(
            BuildRequest::new(&ctx)
                .dockerfile_text("FROM bb:1\nRUN echo fine > /fine\n")
                .tag("api/after:1"),
        )
        .wait()
        .unwrap();
    assert!(builder
        .images()
        .list()
        .unwrap()
        .iter()
        .any(|i| i.id == ok.image_id()));
}
