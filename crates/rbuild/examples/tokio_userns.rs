//! The user-namespace entry done right in a tokio program.
//!
//! `rbuild::enter_user_namespace` must run while the process has exactly one thread: the kernel
//! refuses `unshare(CLONE_NEWUSER)` to a multi-threaded process. `#[tokio::main]` starts the
//! runtime's worker threads before the body of `main` runs, so it is too late there. Write a plain
//! `fn main` that enters the namespace first, then builds the runtime by hand and blocks on the
//! async part of the program.
//!
//! The build itself needs no runtime (it runs on rbuild's threads); awaiting it and its event
//! stream works under tokio as under any executor.
//!
//! `cargo run -p rbuild-lib --example tokio_userns`

use futures_util::StreamExt;
use rbuild::{BuildRequest, Builder, BuilderOptions, Event, UserNamespace};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. One thread so far: enter the namespace.
    match rbuild::enter_user_namespace()? {
        UserNamespace::Entered { host_uid, .. } => eprintln!("rootless: uid {host_uid} mapped"),
        UserNamespace::AlreadyRoot => eprintln!("running as root"),
        // Builds still work, with per-step namespaces (files owned by one user only).
        UserNamespace::Unavailable(why) => eprintln!("no user namespace: {why}"),
    }
    // 2. Now threads may start.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let context = dir.path().join("context");
    tokio::fs::create_dir_all(&context).await?;
    tokio::fs::write(context.join("app.txt"), "built under tokio\n").await?;
    let builder = Builder::open(BuilderOptions {
        root: dir.path().join("store"),
        registry: Default::default(),
        isolation: Default::default(),
    })?;

    let mut build = builder.start(
        BuildRequest::new(&context)
            .dockerfile_text("FROM scratch\nCOPY app.txt /\n")
            .tag("example/tokio:1"),
    );
    // Events are a `futures::Stream`: read them on a task while the build runs.
    let mut events = build.events();
    let printer = tokio::spawn(async move {
        let mut steps = 0;
        while let Some(event) = events.next().await {
            if let Event::StepStarted(step) = event {
                steps += 1;
                println!("#{} {}", step.index, step.text);
            }
        }
        steps
    });
    let outcome = build.await?;
    let steps = printer.await?;
    println!("{} in {steps} step(s)", outcome.image_id());
    Ok(())
}
