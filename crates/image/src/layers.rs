//! Reading a layer's uncompressed tar whether the store holds it uncompressed or only as a
//! compressed variant (what a pull leaves: the registry's blobs, never decompressed at pull time).
//!
//! This lives in the image crate because "a layer is its diff id, stored as a blob or as a variant
//! of it" is the image database's rule; the store only knows blobs and variant records, and the
//! snapshotter uses these functions instead of opening blobs itself.

use std::io::{self, BufReader, Read};

use rbuild_digest::{Digest, Hasher};
use rbuild_store::{Store, Variant};

use crate::ImageError;

/// A compressed variant that decompressed to something other than its layer's diff id; carried
/// inside `io::Error` while streaming and as [`ImageError::CorruptVariant`] from
/// [`LayerReader::finish`], so the user learns which stored blob to remove or pull again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("layer {diff_id}: compressed variant {variant} decompresses to {actual}, not to the diff id; the stored blob is corrupt (remove the image and pull it again)")]
pub struct CorruptVariant {
    /// The diff id the layer should have.
    pub diff_id: Digest,
    /// The compressed blob that was read.
    pub variant: Digest,
    /// What it decompressed to.
    pub actual: Digest,
}

enum Inner {
    /// The stored blob, or a deferred one's stream (which checks itself at its end).
    Plain(Box<dyn Read + Send>),
    Decoded {
        reader: Box<dyn Read + Send>,
        variant: Digest,
        hasher: Option<Hasher>,
    },
}

/// The uncompressed bytes of one layer; when they come from a compressed variant they are hashed
/// while streaming and checked against the diff id at end of input, so a tampered variant is never
/// trusted. Consumers that may stop before EOF (tar readers stop at the end-of-archive blocks) call
/// [`LayerReader::finish`] before publishing anything built from the bytes.
pub struct LayerReader {
    inner: Inner,
    diff_id: Digest,
    read: u64,
    failed: Option<CorruptVariant>,
}

impl std::fmt::Debug for LayerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader")
            .field("diff_id", &self.diff_id)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl LayerReader {
    /// The compressed blob being decoded, or `None` when the uncompressed blob is read directly;
    /// lets callers report which form they used.
    pub fn variant(&self) -> Option<Digest> {
        match &self.inner {
            Inner::Plain(_) => None,
            Inner::Decoded { variant, .. } => Some(*variant),
        }
    }

    /// Reads whatever is left, checks the diff id (for a decoded variant) and returns the
    /// uncompressed size; the only way to be sure the bytes already consumed were genuine.
    pub fn finish(mut self) -> Result<u64, ImageError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if let Some(c) = self.failed.take() {
                        return Err(ImageError::CorruptVariant(c));
                    }
                    return Err(ImageError::io(format!("layer {}", self.diff_id), e));
                }
            }
        }
        match self.failed.take() {
            Some(c) => Err(ImageError::CorruptVariant(c)),
            None => Ok(self.read),
        }
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(c) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, c.clone()));
        }
        let n = match &mut self.inner {
            Inner::Plain(f) => f.read(buf)?,
            Inner::Decoded {
                reader,
                variant,
                hasher,
            } => {
                let n = reader.read(buf)?;
                if n > 0 {
                    if let Some(h) = hasher.as_mut() {
                        h.update(buf.get(..n).unwrap_or_default());
                    }
                } else if !buf.is_empty() {
                    if let Some(h) = hasher.take() {
                        let actual = h.finish();
                        if actual != self.diff_id {
                            let c = CorruptVariant {
                                diff_id: self.diff_id,
                                variant: *variant,
                                actual,
                            };
                            self.failed = Some(c.clone());
                            return Err(io::Error::new(io::ErrorKind::InvalidData, c));
                        }
                    }
                }
                n
            }
        };
        self.read += n as u64;
        Ok(n)
    }
}

/// The compressed variant of `diff_id` that can stand in for its missing uncompressed blob: one
/// whose blob is present and whose media type names a codec we decode.
fn usable_variant(store: &Store, diff_id: &Digest) -> Result<Option<Variant>, ImageError> {
    for (_, v) in store.list_variants(diff_id)? {
        let codec = rbuild_layer::compress::Compression::from_media_type(&v.media_type);
        if !matches!(codec, rbuild_layer::compress::Compression::None) && store.contains(&v.digest)
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// Whether the layer `diff_id` can be read at all (uncompressed or through a variant), so pulls can
/// skip downloads and commits can accept lazily pulled base layers.
pub fn layer_available(store: &Store, diff_id: &Digest) -> Result<bool, ImageError> {
    Ok(store.contains(diff_id) || usable_variant(store, diff_id)?.is_some())
}

/// Opens the uncompressed tar of `diff_id`: the blob itself when present, otherwise a compressed
/// variant decoded on the fly and verified against `diff_id` (see [`LayerReader`]).
pub fn open_layer(store: &Store, diff_id: &Digest) -> Result<LayerReader, ImageError> {
    let inner = if store.contains(diff_id) {
        // A deferred layer is streamed from what it is kept as, not written into the store:
        // whoever reads a layer this way copies it elsewhere.
        Inner::Plain(store.stream_blob(diff_id)?)
    } else {
        let v = usable_variant(store, diff_id)?.ok_or(ImageError::MissingBlob(*diff_id))?;
        let f = store.open_blob(&v.digest)?;
        let reader = rbuild_layer::compress::decompress(BufReader::with_capacity(1 << 20, f))
            .map_err(|e| ImageError::io(store.blob_path(&v.digest), e))?;
        Inner::Decoded {
            reader,
            variant: v.digest,
            hasher: Some(Hasher::new()),
        }
    };
    Ok(LayerReader {
        inner,
        diff_id: *diff_id,
        read: 0,
        failed: None,
    })
}

/// The uncompressed size of `diff_id`; when only a variant is stored this decodes (and verifies)
/// it, so call it only where the exact size is required (tar headers, uncompressed descriptors).
pub fn layer_size(store: &Store, diff_id: &Digest) -> Result<u64, ImageError> {
    if store.contains(diff_id) {
        return Ok(store.blob_size(diff_id)?);
    }
    open_layer(store, diff_id)?.finish()
}
