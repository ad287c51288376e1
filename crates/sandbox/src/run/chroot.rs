//! The plan of a step under chroot isolation (see [`crate::isolation`]): no mount may be made,
//! so the step's `/dev` nodes, `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname` and file
//! mounts (secrets) are created in its root as stubs and removed after it, like mount stubs.
//! Every path after the `chroot` op is resolved inside the root, so a symlink in the image can
//! never make the sandbox create anything on the host.

use super::*;
use crate::isolation::Resolved;
use std::os::unix::fs::MetadataExt;

/// Device nodes docker gives a container: (name, major, minor).
const NODES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

pub(super) fn prepare(
    mode: &Resolved,
    spec: &RunSpec,
    rd: &RunDir,
    hostname: &str,
) -> Result<Prepared, SandboxError> {
    let RootfsSpec::Dir(dir) = &spec.rootfs else {
        return Err(SandboxError::Unsupported(
            "chroot isolation needs a directory rootfs (the copy snapshotter): an overlay cannot \
             be mounted without a mount namespace"
                .into(),
        ));
    };
    if !dir.is_dir() {
        return Err(SandboxError::InvalidSpec(format!(
            "rootfs {} is not a directory",
            dir.display()
        )));
    }
    if !spec.devices.is_empty() {
        return Err(SandboxError::Unsupported(
            "devices (--device, --gpus) need a mount namespace to bind their nodes, which chroot \
             isolation does not have"
                .into(),
        ));
    }
    let ns = &mode.namespaces;
    if spec.network == Network::None && ns.net.is_some() {
        return Err(SandboxError::Unsupported(format!(
            "RUN --network=none needs a network namespace, which this host refuses ({}); chroot \
             isolation can only share the network",
            ns.net.as_deref().unwrap_or_default()
        )));
    }
    let Some(program) = spec.args.first().cloned() else {
        return Err(SandboxError::InvalidSpec("args is empty".into()));
    };
    let mut b = PlanBuilder {
        ops: Vec::new(),
        descs: Vec::new(),
        stub_paths: Vec::new(),
        stub_layer: Vec::new(),
        optional: Vec::new(),
        slots: 0,
    };
    b.push(
        Op::Chroot {
            path: cpath("rootfs", dir)?,
        },
        format!("chroot into {}", dir.display()),
        None,
    );
    for d in ["proc", "sys", "dev"] {
        b.ensure(&[d.into()], false, true)?;
    }
    for (name, major, minor) in NODES {
        let path = format!("/dev/{name}");
        b.push(
            Op::Mknod {
                path: cstr("device node", path.as_str())?,
                mode: libc::S_IFCHR | 0o666,
                dev: libc::makedev(major, minor),
                stub: true,
            },
            format!("mknod {path} c {major} {minor}"),
            Some(path),
        );
    }
    b.ensure(&["etc".into()], false, true)?;
    for name in ["hosts", "resolv.conf", "hostname"] {
        let src = rd.path(name);
        let data = std::fs::read(&src)
            .map_err(|e| SandboxError::io(format!("read {}", src.display()), e))?;
        let path = format!("/etc/{name}");
        b.push(
            Op::WriteFile {
                path: cstr("generated file", path.as_str())?,
                data,
                mode: 0o644,
                owner: None,
                keep_existing: true,
                stub: true,
            },
            format!("write generated {path}"),
            Some(path),
        );
    }
    for m in &spec.mounts {
        let comps = components("mount target", &m.target)?;
        let Some((last, parents)) = comps.split_last() else {
            return Err(SandboxError::InvalidSpec(format!(
                "mount target {:?} is the root",
                m.target
            )));
        };
        let MountKind::Bind { source, readonly } = &m.kind else {
            return Err(SandboxError::Unsupported(format!(
                "RUN --mount=type=tmpfs at {} needs a mount namespace, which chroot isolation \
                 does not have",
                m.target
            )));
        };
        let meta = std::fs::metadata(source)
            .map_err(|e| SandboxError::io(format!("bind mount source {}", source.display()), e))?;
        if !meta.is_file() {
            return Err(SandboxError::Unsupported(format!(
                "RUN --mount at {} ({}) needs a mount namespace, which chroot isolation does not \
                 have: only files (secrets, file binds) can be provided",
                m.target,
                source.display()
            )));
        }
        let data = std::fs::read(source)
            .map_err(|e| SandboxError::io(format!("read {}", source.display()), e))?;
        let parent = b.ensure(parents, false, true)?;
        let path = format!("{parent}/{last}");
        let mut bits = meta.mode() & 0o7777;
        if *readonly {
            bits &= !0o222;
        }
        b.push(
            Op::WriteFile {
                path: cstr("mount target", path.as_str())?,
                data,
                mode: bits,
                owner: Some((meta.uid(), meta.gid())),
                keep_existing: false,
                stub: true,
            },
            format!(
                "provide {} at {path} (chroot isolation cannot cover a file the image has)",
                source.display()
            ),
            Some(path.clone()),
        );
    }

    let ExecDetails {
        cwd_prefixes,
        argv_c,
        envp_c,
        argv,
        envp,
        exec_candidates,
    } = exec_details(spec, &program)?;

    // Only the namespaces the host allows; the network one only when the step asked for it.
    let mut flags = 0;
    for (name, flag, refused) in ns.list() {
        if refused.is_none() && !matches!(name, "user" | "network") {
            flags |= flag;
        }
    }
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    let uts = flags & libc::CLONE_NEWUTS != 0;
    let slots = b.slots;
    Ok(Prepared {
        plan: ChildPlan {
            unshare_flags: flags,
            ops: b.ops,
            hostname: cstr("hostname", if uts { hostname } else { "" })?,
            loopback_up: spec.network == Network::None,
            optional: b.optional,
            drop_caps: caps_to_drop(false),
            cwd_prefixes,
            cwd: cstr("cwd", spec.cwd.as_str())?,
            set_groups: true,
            groups: spec.additional_gids.clone(),
            uid: spec.uid,
            gid: spec.gid,
            exec_candidates,
            argv,
            envp,
            setup_only: false,
            controlling_tty: false,
        },
        descs: b.descs,
        stub_paths: b.stub_paths,
        slots,
        program,
        _argv: argv_c,
        _envp: envp_c,
    })
}

/// Removes the files and device nodes [`prepare`]'s ops created (whatever the step wrote into
/// them: a secret or a generated resolv.conf never belongs in the layer), resolved inside `root`
/// as [`super::visit_stubs`] does. Directories are left to `remove_stubs`, which keeps those the
/// step filled.
pub(super) fn remove_files(root: &Path, stubs: &[String]) {
    super::visit_stubs(root, stubs.iter(), |dir, name, st| {
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            // SAFETY: valid fd and C string.
            unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
        }
    });
}
