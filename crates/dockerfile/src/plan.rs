//! Stages, ARG scoping, target selection and per-stage word expansion.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::ast::*;
use crate::error::{ParseError, Span};
use crate::shell::{Lexer, ShellError};

/// The platform type every rbuild crate shares (normalised as containerd does); needed for
/// `--platform` and the automatic `TARGET*`/`BUILD*` build args.
pub use rbuild_platform::{Platform, PlatformError};

/// Inputs to planning that come from the command line, not the Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// Platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// Platform the image is for (`TARGETPLATFORM`).
    pub target_platform: Platform,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            build_args: BTreeMap::new(),
            target: None,
            build_platform: Platform::linux_amd64(),
            target_platform: Platform::linux_amd64(),
        }
    }
}

/// Build args Docker defines without an ARG line (proxy settings). Usable in
/// RUN without declaration, never written to history unless declared.
pub const PREDEFINED_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Automatic platform args, global scope only.
pub const PLATFORM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

fn platform_args(opts: &PlanOptions) -> Vec<(String, Option<String>)> {
    let t = &opts.target_platform;
    let b = &opts.build_platform;
    vec![
        ("TARGETPLATFORM".into(), Some(t.to_string())),
        ("TARGETOS".into(), Some(t.os.clone())),
        ("TARGETARCH".into(), Some(t.architecture.clone())),
        (
            "TARGETVARIANT".into(),
            Some(t.variant.clone().unwrap_or_default()),
        ),
        ("BUILDPLATFORM".into(), Some(b.to_string())),
        ("BUILDOS".into(), Some(b.os.clone())),
        ("BUILDARCH".into(), Some(b.architecture.clone())),
        (
            "BUILDVARIANT".into(),
            Some(b.variant.clone().unwrap_or_default()),
        ),
    ]
}

/// What a stage starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: empty filesystem and config.
    Scratch,
    /// An earlier stage of this Dockerfile (index into [`Plan::stages`]).
    Stage(usize),
    /// An image reference, global ARGs expanded.
    Image(String),
}

/// One build stage (`FROM` up to the next `FROM`).
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Position in [`Plan::stages`] (also usable as `COPY --from=N`).
    pub index: usize,
    /// `AS` name, lower-cased as Docker does.
    pub name: Option<String>,
    /// Base of the stage.
    pub base: Base,
    /// `--platform`, expanded with global ARGs.
    pub platform: Option<String>,
    /// The instructions after `FROM`, unexpanded (use [`Scope::expand`]).
    pub instructions: Vec<Instruction>,
    /// 1-based line of the `FROM`.
    pub line: usize,
    /// Stages this stage needs built first (FROM, `COPY --from`, `RUN --mount from=`), sorted.
    pub deps: Vec<usize>,
    /// The FROM instruction itself, for locating errors and history.
    pub from: Instruction,
}

/// What `COPY --from` / `--mount from=` refer to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FromRef {
    /// A stage of this build.
    Stage(usize),
    /// An image reference to pull.
    Image(String),
}

/// The build plan: stages in file order and which one to produce.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// All stages in file order.
    pub stages: Vec<Stage>,
    /// Index of the stage to build (`--target` or the last one).
    pub target: usize,
    /// `--build-arg`s that no reachable ARG consumed (Docker warns about them).
    pub unused_build_args: Vec<String>,
    /// Global (pre-FROM) args and automatic platform args with their final values;
    /// `None` means declared without a value.
    pub global_args: Vec<(String, Option<String>)>,
    /// Escape character of the Dockerfile, for the word lexer.
    pub escape: char,
    /// Dockerfile name, for error messages.
    pub file_name: String,
    /// Dockerfile source, for error messages (shared, so scopes are cheap to create).
    pub source: Arc<str>,
}

impl Plan {
    /// Finds a stage by (case-insensitive) name; the last stage with that name wins.
    pub fn stage_by_name(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .rev()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
    }

    /// Resolves an (expanded) `--from` value: stage name, stage index, or image.
    pub fn resolve_from(&self, from: &str) -> FromRef {
        if let Ok(i) = from.parse::<usize>() {
            if i < self.stages.len() {
                return FromRef::Stage(i);
            }
        }
        match self.stage_by_name(from) {
            Some(i) => FromRef::Stage(i),
            None => FromRef::Image(from.to_string()),
        }
    }

    /// Stages reachable from the target, in an order where dependencies come first.
    pub fn build_order(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        fn visit(p: &Plan, i: usize, seen: &mut BTreeSet<usize>, out: &mut Vec<usize>) {
            if !seen.insert(i) {
                return;
            }
            if let Some(s) = p.stages.get(i) {
                for &d in &s.deps {
                    visit(p, d, seen, out);
                }
            }
            out.push(i);
        }
        visit(self, self.target, &mut seen, &mut out);
        out
    }
}

/// Variable state shared by planning and [`Scope`].
#[derive(Clone, Debug)]
struct Vars {
    /// Image config env plus ENV instructions, in order.
    env: Vec<(String, String)>,
    /// ARGs declared in the stage, in order (redeclaration replaces in place).
    args: Vec<(String, Option<String>)>,
    /// Every ARG declaration of the stage in order, redeclarations included,
    /// for the history of RUN (see [`Scope::history_args`]).
    declarations: Vec<String>,
}

impl Vars {
    fn get(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.env.iter().find(|(k, _)| k == name) {
            return Some(v.clone());
        }
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    fn set_env(&mut self, k: String, v: String) {
        match self.env.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => self.env.push((k, v)),
        }
    }

    fn set_arg(&mut self, k: String, v: Option<String>) {
        match self.args.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => self.args.push((k, v)),
        }
    }
}

fn lookup_declared(name: &str, list: &[(String, Option<String>)]) -> bool {
    list.iter().any(|(k, _)| k == name)
}

fn lookup_in(list: &[(String, Option<String>)], name: &str) -> Option<String> {
    list.iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.clone())
}

/// Turns a lexer error into a located error by finding the word in the instruction text.
fn shell_err(file: &str, source: &str, span: Span, word: &str, e: ShellError) -> ParseError {
    let text = source.get(span.start..span.end).unwrap_or("");
    let at = match text.find(word) {
        Some(i) if !word.is_empty() => span.start + i + e.offset.min(word.len()),
        _ => span.start,
    };
    ParseError::at(file, source, Span::new(at, at + 1), e.message)
}

/// Collected `$VAR` references that were not set, for the UndefinedVar check.
pub(crate) type Unmatched = Vec<(String, Span)>;

struct Expander<'a> {
    lexer: Lexer,
    /// Names declared (possibly without value); not reported as undefined.
    declared: &'a [(String, Option<String>)],
    file: &'a str,
    source: &'a str,
    span: Span,
    unmatched: Option<&'a mut Unmatched>,
}

impl Expander<'_> {
    /// Span of `$name`/`${name` inside `word` within the instruction's source text.
    fn locate(&self, word: &str, name: &str) -> Span {
        let text = self
            .source
            .get(self.span.start..self.span.end)
            .unwrap_or("");
        let Some(w) = text.find(word).filter(|_| !word.is_empty()) else {
            return self.span;
        };
        let (inner, len) = [format!("${{{name}"), format!("${name}")]
            .iter()
            .find_map(|pat| word.find(pat.as_str()).map(|i| (i, pat.len())))
            .unwrap_or((0, word.len()));
        let start = self.span.start + w + inner;
        Span::new(start, start + len)
    }

    fn word(
        &mut self,
        word: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ParseError> {
        let (out, m) = self
            .lexer
            .process_word_with_matches(word, &|n: &str| lookup(n))
            .map_err(|e| shell_err(self.file, self.source, self.span, word, e))?;
        if self.unmatched.is_none() {
            return Ok(out);
        }
        let mut found = Vec::new();
        for name in m.unmatched {
            // `${V:-x}`-style references handle the unset case on purpose.
            let guarded = [":-", "-", ":+", "+", ":?", "?", ":=", "="]
                .iter()
                .any(|op| word.contains(&format!("${{{name}{op}")));
            if !guarded && !lookup_declared(name.as_str(), self.declared) {
                let at = self.locate(word, &name);
                found.push((name, at));
            }
        }
        if let Some(u) = self.unmatched.as_deref_mut() {
            u.extend(found);
        }
        Ok(out)
    }
}

/// Builds the plan: splits stages, evaluates global ARGs, expands FROM lines,
/// resolves stage references and the target.
pub fn plan(df: &Dockerfile, opts: &PlanOptions) -> Result<Plan, ParseError> {
    plan_inner(df, opts, None)
}

pub(crate) fn plan_inner(
    df: &Dockerfile,
    opts: &PlanOptions,
    mut unmatched: Option<&mut Unmatched>,
) -> Result<Plan, ParseError> {
    let file = df.file_name.as_str();
    let source = df.source.as_str();
    // Only ARG may come before the first FROM.
    for ins in &df.instructions {
        match ins.kind {
            InstructionKind::From(_) => break,
            InstructionKind::Arg(_) => continue,
            _ => {
                return Err(ParseError::at(file, source,
                    Span::new(ins.span.start, ins.span.start + 1),
                    format!(
                        "no build stage in current context: {} before FROM (only ARG may precede the first FROM)",
                        ins.kind.keyword()
                    ),
                ))
            }
        }
    }
    if !df
        .instructions
        .iter()
        .any(|i| matches!(i.kind, InstructionKind::From(_)))
    {
        return Err(ParseError::at(
            file,
            source,
            Span::new(0, 0),
            "no build stage in current context: the file has no FROM instruction",
        ));
    }
    let mut meta = platform_args(opts);
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut idx = 0;
    // Global ARGs.
    while let Some(ins) = df.instructions.get(idx) {
        let InstructionKind::Arg(decls) = &ins.kind else {
            break;
        };
        for d in decls {
            declared.insert(d.name.clone());
            let value = if let Some(v) = opts.build_args.get(&d.name) {
                Some(v.clone())
            } else if let Some(def) = &d.default {
                let snapshot = meta.clone();
                let mut ex = Expander {
                    lexer: Lexer::new(df.escape),
                    declared: &snapshot,
                    file,
                    source,
                    span: ins.span,
                    unmatched: unmatched.as_deref_mut(),
                };
                Some(ex.word(def, &|n| lookup_in(&snapshot, n))?)
            } else {
                lookup_in(&meta, &d.name)
            };
            meta.retain(|(k, _)| *k != d.name);
            meta.push((d.name.clone(), value));
        }
        idx += 1;
    }

    // Split stages.
    let mut stages: Vec<Stage> = Vec::new();
    for ins in df.instructions.iter().skip(idx) {
        if let InstructionKind::From(f) = &ins.kind {
            let mut ex = Expander {
                lexer: Lexer::new(df.escape),
                declared: &meta,
                file,
                source,
                span: ins.span,
                unmatched: unmatched.as_deref_mut(),
            };
            let image = ex.word(&f.image, &|n| lookup_in(&meta, n))?;
            if image.is_empty() {
                return Err(ParseError::at(
                    file,
                    source,
                    ins.span,
                    format!("base name ({}) should not be blank", f.image),
                ));
            }
            let platform = match &f.platform {
                Some(p) => Some(ex.word(p, &|n| lookup_in(&meta, n))?),
                None => None,
            };
            let lower = image.to_ascii_lowercase();
            let base = if lower == "scratch" {
                Base::Scratch
            } else if let Some(s) = stages
                .iter()
                .rev()
                .find(|s| s.name.as_deref() == Some(lower.as_str()))
            {
                Base::Stage(s.index)
            } else {
                Base::Image(image)
            };
            let index = stages.len();
            stages.push(Stage {
                index,
                name: f.alias.as_ref().map(|a| a.to_ascii_lowercase()),
                deps: match base {
                    Base::Stage(i) => vec![i],
                    _ => vec![],
                },
                base,
                platform,
                instructions: Vec::new(),
                line: ins.line,
                from: ins.clone(),
            });
        } else if let Some(last) = stages.last_mut() {
            last.instructions.push(ins.clone());
        }
    }

    let mut plan = Plan {
        stages,
        target: 0,
        unused_build_args: Vec::new(),
        global_args: meta,
        escape: df.escape,
        file_name: file.to_string(),
        source: Arc::from(source),
    };

    // Dependencies from COPY --from and RUN --mount from=, expanding with a
    // simulated scope (base image env unknown here, treated as empty).
    let mut all_deps: Vec<Vec<usize>> = Vec::new();
    for stage in &plan.stages {
        let mut scope = Scope::new(&plan, stage.index, opts, &[]);
        let mut deps: BTreeSet<usize> = stage.deps.iter().copied().collect();
        for ins in &stage.instructions {
            let expanded = scope.expand(ins).unwrap_or_else(|_| ins.clone());
            let mut froms: Vec<&str> = Vec::new();
            match &expanded.kind {
                InstructionKind::Copy(c) => froms.extend(c.from.as_deref()),
                InstructionKind::Run(r) => froms.extend(r.mounts.iter().filter_map(|m| m.from())),
                _ => {}
            }
            for f in froms {
                if let Ok(n) = f.parse::<usize>() {
                    if n >= plan.stages.len() {
                        return Err(ParseError::at(
                            file,
                            source,
                            ins.span,
                            format!("invalid stage index {n}"),
                        ));
                    }
                }
                if let FromRef::Stage(d) = plan.resolve_from(f) {
                    if d == stage.index {
                        return Err(ParseError::at(
                            file,
                            source,
                            ins.span,
                            format!(
                                "circular dependency detected on stage: {}",
                                stage
                                    .name
                                    .clone()
                                    .unwrap_or_else(|| stage.index.to_string())
                            ),
                        ));
                    }
                    deps.insert(d);
                }
            }
            scope.apply(&expanded);
        }
        all_deps.push(deps.into_iter().collect());
    }
    for (s, d) in plan.stages.iter_mut().zip(all_deps) {
        s.deps = d;
    }
    // Cycle detection (forward references by name are allowed, cycles are not).
    for s in &plan.stages {
        let mut stack = vec![s.index];
        let mut seen = BTreeSet::new();
        while let Some(i) = stack.pop() {
            for &d in plan.stages.get(i).map(|x| x.deps.as_slice()).unwrap_or(&[]) {
                if d == s.index {
                    return Err(ParseError::at(
                        file,
                        source,
                        s.from.span,
                        format!(
                            "circular dependency detected on stage: {}",
                            s.name.clone().unwrap_or_else(|| s.index.to_string())
                        ),
                    ));
                }
                if seen.insert(d) {
                    stack.push(d);
                }
            }
        }
    }

    // Target.
    plan.target = match &opts.target {
        Some(t) => plan.stage_by_name(t).ok_or_else(|| {
            ParseError::at(
                file,
                source,
                Span::new(0, 0),
                format!("target stage \"{t}\" could not be found"),
            )
        })?,
        None => plan.stages.len().saturating_sub(1),
    };

    // Unused build args.
    for i in plan.build_order() {
        if let Some(s) = plan.stages.get(i) {
            for ins in &s.instructions {
                if let InstructionKind::Arg(decls) = &ins.kind {
                    declared.extend(decls.iter().map(|d| d.name.clone()));
                }
            }
        }
    }
    plan.unused_build_args = opts
        .build_args
        .keys()
        .filter(|k| {
            !declared.contains(*k)
                && !PREDEFINED_ARGS.contains(&k.as_str())
                && !k.starts_with("BUILDKIT_")
                && k.as_str() != "SOURCE_DATE_EPOCH"
        })
        .cloned()
        .collect();
    Ok(plan)
}

/// Per-stage variable state while the engine dispatches a stage's instructions in order.
#[derive(Clone, Debug)]
pub struct Scope {
    vars: Vars,
    global: Vec<(String, Option<String>)>,
    build_args: BTreeMap<String, String>,
    escape: char,
    file_name: String,
    source: Arc<str>,
}

impl Scope {
    /// Starts the scope of `stage` on top of the base image's config env (`K=V`).
    pub fn new(plan: &Plan, stage: usize, opts: &PlanOptions, base_env: &[String]) -> Scope {
        let _ = stage;
        let env = base_env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        Scope {
            vars: Vars {
                env,
                args: Vec::new(),
                declarations: Vec::new(),
            },
            global: plan.global_args.clone(),
            build_args: opts.build_args.clone(),
            escape: plan.escape,
            file_name: plan.file_name.clone(),
            source: plan.source.clone(),
        }
    }

    /// Returns the instruction with words expanded exactly where Docker expands them; errors carry line/column.
    pub fn expand(&self, instr: &Instruction) -> Result<Instruction, ParseError> {
        self.expand_inner(instr, None)
    }

    pub(crate) fn expand_inner(
        &self,
        instr: &Instruction,
        unmatched: Option<&mut Unmatched>,
    ) -> Result<Instruction, ParseError> {
        let mut ex = Expander {
            lexer: Lexer::new(self.escape),
            declared: &self.vars.args,
            file: &self.file_name,
            source: &self.source,
            span: instr.span,
            unmatched,
        };
        let vars = &self.vars;
        let look = |n: &str| vars.get(n);
        let mut out = instr.clone();
        match &mut out.kind {
            InstructionKind::Env(kvs) | InstructionKind::Label(kvs) => {
                for kv in kvs.iter_mut() {
                    kv.key = ex.word(&kv.key, &look)?;
                    kv.value = ex.word(&kv.value, &look)?;
                }
            }
            InstructionKind::Arg(decls) => {
                for d in decls.iter_mut() {
                    d.default = if let Some(v) = self.build_args.get(&d.name) {
                        Some(v.clone())
                    } else if let Some(def) = &d.default {
                        Some(ex.word(def, &look)?)
                    } else {
                        lookup_in(&self.global, &d.name)
                    };
                }
            }
            InstructionKind::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports.iter() {
                    let w = ex.word(p, &look)?;
                    all.extend(w.split_whitespace().map(str::to_string));
                }
                *ports = all;
            }
            InstructionKind::Volume(v) => {
                for p in v.iter_mut() {
                    *p = ex.word(p, &look)?;
                }
            }
            InstructionKind::User(s)
            | InstructionKind::Workdir(s)
            | InstructionKind::StopSignal(s) => {
                *s = ex.word(s, &look)?;
            }
            InstructionKind::Copy(c) => expand_copy(&mut ex, c, &look)?,
            InstructionKind::Add(a) => {
                expand_copy(&mut ex, &mut a.copy, &look)?;
                if let Some(c) = &mut a.checksum {
                    *c = ex.word(c, &look)?;
                }
            }
            InstructionKind::Run(r) => {
                for m in r.mounts.iter_mut() {
                    let fields: Vec<&mut String> = match m {
                        Mount::Bind {
                            target,
                            source,
                            from,
                            ..
                        } => std::iter::once(target)
                            .chain(source.as_mut())
                            .chain(from.as_mut())
                            .collect(),
                        Mount::Cache {
                            target,
                            id,
                            from,
                            source,
                            ..
                        } => std::iter::once(target)
                            .chain(id.as_mut())
                            .chain(from.as_mut())
                            .chain(source.as_mut())
                            .collect(),
                        Mount::Tmpfs { target, .. } => vec![target],
                        Mount::Secret {
                            id, target, env, ..
                        } => id
                            .as_mut()
                            .into_iter()
                            .chain(target.as_mut())
                            .chain(env.as_mut())
                            .collect(),
                        Mount::Ssh { id, target, .. } => {
                            id.as_mut().into_iter().chain(target.as_mut()).collect()
                        }
                    };
                    for f in fields {
                        *f = ex.word(f, &look)?;
                    }
                }
            }
            InstructionKind::From(_)
            | InstructionKind::Cmd(_)
            | InstructionKind::Entrypoint(_)
            | InstructionKind::Shell(_)
            | InstructionKind::Maintainer(_)
            | InstructionKind::Healthcheck(_)
            | InstructionKind::Onbuild(_) => {}
        }
        Ok(out)
    }

    /// Records the effect of an (expanded) ARG or ENV so later instructions see it.
    pub fn apply(&mut self, instr: &Instruction) {
        match &instr.kind {
            InstructionKind::Env(kvs) => {
                for kv in kvs {
                    self.vars.set_env(kv.key.clone(), kv.value.clone());
                }
            }
            InstructionKind::Arg(decls) => {
                for d in decls {
                    let v = self
                        .build_args
                        .get(&d.name)
                        .cloned()
                        .or_else(|| d.default.clone())
                        .or_else(|| lookup_in(&self.global, &d.name));
                    self.vars.set_arg(d.name.clone(), v);
                    self.vars.declarations.push(d.name.clone());
                }
            }
            _ => {}
        }
    }

    /// Environment for RUN: image env plus ARG values in scope (ARGs are not persisted in the image config).
    pub fn run_env(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .vars
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let has = |out: &[String], k: &str| {
            out.iter()
                .any(|e| e.split_once('=').map(|(a, _)| a) == Some(k))
        };
        for (k, v) in &self.vars.args {
            if let Some(v) = v {
                if !has(&out, k) {
                    out.push(format!("{k}={v}"));
                }
            }
        }
        for p in PREDEFINED_ARGS {
            if let Some(v) = self.build_args.get(p) {
                if !has(&out, p) {
                    out.push(format!("{p}={v}"));
                }
            }
        }
        out
    }

    /// The image config environment only (`ENV` and base env), for the image config.
    pub fn env(&self) -> Vec<String> {
        self.vars
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// The build args consumed so far, for cache keys and history (`|1 A=b /bin/sh -c ...`).
    pub fn used_args(&self) -> Vec<(String, String)> {
        self.vars
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// The `K=V` list docker 20.10 (BuildKit 0.8) writes before a RUN's command
    /// in the history (`|N K=V … /bin/sh -c …`): every ARG declaration of the
    /// stage in order, a redeclared name once per declaration, each with the
    /// variable's current value (an ENV of that name wins), empty when unset.
    pub fn history_args(&self) -> Vec<(String, String)> {
        self.vars
            .declarations
            .iter()
            .map(|k| (k.clone(), self.vars.get(k).unwrap_or_default()))
            .collect()
    }

    /// Looks a variable up with Docker's precedence (ENV over ARG); exposed for
    /// engines that need ad-hoc expansion (e.g. ONBUILD triggers at their dispatch).
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name)
    }
}

/// The `ExposedPorts` keys one EXPOSE word stands for, as docker's
/// `nat.ParsePortSpecs` gives them: a protocol defaults to tcp and is
/// lower-cased, and a range `8000-8002` is one key per port. A word that is
/// not a number or range is kept as written (with its protocol).
pub fn expose_keys(spec: &str) -> Vec<String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if let Some((a, b)) = ports.split_once('-') {
        if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
            if a <= b {
                return (a..=b).map(|p| format!("{p}/{proto}")).collect();
            }
        }
    }
    vec![format!("{ports}/{proto}")]
}

fn expand_copy(
    ex: &mut Expander<'_>,
    c: &mut Copy,
    look: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ParseError> {
    for s in c.sources.iter_mut() {
        *s = ex.word(s, look)?;
    }
    c.dest = ex.word(&c.dest, look)?;
    for f in [&mut c.from, &mut c.chown, &mut c.chmod]
        .into_iter()
        .flatten()
    {
        *f = ex.word(f, look)?;
    }
    for e in c.exclude.iter_mut() {
        *e = ex.word(e, look)?;
    }
    let heredoc_lexer = Lexer::new(ex.lexer.escape()).with_skip_process_quotes(true);
    for h in c.heredocs.iter_mut().filter(|h| h.expand) {
        h.content = heredoc_lexer
            .process_word(&h.content, &|n: &str| look(n))
            .map_err(|e| shell_err(ex.file, ex.source, ex.span, "", e))?;
    }
    Ok(())
}
