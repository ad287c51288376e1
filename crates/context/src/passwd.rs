//! `/etc/passwd` and `/etc/group` of a stage rootfs, read safely inside that
//! root, to turn `--chown` and `USER` values into numeric ids.
//!
//! Resolution rules follow BuildKit: `--chown=name` takes the uid and the
//! primary gid from passwd; `--chown=1000` uses 1000 for both; an explicit
//! group (name or number) overrides the gid.

use std::io;
use std::path::Path;

use crate::resolve::{resolve, OnEscape, ResolveError};
use crate::ContextError;

/// One passwd line, kept whole because `USER` needs the home directory and
/// tools may want the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (for `$HOME` of RUN steps).
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// Ids a `USER` instruction runs with, as a container runtime computes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// Numeric user id.
    pub uid: u32,
    /// Numeric primary group id.
    pub gid: u32,
    /// Supplementary groups from /etc/group (empty when a group was given).
    pub additional_gids: Vec<u32>,
    /// Home directory from passwd, `/` when unknown.
    pub home: String,
}

/// Reads a file inside `root`, following symlinks as a chroot would;
/// `Ok(None)` when it does not exist.
fn read_in_root(root: &Path, file: &str) -> Result<Option<String>, ContextError> {
    let rel = match resolve(root, Path::new(file), true, OnEscape::Clamp) {
        Ok(rel) => rel,
        Err(ResolveError::Io(e)) => {
            return Err(ContextError::Io {
                path: root.join(file.trim_start_matches('/')),
                source: e,
            })
        }
        Err(_) => {
            return Err(ContextError::Io {
                path: root.join(file.trim_start_matches('/')),
                source: io::Error::other("too many levels of symbolic links"),
            })
        }
    };
    let host = root.join(&rel);
    match std::fs::read(&host) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
        {
            Ok(None)
        }
        Err(e) => Err(ContextError::Io {
            path: host,
            source: e,
        }),
    }
}

fn parse_users(text: &str) -> impl Iterator<Item = UserEntry> + '_ {
    text.lines().filter_map(|line| {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?.to_string();
        let _password = f.next();
        let uid = f.next()?.trim().parse().ok()?;
        let gid = f.next()?.trim().parse().ok()?;
        let _gecos = f.next();
        let home = f.next().unwrap_or("").to_string();
        let shell = f.next().unwrap_or("").to_string();
        Some(UserEntry {
            name,
            uid,
            gid,
            home,
            shell,
        })
    })
}

/// (name, gid, members)
fn parse_groups(text: &str) -> impl Iterator<Item = (String, u32, Vec<String>)> + '_ {
    text.lines().filter_map(|line| {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut f = line.split(':');
        let name = f.next()?.to_string();
        let _password = f.next();
        let gid = f.next()?.trim().parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
        Some((name, gid, members))
    })
}

/// Finds a user by name in the root's /etc/passwd (None if the file or the
/// user is missing).
pub fn lookup_user(root: &Path, user: &str) -> Result<Option<UserEntry>, ContextError> {
    let Some(text) = read_in_root(root, "/etc/passwd")? else {
        return Ok(None);
    };
    let found = parse_users(&text).find(|u| u.name == user);
    Ok(found)
}

/// Finds a user by numeric id, so a numeric `USER` can still get a home
/// directory and supplementary groups.
pub fn lookup_uid(root: &Path, uid: u32) -> Result<Option<UserEntry>, ContextError> {
    let Some(text) = read_in_root(root, "/etc/passwd")? else {
        return Ok(None);
    };
    let found = parse_users(&text).find(|u| u.uid == uid);
    Ok(found)
}

/// The home directory of the first passwd entry with `uid` in passwd text
/// (`None` when there is none or it is empty), as runc picks `HOME`.
pub fn home_of_uid(passwd: &str, uid: u32) -> Option<String> {
    parse_users(passwd)
        .find(|u| u.uid == uid)
        .map(|u| u.home)
        .filter(|h| !h.is_empty())
}

/// Finds a group id by name in the root's /etc/group.
pub fn lookup_group(root: &Path, group: &str) -> Result<Option<u32>, ContextError> {
    let Some(text) = read_in_root(root, "/etc/group")? else {
        return Ok(None);
    };
    let found = parse_groups(&text)
        .find(|(n, _, _)| n == group)
        .map(|(_, g, _)| g);
    Ok(found)
}

/// Turns a `--chown` value ("user", "user:group", "uid:gid", "uid") into
/// ids as BuildKit does; unknown names are errors naming them.
///
/// `root` and numbers need no passwd or group file (BuildKit maps them before
/// it looks at the image), so `WORKDIR` and `COPY --chown` work in images made
/// without one; a name that needs a file the image lacks fails as docker's does,
/// naming that file.
pub fn resolve_chown(root: &Path, spec: &str) -> Result<(u32, u32), ContextError> {
    let bad = |reason: &str| ContextError::InvalidChown {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(bad("missing user"));
    }
    let (uid, mut gid) = match numeric_id(user) {
        Some(uid) => (uid, uid),
        None => {
            let Some(text) = read_in_root(root, "/etc/passwd")? else {
                return Err(ContextError::NoIdFile {
                    name: user.to_string(),
                    file: "/etc/passwd",
                });
            };
            let found = parse_users(&text).find(|u| u.name == user);
            match found {
                Some(entry) => (entry.uid, entry.gid),
                None => {
                    return Err(ContextError::UnknownUser {
                        user: user.to_string(),
                    })
                }
            }
        }
    };
    if let Some(group) = group {
        if group.is_empty() {
            return Err(bad("missing group after ':'"));
        }
        gid = match numeric_id(group) {
            Some(g) => g,
            None => {
                let Some(text) = read_in_root(root, "/etc/group")? else {
                    return Err(ContextError::NoIdFile {
                        name: group.to_string(),
                        file: "/etc/group",
                    });
                };
                let found = parse_groups(&text)
                    .find(|(n, _, _)| n == group)
                    .map(|(_, g, _)| g);
                found.ok_or_else(|| ContextError::UnknownGroup {
                    group: group.to_string(),
                })?
            }
        };
    }
    Ok((uid, gid))
}

/// A number, or `root`, which BuildKit's LLB maps to 0 without reading any file.
fn numeric_id(s: &str) -> Option<u32> {
    if s == "root" {
        return Some(0);
    }
    s.parse().ok()
}

/// Groups listing `user` as a member, which a RUN step as that user gets as
/// supplementary groups.
pub fn supplementary_groups(root: &Path, user: &str) -> Result<Vec<u32>, ContextError> {
    let Some(text) = read_in_root(root, "/etc/group")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (_, gid, members) in parse_groups(&text) {
        if members.iter().any(|m| m == user) && !out.contains(&gid) {
            out.push(gid);
        }
    }
    Ok(out)
}

/// Resolves a `USER` value ("name", "uid", "name:group", "uid:gid") the way
/// runc does at container start: a name must exist in passwd, a numeric uid
/// need not (gid then defaults to 0); with no explicit group the user's
/// supplementary groups are added.
pub fn resolve_user(root: &Path, spec: &str) -> Result<ExecUser, ContextError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(ContextError::InvalidChown {
            spec: spec.to_string(),
            reason: "missing user".to_string(),
        });
    }
    let entry = match user.parse::<u32>() {
        Ok(uid) => lookup_uid(root, uid)?,
        Err(_) => Some(
            lookup_user(root, user)?.ok_or_else(|| ContextError::UnknownUser {
                user: user.to_string(),
            })?,
        ),
    };
    let uid = match (&entry, user.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some(e), Err(_)) => e.uid,
        (None, Err(_)) => 0,
    };
    let home = entry
        .as_ref()
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string());
    match group.filter(|g| !g.is_empty()) {
        Some(g) => {
            let gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => lookup_group(root, g)?.ok_or_else(|| ContextError::UnknownGroup {
                    group: g.to_string(),
                })?,
            };
            Ok(ExecUser {
                uid,
                gid,
                additional_gids: Vec::new(),
                home,
            })
        }
        None => {
            let gid = entry.as_ref().map_or(0, |e| e.gid);
            let additional_gids = match &entry {
                Some(e) => supplementary_groups(root, &e.name)?
                    .into_iter()
                    .filter(|g| *g != gid)
                    .collect(),
                None => Vec::new(),
            };
            Ok(ExecUser {
                uid,
                gid,
                additional_gids,
                home,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken line\napp:x:1000:1001:App:/home/app:/bin/bash\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nappgrp:x:1001:\nstaff:x:50:app,other\ndocker:x:999:app\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn chown_table() {
        let dir = rootfs();
        let cases: &[(&str, (u32, u32))] = &[
            ("app", (1000, 1001)),
            ("app:staff", (1000, 50)),
            ("app:7", (1000, 7)),
            ("55", (55, 55)),
            ("10:11", (10, 11)),
            ("55:staff", (55, 50)),
            ("root", (0, 0)),
        ];
        for (spec, want) in cases {
            assert_eq!(resolve_chown(dir.path(), spec).unwrap(), *want, "{spec}");
        }
    }

    #[test]
    fn chown_errors_name_what_is_missing() {
        let dir = rootfs();
        let err = resolve_chown(dir.path(), "ghost").unwrap_err();
        assert!(matches!(&err, ContextError::UnknownUser { user } if user == "ghost"));
        assert!(err.to_string().contains("ghost"));
        let err = resolve_chown(dir.path(), "app:nogroup").unwrap_err();
        assert!(matches!(&err, ContextError::UnknownGroup { group } if group == "nogroup"));
        assert!(resolve_chown(dir.path(), ":staff").is_err());
        assert!(resolve_chown(dir.path(), "app:").is_err());
        let empty = tempfile::tempdir().unwrap();
        let err = resolve_chown(empty.path(), "app").unwrap_err();
        assert!(matches!(
            &err,
            ContextError::NoIdFile {
                file: "/etc/passwd",
                ..
            }
        ));
        assert!(err.to_string().contains("open /etc/passwd"), "{err}");
        assert!(matches!(
            resolve_chown(empty.path(), "5:staff"),
            Err(ContextError::NoIdFile {
                file: "/etc/group",
                ..
            })
        ));
        assert_eq!(resolve_chown(empty.path(), "5:6").unwrap(), (5, 6));
        // As BuildKit: `root` is 0 without a passwd or group file.
        assert_eq!(resolve_chown(empty.path(), "root").unwrap(), (0, 0));
        assert_eq!(resolve_chown(empty.path(), "root:root").unwrap(), (0, 0));
        assert_eq!(resolve_chown(empty.path(), "9999:root").unwrap(), (9999, 0));
    }

    #[test]
    fn lookups_and_groups() {
        let dir = rootfs();
        let app = lookup_user(dir.path(), "app").unwrap().unwrap();
        assert_eq!(app.home, "/home/app");
        assert_eq!(app.shell, "/bin/bash");
        assert_eq!(lookup_group(dir.path(), "docker").unwrap(), Some(999));
        assert_eq!(lookup_group(dir.path(), "none").unwrap(), None);
        assert_eq!(
            supplementary_groups(dir.path(), "app").unwrap(),
            vec![50, 999]
        );
        assert!(supplementary_groups(dir.path(), "root").unwrap().is_empty());
    }

    #[test]
    fn user_instruction_resolution() {
        let dir = rootfs();
        let u = resolve_user(dir.path(), "app").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1001, "/home/app"));
        assert_eq!(u.additional_gids, vec![50, 999]);
        let u = resolve_user(dir.path(), "4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        let u = resolve_user(dir.path(), "1000:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert!(u.additional_gids.is_empty());
        assert!(resolve_user(dir.path(), "ghost").is_err());
    }

    #[test]
    fn etc_symlink_cannot_escape_root() {
        let dir = tempfile::tempdir().unwrap();
        // /etc -> / on the host would expose the host's files; inside the root
        // it must resolve to the root itself, where no passwd exists.
        symlink("/", dir.path().join("etc")).unwrap();
        assert_eq!(lookup_user(dir.path(), "root").unwrap(), None);
        let dir2 = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir2.path().join("etc")).unwrap();
        symlink("/../../../../etc/passwd", dir2.path().join("etc/passwd")).unwrap();
        // Clamped to <root>/etc/passwd, which is the link itself: a loop.
        assert!(lookup_user(dir2.path(), "root").is_err());
    }
}
