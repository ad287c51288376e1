//! Turning Dockerfile text into logical lines (directives, escapes,
//! continuations, heredocs) and then into typed instructions.

use crate::ast::*;
use crate::error::{Diagnostic, ParseError, Span};
use crate::instructions;

/// One physical line of the source.
#[derive(Clone, Copy)]
pub(crate) struct PhysLine<'a> {
    /// Byte offset of the first byte of the line.
    pub start: usize,
    /// Text without the line terminator (`\n` or `\r\n`).
    pub text: &'a str,
}

pub(crate) fn split_lines(source: &str) -> Vec<PhysLine<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut rest = source;
    loop {
        match rest.find('\n') {
            Some(i) => {
                let (line, tail) = rest.split_at_checked(i).unwrap_or((rest, ""));
                out.push(PhysLine {
                    start,
                    text: line.strip_suffix('\r').unwrap_or(line),
                });
                start += i + 1;
                rest = tail.get(1..).unwrap_or("");
            }
            None => {
                if !rest.is_empty() {
                    out.push(PhysLine {
                        start,
                        text: rest.strip_suffix('\r').unwrap_or(rest),
                    });
                }
                break;
            }
        }
    }
    if let Some(first) = out.first_mut() {
        if let Some(t) = first.text.strip_prefix('\u{feff}') {
            first.text = t;
            first.start += '\u{feff}'.len_utf8();
        }
    }
    out
}

/// A logical line: continuation lines joined, with a byte map back into the source.
#[derive(Clone, Debug, Default)]
pub(crate) struct Logical {
    pub text: String,
    map: Vec<usize>,
    end: usize,
}

impl Logical {
    fn push(&mut self, src_start: usize, s: &str) {
        for (i, _) in s.bytes().enumerate() {
            self.map.push(src_start + i);
        }
        self.text.push_str(s);
        self.end = src_start + s.len();
    }

    /// Source offset of logical byte `pos`.
    pub fn src(&self, pos: usize) -> usize {
        self.map.get(pos).copied().unwrap_or(self.end)
    }

    /// Source span of logical range.
    pub fn span(&self, start: usize, end: usize) -> Span {
        let s = self.src(start);
        let e = if end > start {
            self.src(end - 1) + 1
        } else {
            s
        };
        Span::new(s, e)
    }

    /// A sub-logical line (used by ONBUILD) keeping the source mapping.
    pub fn slice(&self, start: usize) -> Logical {
        let start = start.min(self.text.len());
        Logical {
            text: self.text.get(start..).unwrap_or("").to_string(),
            map: self.map.get(start..).unwrap_or(&[]).to_vec(),
            end: self.end,
        }
    }
}

pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub source: &'a str,
    pub escape: char,
}

impl Ctx<'_> {
    pub fn err(&self, span: Span, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.file, self.source, span, msg)
    }
}

const VALID_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Matches `#\s*name\s*=\s*value\s*` on a left-trimmed line.
fn match_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_len = rest
        .char_indices()
        .find(|(i, c)| {
            if *i == 0 {
                !c.is_ascii_alphabetic()
            } else {
                !c.is_ascii_alphanumeric()
            }
        })
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    if name_len == 0 {
        return None;
    }
    let (name, after) = rest.split_at_checked(name_len)?;
    let value = after.trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.to_string()))
}

struct DirectiveState {
    done: bool,
    directives: Directives,
}

impl DirectiveState {
    fn line(&mut self, ctx: &mut Ctx<'_>, line: PhysLine<'_>) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let trimmed = line.text.trim_start();
        let Some((name, value)) = match_directive(trimmed) else {
            self.done = true;
            return Ok(());
        };
        if !VALID_DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(());
        }
        let lead = line.text.len() - trimmed.len();
        let span = Span::new(line.start + lead, line.start + line.text.len());
        let dup = match name.as_str() {
            "syntax" => self.directives.syntax.replace(value.clone()).is_some(),
            "check" => self.directives.check.replace(value.clone()).is_some(),
            _ => {
                let mut chars = value.chars();
                let c = match (chars.next(), chars.next()) {
                    (Some(c @ ('\\' | '`')), None) => c,
                    _ => {
                        return Err(ctx.err(
                            span,
                            format!("invalid escape token '{value}' does not match ` or \\"),
                        ))
                    }
                };
                ctx.escape = c;
                self.directives.escape.replace(c).is_some()
            }
        };
        if dup {
            return Err(ctx.err(
                span,
                format!("only one {name} parser directive can be used"),
            ));
        }
        Ok(())
    }
}

fn is_comment(text: &str) -> bool {
    text.trim_start().starts_with('#')
}

/// Strips a trailing `ESC[ \t]*`; returns the remaining text and whether
/// the line continues.
fn trim_continuation(text: &str, escape: char) -> (&str, bool) {
    let t = text.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        // BuildKit: the escape must be alone on the line or follow a
        // character other than the escape itself (`\\` at the end is an
        // escaped escape, not a continuation).
        Some(rest) if !rest.ends_with(escape) => (rest, true),
        _ => (text, false),
    }
}

/// Parses a whole Dockerfile.
pub(crate) fn parse(file_name: &str, source: &str) -> Result<Dockerfile, ParseError> {
    let mut ctx = Ctx {
        file: file_name,
        source,
        escape: '\\',
    };
    let lines = split_lines(source);
    let mut dirs = DirectiveState {
        done: false,
        directives: Directives::default(),
    };
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while let Some(&line) = lines.get(i) {
        dirs.line(&mut ctx, line)?;
        i += 1;
        let trimmed = line.text.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let lead = line.text.len() - trimmed.len();
        let start_line = i; // 1-based number of this line
        let mut logical = Logical::default();
        let (first, mut cont) = trim_continuation(trimmed, ctx.escape);
        logical.push(line.start + lead, first);
        let mut empty_cont = false;
        let mut last_end = line.start + line.text.len();
        while cont {
            let Some(&next) = lines.get(i) else { break };
            dirs.line(&mut ctx, next)?;
            i += 1;
            last_end = next.start + next.text.len();
            if is_comment(next.text) {
                continue;
            }
            if next.text.trim_start().is_empty() {
                empty_cont = true;
                continue;
            }
            let (t, c) = trim_continuation(next.text, ctx.escape);
            logical.push(next.start, t);
            cont = c;
        }
        if logical.text.trim().is_empty() {
            continue;
        }
        let inst_start = line.start + lead;
        if empty_cont {
            warnings.push(Diagnostic::warning(
                file_name,
                source,
                Span::new(inst_start, last_end),
                "NoEmptyContinuation",
                "Empty continuation lines will become errors in a future release",
            ));
        }
        let mut reader = HeredocReader {
            lines: &lines,
            next: &mut i,
            last_end: &mut last_end,
            start_line,
            inst_start,
        };
        let kind = instructions::parse_logical(&ctx, &logical, &mut reader, false)?;
        instructions.push(Instruction {
            kind,
            span: Span::new(inst_start, last_end),
            line: start_line,
            original: logical.text.trim().to_string(),
        });
    }
    if instructions.is_empty() {
        // BuildKit reports this on the last line read.
        let last = lines.last().map_or(0, |l| l.start);
        return Err(ctx.err(Span::new(last, last), "file with no instructions"));
    }
    Ok(Dockerfile {
        file_name: file_name.to_string(),
        directives: dirs.directives,
        escape: ctx.escape,
        instructions,
        warnings,
        source: source.to_string(),
    })
}

/// Reads heredoc bodies following an instruction line.
pub(crate) struct HeredocReader<'a, 'b> {
    lines: &'a [PhysLine<'b>],
    next: &'a mut usize,
    last_end: &'a mut usize,
    start_line: usize,
    inst_start: usize,
}

/// A heredoc marker found on the instruction line, before its body is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeredocMarker {
    pub name: String,
    pub expand: bool,
    pub chomp: bool,
    pub fd: Option<u32>,
}

impl HeredocReader<'_, '_> {
    /// 1-based line of `offset`, which must lie inside the current instruction;
    /// counts only within the instruction so parsing stays linear.
    pub fn line_of(&self, source: &str, offset: usize) -> usize {
        let within = source.get(self.inst_start..offset).unwrap_or("");
        self.start_line + within.matches('\n').count()
    }

    pub fn read(&mut self, ctx: &Ctx<'_>, marker: HeredocMarker) -> Result<Heredoc, ParseError> {
        let mut content = String::new();
        loop {
            let Some(line) = self.lines.get(*self.next) else {
                let msg = format!(
                    "unterminated heredoc: no line '{}' closes the heredoc opened on line {}",
                    marker.name, self.start_line
                );
                return Err(ctx.err(Span::new(self.inst_start, self.inst_start + 1), msg));
            };
            *self.next += 1;
            *self.last_end = line.start + line.text.len();
            let candidate = if marker.chomp {
                line.text.trim_start_matches('\t')
            } else {
                line.text
            };
            if candidate == marker.name {
                break;
            }
            content.push_str(line.text);
            content.push('\n');
        }
        Ok(Heredoc {
            name: marker.name,
            content,
            expand: marker.expand,
            chomp_tabs: marker.chomp,
            file_descriptor: marker.fd,
        })
    }
}

/// Recognises one word as a heredoc marker: `^(\d*)<<(-?)([^<]+)$`.
pub(crate) fn heredoc_marker(word: &str) -> Option<HeredocMarker> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (fd, rest) = word.split_at_checked(digits)?;
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let fd = if fd.is_empty() {
        None
    } else {
        Some(fd.parse::<u32>().ok()?)
    };
    let (name, quoted) = unquote_simple(rest);
    if name.is_empty() || name.chars().any(char::is_whitespace) && !quoted {
        return None;
    }
    Some(HeredocMarker {
        name,
        expand: !quoted,
        chomp,
        fd,
    })
}

/// Removes shell quotes and backslash escapes; reports whether any quote was present.
fn unquote_simple(s: &str) -> (String, bool) {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some('"') if c == '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            Some(_) => out.push(c),
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    quoted = true;
                }
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                _ => out.push(c),
            },
        }
    }
    (out, quoted)
}

/// Splits a command line into shell-ish words, keeping quotes (used only to
/// find heredoc markers, as BuildKit does with raw quotes).
pub(crate) fn raw_shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
            }
            None => {
                if c.is_whitespace() {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                    continue;
                }
                in_word = true;
                cur.push(c);
                if c == '\'' || c == '"' {
                    quote = Some(c);
                } else if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}
