//! ADD from a URL: download once into a scratch directory, verify `--checksum`, then copy like a
//! local file (mode 0600 and the server's Last-Modified time, as docker does).

#[cfg(feature = "registry")]
use std::io::{Read, Write};
#[cfg(feature = "registry")]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What went wrong fetching a URL; the message names the URL.
#[derive(Debug, thiserror::Error)]
#[error("ADD {url}: {reason}")]
pub struct FetchError {
    /// The URL as written.
    pub url: String,
    /// Why it failed.
    pub reason: String,
}

/// The file name docker gives a download: the last non-empty path segment of the URL.
pub fn file_name(url: &str) -> Option<String> {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = without_query
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(without_query);
    let path = path.split_once('/').map(|(_, p)| p).unwrap_or("");
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .map(|s| s.to_string())
        .filter(|s| s != "." && s != "..")
}

/// Downloads `url` into `dir` as `name`, checking `checksum` (`sha256:<hex>`) when given, with
/// the builder's registry client: its runtime, trust store (`$SSL_CERT_FILE` or the system
/// bundle) and proxies.
#[cfg(feature = "registry")]
pub fn fetch(
    registry: &crate::transfer::RegistryOptions,
    url: &str,
    dir: &Path,
    name: &str,
    checksum: Option<&str>,
) -> Result<PathBuf, FetchError> {
    let err = |reason: String| FetchError {
        url: url.to_string(),
        reason,
    };
    let expected = match checksum {
        Some(c) => Some(
            c.parse::<rbuild_digest::Digest>()
                .map_err(|e| err(format!("invalid --checksum: {e}")))?,
        ),
        None => None,
    };
    let client = registry.client().map_err(|e| err(e.to_string()))?;
    let mut body = client.get(url).map_err(|e| err(e.to_string()))?;
    let modified = body.last_modified().and_then(|v| {
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()
    });
    let path = dir.join(name);
    let file = std::fs::File::create(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut w = rbuild_digest::DigestWriter::new(std::io::BufWriter::new(file));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body.read(&mut buf).map_err(|e| err(e.to_string()))?;
        if n == 0 {
            break;
        }
        w.write_all(buf.get(..n).unwrap_or_default())
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
    }
    let (mut inner, got, _) = w.finish();
    inner.flush().map_err(|e| err(e.to_string()))?;
    drop(inner);
    if let Some(want) = expected {
        if got != want {
            return Err(err(format!(
                "checksum mismatch: expected {want}, got {got}"
            )));
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(e.to_string()))?;
    if let Some(t) = modified {
        let ft = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(t.unix_timestamp().max(0) as u64);
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(ft);
        }
    }
    Ok(path)
}

/// Without the `registry` feature (which brings the HTTP stack) a download fails saying so.
#[cfg(not(feature = "registry"))]
pub fn fetch(
    _registry: &crate::transfer::RegistryOptions,
    url: &str,
    _dir: &Path,
    _name: &str,
    _checksum: Option<&str>,
) -> Result<PathBuf, FetchError> {
    Err(FetchError {
        url: url.to_string(),
        reason: "downloads are not compiled in (enable rbuild's `registry` feature)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        let cases = [
            ("https://example.com/a/b/file.tar.gz", Some("file.tar.gz")),
            ("https://example.com/a/b/", Some("b")),
            ("http://example.com/x?y=1#z", Some("x")),
            ("http://example.com", None),
            ("http://example.com/", None),
        ];
        for (url, want) in cases {
            assert_eq!(file_name(url).as_deref(), want, "{url}");
        }
    }
}
