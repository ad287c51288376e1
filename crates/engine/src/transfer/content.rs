//! The store's side of the registry client's content interface: pulled blobs are written through
//! the store's ingest (a private temp file, hashed on the way, renamed into place only when the
//! digest matches), pushed blobs are read from it; and the hints, kept in the store, of which
//! repositories hold a blob, so a push mounts instead of uploading.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use rbuild_digest::Digest;
use rbuild_image::reference::Reference;
use rbuild_registry::{ContentError, ContentWriter, Ingester, Provider};
use rbuild_store::{Ingest, Store, StoreError};

use crate::progress::{Event, ProgressSink};

/// The store as the registry client's [`Ingester`] (pulls) and [`Provider`] (pushes), for
/// embedders that drive `rbuild_registry` themselves against a builder's store.
#[derive(Debug, Clone, Copy)]
pub struct StoreContent<'a>(pub &'a Store);

fn content_err(e: StoreError) -> ContentError {
    match e {
        StoreError::DigestMismatch {
            expected,
            actual,
            size,
        } => ContentError::DigestMismatch {
            expected,
            actual,
            size,
        },
        other => ContentError::Other(Box::new(other)),
    }
}

impl Ingester for StoreContent<'_> {
    fn contains(&self, digest: &Digest) -> bool {
        self.0.contains(digest)
    }

    fn begin(&self, digest: &Digest, _size: u64) -> Result<Box<dyn ContentWriter>, ContentError> {
        Ok(Box::new(StoreWriter {
            ingest: self.0.ingest().map_err(content_err)?,
            expected: *digest,
        }))
    }
}

impl Provider for StoreContent<'_> {
    fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        self.0.blob_size(digest).map_err(content_err)
    }

    fn open(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, ContentError> {
        Ok(Box::new(self.0.open_blob(digest).map_err(content_err)?))
    }
}

/// One pulled blob on its way into the store; dropping it removes the temp file.
struct StoreWriter {
    ingest: Ingest,
    expected: Digest,
}

impl Write for StoreWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ingest.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.ingest.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ingest.flush()
    }
}

impl ContentWriter for StoreWriter {
    fn written(&self) -> u64 {
        self.ingest.written()
    }

    fn commit(self: Box<Self>) -> Result<(), ContentError> {
        let StoreWriter { ingest, expected } = *self;
        ingest
            .commit(Some(&expected))
            .map(|_| ())
            .map_err(content_err)
    }
}

/// Most mount sources tried per blob: each is a request, and each repository widens the token.
const MAX_SOURCES_PER_BLOB: usize = 3;

/// Records that `reference`'s repository holds `blobs`, so a later push to the same registry
/// mounts them instead of uploading. The records are hints: failing to write one only warns.
pub(crate) fn record_sources<'a>(
    store: &Store,
    blobs: impl Iterator<Item = &'a Digest>,
    reference: &Reference,
    progress: &dyn ProgressSink,
) {
    let name = reference.name();
    for d in blobs {
        if let Err(e) = store.add_blob_source(d, &name) {
            progress.event(Event::Warning {
                message: format!("cannot record that {name} holds {d}: {e}"),
            });
            return;
        }
    }
}

/// The recorded repositories of `dest`'s registry (other than `dest` itself) holding each blob,
/// for cross-repository mounts; unreadable records are skipped (they are hints).
pub(crate) fn mount_sources<'a>(
    store: &Store,
    blobs: impl Iterator<Item = &'a Digest>,
    dest: &Reference,
) -> HashMap<Digest, Vec<Reference>> {
    let mut out = HashMap::new();
    for d in blobs {
        let refs: Vec<Reference> = store
            .blob_sources(d)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| Reference::parse(s).ok())
            .filter(|r| r.registry() == dest.registry() && r.repository() != dest.repository())
            .take(MAX_SOURCES_PER_BLOB)
            .collect();
        if !refs.is_empty() {
            out.insert(*d, refs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Store::open(d.path().join("store")).expect("store");
        (d, s)
    }

    fn ingests(s: &Store) -> usize {
        std::fs::read_dir(s.root().join("ingest"))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }

    #[test]
    fn a_written_blob_is_visible_only_when_its_digest_matches() {
        let (_d, s) = store();
        let c = StoreContent(&s);
        let good = Digest::of(b"hello");
        let mut w = c.begin(&good, 5).expect("begin");
        w.write_all(b"hel").expect("write");
        assert_eq!(w.written(), 3);
        assert!(!Ingester::contains(&c, &good));
        w.write_all(b"lo").expect("write");
        w.commit().expect("commit");
        assert!(Ingester::contains(&c, &good));
        assert_eq!(c.size(&good).expect("size"), 5);
        let mut back = Vec::new();
        c.open(&good)
            .expect("open")
            .read_to_end(&mut back)
            .expect("read");
        assert_eq!(back, b"hello");

        let claimed = Digest::of(b"other");
        let mut w = c.begin(&claimed, 5).expect("begin");
        w.write_all(b"HELLO").expect("write");
        match w.commit() {
            Err(ContentError::DigestMismatch {
                expected, actual, ..
            }) => {
                assert_eq!(expected, claimed);
                assert_eq!(actual, Digest::of(b"HELLO"));
            }
            other => panic!("want a digest mismatch, got {other:?}"),
        }
        assert!(!s.contains(&claimed) && !s.contains(&Digest::of(b"HELLO")));

        // An aborted write (dropped) leaves nothing behind.
        let mut w = c.begin(&claimed, 5).expect("begin");
        w.write_all(b"par").expect("write");
        drop(w);
        assert_eq!(ingests(&s), 0);
        assert!(matches!(c.open(&claimed), Err(ContentError::Other(_))));
    }
}
