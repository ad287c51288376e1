//! Choosing the manifest for the build platform out of an OCI index or Docker manifest list.

use rbuild_image::manifest::{Descriptor, Index, Platform};

/// The platform rbuild itself runs on, the default target of `FROM` without `--platform`; the
/// same notion of the host as the engine's (one [`Platform::host`]).
pub fn host_platform() -> Platform {
    Platform::host()
}

/// `os/arch[/variant]`, the spelling of `--platform`, for messages.
pub fn platform_string(p: &Platform) -> String {
    p.to_string()
}

/// Whether an index entry for `have` can run on `want`: same OS and architecture, and the same
/// variant once both are normalised as containerd does ([`Platform::matches`]).
pub fn matches(want: &Platform, have: &Platform) -> bool {
    want.matches(have)
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
            ..Platform::default()
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
