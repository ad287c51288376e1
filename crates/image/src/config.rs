//! Image configuration types as Docker writes them.
//!
//! `oci-spec` drops Docker's extensions (`Healthcheck`, `OnBuild`, `Shell`) and cannot round-trip
//! `"Cmd": null`, so these types follow moby's JSON field names and omission rules instead, and keep
//! any field they do not know in `extra` so a loaded config re-serialises to what was loaded.

use std::collections::BTreeMap;

use rbuild_digest::Digest;
use serde::{Deserialize, Deserializer, Serialize};

use crate::ImageError;

/// Deserialises `null` as the type's default, because Docker's legacy writer emits `"Env": null`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn none_or_empty_str(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

fn none_or_empty_vec<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_none_or(Vec::is_empty)
}

fn none_or_empty_map<V>(m: &Option<BTreeMap<String, V>>) -> bool {
    m.as_ref().is_none_or(BTreeMap::is_empty)
}

fn none_or_false(b: &Option<bool>) -> bool {
    !b.unwrap_or(false)
}

fn none_or_zero_i64(n: &Option<i64>) -> bool {
    n.unwrap_or(0) == 0
}

fn none_or_zero_u32(n: &Option<u32>) -> bool {
    n.unwrap_or(0) == 0
}

/// The `{}` value of `ExposedPorts` and `Volumes` maps, which Docker models as a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The whole image config blob; its digest is the image id, so its serialisation must be stable.
///
/// Optional fields are `Option`s so "not set" and "inherited" stay distinguishable while a
/// Dockerfile is evaluated; on output, empty values are omitted as Go's `omitempty` does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time; omitted for reproducible images that set none.
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub created: Option<String>,
    /// `MAINTAINER` / author of the image.
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`, `arm64`), GOARCH spelling.
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    /// Operating system, GOOS spelling (`linux`).
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    /// Architecture variant (`v8` for arm64).
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub variant: Option<String>,
    /// The runtime defaults a container of this image starts with; always written, as Docker does.
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    /// The layer stack, by uncompressed digest.
    #[serde(default, deserialize_with = "null_default")]
    pub rootfs: RootFs,
    /// One entry per Dockerfile instruction, as `docker history` shows.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub history: Vec<History>,
    /// Fields rbuild does not model (legacy `container_config`, `docker_version`, `os.version`...),
    /// kept so a loaded config round-trips.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The `config` object: what Docker's `container.Config` carries into an image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub user: Option<String>,
    /// `EXPOSE`d ports as `"80/tcp"` keys.
    #[serde(default, skip_serializing_if = "none_or_empty_map")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// `ENV`, as `KEY=value` in instruction order.
    #[serde(default, skip_serializing_if = "none_or_empty_vec")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`. `None` (absent or `null`) means unset; `Some(vec![])` is an explicit
    /// `ENTRYPOINT []` and is written as `[]`, as Docker's builder does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`, with the same null-versus-empty distinction as `entrypoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME` mount points.
    #[serde(default, skip_serializing_if = "none_or_empty_map")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub working_dir: Option<String>,
    /// `LABEL`s.
    #[serde(default, skip_serializing_if = "none_or_empty_map")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub stop_signal: Option<String>,
    /// `HEALTHCHECK` (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `ONBUILD` triggers (Docker extension).
    #[serde(default, skip_serializing_if = "none_or_empty_vec")]
    pub on_build: Option<Vec<String>>,
    /// `SHELL` (Docker extension).
    #[serde(default, skip_serializing_if = "none_or_empty_vec")]
    pub shell: Option<Vec<String>>,
    /// Windows-only quoting hint Docker still records on Linux for shell-form `CMD`.
    #[serde(default, skip_serializing_if = "none_or_false")]
    pub args_escaped: Option<bool>,
    /// Fields of Docker's `container.Config` not modelled here (`Hostname`, `Tty`...), kept for round-trips.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `HEALTHCHECK` settings; durations in nanoseconds, as Go's `time.Duration` serialises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`; empty inherits.
    #[serde(default, skip_serializing_if = "none_or_empty_vec")]
    pub test: Option<Vec<String>>,
    /// Time between checks (ns); 0 inherits.
    #[serde(default, skip_serializing_if = "none_or_zero_i64")]
    pub interval: Option<i64>,
    /// Time before a check is considered hung (ns).
    #[serde(default, skip_serializing_if = "none_or_zero_i64")]
    pub timeout: Option<i64>,
    /// Grace period before failures count (ns).
    #[serde(default, skip_serializing_if = "none_or_zero_i64")]
    pub start_period: Option<i64>,
    /// Check interval during the start period (ns).
    #[serde(default, skip_serializing_if = "none_or_zero_i64")]
    pub start_interval: Option<i64>,
    /// Consecutive failures before unhealthy.
    #[serde(default, skip_serializing_if = "none_or_zero_u32")]
    pub retries: Option<u32>,
}

/// `rootfs`: the ordered layer diff_ids that make an image's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, bottom first.
    #[serde(default, deserialize_with = "null_default")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One `history` entry; `empty_layer` entries do not consume a diff_id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time of the step.
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub created: Option<String>,
    /// The instruction, e.g. `/bin/sh -c #(nop)  CMD ["sh"]`.
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub created_by: Option<String>,
    /// Author of the step.
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub author: Option<String>,
    /// Free-form comment (`buildkit.dockerfile.v0`).
    #[serde(default, skip_serializing_if = "none_or_empty_str")]
    pub comment: Option<String>,
    /// True when the step changed only metadata and produced no layer.
    #[serde(default, skip_serializing_if = "none_or_false")]
    pub empty_layer: Option<bool>,
}

impl History {
    /// Whether this step produced no layer (absent counts as false, as in Docker).
    pub fn is_empty_layer(&self) -> bool {
        self.empty_layer.unwrap_or(false)
    }
}

/// Legacy top-level fields that describe the build of the parent image, not of a child built on it.
const PARENT_ONLY_FIELDS: &[&str] = &[
    "container",
    "container_config",
    "docker_version",
    "id",
    "parent",
    "comment",
];

impl ImageConfig {
    /// A config with nothing set but the platform, the starting point of `FROM scratch`.
    pub fn empty(os: &str, architecture: &str, variant: Option<&str>) -> ImageConfig {
        ImageConfig {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
            ..Default::default()
        }
    }

    /// The platform the image is for, as its config records it (not normalised; compare with
    /// [`Platform::matches`](rbuild_platform::Platform::matches)). `None` when the config names no
    /// OS or architecture (some hand-made images), so callers can say the platform is unknown.
    pub fn platform(&self) -> Option<rbuild_platform::Platform> {
        if self.os.is_empty() || self.architecture.is_empty() {
            return None;
        }
        let text = |k: &str| {
            self.extra
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        Some(rbuild_platform::Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: text("os.version"),
            os_features: self
                .extra
                .get("os.features")
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        })
    }

    /// Prepares a base image's config to start a child build: keeps runtime config, history and
    /// rootfs (as `FROM` inherits them) but drops the creation time and the legacy fields that
    /// describe how the parent itself was built.
    pub fn reset_for_child(&mut self) {
        self.created = None;
        for k in PARENT_ONLY_FIELDS {
            self.extra.remove(*k);
        }
    }

    /// `ENV` entries (`KEY=value`), for expanding variables during a build.
    pub fn env(&self) -> &[String] {
        self.config.env.as_deref().unwrap_or(&[])
    }

    /// Mutable `ENV` list, created on first use.
    pub fn env_mut(&mut self) -> &mut Vec<String> {
        self.config.env.get_or_insert_with(Vec::new)
    }

    /// The value of one `ENV` variable.
    pub fn get_env(&self, key: &str) -> Option<&str> {
        self.env()
            .iter()
            .rev()
            .find_map(|e| e.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }

    /// `ENV key=value`: replaces an existing entry in place (keeping its position, as Docker does)
    /// or appends.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        let env = self.env_mut();
        match env.iter_mut().find(|e| {
            e.split_once('=')
                .map_or(e.as_str() == key, |(k, _)| k == key)
        }) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    /// `LABEL key=value` (later values win).
    pub fn set_label(&mut self, key: &str, value: &str) {
        self.config
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
    }

    /// `EXPOSE`: `port` is normalised to `port/tcp` when it has no protocol.
    pub fn expose(&mut self, port: &str) {
        let key = if port.contains('/') {
            port.to_ascii_lowercase()
        } else {
            format!("{port}/tcp")
        };
        self.config
            .exposed_ports
            .get_or_insert_with(BTreeMap::new)
            .insert(key, Empty {});
    }

    /// `VOLUME`.
    pub fn add_volume(&mut self, path: &str) {
        self.config
            .volumes
            .get_or_insert_with(BTreeMap::new)
            .insert(path.to_string(), Empty {});
    }

    /// `ONBUILD`: records a trigger for images built `FROM` this one.
    pub fn add_onbuild(&mut self, trigger: &str) {
        self.config
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.to_string());
    }

    /// Removes and returns the base image's `ONBUILD` triggers, which a child runs and does not
    /// inherit.
    pub fn take_onbuild(&mut self) -> Vec<String> {
        self.config.on_build.take().unwrap_or_default()
    }

    /// `WORKDIR`, empty when unset (the container starts in `/`).
    pub fn working_dir(&self) -> &str {
        self.config.working_dir.as_deref().unwrap_or("")
    }

    /// `USER`, empty when unset (root).
    pub fn user(&self) -> &str {
        self.config.user.as_deref().unwrap_or("")
    }
}

/// Serialises any value as canonical JSON (sorted keys, no whitespace) so equal values always hash
/// to the same digest.
///
/// Strings are escaped as standard JSON requires (control characters as `\n`, `\u0000`...):
/// OLPC canonical JSON writes them raw, which Docker, skopeo and serde reject, and a heredoc RUN
/// puts newlines into history entries.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let v = serde_json::to_value(value)?;
    let mut buf = Vec::new();
    write_sorted(&v, &mut buf)?;
    Ok(buf)
}

fn write_sorted(v: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                if let Some(child) = map.get(k) {
                    write_sorted(child, out)?;
                }
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out)?;
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other)?,
    }
    Ok(())
}

impl ImageConfig {
    /// The bytes of the config blob; canonical so that the image id is a pure function of content.
    ///
    /// Canonical JSON has no floats; should an unknown carried-over field hold one, the sorted
    /// plain serde_json form is returned instead (still deterministic).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        match canonical_json(self) {
            Ok(b) => b,
            Err(_) => serde_json::to_value(self)
                .and_then(|v| serde_json::to_vec(&v))
                .unwrap_or_default(),
        }
    }

    /// Parses a config blob written by Docker, BuildKit, podman or rbuild.
    pub fn from_json(bytes: &[u8]) -> Result<ImageConfig, ImageError> {
        serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
            what: "image config".into(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_json_is_valid_json_with_control_characters() {
        let mut cfg = super::ImageConfig::empty("linux", "amd64", None);
        cfg.history.push(super::History {
            created_by: Some("RUN <<EOF\nline\tx\u{1}\nEOF".into()),
            ..Default::default()
        });
        let bytes = cfg.to_canonical_json();
        let back: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(
            back["history"][0]["created_by"],
            "RUN <<EOF\nline\tx\u{1}\nEOF"
        );
        assert!(!bytes.contains(&b'\n'), "raw newline in canonical JSON");
        assert_eq!(bytes, super::canonical_json(&back).unwrap(), "stable bytes");
    }

    use super::*;

    #[test]
    fn omits_empty_fields_and_keeps_explicit_empty_cmd() {
        let mut cfg = ImageConfig::empty("linux", "amd64", None);
        cfg.config.cmd = Some(vec![]);
        cfg.config.user = Some(String::new());
        cfg.config.env = Some(vec![]);
        cfg.config.args_escaped = Some(false);
        let json = String::from_utf8(cfg.to_canonical_json()).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"amd64","config":{"Cmd":[]},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#
        );
        let empty = ImageConfig::empty("linux", "arm64", Some("v8"));
        let json = String::from_utf8(empty.to_canonical_json()).unwrap();
        assert!(
            json.contains(r#""config":{}"#) && json.contains(r#""variant":"v8""#),
            "{json}"
        );
    }

    #[test]
    fn reads_docker_legacy_nulls_and_keeps_unknown_fields() {
        let legacy = br#"{"architecture":"amd64","os":"linux","docker_version":"20.10.7","container":"abc",
          "config":{"Hostname":"","Env":null,"Cmd":null,"Entrypoint":["/bin/sh"],"OnBuild":null,
            "Labels":null,"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000,"StartInterval":5000000000,"Retries":3}},
          "rootfs":{"type":"layers","diff_ids":["sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]},
          "history":[{"created":"2021-01-01T00:00:00Z","created_by":"x","empty_layer":true}]}"#;
        let cfg = ImageConfig::from_json(legacy).unwrap();
        let c = &cfg.config;
        assert_eq!(c.cmd, None);
        assert_eq!(c.entrypoint.as_deref(), Some(&["/bin/sh".to_string()][..]));
        assert!(cfg.env().is_empty());
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(
            (hc.interval, hc.start_interval, hc.retries),
            (Some(30_000_000_000), Some(5_000_000_000), Some(3))
        );
        assert!(cfg.history[0].is_empty_layer());
        assert_eq!(
            cfg.extra.get("docker_version").and_then(|v| v.as_str()),
            Some("20.10.7")
        );
        assert!(c.extra.contains_key("Hostname"));
        // round trip is stable
        let again = ImageConfig::from_json(&cfg.to_canonical_json()).unwrap();
        assert_eq!(again, cfg);
        let json = String::from_utf8(cfg.to_canonical_json()).unwrap();
        assert!(json.contains(r#""ExposedPorts":{"80/tcp":{}}"#), "{json}");
        assert!(!json.contains("\"Cmd\""), "{json}");
        // a child does not inherit the parent's build metadata
        let mut child = cfg.clone();
        child.reset_for_child();
        assert!(
            !child.extra.contains_key("docker_version") && !child.extra.contains_key("container")
        );
        assert_eq!(child.config, cfg.config);
    }

    #[test]
    fn builder_helpers_follow_docker() {
        let mut cfg = ImageConfig::empty("linux", "amd64", None);
        cfg.set_env("PATH", "/bin");
        cfg.set_env("A", "1");
        cfg.set_env("PATH", "/usr/bin:/bin");
        assert_eq!(cfg.env(), ["PATH=/usr/bin:/bin", "A=1"]);
        assert_eq!(cfg.get_env("A"), Some("1"));
        cfg.expose("80");
        cfg.expose("53/UDP");
        let ports: Vec<&String> = cfg.config.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        cfg.add_onbuild("RUN x");
        assert_eq!(cfg.take_onbuild(), vec!["RUN x".to_string()]);
        assert!(cfg.take_onbuild().is_empty());
        assert_eq!(cfg.working_dir(), "");
    }

    #[test]
    fn malformed_config_reports_position() {
        let err = ImageConfig::from_json(b"{\"os\": 5}").unwrap_err();
        assert!(err.to_string().contains("column"), "{err}");
    }
}
