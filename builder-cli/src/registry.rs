//! The registry verbs: `pull`, `push`, `login`, `logout`, and the `--insecure-registry` wiring
//! shared with `build`. Parsing only; the work is in `rbuild_engine::pull` and the `registry` crate.

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rbuild_engine::image::export::ExportCompression;
use rbuild_engine::image::reference::Reference;
use rbuild_engine::pull::{PushSettings, RegistryOptions};
use rbuild_engine::{BuildError, Builder, BuilderOptions};
use rbuild_registry::auth::{self, AuthSource, Credentials};

use crate::render::{Renderer, Style};

/// `rbuild pull IMAGE`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image to pull (name[:tag] or name@digest)
    pub image: String,
    /// Platform to pull from a multi-platform image (os/arch[/variant])
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image id
    #[arg(short, long)]
    pub quiet: bool,
}

/// `rbuild push IMAGE [DEST]`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Local image to push (name, name:tag or id)
    pub image: String,
    /// Where to push it (default: IMAGE's own reference)
    pub dest: Option<String>,
    /// Layer compression: gzip, zstd or uncompressed
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Print only the manifest digest
    #[arg(short, long)]
    pub quiet: bool,
}

/// `rbuild login [-u USER] [-p PASS | --password-stdin] [REGISTRY]`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host (default: docker.io)
    pub registry: Option<String>,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: command lines are visible to other users)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
}

/// `rbuild logout [REGISTRY]`.
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host (default: docker.io)
    pub registry: Option<String>,
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

fn registry_options(insecure: &[String]) -> RegistryOptions {
    RegistryOptions {
        insecure_registries: insecure.to_vec(),
        ..Default::default()
    }
}

/// The builder for any verb, with the global `--insecure-registry` hosts.
pub fn builder_with(root: &Option<PathBuf>, insecure: &[String]) -> Result<Builder, BuildError> {
    builder_isolated(root, insecure, Default::default())
}

/// [`builder_with`] whose RUN steps get the given isolation (`rbuild build --isolation`).
pub fn builder_isolated(
    root: &Option<PathBuf>,
    insecure: &[String],
    isolation: rbuild_engine::sandbox::Isolation,
) -> Result<Builder, BuildError> {
    let base = BuilderOptions::from_env();
    Builder::open(BuilderOptions {
        root: root.clone().unwrap_or(base.root),
        registry: registry_options(insecure),
        isolation,
    })
}

fn parse_compression(s: &str) -> Result<ExportCompression, BuildError> {
    match s {
        "gzip" => Ok(ExportCompression::Gzip),
        "zstd" => Ok(ExportCompression::Zstd),
        "uncompressed" | "none" => Ok(ExportCompression::None),
        other => Err(BuildError::Request(format!(
            "invalid --compression {other:?}: use gzip, zstd or uncompressed"
        ))),
    }
}

/// `rbuild pull`: fetches an image into the store and tags it, as `docker pull`.
pub fn pull(
    root: &Option<PathBuf>,
    insecure: &[String],
    a: PullArgs,
) -> Result<ExitCode, BuildError> {
    let builder = builder_with(root, insecure)?;
    let platform = match &a.platform {
        Some(p) => rbuild_engine::dockerfile::Platform::parse(p)
            .map_err(|e| BuildError::Request(format!("invalid --platform {p:?}: {e}")))?,
        None => rbuild_engine::host_platform(),
    };
    let style = if a.quiet { Style::Quiet } else { Style::Plain };
    let renderer = Renderer::new(style);
    let img = rbuild_engine::pull::pull_base(
        builder.images(),
        builder.registry_options(),
        &a.image,
        &platform,
        &renderer,
    )?;
    renderer.finish();
    if a.quiet {
        println!("{}", img.id);
    } else {
        let r = Reference::parse(&a.image)?;
        println!("{}", r);
    }
    Ok(ExitCode::SUCCESS)
}

/// `rbuild push`: uploads a local image, as `docker push` (with an optional new name).
pub fn push(
    root: &Option<PathBuf>,
    insecure: &[String],
    a: PushArgs,
) -> Result<ExitCode, BuildError> {
    let builder = builder_with(root, insecure)?;
    let img = builder.images().resolve(&a.image)?;
    let dest = Reference::parse(a.dest.as_deref().unwrap_or(&a.image))?;
    let settings = PushSettings {
        compression: parse_compression(&a.compression)?,
        ..Default::default()
    };
    let style = if a.quiet { Style::Quiet } else { Style::Plain };
    let renderer = Renderer::new(style);
    // A multi-platform tag pushes every platform and its index, as `docker buildx imagetools`.
    let index = match Reference::parse(&a.image) {
        Ok(r) => builder.images().index_of(&r)?,
        Err(_) => None,
    };
    let digest = match index {
        Some((_, index)) => {
            let imgs = index
                .manifests
                .iter()
                .map(|d| builder.images().load_manifest(&d.digest))
                .collect::<Result<Vec<_>, _>>()?;
            let pushed = rbuild_engine::pull::push_index(
                builder.images(),
                builder.registry_options(),
                &imgs,
                std::slice::from_ref(&dest),
                &settings,
                &renderer,
            )?;
            pushed[0]
        }
        None => rbuild_engine::pull::push_image(
            builder.images(),
            builder.registry_options().client()?,
            &img,
            &dest,
            &settings,
            &renderer,
        )?,
    };
    renderer.finish();
    if a.quiet {
        println!("{digest}");
    } else {
        println!("{}: digest: {digest}", dest.familiar());
    }
    Ok(ExitCode::SUCCESS)
}

fn docker_config_path() -> Result<PathBuf, BuildError> {
    AuthSource::from_env(&env).docker_config.ok_or_else(|| {
        BuildError::Request(
            "cannot find where to keep credentials: set DOCKER_CONFIG or HOME".into(),
        )
    })
}

fn registry_host(r: &Option<String>) -> String {
    let r = r.as_deref().unwrap_or("docker.io");
    auth::normalize_registry(r)
}

/// Why an interactive login cannot prompt, in the words docker uses, with the way out.
const NOT_A_TTY: &str = "cannot perform an interactive login from a non-TTY device: give \
     --username and the password with --password-stdin (e.g. `echo \"$TOKEN\" | rbuild login -u USER \
     --password-stdin REGISTRY`)";

/// `rbuild login`: checks the credentials against the registry, then saves them where docker and
/// podman-compatible tools read them. Missing values are prompted for on a terminal (the password
/// with echo off); the password is never printed.
pub fn login(insecure: &[String], a: LoginArgs) -> Result<ExitCode, BuildError> {
    let host = registry_host(&a.registry);
    let tty = std::io::stdin().is_terminal();
    let mut stdin = std::io::stdin().lock();
    if a.password.is_some() && a.password_stdin {
        return Err(BuildError::Request(
            "--password and --password-stdin are mutually exclusive".into(),
        ));
    }
    let username = match a.username {
        Some(u) => u,
        None if a.password_stdin => {
            return Err(BuildError::Request(
                "--password-stdin needs --username".into(),
            ))
        }
        None if !tty => return Err(BuildError::Request(NOT_A_TTY.into())),
        None => {
            eprint!("Username: ");
            let mut line = String::new();
            let n = stdin
                .read_line(&mut line)
                .map_err(|e| BuildError::io("<stdin>", e))?;
            if n == 0 {
                eprintln!();
            }
            line.trim().to_string()
        }
    };
    if username.is_empty() {
        return Err(BuildError::Request("a username is required".into()));
    }
    let password = match (a.password, a.password_stdin) {
        (Some(p), _) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            let mut s = String::new();
            stdin
                .read_to_string(&mut s)
                .map_err(|e| BuildError::io("<stdin>", e))?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if !tty => return Err(BuildError::Request(NOT_A_TTY.into())),
        (None, false) => {
            drop(stdin);
            let p = read_password("Password: ")?;
            stdin = std::io::stdin().lock();
            p
        }
    };
    drop(stdin);
    if password.is_empty() {
        return Err(BuildError::Request("a password is required".into()));
    }
    let creds = Credentials::new(username, password);
    let opts = registry_options(insecure);
    let client = opts.client()?;
    client
        .login_check(&host, &creds)
        .map_err(|e| BuildError::Request(format!("login to {host} failed: {e}")))?;
    let path = docker_config_path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, e))?;
    }
    auth::store_login(&host, &creds, &path)
        .map_err(|e| BuildError::Request(format!("cannot save credentials: {e}")))?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Puts the terminal's settings back when dropped, so echo returns however the prompt ends
/// (Enter, Ctrl-C, Ctrl-D, a read error or a panic).
struct RestoreTerminal {
    saved: rustix::termios::Termios,
}

impl Drop for RestoreTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// Prompts on stderr and reads a password from the terminal on stdin without echoing it.
///
/// The terminal is switched to non-canonical mode with echo and signals off, and the line is
/// edited here (Backspace, Ctrl-U), so Ctrl-C arrives as a byte: the prompt ends with an error and
/// the settings are restored, instead of the process dying with echo still off.
fn read_password(prompt: &str) -> Result<String, BuildError> {
    use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex};
    let tty_err = |e: rustix::io::Errno| BuildError::io("<stdin>", std::io::Error::from(e));
    let saved = termios::tcgetattr(std::io::stdin()).map_err(tty_err)?;
    let mut quiet = saved.clone();
    quiet
        .local_modes
        .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG);
    quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
    quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
    let restore = RestoreTerminal { saved };
    termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &quiet).map_err(tty_err)?;
    eprint!("{prompt}");
    let mut secret: Vec<u8> = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let outcome = loop {
        let mut byte = [0u8; 1];
        match stdin.read(&mut byte) {
            Ok(0) => break Err("end of input before the password was complete"),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                drop(restore);
                eprintln!();
                return Err(BuildError::io("<stdin>", e));
            }
        }
        match byte[0] {
            b'\n' | b'\r' => break Ok(()),
            // Ctrl-C
            0x03 => break Err("login interrupted"),
            // Ctrl-D on an empty line
            0x04 if secret.is_empty() => break Err("end of input before the password was typed"),
            // Backspace / Delete
            0x08 | 0x7f => {
                // Drop a whole UTF-8 character: continuation bytes, then the lead byte.
                while let Some(b) = secret.pop() {
                    if b & 0xc0 != 0x80 {
                        break;
                    }
                }
            }
            // Ctrl-U
            0x15 => secret.clear(),
            // Ctrl-D after some input, and other control bytes, are never part of a password.
            0x00..=0x1f => {}
            b => secret.push(b),
        }
    };
    drop(stdin);
    drop(restore);
    eprintln!();
    outcome.map_err(|m| BuildError::Request(m.into()))?;
    String::from_utf8(secret)
        .map_err(|_| BuildError::Request("the password is not valid UTF-8".into()))
}

/// `rbuild logout`: forgets the saved credentials for a registry.
pub fn logout(a: LogoutArgs) -> Result<ExitCode, BuildError> {
    let host = registry_host(&a.registry);
    let path = docker_config_path()?;
    let removed = auth::remove_login(&host, &path)
        .map_err(|e| BuildError::Request(format!("cannot update {}: {e}", path.display())))?;
    if removed {
        println!("Removing login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressions() {
        let cases = [
            ("gzip", Some(ExportCompression::Gzip)),
            ("zstd", Some(ExportCompression::Zstd)),
            ("uncompressed", Some(ExportCompression::None)),
            ("lz4", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_compression(s).ok(), want, "{s}");
        }
    }

    #[test]
    fn registry_defaults_to_docker_hub() {
        assert_eq!(registry_host(&None), "docker.io");
        assert_eq!(
            registry_host(&Some("127.0.0.1:5000".into())),
            "127.0.0.1:5000"
        );
    }
}
