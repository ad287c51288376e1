//! The command line as docker users type it (issue 14): unknown commands, `--format` and
//! `--filter`, archives on standard streams, error prefixes, and `login` through a credential
//! helper. Every test drives the `rbuild` binary; none needs docker.

mod common;
#[path = "common/registry.rs"]
mod reg;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use reg::Registry;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A context whose Dockerfile copies one file onto `bb:1` (no RUN, so no sandbox is needed).
fn copy_context(dir: &Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello from the context\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nCOPY hello.txt /hello.txt\n",
    )
    .unwrap();
    ctx
}

/// The names of a tar's entries, read with the tar crate (fails the test on a malformed tar).
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .expect("a tar archive")
        .map(|e| {
            let e = e.expect("a tar entry");
            e.path().unwrap().to_string_lossy().into_owned()
        })
        .collect()
}

/// A tar entry's content.
fn tar_file(bytes: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut a = tar::Archive::new(bytes);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy().trim_start_matches("./") == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return Some(v);
        }
    }
    None
}

#[test]
fn unknown_commands_are_errors_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = rbuild(&store)
        .arg("imgaes")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("rbuild: 'imgaes' is not a rbuild command."),
        "{err}"
    );
    assert!(err.contains("Did you mean this?\n\timages"), "{err}");
    assert!(
        !err.contains("Dockerfile"),
        "taken for a build context: {err}"
    );
    assert!(!store.exists(), "an unknown command opened the store");

    // Nor after build flags: the implied build's PATH is a mistyped command.
    let out = rbuild(&store)
        .args(["-t", "x:1", "imgaes"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("'imgaes' is not a rbuild command"),
        "{}",
        text(&out)
    );

    // A word close to nothing still is not a context.
    let out = rbuild(&store)
        .arg("frobnicate")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'frobnicate' is not a rbuild command"));
    assert!(!stderr(&out).contains("Did you mean"), "{}", stderr(&out));
}

#[test]
fn build_without_its_verb_still_works_for_paths() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = copy_context(dir.path());
    // `rbuild -f DF -t x .`, from inside the context.
    run_ok(
        rbuild(&store)
            .args(["-f", "Dockerfile", "-t", "noverb:dot", "."])
            .current_dir(&ctx),
    );
    // A bare word that is an existing directory is a context, not a command.
    run_ok(
        rbuild(&store)
            .args(["ctx", "-t", "noverb:word"])
            .current_dir(dir.path()),
    );
    // An absolute path.
    run_ok(rbuild(&store).arg(&ctx).args(["-t", "noverb:abs"]));
    let listed = stdout(&run_ok(rbuild(&store).args([
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        "reference=noverb",
    ])));
    let mut tags: Vec<&str> = listed.lines().collect();
    tags.sort();
    assert_eq!(tags, ["noverb:abs", "noverb:dot", "noverb:word"]);
}

#[test]
fn images_format_filter_and_digests() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let tar = dir.path().join("rootfs.tar");
    run_ok(rbuild(&store).args(["tag", "bb:1", "team/app:2"]));
    // An untagged image: imported without a name.
    let dangling = stdout(&run_ok(
        rbuild(&store)
            .arg("import")
            .arg(&tar)
            .args(["--platform", "linux/arm64"]),
    ));
    let dangling = dangling.trim().trim_start_matches("sha256:")[..12].to_string();
    let bb_id = stdout(&run_ok(
        rbuild(&store).args(["inspect", "--format", "{{.Id}}", "bb:1"]),
    ));
    let bb_id = bb_id.trim().trim_start_matches("sha256:")[..12].to_string();

    let out = stdout(&run_ok(rbuild(&store).args([
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
        "--filter",
        "dangling=false",
    ])));
    let mut rows: Vec<&str> = out.lines().collect();
    rows.sort();
    assert_eq!(
        rows,
        [format!("bb:1 {bb_id}"), format!("team/app:2 {bb_id}")]
    );

    let out = stdout(&run_ok(rbuild(&store).args([
        "images",
        "-q",
        "--filter",
        "dangling=true",
    ])));
    assert_eq!(out.trim(), dangling);

    // docker's reference glob: `*` does not cross `/`.
    let out = stdout(&run_ok(rbuild(&store).args([
        "images",
        "--format",
        "{{.Repository}}",
        "--filter",
        "reference=*",
    ])));
    assert_eq!(out.trim(), "bb");
    let out = stdout(&run_ok(rbuild(&store).args([
        "images",
        "--format",
        "{{.Repository}}",
        "--filter",
        "reference=team/*:2",
    ])));
    assert_eq!(out.trim(), "team/app");

    // A table has docker's header and aligned columns; --digests adds DIGEST.
    let out = stdout(&run_ok(rbuild(&store).args([
        "images",
        "-a",
        "--digests",
        "--format",
        "table {{.Repository}}\\t{{.Tag}}\\t{{.Digest}}",
        "--filter",
        "reference=bb",
    ])));
    assert_eq!(
        out,
        "REPOSITORY   TAG       DIGEST\nbb           1         <none>\n"
    );
    let out = stdout(&run_ok(rbuild(&store).args(["images", "--digests"])));
    assert!(out.starts_with("REPOSITORY"), "{out}");
    assert!(out.lines().next().unwrap().contains("DIGEST"), "{out}");

    // `json`: one object per line, docker's field names.
    let out = stdout(&run_ok(
        rbuild(&store).args(["images", "--format", "json", "bb"]),
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["Repository"], "bb");
    assert_eq!(v["Tag"], "1");
    assert_eq!(v["ID"], bb_id.as_str());
    assert!(v["Size"].as_str().unwrap().ends_with('B'), "{v}");
    assert!(v["CreatedSince"].is_string(), "{v}");

    // A field that does not exist is an error naming it.
    let out = rbuild(&store)
        .args(["images", "--format", "{{.Repsitory}}"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains(".Repsitory"), "{}", stderr(&out));
    let out = rbuild(&store)
        .args(["images", "--filter", "colour=red"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("colour"), "{}", stderr(&out));
}

#[test]
fn inspect_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = dir.path().join("labels");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM bb:1\nENV GREETING=hi\nLABEL team=core\n",
    )
    .unwrap();
    run_ok(
        rbuild(&store)
            .args(["build", "-q", "-t", "lab:1"])
            .arg(&ctx),
    );
    let out = stdout(&run_ok(rbuild(&store).args([
        "inspect",
        "--format",
        "{{json .Config}}",
        "lab:1",
    ])));
    let config: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(config["Labels"]["team"], "core");
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hi"),
        "{config}"
    );
    let out = stdout(&run_ok(rbuild(&store).args([
        "inspect",
        "-f",
        "{{index .RepoTags 0}} {{.Os}}/{{.Architecture}} {{index .Config.Labels \"team\"}}",
        "lab:1",
        "bb:1",
    ])));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("lab:1 linux/"), "{out}");
    assert!(lines[0].ends_with(" core"), "{out}");
    assert!(lines[1].starts_with("bb:1 linux/"), "{out}");
    // `json` is the default document.
    let json_out = stdout(&run_ok(
        rbuild(&store).args(["inspect", "--format", "json", "lab:1"]),
    ));
    let plain = stdout(&run_ok(rbuild(&store).args(["inspect", "lab:1"])));
    assert_eq!(json_out, plain);
    let out = rbuild(&store)
        .args(["inspect", "--format", "{{.Config.Envv}}", "lab:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains(".Config.Envv"), "{}", stderr(&out));
}

#[test]
fn build_outputs_stream_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = copy_context(dir.path());

    // `-o -`: the root filesystem as a tar on stdout, progress on stderr only.
    let out = run_ok(
        rbuild(&store)
            .args(["build", "--progress", "plain", "-o", "-"])
            .arg(&ctx)
            .stdin(Stdio::null()),
    );
    assert_eq!(
        tar_file(&out.stdout, "hello.txt").as_deref(),
        Some(&b"hello from the context\n"[..])
    );
    assert!(stderr(&out).contains("COPY hello.txt"), "{}", stderr(&out));

    // type=docker,dest=-: a docker-archive a fresh store loads from stdin.
    let out = run_ok(
        rbuild(&store)
            .args(["-t", "streamed:1", "-o", "type=docker,dest=-"])
            .arg(&ctx),
    );
    let names = tar_names(&out.stdout);
    assert!(names.iter().any(|n| n == "manifest.json"), "{names:?}");
    let fresh = dir.path().join("fresh");
    let mut load = rbuild(&fresh)
        .arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    load.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let loaded = load.wait_with_output().unwrap();
    assert!(loaded.status.success(), "{}", text(&loaded));
    assert!(
        stdout(&loaded).contains("Loaded image: streamed:1"),
        "{}",
        text(&loaded)
    );

    // type=oci,dest=-: an OCI layout tar.
    let out = run_ok(
        rbuild(&store)
            .args(["build", "-o", "type=oci,dest=-"])
            .arg(&ctx),
    );
    let names = tar_names(&out.stdout);
    for want in ["oci-layout", "index.json"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }

    // -q would print the id into the tar: refused before building.
    let out = rbuild(&store)
        .args(["build", "-q", "-o", "-"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("--iidfile"), "{}", stderr(&out));
}

#[test]
fn save_and_load_use_standard_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let out = run_ok(rbuild(&store).args(["save", "bb:1"]).stdout(Stdio::piped()));
    let manifest = tar_file(&out.stdout, "manifest.json").expect("manifest.json in the archive");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "bb:1");

    let out = run_ok(rbuild(&store).args(["save", "--format", "oci", "bb:1"]));
    assert!(tar_file(&out.stdout, "index.json").is_some());

    // Into a fresh store from stdin (no -i).
    let archive = dir.path().join("bb.tar");
    std::fs::write(
        &archive,
        &run_ok(rbuild(&store).args(["save", "bb:1"])).stdout,
    )
    .unwrap();
    let fresh = dir.path().join("fresh");
    let out = run_ok(
        rbuild(&fresh)
            .arg("load")
            .stdin(std::fs::File::open(&archive).unwrap()),
    );
    assert!(
        stdout(&out).contains("Loaded image: bb:1"),
        "{}",
        text(&out)
    );
    let ids = |s: &Path| {
        stdout(&run_ok(
            rbuild(s).args(["inspect", "-f", "{{.Id}}", "bb:1"]),
        ))
    };
    assert_eq!(ids(&store), ids(&fresh));
    // A stream that is not an archive is an error naming stdin, not a panic.
    let out = rbuild(&fresh)
        .arg("load")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("ERROR: "), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn save_refuses_a_terminal() {
    // `script` gives the command a pseudo-terminal as stdout.
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let bin = env!("CARGO_BIN_EXE_rbuild");
    let out = Command::new("script")
        .args([
            "-qec",
            &format!("'{bin}' save bb:1; echo \"exit=$?\""),
            "/dev/null",
        ])
        .env("RBUILD_ROOT", &store)
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) is needed to give rbuild a terminal");
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(
        all.contains("cowardly refusing to save to a terminal. Use the -o flag or redirect"),
        "{all}"
    );
    assert!(all.contains("exit=1"), "{all}");
    assert!(all.len() < 4096, "archive bytes reached the terminal");
}

#[test]
fn parse_errors_have_one_error_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("bad");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nFROBNICATE x\n").unwrap();
    for check in [false, true] {
        let mut c = rbuild(&dir.path().join("store"));
        c.arg("build");
        if check {
            c.arg("--check");
        }
        let out = c.arg(&ctx).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert!(err.starts_with("ERROR: unknown instruction"), "{err}");
        assert!(!err.to_lowercase().contains("error: error"), "{err}");
        // --check and build name the Dockerfile the same way.
        assert!(err.contains("--> Dockerfile:2:1"), "{err}");
    }
}

/// A credential helper following docker's protocol, keeping what it is given in `$FAKE_CRED_DIR`
/// (one file, as the tests log in to one registry) and failing `store` when `$FAKE_CRED_FAIL` is
/// set.
const FAKE_HELPER: &str = r#"#!/bin/sh
dir="$FAKE_CRED_DIR"
case "$1" in
store)
    [ -n "$FAKE_CRED_FAIL" ] && { echo "keychain is locked" >&2; exit 1; }
    cat > "$dir/stored.json" ;;
get)
    cat > "$dir/asked"
    if [ -f "$dir/stored.json" ]; then cat "$dir/stored.json"; else echo "credentials not found in native keychain"; exit 1; fi ;;
erase)
    cat > "$dir/erased"
    if [ -f "$dir/stored.json" ]; then rm "$dir/stored.json"; else echo "credentials not found in native keychain"; exit 1; fi ;;
*) exit 2 ;;
esac
"#;

#[test]
fn login_keeps_the_password_in_the_credential_helper() {
    use std::os::unix::fs::PermissionsExt;
    const PASS: &str = "helper-kept-Pa55";
    let reg = Registry::start_htpasswd("alice", PASS);
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let bin = dir.path().join("bin");
    let creds = dir.path().join("creds");
    let cfg = dir.path().join("docker");
    for d in [&bin, &creds, &cfg] {
        std::fs::create_dir_all(d).unwrap();
    }
    let helper = bin.join("docker-credential-rbuildtest");
    std::fs::write(&helper, FAKE_HELPER).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = cfg.join("config.json");
    std::fs::write(
        &config,
        r#"{"credsStore": "rbuildtest", "detachKeys": "ctrl-x"}"#,
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cmd = |args: &[&str]| {
        let mut c = rbuild(&store);
        c.args(args)
            .env("PATH", &path)
            .env("DOCKER_CONFIG", &cfg)
            .env("FAKE_CRED_DIR", &creds)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let login = |fail: bool| {
        let mut c = cmd(&["login", "-u", "alice", "--password-stdin", &reg.host()]);
        if fail {
            c.env("FAKE_CRED_FAIL", "1");
        }
        let mut child = c.spawn().unwrap();
        writeln!(child.stdin.take().unwrap(), "{PASS}").unwrap();
        child.wait_with_output().unwrap()
    };

    // A helper that fails: login fails, and the password is not written to the file instead.
    let out = login(true);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("keychain is locked"), "{}", text(&out));
    assert!(!std::fs::read_to_string(&config).unwrap().contains("auth\""));

    let out = login(false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("Login Succeeded"));
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(creds.join("stored.json")).unwrap()).unwrap();
    assert_eq!(stored["ServerURL"], reg.host().as_str());
    assert_eq!(stored["Username"], "alice");
    assert_eq!(stored["Secret"], PASS);
    let file = std::fs::read_to_string(&config).unwrap();
    assert!(!file.contains(PASS), "password in {file}");
    let saved: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(saved["auths"][reg.host()], serde_json::json!({}), "{saved}");
    assert_eq!(
        saved["detachKeys"], "ctrl-x",
        "other keys are kept: {saved}"
    );
    assert!(saved["auths"][reg.host()].get("auth").is_none(), "{saved}");

    // The helper's credentials are the ones a push uses.
    let dest = format!("{}/private/app:1", reg.host());
    let out = cmd(&["push", "bb:1", &dest]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(creds.join("asked")).unwrap().trim(),
        reg.host()
    );

    // Logout erases it from the helper and drops the empty entry.
    let out = cmd(&["logout", &reg.host()]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("Removing login credentials"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read_to_string(creds.join("erased"))
            .unwrap()
            .trim(),
        reg.host()
    );
    assert!(!creds.join("stored.json").exists());
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert!(saved["auths"].get(reg.host()).is_none(), "{saved}");

    // credHelpers wins over credsStore for its registry.
    std::fs::write(
        &config,
        format!(
            r#"{{"credsStore": "missing-helper", "credHelpers": {{"{}": "rbuildtest"}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let out = login(false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(creds.join("stored.json").exists());
}

/// `--progress=rawjson` prints the library's events as they serialize, one object per line:
/// what an embedder receives is what a script reading rbuild's output receives.
#[test]
fn rawjson_prints_the_librarys_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = copy_context(dir.path());
    let events = |no_cache: bool| -> Vec<serde_json::Value> {
        let mut c = rbuild(&store);
        c.args(["build", "--progress=rawjson", "-t", "raw:1"]);
        if no_cache {
            c.arg("--no-cache");
        }
        let out = run_ok(c.arg(&ctx));
        stderr(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    };
    let kinds = |evs: &[serde_json::Value]| -> Vec<String> {
        evs.iter()
            .map(|e| e["event"].as_str().expect("an event tag").to_string())
            .collect()
    };
    let cold = events(true);
    let k = kinds(&cold);
    assert_eq!(k.first().map(String::as_str), Some("planned"), "{k:?}");
    let miss = cold
        .iter()
        .find(|e| e["event"] == "step_miss")
        .expect("a miss");
    assert_eq!(miss["reason"]["reason"], "no_cache", "{miss}");
    assert_eq!(miss["step"]["text"], "COPY hello.txt /hello.txt", "{miss}");
    let done = cold
        .iter()
        .find(|e| e["event"] == "step_done")
        .expect("a step_done");
    assert!(done["elapsed"].is_f64(), "seconds as a float: {done}");
    let image = cold
        .iter()
        .find(|e| e["event"] == "image_written")
        .expect("image");
    assert!(
        image["id"].as_str().unwrap().starts_with("sha256:"),
        "{image}"
    );
    assert_eq!(
        image["tags"][0].as_str().unwrap(),
        "docker.io/library/raw:1",
        "{image}"
    );
    let warm = events(false);
    assert!(
        kinds(&warm).contains(&"step_cached".to_string()),
        "{warm:?}"
    );
}
