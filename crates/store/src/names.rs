//! Turning arbitrary names (image references, compression names) into single, safe file names.

use rbuild_digest::Digest;

use crate::error::StoreError;

/// Longest encoded name stored verbatim; longer ones are hashed so no file name exceeds NAME_MAX.
const MAX_ENCODED: usize = 200;

/// Longest name accepted at all; references are far shorter in practice.
const MAX_NAME: usize = 4096;

/// Rejects names the store cannot keep (empty, NUL, absurdly long).
pub(crate) fn validate(kind: &'static str, name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.contains('\0') {
        "must not contain a NUL byte"
    } else if name.len() > MAX_NAME {
        "is longer than 4096 bytes"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    })
}

/// Encodes `name` as one path component that can never be `.`, `..`, contain `/`, or be empty:
/// bytes outside `[A-Za-z0-9_.-]` become `%XX`, and a leading `.` is escaped too. The encoding is
/// injective, so distinct names never share a file. Names whose encoding would be too long become
/// `%long-<sha256 of name>`; a plain encoding can never produce that (a `%` is always followed by two
/// hex digits), so the two forms cannot collide. The original name is stored inside the record.
pub(crate) fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_ENCODED {
        format!("%long-{}", Digest::of(name.as_bytes()).hex())
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_one_safe_component() {
        for name in [
            "..",
            ".",
            "../../etc/passwd",
            "/abs",
            "a/b",
            "docker.io/library/x:1.0",
            "ünï",
            "a\nb",
        ] {
            let e = encode(name);
            assert!(!e.contains('/'), "{name:?} -> {e:?}");
            assert!(!e.starts_with('.'), "{name:?} -> {e:?}");
            assert!(!e.is_empty());
        }
        assert_eq!(
            encode("docker.io/library/x:1.0"),
            "docker.io%2Flibrary%2Fx%3A1.0"
        );
        assert_ne!(encode("a/b"), encode("a%2Fb"));
        assert!(encode(&"x".repeat(300)).starts_with("%long-"));
    }
}
