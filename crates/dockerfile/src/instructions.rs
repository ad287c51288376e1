//! Logical line -> typed instruction, with flags and arguments validated the
//! way BuildKit's `instructions` package does.

use std::time::Duration;

use crate::ast::*;
use crate::error::{ParseError, Span};
use crate::parser::{heredoc_marker, raw_shell_words, Ctx, HeredocReader, Logical};

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    Str,
    Strs,
}

struct FlagWord {
    /// Word with leading `--` removed, quotes processed.
    text: String,
    start: usize,
    end: usize,
}

struct FlagValue {
    name: String,
    value: Option<String>,
    span: Span,
}

struct Flags {
    values: Vec<FlagValue>,
}

impl Flags {
    fn string(&self, name: &str) -> Option<&FlagValue> {
        self.values.iter().find(|v| v.name == name)
    }
    fn str_value(&self, name: &str) -> Option<String> {
        self.string(name).and_then(|v| v.value.clone())
    }
    fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s FlagValue> + 's {
        self.values.iter().filter(move |v| v.name == name)
    }
    fn bool_value(&self, name: &str) -> Option<bool> {
        self.string(name)
            .map(|v| v.value.as_deref().is_some_and(|s| s == "true"))
    }
}

/// Go's `unicode.IsSpace` subset that matters for Dockerfiles.
fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `extractBuilderFlags`: leading `--flag[=value]` words.
/// Returns the flag words and the byte offset where arguments start.
fn extract_flags(text: &str, base: usize) -> (Vec<FlagWord>, usize) {
    let mut words = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut k = 0;
    loop {
        while chars.get(k).is_some_and(|(_, c)| is_space(*c)) {
            k += 1;
        }
        let Some(&(pos, c)) = chars.get(k) else {
            return (words, base + text.len());
        };
        let next_dash = chars.get(k + 1).is_some_and(|(_, c)| *c == '-');
        if c != '-' || !next_dash {
            return (words, base + pos);
        }
        // Read one word.
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let start = pos;
        let mut end = text.len();
        while let Some(&(p, ch)) = chars.get(k) {
            match quote {
                None => {
                    if is_space(ch) {
                        end = p;
                        break;
                    }
                    if ch == '\'' || ch == '"' {
                        quote = Some(ch);
                    } else if ch == '\\' {
                        if let Some(&(_, n)) = chars.get(k + 1) {
                            word.push(n);
                            k += 1;
                        }
                    } else {
                        word.push(ch);
                    }
                }
                Some(q) => {
                    if ch == q {
                        quote = None;
                    } else if ch == '\\' {
                        if let Some(&(_, n)) = chars.get(k + 1) {
                            word.push(n);
                            k += 1;
                        }
                    } else {
                        word.push(ch);
                    }
                }
            }
            k += 1;
        }
        if word == "--" {
            return (words, base + end);
        }
        words.push(FlagWord {
            text: word.get(2..).unwrap_or("").to_string(),
            start: base + start,
            end: base + end,
        });
    }
}

fn parse_flags(
    ctx: &Ctx<'_>,
    logical: &Logical,
    words: &[FlagWord],
    spec: &[(&str, FlagKind)],
) -> Result<Flags, ParseError> {
    let mut values: Vec<FlagValue> = Vec::new();
    for w in words {
        let span = logical.span(w.start, w.end);
        let (name, value) = match w.text.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (w.text.clone(), None),
        };
        let Some(&(_, kind)) = spec.iter().find(|(n, _)| *n == name) else {
            return Err(ctx.err(span, format!("unknown flag: {name}")));
        };
        if kind != FlagKind::Strs && values.iter().any(|v| v.name == name) {
            return Err(ctx.err(span, format!("duplicate flag specified: {name}")));
        }
        let value = match kind {
            FlagKind::Bool => {
                let v = value.unwrap_or_else(|| "true".to_string());
                match v.to_ascii_lowercase().as_str() {
                    "true" => Some("true".to_string()),
                    "false" => Some("false".to_string()),
                    _ => {
                        return Err(ctx.err(
                            span,
                            format!("expecting boolean value for flag {name}, not: {v}"),
                        ))
                    }
                }
            }
            FlagKind::Str | FlagKind::Strs => match value {
                Some(v) => Some(v),
                None => return Err(ctx.err(span, format!("missing a value on flag: {name}"))),
            },
        };
        values.push(FlagValue { name, value, span });
    }
    Ok(Flags { values })
}

/// Go's `reWhitespace` split.
fn split_ws(s: &str) -> Vec<String> {
    s.split(['\t', '\x0b', '\x0c', '\r', ' '])
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

enum Json {
    /// Valid JSON array of strings.
    Array(Vec<String>),
    /// Valid JSON array with a non-string element.
    NotStrings,
    /// Not JSON: use shell/whitespace form.
    Shell,
}

fn parse_json(rest: &str) -> Json {
    let t = rest.trim_start();
    if !t.starts_with('[') {
        return Json::Shell;
    }
    match serde_json::from_str::<serde_json::Value>(t) {
        Ok(serde_json::Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                match it {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Array(out)
        }
        _ => Json::Shell,
    }
}

const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// BuildKit's `parseWords`: whitespace-separated words, quotes and escapes kept.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None => {
                if is_space(ch) {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    match chars.next() {
                        None => continue,
                        Some(n) => {
                            word.push(ch);
                            word.push(n);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    match chars.next() {
                        None => {
                            quote = None;
                            continue;
                        }
                        Some(n) => {
                            word.push(ch);
                            word.push(n);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Location helpers for one logical line.
struct Here<'c, 'a> {
    ctx: &'c Ctx<'a>,
    logical: &'c Logical,
    cmd_span: Span,
    args_start: usize,
}

impl Here<'_, '_> {
    fn at_cmd(&self, msg: impl Into<String>) -> ParseError {
        self.ctx.err(self.cmd_span, msg)
    }
    fn at_args(&self, msg: impl Into<String>) -> ParseError {
        let end = self.logical.text.len();
        let s = self.logical.span(self.args_start.min(end), end);
        self.ctx.err(s, msg)
    }
}

fn can_contain_heredoc(cmd: &str) -> bool {
    matches!(cmd, "run" | "copy" | "add")
}

/// Parses one logical line into an instruction kind.
pub(crate) fn parse_logical(
    ctx: &Ctx<'_>,
    logical: &Logical,
    reader: &mut HeredocReader<'_, '_>,
    in_onbuild: bool,
) -> Result<InstructionKind, ParseError> {
    let text = logical.text.as_str();
    let lead = text.len() - text.trim_start().len();
    let body = text.get(lead..).unwrap_or("");
    let cmd_len = body
        .find(['\t', '\x0b', '\x0c', '\r', ' '])
        .unwrap_or(body.len());
    let cmd_word = body.get(..cmd_len).unwrap_or("");
    let cmd = cmd_word.to_ascii_lowercase();
    let cmd_span = logical.span(lead, lead + cmd_len);
    let after_cmd = lead + cmd_len;
    let (flag_words, args_start) = extract_flags(text.get(after_cmd..).unwrap_or(""), after_cmd);
    let args = text.get(args_start..).unwrap_or("").trim();
    let here = Here {
        ctx,
        logical,
        cmd_span,
        args_start,
    };
    let kw = cmd.to_ascii_uppercase();
    let flags = |spec: &[(&str, FlagKind)]| parse_flags(ctx, logical, &flag_words, spec);

    // Heredocs (not for JSON forms).
    let mut heredocs = Vec::new();
    if can_contain_heredoc(&cmd) && args.contains("<<") && matches!(parse_json(args), Json::Shell) {
        for w in raw_shell_words(args) {
            if let Some(m) = heredoc_marker(&w) {
                heredocs.push(reader.read(ctx, m)?);
            }
        }
    }

    Ok(match cmd.as_str() {
        "from" => {
            if in_onbuild {
                return Err(here.at_cmd("FROM isn't allowed as an ONBUILD trigger"));
            }
            let f = flags(&[("platform", FlagKind::Str)])?;
            let words = split_ws(args);
            let alias = match words.as_slice() {
                [_] => None,
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(here.at_args(format!("invalid name for build stage: \"{name}\", name can't start with a number or contain symbols")));
                    }
                    Some(name.clone())
                }
                _ => return Err(here.at_cmd("FROM requires either one or three arguments")),
            };
            InstructionKind::From(From {
                image: words.first().cloned().unwrap_or_default(),
                platform: f.str_value("platform"),
                alias,
            })
        }
        "run" => {
            let f = flags(&[
                ("mount", FlagKind::Strs),
                ("network", FlagKind::Str),
                ("security", FlagKind::Str),
            ])?;
            let mut mounts = Vec::new();
            for m in f.all("mount") {
                let v = m.value.as_deref().unwrap_or("");
                mounts.push(parse_mount(v).map_err(|e| ctx.err(m.span, e))?);
            }
            let network = match f.string("network") {
                None => None,
                Some(v) => Some(match v.value.as_deref().unwrap_or("") {
                    "default" => NetworkMode::Default,
                    "none" => NetworkMode::None,
                    "host" => NetworkMode::Host,
                    other => {
                        return Err(ctx.err(v.span, format!("unsupported network mode \"{other}\"")))
                    }
                }),
            };
            let security = match f.string("security") {
                None => None,
                Some(v) => Some(match v.value.as_deref().unwrap_or("") {
                    "sandbox" => SecurityMode::Sandbox,
                    "insecure" => SecurityMode::Insecure,
                    other => {
                        return Err(
                            ctx.err(v.span, format!("unsupported security mode \"{other}\""))
                        )
                    }
                }),
            };
            let command = match maybe_json_command(args) {
                Ok(Some(c)) => c,
                Ok(None) => return Err(here.at_cmd("RUN requires at least one argument")),
                Err(e) => return Err(here.at_args(e)),
            };
            InstructionKind::Run(Run {
                command,
                heredocs,
                mounts,
                network,
                security,
            })
        }
        "cmd" | "entrypoint" => {
            flags(&[])?;
            let command = match maybe_json_command(args) {
                Ok(Some(c)) => c,
                Ok(None) => Command::Exec(Vec::new()),
                Err(e) => return Err(here.at_args(e)),
            };
            if cmd == "cmd" {
                InstructionKind::Cmd(command)
            } else {
                InstructionKind::Entrypoint(command)
            }
        }
        "shell" => {
            flags(&[])?;
            match parse_json(args) {
                Json::Array(v) if !v.is_empty() => InstructionKind::Shell(v),
                Json::Array(_) => return Err(here.at_cmd("SHELL requires at least one argument")),
                Json::NotStrings => return Err(here.at_args(NOT_STRINGS)),
                Json::Shell => {
                    return Err(here.at_args("SHELL requires the arguments to be in JSON form"))
                }
            }
        }
        "env" | "label" => {
            flags(&[])?;
            if args.is_empty() {
                return Err(here.at_cmd(format!("{kw} requires at least one argument")));
            }
            let kvs = parse_name_val(args, &kw, ctx.escape).map_err(|e| here.at_args(e))?;
            if cmd == "env" {
                InstructionKind::Env(kvs)
            } else {
                InstructionKind::Label(kvs)
            }
        }
        "arg" => {
            flags(&[])?;
            let words = parse_words(args, ctx.escape);
            if words.is_empty() {
                return Err(here.at_cmd("ARG requires at least one argument"));
            }
            let mut decls = Vec::new();
            for w in words {
                let (name, default) = match w.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (w, None),
                };
                if name.is_empty() {
                    return Err(here.at_args("ARG names can not be blank"));
                }
                decls.push(ArgDecl { name, default });
            }
            InstructionKind::Arg(decls)
        }
        "maintainer" => {
            if in_onbuild {
                return Err(here.at_cmd("MAINTAINER isn't allowed as an ONBUILD trigger"));
            }
            flags(&[])?;
            InstructionKind::Maintainer(one_string(&here, args, "MAINTAINER")?)
        }
        "user" => {
            flags(&[])?;
            InstructionKind::User(one_string(&here, args, "USER")?)
        }
        "workdir" => {
            flags(&[])?;
            InstructionKind::Workdir(one_string(&here, args, "WORKDIR")?)
        }
        "stopsignal" => {
            flags(&[])?;
            InstructionKind::StopSignal(one_string(&here, args, "STOPSIGNAL")?)
        }
        "expose" => {
            flags(&[])?;
            let ports = split_ws(args);
            if ports.is_empty() {
                return Err(here.at_cmd("EXPOSE requires at least one argument"));
            }
            InstructionKind::Expose(ports)
        }
        "volume" => {
            flags(&[])?;
            let vols = json_or_words(args).map_err(|e| here.at_args(e))?;
            if vols.is_empty() {
                return Err(here.at_cmd("VOLUME requires at least one argument"));
            }
            if vols.iter().any(|v| v.trim().is_empty()) {
                return Err(here.at_args("VOLUME specified can not be an empty string"));
            }
            InstructionKind::Volume(vols)
        }
        "copy" => {
            let f = flags(&[
                ("from", FlagKind::Str),
                ("chown", FlagKind::Str),
                ("chmod", FlagKind::Str),
                ("link", FlagKind::Bool),
                ("parents", FlagKind::Bool),
                ("exclude", FlagKind::Strs),
            ])?;
            let mut c = sources_and_dest(&here, args, "COPY", heredocs)?;
            c.from = f.str_value("from");
            fill_copy_flags(&mut c, &f);
            InstructionKind::Copy(c)
        }
        "add" => {
            let f = flags(&[
                ("chown", FlagKind::Str),
                ("chmod", FlagKind::Str),
                ("link", FlagKind::Bool),
                ("exclude", FlagKind::Strs),
                ("checksum", FlagKind::Str),
                ("keep-git-dir", FlagKind::Bool),
                ("unpack", FlagKind::Bool),
            ])?;
            let mut c = sources_and_dest(&here, args, "ADD", heredocs)?;
            fill_copy_flags(&mut c, &f);
            InstructionKind::Add(Add {
                copy: c,
                checksum: f.str_value("checksum"),
                keep_git_dir: f.bool_value("keep-git-dir").unwrap_or(false),
                unpack: f.bool_value("unpack"),
            })
        }
        "healthcheck" => {
            let f = flags(&[
                ("interval", FlagKind::Str),
                ("timeout", FlagKind::Str),
                ("start-period", FlagKind::Str),
                ("start-interval", FlagKind::Str),
                ("retries", FlagKind::Str),
            ])?;
            parse_healthcheck(ctx, &here, args, &f)?
        }
        "onbuild" => {
            flags(&[])?;
            if args.is_empty() {
                return Err(here.at_cmd("ONBUILD requires at least one argument"));
            }
            let sub_start = args_start
                + (text.get(args_start..).unwrap_or("").len()
                    - text.get(args_start..).unwrap_or("").trim_start().len());
            let sub = logical.slice(sub_start);
            let trigger = split_ws(&sub.text)
                .first()
                .map(|s| s.to_ascii_uppercase())
                .unwrap_or_default();
            let sub_cmd_span = logical.span(sub_start, sub_start + trigger.len());
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err(ctx.err(
                        sub_cmd_span,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "FROM" | "MAINTAINER" => {
                    return Err(ctx.err(
                        sub_cmd_span,
                        format!("{trigger} isn't allowed as an ONBUILD trigger"),
                    ))
                }
                _ => {}
            }
            let kind = parse_logical(ctx, &sub, reader, true)?;
            let span = logical.span(sub_start, logical.text.len());
            let line = reader.line_of(ctx.source, span.start);
            // Like BuildKit, the trigger text carries its heredoc bodies so it
            // can be re-parsed on its own when a child image runs it.
            let mut original = sub.text.trim().to_string();
            let docs: &[Heredoc] = match &kind {
                InstructionKind::Run(r) => &r.heredocs,
                InstructionKind::Copy(c) => &c.heredocs,
                InstructionKind::Add(a) => &a.copy.heredocs,
                _ => &[],
            };
            for h in docs {
                original.push('\n');
                original.push_str(&h.content);
                original.push_str(&h.name);
            }
            InstructionKind::Onbuild(Box::new(Instruction {
                kind,
                span,
                line,
                original,
            }))
        }
        _ => {
            let mut msg = format!("unknown instruction: {}", cmd_word.to_ascii_uppercase());
            if let Some(s) = suggest_instruction(&cmd) {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            return Err(here.at_cmd(msg));
        }
    })
}

const INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Closest instruction name within a small edit distance, as BuildKit suggests.
fn suggest_instruction(word: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
                let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
                let ins = cur.get(j).copied().unwrap_or(0) + 1;
                cur.push(sub.min(del).min(ins));
            }
            prev = cur;
        }
        prev.last().copied().unwrap_or(0)
    }
    if word.chars().count() > 32 {
        return None;
    }
    INSTRUCTIONS
        .iter()
        .map(|i| (distance(word, i), *i))
        .filter(|(d, i)| *d > 0 && (*d == 1 || (*d == 2 && i.len() >= 6)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, i)| i)
}

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-' | '_' | '.'))
}

fn one_string(here: &Here<'_, '_>, args: &str, kw: &str) -> Result<String, ParseError> {
    if args.is_empty() {
        return Err(here.at_cmd(format!("{kw} requires exactly one argument")));
    }
    Ok(args.to_string())
}

fn maybe_json_command(args: &str) -> Result<Option<Command>, &'static str> {
    if args.is_empty() {
        return Ok(None);
    }
    match parse_json(args) {
        Json::Array(v) => Ok(Some(Command::Exec(v))),
        Json::NotStrings => Err(NOT_STRINGS),
        Json::Shell => Ok(Some(Command::Shell(args.to_string()))),
    }
}

fn json_or_words(args: &str) -> Result<Vec<String>, &'static str> {
    match parse_json(args) {
        Json::Array(v) => Ok(v),
        Json::NotStrings => Err(NOT_STRINGS),
        Json::Shell => Ok(split_ws(args)),
    }
}

fn parse_name_val(args: &str, kw: &str, escape: char) -> Result<Vec<KeyValue>, String> {
    let words = parse_words(args, escape);
    let Some(first) = words.first() else {
        return Err(format!("{kw} requires at least one argument"));
    };
    if !first.contains('=') {
        // Legacy `KEY name value` form: the value is the rest of the line.
        let t = args.trim();
        let split = t.find(['\t', '\x0b', '\x0c', '\r', ' ']);
        let Some(i) = split else {
            return Err(format!("{kw} must have two arguments"));
        };
        let key = t.get(..i).unwrap_or("");
        let value = t
            .get(i..)
            .unwrap_or("")
            .trim_start_matches(['\t', '\x0b', '\x0c', '\r', ' ']);
        return Ok(vec![KeyValue {
            key: key.to_string(),
            value: value.to_string(),
        }]);
    }
    let mut out = Vec::new();
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in \"{w}\". Must be of the form: name=value"
            ));
        };
        if k.is_empty() {
            return Err(format!("{kw} names can not be blank"));
        }
        out.push(KeyValue {
            key: k.to_string(),
            value: v.to_string(),
        });
    }
    Ok(out)
}

fn sources_and_dest(
    here: &Here<'_, '_>,
    args: &str,
    kw: &str,
    heredocs: Vec<Heredoc>,
) -> Result<Copy, ParseError> {
    let words = json_or_words(args).map_err(|e| here.at_args(e))?;
    let Some((dest, srcs)) = words.split_last() else {
        return Err(here.at_cmd(format!("{kw} requires at least two arguments, but only one was provided. Destination could not be determined.")));
    };
    if srcs.is_empty() {
        return Err(here.at_cmd(format!("{kw} requires at least two arguments, but only one was provided. Destination could not be determined.")));
    }
    let is_json = matches!(parse_json(args), Json::Array(_));
    if !is_json && heredoc_marker(dest).is_some() {
        return Err(here.at_args(format!("{kw} cannot accept a heredoc as a destination")));
    }
    let mut c = Copy {
        dest: dest.clone(),
        ..Copy::default()
    };
    for s in srcs {
        match heredoc_marker(s).filter(|_| !is_json) {
            Some(m) => {
                if let Some(h) = heredocs.iter().find(|h| h.name == m.name) {
                    c.heredocs.push(h.clone());
                }
            }
            None => c.sources.push(s.clone()),
        }
    }
    Ok(c)
}

fn fill_copy_flags(c: &mut Copy, f: &Flags) {
    c.chown = f.str_value("chown");
    c.chmod = f.str_value("chmod");
    c.link = f.bool_value("link").unwrap_or(false);
    c.parents = f.bool_value("parents").unwrap_or(false);
    c.exclude = f.all("exclude").filter_map(|v| v.value.clone()).collect();
}

fn parse_healthcheck(
    ctx: &Ctx<'_>,
    here: &Here<'_, '_>,
    args: &str,
    f: &Flags,
) -> Result<InstructionKind, ParseError> {
    let words = split_ws(args);
    let Some(typ) = words.first() else {
        return Err(here.at_cmd("HEALTHCHECK requires at least one argument"));
    };
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        if words.len() > 1 {
            return Err(here.at_args("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(InstructionKind::Healthcheck(Healthcheck::None));
    }
    if typ != "CMD" {
        return Err(here.at_args(format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)")));
    }
    let cmd_rest = args.get(3..).unwrap_or("").trim();
    let command = match maybe_json_command(cmd_rest) {
        Ok(Some(c)) => c,
        Ok(None) => return Err(here.at_args("Missing command after HEALTHCHECK CMD")),
        Err(e) => return Err(here.at_args(e)),
    };
    let dur = |name: &str| -> Result<Option<Duration>, ParseError> {
        let Some(v) = f.string(name) else {
            return Ok(None);
        };
        let s = v.value.as_deref().unwrap_or("");
        if s.is_empty() {
            return Ok(None);
        }
        let d = parse_go_duration(s).map_err(|e| ctx.err(v.span, format!("time: {e} \"{s}\"")))?;
        match d {
            None => Err(ctx.err(
                v.span,
                format!("Interval \"{name}\" cannot be less than 1ms"),
            )),
            Some(d) if !d.is_zero() && d < Duration::from_millis(1) => Err(ctx.err(
                v.span,
                format!("Interval \"{name}\" cannot be less than 1ms"),
            )),
            Some(d) => Ok(Some(d)),
        }
    };
    let retries = match f.string("retries") {
        None => None,
        Some(v) => {
            let s = v.value.as_deref().unwrap_or("");
            if s.is_empty() {
                None
            } else {
                let n: i64 = s.parse().map_err(|_| {
                    ctx.err(
                        v.span,
                        format!("strconv.ParseInt: parsing \"{s}\": invalid syntax"),
                    )
                })?;
                if n < 0 {
                    return Err(ctx.err(v.span, format!("--retries cannot be negative ({n})")));
                }
                Some(u32::try_from(n).map_err(|_| {
                    ctx.err(
                        v.span,
                        format!("strconv.ParseInt: parsing \"{s}\": value out of range"),
                    )
                })?)
            }
        }
    };
    Ok(InstructionKind::Healthcheck(Healthcheck::Check {
        command,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration`. `Ok(None)` means a negative duration.
pub(crate) fn parse_go_duration(s: &str) -> Result<Option<Duration>, &'static str> {
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Some(Duration::ZERO));
    }
    if rest.is_empty() {
        return Err("invalid duration");
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at_checked(num_len).unwrap_or((rest, ""));
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err("invalid duration");
        }
        let value: f64 = num.parse().map_err(|_| "invalid duration")?;
        rest = tail;
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let (unit, tail) = rest.split_at_checked(unit_len).unwrap_or((rest, ""));
        rest = tail;
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err("missing unit in duration"),
            _ => return Err("unknown unit in duration"),
        };
        total += value * nanos_per;
        if total > 9.3e18 {
            return Err("invalid duration");
        }
    }
    if neg && total > 0.0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_nanos(total as u64)))
}

/// Go's `encoding/csv` for one record, enough for `--mount` values.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
                    Some('"') => {
                        if chars.peek() == Some(&'"') {
                            chars.next();
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => return Err(format!("extraneous or missing \" in quoted-field: {s}")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            out.push(field);
        }
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid value for {key}: {v}")),
    }
}

/// `units.RAMInBytes`: `64m`, `1g`, `512k`, `100` (binary multiples).
pub(crate) fn parse_ram_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at_checked(num_len).unwrap_or((t, ""));
    let value: f64 = num.parse().map_err(|_| format!("invalid size: '{s}'"))?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mul: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        "p" => 1024.0f64.powi(5),
        _ => return Err(format!("invalid suffix: '{unit}'")),
    };
    let bytes = value * mul;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("invalid size: '{s}'"));
    }
    Ok(bytes as u64)
}

/// Parses one `--mount` value into a typed mount (BuildKit `parseMount`).
pub(crate) fn parse_mount(value: &str) -> Result<Mount, String> {
    let fields = csv_fields(value)?;
    let mut typ = "bind".to_string();
    // First pass: find the type so option checks do not depend on order.
    for f in &fields {
        if let Some((k, v)) = f.split_once('=') {
            if k.trim().eq_ignore_ascii_case("type") {
                let v = v.to_ascii_lowercase();
                if !matches!(v.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                    return Err(format!("unsupported mount type \"{v}\""));
                }
                typ = v;
            }
        }
    }
    let mut target = None;
    let mut source = None;
    let mut from = None;
    let mut id = None;
    let mut env = None;
    let mut read_only: Option<bool> = None;
    let mut required = false;
    let mut sharing = None;
    let mut mode = None;
    let mut uid = None;
    let mut gid = None;
    let mut size = None;
    let secret_like = typ == "secret" || typ == "ssh";
    for field in &fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let Some(val) = val else {
            match key.as_str() {
                "readonly" | "ro" => read_only = Some(true),
                "readwrite" | "rw" => read_only = Some(false),
                "required" if secret_like => required = true,
                "required" => {
                    return Err(format!("unexpected key 'required' for mount type '{typ}'"))
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        match key.as_str() {
            "type" => {}
            "from" => from = Some(val),
            "source" | "src" => source = Some(val),
            "target" | "dst" | "destination" => target = Some(val),
            "readonly" | "ro" => read_only = Some(parse_bool(&key, &val)?),
            "readwrite" | "rw" => read_only = Some(!parse_bool(&key, &val)?),
            "required" if secret_like => required = parse_bool(&key, &val)?,
            "required" => return Err(format!("unexpected key 'required' for mount type '{typ}'")),
            "size" if typ == "tmpfs" => size = Some(parse_ram_size(&val)?),
            "size" => return Err(format!("unexpected key 'size' for mount type '{typ}'")),
            "id" => id = Some(val),
            "env" if typ == "secret" => env = Some(val),
            "sharing" => {
                if typ != "cache" {
                    return Err(format!("invalid cache sharing set for {typ} mount"));
                }
                sharing = Some(match val.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => return Err(format!("unsupported sharing value \"{val}\"")),
                });
            }
            "mode" => {
                mode = Some(
                    u32::from_str_radix(&val, 8)
                        .map_err(|_| format!("invalid value {val} for mode"))?,
                )
            }
            "uid" => {
                uid = Some(
                    val.parse::<u32>()
                        .map_err(|_| format!("invalid value {val} for uid"))?,
                )
            }
            "gid" => {
                gid = Some(
                    val.parse::<u32>()
                        .map_err(|_| format!("invalid value {val} for gid"))?,
                )
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    let file_info_allowed = matches!(typ.as_str(), "secret" | "ssh" | "cache");
    if !file_info_allowed {
        for (name, set) in [
            ("mode", mode.is_some()),
            ("uid", uid.is_some()),
            ("gid", gid.is_some()),
        ] {
            if set {
                return Err(format!("{name} not allowed for \"{typ}\" type mounts"));
            }
        }
    }
    let need_target = |t: Option<String>| t.ok_or_else(|| "mount target must be set".to_string());
    Ok(match typ.as_str() {
        "cache" => Mount::Cache {
            target: need_target(target)?,
            id,
            read_only: read_only.unwrap_or(false),
            sharing: sharing.unwrap_or(CacheSharing::Shared),
            from,
            source,
            mode,
            uid,
            gid,
        },
        "tmpfs" => Mount::Tmpfs {
            target: need_target(target)?,
            size,
        },
        "secret" => {
            if from.is_some() {
                return Err("secret mount should not have a from".to_string());
            }
            Mount::Secret {
                id: id.or(source),
                target,
                env,
                required,
                mode,
                uid,
                gid,
            }
        }
        "ssh" => {
            if from.is_some() {
                return Err("ssh mount should not have a from".to_string());
            }
            Mount::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            }
        }
        _ => Mount::Bind {
            target: need_target(target)?,
            source,
            from,
            read_write: read_only == Some(false),
        },
    })
}
