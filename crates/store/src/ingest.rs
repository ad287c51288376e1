//! An in-flight blob write that becomes visible only when committed.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_digest::{Digest, DigestWriter};

use crate::error::{io_err, StoreError};
use crate::{fsutil, Store};

/// A blob being written: bytes go to a private temp file and are hashed on the way; nothing is
/// visible in the store until [`Ingest::commit`], and dropping it discards everything.
pub struct Ingest {
    store: Store,
    path: PathBuf,
    writer: Option<DigestWriter<BufWriter<File>>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("path", &self.path)
            .field("written", &self.written())
            .finish()
    }
}

impl Ingest {
    pub(crate) fn new(store: Store, path: PathBuf, file: File) -> Ingest {
        Ingest {
            store,
            path,
            writer: Some(DigestWriter::new(BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
        }
    }

    /// The temp file, for error messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far, for progress bars and descriptor sizes.
    pub fn written(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| w.written())
    }

    /// Makes the blob visible under its digest, after checking it against `expected` when given.
    /// Returns the digest and size. On a mismatch nothing is stored and the error names both
    /// digests. If the blob already exists this just discards the temp file.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<(Digest, u64), StoreError> {
        let Some(writer) = self.writer.take() else {
            // Unreachable in practice: `writer` is only taken here, and `commit` consumes self.
            return Err(io_err("commit", &self.path)(io::Error::other(
                "ingest already finished",
            )));
        };
        let (buf, digest, size) = writer.finish();
        let file = buf
            .into_inner()
            .map_err(|e| io_err("write", &self.path)(e.into_error()))?;
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(StoreError::DigestMismatch {
                    expected: *expected,
                    actual: digest,
                    size,
                });
            }
        }
        let dest = self.store.blob_path(&digest);
        if self.store.is_written(&digest) {
            return Ok((digest, size));
        }
        file.sync_all().map_err(io_err("fsync", &self.path))?;
        file.set_permissions(Permissions::from_mode(0o444))
            .map_err(io_err("chmod", &self.path))?;
        fs::rename(&self.path, &dest).map_err(io_err("rename into place", &dest))?;
        // The temp name is gone; make Drop a no-op.
        self.path = PathBuf::new();
        drop(file);
        fsutil::fsync_dir(&self.store.paths.blobs)?;
        Ok((digest, size))
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.writer.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("ingest already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}
