//! The smallest embedding: build a Dockerfile into a store and print the image id.
//!
//! It writes a `FROM scratch` context to a temporary directory, so it runs anywhere, offline and
//! without a base image. A real program opens `BuilderOptions::from_env()` (rbuild's own store)
//! and points the request at its project.
//!
//! `cargo run -p rbuild-lib --example minimal`

use rbuild::{BuildRequest, Builder, BuilderOptions, RegistryOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // First thing, while the process has one thread (see the tokio_userns example for why).
    rbuild::enter_user_namespace()?;

    let dir = tempfile::tempdir()?;
    let context = dir.path().join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(context.join("hello.txt"), "hello from rbuild\n")?;
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\nCMD [\"/hello.txt\"]\n",
    )?;

    let builder = Builder::open(BuilderOptions {
        root: dir.path().join("store"),
        registry: RegistryOptions::default(),
        isolation: Default::default(),
    })?;
    let outcome = builder
        .start(BuildRequest::new(&context).tag("example/minimal:1"))
        .wait()?;

    println!("built {} as {:?}", outcome.image_id(), outcome.tags);
    // The store knows it by its tag now.
    let found = builder.images().resolve("example/minimal:1")?;
    assert_eq!(found.id, outcome.image_id());
    Ok(())
}
