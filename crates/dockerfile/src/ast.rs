//! Typed Dockerfile syntax tree.

use std::time::Duration;

use crate::error::{Diagnostic, Span};

/// A parsed Dockerfile: the unit the planner and the engine work from.
#[derive(Clone, Debug, PartialEq)]
pub struct Dockerfile {
    /// Name used in error messages (usually `Dockerfile`).
    pub file_name: String,
    /// Parser directives found at the top of the file.
    pub directives: Directives,
    /// The escape character in effect (`\` unless `# escape=` changed it); the
    /// word expander needs it.
    pub escape: char,
    /// Instructions in file order, stage boundaries included (`FROM`).
    pub instructions: Vec<Instruction>,
    /// Syntax-level findings (e.g. `NoEmptyContinuation`) noticed while parsing.
    pub warnings: Vec<Diagnostic>,
    /// The source text, kept so later passes (plan, scope, check) can locate errors.
    pub source: String,
}

/// Parser directives (`# syntax=`, `# escape=`, `# check=`), which change how the
/// rest of the file is read or checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    /// Frontend image requested by `# syntax=`; recorded, not acted upon.
    pub syntax: Option<String>,
    /// Escape character requested by `# escape=`.
    pub escape: Option<char>,
    /// Raw value of `# check=` (e.g. `skip=JSONArgsRecommended;error=true`).
    pub check: Option<String>,
}

/// One instruction with where it came from, so errors found later can point at it.
#[derive(Clone, Debug, PartialEq)]
pub struct Instruction {
    /// What the instruction does, with typed arguments.
    pub kind: InstructionKind,
    /// Bytes of the source covered, continuation lines and heredoc bodies included.
    pub span: Span,
    /// 1-based line of the instruction keyword.
    pub line: usize,
    /// Instruction text as written with continuations joined, e.g. `COPY a b`;
    /// used for history entries and cache keys.
    pub original: String,
}

/// The 18 Dockerfile instructions with their typed arguments.
///
/// Values are as written (quotes kept where Docker keeps them until dispatch);
/// [`crate::Scope::expand`] performs variable expansion and quote removal where
/// Docker does.
#[derive(Clone, Debug, PartialEq)]
pub enum InstructionKind {
    /// `FROM`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `SHELL` (JSON form only).
    Shell(Vec<String>),
    /// `ENV` key/value pairs.
    Env(Vec<KeyValue>),
    /// `ARG` declarations.
    Arg(Vec<ArgDecl>),
    /// `LABEL` key/value pairs.
    Label(Vec<KeyValue>),
    /// `MAINTAINER` (deprecated).
    Maintainer(String),
    /// `EXPOSE` port specs.
    Expose(Vec<String>),
    /// `VOLUME` paths.
    Volume(Vec<String>),
    /// `USER`.
    User(String),
    /// `WORKDIR`.
    Workdir(String),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`, typed so the image config can be written without re-parsing.
    Healthcheck(Healthcheck),
    /// `ONBUILD` trigger (never `ONBUILD`, `FROM` or `MAINTAINER`).
    Onbuild(Box<Instruction>),
    /// `COPY`.
    Copy(Copy),
    /// `ADD`.
    Add(Add),
}

impl InstructionKind {
    /// Upper-case keyword, for messages and history entries.
    pub fn keyword(&self) -> &'static str {
        match self {
            InstructionKind::From(_) => "FROM",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
            InstructionKind::Onbuild(_) => "ONBUILD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Add(_) => "ADD",
        }
    }
}

/// The two ways a command can be written; they run differently (through the
/// shell or directly), so the engine must know which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Shell form: one string run via `SHELL` (default `/bin/sh -c`).
    Shell(String),
    /// Exec (JSON array) form: argv as given.
    Exec(Vec<String>),
}

/// A here-document attached to RUN/COPY/ADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// Delimiter word with quotes removed (also the file name for COPY/ADD).
    pub name: String,
    /// Body exactly as written, each line ending in `\n`, tabs not yet stripped.
    pub content: String,
    /// Whether variables in the body are expanded (delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines and the terminator.
    pub chomp_tabs: bool,
    /// File descriptor prefix as in `3<<EOF`; `None` means stdin.
    pub file_descriptor: Option<u32>,
}

impl Heredoc {
    /// The body as the command/file should receive it: leading tabs removed
    /// from every line when written with `<<-`.
    pub fn body(&self) -> String {
        if !self.chomp_tabs {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// `FROM [--platform=P] IMAGE [AS NAME]`: starts a stage; kept unexpanded
/// because global ARGs are only known at planning time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct From {
    /// Base image or stage name, unexpanded.
    pub image: String,
    /// `--platform` value, unexpanded.
    pub platform: Option<String>,
    /// Stage name as written after `AS` (the planner lower-cases it).
    pub alias: Option<String>,
}

/// `RUN` with its flags, so the engine knows the command, its inline files
/// and the sandbox (mounts, network, security) it must run in.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The command (shell form keeps heredoc markers such as `python3 <<EOF`).
    pub command: Command,
    /// Heredocs referenced on the command line, in order.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` flags in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
}

/// `RUN --network` values; typed so the engine cannot receive a typo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    /// The builder's default network.
    Default,
    /// No network access.
    None,
    /// The host's network namespace.
    Host,
}

/// `RUN --security` values; typed so an unsupported mode fails at parse time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    /// Default sandbox.
    Sandbox,
    /// Privileged (needs `security.insecure` entitlement).
    Insecure,
}

/// `--mount=type=cache,sharing=...`; decides how concurrent builds share a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSharing {
    /// Concurrent writers share the cache (default).
    Shared,
    /// A new cache is created for concurrent writers.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// A `RUN --mount` flag, one variant per mount type with its documented options.
///
/// String options are as written; [`crate::Scope::expand`] expands them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mount {
    /// `type=bind` (default): files from the context or another stage/image.
    Bind {
        /// `target`/`dst`/`destination` (required).
        target: String,
        /// `source`/`src`: path in `from` (default its root).
        source: Option<String>,
        /// `from`: stage or image (default the build context).
        from: Option<String>,
        /// `rw`/`readwrite`: writes allowed (discarded after the RUN).
        read_write: bool,
    },
    /// `type=cache`: persistent cache directory.
    Cache {
        /// `target` (required).
        target: String,
        /// `id` (default: the target).
        id: Option<String>,
        /// `ro`/`readonly`.
        read_only: bool,
        /// `sharing`.
        sharing: CacheSharing,
        /// `from`: stage/image seeding the cache.
        from: Option<String>,
        /// `source`: subpath in `from`.
        source: Option<String>,
        /// `mode` (octal, default 0755).
        mode: Option<u32>,
        /// `uid` (default 0).
        uid: Option<u32>,
        /// `gid` (default 0).
        gid: Option<u32>,
    },
    /// `type=tmpfs`.
    Tmpfs {
        /// `target` (required).
        target: String,
        /// `size` in bytes.
        size: Option<u64>,
    },
    /// `type=secret`.
    Secret {
        /// `id` (default: base name of target).
        id: Option<String>,
        /// `target` (default `/run/secrets/<id>`).
        target: Option<String>,
        /// `env`: expose as this environment variable instead of / besides a file.
        env: Option<String>,
        /// `required`: fail when the secret is not provided.
        required: bool,
        /// `mode` (octal, default 0400).
        mode: Option<u32>,
        /// `uid` (default 0).
        uid: Option<u32>,
        /// `gid` (default 0).
        gid: Option<u32>,
    },
    /// `type=ssh`.
    Ssh {
        /// `id` (default `default`).
        id: Option<String>,
        /// `target` (default `/run/buildkit/ssh_agent.N`).
        target: Option<String>,
        /// `required`.
        required: bool,
        /// `mode` (octal, default 0600).
        mode: Option<u32>,
        /// `uid`.
        uid: Option<u32>,
        /// `gid`.
        gid: Option<u32>,
    },
}

impl Mount {
    /// The stage/image this mount reads from, for dependency planning.
    pub fn from(&self) -> Option<&str> {
        match self {
            Mount::Bind { from, .. } | Mount::Cache { from, .. } => from.as_deref(),
            _ => None,
        }
    }
}

/// `COPY` (and the shared part of `ADD`): everything the engine needs to
/// select, filter and place files.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Copy {
    /// Source paths/URLs (heredoc sources are in `heredocs` instead).
    pub sources: Vec<String>,
    /// Destination.
    pub dest: String,
    /// Inline file sources (`COPY <<EOF /dest`); each becomes a file named after it.
    pub heredocs: Vec<Heredoc>,
    /// `--from` (always `None` for ADD).
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// `ADD`: COPY plus the remote/archive options only ADD has, kept apart so
/// COPY cannot be given them by mistake.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Add {
    /// The COPY-like part; `copy.from` is always `None`.
    pub copy: Copy,
    /// `--checksum` for remote sources.
    pub checksum: Option<String>,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--unpack` (`None`: default behaviour, unpack local archives only).
    pub unpack: Option<bool>,
}

/// `KEY=VALUE` in ENV and LABEL; order matters (later keys override), hence a list of pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// Key as written.
    pub key: String,
    /// Value as written (quotes kept until expansion).
    pub value: String,
}

/// One name in an `ARG` instruction; the default is optional because a bare
/// `ARG NAME` re-imports a global or build arg.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgDecl {
    /// Argument name.
    pub name: String,
    /// Default value, when given with `=`.
    pub default: Option<String>,
}

/// `HEALTHCHECK`, typed so the image config can be written without re-parsing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [OPTIONS] CMD command`.
    Check {
        /// Probe command.
        command: Command,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}
