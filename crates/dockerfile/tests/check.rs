//! Build checks (`docker build --check`): each rule fires where BuildKit's does
//! and not on clean input; the `check` directive skips rules or makes them errors.

use rbuild_dockerfile::*;

fn rules(src: &str) -> Vec<(String, usize)> {
    let df = parse("Dockerfile", src).unwrap();
    check(&df, &PlanOptions::default())
        .into_iter()
        .map(|d| (d.rule, d.line))
        .collect()
}

#[test]
fn rules_table() {
    // (source, expected (rule, line) pairs)
    let cases: &[(&str, &[(&str, usize)])] = &[
        ("FROM a\nRUN x\n", &[]),
        ("FROM a AS Build\n", &[("StageNameCasing", 1)]),
        ("FROM a as b\n", &[("FromAsCasing", 1)]),
        ("from a AS b\n", &[("FromAsCasing", 1)]),
        ("FROM a\nCMD echo hi\n", &[("JSONArgsRecommended", 2)]),
        ("FROM a\nENTRYPOINT exec x\n", &[("JSONArgsRecommended", 2)]),
        ("FROM a\nMAINTAINER me\n", &[("MaintainerDeprecated", 2)]),
        ("FROM a\nENV X=$NOPE\n", &[("UndefinedVar", 2)]),
        ("FROM a\nENV X=${NOPE:-d}\n", &[]),
        ("FROM a\nENV X=$PATH:/x\nARG A\nENV Y=$A\n", &[]),
        ("FROM alpine:$NOPE\n", &[("UndefinedArgInFrom", 1)]),
        ("ARG V\nFROM alpine:${V:-x}$V\n", &[]),
        ("FROM --platform=$BUILDPLATFORM a\n", &[]),
        ("FROM a AS x\nFROM b AS x\n", &[("DuplicateStageName", 2)]),
        ("FROM a AS scratch\n", &[("ReservedStageName", 1)]),
        (
            "FROM a\nrun x\nRUN y\nRUN z\n",
            &[("ConsistentInstructionCasing", 2)],
        ),
        (
            "FROM a\nCMD [\"a\"]\nCMD [\"b\"]\n",
            &[("MultipleInstructionsDisallowed", 3)],
        ),
        ("FROM a\nWORKDIR rel\n", &[("WorkdirRelativePath", 2)]),
        ("FROM a\nWORKDIR /abs\nWORKDIR rel\n", &[]),
        ("FROM a\nENV K V\n", &[("LegacyKeyValueFormat", 2)]),
        ("FROM a\nARG DB_PASSWORD\n", &[("SecretsUsedInArgOrEnv", 2)]),
        ("FROM a\nARG PUBLIC_KEY\nARG MONKEY\n", &[]),
        (
            "FROM --platform=linux/amd64 a\n",
            &[("FromPlatformFlagConstDisallowed", 1)],
        ),
        (
            "FROM --platform=$TARGETPLATFORM a\n",
            &[("RedundantTargetPlatform", 1)],
        ),
        ("FROM a\nEXPOSE 80/TCP\n", &[("ExposeProtoCasing", 2)]),
        ("FROM a\nRUN a \\\n\n b\n", &[("NoEmptyContinuation", 2)]),
        // Stage built on another stage inherits its ENV.
        ("FROM a AS one\nENV V=1\nFROM one\nENV W=$V\n", &[]),
    ];
    let mut failures = Vec::new();
    for (src, want) in cases {
        let got = rules(src);
        let want: Vec<(String, usize)> = want.iter().map(|(r, l)| (r.to_string(), *l)).collect();
        if got != want {
            failures.push(format!("{src:?}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn check_directive() {
    let src =
        "# check=skip=JSONArgsRecommended,StageNameCasing\nFROM a AS Build\nCMD x\nMAINTAINER m\n";
    assert_eq!(rules(src), vec![("MaintainerDeprecated".to_string(), 4)]);
    let src = "# check=skip=all\nFROM a AS Build\nCMD x\n";
    assert!(rules(src).is_empty());
    let src = "# check=error=true\nFROM a\nCMD x\n";
    let df = parse("Dockerfile", src).unwrap();
    let d = check(&df, &PlanOptions::default());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].severity, Severity::Error);
    assert_eq!(d[0].column, 1);
    assert_eq!(d[0].to_string(), "Dockerfile:3:1: error: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals");
}

#[test]
fn plan_failure_is_reported_as_error() {
    let df = parse("Dockerfile", "RUN x\nFROM a\n").unwrap();
    let d = check(&df, &PlanOptions::default());
    assert!(
        d.iter()
            .any(|d| d.severity == Severity::Error && d.message.contains("no build stage")),
        "{d:?}"
    );
}

#[test]
fn undefined_var_points_at_the_reference() {
    let src = "FROM a\nCOPY x /dst/${NOPE}/\n";
    let df = parse("Dockerfile", src).unwrap();
    let d = check(&df, &PlanOptions::default());
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].column), (2, 13));
    assert_eq!(&src[d[0].span.start..d[0].span.end], "${NOPE");
    assert_eq!(d[0].message, "Usage of undefined variable '$NOPE'");
}

#[test]
fn builder_args_are_not_reported_unused() {
    let df = parse("Dockerfile", "FROM a\n").unwrap();
    let mut o = PlanOptions::default();
    for k in [
        "BUILDKIT_INLINE_CACHE",
        "SOURCE_DATE_EPOCH",
        "no_proxy",
        "X",
    ] {
        o.build_args.insert(k.to_string(), "1".to_string());
    }
    assert_eq!(
        plan(&df, &o).unwrap().unused_build_args,
        vec!["X".to_string()]
    );
}
