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
