//! The subset of Go's `text/template` that `docker images --format` / `docker inspect --format`
//! users write: `{{.Field.Sub}}`, `{{json .}}`, `{{index .RepoTags 0}}`, `{{join .X ","}}`,
//! `{{range .RepoTags}}{{.}} {{end}}`, `{{if .X}}…{{else}}…{{end}}`, pipes (`{{.Tag | upper}}`),
//! `{{-`/`-}}` trimming, and docker's `table` prefix with aligned columns and a header row.
//!
//! Data is JSON ([`serde_json::Value`]): rows and inspect documents are serialised with docker's
//! field names, so `{{json .}}` and `{{.Field}}` agree. A field the data does not have is an
//! error naming it (as docker's structs make it), never a silent empty column.

use std::fmt;

use serde_json::Value;

/// Why a format could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The template text is malformed; `pos` is a byte offset into it.
    Parse {
        /// Byte offset of the fault.
        pos: usize,
        /// What is wrong.
        message: String,
    },
    /// `.Field` names nothing in the data.
    NoField {
        /// The field as written (`.Config.Envv`).
        field: String,
        /// The fields that exist there, for the hint.
        available: Vec<String>,
    },
    /// A function name the subset does not know.
    UnknownFunction(String),
    /// A function was given the wrong arguments.
    BadCall {
        /// The function.
        function: String,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Parse { pos, message } => {
                write!(f, "template parsing error at offset {pos}: {message}")
            }
            TemplateError::NoField { field, available } => {
                write!(f, "template: can't evaluate field {field}")?;
                if !available.is_empty() {
                    write!(f, " (fields here: {})", available.join(", "))?;
                }
                Ok(())
            }
            TemplateError::UnknownFunction(name) => {
                write!(f, "template: function {name:?} not defined")
            }
            TemplateError::BadCall { function, message } => {
                write!(f, "template: error calling {function}: {message}")
            }
        }
    }
}

impl std::error::Error for TemplateError {}

/// A parsed `--format` value.
#[derive(Debug, Clone)]
pub struct Format {
    /// `table …`: a header row and tab-aligned columns.
    table: bool,
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipeline),
    Range(Pipeline, Vec<Node>, Vec<Node>),
    If(Pipeline, Vec<Node>, Vec<Node>),
}

/// Commands joined by `|`; each command's result is the last argument of the next.
type Pipeline = Vec<Command>;

#[derive(Debug, Clone, PartialEq)]
enum Command {
    /// A function call with its arguments.
    Call(String, Vec<Operand>),
    /// A lone value.
    Value(Operand),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `.` or `.A.B` (empty path is `.`).
    Field(Vec<String>),
    Str(String),
    Int(i64),
    Bool(bool),
    Pipe(Pipeline),
}

impl Format {
    /// Parses a format as docker does: a leading `table` makes a table, and the two-character
    /// escapes `\t` and `\n` (as typed in a shell's single quotes) become tab and newline.
    pub fn parse(text: &str) -> Result<Format, TemplateError> {
        let (table, body) = match text.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, text),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut p = Parser { src: &body, pos: 0 };
        let (nodes, end) = p.nodes()?;
        if let Some(kw) = end {
            return Err(p.err(format!("unexpected {{{{{kw}}}}}")));
        }
        Ok(Format { table, nodes })
    }

    /// Evaluates the template on one value.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        exec(&self.nodes, data, &mut out)?;
        Ok(out)
    }

    /// Renders `rows` one per line; a table gets a header (the template evaluated on `headers`,
    /// which maps each field to its column title) and columns aligned as docker's tabwriter does.
    pub fn render_rows(&self, rows: &[Value], headers: &Value) -> Result<String, TemplateError> {
        let mut lines = Vec::new();
        if self.table {
            lines.push(self.render(headers)?);
        }
        for r in rows {
            lines.push(self.render(r)?);
        }
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        Ok(if self.table { align(&text) } else { text })
    }
}

/// Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)` as docker uses it: each tab-terminated cell
/// is padded to its column's widest cell plus 3, at least 10; the last cell of a line is not.
pub fn align(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let cols = lines.iter().map(|c| c.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for cells in &lines {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count() + 3).max(10);
        }
    }
    let mut out = String::new();
    for cells in &lines {
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                let pad = widths[i].saturating_sub(c.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, message: String) -> TemplateError {
        TemplateError::Parse {
            pos: self.pos,
            message,
        }
    }

    /// Nodes up to the end of input, or up to `{{else}}` / `{{end}}` (returned).
    fn nodes(&mut self) -> Result<(Vec<Node>, Option<&'static str>), TemplateError> {
        let mut nodes = Vec::new();
        let mut trim_next = false;
        loop {
            let rest = &self.src[self.pos..];
            let (text, found) = match rest.find("{{") {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            let mut text = text.to_string();
            if trim_next {
                text = text.trim_start().to_string();
            }
            self.pos += rest.find("{{").unwrap_or(rest.len());
            if !found {
                push_text(&mut nodes, text);
                return Ok((nodes, None));
            }
            self.pos += 2;
            if self.src[self.pos..].starts_with("- ") || self.src[self.pos..].starts_with("-\t") {
                text = text.trim_end().to_string();
                self.pos += 1;
            }
            push_text(&mut nodes, text);
            let close = self.src[self.pos..]
                .find("}}")
                .ok_or_else(|| self.err("unclosed action: missing }}".into()))?;
            let mut inner = &self.src[self.pos..self.pos + close];
            trim_next = false;
            if inner.ends_with(" -") || inner.ends_with("\t-") {
                inner = &inner[..inner.len() - 1];
                trim_next = true;
            }
            let start = self.pos;
            self.pos += close + 2;
            let inner = inner.trim();
            let word = inner.split_whitespace().next().unwrap_or("");
            let args = inner[word.len()..].trim();
            match word {
                "end" => return Ok((nodes, Some("end"))),
                "else" => return Ok((nodes, Some("else"))),
                "range" | "if" => {
                    let pipe = parse_pipeline(args, start)?;
                    let (body, end) = self.nodes()?;
                    let (alt, end) = match end {
                        Some("else") => self.nodes()?,
                        other => (Vec::new(), other),
                    };
                    if end != Some("end") {
                        return Err(self.err(format!("{{{{{word}}}}} without {{{{end}}}}")));
                    }
                    nodes.push(if word == "range" {
                        Node::Range(pipe, body, alt)
                    } else {
                        Node::If(pipe, body, alt)
                    });
                }
                "" => {
                    return Err(TemplateError::Parse {
                        pos: start,
                        message: "empty action {{}}".into(),
                    })
                }
                _ => nodes.push(Node::Action(parse_pipeline(inner, start)?)),
            }
        }
    }
}

fn push_text(nodes: &mut Vec<Node>, text: String) {
    if !text.is_empty() {
        nodes.push(Node::Text(text));
    }
}

/// Splits an action into tokens: words, quoted strings (with `\"` escapes), `|`, parentheses.
fn tokens(s: &str, at: usize) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' || c == '(' || c == ')' {
            out.push(c.to_string());
            chars.next();
        } else if c == '"' || c == '`' {
            chars.next();
            let mut lit = String::from('"');
            let mut closed = false;
            while let Some((_, d)) = chars.next() {
                if d == c {
                    closed = true;
                    break;
                }
                if d == '\\' && c == '"' {
                    match chars.next() {
                        Some((_, 'n')) => lit.push('\n'),
                        Some((_, 't')) => lit.push('\t'),
                        Some((_, e)) => lit.push(e),
                        None => break,
                    }
                } else {
                    lit.push(d);
                }
            }
            if !closed {
                return Err(TemplateError::Parse {
                    pos: at + i,
                    message: "unterminated quoted string".into(),
                });
            }
            out.push(lit);
        } else {
            let mut w = String::new();
            while let Some(&(_, d)) = chars.peek() {
                if d.is_whitespace() || d == '|' || d == '(' || d == ')' {
                    break;
                }
                w.push(d);
                chars.next();
            }
            out.push(w);
        }
    }
    Ok(out)
}

fn parse_pipeline(s: &str, at: usize) -> Result<Pipeline, TemplateError> {
    let toks = tokens(s, at)?;
    let mut i = 0;
    let pipe = pipeline_from(&toks, &mut i, at)?;
    if i < toks.len() {
        return Err(TemplateError::Parse {
            pos: at,
            message: format!("unexpected {:?} in {s:?}", toks[i]),
        });
    }
    Ok(pipe)
}

fn pipeline_from(toks: &[String], i: &mut usize, at: usize) -> Result<Pipeline, TemplateError> {
    let bad = |message: String| TemplateError::Parse { pos: at, message };
    let mut cmds = Vec::new();
    loop {
        let mut words = Vec::new();
        while *i < toks.len() && toks[*i] != "|" && toks[*i] != ")" {
            if toks[*i] == "(" {
                *i += 1;
                let inner = pipeline_from(toks, i, at)?;
                if toks.get(*i).map(String::as_str) != Some(")") {
                    return Err(bad("missing )".into()));
                }
                *i += 1;
                words.push(Err(Operand::Pipe(inner)));
            } else {
                words.push(Ok(toks[*i].clone()));
                *i += 1;
            }
        }
        let mut words = words.into_iter();
        let cmd = match words.next() {
            None => return Err(bad("missing value in pipeline".into())),
            Some(Ok(first)) if is_function_name(&first) => {
                let args = words
                    .map(|w| w.map_or_else(Ok, |t| operand(&t, at)))
                    .collect::<Result<Vec<_>, _>>()?;
                Command::Call(first, args)
            }
            Some(first) => {
                if words.next().is_some() {
                    return Err(bad("a value cannot take arguments".into()));
                }
                Command::Value(first.map_or_else(Ok, |t| operand(&t, at))?)
            }
        };
        cmds.push(cmd);
        if toks.get(*i).map(String::as_str) == Some("|") {
            *i += 1;
            continue;
        }
        return Ok(cmds);
    }
}

fn is_function_name(w: &str) -> bool {
    w.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && !matches!(w, "true" | "false")
}

fn operand(t: &str, at: usize) -> Result<Operand, TemplateError> {
    if let Some(s) = t.strip_prefix('"') {
        return Ok(Operand::Str(s.to_string()));
    }
    if t == "." {
        return Ok(Operand::Field(Vec::new()));
    }
    if let Some(path) = t.strip_prefix('.') {
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(TemplateError::Parse {
                pos: at,
                message: format!("bad field {t:?}"),
            });
        }
        return Ok(Operand::Field(parts));
    }
    match t {
        "true" => return Ok(Operand::Bool(true)),
        "false" => return Ok(Operand::Bool(false)),
        _ => {}
    }
    t.parse::<i64>()
        .map(Operand::Int)
        .map_err(|_| TemplateError::Parse {
            pos: at,
            message: format!("unexpected {t:?}"),
        })
}

fn exec(nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&print(&eval_pipeline(p, dot)?)),
            Node::If(p, body, alt) => {
                if truthy(&eval_pipeline(p, dot)?) {
                    exec(body, dot, out)?;
                } else {
                    exec(alt, dot, out)?;
                }
            }
            Node::Range(p, body, alt) => {
                let items: Vec<Value> = match eval_pipeline(p, dot)? {
                    Value::Array(a) => a,
                    Value::Object(m) => m.into_iter().map(|(_, v)| v).collect(),
                    Value::Null => Vec::new(),
                    other => {
                        return Err(TemplateError::BadCall {
                            function: "range".into(),
                            message: format!("can't iterate over {}", print(&other)),
                        })
                    }
                };
                if items.is_empty() {
                    exec(alt, dot, out)?;
                }
                for item in &items {
                    exec(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for cmd in p {
        let v = match cmd {
            Command::Value(o) => {
                if prev.is_some() {
                    return Err(TemplateError::BadCall {
                        function: "|".into(),
                        message: "can only pipe into a function".into(),
                    });
                }
                eval_operand(o, dot)?
            }
            Command::Call(name, args) => {
                let mut vals = args
                    .iter()
                    .map(|a| eval_operand(a, dot))
                    .collect::<Result<Vec<_>, _>>()?;
                vals.extend(prev.take());
                call(name, vals)?
            }
        };
        prev = Some(v);
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn eval_operand(o: &Operand, dot: &Value) -> Result<Value, TemplateError> {
    match o {
        Operand::Str(s) => Ok(Value::String(s.clone())),
        Operand::Int(i) => Ok(Value::from(*i)),
        Operand::Bool(b) => Ok(Value::Bool(*b)),
        Operand::Pipe(p) => eval_pipeline(p, dot),
        Operand::Field(path) => {
            let mut v = dot;
            for (i, name) in path.iter().enumerate() {
                let field = || format!(".{}", path[..=i].join("."));
                v = match v {
                    Value::Object(m) => match m.get(name) {
                        Some(x) => x,
                        None => {
                            return Err(TemplateError::NoField {
                                field: field(),
                                available: m.keys().cloned().collect(),
                            })
                        }
                    },
                    // Go prints <no value> for fields of a missing map entry; null is that.
                    Value::Null => return Ok(Value::Null),
                    _ => {
                        return Err(TemplateError::NoField {
                            field: field(),
                            available: Vec::new(),
                        })
                    }
                };
            }
            Ok(v.clone())
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// Go's `fmt.Print` of a value: strings raw, slices as `[a b]`, maps as `map[k:v]`.
fn print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(print).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", print(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
    let bad = |message: &str| TemplateError::BadCall {
        function: name.into(),
        message: message.into(),
    };
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(bad(&format!("wants {n} argument(s), got {}", args.len())))
        }
    };
    let string = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => print(other),
    };
    Ok(match name {
        "json" => {
            arity(1)?;
            Value::String(serde_json::to_string(&args[0]).map_err(|e| bad(&e.to_string()))?)
        }
        "index" => {
            if args.is_empty() {
                return Err(bad("wants a collection and keys"));
            }
            let mut v = args[0].clone();
            for k in &args[1..] {
                v = match (&v, k) {
                    (Value::Array(a), Value::Number(n)) => {
                        let i = n.as_u64().ok_or_else(|| bad("negative index"))?;
                        a.get(i as usize)
                            .cloned()
                            .ok_or_else(|| bad(&format!("index {i} out of range")))?
                    }
                    // As Go's index of a map: a missing key (or a nil map) gives the zero
                    // value, an empty string for docker's label and option maps.
                    (Value::Object(m), Value::String(s)) => {
                        m.get(s).cloned().unwrap_or(Value::String(String::new()))
                    }
                    (Value::Null, _) => Value::String(String::new()),
                    _ => return Err(bad("cannot index this value with that key")),
                };
            }
            v
        }
        "len" => {
            arity(1)?;
            Value::from(match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                _ => return Err(bad("len of a number or boolean")),
            })
        }
        "join" => {
            arity(2)?;
            let sep = string(&args[1]);
            match &args[0] {
                Value::Array(a) => {
                    Value::String(a.iter().map(string).collect::<Vec<_>>().join(&sep))
                }
                Value::Null => Value::String(String::new()),
                _ => return Err(bad("first argument is not a list")),
            }
        }
        "split" => {
            arity(2)?;
            let s = string(&args[0]);
            let sep = string(&args[1]);
            Value::Array(
                s.split(sep.as_str())
                    .map(|p| Value::String(p.into()))
                    .collect(),
            )
        }
        "lower" => {
            arity(1)?;
            Value::String(string(&args[0]).to_lowercase())
        }
        "upper" => {
            arity(1)?;
            Value::String(string(&args[0]).to_uppercase())
        }
        "title" => {
            arity(1)?;
            let s = string(&args[0]);
            let mut c = s.chars();
            Value::String(match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            })
        }
        "truncate" => {
            arity(2)?;
            let n = args[1]
                .as_u64()
                .ok_or_else(|| bad("length is not a number"))? as usize;
            Value::String(string(&args[0]).chars().take(n).collect())
        }
        "print" => Value::String(args.iter().map(string).collect::<Vec<_>>().join("")),
        "println" => Value::String(args.iter().map(string).collect::<Vec<_>>().join(" ") + "\n"),
        "eq" | "ne" => {
            arity(2)?;
            let same = args[0] == args[1];
            Value::Bool(if name == "eq" { same } else { !same })
        }
        "not" => {
            arity(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" => args
            .iter()
            .find(|v| !truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|v| truthy(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        other => return Err(TemplateError::UnknownFunction(other.into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(f: &str, v: &Value) -> Result<String, TemplateError> {
        Format::parse(f)?.render(v)
    }

    fn row() -> Value {
        json!({"Repository": "app", "Tag": "1", "ID": "0123456789ab", "Size": "4.2MB",
               "RepoTags": ["app:1", "app:latest"], "Config": {"Env": ["A=1", "B=2"], "Labels": null}})
    }

    #[test]
    fn fields_and_text() {
        assert_eq!(
            render("{{.Repository}}:{{.Tag}} {{.ID}}", &row()).unwrap(),
            "app:1 0123456789ab"
        );
        assert_eq!(render("{{ .Config.Env }}", &row()).unwrap(), "[A=1 B=2]");
        assert_eq!(
            render("{{.Config.Labels.x}}", &row()).unwrap(),
            "<no value>"
        );
        assert_eq!(render("plain", &row()).unwrap(), "plain");
        assert_eq!(render("a\\tb", &row()).unwrap(), "a\tb");
    }

    #[test]
    fn functions() {
        let v = row();
        assert_eq!(
            render("{{json .Config.Env}}", &v).unwrap(),
            r#"["A=1","B=2"]"#
        );
        let whole: Value = serde_json::from_str(&render("{{json .}}", &v).unwrap()).unwrap();
        assert_eq!(whole, v);
        assert_eq!(render("{{index .RepoTags 1}}", &v).unwrap(), "app:latest");
        assert_eq!(
            render("{{join .RepoTags \",\"}}", &v).unwrap(),
            "app:1,app:latest"
        );
        assert_eq!(render("{{.Repository | upper}}", &v).unwrap(), "APP");
        assert_eq!(render("{{len .RepoTags}}", &v).unwrap(), "2");
        assert_eq!(
            render("{{upper (index .RepoTags 0)}}", &v).unwrap(),
            "APP:1"
        );
        assert_eq!(
            render("{{if eq .Tag \"1\"}}one{{else}}other{{end}}", &v).unwrap(),
            "one"
        );
    }

    #[test]
    fn range_and_trim() {
        let v = row();
        assert_eq!(
            render("{{range .RepoTags}}[{{.}}]{{end}}", &v).unwrap(),
            "[app:1][app:latest]"
        );
        assert_eq!(
            render("{{range .Config.Labels}}x{{else}}none{{end}}", &v).unwrap(),
            "none"
        );
        assert_eq!(render("a  {{- .Tag -}}  b", &v).unwrap(), "a1b");
    }

    #[test]
    fn tables_align_like_docker() {
        let f = Format::parse("table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}").unwrap();
        assert!(f.table);
        let headers = json!({"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID"});
        let rows = vec![
            row(),
            json!({"Repository": "a-much-longer-name", "Tag": "latest", "ID": "x"}),
        ];
        let text = f.render_rows(&rows, &headers).unwrap();
        assert_eq!(
            text,
            "REPOSITORY           TAG       IMAGE ID\n\
             app                  1         0123456789ab\n\
             a-much-longer-name   latest    x\n"
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        match render("{{.Repsitory}}", &row()) {
            Err(TemplateError::NoField { field, available }) => {
                assert_eq!(field, ".Repsitory");
                assert!(available.contains(&"Repository".to_string()));
            }
            other => panic!("{other:?}"),
        }
        match render("{{.Config.Envv}}", &row()) {
            Err(e @ TemplateError::NoField { .. }) => {
                assert!(e.to_string().contains(".Config.Envv"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            render("{{.Tag", &row()),
            Err(TemplateError::Parse { .. })
        ));
        assert!(matches!(
            render("{{range .RepoTags}}x", &row()),
            Err(TemplateError::Parse { .. })
        ));
        assert!(matches!(
            render("{{end}}", &row()),
            Err(TemplateError::Parse { .. })
        ));
        assert_eq!(
            render("{{frob .Tag}}", &row()),
            Err(TemplateError::UnknownFunction("frob".into()))
        );
        assert!(matches!(
            render("{{index .RepoTags 5}}", &row()),
            Err(TemplateError::BadCall { .. })
        ));
        assert!(matches!(
            render("{{\"unterminated}}", &row()),
            Err(TemplateError::Parse { .. })
        ));
    }
}
