//! The cache-key encoding: how an op's definition and its inputs become the digest its cached
//! result is stored under.
//!
//! Keys are a persistent format: they name records in stores that outlive this binary and travel
//! between machines in exported caches (`--cache-to`). So they are built from an explicit
//! encoding, never from `Debug` text (which changes whenever a type does), and the encoding is
//! pinned by golden tests: a change that alters keys by accident fails them, and a deliberate one
//! bumps [`KEY_FORMAT`].
//!
//! # Encoding (format 3; 3 added `platform` to exec ops)
//!
//! A key is the SHA-256 of a byte string made of:
//! 1. the header `rbuild-cache-key` followed by [`KEY_FORMAT`] as 4 bytes little-endian;
//! 2. a sequence of *fields*, in the order the op writes them. Each field is
//!    `label-length (u64 LE) ‖ label ‖ type (1 byte) ‖ value-length (u64 LE) ‖ value`, where the type
//!    is `s` (UTF-8 string), `b` (bytes), `u` (u64 LE), `i` (i64 LE), `t` (bool, one byte), `n` (an
//!    absent optional value, empty) or `l` (a list: the value is the count as u64 LE, and the
//!    items follow as fields labelled `#`).
//!
//! Lengths make `("a","bc")` and `("ab","c")` different; the type byte makes an absent value
//! differ from an empty one. What each op writes is documented where it writes it (`ops/`).
//!
//! # Devices (`--device`)
//!
//! A RUN step's key gets a trailing `devices` list (the requests as given: CDI names such as
//! `nvidia.com/gpu=all`, or host nodes as `HOST:CONTAINER:PERMS`) when the build has any, and
//! no field at all otherwise. In the key because a step that saw a GPU may produce something
//! else than one that did not (a build that detects the GPU's architecture, a test that ran on
//! it): a build without the device must not reuse that result, nor one with it a result made
//! without. Names only, not the resolved spec: a driver update rewrites the spec (library
//! paths, hook arguments) without changing what the step is asked to use, as BuildKit keys a
//! step's devices by name. Written only when present, so every key of a build without devices
//! is exactly what it was: the format stays 2 and the golden tests stand.

use rbuild_digest::{Digest, Hasher};

/// The version of the encoding and of the op semantics keys stand for. Bump it when an op's
/// result would change for the same fields (for instance, a new default), so old records are
/// not reused for a different result.
pub const KEY_FORMAT: u32 = 3;

/// Accumulates an op's fields; [`Key::finish`] gives the digest.
pub struct Key(Hasher);

impl Default for Key {
    fn default() -> Self {
        Key::new()
    }
}

impl Key {
    /// A key with the format header written.
    pub fn new() -> Key {
        let mut h = Hasher::new();
        h.update(b"rbuild-cache-key");
        h.update(&KEY_FORMAT.to_le_bytes());
        Key(h)
    }

    fn field(&mut self, label: &str, kind: u8, value: &[u8]) {
        self.0.update(&(label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update(&[kind]);
        self.0.update(&(value.len() as u64).to_le_bytes());
        self.0.update(value);
    }

    /// A string field.
    pub fn str(&mut self, label: &str, value: &str) -> &mut Self {
        self.field(label, b's', value.as_bytes());
        self
    }

    /// A byte-string field.
    pub fn bytes(&mut self, label: &str, value: &[u8]) -> &mut Self {
        self.field(label, b'b', value);
        self
    }

    /// An unsigned number.
    pub fn u64(&mut self, label: &str, value: u64) -> &mut Self {
        self.field(label, b'u', &value.to_le_bytes());
        self
    }

    /// A signed number.
    pub fn i64(&mut self, label: &str, value: i64) -> &mut Self {
        self.field(label, b'i', &value.to_le_bytes());
        self
    }

    /// A flag.
    pub fn bool(&mut self, label: &str, value: bool) -> &mut Self {
        self.field(label, b't', &[value as u8]);
        self
    }

    /// A value that may be absent: absent and empty differ.
    pub fn opt_str(&mut self, label: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(label, v),
            None => {
                self.field(label, b'n', &[]);
                self
            }
        }
    }

    /// An optional number.
    pub fn opt_u64(&mut self, label: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.u64(label, v),
            None => {
                self.field(label, b'n', &[]);
                self
            }
        }
    }

    /// An optional signed number.
    pub fn opt_i64(&mut self, label: &str, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.i64(label, v),
            None => {
                self.field(label, b'n', &[]);
                self
            }
        }
    }

    /// A list of strings, order kept (argv, env).
    pub fn strs<S: AsRef<str>>(&mut self, label: &str, items: &[S]) -> &mut Self {
        self.field(label, b'l', &(items.len() as u64).to_le_bytes());
        for i in items {
            self.str("#", i.as_ref());
        }
        self
    }

    /// A list header, for lists of structured items the caller writes next.
    pub fn list(&mut self, label: &str, len: usize) -> &mut Self {
        self.field(label, b'l', &(len as u64).to_le_bytes());
        self
    }

    /// The digest.
    pub fn finish(self) -> Digest {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding itself, pinned: if this fails, every stored key changed.
    #[test]
    fn golden_encoding() {
        let mut k = Key::new();
        k.str("op", "exec")
            .strs("argv", &["/bin/sh", "-c", "true"])
            .opt_str("user", None)
            .opt_str("user2", Some(""))
            .u64("n", 7)
            .i64("epoch", -1)
            .bool("flag", true)
            .bytes("raw", b"\x00\x01");
        assert_eq!(
            k.finish().to_string(),
            "sha256:ce152bea756e2c48973c6b35c7cae59e69164c1e9b3de39daca23ce1917fab25"
        );
    }

    #[test]
    fn absent_empty_and_shifted_fields_differ() {
        let one = |f: &dyn Fn(&mut Key)| {
            let mut k = Key::new();
            f(&mut k);
            k.finish()
        };
        let a = one(&|k| {
            k.opt_str("x", None);
        });
        let b = one(&|k| {
            k.opt_str("x", Some(""));
        });
        assert_ne!(a, b);
        let c = one(&|k| {
            k.str("a", "bc");
        });
        let d = one(&|k| {
            k.str("ab", "c");
        });
        assert_ne!(c, d);
        let e = one(&|k| {
            k.strs("l", &["a", "b"]);
        });
        let f = one(&|k| {
            k.strs("l", &["ab"]);
        });
        assert_ne!(e, f);
    }
}
