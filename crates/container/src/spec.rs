//! `docker run`'s options and the image config turned into what the container runs, as docker
//! applies them: Entrypoint + Cmd (a `--entrypoint` drops the image's Cmd), the image's Env
//! then `--env-file` then `-e`, WorkingDir, User and StopSignal, each overridable.

use std::path::{Path, PathBuf};

use rbuild_image::LocalImage;

use crate::record::{Host, Mount, Process};
use crate::ContainerError;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `docker run`/`create` options, as typed (parsing and checks happen in [`crate::Containers::create`]).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `--name`.
    pub name: Option<String>,
    /// `COMMAND [ARG...]` (replaces the image's Cmd).
    pub cmd: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's).
    pub entrypoint: Option<String>,
    /// `-e KEY=value` or `-e KEY` (taken from the caller's environment when set there).
    pub env: Vec<String>,
    /// `--env-file`.
    pub env_files: Vec<PathBuf>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]`.
    pub user: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub stdin_open: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--init`: an init (the host's static tini, as docker's docker-init) runs as PID 1, reaps
    /// zombies and forwards signals to the command.
    pub init: bool,
    /// `-v HOST:CONTAINER[:ro|rw]`.
    pub volumes: Vec<String>,
    /// `--mount type=bind|tmpfs,...`.
    pub mounts: Vec<String>,
    /// `--network host|none`.
    pub network: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--add-host NAME:ADDR`.
    pub add_hosts: Vec<String>,
    /// `--shm-size` in bytes.
    pub shm_size: Option<u64>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--device`.
    pub devices: Vec<String>,
    /// `--gpus`.
    pub gpus: Option<String>,
    /// Where CDI specs are read (empty: /etc/cdi then /var/run/cdi).
    pub cdi_spec_dirs: Vec<std::path::PathBuf>,
}

/// Sets `KEY=value` (or `KEY` from the caller's environment; unset there: removed) in `env`.
pub(crate) fn set_env(env: &mut Vec<String>, entry: &str) {
    let (key, value) = match entry.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (entry.to_string(), std::env::var(entry).ok()),
    };
    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
    if let Some(v) = value {
        env.push(format!("{key}={v}"));
    }
}

fn read_env_file(path: &Path) -> Result<Vec<String>, ContainerError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ContainerError::io("read env file", path, e))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn absolute(what: &str, p: &str) -> Result<String, ContainerError> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(ContainerError::Invalid(format!(
            "invalid {what} {p:?}: it must be an absolute path without '..'"
        )));
    }
    Ok(p.to_string())
}

fn bind(source: &str, target: &str, readonly: bool) -> Result<Mount, ContainerError> {
    if !source.starts_with('/') {
        return Err(ContainerError::Invalid(format!(
            "invalid volume source {source:?}: named volumes are not supported, give an \
             absolute host path"
        )));
    }
    let src = PathBuf::from(source);
    if let Err(e) = std::fs::metadata(&src) {
        return Err(ContainerError::io(
            "invalid mount config: bind source path does not exist:",
            src,
            e,
        ));
    }
    Ok(Mount::Bind {
        source: src,
        target: absolute("volume target", target)?,
        readonly,
    })
}

fn parse_volume(v: &str) -> Result<Mount, ContainerError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => {
            return Err(ContainerError::Invalid(format!(
                "invalid volume specification {v:?}: use HOST:CONTAINER[:ro]"
            )))
        }
    };
    let mut readonly = false;
    for m in mode.split(',').filter(|m| !m.is_empty()) {
        match m {
            "ro" => readonly = true,
            "rw" | "z" | "Z" | "rprivate" | "private" => {}
            other => {
                return Err(ContainerError::Invalid(format!(
                    "invalid mode {other:?} in volume {v:?}"
                )))
            }
        }
    }
    bind(src, dst, readonly)
}

fn parse_mount(m: &str) -> Result<Mount, ContainerError> {
    let mut kind = "volume";
    let (mut src, mut dst, mut ro, mut size) = (None, None, false, None);
    for field in m.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => kind = v,
            "source" | "src" => src = Some(v),
            "target" | "destination" | "dst" => dst = Some(v),
            "readonly" | "ro" => ro = v.is_empty() || v == "true" || v == "1",
            "tmpfs-size" => {
                size = Some(parse_size(v).ok_or_else(|| {
                    ContainerError::Invalid(format!("invalid tmpfs-size {v:?} in --mount {m:?}"))
                })?)
            }
            "bind-propagation" | "tmpfs-mode" | "consistency" => {}
            other => {
                return Err(ContainerError::Invalid(format!(
                    "unexpected key {other:?} in --mount {m:?}"
                )))
            }
        }
    }
    let dst =
        dst.ok_or_else(|| ContainerError::Invalid(format!("--mount {m:?}: target is required")))?;
    match kind {
        "bind" => bind(
            src.ok_or_else(|| {
                ContainerError::Invalid(format!("--mount {m:?}: source is required"))
            })?,
            dst,
            ro,
        ),
        "tmpfs" => Ok(Mount::Tmpfs {
            target: absolute("tmpfs target", dst)?,
            size,
        }),
        other => Err(ContainerError::Invalid(format!(
            "--mount type={other} is not supported: use bind or tmpfs"
        ))),
    }
}

/// `64m`, `1g`, `512k`, `100` (bytes), as docker's size flags.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn parse_ulimit(u: &str) -> Result<(i32, u64, u64), ContainerError> {
    let bad = || ContainerError::Invalid(format!("invalid ulimit {u:?}: use NAME=SOFT[:HARD]"));
    let (name, vals) = u.split_once('=').ok_or_else(bad)?;
    let res = match name {
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        _ => {
            return Err(ContainerError::Invalid(format!(
                "invalid ulimit type: {name}"
            )))
        }
    } as i32;
    let num = |s: &str| -> Result<u64, ContainerError> {
        if s == "-1" || s == "unlimited" {
            Ok(libc::RLIM_INFINITY)
        } else {
            s.parse().map_err(|_| bad())
        }
    };
    let (soft, hard) = match vals.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(vals)?, num(vals)?),
    };
    if soft > hard {
        return Err(ContainerError::Invalid(format!(
            "ulimit {u:?}: soft limit must not exceed the hard limit"
        )));
    }
    Ok((res, soft, hard))
}

/// Shell-form splitting is docker's job for `--entrypoint`: it is one word (no splitting).
pub(crate) fn resolve(
    image: &LocalImage,
    opts: &CreateOptions,
    id: &str,
) -> Result<(Process, Host), ContainerError> {
    // Resolved now so an unknown device fails before anything is written; the monitor
    // resolves again at each start, since specs (driver versions) change between starts.
    resolve_devices(&opts.gpus, &opts.devices, &opts.cdi_spec_dirs)?;
    let cfg = &image.config.config;
    let mut args: Vec<String> = match &opts.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => cfg.entrypoint.clone().unwrap_or_default(),
    };
    if !opts.cmd.is_empty() {
        args.extend(opts.cmd.iter().cloned());
    } else if opts.entrypoint.is_none() {
        args.extend(cfg.cmd.clone().unwrap_or_default());
    }
    if args.is_empty() {
        return Err(ContainerError::Invalid(
            "no command specified: the image has no CMD or ENTRYPOINT and none was given".into(),
        ));
    }
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| id.get(..12).unwrap_or(id).to_string());
    let mut env: Vec<String> = cfg.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.into());
    }
    set_env(&mut env, &format!("HOSTNAME={hostname}"));
    if opts.tty {
        set_env(&mut env, "TERM=xterm");
    }
    for f in &opts.env_files {
        for e in read_env_file(f)? {
            set_env(&mut env, &e);
        }
    }
    for e in &opts.env {
        if e.is_empty() || e.starts_with('=') {
            return Err(ContainerError::Invalid(format!(
                "invalid environment variable: {e:?}"
            )));
        }
        set_env(&mut env, e);
    }
    let cwd = match opts.workdir.as_deref().or(cfg.working_dir.as_deref()) {
        None | Some("") => "/".to_string(),
        Some(w) => absolute("working directory", w)?,
    };
    let mut mounts = Vec::new();
    if opts.init {
        // Docker binds its static tini at the same path; a static binary runs in any rootfs.
        let init = find_init().ok_or_else(|| {
            ContainerError::Invalid(format!(
                "--init needs a static init on this host ({}): apt-get install tini",
                INIT_CANDIDATES.join(", ")
            ))
        })?;
        mounts.push(Mount::Bind {
            source: init,
            target: INIT_PATH.into(),
            readonly: true,
        });
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }
    for v in &opts.volumes {
        mounts.push(parse_volume(v)?);
    }
    for m in &opts.mounts {
        mounts.push(parse_mount(m)?);
    }
    let network = match opts.network.as_deref() {
        None | Some("host") | Some("default") => "host",
        Some("none") => "none",
        Some(other) => {
            return Err(ContainerError::Invalid(format!(
                "network {other:?} is not supported: use host or none"
            )))
        }
    };
    let mut extra_hosts = Vec::new();
    for h in &opts.add_hosts {
        let (name, addr) = h.split_once(':').ok_or_else(|| {
            ContainerError::Invalid(format!("invalid --add-host {h:?}: use NAME:ADDRESS"))
        })?;
        let addr = if addr == "host-gateway" {
            "127.0.0.1"
        } else {
            addr
        };
        if name.is_empty() || addr.parse::<std::net::IpAddr>().is_err() {
            return Err(ContainerError::Invalid(format!(
                "invalid --add-host {h:?}: {addr:?} is not an IP address"
            )));
        }
        extra_hosts.push((name.to_string(), addr.to_string()));
    }
    let ulimits = opts
        .ulimits
        .iter()
        .map(|u| parse_ulimit(u))
        .collect::<Result<Vec<_>, _>>()?;
    let user = opts
        .user
        .clone()
        .or_else(|| cfg.user.clone())
        .unwrap_or_default();
    Ok((
        Process {
            args,
            env,
            cwd,
            user,
            tty: opts.tty,
            stdin_open: opts.stdin_open,
        },
        Host {
            hostname,
            network: network.into(),
            extra_hosts,
            mounts,
            shm_size: opts.shm_size,
            ulimits,
            auto_remove: opts.auto_remove,
            devices: opts.devices.clone(),
            gpus: opts.gpus.clone(),
            cdi_spec_dirs: opts.cdi_spec_dirs.clone(),
            stop_signal: cfg.stop_signal.clone(),
        },
    ))
}

/// `rel` (e.g. `etc/passwd`) as the container sees it: its upper directory, then the image's
/// layers, top first; a whiteout hides it.
fn merged_file(upper: &Path, lowers: &[PathBuf], rel: &str) -> Option<Vec<u8>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for l in std::iter::once(upper).chain(lowers.iter().map(PathBuf::as_path)) {
        let p = l.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_char_device() && m.rdev() == 0 => return None,
            Ok(m) if m.is_file() => return std::fs::read(&p).ok(),
            _ => continue,
        }
    }
    None
}

/// Resolves a `USER[:GROUP]` (names through the container's passwd and group) to ids, groups
/// and the home directory; empty means root.
pub(crate) fn resolve_user(
    upper: &Path,
    lowers: &[PathBuf],
    user: &str,
) -> Result<(u32, u32, Vec<u32>, String), ContainerError> {
    let dir = tempfile_dir()?;
    let etc = dir.join("etc");
    let res = (|| {
        std::fs::create_dir_all(&etc).map_err(|e| ContainerError::io("create", &etc, e))?;
        for f in ["etc/passwd", "etc/group"] {
            if let Some(bytes) = merged_file(upper, lowers, f) {
                let p = dir.join(f);
                std::fs::write(&p, bytes).map_err(|e| ContainerError::io("write", &p, e))?;
            }
        }
        let spec = if user.is_empty() { "0" } else { user };
        let u = rbuild_context::passwd::resolve_user(&dir, spec)?;
        Ok((u.uid, u.gid, u.additional_gids, u.home))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    res
}

fn tempfile_dir() -> Result<PathBuf, ContainerError> {
    let base = std::env::temp_dir();
    for i in 0..1000u32 {
        let p = base.join(format!("rbuild-user-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ContainerError::io("create", &p, e)),
        }
    }
    Err(ContainerError::Invalid(
        "no free temporary directory".into(),
    ))
}

/// The container's `--gpus`/`--device` requests resolved through CDI (host nodes for `/dev`
/// paths), as the sandbox applies them.
pub(crate) fn resolve_devices(
    gpus: &Option<String>,
    devices: &[String],
    spec_dirs: &[std::path::PathBuf],
) -> Result<rbuild_cdi::Resolved, ContainerError> {
    let gpus: Vec<String> = gpus.iter().cloned().collect();
    rbuild_cdi::resolve_flags(&gpus, devices, spec_dirs).map_err(ContainerError::Device)
}

/// Where `--init` puts the init in the container (docker's path).
const INIT_PATH: &str = "/sbin/docker-init";

/// Static inits `--init` can bind: Debian's tini package, docker's own.
const INIT_CANDIDATES: [&str; 3] = [
    "/usr/bin/tini-static",
    "/usr/sbin/docker-init",
    "/usr/libexec/docker/docker-init",
];

fn find_init() -> Option<std::path::PathBuf> {
    INIT_CANDIDATES
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_sizes() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        set_env(&mut env, "A=2");
        set_env(&mut env, "B=x=y");
        assert_eq!(env, ["PATH=/bin", "A=2", "B=x=y"]);
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
        assert_eq!(
            parse_ulimit("nofile=1024:2048").unwrap(),
            (libc::RLIMIT_NOFILE as i32, 1024, 2048)
        );
        assert!(parse_ulimit("nofile=9:1").is_err());
        assert!(parse_volume("rel:/x").is_err());
        assert!(parse_volume("/definitely/not/here:/x").is_err());
        assert!(matches!(
            parse_volume("/tmp:/x:ro").unwrap(),
            Mount::Bind { readonly: true, .. }
        ));
        assert!(matches!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap(),
            Mount::Tmpfs {
                size: Some(1048576),
                ..
            }
        ));
    }
}
