//! A writer that hashes what passes through on a second thread, so reading the files of a layer
//! and hashing its tar overlap instead of taking turns (sha256 of a 300 MB step is about 0.2 s
//! here, as long as reading it from the page cache).

use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rbuild_digest::{Digest, Hasher};

/// Bytes handed to the hashing thread at a time: large enough that the hand-over costs nothing
/// next to hashing it, small enough that the two threads overlap on small layers too.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight; bounds memory to a few MiB whatever the layer size.
const IN_FLIGHT: usize = 4;

enum Hashing {
    /// The thread could not be started: hash on the writing thread.
    Inline(Hasher),
    Piped(Piped),
}

struct Piped {
    buf: Vec<u8>,
    to_hasher: Option<SyncSender<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
    worker: Option<JoinHandle<Digest>>,
}

impl Piped {
    /// Sends what is buffered, closes the channel and waits for the digest.
    fn finish(&mut self) -> io::Result<Digest> {
        let tx = self.to_hasher.take().ok_or_else(hasher_died)?;
        if !self.buf.is_empty() {
            tx.send(std::mem::take(&mut self.buf))
                .map_err(|_| hasher_died())?;
        }
        drop(tx);
        self.worker
            .take()
            .ok_or_else(hasher_died)?
            .join()
            .map_err(|_| hasher_died())
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        // An abandoned layer: stop the thread (closing the channel ends its loop) and wait, so no
        // thread outlives its writer.
        drop(self.to_hasher.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Like [`rbuild_digest::DigestWriter`], but the hashing runs on its own short-lived thread.
pub(crate) struct PipedDigestWriter<W> {
    inner: W,
    hashing: Hashing,
    written: u64,
}

impl<W: Write> PipedDigestWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        let (to_hasher, chunks) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let (give_back, recycled) = sync_channel::<Vec<u8>>(IN_FLIGHT + 1);
        let spawned = std::thread::Builder::new()
            .name("layer-hash".into())
            .spawn(move || {
                let mut h = Hasher::new();
                for mut chunk in chunks {
                    h.update(&chunk);
                    chunk.clear();
                    // The writer may be gone or have enough buffers: then the chunk is freed.
                    let _ = give_back.try_send(chunk);
                }
                h.finish()
            });
        let hashing = match spawned {
            Ok(worker) => Hashing::Piped(Piped {
                buf: Vec::with_capacity(CHUNK),
                to_hasher: Some(to_hasher),
                recycled,
                worker: Some(worker),
            }),
            Err(_) => Hashing::Inline(Hasher::new()),
        };
        PipedDigestWriter {
            inner,
            hashing,
            written: 0,
        }
    }

    /// Returns the inner writer with the digest and size of everything written.
    pub(crate) fn finish(mut self) -> io::Result<(W, Digest, u64)> {
        let digest = match &mut self.hashing {
            Hashing::Inline(h) => h.clone().finish(),
            Hashing::Piped(p) => p.finish()?,
        };
        Ok((self.inner, digest, self.written))
    }
}

fn hasher_died() -> io::Error {
    io::Error::other("the layer's hashing thread stopped")
}

impl<W: Write> Write for PipedDigestWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        let data = data.get(..n).unwrap_or_default();
        self.written += n as u64;
        match &mut self.hashing {
            Hashing::Inline(h) => h.update(data),
            Hashing::Piped(p) => {
                let mut rest = data;
                while !rest.is_empty() {
                    let take = rest.len().min(CHUNK - p.buf.len());
                    let (now, later) = rest.split_at(take);
                    p.buf.extend_from_slice(now);
                    rest = later;
                    if p.buf.len() == CHUNK {
                        let fresh = p
                            .recycled
                            .try_recv()
                            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                        let full = std::mem::replace(&mut p.buf, fresh);
                        let tx = p.to_hasher.as_ref().ok_or_else(hasher_died)?;
                        tx.send(full).map_err(|_| hasher_died())?;
                    }
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_and_size_match_the_plain_hash_for_any_write_pattern() {
        let data: Vec<u8> = (0..(3 * CHUNK + 1234))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for piece in [1, 511, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK] {
            let mut w = PipedDigestWriter::new(Vec::new());
            for part in data.chunks(piece) {
                w.write_all(part).unwrap();
            }
            let (out, d, n) = w.finish().unwrap();
            assert_eq!(out, data, "piece {piece}");
            assert_eq!(d, Digest::of(&data), "piece {piece}");
            assert_eq!(n, data.len() as u64);
        }
        let (_, d, n) = PipedDigestWriter::new(io::sink()).finish().unwrap();
        assert_eq!((d, n), (Digest::of(b""), 0));
    }

    #[test]
    fn dropping_an_unfinished_writer_stops_its_thread() {
        let mut w = PipedDigestWriter::new(io::sink());
        w.write_all(&vec![1u8; 3 * CHUNK]).unwrap();
        drop(w);
    }
}
