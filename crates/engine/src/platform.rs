//! Platforms in the engine: which images may stand for a stage's platform, and whether a RUN step
//! of a foreign architecture can execute here.
//!
//! A foreign RUN step runs its binaries through a binfmt_misc handler, as BuildKit and buildah do:
//! the kernel starts the emulator for any ELF of that architecture. rbuild needs the handler to
//! have the `F` (fix-binary) flag, because the emulator is opened when the handler is registered
//! and so need not exist inside the step's root; without `F` the kernel would look for
//! `/usr/bin/qemu-*-static` in the container and the step would fail with a baffling ENOENT.
//! Registering handlers needs root and changes the host, so the library only checks (the
//! project's `scripts/install-deps.sh` registers Debian's `qemu-user-static` handlers).

use std::path::Path;

use rbuild_dockerfile::Platform;
use rbuild_image::LocalImage;

use crate::BuildError;

/// Where the kernel lists binfmt_misc handlers.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Whether `img` is an image for `platform`. An image whose config names no platform (some
/// hand-made ones) is taken as it is, since nothing says it is for another one.
pub(crate) fn image_is_for(img: &LocalImage, platform: &Platform) -> bool {
    img.config.platform().is_none_or(|p| platform.matches(&p))
}

/// The message for an image of the wrong platform: both platforms, so the user sees why it was
/// not used.
pub(crate) fn wrong_platform(what: &str, img: &LocalImage, want: &Platform) -> String {
    let have = img
        .config
        .platform()
        .map(|p| p.normalized().to_string())
        .unwrap_or_else(|| "of unknown platform".into());
    format!("{what} is for {have}, not for {want}; it is never used for another platform")
}

/// ELF `e_machine` values, for telling a handler's architecture from its magic bytes.
fn elf_machine(p: &Platform) -> Option<u16> {
    Some(match p.normalized().architecture.as_str() {
        "386" => 3,
        "amd64" => 62,
        "arm" => 40,
        "arm64" => 183,
        "ppc64" | "ppc64le" => 21,
        "s390x" => 22,
        "riscv64" => 243,
        "mips64" | "mips64le" => 8,
        "loong64" => 258,
        _ => return None,
    })
}

/// A registered binfmt_misc handler, as `/proc/sys/fs/binfmt_misc/NAME` describes it.
#[derive(Debug, PartialEq, Eq)]
struct Handler {
    enabled: bool,
    interpreter: String,
    flags: String,
    /// The ELF machine its magic matches, when it is an ELF magic handler.
    machine: Option<u16>,
}

fn parse_handler(text: &str) -> Option<Handler> {
    let mut h = Handler {
        enabled: false,
        interpreter: String::new(),
        flags: String::new(),
        machine: None,
    };
    let mut magic = None;
    let mut mask = None;
    for line in text.lines() {
        match line.split_once(' ') {
            _ if line == "enabled" => h.enabled = true,
            Some(("interpreter", v)) => h.interpreter = v.to_string(),
            Some(("flags:", v)) => h.flags = v.trim().to_string(),
            Some(("magic", v)) => magic = hex(v),
            Some(("mask", v)) => mask = hex(v),
            _ => {}
        }
    }
    // ELF header: e_machine is bytes 18..20 (little or big endian as byte 5 says).
    if let Some(m) = magic.filter(|m| m.len() >= 20 && m.starts_with(b"\x7fELF")) {
        let masked = |i: usize| {
            m[i] & mask
                .as_ref()
                .and_then(|k| k.get(i))
                .copied()
                .unwrap_or(0xff)
        };
        h.machine = Some(if m[5] == 2 {
            u16::from_be_bytes([masked(18), masked(19)])
        } else {
            u16::from_le_bytes([masked(18), masked(19)])
        });
    }
    Some(h)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether the kernel runs binaries of `platform` here (natively, or through an enabled
/// binfmt_misc handler with the `F` flag); otherwise an error naming the emulator to install.
pub(crate) fn check_can_run(platform: &Platform) -> Result<(), BuildError> {
    check_can_run_in(Path::new(BINFMT_DIR), &Platform::host(), platform)
}

fn check_can_run_in(dir: &Path, host: &Platform, platform: &Platform) -> Result<(), BuildError> {
    let (want, host_n) = (platform.normalized(), host.normalized());
    if want.os != host_n.os {
        return Err(BuildError::Emulation(format!(
            "RUN for {want} cannot run on this {host_n} host: only Linux images can run here"
        )));
    }
    if want.architecture == host_n.architecture
        || (host_n.architecture == "amd64" && want.architecture == "386")
        || (host_n.architecture == "arm64" && want.architecture == "arm")
    {
        return Ok(());
    }
    let install = match want.qemu_name() {
        Some(q) => format!(
            "install and register an emulator: `apt-get install qemu-user-static` (Debian/Ubuntu; \
             it provides qemu-{q}-static), then make sure /proc/sys/fs/binfmt_misc/qemu-{q} exists \
             with flags F (as root: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
             update-binfmts --enable, or write /usr/lib/binfmt.d/qemu-{q}.conf to \
             /proc/sys/fs/binfmt_misc/register)"
        ),
        None => format!("no known emulator runs {} binaries", want.architecture),
    };
    let Some(machine) = elf_machine(&want) else {
        return Err(BuildError::Emulation(format!(
            "RUN for {want} on this {host_n} host: {install}"
        )));
    };
    if !dir.join("register").exists() {
        return Err(BuildError::Emulation(format!(
            "RUN for {want} needs an emulator on this {host_n} host, but binfmt_misc is not \
             mounted at {}: {install}",
            dir.display()
        )));
    }
    let mut without_f = None;
    for entry in std::fs::read_dir(dir).map_err(|e| BuildError::io(dir, e))? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if name == "register" || name == "status" {
            continue;
        }
        let Some(h) = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| parse_handler(&t))
        else {
            continue;
        };
        if !h.enabled || h.machine != Some(machine) {
            continue;
        }
        if h.flags.contains('F') {
            return Ok(());
        }
        without_f = Some((name.to_string_lossy().into_owned(), h.interpreter));
    }
    Err(BuildError::Emulation(match without_f {
        Some((name, interp)) => format!(
            "RUN for {want}: the binfmt_misc handler {name} ({interp}) lacks the F (fix-binary) \
             flag, so the emulator would have to exist inside the image; re-register it with F: \
             {install}"
        ),
        None => format!(
            "RUN for {want} needs an emulator on this {host_n} host and none is registered: \
             {install}"
        ),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    #[test]
    fn handler_machine_comes_from_the_elf_magic() {
        let h = parse_handler(AARCH64).unwrap();
        assert!(h.enabled);
        assert_eq!(h.machine, Some(183));
        assert!(h.flags.contains('F'));
    }

    #[test]
    fn foreign_runs_need_an_f_handler_and_name_the_emulator() {
        let dir = tempfile::tempdir().unwrap();
        let amd64 = Platform::linux_amd64();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        assert!(check_can_run_in(dir.path(), &amd64, &amd64).is_ok());
        let err = check_can_run_in(dir.path(), &amd64, &arm64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install qemu-user-static"), "{err}");
        assert!(err.contains("not mounted"), "{err}");
        std::fs::write(dir.path().join("register"), "").unwrap();
        let err = check_can_run_in(dir.path(), &amd64, &arm64)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none is registered") && err.contains("qemu-aarch64"),
            "{err}"
        );
        std::fs::write(dir.path().join("qemu-aarch64"), AARCH64.replace("PF", "P")).unwrap();
        let err = check_can_run_in(dir.path(), &amd64, &arm64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks the F"), "{err}");
        std::fs::write(dir.path().join("qemu-aarch64"), AARCH64).unwrap();
        assert!(check_can_run_in(dir.path(), &amd64, &arm64).is_ok());
        let s390 = Platform::parse("linux/s390x").unwrap();
        assert!(check_can_run_in(dir.path(), &amd64, &s390).is_err());
    }
}
