//! Writing images as tar archives to a file or to standard output: one exporter for
//! `rbuild save` and for a build's `-o type=docker|oci|tar` outputs, so both write the same
//! bytes and both understand buildx's `dest=-`.

use std::io::Write;
use std::path::Path;

use rbuild_image::export::{ArchiveFormat, ExportCompression};
use rbuild_image::{Images, LocalImage, Reference};

use crate::BuildError;

/// What `docker save NAME...` writes for each argument: the image it names, with the name as
/// the archive's tag when it was given by name (an id, full or short, tags nothing).
pub fn resolve_items<S: AsRef<str>>(
    images: &Images,
    names: &[S],
) -> Result<Vec<(LocalImage, Vec<Reference>)>, BuildError> {
    let mut items = Vec::with_capacity(names.len());
    for n in names {
        let n = n.as_ref();
        let img = images.resolve(n)?;
        let tags = match Reference::parse(n) {
            Ok(r) if !looks_like_id(n) => vec![r],
            _ => Vec::new(),
        };
        items.push((img, tags));
    }
    Ok(items)
}

fn looks_like_id(s: &str) -> bool {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether an output destination means standard output (`-`, as docker and buildx spell it).
pub fn is_stdout(dest: &Path) -> bool {
    dest.as_os_str() == "-"
}

/// Writes `items` as a `format` archive to `dest`: standard output for `-` (streamed, since a
/// pipe cannot be renamed into place), else a file that appears only once complete.
pub fn save(
    images: &Images,
    items: &[(LocalImage, Vec<Reference>)],
    format: ArchiveFormat,
    compression: ExportCompression,
    dest: &Path,
) -> Result<(), BuildError> {
    if !is_stdout(dest) {
        rbuild_image::export::write_archive_file(images, items, format, compression, dest)?;
        return Ok(());
    }
    use std::os::fd::AsFd;
    // A duplicate of fd 1, unbuffered by std's line buffering, which would split binary data
    // at every newline byte.
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| BuildError::io("<stdout>", e))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::from(fd));
    let mut out = rbuild_image::export::write_archive(images, items, format, compression, out)?;
    out.flush().map_err(|e| BuildError::io("<stdout>", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_not_names() {
        assert!(looks_like_id("0123456789ab"));
        assert!(looks_like_id(
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ));
        assert!(!looks_like_id("app:1"));
        assert!(!looks_like_id("deadbeef"));
        assert!(is_stdout(Path::new("-")));
        assert!(!is_stdout(Path::new("./-")));
    }
}
