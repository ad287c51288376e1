//! One platform type for every rbuild crate: the front end's `--platform` and `BUILDPLATFORM`,
//! the engine's stage platforms and cache keys, the image crate's index descriptors and configs,
//! and the registry client's manifest selection.
//!
//! Why one type: two spellings of one platform must compare equal everywhere, or the engine asks
//! for `linux/arm64/v8`, the registry looks for `linux/arm64`, and a build pulls (or, worse, reuses)
//! the wrong image. Every [`Platform`] made by [`Platform::parse`] or [`Platform::host`] is
//! *normalised* the way containerd's `platforms` package does it (`aarch64` → `arm64` with the
//! default `v8` variant left out, `x86_64` → `amd64`, `armhf` → `arm/v7`, `arm` → `arm/v7`, …),
//! so `Eq`, `Hash` and `Display` are over the canonical spelling. Platforms deserialised from an
//! image or index are kept as written (their bytes are content-addressed); compare them with
//! [`Platform::matches`], which normalises both sides.
//!
//! ```
//! use rbuild_platform::Platform;
//! let p = Platform::parse("linux/aarch64").unwrap();
//! assert_eq!(p.to_string(), "linux/arm64");
//! assert_eq!(p.variant, None);
//! assert!(p.matches(&Platform::parse("linux/arm64/v8").unwrap()));
//! assert_eq!(Platform::parse("linux/armhf").unwrap().to_string(), "linux/arm/v7");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// An OCI platform, with the field names (and JSON spelling) of the image spec's `platform`
/// object, so index descriptors and image configs carry it as is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, GOARCH spelling (`amd64`, `arm64`, `arm`, `386`, …).
    pub architecture: String,
    /// Operating system, GOOS spelling (`linux`, `windows`).
    pub os: String,
    /// OS version (Windows images).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features (Windows images).
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant (`v7` for arm, `v8` for arm64 when written out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why [`Platform::parse`] rejected a string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {value:?}: expected os/arch[/variant]")]
pub struct PlatformError {
    /// The rejected text.
    pub value: String,
}

/// Operating systems a one-word `--platform` may name (then the architecture is the host's).
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "windows",
];

impl Platform {
    /// A normalised platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let mut p = Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            os_version: None,
            os_features: Vec::new(),
            variant: variant.filter(|v| !v.is_empty()).map(str::to_string),
        };
        p.normalize();
        p
    }

    /// Parses `os/arch[/variant]`, or one word naming an OS (the host's architecture) or an
    /// architecture (on Linux), as `--platform` and `FROM --platform` take them, and
    /// normalises the result.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let err = || PlatformError {
            value: s.to_string(),
        };
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        let parts: Vec<&str> = s.trim().split('/').collect();
        if !parts.iter().all(|p| ok(p)) {
            return Err(err());
        }
        match parts.as_slice() {
            [one] => {
                let one = one.to_ascii_lowercase();
                if KNOWN_OS.contains(&one.as_str()) {
                    let host = Platform::host();
                    Ok(Platform::new(
                        &one,
                        &host.architecture,
                        host.variant.as_deref(),
                    ))
                } else if is_known_arch(&one) {
                    Ok(Platform::new("linux", &one, None))
                } else {
                    Err(err())
                }
            }
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, v] => Ok(Platform::new(os, arch, Some(v))),
            _ => Err(err()),
        }
    }

    /// The platform this process runs on, normalised (so `linux/arm64`, not `linux/arm64/v8`,
    /// on an arm64 host, as BuildKit reports `BUILDPLATFORM`).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    /// `linux/amd64`, the common default of tests and docs.
    pub fn linux_amd64() -> Platform {
        Platform::new("linux", "amd64", None)
    }

    /// This platform in canonical form (see the crate docs); idempotent.
    pub fn normalized(&self) -> Platform {
        let mut p = self.clone();
        p.normalize();
        p
    }

    fn normalize(&mut self) {
        let os = self.os.to_ascii_lowercase();
        self.os = if os == "macos" { "darwin".into() } else { os };
        let arch = self.architecture.to_ascii_lowercase();
        let variant = self
            .variant
            .take()
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        let (arch, variant): (&str, String) = match arch.as_str() {
            "i386" | "386" => ("386", String::new()),
            "x86_64" | "x86-64" | "amd64" => (
                "amd64",
                if variant == "v1" {
                    String::new()
                } else {
                    variant
                },
            ),
            "aarch64" | "arm64" => (
                "arm64",
                match variant.as_str() {
                    "8" | "v8" | "v8.0" => String::new(),
                    "9" | "9.0" | "v9.0" => "v9".into(),
                    v if !v.is_empty() && !v.starts_with('v') => format!("v{v}"),
                    _ => variant,
                },
            ),
            "armhf" => ("arm", "v7".into()),
            "armel" => ("arm", "v6".into()),
            "arm" => (
                "arm",
                match variant.as_str() {
                    "" | "7" => "v7".into(),
                    "5" | "6" | "8" => format!("v{variant}"),
                    _ => variant,
                },
            ),
            _ => (arch.as_str(), variant),
        };
        self.architecture = arch.to_string();
        self.variant = (!variant.is_empty()).then_some(variant);
    }

    /// Whether an image for `other` is an image for this platform: same OS, architecture and
    /// variant once both are normalised (so an index entry `linux/arm64/v8` serves
    /// `linux/arm64`), and the same OS version when both name one.
    pub fn matches(&self, other: &Platform) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.os == b.os
            && a.architecture == b.architecture
            && a.variant == b.variant
            && match (&a.os_version, &b.os_version) {
                (Some(x), Some(y)) => x == y,
                _ => true,
            }
    }

    /// The `-static` binary Debian's `qemu-user-static` provides for this architecture, for
    /// messages that say what to install (`None` when it has none).
    pub fn qemu_name(&self) -> Option<&'static str> {
        let p = self.normalized();
        Some(match p.architecture.as_str() {
            "amd64" => "x86_64",
            "386" => "i386",
            "arm64" => "aarch64",
            "arm" => "arm",
            "ppc64le" => "ppc64le",
            "ppc64" => "ppc64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            "mips64le" => "mips64el",
            "mips64" => "mips64",
            "loong64" => "loongarch64",
            _ => return None,
        })
    }
}

fn is_known_arch(a: &str) -> bool {
    matches!(
        a,
        "386"
            | "i386"
            | "amd64"
            | "x86_64"
            | "x86-64"
            | "arm"
            | "armhf"
            | "armel"
            | "arm64"
            | "aarch64"
            | "ppc64"
            | "ppc64le"
            | "s390x"
            | "riscv64"
            | "mips64"
            | "mips64le"
            | "loong64"
    )
}

/// `os/arch[/variant]`, the spelling of `--platform` and `TARGETPLATFORM`.
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

/// Parses a comma-separated `--platform` list (`linux/amd64,linux/arm64`), dropping duplicates
/// (after normalisation) and keeping the order given.
pub fn parse_list(s: &str) -> Result<Vec<Platform>, PlatformError> {
    let mut out: Vec<Platform> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p = Platform::parse(part)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(PlatformError {
            value: s.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_follows_containerd() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/8", "linux/arm64"),
            ("linux/arm64/v9.0", "linux/arm64/v9"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("Windows/AMD64", "windows/amd64"),
            ("arm64", "linux/arm64"),
        ];
        for (input, want) in cases {
            let p = Platform::parse(input).unwrap();
            assert_eq!(p.to_string(), want, "{input}");
            assert_eq!(p.normalized(), p, "{input} is not idempotent");
        }
        for bad in ["", "linux/", "a/b/c/d", "nonsense", "linux/a b"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn matching_normalises_both_sides() {
        let p = |s: &str| Platform {
            architecture: s.split('/').nth(1).unwrap().into(),
            os: s.split('/').next().unwrap().into(),
            variant: s.split('/').nth(2).map(Into::into),
            ..Platform::default()
        };
        let table = [
            ("linux/arm64", "linux/arm64/v8", true),
            ("linux/aarch64", "linux/arm64", true),
            ("linux/arm", "linux/arm/v7", true),
            ("linux/arm/v6", "linux/arm/v7", false),
            ("linux/amd64", "windows/amd64", false),
            ("linux/amd64", "linux/arm64", false),
            ("linux/amd64", "unknown/unknown", false),
        ];
        for (a, b, want) in table {
            assert_eq!(p(a).matches(&p(b)), want, "{a} vs {b}");
            assert_eq!(p(b).matches(&p(a)), want, "{b} vs {a}");
        }
    }

    #[test]
    fn host_is_normalised_and_has_no_default_variant() {
        let h = Platform::host();
        assert_eq!(h, h.normalized());
        assert!(!h.architecture.contains('_'), "{h}");
        if h.architecture == "arm64" {
            assert_eq!(h.variant, None);
        }
    }

    #[test]
    fn json_uses_the_oci_field_names() {
        let p: Platform = serde_json::from_str(
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.17763.1","os.features":["win32k"]}"#,
        )
        .unwrap();
        assert_eq!(p.os_version.as_deref(), Some("10.0.17763.1"));
        assert_eq!(p.os_features, vec!["win32k".to_string()]);
        let back = serde_json::to_string(&Platform::linux_amd64()).unwrap();
        assert_eq!(back, r#"{"architecture":"amd64","os":"linux"}"#);
    }

    #[test]
    fn lists_keep_order_and_drop_duplicates() {
        let l = parse_list("linux/amd64, linux/arm64,linux/aarch64").unwrap();
        let s: Vec<String> = l.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["linux/amd64", "linux/arm64"]);
        assert!(parse_list(",").is_err());
    }
}
