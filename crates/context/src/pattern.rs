//! Glob compilation shared by `.dockerignore` rules and COPY source wildcards.
//!
//! Two dialects exist in Docker and both are served here:
//! * Go `filepath.Match` (one path component at a time) for COPY/ADD sources;
//! * moby/patternmatcher, which is `filepath.Match` over whole slash paths plus
//!   `**` ("any number of directories").

/// One compiled glob element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A literal character (escapes already removed).
    Lit(char),
    /// `*`: any run of characters except `/`.
    Star,
    /// `?`: exactly one character except `/`.
    Quest,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` or `**/` followed by more pattern: `(.*/)?`.
    AnyDirs,
    /// `**` at the end of the pattern: `.*`.
    AnyTail,
}

/// A compiled glob; private representation, matched with backtracking.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    toks: Vec<Tok>,
    /// patternmatcher's "suffix match" shortcut: a pattern starting with
    /// `**` whose rest has no wildcard is matched by string suffix (so
    /// `**.txt` matches `a/b.txt`), kept for exact compatibility.
    suffix: Option<String>,
}

/// Why a pattern could not be compiled (mirrors Go's `ErrBadPattern` cases).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadPattern(pub(crate) &'static str);

impl Glob {
    /// Compiles `pattern`; `double_star` enables patternmatcher's `**`.
    pub(crate) fn compile(pattern: &str, double_star: bool) -> Result<Glob, BadPattern> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut suffix = None;
        if double_star {
            if let Some(rest) = pattern.strip_prefix("**") {
                if !rest.contains(['*', '?', '[', ']', '\\']) {
                    suffix = Some(rest.to_string());
                }
            }
        }
        let mut toks = Vec::new();
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            match c {
                '*' => {
                    if double_star && chars.get(i) == Some(&'*') {
                        i += 1;
                        if chars.get(i) == Some(&'/') {
                            i += 1;
                        }
                        if i >= chars.len() {
                            toks.push(Tok::AnyTail);
                        } else {
                            toks.push(Tok::AnyDirs);
                        }
                    } else {
                        toks.push(Tok::Star);
                    }
                }
                '?' => toks.push(Tok::Quest),
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        i += 1;
                        toks.push(Tok::Lit(n));
                    }
                    None => return Err(BadPattern("trailing backslash")),
                },
                '[' => {
                    let (tok, next) = parse_class(&chars, i)?;
                    toks.push(tok);
                    i = next;
                }
                other => toks.push(Tok::Lit(other)),
            }
        }
        Ok(Glob { toks, suffix })
    }

    /// True if the whole of `s` matches.
    pub(crate) fn matches(&self, s: &str) -> bool {
        if let Some(suffix) = &self.suffix {
            return s.ends_with(suffix.as_str())
                || suffix.strip_prefix('/').is_some_and(|rest| rest == s);
        }
        let chars: Vec<char> = s.chars().collect();
        match_toks(&self.toks, &chars)
    }
}

/// True if `s` contains an unescaped wildcard character of Go's filepath.Match.
pub(crate) fn has_wildcard(s: &str) -> bool {
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

fn parse_class(chars: &[char], mut i: usize) -> Result<(Tok, usize), BadPattern> {
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(i) {
            None => return Err(BadPattern("unterminated character class")),
            Some(']') if !ranges.is_empty() => return Ok((Tok::Class { negated, ranges }, i + 1)),
            _ => {}
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
            if hi < lo {
                return Err(BadPattern("inverted range in character class"));
            }
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: usize) -> Result<(char, usize), BadPattern> {
    match chars.get(i) {
        None => Err(BadPattern("unterminated character class")),
        Some('-') | Some(']') => Err(BadPattern("misplaced '-' or ']' in character class")),
        Some('\\') => match chars.get(i + 1) {
            Some(&c) => Ok((c, i + 2)),
            None => Err(BadPattern("trailing backslash in character class")),
        },
        Some(&c) => Ok((c, i + 1)),
    }
}

fn match_toks(toks: &[Tok], s: &[char]) -> bool {
    let Some((tok, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match tok {
        Tok::Lit(c) => match s.split_first() {
            Some((h, tail)) if h == c => match_toks(rest, tail),
            _ => false,
        },
        Tok::Quest => match s.split_first() {
            Some((h, tail)) if *h != '/' => match_toks(rest, tail),
            _ => false,
        },
        Tok::Class { negated, ranges } => match s.split_first() {
            Some((h, tail)) => {
                let inside = ranges.iter().any(|(lo, hi)| lo <= h && h <= hi);
                inside != *negated && match_toks(rest, tail)
            }
            None => false,
        },
        Tok::Star => {
            let mut cur = s;
            loop {
                if match_toks(rest, cur) {
                    return true;
                }
                match cur.split_first() {
                    Some((h, tail)) if *h != '/' => cur = tail,
                    _ => return false,
                }
            }
        }
        Tok::AnyDirs => {
            if match_toks(rest, s) {
                return true;
            }
            let mut cur = s;
            while let Some((h, tail)) = cur.split_first() {
                if *h == '/' && match_toks(rest, tail) {
                    return true;
                }
                cur = tail;
            }
            false
        }
        Tok::AnyTail => true,
    }
}

/// Go's `path.Clean` for slash-separated paths: the form patternmatcher compares.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if matches!(out.last(), Some(last) if *last != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        let cases = [
            ("", "."),
            ("a/b/../c", "a/c"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a//b/./", "a/b"),
            ("/", "/"),
            ("./", "."),
            ("a/../..", ".."),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn filepath_match_semantics() {
        let cases = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a?c", "abc", true),
            ("a[b-d]c", "acc", true),
            ("a[^b-d]c", "aec", true),
            ("a[^b-d]c", "acc", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("[\\]a]", "]", true),
            ("*.txt", "dir/a.txt", false),
        ];
        for (pat, s, want) in cases {
            let g = Glob::compile(pat, false).unwrap();
            assert_eq!(g.matches(s), want, "{pat:?} vs {s:?}");
        }
    }

    #[test]
    fn bad_patterns() {
        for pat in ["[", "a[", "[]a]", "[a-]", "a\\", "[z-a]"] {
            assert!(Glob::compile(pat, true).is_err(), "{pat:?} should be bad");
        }
    }

    #[test]
    fn wildcard_detection() {
        assert!(has_wildcard("a*"));
        assert!(has_wildcard("[ab]"));
        assert!(!has_wildcard("a\\*"));
        assert!(!has_wildcard("plain/name"));
    }
}
