//! Argument parsing (clap) and the wiring of each subcommand to the library.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use rbuild_engine::image::reference::Reference;
use rbuild_engine::{
    BuildError, BuildRequest, Builder, BuilderOptions, Output, SecretFrom, SecretSource, SshSource,
};

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
    Images(ImagesArgs),
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
    Inspect {
        /// Images to inspect
        #[arg(required = true)]
        images: Vec<String>,
    },
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
        /// Write to this file (required: archives are not written to a terminal)
        #[arg(short, long)]
        output: PathBuf,
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
        /// Read from this archive or OCI layout directory
        #[arg(short, long)]
        input: PathBuf,
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
}

impl Cli {
    /// Whether this command touches the store's trees, whose files belong to subordinate ids
    /// when built rootless, so it must run inside the user namespace (registry credentials
    /// do not).
    pub fn wants_user_namespace(&self) -> bool {
        !matches!(self.command, Command::Login(_) | Command::Logout(_))
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
    /// Set target platform for build (os/arch[/variant])
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
    /// Set the networking mode for the RUN instructions during build (host, none)
    #[arg(long)]
    network: Option<String>,
    /// Load an exported build cache first (type=local,src=DIR; other types are skipped with a warning)
    #[arg(long = "cache-from", value_name = "SPEC")]
    cache_from: Vec<String>,
    /// Export this build's cache (type=local,dest=DIR)
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

#[derive(Args, Debug)]
struct ImagesArgs {
    /// Only show image IDs
    #[arg(short, long)]
    quiet: bool,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
}

/// `rbuild -f X -t y .` means `rbuild build -f X -t y .`: insert the verb unless one is there.
pub fn insert_default_verb(mut args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if a == "--root" || a == "--insecure-registry" {
            i += 2;
            continue;
        }
        if a.starts_with("--root=") || a.starts_with("--insecure-registry=") {
            i += 1;
            continue;
        }
        if matches!(a.as_ref(), "-h" | "--help" | "-V" | "--version") {
            return args;
        }
        // The verbs are clap's subcommands, so a new one can never be mistaken for a path.
        let cmd = <Cli as clap::CommandFactory>::command();
        if a == "help" || cmd.get_subcommands().any(|s| s.get_name() == a) {
            return args;
        }
        break;
    }
    if args.len() > 1 {
        args.insert(1, "build".into());
    }
    args
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
        Command::Info(a) => crate::info::info(&cli.root, a),
        Command::Images(a) => {
            let builder = builder(&cli.root)?;
            let rows = builder.images().list()?;
            let mut out = std::io::stdout().lock();
            if a.quiet {
                let mut seen = std::collections::BTreeSet::new();
                for r in rows {
                    let id = if a.no_trunc {
                        r.id.to_string()
                    } else {
                        r.id.short()
                    };
                    if seen.insert(id.clone()) {
                        let _ = writeln!(out, "{id}");
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let _ = writeln!(
                out,
                "{:<40} {:<20} {:<15} {:<20} SIZE",
                "REPOSITORY", "TAG", "IMAGE ID", "CREATED"
            );
            for r in rows {
                let id = if a.no_trunc {
                    r.id.to_string()
                } else {
                    r.id.short()
                };
                let _ = writeln!(
                    out,
                    "{:<40} {:<20} {:<15} {:<20} {}",
                    r.repository,
                    r.tag,
                    id,
                    r.created,
                    human_size(r.size)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
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
        Command::Inspect { images } => {
            let builder = builder(&cli.root)?;
            let mut all = Vec::new();
            for i in images {
                let img = builder.images().resolve(&i)?;
                all.push(builder.images().inspect(&img)?);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into())
            );
            Ok(ExitCode::SUCCESS)
        }
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
                    human_size(r.size)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Prune => {
            let builder = builder(&cli.root)?;
            let records = rbuild_engine::cache::prune(builder.images().store())?;
            if records > 0 {
                println!("Deleted build cache records: {records}");
            }
            let stats = builder.images().prune()?;
            let trees = builder.prune_snapshots()?;
            if trees.trees > 0 {
                println!("Deleted snapshot trees: {}", trees.trees);
            }
            println!(
                "Total reclaimed space: {}",
                human_size(stats.bytes_freed + trees.bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Save {
            output,
            format,
            images,
        } => {
            let builder = builder(&cli.root)?;
            let mut items = Vec::new();
            for i in &images {
                let img = builder.images().resolve(i)?;
                let names = match Reference::parse(i) {
                    Ok(r) if !looks_like_id(i) => vec![r],
                    _ => Vec::new(),
                };
                items.push((img, names));
            }
            match format.as_str() {
                "docker" | "docker-archive" => {
                    let f =
                        std::fs::File::create(&output).map_err(|e| BuildError::io(&output, e))?;
                    let f =
                        rbuild_engine::image::export::docker_archive(builder.images(), &items, f)?;
                    f.sync_all().map_err(|e| BuildError::io(&output, e))?;
                }
                "oci" | "oci-archive" => {
                    rbuild_engine::image::export::oci_layout(
                        builder.images(),
                        &items,
                        &output,
                        true,
                        rbuild_engine::image::export::ExportCompression::Gzip,
                    )?;
                }
                other => {
                    return Err(BuildError::Request(format!(
                        "unknown --format {other:?}: use docker or oci"
                    )))
                }
            }
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
            let loaded = rbuild_engine::image::import::load(builder.images(), &input)?;
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

fn looks_like_id(s: &str) -> bool {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        return format!("{bytes}B");
    }
    // Three significant digits, as `docker images` shows sizes (4.28MB, 12.3kB, 145MB).
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let n = format!("{v:.digits$}");
    let n = if n.contains('.') {
        n.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        n
    };
    format!("{n}{}", UNITS[u])
}

fn parse_kv(what: &str, s: &str) -> Result<(String, String), BuildError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(BuildError::Request(format!(
            "invalid {what} {s:?}: expected KEY=VALUE"
        ))),
    }
}

fn parse_secret(s: &str) -> Result<SecretSource, BuildError> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for part in s.split(',') {
        let (k, v) = parse_kv("--secret", part)?;
        match k.as_str() {
            "id" => id = Some(v),
            "src" | "source" => src = Some(PathBuf::from(v)),
            "env" => env = Some(v),
            "type" => {}
            other => {
                return Err(BuildError::Request(format!(
                    "invalid --secret {s:?}: unknown key {other:?}"
                )))
            }
        }
    }
    let id =
        id.ok_or_else(|| BuildError::Request(format!("invalid --secret {s:?}: missing id=")))?;
    let source = match (src, env) {
        (Some(p), _) => SecretFrom::File(p),
        (None, Some(e)) => SecretFrom::Env(e),
        (None, None) => SecretFrom::Env(id.clone()),
    };
    Ok(SecretSource { id, source })
}

/// `type=local,src=DIR` (or `dest=` for `--cache-to`) as a directory; `None` for other cache
/// types (registry, gha, inline...), which rbuild does not read or write yet.
fn parse_cache_spec(flag: &str, spec: &str, dir_key: &str) -> Result<Option<PathBuf>, BuildError> {
    if !spec.contains('=') {
        return Ok(None); // `--cache-from user/app:cache`: a registry reference
    }
    let mut kind = None;
    let mut dir = None;
    for part in spec.split(',') {
        let (k, v) = parse_kv(flag, part)?;
        match k.as_str() {
            "type" => kind = Some(v),
            k if k == dir_key => dir = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    if kind.as_deref() != Some("local") {
        return Ok(None);
    }
    dir.map(Some).ok_or_else(|| {
        BuildError::Request(format!(
            "invalid {flag} {spec:?}: type=local needs {dir_key}=DIR"
        ))
    })
}

/// `--ssh default`, `--ssh id` (both the agent of `$SSH_AUTH_SOCK`) or `--ssh id=SOCKET`. Key
/// files, which BuildKit loads into an agent of its own, are refused with what to do instead.
fn parse_ssh(s: &str, auth_sock: Option<OsString>) -> Result<SshSource, BuildError> {
    let (id, path) = match s.split_once('=') {
        Some((id, path)) => (id, Some(PathBuf::from(path))),
        None => (s, None),
    };
    if id.is_empty() || path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(BuildError::Request(format!(
            "invalid --ssh {s:?}: expected default, ID or ID=SOCKET"
        )));
    }
    let socket = match path {
        Some(p) => p,
        None => PathBuf::from(auth_sock.ok_or_else(|| {
            BuildError::Request(format!(
                "--ssh {s}: SSH_AUTH_SOCK is not set (start an agent, or give ID=SOCKET)"
            ))
        })?),
    };
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(&socket) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => {
            return Err(BuildError::Request(format!(
                "--ssh {s}: {} is not an agent socket; key files are not supported, load the \
                 key into ssh-agent (ssh-add) and pass its socket",
                socket.display()
            )))
        }
        Err(e) => return Err(BuildError::io(&socket, e)),
    }
    Ok(SshSource {
        id: id.to_string(),
        socket,
    })
}

fn build(
    root: &Option<PathBuf>,
    insecure_registry: &[String],
    b: BuildArgs,
) -> Result<ExitCode, BuildError> {
    let mut build_args = BTreeMap::new();
    for a in &b.build_args {
        match a.split_once('=') {
            Some((k, v)) => {
                build_args.insert(k.to_string(), v.to_string());
            }
            None => {
                // docker: `--build-arg KEY` takes the value from the environment, if set.
                if let Ok(v) = std::env::var(a) {
                    build_args.insert(a.clone(), v);
                }
            }
        }
    }
    let mut labels = BTreeMap::new();
    for l in &b.labels {
        let (k, v) = parse_kv("--label", l)?;
        labels.insert(k, v);
    }
    let mut outputs = Vec::new();
    for o in &b.outputs {
        outputs.push(Output::parse(o)?);
    }
    let secrets = b
        .secrets
        .iter()
        .map(|s| parse_secret(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut cache_from = Vec::new();
    for spec in &b.cache_from {
        match parse_cache_spec("--cache-from", spec, "src")? {
            Some(dir) => cache_from.push(dir),
            None => eprintln!(
                "WARNING: --cache-from {spec}: only type=local,src=DIR is supported; skipped"
            ),
        }
    }
    let cache_to = b
        .cache_to
        .iter()
        .map(|spec| {
            parse_cache_spec("--cache-to", spec, "dest")?.ok_or_else(|| {
                BuildError::Request(format!(
                    "--cache-to {spec}: only type=local,dest=DIR is supported"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ssh = b
        .ssh
        .iter()
        .map(|s| parse_ssh(s, std::env::var_os("SSH_AUTH_SOCK")))
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
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(v.parse::<i64>().map_err(|_| {
            BuildError::Request(format!(
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
            ))
        })?),
        _ => None,
    };
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
    if let Some(p) = &b.iidfile {
        std::fs::write(p, out.image.id.to_string()).map_err(|e| BuildError::io(p, e))?;
    }
    if b.quiet {
        println!("{}", out.image.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// `--check`: parse, plan and lint without building, as `docker build --check`.
fn check(req: &BuildRequest) -> Result<ExitCode, BuildError> {
    let path = req
        .dockerfile
        .clone()
        .unwrap_or_else(|| req.context.join("Dockerfile"));
    let (name, text) = match &req.dockerfile_text {
        Some(t) => ("Dockerfile".to_string(), t.clone()),
        None => (
            path.display().to_string(),
            std::fs::read_to_string(&path).map_err(|source| BuildError::ReadDockerfile {
                path: path.clone(),
                source,
            })?,
        ),
    };
    let df = rbuild_engine::dockerfile::parse(&name, &text)?;
    let opts = rbuild_engine::dockerfile::PlanOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        build_platform: rbuild_engine::host_platform(),
        target_platform: match &req.platform {
            Some(p) => rbuild_engine::dockerfile::Platform::parse(p)
                .map_err(|e| BuildError::Request(format!("invalid --platform {p:?}: {e}")))?,
            None => rbuild_engine::host_platform(),
        },
    };
    rbuild_engine::dockerfile::plan(&df, &opts)?;
    let diags = rbuild_engine::dockerfile::check(&df, &opts);
    let mut out = std::io::stdout().lock();
    for d in &diags {
        let _ = writeln!(
            out,
            "WARNING: {} - {}:{}:{}: {}",
            d.rule, d.file_name, d.line, d.column, d.message
        );
    }
    if diags.is_empty() {
        let _ = writeln!(out, "Check complete, no warnings found.");
        Ok(ExitCode::SUCCESS)
    } else {
        let _ = writeln!(out, "Check complete, {} warning(s) found.", diags.len());
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn default_verb_is_build() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["rbuild", "-f", "D", "-t", "x:1", "."],
                &["rbuild", "build", "-f", "D", "-t", "x:1", "."],
            ),
            (&["rbuild", "."], &["rbuild", "build", "."]),
            (&["rbuild", "images"], &["rbuild", "images"]),
            (&["rbuild", "build", "."], &["rbuild", "build", "."]),
            (&["rbuild", "--help"], &["rbuild", "--help"]),
            (&["rbuild"], &["rbuild"]),
            (
                &["rbuild", "--root", "/s", "save", "x"],
                &["rbuild", "--root", "/s", "save", "x"],
            ),
            (
                &["rbuild", "--insecure-registry", "h:5000", "push", "x"],
                &["rbuild", "--insecure-registry", "h:5000", "push", "x"],
            ),
            (
                &["rbuild", "--root", "/s", "."],
                &["rbuild", "build", "--root", "/s", "."],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(insert_default_verb(v(input)), v(want), "{input:?}");
        }
    }

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(4_280_000), "4.28MB");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(human_size(145_000_000), "145MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn secrets_parse() {
        assert_eq!(
            parse_secret("id=a,src=/x").unwrap(),
            SecretSource {
                id: "a".into(),
                source: SecretFrom::File("/x".into())
            }
        );
        assert_eq!(
            parse_secret("id=tok").unwrap().source,
            SecretFrom::Env("tok".into())
        );
        assert!(parse_secret("src=/x").is_err());
        assert!(parse_secret("id=a,bogus=1").is_err());
    }
}
