//! Docker's device flags: `--device` (a CDI name or a host node) and `--gpus`.

use std::fmt;
use std::path::PathBuf;

use crate::{CdiError, ContainerEdits, DeviceNode, Registry};

/// One requested device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRequest {
    /// A fully-qualified CDI name, `vendor.com/class=name` (or `=all`).
    Cdi(String),
    /// A host device node, `--device /dev/X[:/dev/Y][:rwm]`, bound without CDI.
    Host(HostDevice),
}

/// A host device node given by path, as docker's `--device` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Node on the host.
    pub host: PathBuf,
    /// Path in the container (the host path by default).
    pub container: String,
    /// Cgroup permissions, a subset of `rwm` (`rwm` by default).
    pub permissions: String,
}

impl fmt::Display for HostDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.host.display(),
            self.container,
            self.permissions
        )
    }
}

impl HostDevice {
    /// The node as CDI edits.
    pub fn edits(&self) -> ContainerEdits {
        ContainerEdits {
            device_nodes: vec![DeviceNode {
                path: self.container.clone(),
                host_path: Some(self.host.display().to_string()),
                permissions: Some(self.permissions.clone()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

fn valid_mode(s: &str) -> bool {
    !s.is_empty() && s.len() <= 3 && s.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

impl DeviceRequest {
    /// Parses a `--device` value: a CDI name (`vendor.com/class=name`) or a host node
    /// (`/dev/X[:/dev/Y][:rwm]`, docker's syntax).
    pub fn parse(s: &str) -> Result<DeviceRequest, CdiError> {
        let bad = |why: &str| CdiError::BadFlag {
            flag: "--device",
            value: s.to_string(),
            why: why.to_string(),
        };
        if !s.starts_with('/') && s.contains('=') {
            crate::parse_qualified(s)?;
            return Ok(DeviceRequest::Cdi(s.to_string()));
        }
        let parts: Vec<&str> = s.split(':').collect();
        let (src, mut dst, mut perms) = (parts[0], "", "rwm");
        match parts.len() {
            1 => {}
            2 if valid_mode(parts[1]) => perms = parts[1],
            2 => dst = parts[1],
            3 => {
                dst = parts[1];
                perms = parts[2];
                if !valid_mode(perms) {
                    return Err(bad("permissions must be a subset of rwm"));
                }
            }
            _ => {
                return Err(bad(
                    "expected /dev/X[:/dev/Y][:rwm] or vendor.com/class=name",
                ))
            }
        }
        if !src.starts_with('/') {
            return Err(bad(
                "a host device must be an absolute path (or a CDI name vendor.com/class=name)",
            ));
        }
        if dst.is_empty() {
            dst = src;
        }
        if !dst.starts_with('/') {
            return Err(bad("the container path must be absolute"));
        }
        Ok(DeviceRequest::Host(HostDevice {
            host: PathBuf::from(src),
            container: dst.to_string(),
            permissions: perms.to_string(),
        }))
    }
}

/// How many GPUs `--gpus` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuCount {
    /// `all` (docker's count -1).
    All,
    /// The first N.
    N(u32),
}

/// A parsed `--gpus` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    /// `driver=` (only `nvidia` has a CDI mapping); `None` when not given.
    pub driver: Option<String>,
    /// A count, when no `device=` was given.
    pub count: Option<GpuCount>,
    /// `device=ID[,ID]`.
    pub device_ids: Vec<String>,
    /// `capabilities=`; informative (CDI specs decide what a device gives).
    pub capabilities: Vec<String>,
}

/// Splits one line of comma-separated values as Go's `encoding/csv` (docker's parser) does:
/// a field in double quotes may hold commas, `""` is a quote.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quote".into()),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => return Err("extraneous text after a quoted field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some('"') => return Err("bare \" in a field".into()),
                    Some(c) => field.push(c),
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                }
            }
            out.push(field);
        }
    }
}

impl GpuRequest {
    /// Parses `--gpus` as docker does: `all`, `N`, `device=ID[,ID]` (quoted when it lists
    /// several: `'"device=0,1"'`), `count=N|all`, `driver=`, `capabilities=`, `options=`.
    pub fn parse(value: &str) -> Result<GpuRequest, CdiError> {
        let bad = |why: String| CdiError::BadFlag {
            flag: "--gpus",
            value: value.to_string(),
            why,
        };
        let count = |s: &str| -> Result<GpuCount, CdiError> {
            if s == "all" {
                return Ok(GpuCount::All);
            }
            s.parse::<u32>()
                .map(GpuCount::N)
                .map_err(|_| bad(format!("count {s:?} must be a number or all")))
        };
        let mut req = GpuRequest {
            driver: None,
            count: None,
            device_ids: Vec::new(),
            capabilities: Vec::new(),
        };
        let mut seen: Vec<String> = Vec::new();
        for field in csv_fields(value).map_err(bad)? {
            let (key, val) = match field.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (field.clone(), None),
            };
            let key_seen = if val.is_none() { "count" } else { &key };
            if seen.iter().any(|s| s == key_seen) {
                return Err(bad(format!("{key_seen} can be given only once")));
            }
            seen.push(key_seen.to_string());
            let Some(val) = val else {
                req.count = Some(count(&key)?);
                continue;
            };
            match key.as_str() {
                "driver" => req.driver = Some(val),
                "count" => req.count = Some(count(&val)?),
                "device" => {
                    req.device_ids = val.split(',').map(str::to_string).collect();
                    if req.device_ids.iter().any(|d| d.is_empty()) {
                        return Err(bad("empty device id".into()));
                    }
                }
                "capabilities" => req.capabilities = val.split(',').map(str::to_string).collect(),
                "options" => {}
                other => return Err(bad(format!("unexpected key {other:?}"))),
            }
        }
        if req.count.is_some() && !req.device_ids.is_empty() {
            return Err(bad("count and device cannot both be given".into()));
        }
        if req.count.is_none() && req.device_ids.is_empty() {
            req.count = Some(GpuCount::N(1));
        }
        if let Some(d) = &req.driver {
            if d != "nvidia" {
                return Err(bad(format!(
                    "driver {d:?} has no CDI mapping (only nvidia); use --device vendor.com/class=name"
                )));
            }
        }
        Ok(req)
    }

    /// The CDI requests: `all` → `nvidia.com/gpu=all`, `N` → the first N GPUs the specs define
    /// (numbered names in numeric order, else the spec's order), `device=` → those names.
    pub fn to_requests(&self, reg: &Registry) -> Result<Vec<DeviceRequest>, CdiError> {
        const KIND: &str = "nvidia.com/gpu";
        let names: Vec<String> = match self.count {
            Some(GpuCount::All) => vec!["all".into()],
            Some(GpuCount::N(0)) => Vec::new(),
            Some(GpuCount::N(n)) => {
                let mut avail: Vec<String> = reg
                    .devices_of(KIND)
                    .into_iter()
                    .filter(|d| d != "all")
                    .collect();
                let numbered: Vec<String> = avail
                    .iter()
                    .filter(|d| d.chars().all(|c| c.is_ascii_digit()))
                    .cloned()
                    .collect();
                if !numbered.is_empty() {
                    avail = numbered;
                    avail.sort_by_key(|d| d.parse::<u64>().unwrap_or(u64::MAX));
                }
                if avail.is_empty() {
                    return Err(reg.unknown(&format!("{KIND}=0"), KIND));
                }
                if (avail.len() as u64) < u64::from(n) {
                    return Err(CdiError::BadFlag {
                        flag: "--gpus",
                        value: n.to_string(),
                        why: format!(
                            "{n} GPUs requested but the CDI specs define only {} ({})",
                            avail.len(),
                            avail.join(", ")
                        ),
                    });
                }
                avail.truncate(n as usize);
                avail
            }
            None => self.device_ids.clone(),
        };
        names
            .into_iter()
            .map(|n| {
                let fq = format!("{KIND}={n}");
                crate::parse_qualified(&fq)?;
                Ok(DeviceRequest::Cdi(fq))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_like_docker() {
        assert_eq!(csv_fields("a,b").unwrap(), vec!["a", "b"]);
        assert_eq!(csv_fields("\"device=0,1\"").unwrap(), vec!["device=0,1"]);
        assert_eq!(
            csv_fields("\"device=0,1\",driver=nvidia").unwrap(),
            vec!["device=0,1", "driver=nvidia"]
        );
        assert_eq!(csv_fields("\"a\"\"b\"").unwrap(), vec!["a\"b"]);
        assert!(csv_fields("\"open").is_err());
        assert!(csv_fields("a\"b").is_err());
    }
}
