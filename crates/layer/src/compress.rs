//! Blob compression: what registries and `ADD` archives may hand us, and what we push.
//!
//! Reading sniffs the magic number, so callers never have to trust a media type. Writing offers
//! gzip (parallel, via `gzp`, for the default `tar+gzip` media type) and zstd (multithreaded);
//! bzip2 and xz are read-only because OCI layers never use them, only `ADD` of local archives does.

use std::io::{self, BufRead, BufReader, Read, Write};

/// A compression format of a blob or archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain, uncompressed bytes.
    None,
    /// gzip (RFC 1952), the default for OCI/Docker layers.
    Gzip,
    /// Zstandard, the `tar+zstd` layer media type.
    Zstd,
    /// bzip2, read-only (for `ADD`).
    Bzip2,
    /// xz, read-only (for `ADD`).
    Xz,
}

impl Compression {
    /// The suffix OCI adds to a layer media type for this compression (`+gzip`), so the image
    /// crate can name layers without a second table.
    pub fn media_type_suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => "+gzip",
            Compression::Zstd => "+zstd",
            Compression::Bzip2 => "+bzip2",
            Compression::Xz => "+xz",
        }
    }
}

impl Compression {
    /// The compression a layer media type declares (`...tar+gzip`, Docker's `...tar.gzip`,
    /// `...tar+zstd`), so a manifest's claim can be checked against [`detect`].
    pub fn from_media_type(media_type: &str) -> Compression {
        if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
            Compression::Gzip
        } else if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];

/// Recognises a compression by the first bytes of a stream (at least 6 for certainty); anything
/// unknown is treated as uncompressed, like Docker does.
pub fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if magic.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else if magic.starts_with(XZ_MAGIC) {
        Compression::Xz
    } else if magic.starts_with(BZIP2_MAGIC) {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

/// Wraps `r` in the right decoder for whatever it turns out to contain, so callers can read any
/// layer blob or `ADD` archive as plain bytes.
pub fn decompress<R: Read + Send + 'static>(r: R) -> io::Result<Box<dyn Read + Send>> {
    let mut br = BufReader::with_capacity(64 * 1024, r);
    // One fill may return fewer bytes than a magic number on a slow pipe; top up until we have
    // enough or hit EOF.
    let mut peek: Vec<u8> = Vec::with_capacity(8);
    {
        let buf = br.fill_buf()?;
        peek.extend_from_slice(buf.get(..buf.len().min(8)).unwrap_or_default());
    }
    if peek.len() < 6 && !peek.is_empty() {
        // Read the short prefix out and chain it back in front of the rest.
        let mut head = Vec::new();
        (&mut br).take(8).read_to_end(&mut head)?;
        let chained = io::Cursor::new(head.clone()).chain(br);
        return wrap(detect(&head), BufReader::new(chained));
    }
    wrap(detect(&peek), br)
}

fn wrap<R: BufRead + Send + 'static>(c: Compression, r: R) -> io::Result<Box<dyn Read + Send>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        #[cfg(feature = "zstd")]
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        #[cfg(feature = "bzip2")]
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        #[cfg(feature = "xz")]
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
        #[allow(unreachable_patterns)]
        other => return Err(not_compiled_in(other)),
    })
}

/// The error for a codec left out at build time (cargo features `zstd`, `bzip2`, `xz`): the
/// format is still recognised, so the message says what to enable instead of misreading bytes.
#[allow(dead_code)]
fn not_compiled_in(c: Compression) -> io::Error {
    let feature = match c {
        Compression::Zstd => "zstd",
        Compression::Bzip2 => "bzip2",
        Compression::Xz => "xz",
        _ => "?",
    };
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{c:?} support is not compiled in (enable rbuild's `{feature}` feature)"),
    )
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Compresses all of `r` into `w` and hands `w` back, so a layer can be streamed into the blob
/// store in one pass. `level` is the format's own scale (gzip 0-9, zstd 1-22); `None` picks the
/// format's default. Uses every available core, yet the bytes do not depend on the core count
/// (gzp blocks and zstd's multithreaded mode are both split by size, not by worker), so a blob
/// digest is reproducible across machines. Bzip2 and xz are refused: layers are never written in
/// them.
pub fn compress<R: Read, W: Write + Send + 'static>(
    r: R,
    w: W,
    c: Compression,
    level: Option<u32>,
) -> io::Result<W> {
    compress_with_threads(r, w, c, level, threads())
}

pub(crate) fn compress_with_threads<R: Read, W: Write + Send + 'static>(
    mut r: R,
    mut w: W,
    c: Compression,
    level: Option<u32>,
    threads: usize,
) -> io::Result<W> {
    let threads = threads.max(1);
    match c {
        Compression::None => {
            io::copy(&mut r, &mut w)?;
            w.flush()?;
            Ok(w)
        }
        Compression::Gzip => {
            use gzp::ZWriter;
            let level = flate2::Compression::new(level.unwrap_or(6).min(9));
            let mut enc = gzp::par::compress::ParCompressBuilder::<gzp::deflate::Gzip>::new()
                .compression_level(level)
                .num_threads(threads)
                .map_err(io::Error::other)?
                .from_writer(w);
            io::copy(&mut r, &mut enc)?;
            enc.finish().map_err(io::Error::other)
        }
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => Err(not_compiled_in(c)),
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let level = level.map(|l| l.clamp(1, 22) as i32).unwrap_or(3);
            let mut enc = zstd::stream::write::Encoder::new(w, level)?;
            // Always at least one worker: zstd's output is then independent of the worker count.
            enc.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
            io::copy(&mut r, &mut enc)?;
            enc.finish()
        }
        Compression::Bzip2 | Compression::Xz => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{c:?} is only supported for reading"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codecs of `cs` this build has (zstd is a cargo feature).
    fn compiled(cs: &[Compression]) -> Vec<Compression> {
        cs.iter()
            .copied()
            .filter(|c| cfg!(feature = "zstd") || *c != Compression::Zstd)
            .collect()
    }

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn round_trips_and_detects() {
        let data = sample();
        for c in compiled(&[Compression::None, Compression::Gzip, Compression::Zstd]) {
            let packed = compress(&data[..], Vec::new(), c, None).unwrap();
            assert_eq!(detect(&packed), c, "{c:?}");
            let mut back = Vec::new();
            decompress(io::Cursor::new(packed))
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{c:?}");
        }
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        // Several MiB so gzp and zstd really split the input into blocks/jobs.
        let data: Vec<u8> = sample().repeat(8);
        for c in compiled(&[Compression::Gzip, Compression::Zstd]) {
            let one = compress_with_threads(&data[..], Vec::new(), c, None, 1).unwrap();
            let three = compress_with_threads(&data[..], Vec::new(), c, None, 3).unwrap();
            let again = compress_with_threads(&data[..], Vec::new(), c, None, 3).unwrap();
            assert_eq!(one, three, "{c:?}");
            assert_eq!(three, again, "{c:?}");
        }
    }

    #[test]
    fn media_types_map_to_compressions() {
        for (mt, c) in [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
        ] {
            assert_eq!(Compression::from_media_type(mt), c, "{mt}");
        }
        assert_eq!(Compression::Gzip.media_type_suffix(), "+gzip");
    }

    #[test]
    #[cfg(all(feature = "bzip2", feature = "xz"))]
    fn reads_bzip2_and_xz() {
        let data = sample();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&data).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&data).unwrap();
        let xz = xz.finish().unwrap();
        for (packed, c) in [(bz, Compression::Bzip2), (xz, Compression::Xz)] {
            assert_eq!(detect(&packed), c);
            let mut back = Vec::new();
            decompress(io::Cursor::new(packed))
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{c:?}");
            assert!(compress(&b"x"[..], Vec::new(), c, None).is_err());
        }
    }

    #[test]
    fn short_and_empty_inputs_are_plain() {
        for input in [&b""[..], &b"ab"[..], &[0x1f][..]] {
            let mut back = Vec::new();
            decompress(io::Cursor::new(input.to_vec()))
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input);
        }
        assert_eq!(detect(&[0x1f]), Compression::None);
    }

    #[test]
    fn corrupt_gzip_is_an_error_not_a_panic() {
        let mut bad = compress(&sample()[..], Vec::new(), Compression::Gzip, None).unwrap();
        bad.truncate(bad.len() / 2);
        let mut sink = Vec::new();
        assert!(decompress(io::Cursor::new(bad))
            .unwrap()
            .read_to_end(&mut sink)
            .is_err());
    }
}
