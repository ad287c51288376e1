//! Content digests: the one name every rbuild crate uses for "these exact bytes".
//!
//! Blobs, layers, configs and manifests are all addressed by a [`Digest`] (`sha256:<64 hex>`), and
//! bytes are hashed as they stream through a [`DigestWriter`] or [`DigestReader`], so no caller ever
//! has to hold a whole blob in memory to learn its name.
//!
//! ```
//! use rbuild_digest::Digest;
//! let d = Digest::of(b"hello");
//! assert_eq!(d.to_string(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
//! assert_eq!(d, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".parse().unwrap());
//! ```

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A sha256 content digest; the only algorithm rbuild writes, and the one OCI requires readers to support.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest; carries the offending text so the user can find it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {text:?}: {reason}")]
pub struct ParseDigestError {
    /// The text that failed to parse.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Digest {
    /// Digest of a byte slice, for small blobs (configs, manifests) already in memory.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Wraps raw hash bytes, for hashers that were fed elsewhere.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The raw hash, for callers that need the bytes (chain ids, cache keys).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lower-case hex characters without the algorithm, as used in blob paths and image IDs.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex characters, as docker shows image IDs.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// The algorithm name; always `sha256`, spelled out for blob directory layouts.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDigestError {
            text: s.to_string(),
            reason,
        };
        let (alg, hex_part) = s
            .split_once(':')
            .ok_or_else(|| err("missing algorithm prefix"))?;
        if alg != "sha256" {
            return Err(err("unsupported algorithm (only sha256)"));
        }
        if hex_part.len() != 64 {
            return Err(err("sha256 digest must have 64 hex characters"));
        }
        if !hex_part
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("digest must be lower-case hex"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out)
            .map_err(|_| err("digest must be lower-case hex"))?;
        Ok(Digest(out))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hasher, for data that arrives in pieces.
#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    /// Starts an empty hash.
    pub fn new() -> Self {
        Self::default()
    }
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    /// Ends the hash.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// A writer that hashes and counts what passes through, so a blob's digest and size are known the
/// moment its last byte is written.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> DigestWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
    /// The inner writer, for flushing or syncing before `finish`.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
    /// Returns the inner writer with the digest and size of everything written.
    pub fn finish(self) -> (W, Digest, u64) {
        (
            self.inner,
            Digest(self.hasher.finalize().into()),
            self.written,
        )
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through, so downloads and imports are verified while
/// they stream.
pub struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> DigestReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        DigestReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }
    /// Bytes read so far.
    pub fn read_bytes(&self) -> u64 {
        self.read
    }
    /// Returns the digest and size of everything read.
    pub fn finish(self) -> (R, Digest, u64) {
        (self.inner, Digest(self.hasher.finalize().into()), self.read)
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Chain ID of a layer stack as OCI defines it, so snapshots of identical stacks are shared.
pub fn chain_id(diff_ids: &[Digest]) -> Option<Digest> {
    let mut iter = diff_ids.iter();
    let mut chain = *iter.next()?;
    for d in iter {
        chain = Digest::of(format!("{chain} {d}").as_bytes());
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha512:00",
            "sha256:abc",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982g",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn writer_and_reader_agree_with_of() {
        let data = b"some layer bytes".repeat(1000);
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (_, dw, n) = w.finish();
        let mut r = DigestReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        let (_, dr, m) = r.finish();
        assert_eq!(dw, Digest::of(&data));
        assert_eq!(dr, dw);
        assert_eq!((n, m), (data.len() as u64, data.len() as u64));
    }

    #[test]
    fn chain_id_follows_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id(&[a]), Some(a));
        assert_eq!(
            chain_id(&[a, b]),
            Some(Digest::of(format!("{a} {b}").as_bytes()))
        );
        assert_eq!(chain_id(&[]), None);
    }
}
