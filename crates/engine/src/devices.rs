//! `--device` for builds: resolved once per build, and what it leaves out of a RUN step's layer.
//!
//! Device nodes under `/dev` live in the step's `/dev` tmpfs and never reach the upper
//! directory; everything else a device adds (a node or a bind mount elsewhere) has a mount point
//! the sandbox reports as a stub when it made it, but a mount point that already existed in the
//! image could still be touched through the mount. So every such target is excluded from the
//! diff, as `RUN --mount` targets are.

use std::path::PathBuf;

/// In-rootfs paths to exclude from the step's layer.
pub(crate) fn layer_exclusions(d: &rbuild_sandbox::DeviceEdits) -> Vec<PathBuf> {
    d.nodes
        .iter()
        .map(|n| n.path.as_str())
        .chain(d.mounts.iter().map(|m| m.container_path.as_str()))
        .filter(|p| !p.starts_with("/dev/"))
        .map(PathBuf::from)
        .collect()
}

/// No `--device`: what every build without one shares.
pub(crate) static NO_DEVICES: rbuild_cdi::Resolved = rbuild_cdi::Resolved {
    names: Vec::new(),
    edits: rbuild_cdi::ContainerEdits {
        env: Vec::new(),
        device_nodes: Vec::new(),
        hooks: Vec::new(),
        mounts: Vec::new(),
        additional_gids: Vec::new(),
    },
};

/// Resolves the request's `--device`s once, before anything is pulled or run, so an unknown
/// device fails the build at once.
pub(crate) fn resolve(
    req: &crate::BuildRequest,
    file: &str,
) -> Result<rbuild_cdi::Resolved, crate::BuildError> {
    if req.devices.is_empty() {
        return Ok(rbuild_cdi::Resolved::default());
    }
    let err = |source| crate::BuildError::Device {
        file: file.to_string(),
        source,
    };
    let dirs = if req.cdi_spec_dirs.is_empty() {
        rbuild_cdi::Registry::default_dirs()
    } else {
        req.cdi_spec_dirs.clone()
    };
    let needs_specs = req
        .devices
        .iter()
        .any(|d| matches!(d, rbuild_cdi::DeviceRequest::Cdi(_)));
    let reg = if needs_specs {
        rbuild_cdi::Registry::load(&dirs).map_err(err)?
    } else {
        rbuild_cdi::Registry::default()
    };
    reg.resolve(&req.devices).map_err(err)
}

/// Whether a hook runs while the step's root is being set up (before its process), where what it
/// writes into the root (`update-ldcache`'s `/etc/ld.so.cache`, `create-symlinks`' links) would
/// otherwise land in the step's layer.
fn setup_hook(h: &rbuild_sandbox::DeviceHook) -> bool {
    use rbuild_sandbox::HookStage::*;
    matches!(h.stage, Prestart | CreateRuntime | CreateContainer)
}

/// Keeps what set-up hooks write out of the step's layer: on an overlay rootfs, the hooks first
/// run alone (same devices, no process) with a writable layer of their own, which then becomes
/// the step's top lower; the step runs without them and its upper holds only its own changes.
/// Returns the directory holding that layer, to keep until the step has run; `None` when there
/// is nothing to do (no such hooks, or a directory rootfs, where hooks write into the layer as
/// they would with BuildKit).
pub(crate) fn run_setup_hooks_apart(
    store: &rbuild_store::Store,
    sandbox: &rbuild_sandbox::Sandbox,
    spec: &mut rbuild_sandbox::RunSpec,
    output: &mut dyn FnMut(rbuild_sandbox::Stream, &[u8]),
) -> Result<Option<rbuild_store::ScratchDir>, crate::BuildError> {
    let rbuild_sandbox::RootfsSpec::Overlay { lowers, .. } = &spec.rootfs else {
        return Ok(None);
    };
    if !spec.devices.hooks.iter().any(setup_hook) {
        return Ok(None);
    }
    let dir = store.temp_dir("device-hooks")?;
    let (upper, work) = (dir.path().join("upper"), dir.path().join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(|e| crate::BuildError::io(d, e))?;
    }
    let mut pre = spec.clone();
    pre.rootfs = rbuild_sandbox::RootfsSpec::Overlay {
        lowers: lowers.clone(),
        upper: upper.clone(),
        work,
        // It is mounted again, as a lower: let the kernel keep it consistent.
        volatile: false,
    };
    pre.devices.hooks.retain(setup_hook);
    pre.devices.setup_only = true;
    pre.stdin = None;
    let r = sandbox
        .run(&pre, output)
        .map_err(|e| crate::BuildError::Sandbox(format!("device hooks: {e}")))?;
    if r.code != Some(0) {
        return Err(crate::BuildError::Sandbox(format!(
            "device hooks ended with {:?}",
            (r.code, r.signal)
        )));
    }
    if let rbuild_sandbox::RootfsSpec::Overlay { lowers, .. } = &mut spec.rootfs {
        lowers.insert(0, upper);
    }
    spec.devices.hooks.retain(|h| !setup_hook(h));
    Ok(Some(dir))
}
