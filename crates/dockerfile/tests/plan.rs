//! Planning and scope tests: stages, ARG scoping, build args, platform and
//! predefined args, ENV precedence, expansion where Docker expands.

use std::collections::BTreeMap;

use rbuild_dockerfile::*;

fn opts(args: &[(&str, &str)]) -> PlanOptions {
    PlanOptions {
        build_args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..PlanOptions::default()
    }
}

/// Expands every instruction of `stage` in order, returning the expanded ones and the final scope.
fn dispatch(
    p: &Plan,
    stage: usize,
    o: &PlanOptions,
    base_env: &[String],
) -> (Vec<Instruction>, Scope) {
    let mut sc = Scope::new(p, stage, o, base_env);
    let mut out = Vec::new();
    for i in &p.stages[stage].instructions {
        let e = sc.expand(i).unwrap_or_else(|e| panic!("{}", e.render()));
        sc.apply(&e);
        out.push(e);
    }
    (out, sc)
}

fn workdirs(ins: &[Instruction]) -> Vec<String> {
    ins.iter()
        .filter_map(|i| match &i.kind {
            InstructionKind::Workdir(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn arg_scoping_table() {
    // (dockerfile, build args, expected WORKDIR values of the last stage)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        // Global ARG is not visible in a stage without re-declaration.
        ("ARG V=1\nFROM a\nWORKDIR /$V\n", &[], &["/"]),
        // Re-declared without value: inherits the global default.
        ("ARG V=1\nFROM a\nARG V\nWORKDIR /$V\n", &[], &["/1"]),
        // --build-arg overrides the global default.
        ("ARG V=1\nFROM a\nARG V\nWORKDIR /$V\n", &[("V", "9")], &["/9"]),
        // --build-arg overrides a stage default.
        ("FROM a\nARG V=1\nWORKDIR /$V\n", &[("V", "9")], &["/9"]),
        // Usage before the ARG line sees nothing.
        ("FROM a\nWORKDIR /$V\nARG V=1\nWORKDIR /$V\n", &[], &["/", "/1"]),
        // ENV overrides ARG of the same name.
        ("FROM a\nARG V=arg\nENV V=env\nWORKDIR /$V\n", &[("V", "cli")], &["/env"]),
        // ARG defaults can reference earlier ARG/ENV.
        ("FROM a\nENV B=/b\nARG C=$B/c\nWORKDIR $C\n", &[], &["/b/c"]),
        // Declared without value and no build arg: unset.
        ("FROM a\nARG V\nWORKDIR /x${V:-def}\n", &[], &["/xdef"]),
        // ENV in one instruction sees values from before the instruction.
        ("FROM a\nENV A=1\nENV A=2 B=$A\nWORKDIR /$A$B\n", &[], &["/21"]),
        // Platform args: global only, need ARG in the stage.
        ("FROM a\nWORKDIR /$TARGETARCH\nARG TARGETARCH\nARG BUILDOS\nWORKDIR /$TARGETARCH/$BUILDOS\n", &[], &["/", "/amd64/linux"]),
        // Predefined proxy args are not expandable without declaration.
        ("FROM a\nWORKDIR /$HTTP_PROXY\n", &[("HTTP_PROXY", "p")], &["/"]),
        // Stage ARGs do not leak into the next stage.
        ("FROM a\nARG V=1\nFROM b\nWORKDIR /$V\n", &[], &["/"]),
        // Single quotes stop expansion; escapes are removed.
        ("FROM a\nARG V=1\nWORKDIR '/$V'\n", &[], &["/$V"]),
        ("FROM a\nARG V=1\nWORKDIR /\\$V\n", &[], &["/$V"]),
    ];
    for (src, args, want) in cases {
        let df = parse("Dockerfile", src).unwrap();
        let o = opts(args);
        let p = plan(&df, &o).unwrap();
        let (ins, _) = dispatch(&p, p.target, &o, &[]);
        assert_eq!(
            workdirs(&ins),
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{src:?} {args:?}"
        );
    }
}

#[test]
fn from_expansion_and_bases() {
    let src = "ARG REG=docker.io\nARG TAG\nFROM --platform=$BUILDPLATFORM $REG/golang:${TAG:-1.22} AS Build\nFROM scratch\nFROM build AS test\nFROM BUILD\nFROM alpine\n";
    let df = parse("Dockerfile", src).unwrap();
    let o = PlanOptions {
        build_platform: Platform::parse("linux/arm64/v8").unwrap(),
        ..opts(&[("TAG", "1.23")])
    };
    let p = plan(&df, &o).unwrap();
    let bases: Vec<Base> = p.stages.iter().map(|s| s.base.clone()).collect();
    assert_eq!(
        bases,
        vec![
            Base::Image("docker.io/golang:1.23".into()),
            Base::Scratch,
            Base::Stage(0),
            Base::Stage(0),
            Base::Image("alpine".into())
        ]
    );
    assert_eq!(p.stages[0].name.as_deref(), Some("build"));
    assert_eq!(p.stages[0].platform.as_deref(), Some("linux/arm64"));
    assert_eq!(p.stages[0].line, 3);
    assert_eq!(p.stages[2].deps, vec![0]);
    assert_eq!(p.target, 4);
    assert!(p.unused_build_args.is_empty());
}

#[test]
fn targets_deps_and_unused_args() {
    let src = "FROM a AS base\nARG USED\nFROM b AS tools\nARG ONLY_TOOLS\nFROM base AS final\nARG N=1\nCOPY --from=tools /x /y\nRUN --mount=type=bind,from=${N},target=/m true\nCOPY --from=nginx:latest /etc/nginx /n\nFROM final AS unrelated\n";
    let df = parse("Dockerfile", src).unwrap();
    let o = PlanOptions {
        target: Some("FINAL".into()),
        ..opts(&[
            ("USED", "1"),
            ("ONLY_TOOLS", "x"),
            ("EXTRA", "e"),
            ("HTTP_PROXY", "p"),
        ])
    };
    let p = plan(&df, &o).unwrap();
    assert_eq!(p.target, 2);
    assert_eq!(p.stages[2].deps, vec![0, 1]);
    assert_eq!(p.build_order(), vec![0, 1, 2]);
    assert_eq!(p.unused_build_args, vec!["EXTRA".to_string()]);
    assert_eq!(p.resolve_from("tools"), FromRef::Stage(1));
    assert_eq!(p.resolve_from("1"), FromRef::Stage(1));
    assert_eq!(
        p.resolve_from("nginx:latest"),
        FromRef::Image("nginx:latest".into())
    );
    // Forward reference by name is allowed (BuildKit resolves all stages).
    let df = parse(
        "Dockerfile",
        "FROM a AS one\nCOPY --from=two /x /y\nFROM b AS two\n",
    )
    .unwrap();
    let p = plan(&df, &PlanOptions::default()).unwrap();
    assert_eq!(p.stages[0].deps, vec![1]);
    assert_eq!(p.build_order(), vec![1]);
}

#[test]
fn run_env_used_args_and_base_env() {
    let src = "FROM a\nARG A=1\nARG B\nARG HTTP_PROXY\nENV A=env PATH=$PATH:/x\nARG C=c\n";
    let df = parse("Dockerfile", src).unwrap();
    let o = opts(&[("B", "b"), ("NO_PROXY", "np"), ("https_proxy", "hp")]);
    let p = plan(&df, &o).unwrap();
    let (_, sc) = dispatch(
        &p,
        0,
        &o,
        &["PATH=/bin".to_string(), "HOME=/root".to_string()],
    );
    assert_eq!(sc.env(), vec!["PATH=/bin:/x", "HOME=/root", "A=env"]);
    assert_eq!(
        sc.run_env(),
        vec![
            "PATH=/bin:/x",
            "HOME=/root",
            "A=env",
            "B=b",
            "C=c",
            "https_proxy=hp",
            "NO_PROXY=np"
        ]
    );
    assert_eq!(
        sc.used_args(),
        vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "b".to_string()),
            ("C".to_string(), "c".to_string())
        ]
    );
    assert_eq!(sc.lookup("A").as_deref(), Some("env"));
}

/// Docker 20.10 lists every ARG declaration before a RUN in the history, redeclarations again,
/// with the current value (ENV of the same name first) and empty when unset.
#[test]
fn history_args_follow_docker_20_10() {
    let src = "FROM a\nARG V=arg\nENV V=env\nARG W\nARG L=l1\nARG L=l2\n";
    let df = parse("Dockerfile", src).unwrap();
    let o = opts(&[("V", "cli")]);
    let p = plan(&df, &o).unwrap();
    let (_, sc) = dispatch(&p, 0, &o, &[]);
    let got: Vec<String> = sc
        .history_args()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(got, ["V=env", "W=", "L=l2", "L=l2"]);
}

#[test]
fn expose_keys_expand_ranges_and_lowercase_protocols() {
    assert_eq!(rbuild_dockerfile::expose_keys("80"), ["80/tcp"]);
    assert_eq!(rbuild_dockerfile::expose_keys("53/UDP"), ["53/udp"]);
    assert_eq!(
        rbuild_dockerfile::expose_keys("8000-8002/tcp"),
        ["8000/tcp", "8001/tcp", "8002/tcp"]
    );
    assert_eq!(rbuild_dockerfile::expose_keys("9-1"), ["9-1/tcp"]);
}

#[test]
fn expansion_applies_only_where_docker_expands() {
    let src = "FROM a\nARG V=val\nRUN echo $V\nCMD echo $V\nENTRYPOINT [\"$V\"]\nSHELL [\"/bin/$V\"]\nHEALTHCHECK CMD $V\nONBUILD WORKDIR $V\n\
COPY --chown=$V:$V --chmod=$V --from=$V --exclude=$V $V /$V/\nADD --checksum=$V --chown=$V $V /$V\n\
ENV $V=$V\nLABEL $V=\"a $V\"\nEXPOSE $V 80/$V\nVOLUME /$V\nUSER $V\nSTOPSIGNAL $V\nRUN --mount=type=cache,target=/$V,id=$V echo $V\n\
COPY <<EOF <<'RAW' /d\n\"$V\" '$V'\nEOF\n$V\nRAW\n";
    let df = parse("Dockerfile", src).unwrap();
    let o = PlanOptions::default();
    let p = plan(&df, &o).unwrap();
    let (ins, _) = dispatch(&p, 0, &o, &[]);
    let kinds: Vec<InstructionKind> = ins.into_iter().map(|i| i.kind).collect();
    let s = |v: &str| v.to_string();
    // Not expanded.
    assert_eq!(
        kinds[1],
        InstructionKind::Run(Run {
            command: Command::Shell(s("echo $V")),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None
        })
    );
    assert_eq!(kinds[2], InstructionKind::Cmd(Command::Shell(s("echo $V"))));
    assert_eq!(
        kinds[3],
        InstructionKind::Entrypoint(Command::Exec(vec![s("$V")]))
    );
    assert_eq!(kinds[4], InstructionKind::Shell(vec![s("/bin/$V")]));
    assert!(
        matches!(&kinds[5], InstructionKind::Healthcheck(Healthcheck::Check { command: Command::Shell(c), .. }) if c == "$V")
    );
    assert!(
        matches!(&kinds[6], InstructionKind::Onbuild(i) if i.kind == InstructionKind::Workdir(s("$V")))
    );
    // Expanded.
    assert_eq!(
        kinds[7],
        InstructionKind::Copy(Copy {
            sources: vec![s("val")],
            dest: s("/val/"),
            from: Some(s("val")),
            chown: Some(s("val:val")),
            chmod: Some(s("val")),
            exclude: vec![s("val")],
            ..Copy::default()
        })
    );
    let InstructionKind::Add(a) = &kinds[8] else {
        panic!()
    };
    assert_eq!(
        (
            a.checksum.as_deref(),
            a.copy.chown.as_deref(),
            a.copy.dest.as_str()
        ),
        (Some("val"), Some("val"), "/val")
    );
    assert_eq!(
        kinds[9],
        InstructionKind::Env(vec![KeyValue {
            key: s("val"),
            value: s("val")
        }])
    );
    assert_eq!(
        kinds[10],
        InstructionKind::Label(vec![KeyValue {
            key: s("val"),
            value: s("a val")
        }])
    );
    assert_eq!(
        kinds[11],
        InstructionKind::Expose(vec![s("val"), s("80/val")])
    );
    assert_eq!(kinds[12], InstructionKind::Volume(vec![s("/val")]));
    assert_eq!(kinds[13], InstructionKind::User(s("val")));
    assert_eq!(kinds[14], InstructionKind::StopSignal(s("val")));
    let InstructionKind::Run(r) = &kinds[15] else {
        panic!()
    };
    assert_eq!(r.command, Command::Shell(s("echo $V")));
    assert!(
        matches!(&r.mounts[0], Mount::Cache { target, id: Some(id), .. } if target == "/val" && id == "val")
    );
    let InstructionKind::Copy(c) = &kinds[16] else {
        panic!()
    };
    assert_eq!(
        c.heredocs[0].content, "\"val\" 'val'\n",
        "unquoted heredoc expands, quotes kept"
    );
    assert_eq!(c.heredocs[1].content, "$V\n", "quoted heredoc is literal");
}

#[test]
fn platform_parse_and_display() {
    // Parsing normalises as containerd does: the default arm64 variant is left out.
    let cases = [
        ("linux/amd64", Some(("linux", "amd64", None)), "linux/amd64"),
        (
            "linux/arm64/v8",
            Some(("linux", "arm64", None)),
            "linux/arm64",
        ),
        (
            "linux/arm/v7",
            Some(("linux", "arm", Some("v7"))),
            "linux/arm/v7",
        ),
        (
            "Windows/AMD64",
            Some(("windows", "amd64", None)),
            "windows/amd64",
        ),
        ("linux/", None, ""),
        ("a/b/c/d", None, ""),
        ("", None, ""),
    ];
    for (text, want, shown) in cases {
        let got = Platform::parse(text).ok();
        let got_t = got
            .as_ref()
            .map(|p| (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()));
        assert_eq!(got_t, want, "{text}");
        if let Some(p) = got {
            assert_eq!(p.to_string(), shown);
        }
    }
}

#[test]
fn global_args_see_platform_and_build_args() {
    let src = "ARG BASE=img-$TARGETOS-$TARGETARCH$TARGETVARIANT\nARG OTHER=${BASE}x\nFROM $OTHER\n";
    let df = parse("Dockerfile", src).unwrap();
    let o = PlanOptions {
        target_platform: Platform::parse("linux/arm/v7").unwrap(),
        ..PlanOptions::default()
    };
    let p = plan(&df, &o).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("img-linux-armv7x".into()));
    let o = PlanOptions {
        target_platform: Platform::parse("linux/arm/v7").unwrap(),
        ..opts(&[("BASE", "b")])
    };
    let p = plan(&df, &o).unwrap();
    assert_eq!(p.stages[0].base, Base::Image("bx".into()));
}
