//! `rbuild build --check` against docker 20.10's Dockerfile front end: every Dockerfile in
//! testdata/dockerfile/reject is rejected by both, at the same line; every one in
//! testdata/dockerfile/accept parses and plans.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn testdata(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/dockerfile")
        .join(sub)
}

/// `(file, line, message substring)` rows of reject/expected.txt.
fn expected() -> Vec<(String, usize, String)> {
    let text = std::fs::read_to_string(testdata("reject/expected.txt")).expect("expected.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let file = parts.next().unwrap().to_string();
            let line = parts
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad row in expected.txt: {l}"));
            let msg = parts.next().unwrap_or("").to_string();
            (file, line, msg)
        })
        .collect()
}

/// The line docker's front end names in `dockerfile parse error line N` (or `line N:` forms).
fn docker_line(stderr: &str) -> Option<usize> {
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty())?;
    let idx = last.rfind("line ")?;
    let stderr = last;
    let digits: String = stderr[idx + 5..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[test]
fn rejected_like_docker() {
    let rows = expected();
    assert!(rows.len() >= 5, "expected.txt lists too few cases");
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (file, line, msg) in rows {
        let path = testdata("reject").join(&file);
        assert!(path.exists(), "{} listed but missing", path.display());
        let ours = rbuild(store.path())
            .args(["build", "--check", "-f"])
            .arg(&path)
            .arg(ctx.path())
            .output()
            .unwrap();
        let ours_err = String::from_utf8_lossy(&ours.stderr).into_owned();
        if ours.status.success() {
            failures.push(format!("{file}: rbuild accepted it"));
            continue;
        }
        if ours.status.code() == Some(101) || ours_err.contains("panicked") {
            failures.push(format!("{file}: rbuild panicked: {ours_err}"));
            continue;
        }
        let want = format!(":{line}:");
        if !ours_err.contains(&want) || !ours_err.contains(&msg) {
            failures.push(format!(
                "{file}: rbuild error does not name line {line} / {msg:?}: {ours_err}"
            ));
        }
        let theirs = docker()
            .args(["build", "--network", "host", "-f"])
            .arg(&path)
            .arg(ctx.path())
            .output()
            .unwrap();
        let theirs_err = String::from_utf8_lossy(&theirs.stderr).into_owned();
        if theirs.status.success() {
            failures.push(format!("{file}: docker accepted it (fix the case)"));
            continue;
        }
        // Docker 20.10 names no line for some errors (empty file, ENV without value, no FROM):
        // then it must still reject, and rbuild's line (checked above) is the stricter answer.
        match docker_line(&theirs_err) {
            Some(n) if n == line => {}
            None => {}
            other => failures.push(format!(
                "{file}: docker names line {other:?}, expected {line}: {}",
                theirs_err.lines().last().unwrap_or("")
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn accepted_files_check_clean_of_errors() {
    let dir = testdata("accept");
    let ctx = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "Dockerfile") {
            continue;
        }
        n += 1;
        let out = rbuild(store.path())
            .args(["build", "--check", "-f"])
            .arg(&path)
            .arg(ctx.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("ERROR") && !stderr.contains("panicked"),
            "{} failed --check: {stderr}",
            path.display()
        );
    }
    assert!(n >= 5, "too few accept cases in {}", dir.display());
}

#[test]
fn check_reports_warnings_without_building() {
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM rbuild-test/busybox AS Build\nCOPY $UNDEFINED_THING /x\nCMD echo hi\n",
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let out = rbuild(store.path())
        .args(["build", "--check"])
        .arg(ctx.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "warnings give exit 1: {stdout}");
    for rule in ["StageNameCasing", "UndefinedVar", "JSONArgsRecommended"] {
        assert!(stdout.contains(rule), "missing {rule} in: {stdout}");
    }
    // Nothing was built: the store has no images.
    let images = rbuild(store.path())
        .arg("images")
        .arg("-q")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&images.stdout).trim().is_empty());
}
