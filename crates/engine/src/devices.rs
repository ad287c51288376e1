//! What `--device` leaves out of a RUN step's layer.
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
