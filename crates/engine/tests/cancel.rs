//! The library's cancel handle, used as an embedder would: a build cancelled while a RUN step
//! runs returns `Cancelled`, kills the step's processes, and leaves the store clean and usable.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;

use rbuild_engine::{BuildError, BuildRequest, Builder, BuilderOptions, Cancel, Event};

/// A one-layer busybox image tagged `bb:1` (Debian's busybox-static).
fn busybox_image(builder: &Builder, dir: &Path) {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.exists(),
        "/bin/busybox is missing: install busybox-static"
    );
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::create_dir_all(rootfs.join("tmp")).unwrap();
    std::fs::copy(bb, rootfs.join("bin/busybox")).unwrap();
    for app in ["sh", "sleep", "echo"] {
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
        .unwrap();
    assert!(st.success());
    let reference = rbuild_engine::image::reference::Reference::parse("bb:1").unwrap();
    rbuild_engine::import_rootfs(
        builder.images(),
        &tar,
        Some(&reference),
        &rbuild_engine::host_platform(),
        None,
    )
    .unwrap();
}

fn sleepers(cmdline: &str) -> usize {
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

#[test]
fn cancelling_a_running_build_stops_it_and_leaves_the_store_clean() {
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
    let req = BuildRequest {
        context: ctx.clone(),
        dockerfile_text: Some("FROM bb:1\nRUN echo go && sleep 83\n".into()),
        ..Default::default()
    };
    let cancel = Cancel::new();
    let (tx, rx) = mpsc::channel::<Event>();
    let tx = std::sync::Mutex::new(tx);
    let progress = move |e: Event| {
        let _ = tx.lock().unwrap().send(e);
    };
    let result = std::thread::scope(|s| {
        let build = s.spawn(|| builder.build_with(&req, &progress, &cancel));
        // Cancel once the step has printed (its process is running).
        for e in rx.iter() {
            if matches!(&e, Event::StepLog { text, .. } if text == "go") {
                break;
            }
        }
        cancel.cancel();
        build.join().unwrap()
    });
    assert!(
        matches!(result, Err(BuildError::Cancelled)),
        "not cancelled: {result:?}"
    );
    // The step's pid namespace was killed; the kernel reaps its processes right after (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sleepers("sleep 83") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the step's process outlived the build"
        );
        std::thread::yield_now();
    }
    let left: Vec<_> = std::fs::read_dir(root.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "scratch directories left: {left:?}");

    // The store builds afterwards.
    let ok = BuildRequest {
        context: ctx,
        dockerfile_text: Some("FROM bb:1\nRUN echo fine > /fine\n".into()),
        ..Default::default()
    };
    builder
        .build_blocking(&ok, &rbuild_engine::NoProgress)
        .unwrap();
}
