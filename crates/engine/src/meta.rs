//! What config-only instructions do to the image config, and the history text BuildKit gives
//! each instruction; applied while lowering, since none of it depends on a step's result.

use rbuild_dockerfile::{Command, Instruction, InstructionKind};
use rbuild_image::config::{HealthConfig, ImageConfig};

/// The default PATH BuildKit gives a stage whose base sets none.
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A stage's config while lowering: what later instructions and child stages see.
#[derive(Clone)]
pub(crate) struct StageConfig {
    /// The image config so far (history entries of this build have no `created` yet).
    pub config: ImageConfig,
    /// Whether CMD was set in this stage (ENTRYPOINT resets an inherited CMD only).
    pub cmd_set: bool,
}

/// What a config-only instruction leaves in the history.
pub(crate) enum Effect {
    /// Not config-only: the instruction is a file or exec op.
    NotConfig,
    /// An empty-layer history entry with this text.
    History(String),
    /// Nothing in the history (ONBUILD, as BuildKit records it in the config only).
    Silent,
}

/// RFC 3339 timestamp for history and config `created`: SOURCE_DATE_EPOCH when set, else now.
pub fn timestamp(source_date_epoch: Option<i64>) -> String {
    let t = match source_date_epoch {
        Some(s) => {
            time::OffsetDateTime::from_unix_timestamp(s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        }
        None => time::OffsetDateTime::now_utc(),
    };
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Applies one `docker commit --change` line (`CMD ["sh"]`, `ENV A=b`, `EXPOSE 80`, `LABEL`,
/// `USER`, `VOLUME`, `WORKDIR`, `ENTRYPOINT`, `ONBUILD`, `STOPSIGNAL`...) to `config` exactly as
/// the same instruction in a Dockerfile would, so commit and build agree. Instructions that
/// need a build (RUN, COPY, FROM...) are refused.
pub fn apply_change(config: &mut ImageConfig, change: &str) -> Result<(), String> {
    let text = format!("FROM scratch\n{change}\n");
    let df = rbuild_dockerfile::parse("--change", &text).map_err(|e| e.to_string())?;
    let Some(instr) = df.instructions.get(1) else {
        return Err(format!("invalid change {change:?}: no instruction"));
    };
    if df.instructions.len() > 2 {
        return Err(format!(
            "invalid change {change:?}: one instruction per --change"
        ));
    }
    match &instr.kind {
        InstructionKind::Workdir(w) => {
            let dir = crate::fsutil::join_workdir(config.working_dir(), w);
            config.config.working_dir = Some(dir.to_string_lossy().into_owned());
            return Ok(());
        }
        InstructionKind::Cmd(_)
        | InstructionKind::Entrypoint(_)
        | InstructionKind::Env(_)
        | InstructionKind::Expose(_)
        | InstructionKind::Label(_)
        | InstructionKind::Onbuild(_)
        | InstructionKind::StopSignal(_)
        | InstructionKind::User(_)
        | InstructionKind::Volume(_) => {}
        _ => {
            return Err(format!(
                "{change:?}: only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, \
                 USER, VOLUME and WORKDIR can be changed by commit"
            ))
        }
    }
    // As docker's commit: a fresh builder state, so ENTRYPOINT resets the image's CMD.
    let mut st = StageConfig {
        config: config.clone(),
        cmd_set: false,
    };
    apply(&mut st, instr, instr);
    *config = st.config;
    Ok(())
}

/// Applies a config-only instruction (`instr` expanded, `raw` as written) to the stage config.
pub(crate) fn apply(st: &mut StageConfig, raw: &Instruction, instr: &Instruction) -> Effect {
    let c = &mut st.config;
    let text = match &instr.kind {
        InstructionKind::Arg(args) => {
            // History shows each declared default (expanded), never a --build-arg override.
            let raw_args = match &raw.kind {
                InstructionKind::Arg(r) => r.as_slice(),
                _ => &[],
            };
            let text = args
                .iter()
                .zip(raw_args)
                .map(|(a, r)| match (&r.default, &a.default) {
                    (Some(d), Some(v)) if d.contains('$') => format!("{}={}", a.name, v),
                    (Some(d), _) => format!("{}={}", a.name, d),
                    (None, _) => a.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(" ");
            format!("ARG {text}")
        }
        InstructionKind::Env(kvs) => {
            for kv in kvs {
                c.set_env(&kv.key, &kv.value);
            }
            let text = kvs
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect::<Vec<_>>()
                .join(" ");
            format!("ENV {text}")
        }
        InstructionKind::Label(kvs) => {
            for kv in kvs {
                c.set_label(&kv.key, &kv.value);
            }
            let text = kvs
                .iter()
                .map(|kv| format!("{}={}", kv.key, kv.value))
                .collect::<Vec<_>>()
                .join(" ");
            format!("LABEL {text}")
        }
        InstructionKind::Maintainer(m) => {
            c.author = Some(m.clone());
            format!("MAINTAINER {m}")
        }
        InstructionKind::Expose(ports) => {
            let mut keys = Vec::new();
            for key in ports.iter().flat_map(|p| rbuild_dockerfile::expose_keys(p)) {
                c.expose(&key);
                keys.push(key);
            }
            keys.sort();
            keys.dedup();
            let text = keys
                .iter()
                .map(|k| format!("{k}:{{}}"))
                .collect::<Vec<_>>()
                .join(" ");
            format!("EXPOSE map[{text}]")
        }
        InstructionKind::Volume(vols) => {
            for v in vols {
                c.add_volume(v);
            }
            format!("VOLUME [{}]", vols.join(" "))
        }
        InstructionKind::User(u) => {
            c.config.user = Some(u.clone());
            format!("USER {u}")
        }
        InstructionKind::StopSignal(s) => {
            c.config.stop_signal = Some(s.clone());
            format!("STOPSIGNAL {s}")
        }
        InstructionKind::Shell(sh) => {
            c.config.shell = Some(sh.clone());
            format!("SHELL [{}]", sh.join(" "))
        }
        InstructionKind::Cmd(cmd) => {
            let (argv, escaped) = argv(c, cmd);
            // Docker 20.10 records an empty exec form (`CMD []`) as null.
            c.config.cmd = (!argv.is_empty()).then(|| argv.clone());
            if escaped {
                c.config.args_escaped = Some(true);
            }
            st.cmd_set = true;
            format!("CMD {}", go_quoted_list(&argv))
        }
        InstructionKind::Entrypoint(cmd) => {
            let (argv, escaped) = argv(c, cmd);
            c.config.entrypoint = (!argv.is_empty()).then(|| argv.clone());
            if escaped {
                c.config.args_escaped = Some(true);
            }
            if !st.cmd_set {
                c.config.cmd = None;
            }
            format!("ENTRYPOINT {}", go_quoted_list(&argv))
        }
        InstructionKind::Healthcheck(hc) => {
            let health = match hc {
                rbuild_dockerfile::Healthcheck::None => HealthConfig {
                    test: Some(vec!["NONE".into()]),
                    ..Default::default()
                },
                rbuild_dockerfile::Healthcheck::Check {
                    command,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => {
                    let test = match command {
                        Command::Exec(v) => {
                            let mut t = vec!["CMD".to_string()];
                            t.extend(v.iter().cloned());
                            t
                        }
                        Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                    };
                    HealthConfig {
                        test: Some(test),
                        interval: interval.map(nanos),
                        timeout: timeout.map(nanos),
                        start_period: start_period.map(nanos),
                        start_interval: start_interval.map(nanos),
                        retries: *retries,
                    }
                }
            };
            let text = format!("HEALTHCHECK {}", go_health(&health));
            c.config.healthcheck = Some(health);
            text
        }
        InstructionKind::Onbuild(inner) => {
            // BuildKit records ONBUILD in the config only, with no history entry.
            c.add_onbuild(inner.original.trim());
            return Effect::Silent;
        }
        // BuildKit 0.8 makes no directory (and no layer) for `WORKDIR /`.
        InstructionKind::Workdir(w)
            if crate::fsutil::join_workdir(c.working_dir(), w).as_os_str() == "/" =>
        {
            c.config.working_dir = Some("/".into());
            "WORKDIR /".to_string()
        }
        _ => return Effect::NotConfig,
    };
    Effect::History(text)
}

/// Shell form wraps the command in the stage's SHELL, as docker does.
fn argv(c: &ImageConfig, cmd: &Command) -> (Vec<String>, bool) {
    match cmd {
        Command::Exec(v) => (v.clone(), false),
        Command::Shell(s) => {
            let mut argv = shell_of(c);
            argv.push(s.clone());
            (argv, true)
        }
    }
}

/// The stage's SHELL, or docker's default, for shell-form commands.
pub(crate) fn shell_of(c: &ImageConfig) -> Vec<String> {
    c.config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// BuildKit prints the health config with Go's `%v` of a struct pointer: `&{["CMD" "x"] "5s" "0s" "0s" '\x00'}`.
fn go_health(h: &HealthConfig) -> String {
    let d = |n: Option<i64>| format!("{:?}", go_duration(n.unwrap_or(0)));
    let mut parts = vec![
        go_quoted_list(h.test.as_deref().unwrap_or(&[])),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
    ];
    if h.start_interval.is_some() {
        parts.push(d(h.start_interval));
    }
    let r = h.retries.unwrap_or(0);
    parts.push(match char::from_u32(r) {
        Some(c) if !c.is_control() && r != 0 => format!("'{c}'"),
        _ => format!("'\\x{r:02x}'"),
    });
    format!("&{{{}}}", parts.join(" "))
}

/// Go's `time.Duration.String()`: `1h2m3s`, `1.5s`, `500ms`, `0s`.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let body = if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        format!("{}µs", trim_frac(u as f64 / 1e3))
    } else if u < 1_000_000_000 {
        format!("{}ms", trim_frac(u as f64 / 1e6))
    } else {
        let total_s = u / 1_000_000_000;
        let frac = u % 1_000_000_000;
        let (h, m, s) = (total_s / 3600, (total_s % 3600) / 60, total_s % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        if frac == 0 {
            out.push_str(&format!("{s}s"));
        } else {
            let f = format!("{frac:09}");
            out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
        }
        out
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

fn trim_frac(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Go's `%q`-list formatting used by BuildKit in history: `["a" "b"]`.
fn go_quoted_list(items: &[String]) -> String {
    let inner = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(" ");
    format!("[{inner}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            (0, "0s"),
            (5_000_000_000, "5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (1_500_000_000, "1.5s"),
            (500_000_000, "500ms"),
            (1_500, "1.5µs"),
            (7, "7ns"),
        ];
        for (ns, want) in cases {
            assert_eq!(go_duration(ns), want, "{ns}");
        }
    }

    #[test]
    fn health_history_matches_buildkit() {
        let h = HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "true".into()]),
            interval: Some(5_000_000_000),
            timeout: Some(3_000_000_000),
            retries: Some(2),
            ..Default::default()
        };
        assert_eq!(
            go_health(&h),
            r#"&{["CMD-SHELL" "true"] "5s" "3s" "0s" '\x02'}"#
        );
    }
}
