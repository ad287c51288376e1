//! Deleting a tree a rootless step wrote: files it chowned to subordinate ids (and directories
//! it made unwritable) cannot be removed by the caller from outside the user namespace, so `rm`
//! runs as root of a user namespace with the same map, where it may touch every mapped inode.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{IdMapping, MapRange, Sandbox, SandboxError};

fn pipe() -> Result<(std::fs::File, std::fs::File), SandboxError> {
    let (r, w) = crate::run::pipe()?;
    Ok((std::fs::File::from(r), std::fs::File::from(w)))
}

/// `newuidmap PID c h n ...` / `newgidmap`, or a direct write for the single-id map.
fn write_maps(sb: &Sandbox, pid: i32) -> Result<(), SandboxError> {
    let Some(maps) = sb.id_map() else {
        return Ok(());
    };
    let direct = |which: &'static str, file: &str, data: String| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &data).map_err(|e| SandboxError::IdMap {
            which,
            detail: format!("write {data:?} to {path}: {e}"),
        })
    };
    let tool = |which: &'static str, tool: &Path, ranges: &[MapRange]| {
        let mut args = vec![pid.to_string()];
        for r in ranges {
            args.extend([r.container, r.host, r.size].map(|v| v.to_string()));
        }
        let out = Command::new(tool)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| SandboxError::IdMap {
                which,
                detail: format!("run {}: {e}", tool.display()),
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(SandboxError::IdMap {
            which,
            detail: format!(
                "{} {} exited with {}: {}",
                tool.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    };
    let line = |r: &[MapRange]| {
        r.iter()
            .map(|r| format!("{} {} {}\n", r.container, r.host, r.size))
            .collect::<String>()
    };
    match &sb.mapping {
        IdMapping::Ranges {
            newuidmap,
            newgidmap,
            ..
        } => {
            tool("uid", newuidmap, &maps.uids)?;
            tool("gid", newgidmap, &maps.gids)
        }
        _ => {
            direct("gid", "setgroups", "deny".into())?;
            direct("uid", "uid_map", line(&maps.uids))?;
            direct("gid", "gid_map", line(&maps.gids))
        }
    }
}

pub(crate) fn remove_tree(sb: &Sandbox, path: &Path) -> Result<(), SandboxError> {
    let gone = |p: &Path| matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == io::ErrorKind::NotFound);
    if gone(path) {
        return Ok(());
    }
    // SAFETY: geteuid cannot fail.
    if matches!(sb.mapping, IdMapping::Host) || unsafe { libc::geteuid() } == 0 {
        return std::fs::remove_dir_all(path)
            .map_err(|e| SandboxError::io(format!("remove {}", path.display()), e));
    }
    let what = format!("remove {} in the build's user namespace", path.display());
    run_tool(
        sb,
        "rm",
        &[
            "-rf".as_ref(),
            "--one-file-system".as_ref(),
            "--".as_ref(),
            path.as_os_str(),
        ],
        &what,
    )?;
    if !gone(path) {
        return Err(SandboxError::io(
            what,
            io::Error::other("it is still there"),
        ));
    }
    Ok(())
}

/// Runs `tool ARGS` (found in /usr/bin, /bin or PATH) with the privileges steps have over their
/// files: directly when the caller is root (real, or of the namespace it entered), else as root
/// of a user namespace with this sandbox's map. `what` names the operation in errors.
pub(crate) fn run_tool(
    sb: &Sandbox,
    tool: &str,
    args: &[&OsStr],
    what: &str,
) -> Result<(), SandboxError> {
    let path = crate::subid::find_tool(tool).ok_or_else(|| {
        SandboxError::io(
            what.to_string(),
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no {tool} in /usr/bin, /bin or PATH"),
            ),
        )
    })?;
    let mut cmd = Command::new(&path);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: geteuid cannot fail.
    let child = if matches!(sb.mapping, IdMapping::Host) || unsafe { libc::geteuid() } == 0 {
        cmd.spawn()
            .map_err(|e| SandboxError::io(format!("{what}: start {}", path.display()), e))?
    } else {
        spawn_in_namespace(sb, cmd, &path, what)?
    };
    let out = child
        .wait_with_output()
        .map_err(|e| SandboxError::io(format!("{what}: wait for {}", path.display()), e))?;
    if !out.status.success() {
        return Err(SandboxError::io(
            what.to_string(),
            io::Error::other(format!(
                "{tool} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        ));
    }
    Ok(())
}

/// Starts `cmd` as root of a new user namespace mapped like the steps' ones.
fn spawn_in_namespace(
    sb: &Sandbox,
    mut cmd: Command,
    tool: &Path,
    what: &str,
) -> Result<std::process::Child, SandboxError> {
    let (mut pid_r, pid_w) = pipe()?;
    let (go_r, mut go_w) = pipe()?;
    let (pid_wfd, go_rfd, go_wfd) = (pid_w.as_raw_fd(), go_r.as_raw_fd(), go_w.as_raw_fd());
    // SAFETY: the closure only makes async-signal-safe raw syscalls (unshare, getpid, write,
    // close, read) on fds that stay open until the command is dropped, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Our own copy of the write end would keep the read below from ever seeing EOF.
            libc::close(go_wfd);
            let pid = libc::getpid().to_ne_bytes();
            if libc::write(pid_wfd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                return Err(io::Error::last_os_error());
            }
            let mut b = 0u8;
            if libc::read(go_rfd, (&mut b as *mut u8).cast(), 1) != 1 {
                return Err(io::Error::from_raw_os_error(libc::ECANCELED));
            }
            Ok(())
        });
    }
    // spawn() blocks until exec, which waits for the maps: spawn on another thread.
    let spawner = std::thread::spawn(move || {
        let child = cmd.spawn();
        drop(cmd);
        drop((pid_w, go_r));
        child
    });
    let mut buf = [0u8; 4];
    let mapped = match pid_r.read_exact(&mut buf) {
        Ok(()) => write_maps(sb, i32::from_ne_bytes(buf)),
        Err(e) => Err(SandboxError::io(
            format!("{what}: read the helper's pid"),
            e,
        )),
    };
    if mapped.is_ok() {
        // A failed write means the child is already gone; spawn's result says why.
        let _ = go_w.write_all(b"g");
    }
    drop(go_w);
    let child = spawner
        .join()
        .map_err(|_| {
            SandboxError::io(
                what.to_string(),
                io::Error::other("spawning thread panicked"),
            )
        })?
        .map_err(|e| {
            SandboxError::io(
                format!("{what}: start {} in a user namespace", tool.display()),
                e,
            )
        });
    mapped?;
    child
}
