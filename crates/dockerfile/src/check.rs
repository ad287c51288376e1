//! BuildKit-style build checks (`docker build --check`).

use std::collections::BTreeMap;

use crate::ast::*;
use crate::error::{Diagnostic, Severity, Span};
use crate::instructions::parse_words;
use crate::plan::{plan_inner, Base, PlanOptions, Scope, Unmatched, PLATFORM_ARGS};

/// Settings from the `# check=` directive.
struct CheckConfig {
    skip_all: bool,
    skip: Vec<String>,
    error: bool,
}

fn parse_check_directive(v: Option<&str>) -> CheckConfig {
    let mut c = CheckConfig {
        skip_all: false,
        skip: Vec::new(),
        error: false,
    };
    for part in v.unwrap_or("").split(';') {
        let Some((k, val)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "skip" => {
                for r in val.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    if r.eq_ignore_ascii_case("all") {
                        c.skip_all = true;
                    } else {
                        c.skip.push(r.to_string());
                    }
                }
            }
            "error" => c.error = val.trim().eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    c
}

struct Sink<'a> {
    df: &'a Dockerfile,
    out: Vec<Diagnostic>,
}

impl Sink<'_> {
    fn at(&mut self, span: Span, rule: &str, msg: impl Into<String>) {
        self.out.push(Diagnostic::warning(
            &self.df.file_name,
            &self.df.source,
            span,
            rule,
            msg,
        ));
    }
    fn ins(&mut self, ins: &Instruction, rule: &str, msg: impl Into<String>) {
        let end = ins.span.start + ins.original.split_whitespace().next().map_or(0, str::len);
        self.at(Span::new(ins.span.start, end), rule, msg);
    }
}

fn keyword_as_written(ins: &Instruction) -> &str {
    ins.original.split_whitespace().next().unwrap_or("")
}

fn is_sensitive(name: &str) -> bool {
    const TOKENS: [&str; 10] = [
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: [&str; 1] = ["public"];
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            words.push(std::mem::take(&mut cur));
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase();
        cur.push(c.to_ascii_lowercase());
    }
    words.push(cur);
    if words.iter().any(|w| ALLOW.contains(&w.as_str())) {
        return false;
    }
    words.iter().any(|w| TOKENS.contains(&w.as_str()))
}

/// Runs BuildKit's build checks over a parsed Dockerfile, like
/// `docker build --check`; honours `# check=skip=...;error=true`.
pub fn check(df: &Dockerfile, opts: &PlanOptions) -> Vec<Diagnostic> {
    let mut sink = Sink {
        df,
        out: df.warnings.clone(),
    };

    // Casing consistency.
    let (mut upper, mut lower) = (0, 0);
    for ins in &df.instructions {
        let k = keyword_as_written(ins);
        if k == k.to_ascii_uppercase() {
            upper += 1;
        } else if k == k.to_ascii_lowercase() {
            lower += 1;
        }
    }
    let majority_upper = upper >= lower;
    let mut stage_names: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_stage: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut workdir_abs = false;
    for ins in &df.instructions {
        let k = keyword_as_written(ins);
        let consistent = if majority_upper {
            k == k.to_ascii_uppercase()
        } else {
            k == k.to_ascii_lowercase()
        };
        if !consistent {
            sink.ins(
                ins,
                "ConsistentInstructionCasing",
                format!(
                    "Command '{k}' should match the case of the command majority ({})",
                    if majority_upper {
                        "uppercase"
                    } else {
                        "lowercase"
                    }
                ),
            );
        }
        match &ins.kind {
            InstructionKind::From(f) => {
                per_stage.clear();
                workdir_abs = false;
                if let Some(alias) = &f.alias {
                    let words = split(&ins.original);
                    let as_kw = words.iter().rev().nth(1).cloned().unwrap_or_default();
                    let from_upper = k == k.to_ascii_uppercase();
                    let as_upper = as_kw == as_kw.to_ascii_uppercase();
                    let from_lower = k == k.to_ascii_lowercase();
                    let as_lower = as_kw == as_kw.to_ascii_lowercase();
                    if (from_upper && !as_upper) || (from_lower && !as_lower) {
                        sink.ins(
                            ins,
                            "FromAsCasing",
                            format!("'{as_kw}' and '{k}' keywords' casing do not match"),
                        );
                    }
                    if alias != &alias.to_ascii_lowercase() {
                        sink.ins(
                            ins,
                            "StageNameCasing",
                            format!("Stage name '{alias}' should be lowercase"),
                        );
                    }
                    let lower_alias = alias.to_ascii_lowercase();
                    if lower_alias == "scratch" || lower_alias == "context" {
                        sink.ins(
                            ins,
                            "ReservedStageName",
                            format!("'{lower_alias}' is reserved and should not be used as a stage name"),
                        );
                    }
                    if stage_names.insert(lower_alias.clone(), ins.line).is_some() {
                        sink.ins(
                            ins,
                            "DuplicateStageName",
                            format!("Duplicate stage name '{lower_alias}', stage names should be unique"),
                        );
                    }
                }
                if let Some(p) = &f.platform {
                    if p == "$TARGETPLATFORM" || p == "${TARGETPLATFORM}" {
                        sink.ins(ins, "RedundantTargetPlatform", format!("Setting platform to predefined {p} in FROM is redundant as this is the default behavior"));
                    } else if !p.contains('$') {
                        sink.ins(
                            ins,
                            "FromPlatformFlagConstDisallowed",
                            format!("FROM --platform flag should not use constant value \"{p}\""),
                        );
                    }
                }
            }
            InstructionKind::Cmd(c) | InstructionKind::Entrypoint(c) => {
                let kw = ins.kind.keyword();
                if matches!(c, Command::Shell(_)) {
                    sink.ins(ins, "JSONArgsRecommended", format!("JSON arguments recommended for {kw} to prevent unintended behavior related to OS signals"));
                }
                multiple(&mut sink, &mut per_stage, ins, kw);
            }
            InstructionKind::Healthcheck(_) => {
                multiple(&mut sink, &mut per_stage, ins, "HEALTHCHECK");
            }
            InstructionKind::Maintainer(_) => sink.ins(
                ins,
                "MaintainerDeprecated",
                "Maintainer instruction is deprecated in favor of using label",
            ),
            InstructionKind::Workdir(w) => {
                let abs = w.starts_with('/')
                    || w.starts_with('$')
                    || w.get(1..3) == Some(":\\")
                    || w.get(1..3) == Some(":/");
                if !abs && !workdir_abs {
                    sink.ins(ins, "WorkdirRelativePath", format!("Relative workdir \"{w}\" can have unexpected results if the base image changes"));
                }
                workdir_abs = workdir_abs || abs;
            }
            InstructionKind::Env(kvs) | InstructionKind::Label(kvs) => {
                let kw = ins.kind.keyword();
                let rest = ins.original.get(k.len()..).unwrap_or("");
                let legacy = parse_words(rest, df.escape)
                    .first()
                    .is_some_and(|w| !w.contains('='));
                if legacy {
                    sink.ins(ins, "LegacyKeyValueFormat", format!("\"{kw} key=value\" should be used instead of legacy \"{kw} key value\" format"));
                }
                if matches!(ins.kind, InstructionKind::Env(_)) {
                    for kv in kvs {
                        if is_sensitive(&kv.key) {
                            sink.ins(ins, "SecretsUsedInArgOrEnv", format!("Do not use ARG or ENV instructions for sensitive data (ENV \"{}\")", kv.key));
                        }
                    }
                }
            }
            InstructionKind::Arg(decls) => {
                for d in decls {
                    if is_sensitive(&d.name) {
                        sink.ins(ins, "SecretsUsedInArgOrEnv", format!("Do not use ARG or ENV instructions for sensitive data (ARG \"{}\")", d.name));
                    }
                }
            }
            InstructionKind::Expose(ports) => {
                for p in ports {
                    if let Some((_, proto)) = p.split_once('/') {
                        if proto != proto.to_ascii_lowercase() {
                            sink.ins(ins, "ExposeProtoCasing", format!("Defined protocol '{p}' in EXPOSE instruction should be lowercase"));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // Variable checks need the plan.
    let mut from_unmatched: Unmatched = Vec::new();
    match plan_inner(df, opts, Some(&mut from_unmatched)) {
        Err(e) => sink.out.push(Diagnostic {
            severity: Severity::Error,
            rule: "InvalidDockerfile".into(),
            message: e.message,
            file_name: e.file_name,
            line: e.line,
            column: e.column,
            span: e.span,
        }),
        Ok(plan) => {
            for (name, span) in from_unmatched {
                if !PLATFORM_ARGS.contains(&name.as_str()) {
                    sink.at(
                        span,
                        "UndefinedArgInFrom",
                        format!("FROM argument '{name}' is not declared"),
                    );
                }
            }
            // Simulate each stage; a stage built on another stage starts from its env.
            let mut final_env: Vec<Vec<String>> = Vec::new();
            for stage in &plan.stages {
                let base_env = match stage.base {
                    Base::Stage(i) => final_env.get(i).cloned().unwrap_or_default(),
                    _ => vec![
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                            .to_string(),
                    ],
                };
                let mut scope = Scope::new(&plan, stage.index, opts, &base_env);
                for ins in &stage.instructions {
                    let mut un: Unmatched = Vec::new();
                    if let Ok(e) = scope.expand_inner(ins, Some(&mut un)) {
                        scope.apply(&e);
                    }
                    let mut seen = Vec::new();
                    for (name, span) in un {
                        if seen.contains(&name) {
                            continue;
                        }
                        seen.push(name.clone());
                        sink.at(
                            span,
                            "UndefinedVar",
                            format!("Usage of undefined variable '${name}'"),
                        );
                    }
                }
                final_env.push(scope.env());
            }
        }
    }

    let cfg = parse_check_directive(df.directives.check.as_deref());
    let mut out: Vec<Diagnostic> = sink
        .out
        .into_iter()
        .filter(|d| {
            d.severity == Severity::Error
                || !(cfg.skip_all || cfg.skip.iter().any(|s| s == &d.rule))
        })
        .collect();
    if cfg.error {
        for d in &mut out {
            d.severity = Severity::Error;
        }
    }
    out.sort_by_key(|d| (d.line, d.column));
    out
}

fn split(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn multiple(
    sink: &mut Sink<'_>,
    per_stage: &mut BTreeMap<&'static str, usize>,
    ins: &Instruction,
    kw: &'static str,
) {
    let n = per_stage.entry(kw).or_insert(0);
    *n += 1;
    if *n > 1 {
        sink.ins(ins, "MultipleInstructionsDisallowed", format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used"));
    }
}
