//! Parsers for the build options users write as text (`--secret`, `--ssh`, `--label`,
//! `--build-arg`, `SOURCE_DATE_EPOCH`), so every front end (the CLI, an embedder reading a config
//! file) turns the same text into the same [`BuildRequest`](crate::BuildRequest) fields, with
//! BuildKit's syntax and errors that name the flag and the text at fault.
//!
//! ```
//! use rbuild_engine::{spec, SecretFrom};
//! let s = spec::parse_secret("id=npm,src=/home/me/.npmrc").unwrap();
//! assert_eq!(s.source, SecretFrom::File("/home/me/.npmrc".into()));
//! assert_eq!(spec::parse_source_date_epoch(Some("1700000000")).unwrap(), Some(1_700_000_000));
//! ```

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;

use crate::{BuildError, SecretFrom, SecretSource, SshSource};

/// A build option whose text could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} {spec:?}: {reason}")]
pub struct SpecError {
    /// The option (`--secret`, `SOURCE_DATE_EPOCH`, …).
    pub flag: String,
    /// The text as given.
    pub spec: String,
    /// What is wrong with it, and what is expected.
    pub reason: String,
}

impl SpecError {
    fn new(flag: &str, spec: &str, reason: impl Into<String>) -> SpecError {
        SpecError {
            flag: flag.into(),
            spec: spec.into(),
            reason: reason.into(),
        }
    }
}

impl From<SpecError> for BuildError {
    fn from(e: SpecError) -> BuildError {
        BuildError::Request(e.to_string())
    }
}

/// Splits `KEY=VALUE` (the value may contain `=`; the key may not be empty).
pub fn parse_key_value(flag: &str, s: &str) -> Result<(String, String), SpecError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(SpecError::new(flag, s, "expected KEY=VALUE")),
    }
}

/// `--label KEY=VALUE`, repeated; a later value for a key wins, as with docker.
pub fn parse_labels<S: AsRef<str>>(labels: &[S]) -> Result<BTreeMap<String, String>, SpecError> {
    labels
        .iter()
        .map(|l| parse_key_value("--label", l.as_ref()))
        .collect()
}

/// `--build-arg KEY=VALUE`, or `--build-arg KEY` to take the value from `env` (skipped when
/// unset there, as docker does).
pub fn parse_build_args<S: AsRef<str>>(
    args: &[S],
    env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for a in args {
        let a = a.as_ref();
        match a.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None => {
                if let Some(v) = env(a) {
                    out.insert(a.to_string(), v);
                }
            }
        }
    }
    out
}

/// `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`. Without `src` or `env` the secret comes
/// from the environment variable named like its id, as BuildKit does.
pub fn parse_secret(s: &str) -> Result<SecretSource, SpecError> {
    let bad = |why: String| SpecError::new("--secret", s, why);
    let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
    for part in s.split(',') {
        let (k, v) = parse_key_value("--secret", part).map_err(|_| {
            bad(format!(
                "{part:?} is not KEY=VALUE (expected id=ID[,src=FILE|,env=VAR])"
            ))
        })?;
        match k.as_str() {
            "id" => id = Some(v),
            "src" | "source" => src = Some(PathBuf::from(v)),
            "env" => env = Some(v),
            "type" => match v.as_str() {
                "file" | "env" => kind = Some(v),
                other => return Err(bad(format!("type={other} is not file or env"))),
            },
            other => return Err(bad(format!("unknown key {other:?}"))),
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| bad("missing id=".into()))?;
    let source = match (src, env, kind.as_deref()) {
        (Some(p), None, Some("file") | None) => SecretFrom::File(p),
        (None, Some(e), Some("env") | None) => SecretFrom::Env(e),
        (Some(p), None, Some("env")) => SecretFrom::Env(p.to_string_lossy().into_owned()),
        (None, Some(e), Some("file")) => SecretFrom::File(PathBuf::from(e)),
        (Some(_), Some(_), _) => return Err(bad("give src= or env=, not both".into())),
        (None, None, Some("file")) => SecretFrom::File(PathBuf::from(&id)),
        (None, None, _) => SecretFrom::Env(id.clone()),
        (_, _, Some(other)) => return Err(bad(format!("type={other} is not file or env"))),
    };
    Ok(SecretSource { id, source })
}

/// The pure part of `--ssh`: `default`, `ID` (both mean the agent of `auth_sock`, i.e.
/// `$SSH_AUTH_SOCK`) or `ID=SOCKET`. [`parse_ssh`] also checks the socket.
pub fn parse_ssh_spec(s: &str, auth_sock: Option<&OsStr>) -> Result<SshSource, SpecError> {
    let (id, path) = match s.split_once('=') {
        Some((id, path)) => (id, Some(PathBuf::from(path))),
        None => (s, None),
    };
    if id.is_empty() || path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        return Err(SpecError::new(
            "--ssh",
            s,
            "expected default, ID or ID=SOCKET",
        ));
    }
    let socket = match path {
        Some(p) => p,
        None => PathBuf::from(auth_sock.filter(|a| !a.is_empty()).ok_or_else(|| {
            SpecError::new(
                "--ssh",
                s,
                "SSH_AUTH_SOCK is not set (start an agent, or give ID=SOCKET)",
            )
        })?),
    };
    Ok(SshSource {
        id: id.to_string(),
        socket,
    })
}

/// `--ssh` as [`parse_ssh_spec`], then checks that the socket is one: key files, which BuildKit
/// loads into an agent of its own, are refused with what to do instead.
pub fn parse_ssh(s: &str, auth_sock: Option<&OsStr>) -> Result<SshSource, BuildError> {
    use std::os::unix::fs::FileTypeExt;
    let src = parse_ssh_spec(s, auth_sock)?;
    match std::fs::metadata(&src.socket) {
        Ok(m) if m.file_type().is_socket() => Ok(src),
        Ok(_) => Err(SpecError::new(
            "--ssh",
            s,
            format!(
                "{} is not an agent socket; key files are not supported, load the key into \
                 ssh-agent (ssh-add) and pass its socket",
                src.socket.display()
            ),
        )
        .into()),
        Err(e) => Err(BuildError::io(&src.socket, e)),
    }
}

/// `SOURCE_DATE_EPOCH` (seconds since 1970, as reproducible-builds.org defines it): `None` when
/// unset or empty.
pub fn parse_source_date_epoch(value: Option<&str>) -> Result<Option<i64>, SpecError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            SpecError::new(
                "SOURCE_DATE_EPOCH",
                v,
                "not a whole number of seconds since 1970-01-01",
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        let file = |p: &str| SecretFrom::File(p.into());
        let env = |v: &str| SecretFrom::Env(v.into());
        let cases: &[(&str, Option<(&str, SecretFrom)>)] = &[
            ("id=a,src=/x", Some(("a", file("/x")))),
            ("id=a,source=/x", Some(("a", file("/x")))),
            ("id=tok", Some(("tok", env("tok")))),
            ("id=tok,env=TOKEN", Some(("tok", env("TOKEN")))),
            ("type=env,id=tok,src=TOKEN", Some(("tok", env("TOKEN")))),
            ("type=file,id=k", Some(("k", file("k")))),
            ("src=/x", None),
            ("id=,src=/x", None),
            ("id=a,bogus=1", None),
            ("id=a,src=/x,env=Y", None),
            ("id=a,type=socket", None),
            ("foo", None),
        ];
        for (spec, want) in cases {
            let got = parse_secret(spec)
                .ok()
                .map(|s| (s.id.clone(), s.source.clone()));
            let want = want.as_ref().map(|(i, s)| (i.to_string(), s.clone()));
            assert_eq!(got, want, "{spec}");
        }
        let e = parse_secret("id=a,bogus=1").unwrap_err();
        assert_eq!(e.flag, "--secret");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn ssh_specs() {
        let sock = Some(OsStr::new("/run/agent.sock"));
        let s = parse_ssh_spec("default", sock).unwrap();
        assert_eq!(
            (s.id.as_str(), s.socket),
            ("default", "/run/agent.sock".into())
        );
        let s = parse_ssh_spec("gh=/tmp/a", None).unwrap();
        assert_eq!((s.id.as_str(), s.socket), ("gh", "/tmp/a".into()));
        assert!(parse_ssh_spec("default", None).is_err());
        assert!(parse_ssh_spec("default", Some(OsStr::new(""))).is_err());
        assert!(parse_ssh_spec("=x", sock).is_err());
        assert!(parse_ssh_spec("a=", sock).is_err());
    }

    #[test]
    fn ssh_refuses_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, "not a socket").unwrap();
        let e = parse_ssh(&format!("default={}", key.display()), None).unwrap_err();
        assert!(e.to_string().contains("not an agent socket"), "{e}");
        let sock = dir.path().join("agent.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let s = parse_ssh("default", Some(sock.as_os_str())).unwrap();
        assert_eq!(s.socket, sock);
    }

    #[test]
    fn source_date_epoch() {
        assert_eq!(parse_source_date_epoch(None), Ok(None));
        assert_eq!(parse_source_date_epoch(Some("")), Ok(None));
        assert_eq!(parse_source_date_epoch(Some("0")), Ok(Some(0)));
        assert_eq!(parse_source_date_epoch(Some(" 17 ")), Ok(Some(17)));
        let e = parse_source_date_epoch(Some("yesterday")).unwrap_err();
        assert_eq!(e.flag, "SOURCE_DATE_EPOCH");
        assert!(e.to_string().contains("yesterday"));
    }

    #[test]
    fn labels_and_build_args() {
        let l = parse_labels(&["a=1", "b=x=y", "a=2"]).unwrap();
        assert_eq!(l.get("a").map(String::as_str), Some("2"));
        assert_eq!(l.get("b").map(String::as_str), Some("x=y"));
        assert!(parse_labels(&["=v"]).is_err());
        assert!(parse_labels(&["novalue"]).is_err());
        let env = |k: &str| (k == "FROM_ENV").then(|| "e".to_string());
        let a = parse_build_args(&["X=1", "FROM_ENV", "UNSET"], &env);
        assert_eq!(
            a.into_iter().collect::<Vec<_>>(),
            vec![
                ("FROM_ENV".to_string(), "e".to_string()),
                ("X".to_string(), "1".to_string())
            ]
        );
    }
}
