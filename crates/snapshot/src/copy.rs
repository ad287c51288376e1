//! Tree copy for the copy snapshotter: reflinks where the filesystem can, a plain copy where it
//! cannot, and everything a rootfs needs kept (ownership, modes, xattrs, times, hardlinks,
//! symlinks, device nodes, fifos). Never follows a symlink.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid, CWD};
use rustix::io::Errno;

use crate::error::{errno_err, io_err, SnapshotError};
use crate::fsx;

struct CopyCtx {
    same_owner: bool,
    /// (dev, ino) of multiply-linked sources to the first destination path made for them.
    links: HashMap<(u64, u64), PathBuf>,
    /// Cleared after the first failed FICLONE, so a filesystem without reflinks is not asked again.
    reflink: bool,
}

/// Copies everything below `src` into the existing directory `dst`, then gives `dst` the metadata
/// of `src`.
pub(crate) fn copy_tree(src: &Path, dst: &Path, same_owner: bool) -> Result<(), SnapshotError> {
    let mut ctx = CopyCtx {
        same_owner,
        links: HashMap::new(),
        reflink: true,
    };
    copy_dir_contents(&mut ctx, src, dst)?;
    let md = fs::symlink_metadata(src).map_err(io_err("stat", src))?;
    set_meta(&ctx, src, dst, &md)
}

fn copy_dir_contents(ctx: &mut CopyCtx, src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    for ent in fs::read_dir(src).map_err(io_err("list", src))? {
        let ent = ent.map_err(io_err("list", src))?;
        let s = src.join(ent.file_name());
        let d = dst.join(ent.file_name());
        let md = fs::symlink_metadata(&s).map_err(io_err("stat", &s))?;
        let ft = md.file_type();
        if ft.is_dir() {
            fsx::mkdir(&d, 0o700)?;
            copy_dir_contents(ctx, &s, &d)?;
            set_meta(ctx, &s, &d, &md)?;
            continue;
        }
        if md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = ctx.links.get(&key) {
                fs::hard_link(first, &d).map_err(io_err("hardlink", &d))?;
                continue;
            }
            ctx.links.insert(key, d.clone());
        }
        if ft.is_file() {
            copy_file(ctx, &s, &d)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&s).map_err(io_err("read symlink", &s))?;
            std::os::unix::fs::symlink(&target, &d).map_err(io_err("create symlink", &d))?;
        } else {
            let kind = if ft.is_fifo() {
                FileType::Fifo
            } else if ft.is_char_device() {
                FileType::CharacterDevice
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else {
                FileType::Socket
            };
            rfs::mknodat(CWD, &d, kind, Mode::from_raw_mode(0o600), md.rdev())
                .map_err(errno_err("create special file", &d))?;
        }
        set_meta(ctx, &s, &d, &md)?;
    }
    Ok(())
}

fn copy_file(ctx: &mut CopyCtx, s: &Path, d: &Path) -> Result<(), SnapshotError> {
    let mut src = File::open(s).map_err(io_err("open", s))?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(d)
        .map_err(io_err("create", d))?;
    if ctx.reflink {
        match rfs::ioctl_ficlone(&dst, &src) {
            Ok(()) => return Ok(()),
            Err(_) => ctx.reflink = false,
        }
    }
    io::copy(&mut src, &mut dst).map_err(io_err("copy", s))?;
    Ok(())
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    }
}

/// Owner first (chown clears setuid bits and `security.capability`), then xattrs, mode, times.
fn set_meta(ctx: &CopyCtx, s: &Path, d: &Path, md: &Metadata) -> Result<(), SnapshotError> {
    if ctx.same_owner {
        rfs::chownat(
            CWD,
            d,
            Some(Uid::from_raw(md.uid())),
            Some(Gid::from_raw(md.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno_err("chown", d))?;
    }
    for (name, value) in fsx::read_xattrs(s)? {
        match rfs::lsetxattr(
            d,
            OsStr::from_bytes(&name),
            &value,
            rfs::XattrFlags::empty(),
        ) {
            Ok(()) => {}
            // Privileged namespaces a rootless copy cannot write; nothing better to do.
            Err(Errno::PERM | Errno::NOTSUP) if !ctx.same_owner => {}
            Err(e) => return Err(errno_err("set xattr on", d)(e)),
        }
    }
    if !md.file_type().is_symlink() {
        fsx::chmod(d, md.mode() & 0o7777)?;
    }
    let times = Timestamps {
        last_access: ts(md.atime(), md.atime_nsec()),
        last_modification: ts(md.mtime(), md.mtime_nsec()),
    };
    rfs::utimensat(CWD, d, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(errno_err("set times of", d))
}
