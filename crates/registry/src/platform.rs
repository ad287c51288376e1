//! Choosing the manifest for the build platform out of an OCI index or Docker manifest list.

use rbuild_image::manifest::{Descriptor, Index, Platform};

/// The platform rbuild itself runs on, the default target of `FROM` without `--platform`.
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "x86" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.to_string(),
        os: "linux".to_string(),
        variant: variant.map(str::to_string),
    }
}

/// `os/arch[/variant]`, the spelling of `--platform`, for messages.
pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
        _ => format!("{}/{}", p.os, p.architecture),
    }
}

/// Normalises GOARCH aliases and default variants the way containerd's platform matcher does, so
/// `linux/aarch64` matches an index entry `linux/arm64/v8`.
fn normalize(p: &Platform) -> (String, String, String) {
    let os = p.os.to_ascii_lowercase();
    let mut arch = p.architecture.to_ascii_lowercase();
    let mut variant = p.variant.clone().unwrap_or_default().to_ascii_lowercase();
    match arch.as_str() {
        "x86_64" | "x86-64" => arch = "amd64".into(),
        "i386" => arch = "386".into(),
        "aarch64" => arch = "arm64".into(),
        "armhf" => {
            arch = "arm".into();
            variant = "v7".into();
        }
        "armel" => {
            arch = "arm".into();
            variant = "v6".into();
        }
        _ => {}
    }
    match (arch.as_str(), variant.as_str()) {
        ("arm64", "8" | "v8") => variant.clear(),
        ("amd64", "v1") => variant.clear(),
        ("arm", "") => variant = "v7".into(),
        ("arm", v) if !v.starts_with('v') => variant = format!("v{v}"),
        _ => {}
    }
    (os, arch, variant)
}

/// Whether an index entry for `have` can run on `want`: same OS and architecture, and the same
/// variant (with default variants filled in).
pub fn matches(want: &Platform, have: &Platform) -> bool {
    normalize(want) == normalize(have)
}

/// Picks the first manifest in `index` for `want`, skipping attestation manifests; `None` when the
/// index has no image for that platform.
pub fn select<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| {
        !matches!(
            d.annotations.get("vnd.docker.reference.type"),
            Some(t) if t == "attestation-manifest"
        ) && d.platform.as_ref().is_some_and(|p| matches(want, p))
    })
}

/// The platforms an index offers, for the "no matching platform" error.
pub fn available(index: &Index) -> Vec<String> {
    index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(platform_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn platform_matching_table() {
        let table = [
            (p("linux", "amd64", None), p("linux", "amd64", None), true),
            (p("linux", "x86_64", None), p("linux", "amd64", None), true),
            (
                p("linux", "arm64", None),
                p("linux", "arm64", Some("v8")),
                true,
            ),
            (p("linux", "aarch64", None), p("linux", "arm64", None), true),
            (p("linux", "arm", None), p("linux", "arm", Some("v7")), true),
            (
                p("linux", "arm", Some("v6")),
                p("linux", "arm", Some("v7")),
                false,
            ),
            (
                p("linux", "arm", Some("7")),
                p("linux", "arm", Some("v7")),
                true,
            ),
            (
                p("linux", "amd64", None),
                p("windows", "amd64", None),
                false,
            ),
            (p("linux", "amd64", None), p("linux", "arm64", None), false),
            (
                p("linux", "amd64", None),
                p("unknown", "unknown", None),
                false,
            ),
        ];
        for (want, have, expect) in table {
            assert_eq!(matches(&want, &have), expect, "{want:?} vs {have:?}");
        }
    }

    #[test]
    fn host_platform_is_linux_with_goarch() {
        let h = host_platform();
        assert_eq!(h.os, "linux");
        assert!(!h.architecture.contains('_'), "{}", h.architecture);
        assert!(platform_string(&h).starts_with("linux/"));
    }
}
