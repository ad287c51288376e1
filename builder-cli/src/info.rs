//! `rbuild info`: renders what the engine's [`rbuild_engine::HostInfo`] found, as text or JSON.

use std::process::ExitCode;

use rbuild_engine::sandbox::{IdRange, Isolation};
use rbuild_engine::{BuildError, HostInfo};
use serde_json::json;

/// Arguments of `rbuild info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Output format: text or json
    #[arg(long, default_value = "text")]
    format: String,
    /// The isolation to evaluate, as `rbuild build --isolation` takes it
    #[arg(long, default_value = "auto", value_name = "auto|userns|chroot")]
    isolation: Isolation,
}

fn ranges(r: &[IdRange]) -> String {
    if r.is_empty() {
        return "none".into();
    }
    r.iter()
        .map(|r| {
            format!(
                "{}-{}",
                r.start,
                u64::from(r.start) + u64::from(r.count) - 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units.get(u).copied().unwrap_or("B"))
    }
}

fn to_json(i: &HostInfo) -> serde_json::Value {
    let ns: serde_json::Map<String, serde_json::Value> = i
        .namespaces
        .list()
        .iter()
        .map(|(name, _, err)| {
            (
                name.to_string(),
                match err {
                    None => json!({"allowed": true}),
                    Some(e) => json!({"allowed": false, "error": e}),
                },
            )
        })
        .collect();
    let id_ranges = |r: &[IdRange]| -> Vec<serde_json::Value> {
        r.iter()
            .map(|r| json!({"start": r.start, "count": r.count}))
            .collect()
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "euid": i.euid,
        "uidMap": i.uid_map,
        "kernel": format!("{}.{}", i.kernel.0, i.kernel.1),
        "namespaces": ns,
        "maxUserNamespaces": i.max_user_namespaces,
        "unprivilegedUsernsClone": i.unprivileged_userns_clone,
        "user": i.user,
        "subuid": id_ranges(&i.subuid),
        "subgid": id_ranges(&i.subgid),
        "newuidmap": i.newuidmap,
        "newgidmap": i.newgidmap,
        "overlay": match &i.overlay {
            Ok(userxattr) => json!({"available": true, "userxattr": userxattr}),
            Err(e) => json!({"available": false, "error": e}),
        },
        "snapshotter": i.snapshotter,
        "isolation": match &i.isolation {
            Ok(r) => json!({
                "mode": r.isolation.name(),
                "rootInUserNamespace": r.root_in_userns,
                "warning": r.warning,
            }),
            Err(e) => json!({"mode": null, "error": e}),
        },
        "store": {"path": i.store, "bytes": i.store_bytes},
        "registriesConf": i.registries_conf,
        "credentialFiles": i.credential_files.iter()
            .map(|(p, exists)| json!({"path": p, "exists": exists}))
            .collect::<Vec<_>>(),
    })
}

fn to_text(i: &HostInfo) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line("rbuild version:", env!("CARGO_PKG_VERSION").to_string());
    line("kernel:", format!("{}.{}", i.kernel.0, i.kernel.1));
    line(
        "process:",
        match &i.uid_map {
            Some(m) => format!("uid {} in a user namespace (uid_map {m})", i.euid),
            None => format!("uid {}", i.euid),
        },
    );
    let ns = i
        .namespaces
        .list()
        .iter()
        .map(|(n, _, e)| match e {
            None => format!("{n} yes"),
            Some(e) => format!("{n} NO ({e})"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    line("namespaces:", ns);
    line(
        "user namespaces max:",
        i.max_user_namespaces
            .map_or("unknown".into(), |n| n.to_string())
            + &i.unprivileged_userns_clone
                .map(|v| format!(" (kernel.unprivileged_userns_clone = {v})"))
                .unwrap_or_default(),
    );
    line(
        "subordinate ids:",
        format!(
            "{}: uids {}; gids {}",
            i.user,
            ranges(&i.subuid),
            ranges(&i.subgid)
        ),
    );
    line(
        "newuidmap/newgidmap:",
        match (&i.newuidmap, &i.newgidmap) {
            (Some(u), Some(g)) => format!("{}, {}", u.display(), g.display()),
            _ => "missing (install the uidmap package for rootless builds)".into(),
        },
    );
    line(
        "overlay:",
        match &i.overlay {
            Ok(true) => "yes, with userxattr".into(),
            Ok(false) => "yes".into(),
            Err(e) => format!("no ({e})"),
        },
    );
    line("snapshotter:", i.snapshotter.clone());
    line(
        "isolation:",
        match &i.isolation {
            Ok(r) if r.root_in_userns => {
                format!("{} (root in a user namespace)", r.isolation.name())
            }
            Ok(r) => r.isolation.name().to_string(),
            Err(e) => format!("NONE: {e}"),
        },
    );
    if let Ok(Some(w)) = i.isolation.as_ref().map(|r| r.warning.as_ref()) {
        line("", w.clone());
    }
    line(
        "store:",
        format!("{} ({})", i.store.display(), human_bytes(i.store_bytes)),
    );
    line(
        "registries.conf:",
        i.registries_conf
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
    );
    let creds = i
        .credential_files
        .iter()
        .map(|(p, e)| format!("{}{}", p.display(), if *e { "" } else { " (absent)" }))
        .collect::<Vec<_>>();
    line(
        "credential files:",
        if creds.is_empty() {
            "none".into()
        } else {
            creds.join(", ")
        },
    );
    out
}

/// `rbuild info [--format json] [--isolation MODE]`.
pub fn info(root: &Option<std::path::PathBuf>, args: InfoArgs) -> Result<ExitCode, BuildError> {
    let builder = crate::registry::builder_isolated(root, &[], args.isolation)?;
    let info = builder.host_info(args.isolation);
    match args.format.as_str() {
        "text" => print!("{}", to_text(&info)),
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&info)).unwrap_or_default()
        ),
        other => {
            return Err(BuildError::Request(format!(
                "invalid --format {other:?}: use text or json"
            )))
        }
    }
    Ok(ExitCode::SUCCESS)
}
