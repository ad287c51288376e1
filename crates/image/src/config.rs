//! Image configuration types as Docker writes them.
//!
//! `oci-spec` drops Docker's extensions (`Healthcheck`, `OnBuild`, `Shell`) and cannot round-trip
//! `"Cmd": null`, so these types follow moby's JSON field names and omission rules instead, and keep
//! any field they do not know in `extra` so a loaded config re-serialises to what was loaded.

use std::collections::BTreeMap;

use digest::Digest;
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

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

/// The `{}` value of `ExposedPorts` and `Volumes` maps, which Docker models as a set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The whole image config blob; its digest is the image id, so its serialisation must be stable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time; omitted for reproducible images that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `MAINTAINER` / author of the image.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub author: String,
    /// CPU architecture (`amd64`, `arm64`), GOARCH spelling.
    #[serde(default, deserialize_with = "null_default")]
    pub architecture: String,
    /// Operating system, GOOS spelling (`linux`).
    #[serde(default, deserialize_with = "null_default")]
    pub os: String,
    /// Architecture variant (`v8` for arm64).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub variant: String,
    /// The runtime defaults a container of this image starts with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layer stack, by uncompressed digest.
    #[serde(default)]
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
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub user: String,
    /// `EXPOSE`d ports as `"80/tcp"` keys.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `ENV`, as `KEY=value` in instruction order.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub env: Vec<String>,
    /// `ENTRYPOINT`. `None` (absent or `null`) means inherit nothing; `Some(vec![])` is an explicit
    /// `ENTRYPOINT []` and is written as `[]`, as Docker's builder does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`, with the same null-versus-empty distinction as `entrypoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME` mount points.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub volumes: BTreeMap<String, Empty>,
    /// `WORKDIR`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub working_dir: String,
    /// `LABEL`s.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_default"
    )]
    pub labels: BTreeMap<String, String>,
    /// `STOPSIGNAL`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub stop_signal: String,
    /// `HEALTHCHECK` (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// `ONBUILD` triggers (Docker extension).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub on_build: Vec<String>,
    /// `SHELL` (Docker extension).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub shell: Vec<String>,
    /// Windows-only quoting hint Docker still records on Linux for shell-form `CMD`.
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "null_default"
    )]
    pub args_escaped: bool,
    /// Fields of Docker's `container.Config` not modelled here (`Hostname`, `Tty`...), kept for round-trips.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `HEALTHCHECK` settings; durations in nanoseconds, as Go's `time.Duration` serialises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub test: Vec<String>,
    /// Time between checks (ns); 0 inherits.
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "null_default"
    )]
    pub interval: i64,
    /// Time before a check is considered hung (ns).
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "null_default"
    )]
    pub timeout: i64,
    /// Grace period before failures count (ns).
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "null_default"
    )]
    pub start_period: i64,
    /// Check interval during the start period (ns).
    #[serde(
        default,
        skip_serializing_if = "is_zero_i64",
        deserialize_with = "null_default"
    )]
    pub start_interval: i64,
    /// Consecutive failures before unhealthy.
    #[serde(
        default,
        skip_serializing_if = "is_zero_i32",
        deserialize_with = "null_default"
    )]
    pub retries: i32,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction, e.g. `/bin/sh -c #(nop)  CMD ["sh"]`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub created_by: String,
    /// Author of the step.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub author: String,
    /// Free-form comment (`buildkit.dockerfile.v0`).
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub comment: String,
    /// True when the step changed only metadata and produced no layer.
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "null_default"
    )]
    pub empty_layer: bool,
}

/// Serialises any value as canonical JSON (sorted keys, no whitespace) so equal values always hash
/// to the same digest.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    value.serialize(&mut ser)?;
    Ok(buf)
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
    use super::*;

    #[test]
    fn omits_empty_fields_and_keeps_explicit_empty_cmd() {
        let cfg = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: Some(ContainerConfig {
                cmd: Some(vec![]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = String::from_utf8(cfg.to_canonical_json()).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"amd64","config":{"Cmd":[]},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#
        );
    }

    #[test]
    fn reads_docker_legacy_nulls_and_keeps_unknown_fields() {
        let legacy = br#"{"architecture":"amd64","os":"linux","docker_version":"20.10.7",
          "config":{"Hostname":"","Env":null,"Cmd":null,"Entrypoint":["/bin/sh"],"OnBuild":null,
            "Labels":null,"ExposedPorts":{"80/tcp":{}},"Healthcheck":{"Test":["CMD","true"],"Interval":30000000000,"StartInterval":5000000000,"Retries":3}},
          "rootfs":{"type":"layers","diff_ids":["sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]},
          "history":[{"created":"2021-01-01T00:00:00Z","created_by":"x","empty_layer":true}]}"#;
        let cfg = ImageConfig::from_json(legacy).unwrap();
        let c = cfg.config.as_ref().unwrap();
        assert_eq!(c.cmd, None);
        assert_eq!(c.entrypoint.as_deref(), Some(&["/bin/sh".to_string()][..]));
        assert!(c.env.is_empty());
        assert!(c.exposed_ports.contains_key("80/tcp"));
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(
            (hc.interval, hc.start_interval, hc.retries),
            (30_000_000_000, 5_000_000_000, 3)
        );
        assert!(cfg.history[0].empty_layer);
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
    }

    #[test]
    fn malformed_config_reports_position() {
        let err = ImageConfig::from_json(b"{\"os\": 5}").unwrap_err();
        assert!(err.to_string().contains("column"), "{err}");
    }
}
