//! Runs the shared fixtures in testdata/dockerfile: every `accept/*.Dockerfile`
//! parses, plans and expands; every `reject/*.Dockerfile` fails on the line and
//! with the message listed in `reject/expected.txt`.

use std::path::{Path, PathBuf};

use rbuild_dockerfile::*;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dockerfile")
        .join(sub)
}

fn dockerfiles(sub: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    v.sort();
    v
}

fn full_pipeline(name: &str, src: &str) -> Result<Plan, ParseError> {
    let df = parse(name, src)?;
    let opts = PlanOptions::default();
    let p = plan(&df, &opts)?;
    for st in &p.stages {
        let mut sc = Scope::new(&p, st.index, &opts, &[]);
        for i in &st.instructions {
            let e = sc.expand(i)?;
            sc.apply(&e);
        }
    }
    Ok(p)
}

#[test]
fn accept_fixtures() {
    let files = dockerfiles("accept");
    assert!(files.len() >= 5, "fixtures missing: {files:?}");
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if let Err(e) = full_pipeline(&name, &src) {
            panic!("{name} should be accepted:\n{}", e.render());
        }
    }
}

#[test]
fn reject_fixtures() {
    let expected = std::fs::read_to_string(dir("reject").join("expected.txt")).unwrap();
    let mut listed = Vec::new();
    for line in expected.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.splitn(3, ' ');
        let (name, lno, msg) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let lno: usize = lno.parse().unwrap();
        let src = std::fs::read_to_string(dir("reject").join(name)).unwrap();
        match full_pipeline(name, &src) {
            Ok(_) => panic!("{name} should be rejected"),
            Err(e) => {
                assert_eq!(e.line, lno, "{name}: {e}");
                assert!(
                    e.message.contains(msg),
                    "{name}: {e} does not contain {msg:?}"
                );
            }
        }
        listed.push(name.to_string());
    }
    // Every reject fixture has an expectation.
    for f in dockerfiles("reject") {
        let n = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(listed.contains(&n), "{n} missing from expected.txt");
    }
}
