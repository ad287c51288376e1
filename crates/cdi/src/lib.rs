//! Devices for builds and containers through the Container Device Interface (CDI): the spec
//! files vendors install in `/etc/cdi` and `/var/run/cdi` (e.g. `nvidia-ctk cdi generate`),
//! resolution of fully-qualified names (`nvidia.com/gpu=0`, `nvidia.com/gpu=all`) to the edits
//! a runtime applies (device nodes, bind mounts, environment, OCI hooks, groups), and docker's
//! `--gpus` and `--device` flags.
//!
//! Use it wherever a step or a container asks for devices: parse the flags into
//! [`DeviceRequest`]s, load a [`Registry`] once, [`Registry::resolve`] the requests (an unknown
//! device fails here, before anything runs, naming the device and how to get a spec), then
//! [`apply`] the result to each [`rbuild_sandbox::RunSpec`].
//!
//! Spec directories are read in order and later ones win for a device defined twice, as the
//! CDI spec says: by default `/etc/cdi`, then `/var/run/cdi` (where generators for dynamic
//! devices write). Our own parser rather than the `container-device-interface` crate: that crate
//! pulls ~220 crates (a JSON-schema validator with an HTTP client, clap, a second `oci-spec`,
//! the deprecated `serde_yaml`) for a format of a dozen fields.
//!
//! ```no_run
//! use rbuild_cdi::{Registry, DeviceRequest, GpuRequest, apply};
//! let reg = Registry::load(&Registry::default_dirs())?;
//! let mut reqs = GpuRequest::parse("all")?.to_requests(&reg)?;
//! reqs.push(DeviceRequest::parse("/dev/fuse")?);
//! let resolved = reg.resolve(&reqs)?;
//! let mut spec = rbuild_sandbox::RunSpec::default();
//! apply(&resolved, &mut spec);
//! # Ok::<(), rbuild_cdi::CdiError>(())
//! ```

#![warn(missing_docs)]

mod request;
mod spec;

pub use request::{DeviceRequest, GpuCount, GpuRequest, HostDevice};
pub use spec::{parse_spec, ContainerEdits, Device, DeviceNode, Hook, Mount, Spec, HOOK_NAMES};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The command that writes the NVIDIA spec, for errors about missing GPU devices.
pub const NVIDIA_HINT: &str = "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml";

/// Why devices could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    /// A spec file is not valid CDI.
    #[error("invalid CDI spec {path}: {why}")]
    InvalidSpec {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A spec directory or file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A device name is not `vendor.com/class=name`.
    #[error("invalid device name {name:?}: {why}")]
    BadName {
        /// As given.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// No spec defines a requested device.
    #[error("unknown device {name}: {why}; {hint}")]
    UnknownDevice {
        /// The fully-qualified name.
        name: String,
        /// What was looked at.
        why: String,
        /// How to get a spec.
        hint: String,
    },
    /// Two specs of the same directory define the same device.
    #[error("device {name} is defined by both {first} and {second}")]
    Conflict {
        /// The fully-qualified name.
        name: String,
        /// One spec.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A `--gpus` or `--device` value is malformed.
    #[error("invalid {flag} {value:?}: {why}")]
    BadFlag {
        /// `--gpus` or `--device`.
        flag: &'static str,
        /// As given.
        value: String,
        /// What is wrong.
        why: String,
    },
}

/// A device of a loaded spec.
#[derive(Debug, Clone)]
struct Entry {
    spec: usize,
    device: usize,
}

/// Every device of the spec directories, by fully-qualified name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    dirs: Vec<PathBuf>,
    specs: Vec<(PathBuf, Spec)>,
    devices: BTreeMap<String, Entry>,
}

/// What a set of requests resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The requests as fully-qualified CDI names or host paths, in order, for cache keys and
    /// messages.
    pub names: Vec<String>,
    /// The merged edits: each used spec's own edits once (before its first device's), then each
    /// device's.
    pub edits: ContainerEdits,
}

impl Resolved {
    /// Whether nothing was requested.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Splits `vendor.com/class=name` into kind and name.
pub fn parse_qualified(name: &str) -> Result<(&str, &str), CdiError> {
    let bad = |why: String| CdiError::BadName {
        name: name.to_string(),
        why,
    };
    let (kind, dev) = name
        .split_once('=')
        .ok_or_else(|| bad("expected vendor.com/class=name".into()))?;
    spec::check_kind(kind).map_err(bad)?;
    spec::check_device_name(dev).map_err(bad)?;
    Ok((kind, dev))
}

impl Registry {
    /// `/etc/cdi`, then `/var/run/cdi`.
    pub fn default_dirs() -> Vec<PathBuf> {
        vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")]
    }

    /// Reads every spec of `dirs` (missing directories are empty). A device defined in two
    /// directories is the later one's; twice in one directory, an error. An invalid spec file
    /// is an error naming it: a broken vendor install should be fixed, not silently skipped.
    pub fn load(dirs: &[PathBuf]) -> Result<Registry, CdiError> {
        let mut reg = Registry {
            dirs: dirs.to_vec(),
            ..Default::default()
        };
        for dir in dirs {
            let mut in_dir: BTreeMap<String, PathBuf> = BTreeMap::new();
            for file in spec::spec_files(dir)? {
                let bytes = std::fs::read(&file).map_err(|e| CdiError::Io {
                    path: file.clone(),
                    source: e,
                })?;
                let s = parse_spec(&file, &bytes)?;
                let idx = reg.specs.len();
                for (i, d) in s.devices.iter().enumerate() {
                    let fq = format!("{}={}", s.kind, d.name);
                    if let Some(first) = in_dir.insert(fq.clone(), file.clone()) {
                        return Err(CdiError::Conflict {
                            name: fq,
                            first,
                            second: file,
                        });
                    }
                    reg.devices.insert(
                        fq,
                        Entry {
                            spec: idx,
                            device: i,
                        },
                    );
                }
                reg.specs.push((file, s));
            }
        }
        Ok(reg)
    }

    /// The fully-qualified names of every device, sorted.
    pub fn device_names(&self) -> Vec<String> {
        self.devices.keys().cloned().collect()
    }

    /// The names of `kind`'s devices in their spec's order.
    pub fn devices_of(&self, kind: &str) -> Vec<String> {
        let mut out: Vec<(usize, usize, String)> = self
            .devices
            .iter()
            .filter_map(|(fq, e)| {
                let (k, n) = fq.split_once('=')?;
                (k == kind).then(|| (e.spec, e.device, n.to_string()))
            })
            .collect();
        out.sort();
        out.into_iter().map(|(_, _, n)| n).collect()
    }

    fn unknown(&self, name: &str, kind: &str) -> CdiError {
        let dirs = self
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let known = self.devices_of(kind);
        let why = if known.is_empty() {
            format!("no CDI spec for {kind} in {dirs}")
        } else {
            format!(
                "the CDI specs in {dirs} define {kind} devices {} only",
                known.join(", ")
            )
        };
        let hint = if kind == "nvidia.com/gpu" {
            format!("generate a spec for this machine's GPUs with `{NVIDIA_HINT}`")
        } else {
            format!(
                "install the vendor's CDI spec for {kind} in one of {dirs} (for NVIDIA GPUs: \
                 `{NVIDIA_HINT}`)"
            )
        };
        CdiError::UnknownDevice {
            name: name.to_string(),
            why,
            hint,
        }
    }

    /// Resolves requests to merged edits. `kind=all` means every device of the kind (or the
    /// spec's own device named `all`, which vendors such as NVIDIA define).
    pub fn resolve(&self, reqs: &[DeviceRequest]) -> Result<Resolved, CdiError> {
        let mut out = Resolved::default();
        let mut applied_specs = Vec::new();
        for r in reqs {
            match r {
                DeviceRequest::Host(h) => {
                    out.names.push(h.to_string());
                    merge(&mut out.edits, &h.edits());
                }
                DeviceRequest::Cdi(name) => {
                    let (kind, dev) = parse_qualified(name)?;
                    let entries: Vec<&Entry> = match self.devices.get(name.as_str()) {
                        Some(e) => vec![e],
                        None if dev == "all" => {
                            let names = self.devices_of(kind);
                            names
                                .iter()
                                .filter_map(|n| self.devices.get(&format!("{kind}={n}")))
                                .collect()
                        }
                        None => Vec::new(),
                    };
                    if entries.is_empty() {
                        return Err(self.unknown(name, kind));
                    }
                    out.names.push(name.clone());
                    for e in entries {
                        let (_, spec) = &self.specs[e.spec];
                        if !applied_specs.contains(&e.spec) {
                            applied_specs.push(e.spec);
                            merge(&mut out.edits, &spec.container_edits);
                        }
                        merge(&mut out.edits, &spec.devices[e.device].container_edits);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The spec file that defines a fully-qualified device, for messages.
    pub fn spec_path(&self, name: &str) -> Option<&Path> {
        self.devices
            .get(name)
            .map(|e| self.specs[e.spec].0.as_path())
    }
}

/// Adds `add` to `into`: environment and mounts appended (a later entry wins at its key or
/// target), device nodes replaced at the same path, hooks appended, groups deduplicated.
pub fn merge(into: &mut ContainerEdits, add: &ContainerEdits) {
    for e in &add.env {
        let key = e.split('=').next().unwrap_or_default();
        into.env
            .retain(|x| x.split('=').next().unwrap_or_default() != key);
        into.env.push(e.clone());
    }
    for n in &add.device_nodes {
        into.device_nodes.retain(|x| x.path != n.path);
        into.device_nodes.push(n.clone());
    }
    for m in &add.mounts {
        into.mounts.retain(|x| x.container_path != m.container_path);
        into.mounts.push(m.clone());
    }
    into.hooks.extend(add.hooks.iter().cloned());
    for g in &add.additional_gids {
        if !into.additional_gids.contains(g) {
            into.additional_gids.push(*g);
        }
    }
}

/// The sandbox's form of resolved edits: device nodes bound from the host, mounts with their
/// options, hooks at their lifecycle point. Environment and groups are not in it: [`apply`]
/// merges them into the spec's own lists.
pub fn sandbox_devices(edits: &ContainerEdits) -> rbuild_sandbox::DeviceEdits {
    use rbuild_sandbox::{DeviceBind, DeviceEdits, DeviceHook, DeviceNodeBind, HookStage};
    let nodes = edits
        .device_nodes
        .iter()
        .map(|n| DeviceNodeBind {
            path: n.path.clone(),
            host_path: PathBuf::from(n.host_path.as_deref().unwrap_or(&n.path)),
            // Without a device cgroup, `permissions` can only be honoured for writes.
            readonly: n.permissions.as_deref().is_some_and(|p| !p.contains('w')),
        })
        .collect();
    let mounts = edits
        .mounts
        .iter()
        .map(|m| {
            let has = |o: &str| m.options.iter().any(|x| x == o);
            DeviceBind {
                host_path: PathBuf::from(&m.host_path),
                container_path: m.container_path.clone(),
                kind: m.kind.clone().unwrap_or_else(|| "bind".into()),
                readonly: has("ro") || has("readonly"),
                recursive: has("rbind"),
                nosuid: has("nosuid"),
                nodev: has("nodev"),
                noexec: has("noexec"),
            }
        })
        .collect();
    let hooks = edits
        .hooks
        .iter()
        .filter_map(|h| {
            let stage = match h.hook_name.as_str() {
                "prestart" => HookStage::Prestart,
                "createRuntime" => HookStage::CreateRuntime,
                "createContainer" => HookStage::CreateContainer,
                "startContainer" => HookStage::StartContainer,
                "poststart" => HookStage::Poststart,
                "poststop" => HookStage::Poststop,
                _ => return None,
            };
            Some(DeviceHook {
                stage,
                path: PathBuf::from(&h.path),
                args: if h.args.is_empty() {
                    vec![h.path.clone()]
                } else {
                    h.args.clone()
                },
                env: h.env.clone(),
                timeout: h
                    .timeout
                    .and_then(|t| u64::try_from(t).ok())
                    .map(Duration::from_secs),
            })
        })
        .collect();
    DeviceEdits {
        nodes,
        mounts,
        hooks,
        setup_only: false,
    }
}

/// Resolves docker's flags in one call, for `rbuild run`/`create`: every `--gpus` value and
/// every `--device` value (CDI names or host nodes), with specs read from `spec_dirs` (empty:
/// [`Registry::default_dirs`]). Specs are read only when a flag needs them.
///
/// ```no_run
/// # fn f(spec: &mut rbuild_sandbox::RunSpec) -> Result<(), rbuild_cdi::CdiError> {
/// let resolved = rbuild_cdi::resolve_flags(&["all".into()], &["/dev/fuse".into()], &[])?;
/// rbuild_cdi::apply(&resolved, spec);
/// # Ok(()) }
/// ```
pub fn resolve_flags(
    gpus: &[String],
    devices: &[String],
    spec_dirs: &[PathBuf],
) -> Result<Resolved, CdiError> {
    let mut reqs = devices
        .iter()
        .map(|d| DeviceRequest::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let gpus = gpus
        .iter()
        .map(|g| GpuRequest::parse(g))
        .collect::<Result<Vec<_>, _>>()?;
    let needs_specs = !gpus.is_empty() || reqs.iter().any(|r| matches!(r, DeviceRequest::Cdi(_)));
    let reg = if !needs_specs {
        Registry::default()
    } else if spec_dirs.is_empty() {
        Registry::load(&Registry::default_dirs())?
    } else {
        Registry::load(spec_dirs)?
    };
    for g in &gpus {
        reqs.extend(g.to_requests(&reg)?);
    }
    reg.resolve(&reqs)
}

/// Applies resolved devices to a run: `spec.devices` gets the nodes, mounts and hooks; the
/// edits' environment replaces same-named entries of `spec.env`; their groups join
/// `spec.additional_gids`. This is all a container or a RUN step needs to call.
pub fn apply(resolved: &Resolved, spec: &mut rbuild_sandbox::RunSpec) {
    let e = &resolved.edits;
    for v in &e.env {
        let key = v.split('=').next().unwrap_or_default();
        spec.env
            .retain(|x| x.split('=').next().unwrap_or_default() != key);
        spec.env.push(v.clone());
    }
    for g in &e.additional_gids {
        if !spec.additional_gids.contains(g) {
            spec.additional_gids.push(*g);
        }
    }
    let add = sandbox_devices(e);
    spec.devices.nodes.extend(add.nodes);
    spec.devices.mounts.extend(add.mounts);
    spec.devices.hooks.extend(add.hooks);
}

#[cfg(test)]
mod tests;
