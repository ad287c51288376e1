//! Parser tests: every instruction, flag, directive, continuation and heredoc rule.

use std::time::Duration;

use rbuild_dockerfile::*;

fn parse_ok(src: &str) -> Dockerfile {
    match parse("Dockerfile", src) {
        Ok(df) => df,
        Err(e) => panic!("unexpected error for {src:?}:\n{}", e.render()),
    }
}

/// Parses `FROM x` + `line` and returns the kind of the instruction of `line`.
fn kind(line: &str) -> InstructionKind {
    let df = parse_ok(&format!("FROM x\n{line}\n"));
    assert_eq!(
        df.instructions.len(),
        2,
        "{line:?} produced {:?}",
        df.instructions
    );
    df.instructions[1].kind.clone()
}

fn s(v: &str) -> String {
    v.to_string()
}

fn sv(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: s(k),
        value: s(v),
    }
}

fn run(cmd: Command) -> Run {
    Run {
        command: cmd,
        heredocs: vec![],
        mounts: vec![],
        network: None,
        security: None,
    }
}

#[test]
fn instructions_table() {
    let cases: Vec<(&str, InstructionKind)> = vec![
        ("RUN echo hi", InstructionKind::Run(run(Command::Shell(s("echo hi"))))),
        ("run   echo  hi  ", InstructionKind::Run(run(Command::Shell(s("echo  hi"))))),
        (r#"RUN ["echo", "hi"]"#, InstructionKind::Run(run(Command::Exec(sv(&["echo", "hi"]))))),
        // Invalid JSON falls back to the shell form, verbatim.
        (r#"RUN [echo, "hi"]"#, InstructionKind::Run(run(Command::Shell(s(r#"[echo, "hi"]"#))))),
        (r#"RUN ["echo", "hi"] trailing"#, InstructionKind::Run(run(Command::Shell(s(r#"["echo", "hi"] trailing"#))))),
        (r#"CMD ["a", "b c"]"#, InstructionKind::Cmd(Command::Exec(sv(&["a", "b c"])))),
        ("CMD []", InstructionKind::Cmd(Command::Exec(vec![]))),
        ("CMD echo $HOME", InstructionKind::Cmd(Command::Shell(s("echo $HOME")))),
        (r#"ENTRYPOINT ["/bin/app"]"#, InstructionKind::Entrypoint(Command::Exec(sv(&["/bin/app"])))),
        ("ENTRYPOINT exec app", InstructionKind::Entrypoint(Command::Shell(s("exec app")))),
        (r#"SHELL ["/bin/bash", "-c"]"#, InstructionKind::Shell(sv(&["/bin/bash", "-c"]))),
        ("ENV A=1 B=\"two words\"", InstructionKind::Env(vec![kv("A", "1"), kv("B", "\"two words\"")])),
        ("ENV A 1 2  3", InstructionKind::Env(vec![kv("A", "1 2  3")])),
        ("ENV A=", InstructionKind::Env(vec![kv("A", "")])),
        (r"ENV A=a\ b", InstructionKind::Env(vec![kv("A", r"a\ b")])),
        ("LABEL a=b \"c d\"=e", InstructionKind::Label(vec![kv("a", "b"), kv("\"c d\"", "e")])),
        ("LABEL version 1.0", InstructionKind::Label(vec![kv("version", "1.0")])),
        ("ARG A", InstructionKind::Arg(vec![ArgDecl { name: s("A"), default: None }])),
        ("ARG A=1 B", InstructionKind::Arg(vec![ArgDecl { name: s("A"), default: Some(s("1")) }, ArgDecl { name: s("B"), default: None }])),
        ("ARG A=", InstructionKind::Arg(vec![ArgDecl { name: s("A"), default: Some(s("")) }])),
        ("MAINTAINER Jane <j@x>", InstructionKind::Maintainer(s("Jane <j@x>"))),
        ("EXPOSE 80 443/tcp  53/udp", InstructionKind::Expose(sv(&["80", "443/tcp", "53/udp"]))),
        ("VOLUME /a /b", InstructionKind::Volume(sv(&["/a", "/b"]))),
        (r#"VOLUME ["/data", "/x y"]"#, InstructionKind::Volume(sv(&["/data", "/x y"]))),
        ("USER app:app", InstructionKind::User(s("app:app"))),
        ("WORKDIR /a b", InstructionKind::Workdir(s("/a b"))),
        ("STOPSIGNAL SIGKILL", InstructionKind::StopSignal(s("SIGKILL"))),
        ("HEALTHCHECK NONE", InstructionKind::Healthcheck(Healthcheck::None)),
        ("healthcheck none", InstructionKind::Healthcheck(Healthcheck::None)),
        (
            "HEALTHCHECK --interval=5m --timeout=3s --start-period=1.5s --start-interval=100ms --retries=4 CMD curl -f http://x/ || exit 1",
            InstructionKind::Healthcheck(Healthcheck::Check {
                command: Command::Shell(s("curl -f http://x/ || exit 1")),
                interval: Some(Duration::from_secs(300)),
                timeout: Some(Duration::from_secs(3)),
                start_period: Some(Duration::from_millis(1500)),
                start_interval: Some(Duration::from_millis(100)),
                retries: Some(4),
            }),
        ),
        (
            r#"HEALTHCHECK CMD ["true"]"#,
            InstructionKind::Healthcheck(Healthcheck::Check {
                command: Command::Exec(sv(&["true"])),
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None,
            }),
        ),
        (
            "COPY a b /dst/",
            InstructionKind::Copy(Copy { sources: sv(&["a", "b"]), dest: s("/dst/"), ..Copy::default() }),
        ),
        (
            r#"COPY ["a b", "/d"]"#,
            InstructionKind::Copy(Copy { sources: sv(&["a b"]), dest: s("/d"), ..Copy::default() }),
        ),
        (
            "COPY --from=build --chown=1:2 --chmod=755 --link --parents --exclude=*.md --exclude=x ./src /app",
            InstructionKind::Copy(Copy {
                sources: sv(&["./src"]),
                dest: s("/app"),
                from: Some(s("build")),
                chown: Some(s("1:2")),
                chmod: Some(s("755")),
                link: true,
                parents: true,
                exclude: sv(&["*.md", "x"]),
                ..Copy::default()
            }),
        ),
        (
            "COPY --link=false a b",
            InstructionKind::Copy(Copy { sources: sv(&["a"]), dest: s("b"), ..Copy::default() }),
        ),
        (
            "ADD --checksum=sha256:abc --keep-git-dir --unpack=false --chown=u https://x/y.tgz /z",
            InstructionKind::Add(Add {
                copy: Copy { sources: sv(&["https://x/y.tgz"]), dest: s("/z"), chown: Some(s("u")), ..Copy::default() },
                checksum: Some(s("sha256:abc")),
                keep_git_dir: true,
                unpack: Some(false),
            }),
        ),
        (
            "ADD a.tar /",
            InstructionKind::Add(Add { copy: Copy { sources: sv(&["a.tar"]), dest: s("/"), ..Copy::default() }, ..Add::default() }),
        ),
        // Quoted flag values lose their quotes, as in BuildKit's flag extractor.
        (
            "COPY --chown=\"a b\" x y",
            InstructionKind::Copy(Copy { sources: sv(&["x"]), dest: s("y"), chown: Some(s("a b")), ..Copy::default() }),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(kind(line), want, "line: {line}");
    }
}

#[test]
fn from_forms() {
    let df = parse_ok(
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\nfrom scratch as final\nFROM a\n",
    );
    let froms: Vec<From> = df
        .instructions
        .iter()
        .map(|i| match &i.kind {
            InstructionKind::From(f) => f.clone(),
            k => panic!("{k:?}"),
        })
        .collect();
    assert_eq!(
        froms,
        vec![
            From {
                image: s("golang:1.22"),
                platform: Some(s("$BUILDPLATFORM")),
                alias: Some(s("Build"))
            },
            From {
                image: s("scratch"),
                platform: None,
                alias: Some(s("final"))
            },
            From {
                image: s("a"),
                platform: None,
                alias: None
            },
        ]
    );
}

#[test]
fn run_flags_and_mounts() {
    let InstructionKind::Run(r) = kind(
        "RUN --network=none --security=insecure \
         --mount=type=bind,source=/s,target=/t,from=build,rw \
         --mount=type=cache,id=go,target=/root/.cache,sharing=private,mode=0700,uid=1000,gid=1000,ro \
         --mount=type=tmpfs,target=/tmp,size=64m \
         --mount=type=secret,id=tok,target=/run/t,env=TOKEN,required,mode=0440 \
         --mount=type=ssh,id=default,required=false \
         --mount=target=/plain \
         make",
    ) else {
        panic!()
    };
    assert_eq!(r.command, Command::Shell(s("make")));
    assert_eq!(r.network, Some(NetworkMode::None));
    assert_eq!(r.security, Some(SecurityMode::Insecure));
    assert_eq!(
        r.mounts,
        vec![
            Mount::Bind {
                target: s("/t"),
                source: Some(s("/s")),
                from: Some(s("build")),
                read_write: true
            },
            Mount::Cache {
                target: s("/root/.cache"),
                id: Some(s("go")),
                read_only: true,
                sharing: CacheSharing::Private,
                from: None,
                source: None,
                mode: Some(0o700),
                uid: Some(1000),
                gid: Some(1000),
            },
            Mount::Tmpfs {
                target: s("/tmp"),
                size: Some(64 * 1024 * 1024)
            },
            Mount::Secret {
                id: Some(s("tok")),
                target: Some(s("/run/t")),
                env: Some(s("TOKEN")),
                required: true,
                mode: Some(0o440),
                uid: None,
                gid: None,
            },
            Mount::Ssh {
                id: Some(s("default")),
                target: None,
                required: false,
                mode: None,
                uid: None,
                gid: None
            },
            Mount::Bind {
                target: s("/plain"),
                source: None,
                from: None,
                read_write: false
            },
        ]
    );
}

#[test]
fn directives() {
    let cases: Vec<(&str, Directives, char)> = vec![
        (
            "# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM x\n",
            Directives {
                syntax: Some(s("docker/dockerfile:1")),
                escape: Some('`'),
                check: Some(s("skip=all")),
            },
            '`',
        ),
        // Whitespace and case are tolerated.
        (
            "#  ESCAPE = `  \nFROM x\n",
            Directives {
                escape: Some('`'),
                ..Directives::default()
            },
            '`',
        ),
        // After a blank line a directive is a comment.
        ("\n# escape=`\nFROM x\n", Directives::default(), '\\'),
        // After a plain comment, too.
        ("# hello\n# escape=`\nFROM x\n", Directives::default(), '\\'),
        // An unknown directive ends the directive section.
        (
            "# foo=bar\n# escape=`\nFROM x\n",
            Directives::default(),
            '\\',
        ),
        // After an instruction, too.
        ("FROM x\n# escape=`\n", Directives::default(), '\\'),
    ];
    for (src, want, esc) in cases {
        let df = parse_ok(src);
        assert_eq!(df.directives, want, "{src:?}");
        assert_eq!(df.escape, esc, "{src:?}");
    }
}

#[test]
fn backtick_escape_and_windows_paths() {
    let df =
        parse_ok("# escape=`\nFROM x\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n  && echo done\n");
    assert_eq!(
        df.instructions[1].kind,
        InstructionKind::Copy(Copy {
            sources: sv(&["testfile.txt"]),
            dest: s("c:\\"),
            ..Copy::default()
        })
    );
    assert_eq!(
        df.instructions[2].kind,
        InstructionKind::Run(run(Command::Shell(s("dir c:\\   && echo done"))))
    );
    assert_eq!(df.instructions[2].line, 4);
}

#[test]
fn continuations_comments_and_blank_lines() {
    let src = "FROM x\nRUN echo a \\\n# a comment\n    # indented comment\n\n   \\\n  b \\\t \nc\nRUN last\n";
    let df = parse_ok(src);
    assert_eq!(
        df.instructions[1].kind,
        InstructionKind::Run(run(Command::Shell(s("echo a      b c"))))
    );
    assert_eq!(df.instructions[1].line, 2);
    assert_eq!(df.instructions[1].original, "RUN echo a      b c");
    assert_eq!(df.instructions[2].line, 9);
    // The instruction span covers all its physical lines.
    let text = &src[df.instructions[1].span.start..df.instructions[1].span.end];
    assert!(
        text.starts_with("RUN echo a") && text.ends_with("c"),
        "{text:?}"
    );
    // An empty continuation line produces the NoEmptyContinuation warning.
    assert_eq!(df.warnings.len(), 1);
    assert_eq!(df.warnings[0].rule, "NoEmptyContinuation");
    assert_eq!(df.warnings[0].line, 2);
}

#[test]
fn continuation_at_eof_and_crlf_and_bom() {
    let df = parse_ok("\u{feff}FROM x\r\nRUN a \\\r\n  b\r\nRUN c \\");
    assert_eq!(
        df.instructions[1].kind,
        InstructionKind::Run(run(Command::Shell(s("a   b"))))
    );
    assert_eq!(
        df.instructions[2].kind,
        InstructionKind::Run(run(Command::Shell(s("c"))))
    );
}

#[test]
fn heredocs() {
    let src = "FROM x\nRUN <<EOF\necho $A\n\"q\"\nEOF\nRUN python3 <<'PY' > out\nprint('$x')\nPY\nRUN <<-\"T\" cat 3<<X\n\tindented\n\tT\nthree\nX\nCOPY <<a.txt <<b.txt /dst/\nA\na.txt\nB\nb.txt\nADD <<-EOT /f\n\tbody\n\tEOT\nRUN cat<<NOT_A_HEREDOC\nRUN [\"sh\", \"-c\", \"<<EOF\"]\n";
    let df = parse_ok(src);
    let kinds: Vec<&InstructionKind> = df.instructions.iter().map(|i| &i.kind).collect();
    let InstructionKind::Run(r) = kinds[1] else {
        panic!()
    };
    assert_eq!(r.command, Command::Shell(s("<<EOF")));
    assert_eq!(
        r.heredocs,
        vec![Heredoc {
            name: s("EOF"),
            content: s("echo $A\n\"q\"\n"),
            expand: true,
            chomp_tabs: false,
            file_descriptor: None
        }]
    );
    let InstructionKind::Run(r) = kinds[2] else {
        panic!()
    };
    assert_eq!(r.command, Command::Shell(s("python3 <<'PY' > out")));
    assert_eq!(r.heredocs[0].name, "PY");
    assert!(!r.heredocs[0].expand);
    let InstructionKind::Run(r) = kinds[3] else {
        panic!()
    };
    assert_eq!(r.heredocs.len(), 2);
    assert_eq!(
        r.heredocs[0],
        Heredoc {
            name: s("T"),
            content: s("\tindented\n"),
            expand: false,
            chomp_tabs: true,
            file_descriptor: None
        }
    );
    assert_eq!(r.heredocs[0].body(), "indented\n");
    assert_eq!(r.heredocs[1].file_descriptor, Some(3));
    assert_eq!(r.heredocs[1].content, "three\n");
    let InstructionKind::Copy(c) = kinds[4] else {
        panic!()
    };
    assert!(c.sources.is_empty());
    assert_eq!(c.dest, "/dst/");
    assert_eq!(
        c.heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str()))
            .collect::<Vec<_>>(),
        vec![("a.txt", "A\n"), ("b.txt", "B\n")]
    );
    let InstructionKind::Add(a) = kinds[5] else {
        panic!()
    };
    assert_eq!(a.copy.heredocs[0].body(), "body\n");
    let InstructionKind::Run(r) = kinds[6] else {
        panic!()
    };
    assert!(r.heredocs.is_empty(), "cat<<X is not a heredoc word");
    let InstructionKind::Run(r) = kinds[7] else {
        panic!()
    };
    assert!(r.heredocs.is_empty(), "no heredocs in exec form");
    assert_eq!(df.instructions.len(), 8);
    // Line numbers skip over heredoc bodies.
    assert_eq!(
        df.instructions.iter().map(|i| i.line).collect::<Vec<_>>(),
        vec![1, 2, 6, 9, 14, 19, 22, 23]
    );
}

#[test]
fn heredocs_only_for_run_copy_add() {
    let df = parse_ok("FROM x\nCMD cat <<EOF\nENV A=1\n");
    assert_eq!(df.instructions.len(), 3);
    assert_eq!(
        df.instructions[1].kind,
        InstructionKind::Cmd(Command::Shell(s("cat <<EOF")))
    );
}

#[test]
fn onbuild() {
    let k = kind("ONBUILD RUN --mount=type=cache,target=/c echo hi");
    let InstructionKind::Onbuild(inner) = k else {
        panic!()
    };
    assert_eq!(inner.original, "RUN --mount=type=cache,target=/c echo hi");
    assert_eq!(inner.line, 2);
    let InstructionKind::Run(r) = inner.kind else {
        panic!()
    };
    assert_eq!(r.mounts.len(), 1);
    assert!(
        matches!(kind("onbuild copy a b"), InstructionKind::Onbuild(i) if matches!(i.kind, InstructionKind::Copy(_)))
    );
}

#[test]
fn spans_and_original() {
    let src = "FROM x\n  COPY  a  b  \n";
    let df = parse_ok(src);
    let i = &df.instructions[1];
    assert_eq!(i.original, "COPY  a  b");
    assert_eq!(&src[i.span.start..i.span.start + 4], "COPY");
    assert_eq!(i.line, 2);
}

#[test]
fn instructions_before_from_parse_but_do_not_plan() {
    // parse() accepts fragments (used for ONBUILD triggers); plan() enforces FROM first.
    let df = parse_ok("RUN echo\n");
    let e = plan(&df, &PlanOptions::default()).unwrap_err();
    assert_eq!((e.line, e.column), (1, 1));
    assert!(
        e.message.contains("no build stage in current context"),
        "{e}"
    );
}

#[test]
fn escaped_escape_at_end_of_line_is_not_a_continuation() {
    let df = parse_ok("FROM x\nRUN echo \\\\\nRUN next\n");
    assert_eq!(df.instructions.len(), 3);
    assert_eq!(
        df.instructions[1].kind,
        InstructionKind::Run(run(Command::Shell(s("echo \\\\"))))
    );
    // An escape alone on a line still continues.
    let df = parse_ok("FROM x\nRUN a \\\n\\\n b\n");
    assert_eq!(df.instructions.len(), 2);
    assert_eq!(
        df.instructions[1].kind,
        InstructionKind::Run(run(Command::Shell(s("a  b"))))
    );
}

#[test]
fn heredoc_in_onbuild_and_after_flags() {
    let df = parse_ok(
        "FROM x\nONBUILD RUN <<EOF\necho hi\nEOF\nRUN --network=none <<EOF\nx\nEOF\nRUN done\n",
    );
    let InstructionKind::Onbuild(inner) = &df.instructions[1].kind else {
        panic!()
    };
    let InstructionKind::Run(r) = &inner.kind else {
        panic!()
    };
    assert_eq!(r.heredocs[0].content, "echo hi\n");
    // The trigger text re-parses to the same instruction (as the engine does for ONBUILD).
    assert_eq!(inner.original, "RUN <<EOF\necho hi\nEOF");
    let again = parse_ok(&inner.original);
    assert_eq!(again.instructions[0].kind, inner.kind);
    let InstructionKind::Run(r) = &df.instructions[2].kind else {
        panic!()
    };
    assert_eq!(
        (r.network, r.heredocs[0].content.as_str()),
        (Some(NetworkMode::None), "x\n")
    );
    assert_eq!(df.instructions[3].line, 8);
}

#[test]
fn never_panics_on_odd_input() {
    let inputs = [
        "\u{feff}",
        "\\",
        "FROM x\n\\",
        "FROM x\nRUN <<",
        "FROM x\nRUN <<-",
        "FROM x\nRUN 99999999999<<EOF\nEOF\n",
        "FROM x\nCOPY <<EOF\nEOF\n",
        "# escape=`\n`",
        "FROM x\nHEALTHCHECK --interval=9999999999999999h CMD x\n",
        "FROM x\nRUN --mount=type=tmpfs,target=/t,size=1e400 x\n",
        "FROM x\nRUN --mount=\"unterminated x\n",
        "FROM ☃\nRUN ☃ \\\n☃",
        "FROM x\nONBUILD\tRUN\ty",
        "FROM x\nENV \"\"=\"\"\n",
        "FROM x\nARG ===\n",
    ];
    for src in inputs {
        if let Ok(df) = parse("Dockerfile", src) {
            let o = PlanOptions::default();
            let _ = check(&df, &o);
            if let Ok(p) = plan(&df, &o) {
                for st in &p.stages {
                    let sc = Scope::new(&p, st.index, &o, &[]);
                    for i in &st.instructions {
                        let _ = sc.expand(i);
                    }
                }
            }
        }
    }
}
