//! Stream-merging an image's layers into one root filesystem tar, without unpacking anything.
//!
//! Unpacking to disk loses ownership when rootless and costs a full copy; merging the tars keeps
//! every header (uid/gid, modes, xattrs in PAX records) exactly as the layers carry them. A first
//! pass walks the layers top-down to decide which entries survive (OCI whiteout and opaque-dir
//! rules, upper paths shadowing lower ones); a second pass writes the survivors bottom-up so parent
//! directories and hardlink targets come before what needs them.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{ImageError, Images, LocalImage};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Cleans an entry path to `a/b/c` (no `./`, no trailing `/`); `None` if it holds `..`.
fn clean(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            p => out.push(p),
        }
    }
    Some(out.join(&b'/'))
}

/// Proper ancestors of `p`, shortest first.
fn ancestors(p: &[u8]) -> impl Iterator<Item = &[u8]> {
    p.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(move |(i, _)| p.get(..i).unwrap_or(&[]))
}

fn split_name(p: &[u8]) -> (&[u8], &[u8]) {
    match p.iter().rposition(|b| *b == b'/') {
        Some(i) => (p.get(..i).unwrap_or(&[]), p.get(i + 1..).unwrap_or(&[])),
        None => (&[], p),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn layer_err(img: &LocalImage, i: usize, e: std::io::Error) -> ImageError {
    let diff_id = img
        .layers
        .get(i)
        .map(|l| l.diff_id.to_string())
        .unwrap_or_default();
    ImageError::InvalidImage(format!("layer {diff_id}: {e}"))
}

/// Writes the merged filesystem of `img` as one tar into `out`.
pub(crate) fn flatten<W: Write>(
    images: &Images,
    img: &LocalImage,
    out: W,
) -> Result<W, ImageError> {
    // Pass 1, top-down: which (layer, entry index) pairs survive.
    let mut keep: Vec<HashSet<usize>> = vec![HashSet::new(); img.layers.len()];
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut hidden: HashSet<Vec<u8>> = HashSet::new(); // subtree hidden below
    let mut opaque: HashSet<Vec<u8>> = HashSet::new(); // children hidden below
    for (i, l) in img.layers.iter().enumerate().rev() {
        let mut new_seen = Vec::new();
        let mut new_hidden = Vec::new();
        let mut new_opaque = Vec::new();
        let mut src = images.open_layer(&l.diff_id)?;
        let mut ar = tar::Archive::new(BufReader::new(&mut src));
        for (n, entry) in ar.entries().map_err(|e| layer_err(img, i, e))?.enumerate() {
            let entry = entry.map_err(|e| layer_err(img, i, e))?;
            let raw = entry.path_bytes();
            let Some(p) = clean(&raw) else {
                return Err(ImageError::InvalidImage(format!(
                    "layer {} entry {:?} climbs out of the root with ..",
                    l.diff_id,
                    String::from_utf8_lossy(&raw)
                )));
            };
            if p.is_empty() {
                continue;
            }
            let (dir, name) = split_name(&p);
            if name == OPAQUE {
                new_opaque.push(dir.to_vec());
                continue;
            }
            if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                new_hidden.push(join(dir, target));
                continue;
            }
            let shadowed = seen.contains(&p)
                || hidden.contains(&p)
                || ancestors(&p).any(|a| hidden.contains(a) || opaque.contains(a));
            if shadowed {
                continue;
            }
            keep.get_mut(i).map(|k| k.insert(n));
            if !entry.header().entry_type().is_dir() {
                new_hidden.push(p.clone());
            }
            new_seen.push(p);
        }
        drop(ar);
        // Only a layer read to its end is verified (decoded variants); check before using it.
        src.finish()?;
        seen.extend(new_seen);
        hidden.extend(new_hidden);
        opaque.extend(new_opaque);
    }
    // Pass 2, bottom-up: copy the survivors with their headers.
    let mut builder = tar::Builder::new(out);
    for (i, l) in img.layers.iter().enumerate() {
        let Some(k) = keep.get(i) else { continue };
        if k.is_empty() {
            continue;
        }
        let mut src = images.open_layer(&l.diff_id)?;
        let mut ar = tar::Archive::new(BufReader::new(&mut src));
        for (n, entry) in ar.entries().map_err(|e| layer_err(img, i, e))?.enumerate() {
            let mut entry = entry.map_err(|e| layer_err(img, i, e))?;
            if !k.contains(&n) {
                continue;
            }
            let raw = entry.path_bytes().into_owned();
            let link = entry.link_name_bytes().map(|l| l.into_owned());
            let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
            if let Some(exts) = entry.pax_extensions().map_err(|e| layer_err(img, i, e))? {
                for ext in exts.flatten() {
                    let Ok(key) = ext.key() else { continue };
                    if !matches!(key, "path" | "linkpath" | "size") {
                        pax.push((key.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
            if !pax.is_empty() {
                builder
                    .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .map_err(|e| ImageError::io("rootfs tar", e))?;
            }
            let mut header = entry.header().clone();
            let path = Path::new(OsStr::from_bytes(&raw));
            let result = match link {
                Some(target)
                    if header.entry_type().is_symlink() || header.entry_type().is_hard_link() =>
                {
                    builder.append_link(&mut header, path, Path::new(OsStr::from_bytes(&target)))
                }
                _ => builder.append_data(&mut header, path, &mut entry as &mut dyn Read),
            };
            result.map_err(|e| ImageError::io("rootfs tar", e))?;
        }
        drop(ar);
        src.finish()?;
    }
    builder
        .into_inner()
        .map_err(|e| ImageError::io("rootfs tar", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_and_ancestors() {
        assert_eq!(clean(b"./a//b/").as_deref(), Some(&b"a/b"[..]));
        assert_eq!(clean(b"a/../b"), None);
        let a: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(a, vec![&b"a"[..], &b"a/b"[..]]);
        assert_eq!(split_name(b"a/b/.wh.c"), (&b"a/b"[..], &b".wh.c"[..]));
        assert_eq!(split_name(b"top"), (&b""[..], &b"top"[..]));
    }
}
