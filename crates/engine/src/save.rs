//! Writing images as tar archives to a file or to standard output: one exporter for
//! `rbuild save` and for a build's `-o type=docker|oci|tar` outputs, so both write the same
//! bytes and both understand buildx's `dest=-`.

use std::io::Write;
use std::path::Path;

use rbuild_image::export::{ArchiveFormat, ExportCompression};
use rbuild_image::{Images, LocalImage, Reference};

use crate::BuildError;

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
