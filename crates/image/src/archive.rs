//! Reading and writing the files of image archives without trusting names inside them.
//!
//! A [`Source`] is an archive (tar or directory) read by name: tar entries are indexed once and read
//! back by offset, never unpacked, and every name (including symlink and hardlink targets) is
//! resolved lexically inside the archive root, so `..`, absolute paths and links cannot reach
//! outside it. A [`Sink`] writes generated names into a directory or a deterministic tar stream.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::ImageError;

/// Longest symlink chain followed inside an archive, like the kernel's ELOOP limit.
const MAX_LINK_HOPS: usize = 40;

/// Normalises `name` relative to `base` (a directory name inside the archive) into a clean
/// `a/b/c` form; `None` if it would climb above the root.
fn normalize(base: &str, name: &str) -> Option<String> {
    let mut parts: Vec<&str> = if name.starts_with('/') {
        Vec::new()
    } else {
        base.split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect()
    };
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

fn parent(name: &str) -> &str {
    name.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// A stream of one file's bytes, owned so it can move into a decompression thread.
pub(crate) type FileReader = Box<dyn Read + Send>;

/// An image archive read by name.
pub(crate) trait Source {
    /// The archive's path, for error messages.
    fn archive(&self) -> &Path;
    /// Whether a regular file of that name exists (after link resolution).
    fn exists(&self, name: &str) -> bool;
    /// Opens a file by name.
    fn open(&self, name: &str) -> Result<(FileReader, u64), ImageError>;
    /// Reads a small file (JSON) whole; refuses more than `limit` bytes.
    fn read_all(&self, name: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let (r, size) = self.open(name)?;
        if size > limit {
            return Err(ImageError::BadArchive {
                archive: self.archive().to_path_buf(),
                reason: format!(
                    "{name} is {size} bytes, more than the {limit} expected for metadata"
                ),
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| ImageError::io(self.archive(), e))?;
        Ok(buf)
    }
}

enum TarEntry {
    File { offset: u64, size: u64 },
    Link(String),
    Dir,
}

/// A tar file indexed by entry name.
pub(crate) struct TarSource {
    path: PathBuf,
    entries: HashMap<String, TarEntry>,
}

impl TarSource {
    /// Indexes every entry of an (uncompressed) tar file.
    pub(crate) fn open(path: &Path) -> Result<TarSource, ImageError> {
        let io_err = |e| ImageError::io(path, e);
        let file = File::open(path).map_err(io_err)?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        for entry in archive.entries().map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let raw = entry.path_bytes();
            let Ok(name) = std::str::from_utf8(&raw) else {
                continue;
            };
            let Some(name) = normalize("", name) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            let kind = entry.header().entry_type();
            let value = if kind.is_file() || kind == tar::EntryType::Continuous {
                TarEntry::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                }
            } else if kind.is_dir() {
                TarEntry::Dir
            } else if kind.is_symlink() || kind.is_hard_link() {
                let Some(target) = entry
                    .link_name_bytes()
                    .and_then(|t| std::str::from_utf8(&t).ok().map(str::to_string))
                else {
                    continue;
                };
                let base = if kind.is_symlink() { parent(&name) } else { "" };
                let Some(target) = normalize(base, &target) else {
                    continue;
                };
                TarEntry::Link(target)
            } else {
                continue;
            };
            entries.insert(name, value);
        }
        Ok(TarSource {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Follows links to a regular file entry; also resolves links in parent directories.
    fn resolve(&self, name: &str) -> Option<(u64, u64)> {
        let mut current = normalize("", name)?;
        for _ in 0..MAX_LINK_HOPS {
            match self.entries.get(&current) {
                Some(TarEntry::File { offset, size }) => return Some((*offset, *size)),
                Some(TarEntry::Link(t)) => current = t.clone(),
                Some(TarEntry::Dir) => return None,
                None => {
                    // maybe a parent directory is a symlink
                    let parts: Vec<&str> = current.split('/').collect();
                    let mut replaced = None;
                    for i in (1..parts.len()).rev() {
                        let prefix = parts.get(..i).unwrap_or(&[]).join("/");
                        if let Some(TarEntry::Link(t)) = self.entries.get(&prefix) {
                            let rest = parts.get(i..).unwrap_or(&[]).join("/");
                            replaced = normalize(t, &rest);
                            break;
                        }
                    }
                    current = replaced?;
                }
            }
        }
        None
    }
}

impl Source for TarSource {
    fn archive(&self) -> &Path {
        &self.path
    }
    fn exists(&self, name: &str) -> bool {
        self.resolve(name).is_some()
    }
    fn open(&self, name: &str) -> Result<(FileReader, u64), ImageError> {
        let (offset, size) = self.resolve(name).ok_or_else(|| ImageError::MissingFile {
            archive: self.path.clone(),
            file: name.to_string(),
        })?;
        let mut f = File::open(&self.path).map_err(|e| ImageError::io(&self.path, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| ImageError::io(&self.path, e))?;
        Ok((Box::new(f.take(size)), size))
    }
}

/// A directory (OCI layout) read by name; resolved paths must stay under its root.
pub(crate) struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// Opens a directory archive.
    pub(crate) fn open(root: &Path) -> Result<DirSource, ImageError> {
        let root = root.canonicalize().map_err(|e| ImageError::io(root, e))?;
        Ok(DirSource { root })
    }

    fn path_of(&self, name: &str) -> Option<PathBuf> {
        let clean = normalize("", name)?;
        let p = self.root.join(clean).canonicalize().ok()?;
        (p.starts_with(&self.root) && p.is_file()).then_some(p)
    }
}

impl Source for DirSource {
    fn archive(&self) -> &Path {
        &self.root
    }
    fn exists(&self, name: &str) -> bool {
        self.path_of(name).is_some()
    }
    fn open(&self, name: &str) -> Result<(FileReader, u64), ImageError> {
        let p = self.path_of(name).ok_or_else(|| ImageError::MissingFile {
            archive: self.root.clone(),
            file: name.to_string(),
        })?;
        let f = File::open(&p).map_err(|e| ImageError::io(&p, e))?;
        let size = f.metadata().map_err(|e| ImageError::io(&p, e))?.len();
        Ok((Box::new(f), size))
    }
}

/// Where an exporter puts files; names are generated by rbuild, never taken from input.
pub(crate) trait Sink {
    /// Adds a file with `size` bytes read from `r`; content-addressed names already written are skipped.
    fn add_file(&mut self, name: &str, size: u64, r: &mut dyn Read) -> Result<(), ImageError>;
    /// Adds a small file from memory.
    fn add_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), ImageError> {
        self.add_file(name, bytes.len() as u64, &mut &bytes[..])
    }
    /// Whether a name was already written by this sink.
    fn has(&self, name: &str) -> bool;
}

/// Writes a deterministic tar: sorted-by-call order, mtime 0, root-owned, 0644/0755.
pub(crate) struct TarSink<W: Write> {
    builder: tar::Builder<W>,
    written: BTreeSet<String>,
    what: PathBuf,
}

impl<W: Write> TarSink<W> {
    pub(crate) fn new(out: W, what: impl Into<PathBuf>) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        TarSink {
            builder,
            written: BTreeSet::new(),
            what: what.into(),
        }
    }

    fn ensure_dirs(&mut self, name: &str) -> Result<(), ImageError> {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for p in parts.iter().take(parts.len().saturating_sub(1)) {
            prefix.push_str(p);
            prefix.push('/');
            if self.written.insert(prefix.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(0);
                self.builder
                    .append_data(&mut h, &prefix, io::empty())
                    .map_err(|e| ImageError::io(&self.what, e))?;
            }
        }
        Ok(())
    }

    /// Ends the tar and returns the writer.
    pub(crate) fn finish(self) -> Result<W, ImageError> {
        self.builder
            .into_inner()
            .map_err(|e| ImageError::io(&self.what, e))
    }
}

impl<W: Write> Sink for TarSink<W> {
    fn add_file(&mut self, name: &str, size: u64, r: &mut dyn Read) -> Result<(), ImageError> {
        if self.written.contains(name) {
            return Ok(());
        }
        self.ensure_dirs(name)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        let mut limited = r.take(size);
        self.builder
            .append_data(&mut h, name, &mut limited)
            .map_err(|e| ImageError::io(&self.what, e))?;
        self.written.insert(name.to_string());
        Ok(())
    }
    fn has(&self, name: &str) -> bool {
        self.written.contains(name)
    }
}

/// Writes files under a directory.
pub(crate) struct DirSink {
    root: PathBuf,
    written: BTreeSet<String>,
}

impl DirSink {
    pub(crate) fn new(root: &Path) -> Result<Self, ImageError> {
        std::fs::create_dir_all(root).map_err(|e| ImageError::io(root, e))?;
        Ok(DirSink {
            root: root.to_path_buf(),
            written: BTreeSet::new(),
        })
    }
}

impl Sink for DirSink {
    fn add_file(&mut self, name: &str, size: u64, r: &mut dyn Read) -> Result<(), ImageError> {
        let path = self.root.join(name);
        let blob = name.starts_with("blobs/");
        if self.written.contains(name)
            || (blob && path.metadata().map(|m| m.len() == size).unwrap_or(false))
        {
            self.written.insert(name.to_string());
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        }
        let tmp = self.root.join(format!("{name}.rbuild-tmp"));
        let mut f = File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        let n = io::copy(&mut r.take(size), &mut f).map_err(|e| ImageError::io(&tmp, e))?;
        if n != size {
            let _ = std::fs::remove_file(&tmp);
            return Err(ImageError::io(
                &path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("expected {size} bytes, got {n}"),
                ),
            ));
        }
        f.sync_all().map_err(|e| ImageError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| ImageError::io(&path, e))?;
        self.written.insert(name.to_string());
        Ok(())
    }
    fn has(&self, name: &str) -> bool {
        self.written.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_stays_inside() {
        let table: &[(&str, &str, Option<&str>)] = &[
            ("", "a/b", Some("a/b")),
            ("", "./a//b/.", Some("a/b")),
            ("", "/etc/passwd", Some("etc/passwd")),
            ("", "../x", None),
            ("a", "../x", Some("x")),
            ("a", "../../x", None),
            ("a/b", "c", Some("a/b/c")),
            ("a/b", "/c", Some("c")),
        ];
        for (base, name, want) in table {
            assert_eq!(normalize(base, name).as_deref(), *want, "{base:?} {name:?}");
        }
    }
}
