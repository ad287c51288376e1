//! Which ADD sources docker extracts: every local tar archive a source names, a wildcard's matches
//! included, each extracted as a single archive source would be.

use std::io::Read;
use std::path::{Path, PathBuf};

/// One thing an ADD source turns into.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AddSource {
    /// A local archive to extract into the destination.
    Archive(PathBuf),
    /// A source (as written, or one wildcard match) to copy as COPY would.
    Plain(String),
}

/// Splits one local ADD source into archives and plain sources. A source with no archive among
/// its matches stays whole, so COPY's own matching and errors apply to it unchanged.
pub(crate) fn classify(
    context: &rbuild_context::Context,
    src: &str,
) -> Result<Vec<AddSource>, rbuild_context::ContextError> {
    let matches = context.expand_source(src)?;
    if !matches.iter().any(|m| is_tar_archive(&m.host)) {
        return Ok(vec![AddSource::Plain(src.to_string())]);
    }
    Ok(matches
        .into_iter()
        .map(|m| {
            if is_tar_archive(&m.host) {
                AddSource::Archive(m.host)
            } else {
                AddSource::Plain(m.lexical)
            }
        })
        .collect())
}

/// Whether ADD extracts this file: a tar archive, plain or compressed, detected by content.
pub(crate) fn is_tar_archive(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    // `decompress` sniffs the compression itself, so one open is enough.
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(mut r) = rbuild_layer::compress::decompress(f) else {
        return false;
    };
    let mut block = [0u8; 512];
    r.read_exact(&mut block).is_ok() && &block[257..262] == b"ustar"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(path: &Path, name: &str) {
        let f = std::fs::File::create(path).unwrap();
        let mut b = tar::Builder::new(f);
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &b"x\n"[..]).unwrap();
        b.finish().unwrap();
    }

    #[test]
    fn wildcard_matches_split_into_archives_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        tar_with(&dir.path().join("sub/a.tar"), "a");
        std::fs::write(dir.path().join("sub/b.txt"), "b").unwrap();
        let ctx = rbuild_context::Context::open(dir.path(), None).unwrap();
        let got = classify(&ctx, "sub/*").unwrap();
        assert_eq!(
            got,
            vec![
                AddSource::Archive(dir.path().join("sub/a.tar")),
                AddSource::Plain("sub/b.txt".into())
            ]
        );
        assert_eq!(
            classify(&ctx, "sub/*.txt").unwrap(),
            vec![AddSource::Plain("sub/*.txt".into())]
        );
        assert_eq!(
            classify(&ctx, "missing").unwrap(),
            vec![AddSource::Plain("missing".into())]
        );
    }
}
