//! `rbuild images` and `rbuild inspect`: docker's listing and inspect output, with `--format`
//! templates ([`crate::template`]) and `images --filter`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rbuild_engine::image::ImageSummary;
use rbuild_engine::BuildError;
use serde_json::{json, Value};

use crate::template::{Format, TemplateError};

/// `rbuild images [OPTIONS] [REPOSITORY[:TAG]]`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Only list images whose name matches (as --filter reference=…)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Show all images (rbuild keeps no intermediate images, so this is the default listing)
    #[arg(short, long)]
    pub all: bool,
    /// Show registry digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output (dangling=true|false, reference=PATTERN; repeatable)
    #[arg(long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Format output with a Go template ('table …', '{{json .}}', or 'json')
    #[arg(long)]
    pub format: Option<String>,
}

/// `rbuild inspect [--format F] IMAGE...`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output with a Go template ('{{json .Config}}'), or 'json'
    #[arg(short, long)]
    pub format: Option<String>,
    /// Images to inspect
    #[arg(required = true)]
    pub images: Vec<String>,
}

fn template_err(flag: &str, e: TemplateError) -> BuildError {
    BuildError::Request(format!("{flag}: {e}"))
}

/// One `--filter` of `images`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Dangling(bool),
    Reference(String),
}

fn parse_filter(s: &str) -> Result<Filter, BuildError> {
    let bad = |why: &str| BuildError::Request(format!("invalid --filter {s:?}: {why}"));
    let (k, v) = s.split_once('=').ok_or_else(|| bad("expected KEY=VALUE"))?;
    match k.trim().to_ascii_lowercase().as_str() {
        "dangling" => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Filter::Dangling(true)),
            "false" | "0" => Ok(Filter::Dangling(false)),
            _ => Err(bad("dangling takes true or false")),
        },
        "reference" => Ok(Filter::Reference(v.trim().to_string())),
        "before" | "since" | "label" | "until" => Err(bad(&format!(
            "the {k} filter is not supported (use dangling or reference)"
        ))),
        other => Err(bad(&format!("unknown filter {other:?}"))),
    }
}

/// Docker's reference filter: `path.Match` of the pattern against the familiar name, or against
/// `name:tag`.
fn reference_matches(pattern: &str, row: &ImageSummary) -> bool {
    if row.reference.is_none() {
        return false;
    }
    glob_match(pattern, &row.repository)
        || glob_match(pattern, &format!("{}:{}", row.repository, row.tag))
}

/// Go's `path.Match`: `*` any run of non-`/` characters, `?` one non-`/` character, `[…]` a class
/// (with `^`/`!` negation and ranges), `\` escapes.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => {
            let rest = &p[1..];
            (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| glob_at(rest, &n[i..]))
        }
        Some('?') => n.first().is_some_and(|c| *c != '/') && glob_at(&p[1..], &n[1..]),
        Some('[') => {
            let Some(c) = n.first() else { return false };
            let Some(close) = p.iter().skip(1).position(|c| *c == ']').map(|i| i + 1) else {
                return false;
            };
            let mut class = &p[1..close];
            let negate = matches!(class.first(), Some('^') | Some('!'));
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= *c && *c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != negate && *c != '/' && glob_at(&p[close + 1..], &n[1..])
        }
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && glob_at(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && glob_at(&p[1..], &n[1..]),
    }
}

/// `2024-05-01T10:00:00Z` as Go prints a time (`2024-05-01 10:00:00 +0000 UTC`), as docker's
/// `CreatedAt` shows it.
fn go_time(rfc3339: &str) -> String {
    let (date, rest) = rfc3339.split_once('T').unwrap_or((rfc3339, ""));
    let time: String = rest.chars().take(8).collect();
    let zone = &rest[rest.len().min(8)..];
    let zone = zone.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let zone = match zone {
        "Z" | "" | "+00:00" => "+0000 UTC".to_string(),
        z => z.replace(':', ""),
    };
    format!("{date} {time} {zone}")
}

/// A row as docker's `images --format '{{json .}}'` shows it.
fn row_value(r: &ImageSummary, digest: &str, no_trunc: bool) -> Value {
    let size = human_size(r.size);
    json!({
        "Containers": "N/A",
        "CreatedAt": r.created_at.as_deref().map(go_time).unwrap_or_else(|| "N/A".into()),
        "CreatedSince": r.created,
        "Digest": digest,
        "ID": if no_trunc { r.id.to_string() } else { r.id.short() },
        "Repository": r.repository,
        "SharedSize": "N/A",
        "Size": size,
        "Tag": r.tag,
        "UniqueSize": "N/A",
        "VirtualSize": size,
    })
}

fn headers() -> Value {
    json!({
        "Containers": "CONTAINERS",
        "CreatedAt": "CREATED AT",
        "CreatedSince": "CREATED",
        "Digest": "DIGEST",
        "ID": "IMAGE ID",
        "Repository": "REPOSITORY",
        "SharedSize": "SHARED SIZE",
        "Size": "SIZE",
        "Tag": "TAG",
        "UniqueSize": "UNIQUE SIZE",
        "VirtualSize": "VIRTUAL SIZE",
    })
}

/// `rbuild images`.
pub fn images(root: &Option<PathBuf>, a: ImagesArgs) -> Result<ExitCode, BuildError> {
    let mut filters = a
        .filters
        .iter()
        .map(|f| parse_filter(f))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(r) = &a.reference {
        filters.push(Filter::Reference(r.clone()));
    }
    // Parse the format before opening the store: a typo is reported without side effects.
    let format = match a.format.as_deref() {
        None | Some("") | Some("table") => None,
        Some("json") => Some(Format::parse("{{json .}}").map_err(|e| template_err("--format", e))?),
        Some(f) => Some(Format::parse(f).map_err(|e| template_err("--format", e))?),
    };
    let builder = crate::registry::builder_with(root, &[])?;
    let rows: Vec<ImageSummary> = builder
        .images()
        .list()?
        .into_iter()
        .filter(|r| {
            filters.iter().all(|f| match f {
                Filter::Dangling(d) => r.reference.is_none() == *d,
                Filter::Reference(p) => reference_matches(p, r),
            })
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in rows {
            let id = if a.no_trunc {
                r.id.to_string()
            } else {
                r.id.short()
            };
            if seen.insert(id.clone()) {
                let _ = writeln!(out, "{id}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut values = Vec::with_capacity(rows.len());
    for r in &rows {
        values.push(row_value(r, &repo_digest(&builder, r), a.no_trunc));
    }
    let format = match format {
        Some(f) => f,
        None => Format::parse(if a.digests {
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        } else {
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        })
        .map_err(|e| template_err("--format", e))?,
    };
    let text = format
        .render_rows(&values, &headers())
        .map_err(|e| template_err("--format", e))?;
    let _ = out.write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// The registry digest of a row's repository (`sha256:…`), `<none>` for images that never came
/// from or went to a registry.
fn repo_digest(builder: &rbuild_engine::Builder, r: &ImageSummary) -> String {
    let none = || "<none>".to_string();
    let Ok(img) = builder.images().resolve(&r.id.to_string()) else {
        return none();
    };
    let Ok(inspect) = builder.images().inspect(&img) else {
        return none();
    };
    inspect
        .repo_digests
        .iter()
        .find_map(|d| {
            let (name, digest) = d.split_once('@')?;
            (name == r.repository).then(|| digest.to_string())
        })
        .unwrap_or_else(none)
}

/// Fields docker's inspect structs always have, though their JSON omits them when empty.
const INSPECT_FIELDS: &[&str] = &["Variant", "Comment", "Parent", "DockerVersion", "Metadata"];
const CONFIG_FIELDS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "ExposedPorts",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
];

/// Adds the fields docker's structs have but our JSON leaves out when empty, as null, so a
/// template may name them (`{{.Config.Labels}}` on an image without labels) while a misspelt
/// field stays an error.
fn with_docker_fields(v: &mut Value) {
    let fill = |o: &mut serde_json::Map<String, Value>, names: &[&str]| {
        for n in names {
            o.entry(n.to_string()).or_insert(Value::Null);
        }
    };
    if let Some(o) = v.as_object_mut() {
        fill(o, INSPECT_FIELDS);
        match o.get_mut("Config") {
            Some(Value::Object(c)) => fill(c, CONFIG_FIELDS),
            Some(other) => {
                let mut c = serde_json::Map::new();
                fill(&mut c, CONFIG_FIELDS);
                *other = Value::Object(c);
            }
            None => {}
        }
    }
}

/// `rbuild inspect`: docker's JSON array, or one line per image through `--format`.
pub fn inspect(root: &Option<PathBuf>, a: InspectArgs) -> Result<ExitCode, BuildError> {
    let format = match a.format.as_deref() {
        None | Some("") | Some("json") => None,
        Some(f) => Some(Format::parse(f).map_err(|e| template_err("--format", e))?),
    };
    let builder = crate::registry::builder_with(root, &[])?;
    let mut all = Vec::new();
    for i in &a.images {
        let img = builder.images().resolve(i)?;
        let doc = builder.images().inspect(&img)?;
        all.push(
            serde_json::to_value(&doc)
                .map_err(|e| BuildError::Request(format!("cannot encode {i}: {e}")))?,
        );
    }
    let mut fields = all.clone();
    for v in &mut fields {
        with_docker_fields(v);
    }
    let mut out = std::io::stdout().lock();
    match format {
        None => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&all).unwrap_or_else(|_| "[]".into())
            );
        }
        Some(f) => {
            for v in &fields {
                let line = f.render(v).map_err(|e| template_err("--format", e))?;
                let _ = writeln!(out, "{line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Sizes as `docker images` prints them: decimal units, three significant digits.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        return format!("{bytes}B");
    }
    // Three significant digits, as `docker images` shows sizes (4.28MB, 12.3kB, 145MB).
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let n = format!("{v:.digits$}");
    let n = if n.contains('.') {
        n.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        n
    };
    format!("{n}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(4_280_000), "4.28MB");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(human_size(145_000_000), "145MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn filters_parse() {
        assert_eq!(
            parse_filter("dangling=true").ok(),
            Some(Filter::Dangling(true))
        );
        assert_eq!(
            parse_filter("dangling=false").ok(),
            Some(Filter::Dangling(false))
        );
        assert_eq!(
            parse_filter("reference=app*").ok(),
            Some(Filter::Reference("app*".into()))
        );
        assert!(parse_filter("dangling=maybe").is_err());
        assert!(parse_filter("colour=red").is_err());
        assert!(parse_filter("dangling").is_err());
    }

    #[test]
    fn globs_match_like_go_path_match() {
        let cases = [
            ("app", "app", true),
            ("app*", "application", true),
            ("*", "team/app", false),
            ("*/*", "team/app", true),
            ("team/*", "team/app", true),
            ("a?p", "app", true),
            ("a?p", "a/p", false),
            ("[ab]pp", "bpp", true),
            ("[^ab]pp", "bpp", false),
            ("[a-c]pp", "cpp", true),
            ("app:*", "app:1", true),
            ("app", "apps", false),
            ("\\*", "*", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn go_times() {
        assert_eq!(
            go_time("2024-05-01T10:00:00Z"),
            "2024-05-01 10:00:00 +0000 UTC"
        );
        assert_eq!(
            go_time("2024-05-01T10:00:00.123456Z"),
            "2024-05-01 10:00:00 +0000 UTC"
        );
        assert_eq!(
            go_time("2024-05-01T10:00:00+02:00"),
            "2024-05-01 10:00:00 +0200"
        );
    }
}
