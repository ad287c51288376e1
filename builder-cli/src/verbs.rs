//! Which subcommand a command line names, before clap sees it.
//!
//! `rbuild -f X -t y .` means `rbuild build -f X -t y .`, as `docker build` is typed without its
//! verb. That shorthand must never swallow a mistyped command: `rbuild imgaes` is an unknown
//! command (with a suggestion), not a build of a directory called `imgaes`. The verbs and the
//! global options are read from clap's own definition, so a subcommand added to [`crate::cli::Cli`]
//! is recognised here without touching this file.
//!
//! An unknown command exits with status 2, clap's status for every other usage error (docker
//! uses 1 or 125 depending on the version; scripts only rely on it being non-zero).

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

/// The first word was neither a command nor something that names a build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCommand {
    /// What the user typed.
    pub word: String,
    /// The closest known commands, best first (may be empty).
    pub suggestions: Vec<String>,
}

/// Exit status for an unknown command: clap's usage-error code, as for any other bad argument.
pub const USAGE_EXIT: u8 = 2;

impl fmt::Display for UnknownCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Docker's wording, then cobra's hint.
        write!(f, "rbuild: '{}' is not a rbuild command.", self.word)?;
        if !self.suggestions.is_empty() {
            write!(f, "\n\nDid you mean this?")?;
            for s in &self.suggestions {
                write!(f, "\n\t{s}")?;
            }
        }
        write!(f, "\nSee 'rbuild --help'.")
    }
}

/// In `rbuild -t app imgaes`, the PATH of the implied `build` is a bare word naming no
/// directory: a mistyped command, reported as one rather than as a missing Dockerfile.
pub fn check_implicit_context(path: &Path) -> Result<(), UnknownCommand> {
    let word = path.to_string_lossy();
    if names_a_context(&word) {
        return Ok(());
    }
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    Err(UnknownCommand {
        suggestions: suggest(&word, &known_verbs(&cmd)),
        word: word.into_owned(),
    })
}

/// Inserts `build` when the command line starts with build flags or a context path (and says
/// so: that build's PATH is then checked with [`check_implicit_context`]); leaves it alone when
/// it starts with a known command; refuses a bare word that is neither.
pub fn insert_default_verb(
    mut args: Vec<OsString>,
) -> Result<(Vec<OsString>, bool), UnknownCommand> {
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    let verbs = known_verbs(&cmd);
    // Global options that take a value (`--root DIR`): their value is not a verb.
    let valued_globals: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.get_action().takes_values())
        .flat_map(|a| {
            let long = a.get_long().map(|l| format!("--{l}"));
            let short = a.get_short().map(|s| format!("-{s}"));
            long.into_iter().chain(short)
        })
        .collect();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        if valued_globals.contains(&a) {
            i += 2;
            continue;
        }
        if valued_globals
            .iter()
            .any(|g| g.starts_with("--") && a.starts_with(&format!("{g}=")))
        {
            i += 1;
            continue;
        }
        if matches!(a.as_str(), "-h" | "--help" | "-V" | "--version") || verbs.contains(&a) {
            return Ok((args, false));
        }
        if !a.starts_with('-') && !names_a_context(&a) {
            return Err(UnknownCommand {
                suggestions: suggest(&a, &verbs),
                word: a,
            });
        }
        break;
    }
    if args.len() > 1 {
        args.insert(1, "build".into());
        return Ok((args, true));
    }
    Ok((args, false))
}

/// Every name clap accepts as a subcommand (with aliases), plus `help`.
fn known_verbs(cmd: &clap::Command) -> Vec<String> {
    let mut v: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| std::iter::once(s.get_name()).chain(s.get_all_aliases()))
        .map(str::to_string)
        .collect();
    v.push("help".into());
    v
}

/// Whether a first word is meant as `docker build`'s PATH | URL | -: anything path-like, an
/// existing directory, or a remote context. A bare word that is none of these is a command.
fn names_a_context(word: &str) -> bool {
    word == "-"
        || word.contains('/')
        || word.starts_with('.')
        || word.starts_with('~')
        || word.contains("://")
        || word.starts_with("git@")
        || Path::new(word).is_dir()
}

/// Commands within a small edit distance of `word`, or that it is a prefix of, closest first
/// (cobra's rule: distance at most 2).
fn suggest(word: &str, verbs: &[String]) -> Vec<String> {
    let w = word.to_ascii_lowercase();
    let mut scored: Vec<(usize, &String)> = verbs
        .iter()
        .filter(|v| v.as_str() != "help")
        .filter_map(|v| {
            let d = levenshtein(&w, v);
            (d <= 2 || (w.len() >= 2 && v.starts_with(&w))).then_some((d, v))
        })
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, v)| v.clone()).collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn args_of(args: Vec<OsString>) -> Result<Vec<OsString>, UnknownCommand> {
        insert_default_verb(args).map(|r| r.0)
    }

    #[test]
    fn default_verb_is_build() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["rbuild", "-f", "D", "-t", "x:1", "."],
                &["rbuild", "build", "-f", "D", "-t", "x:1", "."],
            ),
            (&["rbuild", "."], &["rbuild", "build", "."]),
            (&["rbuild", "./ctx"], &["rbuild", "build", "./ctx"]),
            (&["rbuild", "/abs/ctx"], &["rbuild", "build", "/abs/ctx"]),
            (&["rbuild", "-"], &["rbuild", "build", "-"]),
            (
                &["rbuild", "https://example.com/r.git"],
                &["rbuild", "build", "https://example.com/r.git"],
            ),
            (&["rbuild", "images"], &["rbuild", "images"]),
            (&["rbuild", "build", "."], &["rbuild", "build", "."]),
            (&["rbuild", "--help"], &["rbuild", "--help"]),
            (&["rbuild", "help"], &["rbuild", "help"]),
            (&["rbuild"], &["rbuild"]),
            (
                &["rbuild", "--root", "/s", "save", "x"],
                &["rbuild", "--root", "/s", "save", "x"],
            ),
            (
                &["rbuild", "--root=/s", "images"],
                &["rbuild", "--root=/s", "images"],
            ),
            (
                &["rbuild", "--insecure-registry", "h:5000", "push", "x"],
                &["rbuild", "--insecure-registry", "h:5000", "push", "x"],
            ),
            (
                &["rbuild", "--root", "/s", "."],
                &["rbuild", "build", "--root", "/s", "."],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(args_of(v(input)), Ok(v(want)), "{input:?}");
        }
    }

    #[test]
    fn an_existing_directory_is_a_context() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().to_str().unwrap();
        assert_eq!(
            args_of(v(&["rbuild", name])),
            Ok(v(&["rbuild", "build", name]))
        );
    }

    #[test]
    fn unknown_words_are_refused_with_suggestions() {
        let e = args_of(v(&["rbuild", "imgaes"])).unwrap_err();
        assert_eq!(e.word, "imgaes");
        assert_eq!(e.suggestions.first().map(String::as_str), Some("images"));
        let text = e.to_string();
        assert!(
            text.starts_with("rbuild: 'imgaes' is not a rbuild command."),
            "{text}"
        );
        assert!(text.contains("Did you mean this?\n\timages"), "{text}");

        let e = args_of(v(&["rbuild", "--root", "/s", "biuld", "."])).unwrap_err();
        assert_eq!(e.suggestions, vec!["build".to_string()]);

        let e = args_of(v(&["rbuild", "frobnicate"])).unwrap_err();
        assert!(e.suggestions.is_empty());
        assert!(!e.to_string().contains("Did you mean"));
    }

    #[test]
    fn every_subcommand_is_a_verb() {
        let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
        for s in cmd.get_subcommands() {
            let name = s.get_name();
            assert_eq!(
                args_of(v(&["rbuild", name])),
                Ok(v(&["rbuild", name])),
                "{name}"
            );
        }
    }

    #[test]
    fn implied_build_paths_are_checked() {
        assert_eq!(
            insert_default_verb(v(&["rbuild", "-t", "a", "imgaes"])).map(|r| r.1),
            Ok(true)
        );
        assert_eq!(
            insert_default_verb(v(&["rbuild", "images"])).map(|r| r.1),
            Ok(false)
        );
        assert!(check_implicit_context(Path::new(".")).is_ok());
        assert!(check_implicit_context(Path::new("sub/dir")).is_ok());
        let e = check_implicit_context(Path::new("imgaes")).unwrap_err();
        assert_eq!(e.suggestions.first().map(String::as_str), Some("images"));
    }

    #[test]
    fn distances() {
        assert_eq!(levenshtein("imgaes", "images"), 2);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("push", "push"), 0);
        assert_eq!(levenshtein("pul", "pull"), 1);
    }
}
