//! The builder's sandbox for RUN steps, set up once on first use.

use std::path::Path;
use std::sync::OnceLock;

use rbuild_sandbox::{Isolation, Sandbox, SandboxOptions};

use crate::BuildError;

/// The sandbox, configured on first use (reading /etc/subuid costs nothing, but a build without
/// RUN should not fail because the sandbox cannot be set up).
#[derive(Default)]
pub struct Sandboxes {
    cell: OnceLock<Result<Sandbox, String>>,
    /// The isolation asked for (`--isolation`), resolved against the host on first use.
    isolation: Isolation,
}

impl Sandboxes {
    /// Sandboxes with the given isolation (`Auto` falls back to chroot where namespaces are
    /// refused to root).
    pub(crate) fn new(isolation: Isolation) -> Sandboxes {
        Sandboxes {
            cell: OnceLock::new(),
            isolation,
        }
    }

    pub(crate) fn get(&self) -> Result<&Sandbox, BuildError> {
        self.cell
            .get_or_init(|| {
                Sandbox::new(SandboxOptions {
                    isolation: self.isolation,
                    ..SandboxOptions::default()
                })
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| BuildError::Sandbox(e.clone()))
    }

    /// Whether steps will run under chroot isolation, which cannot mount an overlay rootfs, so
    /// the copy snapshotter must be used (false when the sandbox cannot be set up at all).
    pub(crate) fn is_chroot(&self) -> bool {
        self.get()
            .is_ok_and(|sb| sb.isolation() == Isolation::Chroot)
    }

    /// Removes a tree steps wrote, from inside the user namespace when there is one (see
    /// [`Sandbox::remove_tree`]), for snapshots the caller cannot delete alone.
    pub(crate) fn remove_tree(&self, path: &Path) -> std::io::Result<()> {
        let sb = self
            .get()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        sb.remove_tree(path)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The map every layer must be written with so it records the ids steps saw in their user
    /// namespace rather than the host's (`None` as root without one). Without a usable sandbox a
    /// non-root build still maps its own ids to container root, since that is what it wrote.
    pub(crate) fn id_map(&self) -> Option<rbuild_layer::IdMap> {
        let conv = |r: &[rbuild_sandbox::MapRange]| -> Vec<rbuild_layer::IdRange> {
            r.iter()
                .map(|r| rbuild_layer::IdRange {
                    container: r.container,
                    host: r.host,
                    size: r.size,
                })
                .collect()
        };
        match self.get() {
            Ok(sb) => sb.id_map().map(|m| rbuild_layer::IdMap {
                uids: conv(&m.uids),
                gids: conv(&m.gids),
            }),
            Err(_) => {
                let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
                if uid.is_root() {
                    return None;
                }
                Some(rbuild_layer::IdMap {
                    uids: conv(&[rbuild_sandbox::MapRange {
                        container: 0,
                        host: uid.as_raw(),
                        size: 1,
                    }]),
                    gids: conv(&[rbuild_sandbox::MapRange {
                        container: 0,
                        host: gid.as_raw(),
                        size: 1,
                    }]),
                })
            }
        }
    }
}
