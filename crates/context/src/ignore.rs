//! `.dockerignore` rules with Docker's exact semantics (moby/patternmatcher).
//!
//! Patterns are Go `filepath.Match` globs over slash paths relative to the
//! context root, plus `**` for any number of directories, `!` exceptions and
//! "last match wins". A pattern matching a directory also matches everything
//! below it, which is why [`IgnoreMatcher::is_excluded`] checks parents too.

use std::path::{Component, Path};

use crate::pattern::{clean, Glob};
use crate::ContextError;

/// One compiled rule: the glob and whether it is a `!` exception.
#[derive(Debug, Clone)]
struct Rule {
    glob: Glob,
    exception: bool,
}

/// Decides which context paths a build may see, so COPY and the context
/// digest agree with what `docker build` would have sent.
#[derive(Debug, Clone, Default)]
pub struct IgnoreMatcher {
    rules: Vec<Rule>,
    has_exceptions: bool,
    /// The `!` patterns as cleaned text, for [`IgnoreMatcher::on_exception_path`].
    exception_texts: Vec<String>,
}

impl IgnoreMatcher {
    /// Builds a matcher from already-split patterns (as the `--exclude` flag
    /// or a `.dockerignore` read elsewhere provides them), mirroring
    /// patternmatcher's `New`.
    pub fn new(patterns: &[String]) -> Result<Self, ContextError> {
        Self::build(
            patterns
                .iter()
                .enumerate()
                .map(|(i, p)| (i + 1, p.as_str())),
            None,
        )
    }

    /// Parses the text of a `.dockerignore` file (comments, blank lines,
    /// BOM, `!` and slash normalisation as Docker's reader does).
    pub fn parse(text: &str) -> Result<Self, ContextError> {
        Self::parse_file(text, None)
    }

    /// Same as [`IgnoreMatcher::parse`] but errors name `file`, so a user can
    /// find the bad line.
    pub fn parse_file(text: &str, file: Option<&Path>) -> Result<Self, ContextError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let invert = pattern.starts_with('!');
            if invert {
                pattern = pattern.get(1..).unwrap_or("").trim();
            }
            let mut normalised = if pattern.is_empty() {
                String::new()
            } else {
                clean(pattern)
            };
            if normalised.len() > 1 && normalised.starts_with('/') {
                normalised.remove(0);
            }
            if invert {
                normalised.insert(0, '!');
            }
            patterns.push((idx + 1, normalised));
        }
        Self::build(patterns.iter().map(|(l, p)| (*l, p.as_str())), file)
    }

    fn build<'a>(
        patterns: impl Iterator<Item = (usize, &'a str)>,
        file: Option<&Path>,
    ) -> Result<Self, ContextError> {
        let mut rules = Vec::new();
        let mut has_exceptions = false;
        let mut exception_texts = Vec::new();
        for (line, original) in patterns {
            let p = original.trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let exception = p.starts_with('!');
            if exception {
                if p.len() == 1 {
                    return Err(ContextError::IgnorePattern {
                        file: file.map(Path::to_path_buf),
                        line,
                        pattern: original.to_string(),
                        reason: "illegal exclusion pattern: \"!\"".to_string(),
                    });
                }
                p.remove(0);
                has_exceptions = true;
            }
            // A leading slash can never match a context-relative path; Docker's
            // reader strips it, do the same for patterns given directly.
            if p.len() > 1 && p.starts_with('/') {
                p.remove(0);
            }
            let glob = Glob::compile(&p, true).map_err(|e| ContextError::IgnorePattern {
                file: file.map(Path::to_path_buf),
                line,
                pattern: original.to_string(),
                reason: format!("syntax error in pattern: {}", e.0),
            })?;
            if exception {
                exception_texts.push(p.clone());
            }
            rules.push(Rule { glob, exception });
        }
        Ok(IgnoreMatcher {
            rules,
            has_exceptions,
            exception_texts,
        })
    }

    /// True when no rule exists, letting callers skip matching entirely.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when some `!` rule exists, i.e. an excluded directory may still
    /// hold re-included paths and must be walked.
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// Whether the excluded directory `rel` is still sent because a `!`
    /// pattern's text starts with `rel/`: docker's context transfer (fsutil)
    /// walks into such directories and sends them even when nothing below is
    /// re-included. The comparison is textual, so a directory a wildcard
    /// component of the pattern matches is not kept.
    pub fn on_exception_path(&self, rel: &Path) -> bool {
        let dir = rel.to_string_lossy();
        if dir.is_empty() {
            return false;
        }
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.exception_texts
            .iter()
            .any(|p| format!("{p}/").starts_with(&prefix))
    }

    /// Whether `rel` (relative to the context root) is excluded, following
    /// patternmatcher's `MatchesOrParentMatches`: last matching rule wins and
    /// a rule matching any parent directory counts as a match. `is_dir` is
    /// accepted for callers' convenience; Docker's rules do not depend on it.
    pub fn is_excluded(&self, rel: &Path, is_dir: bool) -> bool {
        let _ = is_dir;
        if self.rules.is_empty() {
            return false;
        }
        let parts: Vec<String> = rel
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if parts.is_empty() {
            return false;
        }
        let file = parts.join("/");
        let parents: Vec<String> = (1..parts.len())
            .map(|n| parts.iter().take(n).cloned().collect::<Vec<_>>().join("/"))
            .collect();
        let mut matched = false;
        for rule in &self.rules {
            if rule.exception != matched {
                continue;
            }
            let hit = rule.glob.matches(&file) || parents.iter().any(|p| rule.glob.matches(p));
            if hit {
                matched = !rule.exception;
            }
        }
        matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str]) -> IgnoreMatcher {
        IgnoreMatcher::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn directories_on_an_exception_path_are_kept() {
        let ig = m(&["**", "!folder/sub/file", "!other/*/missing"]);
        assert!(ig.on_exception_path(Path::new("folder")));
        assert!(ig.on_exception_path(Path::new("folder/sub")));
        assert!(!ig.on_exception_path(Path::new("folder/x")));
        assert!(ig.on_exception_path(Path::new("other")));
        assert!(!ig.on_exception_path(Path::new("other/sub")));
        assert!(!ig.on_exception_path(Path::new("fold")));
    }

    /// Cases ported from the semantics of patternmatcher's tests.
    #[test]
    fn patternmatcher_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("fileutils.go", "fileutils.go", true),
            ("*.go", "fileutils.go", true),
            ("*.go", "dir/fileutils.go", false),
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            // patternmatcher's suffix shortcut: no directory boundary needed.
            ("**file", "dir/myfile", true),
            ("**.txt", "a/b.txt", true),
            ("**/file", "dir/myfile", false),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            // A pattern matching a directory excludes everything below it.
            ("docs", "docs/a/b.md", true),
            ("docs/", "docs/a.md", true),
            ("/docs", "docs/a.md", true),
            ("./docs/../src", "src/main.rs", true),
            ("*/temp*", "somedir/temporary.txt", true),
            ("*/temp*", "somedir/sub/temporary.txt", false),
            ("*/*/temp*", "somedir/subdir/temporary.txt", true),
            ("temp?", "tempa", true),
            ("temp?", "temp", false),
        ];
        for (pattern, path, want) in cases {
            let matcher = m(&[pattern]);
            assert_eq!(
                matcher.is_excluded(Path::new(path), false),
                *want,
                "pattern {pattern:?} path {path:?}"
            );
        }
    }

    #[test]
    fn exceptions_and_order() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["*.md", "!README.md"], "README.md", false),
            (&["*.md", "!README.md"], "CHANGES.md", true),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README-secret.md",
                true,
            ),
            (
                &["*.md", "!README*.md", "README-secret.md"],
                "README-public.md",
                false,
            ),
            (&["!README.md", "*.md"], "README.md", true),
            (&["docs", "!docs/keep.md"], "docs/keep.md", false),
            (&["docs", "!docs/keep.md"], "docs/other.md", true),
            (&["docs", "!docs"], "docs/x", false),
            (&["**", "!src/**"], "src/a/b.rs", false),
            (&["**", "!src/**"], "target/x", true),
            (&["**", "!src"], "src/deep/file", false),
        ];
        for (patterns, path, want) in cases {
            assert_eq!(
                m(patterns).is_excluded(Path::new(path), false),
                *want,
                "{patterns:?} {path:?}"
            );
        }
    }

    #[test]
    fn parse_file_rules() {
        let text = "\u{feff}# comment\n\n  # not a comment? it is a pattern\n*.log\n/build/\n! keep.log \nsub/../tmp\n";
        let matcher = IgnoreMatcher::parse(text).unwrap();
        assert!(matcher.is_excluded(Path::new("a.log"), false));
        assert!(!matcher.is_excluded(Path::new("keep.log"), false));
        assert!(matcher.is_excluded(Path::new("build/out.o"), false));
        assert!(matcher.is_excluded(Path::new("tmp"), true));
        assert!(matcher.is_excluded(Path::new("# not a comment? it is a pattern"), false));
        assert!(!matcher.is_excluded(Path::new("src/main.rs"), false));
        assert!(matcher.has_exceptions());
    }

    #[test]
    fn bad_patterns_are_reported_with_line() {
        let err = IgnoreMatcher::parse_file("ok\n[\n", Some(Path::new("/ctx/.dockerignore")))
            .unwrap_err();
        match err {
            ContextError::IgnorePattern {
                line,
                pattern,
                file,
                ..
            } => {
                assert_eq!(line, 2);
                assert_eq!(pattern, "[");
                assert_eq!(file.as_deref(), Some(Path::new("/ctx/.dockerignore")));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(IgnoreMatcher::parse("!\n").is_err());
    }

    #[test]
    fn empty_matcher_excludes_nothing() {
        let matcher = IgnoreMatcher::parse("# only comments\n\n").unwrap();
        assert!(matcher.is_empty());
        assert!(!matcher.is_excluded(Path::new("anything"), false));
    }
}
