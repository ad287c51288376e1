//! Registry configuration in the `containers-registries.conf(5)` format (TOML, version 2) shared by
//! podman, buildah and skopeo, so one file configures mirrors, insecure registries and blocked
//! registries for every tool on the machine.
//!
//! Only the parts rbuild acts on are read: `[[registry]]` tables with `prefix`, `location`,
//! `insecure`, `blocked` and `[[registry.mirror]]` (`location`, `insecure`). Other keys
//! (`unqualified-search-registries`, `short-name-mode`, ...) are accepted and ignored.
//!
//! ```
//! use rbuild_registry::config::RegistriesConf;
//! let conf = RegistriesConf::parse(r#"
//! [[registry]]
//! prefix = "docker.io"
//! location = "docker.io"
//! [[registry.mirror]]
//! location = "mirror.example.com:5000/hub"
//! "#, "registries.conf".as_ref()).unwrap();
//! let r = rbuild_image::Reference::parse("alpine:3.20").unwrap();
//! let eps = conf.endpoints_for(&r, &[]).unwrap();
//! assert_eq!(eps[0].host, "mirror.example.com:5000");
//! assert_eq!(eps[0].repository, "hub/library/alpine");
//! assert!(eps[0].is_mirror);
//! assert_eq!(eps[1].host, "registry-1.docker.io");
//! ```

use std::path::{Path, PathBuf};

use rbuild_image::Reference;
use serde::Deserialize;

use crate::error::{io_err, RegistryError};

/// The environment variable that points rbuild at a specific registries.conf.
pub const ENV_REGISTRIES_CONF: &str = "RBUILD_REGISTRIES_CONF";
/// The system-wide file podman and skopeo read, used last.
pub const SYSTEM_REGISTRIES_CONF: &str = "/etc/containers/registries.conf";

/// The parsed registries.conf, ready to map references to the endpoints to try.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistriesConf {
    /// Where the configuration came from (for error messages); empty when built in memory.
    pub path: PathBuf,
    /// The `[[registry]]` tables in file order.
    pub registries: Vec<RegistryEntry>,
}

/// One `[[registry]]` table: how references under `prefix` are reached.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    /// Which references this entry applies to (`host[:port][/path]` or `*.domain`); defaults to
    /// `location`.
    #[serde(default)]
    pub prefix: String,
    /// Where references under `prefix` really live (`host[:port][/path]`).
    #[serde(default)]
    pub location: String,
    /// Allow plain HTTP and unverified TLS for `location`.
    #[serde(default)]
    pub insecure: bool,
    /// Refuse to pull from this registry at all.
    #[serde(default)]
    pub blocked: bool,
    /// Mirrors tried in order before `location` when pulling.
    #[serde(default, rename = "mirror")]
    pub mirrors: Vec<MirrorEntry>,
}

/// One `[[registry.mirror]]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MirrorEntry {
    /// Where the mirror lives (`host[:port][/path]`).
    pub location: String,
    /// Allow plain HTTP and unverified TLS for this mirror.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Deserialize)]
struct FileV2 {
    #[serde(default)]
    registry: Vec<RegistryEntry>,
}

/// A place to fetch a repository from: a mirror or the origin, with the repository path as it is
/// named there (mirrors may rewrite it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as used in URLs and as the key for credentials.
    pub host: String,
    /// The repository path at this endpoint (`library/alpine`).
    pub repository: String,
    /// `https://host[:port]`; the client falls back to `http://` only when `insecure` is set.
    pub url_base: String,
    /// Plain HTTP and unverified TLS are allowed (registries.conf, `--insecure-registry`, loopback).
    pub insecure: bool,
    /// This endpoint is a mirror, not the reference's own registry (mirrors are never pushed to).
    pub is_mirror: bool,
}

impl Endpoint {
    pub(crate) fn new(
        location_and_repo: &str,
        insecure: bool,
        is_mirror: bool,
        extra: &[String],
    ) -> Endpoint {
        let (host, repository) = location_and_repo
            .split_once('/')
            .unwrap_or((location_and_repo, ""));
        let host = api_host(host);
        let insecure = insecure || is_insecure_host(&host, extra);
        Endpoint {
            url_base: format!("https://{host}"),
            host,
            repository: repository.to_string(),
            insecure,
            is_mirror,
        }
    }
}

/// Docker Hub's API does not live at `docker.io`; docker rewrites it the same way.
fn api_host(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
        h => h.to_string(),
    }
}

/// Loopback registries are insecure by default, as in docker; others only when listed.
fn is_insecure_host(host: &str, extra: &[String]) -> bool {
    let bare = strip_port(host);
    bare == "localhost"
        || bare.starts_with("127.")
        || bare == "[::1]"
        || bare == "::1"
        || extra.iter().any(|e| {
            let e = e
                .trim_start_matches("http://")
                .trim_start_matches("https://");
            let e = e.trim_end_matches('/');
            e == host || e == bare
        })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| h)
            .trim_start_matches('[');
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

impl RegistriesConf {
    /// Parses registries.conf text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<RegistriesConf, RegistryError> {
        let file: FileV2 = toml::from_str(text).map_err(|e| RegistryError::Config {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let bad = |reason: String| RegistryError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let mut registries = Vec::with_capacity(file.registry.len());
        for mut entry in file.registry {
            if entry.prefix.is_empty() {
                entry.prefix = entry.location.clone();
            }
            if entry.prefix.is_empty() {
                return Err(bad("a [[registry]] has neither prefix nor location".into()));
            }
            for loc in
                std::iter::once(&entry.location).chain(entry.mirrors.iter().map(|m| &m.location))
            {
                if loc.contains("://") {
                    return Err(bad(format!(
                        "location {loc:?} must not contain a scheme (use insecure = true for http)"
                    )));
                }
            }
            if entry.location.is_empty() && !entry.blocked {
                entry.location = entry.prefix.clone();
            }
            if entry.prefix.starts_with("*.")
                && !entry.location.is_empty()
                && entry.location != entry.prefix
            {
                return Err(bad(format!(
                    "wildcard prefix {:?} cannot have a different location",
                    entry.prefix
                )));
            }
            registries.push(entry);
        }
        Ok(RegistriesConf {
            path: path.to_path_buf(),
            registries,
        })
    }

    /// Reads and parses one file.
    pub fn load(path: &Path) -> Result<RegistriesConf, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(io_err("read", path))?;
        Self::parse(&text, path)
    }

    /// Finds the configuration the way rbuild documents it: `explicit` (a `--registries-conf`
    /// flag), else `$RBUILD_REGISTRIES_CONF`, else `$HOME/.config/containers/registries.conf`, else
    /// [`SYSTEM_REGISTRIES_CONF`], else an empty configuration. `env` is injected so tests and
    /// embedders never depend on the process environment. An explicitly named file must exist.
    pub fn discover(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        system: &Path,
    ) -> Result<RegistriesConf, RegistryError> {
        if let Some(p) = explicit {
            return Self::load(p);
        }
        match Self::discover_path(env, system) {
            Some(p) => Self::load(&p),
            None => Ok(RegistriesConf::default()),
        }
    }

    /// The file [`RegistriesConf::discover`] would read without an explicit path, or `None` when
    /// there is none; lets callers record the choice in [`crate::ClientOptions`] once.
    pub fn discover_path(env: &dyn Fn(&str) -> Option<String>, system: &Path) -> Option<PathBuf> {
        if let Some(p) = env(ENV_REGISTRIES_CONF).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
            let p = Path::new(&home).join(".config/containers/registries.conf");
            if p.is_file() {
                return Some(p);
            }
        }
        system.is_file().then(|| system.to_path_buf())
    }

    /// The entry whose prefix matches `name` (`host/repo`) best: the longest matching prefix, with
    /// wildcard (`*.domain`) prefixes matched against the host only.
    fn find(&self, name: &str) -> Option<&RegistryEntry> {
        let host = name.split('/').next().unwrap_or(name);
        let mut best: Option<(&RegistryEntry, usize)> = None;
        for e in &self.registries {
            let len = if let Some(domain) = e.prefix.strip_prefix("*.") {
                let suffix = &e.prefix[1..];
                (host.ends_with(suffix) && host.len() > suffix.len() && !domain.is_empty())
                    .then_some(e.prefix.len())
            } else {
                let p = e.prefix.trim_end_matches('/');
                (name == p
                    || name
                        .strip_prefix(p)
                        .is_some_and(|rest| rest.starts_with('/')))
                .then_some(p.len())
            };
            if let Some(len) = len {
                if !matches!(best, Some((_, l)) if len <= l) {
                    best = Some((e, len));
                }
            }
        }
        best.map(|(e, _)| e)
    }

    /// The endpoints to try, in order, to pull `reference`: the matching entry's mirrors, then its
    /// location (or the reference's own registry when no entry matches). `insecure_registries` adds
    /// hosts for which plain HTTP is allowed (the `--insecure-registry` option). A blocked
    /// registry is an error.
    pub fn endpoints_for(
        &self,
        reference: &Reference,
        insecure_registries: &[String],
    ) -> Result<Vec<Endpoint>, RegistryError> {
        let name = reference.name();
        let Some(entry) = self.find(&name) else {
            return Ok(vec![Endpoint::new(
                &name,
                false,
                false,
                insecure_registries,
            )]);
        };
        if entry.blocked {
            return Err(RegistryError::Blocked {
                registry: entry.prefix.clone(),
                path: self.path.clone(),
            });
        }
        let rest = if entry.prefix.starts_with("*.") {
            ""
        } else {
            name.get(entry.prefix.trim_end_matches('/').len()..)
                .unwrap_or("")
        };
        let rewrite = |loc: &str| -> String {
            if entry.prefix.starts_with("*.") {
                name.clone()
            } else {
                format!("{}{rest}", loc.trim_end_matches('/'))
            }
        };
        let mut out: Vec<Endpoint> = entry
            .mirrors
            .iter()
            .map(|m| Endpoint::new(&rewrite(&m.location), m.insecure, true, insecure_registries))
            .collect();
        out.push(Endpoint::new(
            &rewrite(&entry.location),
            entry.insecure,
            false,
            insecure_registries,
        ));
        for ep in &out {
            if ep.repository.is_empty() {
                return Err(RegistryError::Config {
                    path: self.path.clone(),
                    reason: format!("rewriting {name} gives {} with no repository", ep.host),
                });
            }
        }
        Ok(out)
    }

    /// The endpoint to push `reference` to: its location, never a mirror.
    pub fn push_endpoint(
        &self,
        reference: &Reference,
        insecure_registries: &[String],
    ) -> Result<Endpoint, RegistryError> {
        let eps = self.endpoints_for(reference, insecure_registries)?;
        eps.into_iter()
            .find(|e| !e.is_mirror)
            .ok_or_else(|| RegistryError::Config {
                path: self.path.clone(),
                reason: format!("no location for {reference}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        RegistriesConf::parse(text, Path::new("test.conf")).unwrap()
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn no_entry_means_the_reference_registry() {
        let c = RegistriesConf::default();
        let table = [
            ("alpine", "registry-1.docker.io", "library/alpine", false),
            ("quay.io/a/b:1", "quay.io", "a/b", false),
            ("localhost:5000/x", "localhost:5000", "x", true),
            ("127.0.0.1:5000/x/y", "127.0.0.1:5000", "x/y", true),
        ];
        for (input, host, repo, insecure) in table {
            let eps = c.endpoints_for(&r(input), &[]).unwrap();
            assert_eq!(eps.len(), 1, "{input}");
            assert_eq!(eps[0].host, host, "{input}");
            assert_eq!(eps[0].repository, repo, "{input}");
            assert_eq!(eps[0].insecure, insecure, "{input}");
            assert_eq!(eps[0].url_base, format!("https://{host}"));
        }
    }

    #[test]
    fn insecure_registry_option() {
        let c = RegistriesConf::default();
        let eps = c
            .endpoints_for(&r("reg.lan:5000/x"), &["reg.lan:5000".into()])
            .unwrap();
        assert!(eps[0].insecure);
        let eps = c
            .endpoints_for(&r("reg.lan:5000/x"), &["other".into()])
            .unwrap();
        assert!(!eps[0].insecure);
    }

    #[test]
    fn mirrors_come_first_and_longest_prefix_wins() {
        let c = conf(
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "example.com"
location = "example.com"
[[registry.mirror]]
location = "m1.lan"
insecure = true
[[registry]]
prefix = "example.com/team"
location = "internal.lan:8443/mirror/team"
[[registry.mirror]]
location = "m2.lan/x"
"#,
        );
        let eps = c.endpoints_for(&r("example.com/team/app:1"), &[]).unwrap();
        let got: Vec<_> = eps
            .iter()
            .map(|e| (e.host.as_str(), e.repository.as_str(), e.is_mirror))
            .collect();
        assert_eq!(
            got,
            [
                ("m2.lan", "x/app", true),
                ("internal.lan:8443", "mirror/team/app", false)
            ]
        );
        let eps = c.endpoints_for(&r("example.com/other/app"), &[]).unwrap();
        assert_eq!(eps[0].host, "m1.lan");
        assert!(eps[0].insecure);
        assert_eq!(eps[1].host, "example.com");
        assert!(!eps[1].insecure);
        // "example.com/teamwork" must not match the "example.com/team" prefix.
        let eps = c.endpoints_for(&r("example.com/teamwork/a"), &[]).unwrap();
        assert_eq!(eps[0].host, "m1.lan");
        assert_eq!(eps[0].repository, "teamwork/a");
    }

    #[test]
    fn blocked_and_wildcards() {
        let c = conf(
            r#"
[[registry]]
prefix = "bad.io"
blocked = true
[[registry]]
prefix = "*.corp.lan"
insecure = true
"#,
        );
        let e = c.endpoints_for(&r("bad.io/x"), &[]).unwrap_err();
        assert!(matches!(e, RegistryError::Blocked { .. }), "{e}");
        let eps = c.endpoints_for(&r("reg.corp.lan/x"), &[]).unwrap();
        assert_eq!(eps.len(), 1);
        assert!(eps[0].insecure);
        assert_eq!(eps[0].host, "reg.corp.lan");
        assert!(c
            .endpoints_for(&r("corp.lan/x"), &[])
            .map(|e| !e[0].insecure)
            .unwrap());
    }

    #[test]
    fn rejects_bad_files() {
        for bad in [
            "[[registry]]\ninsecure = true\n",
            "[[registry]]\nlocation = \"https://x.io\"\n",
            "[[registry]]\nprefix = 1\n",
            "[[registry]\n",
        ] {
            let e = RegistriesConf::parse(bad, Path::new("bad.conf")).unwrap_err();
            assert!(e.to_string().contains("bad.conf"), "{e}");
        }
    }

    #[test]
    fn discovery_order() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".config/containers")).unwrap();
        std::fs::write(
            home.join(".config/containers/registries.conf"),
            "[[registry]]\nlocation = \"home.lan\"\n",
        )
        .unwrap();
        let envf = dir.path().join("env.conf");
        std::fs::write(&envf, "[[registry]]\nlocation = \"env.lan\"\n").unwrap();
        let sys = dir.path().join("system.conf");
        std::fs::write(&sys, "[[registry]]\nlocation = \"sys.lan\"\n").unwrap();
        let homes = home.to_string_lossy().to_string();
        let envs = envf.to_string_lossy().to_string();
        let with_env = |k: &str| match k {
            "HOME" => Some(homes.clone()),
            ENV_REGISTRIES_CONF => Some(envs.clone()),
            _ => None,
        };
        let only_home = |k: &str| (k == "HOME").then(|| homes.clone());
        let nothing = |_: &str| None;
        let first = |c: RegistriesConf| c.registries[0].location.clone();
        assert_eq!(
            first(RegistriesConf::discover(None, &with_env, &sys).unwrap()),
            "env.lan"
        );
        assert_eq!(
            first(RegistriesConf::discover(None, &only_home, &sys).unwrap()),
            "home.lan"
        );
        assert_eq!(
            first(RegistriesConf::discover(None, &nothing, &sys).unwrap()),
            "sys.lan"
        );
        let none = RegistriesConf::discover(None, &nothing, &dir.path().join("absent")).unwrap();
        assert!(none.registries.is_empty());
        let missing = RegistriesConf::discover(Some(&dir.path().join("nope")), &nothing, &sys);
        assert!(matches!(missing, Err(RegistryError::Io { .. })));
    }
}
