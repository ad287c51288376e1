//! Every parse error is located (line, column) and worded like Docker/BuildKit.

use rbuild_dockerfile::*;

#[test]
fn parse_errors_table() {
    // (source, line, column, message substring)
    let cases: &[(&str, usize, usize, &str)] = &[
        ("FROM x\nFOOO bar\n", 2, 1, "unknown instruction: FOOO"),
        (
            "FROM x\nRUNN bar\n",
            2,
            1,
            "unknown instruction: RUNN (did you mean run?)",
        ),
        (
            "FROM x\ncopi a b\n",
            2,
            1,
            "unknown instruction: COPI (did you mean copy?)",
        ),
        ("FROM x\n  fooo bar\n", 2, 3, "unknown instruction: FOOO"),
        ("", 1, 1, "file with no instructions"),
        ("# just a comment\n\n", 2, 1, "file with no instructions"),
        (
            "FROM\n",
            1,
            1,
            "FROM requires either one or three arguments",
        ),
        (
            "FROM a b\n",
            1,
            1,
            "FROM requires either one or three arguments",
        ),
        (
            "FROM a AS\n",
            1,
            1,
            "FROM requires either one or three arguments",
        ),
        (
            "FROM a AS 1x\n",
            1,
            6,
            "invalid name for build stage: \"1x\"",
        ),
        ("FROM a AS b$\n", 1, 6, "invalid name for build stage"),
        (
            "FROM --platform linux/amd64 a\n",
            1,
            6,
            "missing a value on flag: platform",
        ),
        ("FROM --plat=x a\n", 1, 6, "unknown flag: plat"),
        ("FROM x\nCOPY --frm=a b c\n", 2, 6, "unknown flag: frm"),
        (
            "FROM x\nCOPY --from=a --from=b c d\n",
            2,
            15,
            "duplicate flag specified: from",
        ),
        (
            "FROM x\nCOPY --link=maybe a b\n",
            2,
            6,
            "expecting boolean value for flag link, not: maybe",
        ),
        ("FROM x\nADD --from=a b c\n", 2, 5, "unknown flag: from"),
        ("FROM x\nADD --parents a b\n", 2, 5, "unknown flag: parents"),
        ("FROM x\nENV --x=1 A=b\n", 2, 5, "unknown flag: x"),
        (
            "FROM x\nCOPY onlyone\n",
            2,
            1,
            "COPY requires at least two arguments",
        ),
        ("FROM x\nADD\n", 2, 1, "ADD requires at least two arguments"),
        (
            "FROM x\nCOPY a <<EOF\nx\nEOF\n",
            2,
            6,
            "COPY cannot accept a heredoc as a destination",
        ),
        ("FROM x\nENV\n", 2, 1, "ENV requires at least one argument"),
        ("FROM x\nENV A\n", 2, 5, "ENV must have two arguments"),
        ("FROM x\nENV =b\n", 2, 5, "ENV names can not be blank"),
        (
            "FROM x\nENV A=b c\n",
            2,
            5,
            "Syntax error - can't find = in \"c\"",
        ),
        ("FROM x\nLABEL =b\n", 2, 7, "LABEL names can not be blank"),
        (
            "FROM x\nLABEL\n",
            2,
            1,
            "LABEL requires at least one argument",
        ),
        ("FROM x\nARG\n", 2, 1, "ARG requires at least one argument"),
        ("FROM x\nARG =1\n", 2, 5, "ARG names can not be blank"),
        (
            "FROM x\nSHELL /bin/sh -c\n",
            2,
            7,
            "SHELL requires the arguments to be in JSON form",
        ),
        (
            "FROM x\nSHELL [\"sh\", 1]\n",
            2,
            7,
            "arrays must be comprised of strings only",
        ),
        (
            "FROM x\nSHELL []\n",
            2,
            1,
            "SHELL requires at least one argument",
        ),
        (
            "FROM x\nCMD [\"echo\", [\"nested\"]]\n",
            2,
            5,
            "arrays must be comprised of strings only",
        ),
        ("FROM x\nRUN\n", 2, 1, "RUN requires at least one argument"),
        (
            "FROM x\nWORKDIR\n",
            2,
            1,
            "WORKDIR requires exactly one argument",
        ),
        ("FROM x\nUSER\n", 2, 1, "USER requires exactly one argument"),
        (
            "FROM x\nSTOPSIGNAL\n",
            2,
            1,
            "STOPSIGNAL requires exactly one argument",
        ),
        (
            "FROM x\nMAINTAINER\n",
            2,
            1,
            "MAINTAINER requires exactly one argument",
        ),
        (
            "FROM x\nEXPOSE\n",
            2,
            1,
            "EXPOSE requires at least one argument",
        ),
        (
            "FROM x\nVOLUME\n",
            2,
            1,
            "VOLUME requires at least one argument",
        ),
        (
            "FROM x\nVOLUME [\"\"]\n",
            2,
            8,
            "VOLUME specified can not be an empty string",
        ),
        (
            "FROM x\nHEALTHCHECK\n",
            2,
            1,
            "HEALTHCHECK requires at least one argument",
        ),
        (
            "FROM x\nHEALTHCHECK NONE x\n",
            2,
            13,
            "HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM x\nHEALTHCHECK FOO x\n",
            2,
            13,
            "Unknown type \"FOO\" in HEALTHCHECK (try CMD)",
        ),
        (
            "FROM x\nHEALTHCHECK CMD\n",
            2,
            13,
            "Missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM x\nHEALTHCHECK --interval=10 CMD x\n",
            2,
            13,
            "missing unit in duration",
        ),
        (
            "FROM x\nHEALTHCHECK --timeout=1ns CMD x\n",
            2,
            13,
            "Interval \"timeout\" cannot be less than 1ms",
        ),
        (
            "FROM x\nHEALTHCHECK --interval=-1s CMD x\n",
            2,
            13,
            "Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "FROM x\nHEALTHCHECK --retries=-1 CMD x\n",
            2,
            13,
            "--retries cannot be negative (-1)",
        ),
        (
            "FROM x\nHEALTHCHECK --retries=x CMD x\n",
            2,
            13,
            "invalid syntax",
        ),
        (
            "FROM x\nHEALTHCHECK --bogus=1 CMD x\n",
            2,
            13,
            "unknown flag: bogus",
        ),
        (
            "FROM x\nONBUILD\n",
            2,
            1,
            "ONBUILD requires at least one argument",
        ),
        (
            "FROM x\nONBUILD ONBUILD RUN x\n",
            2,
            9,
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM x\nONBUILD FROM y\n",
            2,
            9,
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM x\nONBUILD maintainer me\n",
            2,
            9,
            "MAINTAINER isn't allowed as an ONBUILD trigger",
        ),
        ("FROM x\nONBUILD FOOO\n", 2, 9, "unknown instruction: FOOO"),
        ("FROM x\nRUN <<EOF\necho\n", 2, 1, "unterminated heredoc"),
        (
            "FROM x\nRUN cat <<A <<B\na\nA\nb\n",
            2,
            1,
            "unterminated heredoc",
        ),
        (
            "FROM x\nRUN --mount=type=foo x\n",
            2,
            5,
            "unsupported mount type \"foo\"",
        ),
        (
            "FROM x\nRUN --mount=type=bind x\n",
            2,
            5,
            "mount target must be set",
        ),
        (
            "FROM x\nRUN --mount=type=cache,target=/c,sharing=bogus x\n",
            2,
            5,
            "unsupported sharing value",
        ),
        (
            "FROM x\nRUN --mount=type=bind,target=/c,sharing=locked x\n",
            2,
            5,
            "invalid cache sharing set for bind mount",
        ),
        (
            "FROM x\nRUN --mount=type=bind,target=/c,mode=0700 x\n",
            2,
            5,
            "mode not allowed for \"bind\" type mounts",
        ),
        (
            "FROM x\nRUN --mount=type=cache,target=/c,mode=9 x\n",
            2,
            5,
            "invalid value 9 for mode",
        ),
        (
            "FROM x\nRUN --mount=type=cache,target=/c,uid=x x\n",
            2,
            5,
            "invalid value x for uid",
        ),
        (
            "FROM x\nRUN --mount=type=tmpfs,target=/c,size=lots x\n",
            2,
            5,
            "invalid size",
        ),
        (
            "FROM x\nRUN --mount=type=bind,target=/c,required x\n",
            2,
            5,
            "unexpected key 'required' for mount type 'bind'",
        ),
        (
            "FROM x\nRUN --mount=type=cache,target=/c,foo=bar x\n",
            2,
            5,
            "unexpected key 'foo' in 'foo=bar'",
        ),
        (
            "FROM x\nRUN --mount=type=cache,target=/c,bogus x\n",
            2,
            5,
            "invalid field 'bogus' must be a key=value pair",
        ),
        (
            "FROM x\nRUN --mount=type=secret,id=a,from=b x\n",
            2,
            5,
            "secret mount should not have a from",
        ),
        (
            "FROM x\nRUN --mount=type=bind,target=/c,ro=maybe x\n",
            2,
            5,
            "invalid value for ro: maybe",
        ),
        (
            "FROM x\nRUN --network=bridge x\n",
            2,
            5,
            "unsupported network mode \"bridge\"",
        ),
        (
            "FROM x\nRUN --security=root x\n",
            2,
            5,
            "unsupported security mode \"root\"",
        ),
        (
            "FROM x\nRUN --mount x\n",
            2,
            5,
            "missing a value on flag: mount",
        ),
        (
            "# escape=x\nFROM x\n",
            1,
            1,
            "invalid escape token 'x' does not match ` or \\",
        ),
        (
            "# escape=\\\n# escape=`\nFROM x\n",
            2,
            1,
            "only one escape parser directive can be used",
        ),
        (
            "# syntax=a\n# syntax=b\nFROM x\n",
            2,
            1,
            "only one syntax parser directive can be used",
        ),
        // Continuations: the error is on the instruction's first line; a flag on a
        // later physical line is located there.
        (
            "FROM x\nCOPY \\\n  --bogus=1 a b\n",
            3,
            3,
            "unknown flag: bogus",
        ),
    ];
    let mut failures = Vec::new();
    for (src, line, col, msg) in cases {
        match parse("Dockerfile", src) {
            Ok(df) => failures.push(format!(
                "{src:?}: expected error, got {:?}",
                df.instructions
            )),
            Err(e) => {
                if (e.line, e.column) != (*line, *col) || !e.message.contains(msg) {
                    failures.push(format!(
                        "{src:?}: want {line}:{col} {msg:?}, got {}:{} {:?}",
                        e.line, e.column, e.message
                    ));
                }
                assert_eq!(e.file_name, "Dockerfile");
                assert!(e
                    .to_string()
                    .starts_with(&format!("Dockerfile:{}:{}: ", e.line, e.column)));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn display_and_render() {
    let e = parse("Dockerfile", "FROM x\nRUN ok\nFOOO bar\n").unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:3:1: unknown instruction: FOOO");
    assert_eq!(e.source_line, "FOOO bar");
    let r = e.render();
    assert!(r.contains("3 | FOOO bar\n"), "{r}");
    assert!(r.contains("  | ^\n"), "{r}");
    let e = parse("Dockerfile", "FROM x\nCOPY --frm=a b c\n").unwrap_err();
    let r = e.render();
    assert!(r.contains("  |      ^\n"), "{r}");
}

#[test]
fn plan_errors_table() {
    // (source, options target, line, column, message substring)
    let cases: &[(&str, Option<&str>, usize, usize, &str)] = &[
        (
            "RUN x\nFROM a\n",
            None,
            1,
            1,
            "no build stage in current context",
        ),
        (
            "ARG A\n  ENV B=1\nFROM a\n",
            None,
            2,
            3,
            "no build stage in current context",
        ),
        ("ARG A\n", None, 1, 1, "no build stage in current context"),
        (
            "FROM a\n",
            Some("nope"),
            1,
            1,
            "target stage \"nope\" could not be found",
        ),
        (
            "FROM a\nCOPY --from=3 x y\n",
            None,
            2,
            1,
            "invalid stage index 3",
        ),
        (
            "FROM a AS one\nCOPY --from=one x y\n",
            None,
            2,
            1,
            "circular dependency detected on stage: one",
        ),
        (
            "FROM a AS one\nCOPY --from=two x y\nFROM b AS two\nCOPY --from=one x y\n",
            None,
            1,
            1,
            "circular dependency",
        ),
        (
            "ARG B=\nFROM $B\n",
            None,
            2,
            1,
            "base name ($B) should not be blank",
        ),
        ("FROM ${A:?needA}\n", None, 1, 6, "needA"),
        ("FROM a\nENV X=${Y\n", None, 2, 7, "missing '}'"),
    ];
    let mut failures = Vec::new();
    for (src, target, line, col, msg) in cases {
        let df = parse("Dockerfile", src).unwrap();
        let opts = PlanOptions {
            target: target.map(str::to_string),
            ..PlanOptions::default()
        };
        let res = plan(&df, &opts).and_then(|p| {
            // Expansion errors surface when a stage's instructions are expanded.
            for st in &p.stages {
                let mut sc = Scope::new(&p, st.index, &opts, &[]);
                for i in &st.instructions {
                    let e = sc.expand(i)?;
                    sc.apply(&e);
                }
            }
            Ok(p)
        });
        match res {
            Ok(_) => failures.push(format!("{src:?}: expected error")),
            Err(e) => {
                if (e.line, e.column) != (*line, *col) || !e.message.contains(msg) {
                    failures.push(format!(
                        "{src:?}: want {line}:{col} {msg:?}, got {}:{} {:?}",
                        e.line, e.column, e.message
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
