//! Docker's word expansion for Dockerfile instruction arguments.
//!
//! Dockerfile values (`ENV`, `ARG`, `COPY`, `WORKDIR`, `FROM`, ...) are not
//! run through a real shell: BuildKit expands them with its own small lexer
//! (`frontend/dockerfile/shell/lex.go`). Images built by rbuild must see the
//! very same strings Docker would produce, so this module reproduces that
//! lexer's behaviour, quirks included:
//!
//! * single quotes are literal; double quotes honour `$` expansion and let the
//!   escape character escape only `"`, `$` and itself;
//! * the escape character is configurable (`\` or the backtick, per the
//!   `# escape=` parser directive);
//! * `$v`, `${v}`, `${v:-w}`, `${v-w}`, `${v:+w}`, `${v+w}`, `${v:?msg}`,
//!   `${v?msg}`, `${v#p}`, `${v##p}`, `${v%p}`, `${v%%p}`, `${v/p/r}` and
//!   `${v//p/r}` with `*` / `?` wildcards in `p` (no bracket expressions, like
//!   BuildKit);
//! * `$1`-style positional names and the special parameters `$@ $* $# $? $- $$
//!   $! $0` are looked up like any other name (they are normally unset and so
//!   expand to nothing);
//! * a `$` not followed by a name is kept literally.
//!
//! Every lookup is recorded in [`Matches`] so the linter can report
//! `UndefinedVar`.
//!
//! ```
//! use std::collections::BTreeMap;
//! use rbuild_dockerfile::shell::Lexer;
//!
//! let mut env = BTreeMap::new();
//! env.insert("VERSION".to_string(), "1.2.3".to_string());
//! let lex = Lexer::new('\\');
//! let out = lex.process_word("app-${VERSION%.*}-${OS:-linux}", &env).unwrap();
//! assert_eq!(out, "app-1.2-linux");
//! let words = lex.process_words("80/tcp  $VERSION '443 x'", &env).unwrap();
//! assert_eq!(words, ["80/tcp", "1.2.3", "443 x"]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Why: Dockerfile values are expanded with Docker's rules, not a real
/// shell's, and the caller decides where variable values come from (build
/// args, `ENV` of the current stage, the global scope, ...).
pub trait Lookup {
    /// Returns the value of `name`, or `None` when it is not set (an empty
    /// value is still "set", which matters for `${v-w}` versus `${v:-w}`).
    fn lookup(&self, name: &str) -> Option<String>;
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Lookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup for F {
    fn lookup(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Why: the `UndefinedVar` lint and build-arg bookkeeping need to know which
/// variables a word actually consulted, and which of those were unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    /// Names that were looked up and found (set, possibly to the empty string).
    pub used: BTreeSet<String>,
    /// Names that were looked up but are not set.
    pub unmatched: BTreeSet<String>,
}

/// Why: a bad expansion must be reported to the user with Docker's wording
/// and with the place inside the word where it went wrong, so the parser can
/// turn it into a file/line/column diagnostic.
///
/// `message` is BuildKit's message, e.g.
/// `failed to process "${FOO": syntax error: missing '}'`. `offset` is the
/// byte offset inside the processed word of the construct that failed: the
/// opening quote of an unterminated string, the `$` of an expansion that is
/// unterminated, erroneous (`${v:?msg}`) or has an invalid pattern, or the
/// offending character of a bad substitution / unsupported modifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShellError {
    /// Human readable message, matching BuildKit's text.
    pub message: String,
    /// Byte offset inside the word where it went wrong.
    pub offset: usize,
}

/// Why: one value per Dockerfile (its `# escape=` directive) configures how
/// every word of that file is expanded; the lexer holds that configuration
/// and is cheap to share (`&self` methods, no interior state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// Creates a lexer using `escape` (normally `\`, or `` ` `` under
    /// `# escape=``) as the escape character.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Keeps quote characters in the output (BuildKit's `RawQuotes`), for
    /// callers that expand variables but leave quote removal to a later shell.
    pub fn with_raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keeps escape characters in the output (BuildKit's `RawEscapes`), for
    /// text that a real shell will interpret afterwards.
    pub fn with_raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treats quotes as ordinary characters (BuildKit's `SkipProcessQuotes`),
    /// as used for heredoc bodies where quotes carry no meaning.
    pub fn with_skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leaves references to unset variables untouched (BuildKit's
    /// `SkipUnsetEnv`), for partial expansion where a later pass supplies the
    /// remaining values.
    pub fn with_skip_unset_env(mut self, on: bool) -> Self {
        self.skip_unset_env = on;
        self
    }

    /// The escape character this lexer was configured with; exposed so
    /// callers that also split lines agree on the same character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` into a single string, removing quotes and escapes but
    /// keeping whitespace, as for `ENV`, `WORKDIR`, `COPY` arguments.
    pub fn process_word(&self, word: &str, env: &dyn Lookup) -> Result<String, ShellError> {
        self.process(word, env).map(|r| r.0)
    }

    /// Expands `word` and splits the result on unquoted whitespace (whitespace
    /// produced by a `$` expansion splits too), as Docker does for
    /// instructions whose arguments may expand to several values (BuildKit
    /// uses it for `EXPOSE`, so `EXPOSE $PORTS` can open several ports).
    /// Empty quotes (`""`) never produce an empty word.
    pub fn process_words(&self, word: &str, env: &dyn Lookup) -> Result<Vec<String>, ShellError> {
        self.process(word, env).map(|r| r.1)
    }

    /// Like [`Lexer::process_word`], also reporting which variables were used
    /// and which were referenced while unset.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn Lookup,
    ) -> Result<(String, Matches), ShellError> {
        self.process(word, env).map(|r| (r.0, r.2))
    }

    fn process(
        &self,
        word: &str,
        env: &dyn Lookup,
    ) -> Result<(String, Vec<String>, Matches), ShellError> {
        let mut sw = ShellWord {
            lex: self,
            src: word,
            pos: start_pos(word),
            env,
            matches: Matches::default(),
            depth: 0,
        };
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok((result, words, sw.matches)),
            Err(e) => Err(ShellError {
                message: format!("failed to process {}: {}", go_quote(word), e.message),
                offset: e.offset,
            }),
        }
    }
}

/// Go's `text/scanner` silently drops a byte order mark at the very start.
fn start_pos(s: &str) -> usize {
    if s.starts_with('\u{FEFF}') {
        '\u{FEFF}'.len_utf8()
    } else {
        0
    }
}

fn err<T>(message: impl Into<String>, offset: usize) -> Result<T, ShellError> {
    Err(ShellError {
        message: message.into(),
        offset,
    })
}

/// Go prints `string(scanner.EOF)` as the replacement character.
fn rune_str(ch: Option<char>) -> char {
    ch.unwrap_or('\u{FFFD}')
}

/// Accumulates the whitespace-split words alongside the flat result.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct ShellWord<'a> {
    lex: &'a Lexer,
    src: &'a str,
    pos: usize,
    env: &'a dyn Lookup,
    matches: Matches,
    /// Current `${...}` nesting, bounded so hostile input cannot exhaust
    /// the stack (Go's growable stacks make this a non-issue for BuildKit).
    depth: usize,
}

/// Deepest `${...}` nesting accepted; real Dockerfiles use a handful.
const MAX_NESTING: usize = 64;

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.matches.used.insert(name.to_string());
                Some(v)
            }
            None => {
                self.matches.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Processes until `stop` (consumed) or the end of the word.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ShellError> {
        let mut result = String::new();
        let mut words = Words::default();
        let quotes = !self.lex.skip_process_quotes;

        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if quotes && ch == '\'' {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if quotes && ch == '"' {
                let tmp = self.process_double_quote(raw_escapes)?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                self.next();
                let mut ch = ch;
                if ch == self.lex.escape {
                    if raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    match self.next() {
                        None => break,
                        Some(c) => ch = c,
                    }
                    words.add_raw_char(ch);
                } else {
                    words.add_char(ch);
                }
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return err(
                format!("unexpected end of statement while looking for matching {stop}"),
                self.pos,
            );
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        let start = self.pos;
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.push(rune_str(open));
        }
        loop {
            match self.next() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching single-quote",
                        start,
                    )
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self, raw_escapes: bool) -> Result<String, ShellError> {
        let start = self.pos;
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.push(rune_str(open));
        }
        loop {
            match self.peek() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching double-quote",
                        start,
                    )
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.next();
                    if ch == self.lex.escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is dropped; the loop then
                            // reports the missing closing quote.
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, ShellError> {
        let dollar = self.pos;
        self.next();

        // $xxx case
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }

        self.next();
        if self.depth >= MAX_NESTING {
            return err(
                format!("syntax error: substitutions nested deeper than {MAX_NESTING} levels"),
                dollar,
            );
        }
        self.depth += 1;
        let result = self.process_braced(dollar);
        self.depth -= 1;
        result
    }

    /// The `${...}` forms; the `${` has been consumed.
    fn process_braced(&mut self, dollar: usize) -> Result<String, ShellError> {
        match self.peek() {
            None => return err("syntax error: missing '}'", dollar),
            Some('{' | '}' | ':') => return err("syntax error: bad substitution", self.pos),
            Some(_) => {}
        }
        let name = self.process_name();
        let modifier_at = self.pos;
        let ch = self.next();
        let mut chs = String::from(rune_str(ch));

        match ch {
            // BuildKit reports `unsupported modifier (\u{FFFD})` here; the
            // real problem is the missing brace, so say that instead.
            None => err("syntax error: missing '}'", dollar),
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut null_is_unset = false;
                let mut op = ch;
                if ch == Some(':') {
                    null_is_unset = true;
                    op = self.next();
                    chs.push(rune_str(op));
                }
                let raw_escapes = matches!(op, Some('#' | '%'));
                if null_is_unset && raw_escapes {
                    // `${v:#p}` / `${v:%p}` are not shell syntax.
                    return err(
                        format!("unsupported modifier ({chs}) in substitution"),
                        modifier_at,
                    );
                }
                let word = match self.process_stop_on(Some('}'), raw_escapes) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return err("syntax error: missing '}'", dollar)
                    }
                    Err(e) => return Err(e),
                };

                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let is_null = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());

                match op {
                    Some('-') => Ok(if is_null {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if is_null { String::new() } else { word }),
                    Some('?') => match value {
                        None => {
                            let msg = if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                &word
                            };
                            err(format!("{name}: {msg}"), dollar)
                        }
                        Some(v) if null_is_unset && v.is_empty() => {
                            let msg = if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                &word
                            };
                            err(format!("{name}: {msg}"), dollar)
                        }
                        Some(v) => Ok(v),
                    },
                    Some(op @ ('%' | '#')) => {
                        // %/# remove the shortest match, %%/## the longest.
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let value = value.unwrap_or_default();
                        let trimmed = if op == '%' {
                            trim_suffix(pattern, &value, greedy)
                        } else {
                            trim_prefix(pattern, &value, greedy)
                        };
                        trimmed.or_else(|m| err(m, dollar))
                    }
                    _ => err(
                        format!("unsupported modifier ({chs}) in substitution"),
                        modifier_at,
                    ),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return err("syntax error: missing '/' in ${}", dollar)
                    }
                    Err(e) => return Err(e),
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return err("syntax error: missing '}'", dollar)
                    }
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let re = Pattern::compile(&pattern, true).or_else(|e| {
                    err(
                        format!("invalid pattern ({pattern}) in substitution: {e}"),
                        dollar,
                    )
                })?;
                if replace_all {
                    Ok(re.replace_all(&value, &replacement))
                } else {
                    Ok(match re.find(&value, 0, false) {
                        Some((a, b)) => {
                            let mut out = String::with_capacity(value.len() + replacement.len());
                            out.push_str(value.get(..a).unwrap_or_default());
                            out.push_str(&replacement);
                            out.push_str(value.get(b..).unwrap_or_default());
                            out
                        }
                        None => value,
                    })
                }
            }
            _ => err(
                format!("unsupported modifier ({chs}) in substitution"),
                modifier_at,
            ),
        }
    }

    /// Reads a variable name: a run of digits, one special parameter, or a
    /// run of letters, digits and underscores.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(c) = self.peek().filter(|c| is_digit(*c)) {
                    self.next();
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

/// POSIX special parameters, which BuildKit accepts as one-character names.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Approximates Go's `unicode.IsDigit` (exact for ASCII).
fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (!ch.is_ascii() && ch.is_numeric() && !ch.is_alphabetic())
}

/// Approximates Go's `unicode.IsLetter` (exact for ASCII).
fn is_letter(ch: char) -> bool {
    ch.is_alphabetic()
}

/// Quotes like Go's `%q` verb, for error messages identical to Docker's.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c != ' '
                && (c.is_control()
                    || c.is_whitespace()
                    || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{feff}')) =>
            {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// Shell patterns. BuildKit converts them to a Go regular expression made only
// of literals, `.` and `.*` / `.*?`, then relies on leftmost-first matching.
// We compile to the same three token kinds and run a small Pike VM with the
// same priorities: linear time, no recursion, no panics.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// Go's `.`: any character except a newline.
    Any,
    /// Go's `.*` (greedy) or `.*?` (lazy); never crosses a newline.
    Star,
}

#[derive(Debug)]
struct Pattern {
    toks: Vec<Tok>,
    greedy: bool,
}

#[derive(Clone, Copy)]
struct Thread {
    pc: usize,
    start: usize,
}

enum Step {
    Enter(usize),
    Emit(usize),
}

impl Pattern {
    /// Mirrors BuildKit's `convertShellPatternToRegex`.
    fn compile(pattern: &str, greedy: bool) -> Result<Pattern, String> {
        let mut toks = Vec::new();
        let mut chars = pattern[start_pos(pattern)..].chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => {
                    // `}` and `/` are escaped only to get them past the
                    // `${...}` parser; the escape is not part of the pattern.
                    if matches!(chars.peek(), Some('}' | '/')) {
                        continue;
                    }
                    match chars.next() {
                        Some(e @ ('*' | '?' | '\\')) => toks.push(Tok::Lit(e)),
                        other => return Err(format!("invalid escape '\\{}'", rune_str(other))),
                    }
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Pattern { toks, greedy })
    }

    /// Adds the thread entering `pc` and everything reachable from it without
    /// consuming input, in priority order.
    fn add(
        &self,
        list: &mut Vec<Thread>,
        marks: &mut [usize],
        gen: usize,
        pc: usize,
        start: usize,
    ) {
        let mut stack = vec![Step::Enter(pc)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Emit(pc) => list.push(Thread { pc, start }),
                Step::Enter(pc) => {
                    match marks.get_mut(pc) {
                        Some(m) if *m != gen => *m = gen,
                        _ => continue,
                    }
                    match self.toks.get(pc) {
                        Some(Tok::Star) if self.greedy => {
                            list.push(Thread { pc, start });
                            stack.push(Step::Enter(pc + 1));
                        }
                        Some(Tok::Star) => {
                            stack.push(Step::Emit(pc));
                            stack.push(Step::Enter(pc + 1));
                        }
                        _ => list.push(Thread { pc, start }),
                    }
                }
            }
        }
    }

    /// Leftmost-first match (Go `regexp` semantics) starting at byte `from`;
    /// if `anchored`, only a match starting exactly at `from` counts.
    fn find(&self, hay: &str, from: usize, anchored: bool) -> Option<(usize, usize)> {
        let n = self.toks.len();
        let mut marks = vec![usize::MAX; n + 1];
        let mut gen = 0usize;
        let mut clist: Vec<Thread> = Vec::new();
        let mut nlist: Vec<Thread> = Vec::new();
        let mut matched = None;
        let mut pos = from;
        loop {
            if matched.is_none() && (!anchored || pos == from) {
                self.add(&mut clist, &mut marks, gen, 0, pos);
            }
            if clist.is_empty() && (matched.is_some() || anchored) {
                break;
            }
            let ch = hay.get(pos..).and_then(|s| s.chars().next());
            let ngen = gen.wrapping_add(1);
            for t in clist.iter() {
                let next_pc = match self.toks.get(t.pc) {
                    None => {
                        matched = Some((t.start, pos));
                        break;
                    }
                    Some(Tok::Lit(c)) if ch == Some(*c) => t.pc + 1,
                    Some(Tok::Any) if ch.is_some_and(|c| c != '\n') => t.pc + 1,
                    Some(Tok::Star) if ch.is_some_and(|c| c != '\n') => t.pc,
                    Some(_) => continue,
                };
                self.add(&mut nlist, &mut marks, ngen, next_pc, t.start);
            }
            clist.clear();
            std::mem::swap(&mut clist, &mut nlist);
            gen = ngen;
            match ch {
                None => break,
                Some(c) => pos += c.len_utf8(),
            }
        }
        matched
    }

    /// Go's `Regexp.ReplaceAllString`, including its `$` expansion of the
    /// replacement and its rules for empty matches.
    fn replace_all(&self, src: &str, repl: &str) -> String {
        let mut out = String::with_capacity(src.len());
        let mut last = 0;
        let mut search = 0;
        while search <= src.len() {
            let Some((a, b)) = self.find(src, search, false) else {
                break;
            };
            out.push_str(src.get(last..a).unwrap_or_default());
            if b > last || a == 0 {
                go_expand(&mut out, repl, src.get(a..b).unwrap_or_default());
            }
            last = b;
            let width = src
                .get(search..)
                .and_then(|s| s.chars().next())
                .map_or(0, char::len_utf8);
            if search + width > b {
                search += width;
            } else if search + 1 > b {
                search += 1;
            } else {
                search = b;
            }
        }
        out.push_str(src.get(last..).unwrap_or_default());
        out
    }
}

/// Go's `Regexp.Expand` for a regexp without capture groups: `$$` is `$`,
/// `$0`/`${0}` is the whole match, other names expand to nothing and a
/// malformed `$` is literal.
fn go_expand(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let (body, brace) = match rest.strip_prefix('{') {
            Some(b) => (b, true),
            None => (rest, false),
        };
        let name_len: usize = body
            .chars()
            .take_while(|c| is_letter(*c) || is_digit(*c) || *c == '_')
            .map(char::len_utf8)
            .sum();
        if name_len == 0 || (brace && !body[name_len..].starts_with('}')) {
            out.push('$');
            continue;
        }
        let name = &body[..name_len];
        rest = &body[name_len + usize::from(brace)..];
        if name == "0" {
            out.push_str(whole);
        }
    }
    out.push_str(rest);
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let re = Pattern::compile(pattern, greedy)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value, 0, true) {
        Some((_, end)) => value.get(end..).unwrap_or_default().to_string(),
        None => value.to_string(),
    })
}

/// Reverses a pattern while keeping `\x` escape pairs in order.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match chars.get(i + 1) {
            Some(&next) if c == '\\' => {
                out.push(next);
                out.push(c);
                i += 2;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out.iter().rev().collect()
}

/// Shortest/longest suffix removal, done as BuildKit does: by reversing both
/// the pattern and the value and removing a prefix.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let pattern = reverse_pattern(pattern);
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&pattern, &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// BuildKit's envVarTest fixture environment.
    fn fixture_env() -> BTreeMap<String, String> {
        env(&[
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("KOREAN", "한국어"),
            ("NULL", ""),
        ])
    }

    #[test]
    fn env_var_table() {
        // (input, expected or None for an error)
        let cases: &[(&str, Option<&str>)] = &[
            ("hello", Some("hello")),
            ("he'll'o", Some("hello")),
            ("he'llo", None),
            ("he\\'llo", Some("he'llo")),
            ("he\\\\'llo", None),
            ("abc\\tdef", Some("abctdef")),
            ("\"abc\\tdef\"", Some("abc\\tdef")),
            ("\"abc\\\\tdef\"", Some("abc\\tdef")),
            ("'abc\\tdef'", Some("abc\\tdef")),
            ("hello\\", Some("hello")),
            ("hello\\\\", Some("hello\\")),
            ("\"hello", None),
            ("\"hello\\\"", None),
            ("\"hel'lo\"", Some("hel'lo")),
            ("'hello", None),
            ("'hello\\'", Some("hello\\")),
            ("'hello\\there'", Some("hello\\there")),
            ("'hello\\\\there'", Some("hello\\\\there")),
            ("\"''\"", Some("''")),
            ("$.", Some("$.")),
            ("he$1x", Some("hex")),
            ("he$.x", Some("he$.x")),
            ("he$pwd.", Some("he.")),
            ("he$PWD", Some("he/home")),
            ("he\\$PWD", Some("he$PWD")),
            ("he\\\\$PWD", Some("he\\/home")),
            ("\"he\\$PWD\"", Some("he$PWD")),
            ("\"he\\\\$PWD\"", Some("he\\/home")),
            ("\\${}", Some("${}")),
            ("\\${}aaa", Some("${}aaa")),
            ("he\\${}", Some("he${}")),
            ("he\\${}xx", Some("he${}xx")),
            ("${}", None),
            ("${}aaa", None),
            ("he${}", None),
            ("he${}xx", None),
            ("he${hi}", Some("he")),
            ("he${hi}xx", Some("hexx")),
            ("he${PWD}", Some("he/home")),
            ("he${.}", None),
            ("he${XXX:-000}xx", Some("he000xx")),
            ("he${PWD:-000}xx", Some("he/homexx")),
            ("he${XXX:-$PWD}xx", Some("he/homexx")),
            ("he${XXX:-${PWD:-yyy}}xx", Some("he/homexx")),
            ("he${XXX:-${YYY:-yyy}}xx", Some("heyyyxx")),
            ("he${XXX:YYY}", None),
            ("he${XXX?}", None),
            ("he${XXX:?}", None),
            ("he${PWD?}", Some("he/home")),
            ("he${PWD:?}", Some("he/home")),
            ("he${NULL?}", Some("he")),
            ("he${NULL:?}", None),
            ("he${XXX:+${PWD}}xx", Some("hexx")),
            ("he${PWD:+${XXX}}xx", Some("hexx")),
            ("he${PWD:+${SHELL}}xx", Some("hebashxx")),
            ("he${XXX:+000}xx", Some("hexx")),
            ("he${PWD:+000}xx", Some("he000xx")),
            ("'he${XX}'", Some("he${XX}")),
            ("\"he${PWD}\"", Some("he/home")),
            ("\"he'$PWD'\"", Some("he'/home'")),
            ("\"$PWD\"", Some("/home")),
            ("'$PWD'", Some("$PWD")),
            ("'\\$PWD'", Some("\\$PWD")),
            ("'\"hello\"'", Some("\"hello\"")),
            ("he\\$PWD", Some("he$PWD")),
            ("'he\\$PWD'", Some("he\\$PWD")),
            ("he${PWD", None),
            ("he${PWD:=000}xx", None),
            ("he${PWD:+${PWD}:}xx", Some("he/home:xx")),
            ("he${XXX:-\\$PWD:}xx", Some("he$PWD:xx")),
            ("he${XXX:-\\${PWD}z}xx", Some("he${PWDz}xx")),
            ("안녕하세요", Some("안녕하세요")),
            ("안'녕'하세요", Some("안녕하세요")),
            ("안'녕하세요", None),
            ("안녕\\'하세요", Some("안녕'하세요")),
            ("안\\\\'녕하세요", None),
            ("안녕\\t하세요", Some("안녕t하세요")),
            ("\"안녕\\t하세요\"", Some("안녕\\t하세요")),
            ("'안녕\\t하세요", None),
            ("안녕하세요\\", Some("안녕하세요")),
            ("안녕하세요\\\\", Some("안녕하세요\\")),
            ("\"안녕하세요", None),
            ("\"안녕하세요\\\"", None),
            ("\"안녕'하세요\"", Some("안녕'하세요")),
            ("'안녕하세요'", Some("안녕하세요")),
            ("'안녕하세요\\'", Some("안녕하세요\\")),
            ("$KOREAN", Some("한국어")),
            ("안녕$KOREAN", Some("안녕한국어")),
            // special parameters and positional names are ordinary lookups
            ("a$$b", Some("ab")),
            ("a$@b", Some("ab")),
            ("a${#}b", Some("ab")),
            ("a${12}b", Some("ab")),
            ("a$0b", Some("ab")),
            ("$", Some("$")),
            ("a$", Some("a$")),
            ("${", None),
            ("${:}", None),
            ("${{x}}", None),
            ("${PWD", None),
            ("${PWD:", None),
            ("${PWD:-", None),
            ("${PWD:-x", None),
            ("${PWD/a", None),
            ("${PWD/a/b", None),
            ("${PWD=x}", None),
            ("${PWD:=x}", None),
            ("${PWD^^}", None),
            ("\u{feff}$PWD", Some("/home")),
        ];
        let lex = Lexer::new('\\');
        let e = fixture_env();
        for (input, expected) in cases {
            let got = lex.process_word(input, &e);
            match expected {
                Some(want) => assert_eq!(got.as_deref(), Ok(*want), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn pattern_operators_table() {
        // (input, env, expected or None for an error)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")],
                Some("x"),
            ),
            ("${FOO%%\\**}", &[("FOO", "xx**")], Some("xx")),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], Some("y")),
            ("${FOO#*}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], Some("xyy")),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], Some("xxyy")),
            ("${FOO#}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO##*x}", &[("FOO", "xxyy")], Some("yy")),
            ("${FOO##}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO#?\\?}", &[("FOO", "???y")], Some("?y")),
            (
                "${ABC:-.}${FOO%x}${ABC:-.}",
                &[("FOO", "xxyy")],
                Some(".xxyy."),
            ),
            ("${FOO%%\\**\\*}", &[("FOO", "a***yy*")], Some("a")),
            ("${FOO%}", &[("FOO", "xxyy")], Some("xxyy")),
            (
                "${FOO%%$BAR}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("xxyy"),
            ),
            ("${FOO%.*}", &[("FOO", "a.b.c")], Some("a.b")),
            ("${FOO%%.*}", &[("FOO", "a.b.c")], Some("a")),
            ("${FOO#*/}", &[("FOO", "a/b/c")], Some("b/c")),
            ("${FOO##*/}", &[("FOO", "a/b/c")], Some("c")),
            ("${FOO%/*}", &[("FOO", "a/b/c")], Some("a/b")),
            ("${FOO%%/*}", &[("FOO", "a/b/c")], Some("a")),
            ("${FOO#[ab]}", &[("FOO", "[ab]c")], Some("c")),
            ("${FOO##*}", &[("FOO", "ab\ncd")], Some("\ncd")),
            ("${FOO#\\x}", &[("FOO", "xx")], None),
            ("${FOO%\\}", &[("FOO", "xx")], None),
            ("${FOO%é*}", &[("FOO", "aébéc")], Some("aéb")),
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")],
                Some("/foo.*/*.txt - /foo..*.txt"),
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                Some("/tmp/bar.txt - /bar.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                Some("/foo/b/c.txt - /foo/c.txt"),
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                Some("https://google.de"),
            ),
            (
                "${FOO//\\//\\/}",
                &[("FOO", "/tmp/foo.txt")],
                Some("\\/tmp\\/foo.txt"),
            ),
            (
                "${FOO/$BAR/ww}",
                &[("FOO", "xxyy"), ("BAR", "")],
                Some("wwxxyy"),
            ),
            (
                "${FOO//$BAR/-}",
                &[("FOO", "ab"), ("BAR", "")],
                Some("-a-b-"),
            ),
            ("${FOO//x*/-}", &[("FOO", "axbxc")], Some("a-")),
            ("${FOO//ww}", &[("FOO", "xxyy")], None),
            ("${FOO//}", &[("FOO", "xxyy")], None),
            ("${FOO///}", &[("FOO", "xxyy")], Some("xxyy")),
            ("${FOO///}", &[], Some("")),
            ("${FOO/b*/X}", &[("FOO", "abcabc")], Some("aX")),
            ("${FOO//b?/X}", &[("FOO", "abcabc")], Some("aXaX")),
            ("${FOO/x/y}", &[("FOO", "abc")], Some("abc")),
            // Go's ReplaceAllString expands `$` in the replacement.
            (
                "${FOO//b/$R}",
                &[("FOO", "abc"), ("R", "<$0>")],
                Some("a<b>c"),
            ),
            (
                "${FOO//b/$R}",
                &[("FOO", "abc"), ("R", "<$$>")],
                Some("a<$>c"),
            ),
            (
                "${FOO//b/$R}",
                &[("FOO", "abc"), ("R", "<$x>")],
                Some("a<>c"),
            ),
            (
                "${FOO//b/$R}",
                &[("FOO", "abc"), ("R", "<$.>")],
                Some("a<$.>c"),
            ),
            (
                "${FOO/b/$R}",
                &[("FOO", "abc"), ("R", "<$0>")],
                Some("a<$0>c"),
            ),
            ("${FOO-a}${FOO:-b}", &[("FOO", "")], Some("b")),
            ("${FOO+a}${FOO:+b}", &[("FOO", "")], Some("a")),
            ("${FOO?a}", &[("FOO", "")], Some("")),
            ("${FOO:?a}", &[("FOO", "")], None),
            ("${FOO:#x}", &[("FOO", "xy")], None),
            ("${FOO:%x}", &[("FOO", "xy")], None),
        ];
        let lex = Lexer::new('\\');
        for (input, pairs, expected) in cases {
            let got = lex.process_word(input, &env(pairs));
            match expected {
                Some(want) => assert_eq!(got.as_deref(), Ok(*want), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn matches_table() {
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            ("x", &[("DUMMY", "d")], &[], &[]),
            ("x ${UNUSED}", &[("DUMMY", "d")], &[], &["UNUSED"]),
            ("x ${FOO}", &[("FOO", "y")], &["FOO"], &[]),
            (
                "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}",
                &[("FOO", "x"), ("BAR", "")],
                &["BAR", "FOO"],
                &["BAZ"],
            ),
            (
                "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}",
                &[("FOO", "x"), ("BAR", "")],
                &["BAR", "FOO"],
                &["BAZ"],
            ),
            ("${FOO///}", &[], &[], &["FOO"]),
            ("'$A' \"$B\" \\$C $D", &[("B", "b")], &["B"], &["D"]),
            ("$1 $$", &[], &[], &["$", "1"]),
        ];
        let lex = Lexer::new('\\');
        for (input, pairs, used, unmatched) in cases {
            let (_, m) = lex.process_word_with_matches(input, &env(pairs)).unwrap();
            let want = Matches {
                used: used.iter().map(|s| s.to_string()).collect(),
                unmatched: unmatched.iter().map(|s| s.to_string()).collect(),
            };
            assert_eq!(m, want, "input {input:?}");
        }
    }

    #[test]
    fn words_table() {
        let e = env(&[
            ("hi", "hi"),
            ("space", "abc  def"),
            ("leading", "  ab c"),
            ("trailing", "ab c   "),
            ("words", "abc def"),
        ]);
        let cases: &[(&str, &[&str])] = &[
            ("hello", &["hello"]),
            ("hello${hi}bye", &["hellohibye"]),
            ("hello${space}bye", &["helloabc", "defbye"]),
            ("hello\"${space}\"bye", &["helloabc  defbye"]),
            ("hello \"${space}\"bye", &["hello", "abc  defbye"]),
            ("hello${leading}def", &["hello", "ab", "cdef"]),
            ("hello\"${leading}\" def", &["hello  ab c", "def"]),
            ("hello\"${leading}\"", &["hello  ab c"]),
            ("hello${leading}", &["hello", "ab", "c"]),
            ("hello${trailing}", &["helloab", "c"]),
            ("hello${trailing}d", &["helloab", "c", "d"]),
            ("hello\"${trailing}\"d", &["helloab c   d"]),
            ("hello${words}", &["helloabc", "def"]),
            ("hello \\\"${words}\\\"", &["hello", "\"abc", "def\""]),
            ("a\\ b  c", &["a b", "c"]),
            ("'' a \"\"", &["a"]),
            ("\"\"", &[]),
            ("  ", &[]),
            ("${nope}", &[]),
            ("x\ty\nz", &["x", "y", "z"]),
        ];
        let lex = Lexer::new('\\');
        for (input, want) in cases {
            let got = lex.process_words(input, &e).unwrap();
            assert_eq!(got, *want, "input {input:?}");
        }
    }

    #[test]
    fn backtick_escape_table() {
        let e = fixture_env();
        let cases: &[(&str, Option<&str>)] = &[
            ("c:\\windows", Some("c:\\windows")),
            ("a`$PWD", Some("a$PWD")),
            ("a``b", Some("a`b")),
            ("\"a`\"b\"", Some("a\"b")),
            ("\"a\\b`$\"", Some("a\\b$")),
            ("a`", Some("a")),
            ("${XXX:-`}}", Some("}")),
            ("\"a`\"", None),
        ];
        let lex = Lexer::new('`');
        for (input, expected) in cases {
            let got = lex.process_word(input, &e);
            match expected {
                Some(want) => assert_eq!(got.as_deref(), Ok(*want), "input {input:?}"),
                None => assert!(got.is_err(), "input {input:?} gave {got:?}"),
            }
        }
    }

    #[test]
    fn error_messages_and_offsets() {
        let cases: &[(&str, &str, usize)] = &[
            ("ab${CD", "failed to process \"ab${CD\": syntax error: missing '}'", 2),
            ("${", "failed to process \"${\": syntax error: missing '}'", 0),
            ("x${}", "failed to process \"x${}\": syntax error: bad substitution", 3),
            ("x${A.}", "failed to process \"x${A.}\": unsupported modifier (.) in substitution", 4),
            ("${A:=b}", "failed to process \"${A:=b}\": unsupported modifier (:=) in substitution", 3),
            ("${A:#b}", "failed to process \"${A:#b}\": unsupported modifier (:#) in substitution", 3),
            ("${A//b", "failed to process \"${A//b\": syntax error: missing '/' in ${}", 0),
            ("a ${A?}", "failed to process \"a ${A?}\": A: is not allowed to be unset", 2),
            ("${E:?}", "failed to process \"${E:?}\": E: is not allowed to be empty", 0),
            ("${A:?set it\"!\"}", "failed to process \"${A:?set it\\\"!\\\"}\": A: set it!", 0),
            ("ab 'cd", "failed to process \"ab 'cd\": unexpected end of statement while looking for matching single-quote", 3),
            ("a\"b\t", "failed to process \"a\\\"b\\t\": unexpected end of statement while looking for matching double-quote", 1),
            ("${E#\\a}", "failed to process \"${E#\\\\a}\": invalid pattern (\\a) in substitution: invalid escape '\\a'", 0),
        ];
        let lex = Lexer::new('\\');
        let e = env(&[("E", "")]);
        for (input, message, offset) in cases {
            let got = lex.process_word(input, &e).unwrap_err();
            assert_eq!(got.message, *message, "input {input:?}");
            assert_eq!(got.offset, *offset, "input {input:?}");
            assert_eq!(got.to_string(), *message);
        }
    }

    #[test]
    fn option_flags() {
        let e = env(&[("A", "a")]);
        let raw = Lexer::new('\\')
            .with_raw_quotes(true)
            .with_skip_unset_env(true);
        assert_eq!(
            raw.process_word("'x' \"$A\" $B ${B} ${B:-d} ${B/p/r}", &e)
                .unwrap(),
            "'x' \"a\" $B ${B} ${B:-d} ${B/p/r}"
        );
        let heredoc = Lexer::new('\\')
            .with_skip_process_quotes(true)
            .with_raw_escapes(true);
        assert_eq!(
            heredoc.process_word("echo '$A' \"\\$A\"", &e).unwrap(),
            "echo 'a' \"\\$A\""
        );
        assert_eq!(Lexer::default().escape(), '\\');
    }

    #[test]
    fn closure_and_hashmap_lookups() {
        let lex = Lexer::new('\\');
        let f = |n: &str| (n == "X").then(|| "1".to_string());
        assert_eq!(lex.process_word("$X$Y", &f).unwrap(), "1");
        let mut h = HashMap::new();
        h.insert("Y".to_string(), "2".to_string());
        assert_eq!(lex.process_word("$X$Y", &h).unwrap(), "2");
    }

    #[test]
    fn reverse_pattern_table() {
        let cases: &[(&str, &str)] = &[
            ("a\\*c", "c\\*a"),
            ("\\\\\\ab", "b\\a\\\\"),
            ("ab\\", "\\ba"),
            ("👽\\🚀🖖", "🖖\\🚀👽"),
            ("\\\\b", "b\\\\"),
        ];
        for (input, want) in cases {
            assert_eq!(reverse_pattern(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn lazy_and_greedy_priorities() {
        // (pattern, greedy, anchored, haystack, expected span)
        type Case<'a> = (&'a str, bool, bool, &'a str, Option<(usize, usize)>);
        let cases: &[Case] = &[
            ("a*", true, true, "abab", Some((0, 4))),
            ("a*", false, true, "abab", Some((0, 1))),
            ("*b", false, true, "abab", Some((0, 2))),
            ("*b", true, true, "abab", Some((0, 4))),
            ("b", true, false, "abab", Some((1, 2))),
            ("b", true, true, "abab", None),
            ("*", true, true, "ab\ncd", Some((0, 2))),
            ("?", true, false, "\nx", Some((1, 2))),
            ("", true, false, "x", Some((0, 0))),
            ("*a*a*a*a*a*b", true, true, &"a".repeat(200), None),
        ];
        for (pattern, greedy, anchored, hay, want) in cases {
            let re = Pattern::compile(pattern, *greedy).unwrap();
            assert_eq!(
                re.find(hay, 0, *anchored),
                *want,
                "pattern {pattern:?} on {hay:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        // 512 KiB is a quarter of a default thread stack (debug build).
        let handle = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(|| {
                let lex = Lexer::new('\\');
                let e = env(&[]);
                let ok = format!("{}x{}", "${A:-\"".repeat(60), "\"}".repeat(60));
                let ok = lex.process_word(&ok, &e);
                let deep = format!("{}x{}", "${A:-\"".repeat(100_000), "\"}".repeat(100_000));
                let deep = lex.process_word(&deep, &e);
                (ok, deep)
            })
            .unwrap();
        let (ok, deep) = handle.join().unwrap();
        assert_eq!(ok.as_deref(), Ok("x"));
        let deep = deep.unwrap_err();
        assert!(deep.message.contains("nested deeper than 64"), "{deep}");
        assert_eq!(deep.offset, 64 * "${A:-\"".len());
    }

    /// Small deterministic generator so the fuzz test needs no extra crate.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_input_never_panics() {
        const ALPHABET: &[char] = &[
            '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '`', '\'', '"', '*', 'A', 'B',
            'a', '0', '1', ' ', '\n', '\t', '.', '[', ']', 'é', '한', '👽', '\u{feff}', '@', '!',
            '=', '^', '_',
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let e = env(&[("A", "a*b/c d"), ("B", ""), ("AB", "${A}\\"), ("1", "x$0y")]);
        let lexers = [
            Lexer::new('\\'),
            Lexer::new('`'),
            Lexer::new('\\')
                .with_raw_quotes(true)
                .with_raw_escapes(true)
                .with_skip_unset_env(true),
            Lexer::new('`').with_skip_process_quotes(true),
        ];
        let mut ok = 0usize;
        for _ in 0..20_000 {
            let len = (rng.next() % 24) as usize;
            let word: String = (0..len)
                .map(|_| {
                    let i = (rng.next() % ALPHABET.len() as u64) as usize;
                    ALPHABET.get(i).copied().unwrap_or('x')
                })
                .collect();
            for lex in &lexers {
                match lex.process_word_with_matches(&word, &e) {
                    Ok(_) => ok += 1,
                    Err(err) => assert!(err.offset <= word.len(), "{word:?}: {err:?}"),
                }
                let _ = lex.process_words(&word, &e);
            }
        }
        assert!(ok > 0);
    }
}
