//! Located errors and diagnostics.

use std::fmt;

/// A byte range into the Dockerfile source, so tools can underline exactly
/// what an error or warning is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte (inclusive).
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// Builds a span; exists so call sites read `Span::new(a, b)` rather than a struct literal.
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start,
            end: end.max(start),
        }
    }
}

/// A fatal problem with a Dockerfile, located so the user can jump to it.
///
/// `Display` prints `Dockerfile:3:1: unknown instruction: FOOO`; [`ParseError::render`]
/// additionally shows the offending line with a caret under the column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file_name}:{line}:{column}: {message}")]
pub struct ParseError {
    /// Name of the Dockerfile as given to [`crate::parse`].
    pub file_name: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Byte range of the offending text in the source.
    pub span: Span,
    /// What went wrong, worded like Docker/BuildKit.
    pub message: String,
    /// The full text of the line the error points into (without newline).
    pub source_line: String,
}

impl ParseError {
    /// Builds an error located at byte `span.start` of `source`; exists so every
    /// error site computes line/column the same way.
    pub fn at(file_name: &str, source: &str, span: Span, message: impl Into<String>) -> ParseError {
        let loc = Location::of(source, span.start);
        ParseError {
            file_name: file_name.to_string(),
            line: loc.line,
            column: loc.column,
            span,
            message: message.into(),
            source_line: loc.line_text.to_string(),
        }
    }

    /// Human-oriented multi-line rendering: the message, then the source line
    /// with a caret under the error column, as compilers do.
    pub fn render(&self) -> String {
        let gutter = self.line.to_string();
        let pad = " ".repeat(gutter.len());
        let caret_pad: String = self
            .source_line
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        format!(
            "error: {}\n{pad}--> {}:{}:{}\n{pad} |\n{gutter} | {}\n{pad} | {caret_pad}^\n",
            self.message, self.file_name, self.line, self.column, self.source_line
        )
    }
}

/// How serious a [`Diagnostic`] is; `check=error=true` turns warnings into errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Reported but the build goes on.
    Warning,
    /// The build should fail (only when the `check` directive asks for it).
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A non-fatal finding (BuildKit "build check"), named by its BuildKit rule so
/// users can look it up or skip it with `# check=skip=RULE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Warning or error.
    pub severity: Severity,
    /// BuildKit rule name, e.g. `UndefinedVar`.
    pub rule: String,
    /// Human message, worded like BuildKit.
    pub message: String,
    /// Name of the Dockerfile.
    pub file_name: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Byte range in the source.
    pub span: Span,
}

impl Diagnostic {
    /// Builds a warning located at `span`; exists so all rules locate the same way.
    pub fn warning(
        file_name: &str,
        source: &str,
        span: Span,
        rule: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let loc = Location::of(source, span.start);
        Diagnostic {
            severity: Severity::Warning,
            rule: rule.to_string(),
            message: message.into(),
            file_name: file_name.to_string(),
            line: loc.line,
            column: loc.column,
            span,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}: {}",
            self.file_name, self.line, self.column, self.severity, self.rule, self.message
        )
    }
}

/// Line/column of a byte offset.
pub(crate) struct Location<'a> {
    pub line: usize,
    pub column: usize,
    pub line_text: &'a str,
}

impl<'a> Location<'a> {
    pub(crate) fn of(source: &'a str, offset: usize) -> Location<'a> {
        let mut offset = offset.min(source.len());
        while offset > 0 && !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = source.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = source
            .get(offset..)
            .and_then(|rest| rest.find('\n'))
            .map(|i| offset + i)
            .unwrap_or(source.len());
        let column = source
            .get(line_start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        let mut line_text = source.get(line_start..line_end).unwrap_or("");
        if let Some(stripped) = line_text.strip_suffix('\r') {
            line_text = stripped;
        }
        if line == 1 {
            line_text = line_text.trim_start_matches('\u{feff}');
        }
        Location {
            line,
            column,
            line_text,
        }
    }
}
