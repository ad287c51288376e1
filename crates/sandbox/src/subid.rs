//! Subordinate id ranges (/etc/subuid, /etc/subgid) and the caller's identity.

use crate::SandboxError;
use std::ffi::CStr;
use std::path::{Path, PathBuf};

/// A block of host ids delegated to a user, so that the sandbox can map container ids
/// 1..=N onto ids the user is allowed to own (what `newuidmap` checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First host id of the range.
    pub start: u32,
    /// Number of ids in the range.
    pub count: u32,
}

/// Reads the caller's subordinate uid and gid ranges from `/etc/subuid` and `/etc/subgid`, so
/// [`crate::Sandbox`] can decide between a full id map and a single-id map.
///
/// Entries match either the user name or the numeric uid, like shadow's `newuidmap` does.
pub fn subid_ranges(user: &str, uid: u32) -> Result<(Vec<IdRange>, Vec<IdRange>), SandboxError> {
    subid_ranges_from(
        Path::new("/etc/subuid"),
        Path::new("/etc/subgid"),
        user,
        uid,
    )
}

/// [`subid_ranges`] with injectable file paths, so tests and unusual systems can point it at
/// other files. A missing file means "no ranges", not an error.
pub fn subid_ranges_from(
    subuid: &Path,
    subgid: &Path,
    user: &str,
    uid: u32,
) -> Result<(Vec<IdRange>, Vec<IdRange>), SandboxError> {
    Ok((
        parse_subid_file(subuid, user, uid)?,
        parse_subid_file(subgid, user, uid)?,
    ))
}

fn parse_subid_file(path: &Path, user: &str, uid: u32) -> Result<Vec<IdRange>, SandboxError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SandboxError::io(format!("read {}", path.display()), e)),
    };
    parse_subid(&text, path, user, uid)
}

/// Parses the text of a subuid/subgid file; public so callers can validate files they write.
pub fn parse_subid(
    text: &str,
    path: &Path,
    user: &str,
    uid: u32,
) -> Result<Vec<IdRange>, SandboxError> {
    let uid_str = uid.to_string();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| SandboxError::SubId {
            path: PathBuf::from(path),
            line: i + 1,
            message,
        };
        let mut parts = line.split(':');
        let (Some(name), Some(start), Some(count), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err(format!("expected NAME:START:COUNT, got {line:?}")));
        };
        if name != user && name != uid_str {
            continue;
        }
        let start: u32 = start
            .parse()
            .map_err(|_| err(format!("start {start:?} is not a number")))?;
        let count: u32 = count
            .parse()
            .map_err(|_| err(format!("count {count:?} is not a number")))?;
        if count == 0 {
            continue;
        }
        if start.checked_add(count).is_none() {
            return Err(err(format!("range {start}+{count} overflows 32 bits")));
        }
        out.push(IdRange { start, count });
    }
    Ok(out)
}

/// The login name of `uid` through NSS, or `None` if it has none.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16384];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: buffers are valid for the given sizes; getpwuid_r is thread-safe.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// Finds an executable named `name` in the usual system directories and `$PATH`.
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = vec!["/usr/bin".into(), "/bin".into(), "/usr/sbin".into()];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let p = Path::new("/etc/subuid");
        let text =
            "# comment\nalice:100000:65536\nbob:200000:10\n1000:300000:5\n\nalice:400000:0\n";
        type Case<'a> = (&'a str, u32, &'a [(u32, u32)]);
        let cases: &[Case] = &[
            ("alice", 5, &[(100000, 65536)]),
            ("bob", 7, &[(200000, 10)]),
            ("carol", 1000, &[(300000, 5)]),
            ("alice", 1000, &[(100000, 65536), (300000, 5)]),
            ("dave", 1, &[]),
        ];
        for (user, uid, want) in cases {
            let got = parse_subid(text, p, user, *uid).unwrap();
            let want: Vec<IdRange> = want
                .iter()
                .map(|&(start, count)| IdRange { start, count })
                .collect();
            assert_eq!(got, want, "user {user} uid {uid}");
        }
    }

    #[test]
    fn parse_errors_name_line() {
        let p = Path::new("/x/subuid");
        for (text, line) in [
            ("a:1:2\nalice:x:3\n", 2),
            ("alice:1\n", 1),
            ("\n\nalice:1:2:3\n", 3),
            ("alice:4294967295:2\n", 1),
        ] {
            match parse_subid(text, p, "alice", 1) {
                Err(SandboxError::SubId { path, line: l, .. }) => {
                    assert_eq!(path, p);
                    assert_eq!(l, line, "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_files_mean_no_ranges() {
        let (u, g) = subid_ranges_from(
            Path::new("/nonexistent/subuid"),
            Path::new("/nonexistent/subgid"),
            "x",
            1,
        )
        .unwrap();
        assert!(u.is_empty() && g.is_empty());
    }
}
