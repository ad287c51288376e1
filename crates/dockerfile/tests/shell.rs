//! Behaviour of `rbuild_dockerfile::shell` through its public API, checked against
//! the cases BuildKit's own lexer tests pin down (the envVarTest fixture
//! environment is `PWD=/home SHELL=bash KOREAN=한국어 NULL=`).

use std::collections::{BTreeMap, HashMap};

use rbuild_dockerfile::shell::{Lexer, Lookup, Matches, ShellError};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn fixture() -> BTreeMap<String, String> {
    env(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ])
}

/// `None` means "must be an error".
fn check(lex: &Lexer, env: &dyn Lookup, cases: &[(&str, Option<&str>)]) {
    for (input, expected) in cases {
        let got = lex.process_word(input, env);
        match expected {
            Some(want) => assert_eq!(got.as_deref(), Ok(*want), "input {input:?}"),
            None => assert!(got.is_err(), "input {input:?} should fail, got {got:?}"),
        }
    }
}

#[test]
fn fixture_cases_with_non_ascii_text() {
    check(
        &Lexer::new('\\'),
        &fixture(),
        &[
            ("$1", Some("")),
            ("안녕$1x", Some("안녕x")),
            ("안녕$.x", Some("안녕$.x")),
            ("안녕$pwd.", Some("안녕.")),
            ("안녕$PWD", Some("안녕/home")),
            ("안녕\\$PWD", Some("안녕$PWD")),
            ("안녕\\\\$PWD", Some("안녕\\/home")),
            ("안녕\\${}", Some("안녕${}")),
            ("안녕\\${}xx", Some("안녕${}xx")),
            ("안녕${}", None),
            ("안녕${}xx", None),
            ("안녕${hi}", Some("안녕")),
            ("안녕${hi}xx", Some("안녕xx")),
            ("안녕${PWD}", Some("안녕/home")),
            ("안녕${.}", None),
            ("안녕${XXX:-000}xx", Some("안녕000xx")),
            ("안녕${PWD:-000}xx", Some("안녕/homexx")),
            ("안녕${XXX:-$PWD}xx", Some("안녕/homexx")),
            ("안녕${XXX:-${PWD:-yyy}}xx", Some("안녕/homexx")),
            ("안녕${XXX:-${YYY:-yyy}}xx", Some("안녕yyyxx")),
            ("안녕${XXX:YYY}", None),
            ("안녕${XXX:+${PWD}}xx", Some("안녕xx")),
            ("안녕${PWD:+${XXX}}xx", Some("안녕xx")),
            ("안녕${PWD:+${SHELL}}xx", Some("안녕bashxx")),
            ("안녕${XXX:+000}xx", Some("안녕xx")),
            ("안녕${PWD:+000}xx", Some("안녕000xx")),
            ("'안녕${XX}'", Some("안녕${XX}")),
            ("\"안녕${PWD}\"", Some("안녕/home")),
            ("\"안녕'$PWD'\"", Some("안녕'/home'")),
            ("'\"안녕\"'", Some("\"안녕\"")),
            ("'안녕\\$PWD'", Some("안녕\\$PWD")),
            ("안녕${PWD", None),
            ("안녕${PWD:=000}xx", None),
            ("안녕${PWD:+${PWD}:}xx", Some("안녕/home:xx")),
            ("안녕${XXX:-\\$PWD:}xx", Some("안녕$PWD:xx")),
            ("안녕${XXX:-\\${PWD}z}xx", Some("안녕${PWDz}xx")),
        ],
    );
}

#[test]
fn fixture_cases_for_braces() {
    check(
        &Lexer::new('\\'),
        &fixture(),
        &[
            ("${{aaa}", None),
            ("${aaa}}", Some("}")),
            ("${aaa", None),
            ("${{aaa:-bbb}", None),
            ("${aaa:-bbb}}", Some("bbb}")),
            ("${aaa:-bbb", None),
            ("${aaa:-bbb}", Some("bbb")),
            ("${aaa:-${bbb:-ccc}}", Some("ccc")),
            ("${aaa:-bbb ${foo}", None),
            ("${aaa:-bbb {foo}", Some("bbb {foo")),
            ("${:}", None),
            ("${:-bbb}", None),
            ("${:+bbb}", None),
            // a quote inside the word part hides the closing brace
            ("${aaa:-'}'}", Some("}")),
            ("${aaa:-\"}\"}", Some("}")),
            ("${aaa:-'}'", None),
        ],
    );
}

#[test]
fn mandatory_variables() {
    let lex = Lexer::new('\\');
    let set = env(&[("VAR", "plain"), ("ARG", "x")]);
    let empty = env(&[("VAR", ""), ("ARG", "x")]);
    let unset = env(&[("ARG", "x")]);
    let no_empty = "${VAR:?message here$ARG}";
    let no_unset = "${VAR?message here$ARG}";

    assert_eq!(lex.process_word(no_empty, &set).unwrap(), "plain");
    for e in [&empty, &unset] {
        let err = lex.process_word(no_empty, e).unwrap_err();
        assert!(err.message.ends_with("VAR: message herex"), "{err}");
    }
    assert_eq!(lex.process_word(no_unset, &set).unwrap(), "plain");
    assert_eq!(lex.process_word(no_unset, &empty).unwrap(), "");
    let err = lex.process_word(no_unset, &unset).unwrap_err();
    assert_eq!(
        err,
        ShellError {
            message: format!("failed to process {no_unset:?}: VAR: message herex"),
            offset: 0,
        }
    );
}

#[test]
fn release_file_name_with_matches() {
    let lex = Lexer::new('\\');
    let word =
        "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
    let mut vars = HashMap::new();
    for (k, v) in [
        ("VERSION", "v1.2.3"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm"),
        ("TARGETVARIANT", "v7"),
    ] {
        vars.insert(k.to_string(), v.to_string());
    }
    let (out, m) = lex.process_word_with_matches(word, &vars).unwrap();
    assert_eq!(out, "something-v1.2.3.linux-arm-v7.tar.gz");
    assert_eq!(m.used.len(), 4);
    assert!(m.unmatched.is_empty());

    vars.remove("TARGETVARIANT");
    let (out, m) = lex.process_word_with_matches(word, &vars).unwrap();
    assert_eq!(out, "something-v1.2.3.linux-arm.tar.gz");
    assert_eq!(
        m,
        Matches {
            used: ["TARGETARCH", "TARGETOS", "VERSION"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            unmatched: std::iter::once("TARGETVARIANT".to_string()).collect(),
        }
    );
}

#[test]
fn words_split_expansions_but_not_quotes() {
    let lex = Lexer::new('\\');
    let e = env(&[("PORTS", "80/tcp  443/udp "), ("EMPTY", "")]);
    let cases: &[(&str, &[&str])] = &[
        ("$PORTS", &["80/tcp", "443/udp"]),
        ("\"$PORTS\"", &["80/tcp  443/udp "]),
        ("8080 ${PORTS}9", &["8080", "80/tcp", "443/udp", "9"]),
        ("a${EMPTY}b", &["ab"]),
        ("'a  b'\\ c d", &["a  b c", "d"]),
        ("", &[]),
    ];
    for (input, want) in cases {
        assert_eq!(lex.process_words(input, &e).unwrap(), *want, "{input:?}");
    }
    assert!(lex.process_words("'open", &e).is_err());
}

#[test]
fn escape_directive_backtick() {
    let lex = Lexer::new('`');
    check(
        &lex,
        &fixture(),
        &[
            ("C:\\Program Files\\$SHELL", Some("C:\\Program Files\\bash")),
            ("`$SHELL", Some("$SHELL")),
            ("\"`$SHELL `\" ``\"", Some("$SHELL \" `")),
            ("'`$SHELL'", Some("`$SHELL")),
            ("${NOPE:-`}}", Some("}")),
        ],
    );
}

#[test]
fn closures_are_lookups() {
    let lex = Lexer::new('\\');
    let calls = std::cell::Cell::new(0);
    let lookup = |name: &str| {
        calls.set(calls.get() + 1);
        name.strip_prefix("X_").map(str::to_lowercase)
    };
    assert_eq!(
        lex.process_word("$X_AB-${Y:-$X_C}", &lookup).unwrap(),
        "ab-c"
    );
    assert_eq!(calls.get(), 3);
}
