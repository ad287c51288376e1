//! Watch a build's typed events as they happen, and cancel a build from another thread.
//!
//! The first build prints each event as one JSON line (events are `Serialize`) and then the
//! per-step cache results of its outcome. The second build of the same Dockerfile is cancelled as
//! soon as its first step starts: later steps never run, and the build ends with
//! `BuildError::Cancelled` after cleaning up.
//!
//! `cargo run -p rbuild-lib --example progress_cancel`

use rbuild::{BuildError, BuildRequest, Builder, BuilderOptions, CacheResult, Event};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    rbuild::enter_user_namespace()?;

    let dir = tempfile::tempdir()?;
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context)?;
    for name in ["a", "b", "c"] {
        std::fs::write(context.join(name), format!("{name}\n"))?;
    }
    let dockerfile = "FROM scratch\nCOPY a /a\nCOPY b /b\nCOPY c /c\n";
    let builder = Builder::open(BuilderOptions {
        root: dir.path().join("store"),
        registry: Default::default(),
        isolation: Default::default(),
    })?;

    // 1. Progress: the events arrive while the build runs (here on this thread, as an iterator;
    //    async code uses the same `Events` as a `futures::Stream`).
    let mut build = builder.start(BuildRequest::new(&context).dockerfile_text(dockerfile));
    for event in build.events() {
        println!("{}", serde_json::to_string(&event)?);
    }
    let outcome = build.wait()?;
    for step in &outcome.steps {
        let how = match &step.cache {
            CacheResult::Hit => "cached".to_string(),
            CacheResult::Miss { reason } => format!("ran: {reason}"),
            _ => "config only".to_string(),
        };
        println!("step {} `{}`: {how}", step.step.index, step.step.text);
    }

    // 2. Cancellation: a `Cancel` handle stops a build from any thread (a UI's, a signal
    //    handler's). Here the progress sink raises it when the first step starts; the sink runs on
    //    the build's own thread before the step does, so the example is deterministic, where a
    //    consumer of the `Events` stream may see the event only after these fast steps are done.
    //    `Build::canceller` gives the same handle for a started build, and dropping a `Build`
    //    cancels it too.
    let cancel = rbuild::Cancel::new();
    let started = std::sync::atomic::AtomicUsize::new(0);
    let on_event = |event: Event| {
        if let Event::StepStarted(step) = &event {
            started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            println!("step {} started: cancelling", step.index);
            cancel.cancel();
        }
    };
    let req = BuildRequest::new(&context)
        .dockerfile_text(dockerfile)
        .no_cache(true);
    let result = std::thread::scope(|s| {
        s.spawn(|| builder.build_with(&req, &on_event, &cancel))
            .join()
            .expect("build thread")
    });
    let started = started.into_inner();
    match result {
        Err(BuildError::Cancelled) => println!("cancelled after {started} step(s) started"),
        other => return Err(format!("expected a cancelled build, got {other:?}").into()),
    }
    assert!(started < 3, "every step started despite the cancel");
    Ok(())
}
