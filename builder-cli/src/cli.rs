//! Argument parsing (clap) and the wiring of each subcommand to the library.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use rbuild_engine::image::reference::Reference;
use rbuild_engine::{BuildError, BuildRequest, Builder, BuilderOptions, Output};

use crate::render::{Renderer, Style};

/// Build OCI images from Dockerfiles, without a daemon and without root.
///
/// `rbuild [OPTIONS] PATH` is the same as `rbuild build [OPTIONS] PATH`, as with `docker build`.
#[derive(Parser, Debug)]
#[command(name = "rbuild", version, about, long_about = None)]
pub struct Cli {
    /// Image store directory (default: $RBUILD_ROOT, $XDG_DATA_HOME/rbuild, /var/lib/rbuild for root)
    #[arg(long, global = true, env = "RBUILD_ROOT")]
    root: Option<PathBuf>,
    /// Allow plain HTTP and unverified TLS for this registry host[:port] (repeatable)
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    insecure_registry: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once per process; boxing the big `build` arguments would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Build an image from a Dockerfile (the default command)
    Build(BuildArgs),
    /// List images in the store
    Images(crate::images::ImagesArgs),
    /// Create a tag TARGET that refers to SOURCE
    Tag {
        /// Existing image (name, name:tag or id)
        source: String,
        /// New reference
        target: String,
    },
    /// Remove one or more images
    Rmi {
        /// Remove even when the image has several tags
        #[arg(short, long)]
        force: bool,
        /// Images to remove
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the manifest and config of images as JSON
    Inspect(crate::images::InspectArgs),
    /// Show the history of an image
    History {
        /// Image to show
        image: String,
        /// Do not truncate output
        #[arg(long)]
        no_trunc: bool,
    },
    /// Remove untagged images, the build cache and unreferenced data from the store
    Prune,
    /// Save images to a tar archive (docker-archive by default, as `docker save`)
    Save {
        /// Write to this file instead of standard output (`-` is standard output)
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Archive format: docker or oci
        #[arg(long, default_value = "docker")]
        format: String,
        /// Images to save
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Import a root filesystem tarball as a one-layer image (as `docker import`)
    Import {
        /// The tarball (plain, gzip, zstd, bzip2 or xz)
        file: PathBuf,
        /// Name for the image (`name[:tag]`)
        reference: Option<String>,
        /// Platform to record in the config (default: this machine's)
        #[arg(long)]
        platform: Option<String>,
    },
    /// Load images from a tar archive (docker, podman, skopeo or rbuild archives, or an OCI layout)
    Load {
        /// Read from this archive or OCI layout directory instead of standard input
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Print only the loaded image ids
        #[arg(short, long)]
        quiet: bool,
    },
    // --- registry verbs (builder-cli/src/registry.rs) ---
    /// Pull an image from a registry
    Pull(crate::registry::PullArgs),
    /// Push an image to a registry (optionally under another name)
    Push(crate::registry::PushArgs),
    /// Log in to a registry
    Login(crate::registry::LoginArgs),
    /// Log out from a registry
    Logout(crate::registry::LogoutArgs),
    /// Show what this host offers builds (namespaces, subordinate ids, overlay) and what rbuild
    /// will use (snapshotter, isolation, store, registry configuration)
    Info(crate::info::InfoArgs),
    /// Run a command inside rbuild's rootless user namespace (as `buildah unshare`), e.g. to
    /// inspect or remove store files owned by subordinate ids
    Unshare {
        /// The command and its arguments (default: $SHELL)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    // --- container verbs (builder-cli/src/containers.rs) ---
    /// Create and run a new container from an image
    Run(crate::containers::RunArgs),
    /// List containers
    Ps(crate::containers::PsArgs),
    /// Start one or more stopped containers
    Start(crate::containers::StartArgs),
    /// Stop one or more running containers
    Stop(crate::containers::StopArgs),
    /// Kill one or more running containers
    Kill(crate::containers::KillArgs),
    /// Remove one or more containers
    Rm(crate::containers::RmArgs),
    /// Fetch the logs of a container
    Logs(crate::containers::LogsArgs),
    /// Execute a command in a running container
    Exec(crate::containers::ExecArgs),
    /// Create a new image from a container's changes
    Commit(crate::containers::CommitArgs),
}

impl Cli {
    /// Whether this command touches the store's trees, whose files belong to subordinate ids
    /// when built rootless, so it must run inside the user namespace (registry credentials
    /// do not).
    pub fn wants_user_namespace(&self) -> bool {
        // exec joins the container's own user namespace, which only its owner (the caller,
        // outside any namespace of rbuild's) may enter.
        !matches!(
            self.command,
            Command::Login(_) | Command::Logout(_) | Command::Exec(_)
        )
    }

    /// Fixes the store location from the caller's real uid and environment, before `main` makes
    /// the process root of a user namespace (where the default would become root's store).
    pub fn pin_default_root(&mut self) {
        if self.root.is_none() {
            self.root = Some(BuilderOptions::from_env().root);
        }
    }

    /// `rbuild unshare` fails when no namespace can be entered instead of running the command
    /// outside one.
    pub fn is_unshare(&self) -> bool {
        matches!(self.command, Command::Unshare { .. })
    }

    /// The PATH of a `build`, for checking the one an implied `build` got.
    pub fn build_context(&self) -> Option<&std::path::Path> {
        match &self.command {
            Command::Build(b) => Some(&b.context),
            _ => None,
        }
    }
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// Build context directory
    #[arg(value_name = "PATH")]
    context: PathBuf,
    /// Name of the Dockerfile (default: PATH/Dockerfile)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Name and optionally a tag in the name:tag format
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Set build-time variables (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    target: Option<String>,
    /// Set metadata for the image (KEY=VALUE)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    no_cache: bool,
    /// Do not use cache for the steps of these stages
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    no_cache_filter: Vec<String>,
    /// How many steps may run at once (default: the number of cores)
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Print, for every step, whether it would come from the cache and why not, without building
    #[arg(long)]
    explain: bool,
    /// Always attempt to pull a newer version of the base images
    #[arg(long)]
    pull: bool,
    /// Push every -t tag to its registry after the build (same as -o type=registry)
    #[arg(long)]
    push: bool,
    /// Suppress the build output and print the image ID on success
    #[arg(short, long)]
    quiet: bool,
    /// Write the image ID to the file
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// Write build result metadata (digests, pushed names) to the file, as docker buildx does
    #[arg(long = "metadata-file", value_name = "FILE")]
    metadata_file: Option<PathBuf>,
    /// Set target platform for build (os/arch[/variant]; several comma-separated build a
    /// multi-platform image index)
    #[arg(long)]
    platform: Option<String>,
    /// Output destination (format: type=local|oci|docker|tar,dest=path, or type=registry[,name=REF])
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    outputs: Vec<String>,
    /// Type of progress output (auto, plain, tty, quiet, rawjson)
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Secret to expose to the build (id=mysecret[,src=/local/secret] or id=X,env=VAR)
    #[arg(long = "secret", value_name = "SPEC")]
    secrets: Vec<String>,
    /// SSH agent socket to expose to RUN --mount=type=ssh (default|<id>[=<socket>]; default: $SSH_AUTH_SOCK)
    #[arg(long = "ssh", value_name = "SPEC")]
    ssh: Vec<String>,
    /// Device for every RUN step: a CDI name (vendor.com/class=name, e.g. nvidia.com/gpu=all) or a host node (/dev/X[:/dev/Y][:rwm])
    #[arg(long = "device", value_name = "DEVICE")]
    devices: Vec<String>,
    /// Directory of CDI specs, repeatable, later ones win (default: /etc/cdi, then /var/run/cdi)
    #[arg(long = "cdi-spec-dir", value_name = "DIR")]
    cdi_spec_dirs: Vec<PathBuf>,
    /// Set the networking mode for the RUN instructions during build (host, none)
    #[arg(long)]
    network: Option<String>,
    /// External cache sources (type=registry,ref=REF | type=local,src=DIR | REF)
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Cache export destinations (type=registry,ref=REF | type=local,dest=DIR | type=inline;
    /// mode=min|max, compression=gzip|zstd|uncompressed)
    #[arg(long = "cache-to", value_name = "SPEC")]
    cache_to: Vec<String>,
    /// Check the Dockerfile (parse, resolve stages and arguments, lint) without building
    #[arg(long)]
    check: bool,
    /// How RUN steps are isolated: auto (namespaces, else chroot where a root caller may create
    /// none, as in an unprivileged container), userns (namespaces only) or chroot (root only)
    #[arg(long, default_value = "auto", value_name = "auto|userns|chroot")]
    isolation: rbuild_engine::sandbox::Isolation,
}

fn builder(cli_root: &Option<PathBuf>) -> Result<Builder, BuildError> {
    let opts = match cli_root {
        Some(r) => BuilderOptions {
            root: r.clone(),
            ..BuilderOptions::from_env()
        },
        None => BuilderOptions::from_env(),
    };
    Builder::open(opts)
}

/// `rbuild unshare`: main has already entered the namespace (or the caller is root); replace
/// this process with the command so its exit status is ours.
fn unshare(command: Vec<OsString>) -> Result<ExitCode, BuildError> {
    use std::os::unix::process::CommandExt;
    let mut argv = command.into_iter();
    let program = argv
        .next()
        .or_else(|| std::env::var_os("SHELL"))
        .unwrap_or_else(|| "/bin/sh".into());
    let err = std::process::Command::new(&program).args(argv).exec();
    Err(BuildError::Request(format!(
        "rbuild unshare: cannot run {}: {err}",
        program.to_string_lossy()
    )))
}

/// Runs the parsed command; `Err` is rendered by main with exit code 1.
pub fn run(cli: Cli) -> Result<ExitCode, BuildError> {
    match cli.command {
        Command::Build(b) => build(&cli.root, &cli.insecure_registry, b),
        Command::Pull(a) => crate::registry::pull(&cli.root, &cli.insecure_registry, a),
        Command::Push(a) => crate::registry::push(&cli.root, &cli.insecure_registry, a),
        Command::Login(a) => crate::registry::login(&cli.insecure_registry, a),
        Command::Logout(a) => crate::registry::logout(a),
        Command::Unshare { command } => unshare(command),
        Command::Run(a) => Ok(crate::containers::run(&cli.root, &cli.insecure_registry, a)),
        Command::Ps(a) => Ok(crate::containers::ps(&cli.root, a)),
        Command::Start(a) => Ok(crate::containers::start(&cli.root, a)),
        Command::Stop(a) => Ok(crate::containers::stop(&cli.root, a)),
        Command::Kill(a) => Ok(crate::containers::kill(&cli.root, a)),
        Command::Rm(a) => Ok(crate::containers::rm(&cli.root, a)),
        Command::Logs(a) => Ok(crate::containers::logs(&cli.root, a)),
        Command::Exec(a) => Ok(crate::containers::exec(&cli.root, a)),
        Command::Commit(a) => Ok(crate::containers::commit(&cli.root, a)),
        Command::Images(a) => crate::images::images(&cli.root, a),
        Command::Info(a) => crate::info::info(&cli.root, a),
        Command::Tag { source, target } => {
            let builder = builder(&cli.root)?;
            let img = builder.images().resolve(&source)?;
            let r = Reference::parse(&target)?;
            builder.images().tag(&img, &r)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rmi { force, images } => {
            let builder = builder(&cli.root)?;
            let mut failed = false;
            for i in images {
                if !force {
                    if let Some(conflict) = crate::containers::rmi_conflict(builder.images(), &i) {
                        eprintln!("Error response from daemon: {conflict}");
                        failed = true;
                        continue;
                    }
                }
                match builder.images().remove(&i, force) {
                    Ok(lines) => {
                        for l in lines {
                            println!("{l}");
                        }
                    }
                    Err(e) => {
                        eprintln!("ERROR: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Inspect(a) => crate::images::inspect(&cli.root, a),
        Command::History { image, no_trunc } => {
            let builder = builder(&cli.root)?;
            let rows = builder.images().history(&image)?;
            println!(
                "{:<15} {:<22} {:<60} SIZE",
                "IMAGE", "CREATED", "CREATED BY"
            );
            for r in rows {
                let mut by = r.created_by.clone();
                if !no_trunc && by.chars().count() > 57 {
                    by = by.chars().take(57).collect::<String>() + "...";
                }
                println!(
                    "{:<15} {:<22} {:<60} {}",
                    r.id,
                    r.created,
                    by,
                    crate::images::human_size(r.size)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune => {
            let builder = builder(&cli.root)?;
            // Images containers use stay, as docker's prune keeps them.
            let in_use = rbuild_container::Containers::open(builder.images())
                .and_then(|c| c.images_in_use())
                .map_err(|e| BuildError::Request(e.to_string()))?;
            let report = builder.prune_keeping(&in_use)?;
            if report.cache_records > 0 {
                println!("Deleted build cache records: {}", report.cache_records);
            }
            if report.snapshots.trees > 0 {
                println!("Deleted snapshot trees: {}", report.snapshots.trees);
            }
            println!(
                "Total reclaimed space: {}",
                crate::images::human_size(report.bytes_freed())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Save {
            output,
            format,
            images,
        } => {
            let builder = builder(&cli.root)?;
            let items = rbuild_engine::save::resolve_items(builder.images(), &images)?;
            crate::streams::save(&builder, &items, &format, output)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            file,
            reference,
            platform,
        } => {
            let builder = builder(&cli.root)?;
            let r = reference.as_deref().map(Reference::parse).transpose()?;
            let platform = match platform {
                Some(p) => rbuild_engine::dockerfile::Platform::parse(&p)
                    .map_err(|e| BuildError::Request(format!("invalid --platform {p:?}: {e}")))?,
                None => rbuild_engine::host_platform(),
            };
            let img =
                rbuild_engine::import_rootfs(builder.images(), &file, r.as_ref(), &platform, None)?;
            println!("{}", img.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Load { input, quiet } => {
            let builder = builder(&cli.root)?;
            let loaded = crate::streams::load(&builder, input)?;
            for l in loaded {
                if quiet {
                    println!("{}", l.image.id);
                } else if l.names.is_empty() {
                    println!("Loaded image ID: {}", l.image.id);
                } else {
                    for n in &l.names {
                        println!("Loaded image: {}", n.familiar());
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn build(
    root: &Option<PathBuf>,
    insecure_registry: &[String],
    b: BuildArgs,
) -> Result<ExitCode, BuildError> {
    let build_args =
        rbuild_engine::spec::parse_build_args(&b.build_args, &|k| std::env::var(k).ok());
    let labels = rbuild_engine::spec::parse_labels(&b.labels)?;
    let mut outputs = Vec::new();
    for o in &b.outputs {
        outputs.push(Output::parse(o)?);
    }
    crate::streams::check_stdout_outputs(&outputs, b.quiet)?;
    let secrets = b
        .secrets
        .iter()
        .map(|s| rbuild_engine::spec::parse_secret(s))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_from = b
        .cache_from
        .iter()
        .map(|s| rbuild_engine::CacheImport::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_to = b
        .cache_to
        .iter()
        .map(|s| rbuild_engine::CacheExport::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let ssh = b
        .ssh
        .iter()
        .map(|s| rbuild_engine::spec::parse_ssh(s, std::env::var_os("SSH_AUTH_SOCK").as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let (dockerfile, dockerfile_text) = match &b.file {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| BuildError::io("<stdin>", e))?;
            (None, Some(s))
        }
        Some(p) => (Some(p.clone()), None),
        None => (None, None),
    };
    let source_date_epoch = rbuild_engine::spec::parse_source_date_epoch(
        std::env::var("SOURCE_DATE_EPOCH").ok().as_deref(),
    )?;
    let req = BuildRequest {
        context: b.context.clone(),
        dockerfile,
        dockerfile_text,
        build_args,
        target: b.target.clone(),
        tags: b.tags.clone(),
        labels,
        no_cache: b.no_cache,
        no_cache_filter: b
            .no_cache_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        jobs: match b.jobs {
            Some(0) => return Err(BuildError::Request("--jobs must be at least 1".into())),
            j => j,
        },
        pull: b.pull,
        platform: b.platform.clone(),
        outputs,
        secrets,
        ssh,
        cache_from,
        cache_to,
        network: b.network.clone(),
        source_date_epoch,
        push: b.push,
        devices: b
            .devices
            .iter()
            .map(|d| {
                rbuild_engine::cdi::DeviceRequest::parse(d)
                    .map_err(|e| BuildError::Request(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        cdi_spec_dirs: b.cdi_spec_dirs.clone(),
    };
    if b.check {
        return check(&req);
    }
    let style = if b.quiet {
        Style::Quiet
    } else {
        match b.progress.as_str() {
            // As docker: the live display only where someone watches it, and never on a
            // terminal that cannot move its cursor.
            "auto"
                if std::io::stderr().is_terminal()
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb") =>
            {
                Style::Tty
            }
            "auto" | "plain" => Style::Plain,
            "tty" => Style::Tty,
            "quiet" => Style::Quiet,
            "rawjson" => Style::Json,
            other => {
                return Err(BuildError::Request(format!(
                    "invalid --progress {other:?}: use auto, plain, tty, quiet or rawjson"
                )))
            }
        }
    };
    let builder = crate::registry::builder_isolated(root, insecure_registry, b.isolation)?;
    let renderer = Arc::new(Renderer::new(style));
    if b.explain {
        let explained = builder.explain(&req, renderer.as_ref())?;
        // The display's last frame goes first, so stdout's lines do not land inside it.
        renderer.finish();
        for e in explained {
            let s = &e.step;
            let what = match &e.runs {
                None if e.config_only => "config only".to_string(),
                None => "CACHED".to_string(),
                Some(why) => format!("runs: {why}"),
            };
            println!(
                "#{} [{} {}/{}] {}: {what}",
                s.index, s.stage, s.index, s.total, s.text
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Ctrl-C and SIGTERM stop the build cleanly: running steps are killed and every snapshot,
    // mount and scratch directory is removed before rbuild exits.
    let cancel = rbuild_engine::Cancel::new();
    let signal = crate::signals::on_interrupt(cancel.clone());
    let out = match builder.build_with(&req, renderer.as_ref(), &cancel) {
        Err(BuildError::Cancelled) => {
            renderer.finish();
            eprintln!("ERROR: build cancelled");
            let code = 128 + signal.received().unwrap_or(libc::SIGINT);
            return Ok(ExitCode::from(code as u8));
        }
        r => r?,
    };
    renderer.finish();
    // A multi-platform build's id is its index digest, as buildx writes it.
    let id = out.index.unwrap_or(out.image.id);
    if let Some(p) = &b.iidfile {
        std::fs::write(p, id.to_string()).map_err(|e| BuildError::io(p, e))?;
    }
    if let Some(p) = &b.metadata_file {
        let doc = rbuild_engine::metadata::build_metadata(&out, builder.images().store());
        rbuild_engine::metadata::write_metadata_file(p, &doc)?;
    }
    if b.quiet {
        println!("{id}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--check`: parse, plan and lint without building, as `docker build --check`.
fn check(req: &BuildRequest) -> Result<ExitCode, BuildError> {
    let report = rbuild_engine::check(req)?;
    let mut out = std::io::stdout().lock();
    for d in &report.diagnostics {
        let _ = writeln!(
            out,
            "WARNING: {} - {}:{}:{}: {}",
            d.rule, d.file_name, d.line, d.column, d.message
        );
    }
    if report.diagnostics.is_empty() {
        let _ = writeln!(out, "Check complete, no warnings found.");
        Ok(ExitCode::SUCCESS)
    } else {
        let _ = writeln!(
            out,
            "Check complete, {} warning(s) found.",
            report.diagnostics.len()
        );
        Ok(ExitCode::from(1))
    }
}
