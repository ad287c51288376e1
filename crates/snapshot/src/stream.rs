//! A committed tree's layer tar as a stream: written on a thread into a bounded channel and read
//! by an export, checked against the diff id when the stream ends, never stored.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rbuild_digest::Digest;

use crate::error::SnapshotError;

/// Bytes per hand-over, and how many may wait: a few MiB in flight whatever the layer size.
const CHUNK: usize = 256 * 1024;
const IN_FLIGHT: usize = 4;

/// The writing end: fills chunks and sends them; fails once the reader is gone.
struct ChunkWriter {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the layer's reader stopped"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let take = data.len().min(CHUNK - self.buf.len());
        self.buf
            .extend_from_slice(data.get(..take).unwrap_or_default());
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The reading end handed to the export.
pub(crate) struct TreeStream {
    rx: Option<Receiver<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    worker: Option<JoinHandle<Result<Digest, SnapshotError>>>,
    expected: Digest,
    tree: PathBuf,
}

impl TreeStream {
    /// Starts writing the layer of `tree` (see [`crate::diff::write_tree_to`]) on a thread.
    pub(crate) fn start(
        tree: PathBuf,
        userxattr: bool,
        expected: Digest,
    ) -> Result<TreeStream, SnapshotError> {
        let (tx, rx) = sync_channel::<Vec<u8>>(IN_FLIGHT);
        let t = tree.clone();
        let worker = std::thread::Builder::new()
            .name("layer-stream".into())
            .spawn(move || {
                let mut w = ChunkWriter {
                    buf: Vec::with_capacity(CHUNK),
                    tx,
                };
                let d = crate::diff::write_tree_to(&mut w, &t, userxattr, &expected)?;
                w.send().map_err(|source| SnapshotError::Io {
                    action: "stream the layer of",
                    path: t.clone(),
                    source,
                })?;
                Ok(d)
            })
            .map_err(|source| SnapshotError::Io {
                action: "start a thread to stream",
                path: tree.clone(),
                source,
            })?;
        Ok(TreeStream {
            rx: Some(rx),
            chunk: Vec::new(),
            pos: 0,
            worker: Some(worker),
            expected,
            tree,
        })
    }

    /// At the end of the chunks: the writer's result, checked against the diff id.
    fn end(&mut self) -> io::Result<()> {
        let Some(worker) = self.worker.take() else {
            return Ok(());
        };
        let result = worker
            .join()
            .map_err(|_| io::Error::other("the layer's writing thread panicked"))?;
        let d = self.expected;
        match result {
            Ok(actual) if actual == d => Ok(()),
            Ok(actual) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("layer {d}: {}", crate::tree_changed(&self.tree, &actual)),
            )),
            Err(e) => Err(io::Error::other(format!(
                "layer {d}: {}",
                crate::tree_unreadable(&self.tree, &e)
            ))),
        }
    }
}

impl Read for TreeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.chunk.len() {
            let next = self.rx.as_ref().and_then(|rx| rx.recv().ok());
            match next {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                None => {
                    self.rx = None;
                    self.end()?;
                    return Ok(0);
                }
            }
        }
        let rest = self.chunk.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        Ok(n)
    }
}

impl Drop for TreeStream {
    fn drop(&mut self) {
        // A reader that stops early: closing the channel makes the writer fail and end; wait for
        // it so no thread outlives the stream.
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
