//! Shared test helpers: a busybox rootfs built from the host's static busybox.
#![allow(dead_code)]

use rbuild_sandbox::{RootfsSpec, RunResult, RunSpec, Sandbox, SandboxError, Stream};
use std::path::{Path, PathBuf};

/// Creates a minimal rootfs at `root`: /bin/busybox plus one symlink per applet, /tmp, /root,
/// /etc/passwd and /etc/group. Deliberately no /proc, /dev, /sys, /etc/hosts: the sandbox must
/// create (and clean up) those mount points itself.
pub fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    assert!(list.status.success());
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    for d in ["tmp", "root", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

/// A fresh temp dir holding a busybox rootfs at `<tmp>/root`.
pub fn rootfs() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    busybox_rootfs(&root);
    (tmp, root)
}

/// A spec running `sh -c script` in `root`.
pub fn sh(root: &Path, script: &str) -> RunSpec {
    RunSpec {
        rootfs: RootfsSpec::Dir(root.to_path_buf()),
        args: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
        ..RunSpec::default()
    }
}

/// Collected output of one run.
pub struct Output {
    pub result: Result<RunResult, SandboxError>,
    pub stdout: String,
    pub stderr: String,
    pub chunks: Vec<(Stream, Vec<u8>)>,
}

/// Runs `spec` in a default sandbox and collects everything.
pub fn run(spec: &RunSpec) -> Output {
    run_with(&Sandbox::new(Default::default()).unwrap(), spec)
}

/// Runs `spec` in `sb` and collects everything.
pub fn run_with(sb: &Sandbox, spec: &RunSpec) -> Output {
    let mut chunks = Vec::new();
    let result = sb.run(spec, &mut |s, b| chunks.push((s, b.to_vec())));
    let cat = |want: Stream| {
        let v: Vec<u8> = chunks
            .iter()
            .filter(|(s, _)| *s == want)
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        String::from_utf8_lossy(&v).into_owned()
    };
    Output {
        stdout: cat(Stream::Stdout),
        stderr: cat(Stream::Stderr),
        result,
        chunks,
    }
}

/// Host pids whose command line contains `needle`.
pub fn host_pids_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}
