//! Byte-by-byte tar construction for tests, so hostile archives can contain exactly what an
//! attacker would write (no library sanitising names on the way in).
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct RawTar {
    pub bytes: Vec<u8>,
}

fn octal(field: &mut [u8], v: u64) {
    let width = field.len() - 1;
    let s = format!("{v:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

/// A ustar header with the given fields and a correct checksum.
pub fn header(name: &[u8], typ: u8, size: u64, link: &[u8], mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_000_000);
    h[156] = typ;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    checksum(&mut h);
    h
}

pub fn checksum(h: &mut [u8; 512]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

impl RawTar {
    pub fn new() -> Self {
        RawTar { bytes: Vec::new() }
    }
    pub fn raw_header(&mut self, h: [u8; 512]) -> &mut Self {
        self.bytes.extend_from_slice(&h);
        self
    }
    pub fn data(&mut self, d: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(d);
        let pad = (512 - d.len() % 512) % 512;
        self.bytes.resize(self.bytes.len() + pad, 0);
        self
    }
    pub fn file(&mut self, name: &str, d: &[u8]) -> &mut Self {
        self.raw_header(header(name.as_bytes(), b'0', d.len() as u64, b"", 0o644))
            .data(d)
    }
    pub fn file_mode(&mut self, name: &str, d: &[u8], mode: u32) -> &mut Self {
        self.raw_header(header(name.as_bytes(), b'0', d.len() as u64, b"", mode))
            .data(d)
    }
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw_header(header(name.as_bytes(), b'5', 0, b"", 0o755))
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw_header(header(name.as_bytes(), b'2', 0, target.as_bytes(), 0o777))
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw_header(header(name.as_bytes(), b'1', 0, target.as_bytes(), 0o644))
    }
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.raw_header(header(
            b"PaxHeaders.0/x",
            b'x',
            body.len() as u64,
            b"",
            0o644,
        ))
        .data(&body)
    }
    pub fn end(&mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&[0u8; 1024]);
        self.bytes.clone()
    }
}

/// A scratch area: `root/` to apply into and `outside/` next to it with a sentinel that no test
/// may ever touch.
pub struct Arena {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
    snapshot: Vec<(String, u64, u64, Vec<u8>)>,
}

fn snapshot(dir: &Path) -> Vec<(String, u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = fs::symlink_metadata(e.path()).unwrap();
            let content = if md.is_file() {
                fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            out.push((
                e.path().display().to_string(),
                md.nlink(),
                u64::from(md.mode()),
                content,
            ));
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

impl Arena {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir_all(outside.join("etc")).unwrap();
        fs::write(outside.join("sentinel"), b"keep").unwrap();
        fs::write(outside.join("etc/passwd"), b"root:x:0:0").unwrap();
        let snapshot = snapshot(tmp.path());
        let mut a = Arena {
            tmp,
            root,
            outside,
            snapshot: Vec::new(),
        };
        // Only what is outside root counts.
        a.snapshot = snapshot
            .into_iter()
            .filter(|(p, ..)| !p.starts_with(&a.root.display().to_string()))
            .collect();
        a
    }

    /// Panics unless everything outside root is exactly as it was.
    pub fn assert_outside_untouched(&self) {
        let now: Vec<_> = snapshot(self.tmp.path())
            .into_iter()
            .filter(|(p, ..)| !p.starts_with(&self.root.display().to_string()))
            .collect();
        assert_eq!(now, self.snapshot, "something outside the root changed");
    }
}
