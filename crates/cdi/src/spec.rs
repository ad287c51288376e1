//! The CDI spec file format (JSON or YAML) and its validation.
//!
//! Only the fields a runtime acts on are typed; unknown fields are accepted, since newer spec
//! versions add fields an older reader may ignore (the CDI spec's own compatibility rule), but
//! the `cdiVersion` must be one this reader knows the meaning of.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::CdiError;

/// One CDI spec file: a vendor/class kind and the devices it defines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Spec format version (`0.3.0` … `0.8.0`, `1.0.x`, `1.1.x`).
    pub cdi_version: String,
    /// `vendor.com/class`.
    pub kind: String,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The devices; at least one.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Edits applied once whenever any device of this spec is used.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// A named device of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Name, unique in its spec (`0`, `all`, a UUID…).
    pub name: String,
    /// Free-form annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// What using the device changes in the container.
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

/// Changes to a container's OCI spec, as CDI defines them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    /// `KEY=value` entries added to the environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Device nodes to create.
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    /// OCI hooks.
    #[serde(default)]
    pub hooks: Vec<Hook>,
    /// Bind mounts.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Supplementary groups of the container's process.
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

/// A device node to expose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// Path in the container.
    pub path: String,
    /// Host node; `path` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `b`, `c`, `u` or `p`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Major number (informative: nodes are bound from the host, never created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    /// Minor number (informative, as `major`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    /// Permission bits of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    /// Cgroup access, a subset of `rwm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    /// Owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// A mount of a host path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    /// Host path.
    pub host_path: String,
    /// Absolute path in the container.
    pub container_path: String,
    /// Mount type (`bind` when absent).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Mount options (`ro`, `nosuid`, `nodev`, `rbind`…).
    #[serde(default)]
    pub options: Vec<String>,
}

/// An OCI hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// The lifecycle point: `prestart`, `createRuntime`, `createContainer`, `startContainer`,
    /// `poststart` or `poststop`.
    pub hook_name: String,
    /// Absolute path of the program.
    pub path: String,
    /// Its argv (including argv\[0\]).
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Seconds before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// Hook names the OCI runtime spec defines.
pub const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Parses and validates a spec file's bytes; YAML unless the name ends in `.json` (YAML is a
/// superset of JSON, but JSON's own parser gives better positions for JSON files).
pub fn parse_spec(path: &Path, bytes: &[u8]) -> Result<Spec, CdiError> {
    let bad = |why: String| CdiError::InvalidSpec {
        path: path.to_path_buf(),
        why,
    };
    let spec: Spec = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?
    } else {
        serde_yaml_ng::from_slice(bytes).map_err(|e| bad(e.to_string()))?
    };
    validate(&spec).map_err(bad)?;
    Ok(spec)
}

/// Whether this reader knows `v`: 0.3.0 up to 0.8.x and 1.x (the versions runtimes accept).
fn known_version(v: &str) -> bool {
    let mut parts = v.split('.');
    let (Some(maj), Some(min), patch) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let num = |s: &str| s.parse::<u32>().ok();
    let patch_ok = patch.is_none_or(|p| num(p).is_some()) && parts.next().is_none();
    match (num(maj), num(min)) {
        (Some(0), Some(m)) => (3..=8).contains(&m) && patch_ok,
        (Some(1), Some(_)) => patch_ok,
        _ => false,
    }
}

fn valid_word(s: &str, extra: &[char]) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
}

/// Checks a `vendor.com/class` kind.
pub(crate) fn check_kind(kind: &str) -> Result<(), String> {
    let Some((vendor, class)) = kind.split_once('/') else {
        return Err(format!("kind {kind:?} is not vendor.com/class"));
    };
    if !valid_word(vendor, &['.', '-', '_']) {
        return Err(format!(
            "kind {kind:?}: vendor {vendor:?} must be letters, digits, '.', '-' or '_'"
        ));
    }
    if !valid_word(class, &['.', '-', '_']) {
        return Err(format!(
            "kind {kind:?}: class {class:?} must be letters, digits, '.', '-' or '_'"
        ));
    }
    Ok(())
}

/// Checks a device name.
pub(crate) fn check_device_name(name: &str) -> Result<(), String> {
    if valid_word(name, &['.', '-', '_', ':']) {
        Ok(())
    } else {
        Err(format!(
            "device name {name:?} must start with a letter or digit and hold only letters, \
             digits, '.', '-', '_' or ':'"
        ))
    }
}

fn validate(spec: &Spec) -> Result<(), String> {
    if !known_version(&spec.cdi_version) {
        return Err(format!(
            "unsupported cdiVersion {:?} (known: 0.3.0 to 0.8.0 and 1.x)",
            spec.cdi_version
        ));
    }
    check_kind(&spec.kind)?;
    if spec.devices.is_empty() {
        return Err("no devices".into());
    }
    check_edits(&spec.container_edits, "containerEdits")?;
    let mut seen = std::collections::BTreeSet::new();
    for d in &spec.devices {
        check_device_name(&d.name)?;
        if !seen.insert(d.name.as_str()) {
            return Err(format!("device {:?} is defined twice", d.name));
        }
        if d.container_edits == ContainerEdits::default() {
            return Err(format!("device {:?} has no containerEdits", d.name));
        }
        check_edits(&d.container_edits, &format!("device {:?}", d.name))?;
    }
    Ok(())
}

fn check_edits(e: &ContainerEdits, at: &str) -> Result<(), String> {
    for v in &e.env {
        if !v.contains('=') || v.starts_with('=') {
            return Err(format!("{at}: env entry {v:?} is not KEY=value"));
        }
    }
    for n in &e.device_nodes {
        if !n.path.starts_with('/') {
            return Err(format!(
                "{at}: device node path {:?} is not absolute",
                n.path
            ));
        }
        if let Some(h) = &n.host_path {
            if !h.starts_with('/') {
                return Err(format!("{at}: device node hostPath {h:?} is not absolute"));
            }
        }
        if let Some(t) = &n.kind {
            if !matches!(t.as_str(), "b" | "c" | "u" | "p") {
                return Err(format!(
                    "{at}: device node {:?} has type {t:?} (expected b, c, u or p)",
                    n.path
                ));
            }
        }
        if let Some(p) = &n.permissions {
            if p.is_empty() || !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return Err(format!(
                    "{at}: device node {:?} has permissions {p:?} (expected a subset of rwm)",
                    n.path
                ));
            }
        }
    }
    for m in &e.mounts {
        if m.host_path.is_empty() {
            return Err(format!(
                "{at}: mount to {:?} has no hostPath",
                m.container_path
            ));
        }
        if !m.container_path.starts_with('/') {
            return Err(format!(
                "{at}: mount containerPath {:?} is not absolute",
                m.container_path
            ));
        }
    }
    for h in &e.hooks {
        if !HOOK_NAMES.contains(&h.hook_name.as_str()) {
            return Err(format!(
                "{at}: unknown hookName {:?} (expected one of {})",
                h.hook_name,
                HOOK_NAMES.join(", ")
            ));
        }
        if !h.path.starts_with('/') {
            return Err(format!("{at}: hook path {:?} is not absolute", h.path));
        }
        if h.timeout.is_some_and(|t| t <= 0) {
            return Err(format!(
                "{at}: hook {:?} has a timeout that is not positive",
                h.path
            ));
        }
    }
    Ok(())
}

/// The spec files of `dir` CDI reads (`*.json`, `*.yaml`, `*.yml`), sorted by name; a missing
/// directory has none.
pub(crate) fn spec_files(dir: &Path) -> Result<Vec<PathBuf>, CdiError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(CdiError::Io {
                path: dir.to_path_buf(),
                source: e,
            })
        }
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| CdiError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let p = ent.path();
        let ext_ok = p
            .extension()
            .is_some_and(|e| e == "json" || e == "yaml" || e == "yml");
        if ext_ok && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}
