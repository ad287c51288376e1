//! Image references parsed and normalised as docker's `distribution/reference` does, so
//! `detection:1.0` and `docker.io/library/detection:1.0` name the same local image.

use std::fmt;

use rbuild_digest::Digest;

use crate::ImageError;

/// The registry docker assumes when a name has none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag docker assumes when a name has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A normalised image reference: registry, repository path, optional tag and digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn invalid(input: &str, reason: impl Into<String>) -> ImageError {
    ImageError::InvalidReference {
        input: input.to_string(),
        reason: reason.into(),
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty()
        || !b.first().copied().is_some_and(alnum)
        || !b.last().copied().is_some_and(alnum)
    {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let x = b[i];
        if alnum(x) {
            i += 1;
            continue;
        }
        // a separator run: ".", "_", "__" or "-"+, followed by alnum
        let start = i;
        match x {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || !b.get(i).copied().is_some_and(alnum) {
            return false;
        }
    }
    true
}

/// Host components and optional `:port`, or a bracketed IPv6 literal with optional port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(p) => return !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()),
                None => return false,
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let w = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    t.len() <= MAX_TAG_LEN
        && t.as_bytes().first().copied().is_some_and(w)
        && t.bytes().all(|b| w(b) || b == b'.' || b == b'-')
}

impl Reference {
    /// Parses what a user typed (`detection:1.0`, `localhost:5000/a/b:t`, `name@sha256:...`) into the
    /// normalised form docker uses, adding `docker.io`, `library/` and the `latest` tag as docker does.
    pub fn parse(s: &str) -> Result<Reference, ImageError> {
        if s.is_empty() {
            return Err(invalid(s, "empty reference"));
        }
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid(
                s,
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest: Digest = d
                    .parse()
                    .map_err(|e: rbuild_digest::ParseDigestError| invalid(s, e.reason))?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = name_tag.rfind('/').map(|i| i + 1).unwrap_or(0);
        let last_part = name_tag.get(last_slash..).unwrap_or("");
        let (name, tag) = match last_part.rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (
                    name_tag.get(..split).unwrap_or(""),
                    Some(name_tag.get(split + 1..).unwrap_or("")),
                )
            }
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid(s, format!("invalid tag {t:?}")));
            }
        }
        if name.is_empty() {
            return Err(invalid(s, "empty repository name"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.to_ascii_lowercase() != first =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        if !valid_domain(&registry) {
            return Err(invalid(s, format!("invalid registry {registry:?}")));
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(s, "repository name must be lowercase"));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(invalid(s, format!("invalid repository name {path:?}")));
        }
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(
                s,
                format!("repository name longer than {MAX_NAME_LEN} characters"),
            ));
        }
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry, e.g. `library/detection`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `latest` was filled in when neither tag nor digest was given.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned manifest digest, if the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository` without tag or digest, the key docker groups tags under.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The repository as `docker images` shows it: `detection`, `user/app`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// The short form docker prints (`detection:1.0`, `Untagged: detection:1.0`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// A copy with another tag (and no digest), for `docker tag`-style renames.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ImageError> {
        if !valid_tag(tag) {
            return Err(invalid(tag, format!("invalid tag {tag:?}")));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn normalises_like_docker() {
        let table: &[(&str, &str, &str)] = &[
            (
                "detection:1.0",
                "docker.io/library/detection:1.0",
                "detection:1.0",
            ),
            (
                "detection",
                "docker.io/library/detection:latest",
                "detection:latest",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            ("docker.io/library/x:1", "docker.io/library/x:1", "x:1"),
            (
                "index.docker.io/library/x",
                "docker.io/library/x:latest",
                "x:latest",
            ),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
            ),
            ("localhost/a", "localhost/a:latest", "localhost/a:latest"),
            (
                "quay.io/a/b/c:v1.2-3",
                "quay.io/a/b/c:v1.2-3",
                "quay.io/a/b/c:v1.2-3",
            ),
            ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
            (
                "a__b-c--e/f_g.h",
                "docker.io/a__b-c--e/f_g.h:latest",
                "a__b-c--e/f_g.h:latest",
            ),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            ("Registry/x", "Registry/x:latest", "Registry/x:latest"),
        ];
        for (input, full, familiar) in table {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "{input}");
            assert_eq!(r.familiar(), *familiar, "{input}");
        }
    }

    #[test]
    fn digest_references() {
        let r = Reference::parse(&format!("name@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/name@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(|d| d.to_string()).as_deref(), Some(D));
        let r = Reference::parse(&format!("name:t@{D}")).unwrap();
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.familiar_name(), "name");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "Detection",
            "a/B",
            "x:",
            "x:-t",
            ":tag",
            "a//b",
            "a/",
            "/a",
            "a..b",
            "a-",
            "x@sha256:123",
            "x@md5:00",
            "bad host:1/a",
            "host:port/a",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            &format!("x:{}", "t".repeat(129)),
            &"a".repeat(300),
        ] {
            let e = Reference::parse(bad);
            assert!(
                matches!(e, Err(ImageError::InvalidReference { .. })),
                "{bad:?} -> {e:?}"
            );
        }
    }
}
