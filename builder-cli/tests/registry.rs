//! Registry integration, end to end against real tools: a real `docker-registry`, docker 20.10
//! (pull + run what rbuild pushed), and skopeo (push bases rbuild pulls; inspect what it pushed).

mod common;
#[path = "common/registry.rs"]
mod reg;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use reg::{skopeo_manifest, skopeo_push_base, Registry};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_fail(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should fail:\n{}",
        text(&out)
    );
    out
}

fn docker_image_id(image: &str) -> String {
    let out = run_ok(docker().args(["image", "inspect", "--format", "{{.Id}}", image]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rbuild_id(store: &Path, image: &str) -> String {
    let out = run_ok(rbuild(store).args(["inspect", image]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

/// rbuild's view of an image: saved as a docker-archive and flattened.
fn rbuild_image(store: &Path, image: &str) -> ArchiveImage {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("img.tar");
    run_ok(rbuild(store).args(["save", "-o"]).arg(&tar).arg(image));
    read_docker_archive(&tar)
}

#[test]
fn build_push_then_docker_pulls_and_runs_it() {
    let store = store_with_base();
    let reg = Registry::start();
    let tag = format!("{}/app/hello:1", reg.host());
    let ctx = context_with(
        &format!("FROM {BUSYBOX}\nCOPY hello.txt /hello.txt\nCMD [\"cat\", \"/hello.txt\"]\n"),
        &[("hello.txt", "hello from rbuild\n")],
    );
    let iid = ctx.path().join("iid");
    run_ok(
        rbuild(store.path())
            .args(["build", "--push", "-t", &tag, "--iidfile"])
            .arg(&iid)
            .arg(ctx.path()),
    );
    let id = std::fs::read_to_string(&iid).unwrap();

    // skopeo sees an OCI manifest whose config is rbuild's image.
    let m = skopeo_manifest(&tag);
    assert_eq!(m["config"]["digest"].as_str(), Some(id.as_str()), "{m}");
    assert_eq!(
        m["mediaType"].as_str(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    for l in m["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"].as_str(),
            Some("application/vnd.oci.image.layer.v1.tar+gzip")
        );
    }

    // docker pulls and runs it.
    run_ok(docker().args(["pull", "-q", &tag]));
    assert_eq!(docker_image_id(&tag), id);
    let out = run_ok(docker().args(["run", "--rm", "--network", "none", &tag]));
    let _ = docker().args(["rmi", "-f", &tag]).output();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from rbuild\n");

    // `rbuild push IMAGE DEST` with zstd to another name; the registry holds the zstd layers.
    let dest = format!("{}/app/hello-zstd:2", reg.host());
    run_ok(rbuild(store.path()).args(["push", "--compression", "zstd", &tag, &dest]));
    let m2 = skopeo_manifest(&dest);
    assert_eq!(m2["config"]["digest"].as_str(), Some(id.as_str()));
    let last = m2["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["mediaType"].as_str(),
        Some("application/vnd.oci.image.layer.v1.tar+zstd"),
        "{m2}"
    );
}

#[test]
fn skopeo_pushed_base_is_pulled_into_a_fresh_store() {
    let reg = Registry::start();
    let base = format!("{}/base/busybox:1", reg.host());
    skopeo_push_base(base_archive(), &base);
    let store = tempfile::tempdir().unwrap();
    let ctx = context_with(&format!("FROM {base}\nCOPY f /f\n"), &[("f", "x")]);
    let out = run_ok(
        rbuild(store.path())
            .args(["build", "-t", "derived:1"])
            .arg(ctx.path()),
    );
    let log = text(&out);
    assert!(log.contains(&format!("Pulling {}", base)), "{log}");

    // The pulled base keeps docker's image id (config bytes untouched) and its tree.
    assert_eq!(rbuild_id(store.path(), &base), docker_image_id(BUSYBOX));
    let original = read_docker_archive(base_archive());
    let pulled = rbuild_image(store.path(), &base);
    assert_eq!(pulled.config, original.config);
    assert_eq!(pulled.tree, original.tree);
    let derived = rbuild_image(store.path(), "derived:1");
    assert_eq!(derived.layer_count, original.layer_count + 1);
    // The pull kept only the compressed blobs: the base's uncompressed layers were never written,
    // yet the build above ran on them and `save` (docker-archive) decoded them.
    let diff_ids = pulled.config["rootfs"]["diff_ids"].as_array().unwrap();
    assert!(!diff_ids.is_empty());
    for d in diff_ids {
        let hex = d.as_str().unwrap().trim_start_matches("sha256:");
        let blob = store.path().join("blobs/sha256").join(hex);
        assert!(
            !blob.exists(),
            "{} was decompressed into the store",
            blob.display()
        );
    }
    // ...and pushing the derived image elsewhere reuses them.
    let dest = format!("{}/app/derived:1", reg.host());
    run_ok(rbuild(store.path()).args(["push", "derived:1", &dest]));
    assert_eq!(
        skopeo_manifest(&dest)["config"]["digest"].as_str(),
        Some(rbuild_id(store.path(), "derived:1").as_str())
    );

    // A second `rbuild pull` finds every layer already there.
    let again = run_ok(rbuild(store.path()).args(["pull", &base]));
    assert!(text(&again).contains("Already exists"), "{}", text(&again));
    assert!(!text(&again).contains("Downloading"), "{}", text(&again));
}

#[test]
fn registries_conf_mirror_serves_docker_hub_names() {
    let mirror = Registry::start();
    skopeo_push_base(
        base_archive(),
        &format!("{}/library/debian:bookworm", mirror.host()),
    );
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
            mirror.host()
        ),
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let ctx = context_with("FROM debian:bookworm\nCOPY f /f\n", &[("f", "x")]);
    run_ok(
        rbuild(store.path())
            .env("RBUILD_REGISTRIES_CONF", &conf)
            .args(["build", "-t", "on-debian:1"])
            .arg(ctx.path()),
    );
    assert_eq!(
        rbuild_id(store.path(), "debian:bookworm"),
        docker_image_id(BUSYBOX)
    );
    let out = run_ok(rbuild(store.path()).args(["images"]));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("debian ") && l.contains("bookworm")),
        "{listing}"
    );
}

#[test]
fn local_base_needs_no_registry_but_pull_does() {
    let mut reg = Registry::start();
    let base = format!("{}/base/busybox:1", reg.host());
    skopeo_push_base(base_archive(), &base);
    let store = tempfile::tempdir().unwrap();
    let ctx = context_with(&format!("FROM {base}\nCOPY f /f\n"), &[("f", "1")]);
    run_ok(
        rbuild(store.path())
            .args(["build", "-t", "a:1"])
            .arg(ctx.path()),
    );

    reg.stop();
    std::fs::write(ctx.path().join("f"), "2").unwrap();
    let out = run_ok(
        rbuild(store.path())
            .args(["build", "-t", "a:2"])
            .arg(ctx.path()),
    );
    assert!(!text(&out).contains("Pulling"), "{}", text(&out));

    let out = run_fail(
        rbuild(store.path())
            .args(["build", "--pull", "-t", "a:3"])
            .arg(ctx.path()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile:1"), "{err}");
    assert!(err.contains(&reg.host()), "{err}");
    assert!(err.contains("base image"), "{err}");
}

#[test]
fn corrupt_blob_fails_pull_naming_the_digest_and_leaves_no_image() {
    let reg = Registry::start();
    let base = format!("{}/base/busybox:1", reg.host());
    skopeo_push_base(base_archive(), &base);
    let m = skopeo_manifest(&base);
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let data = reg.blob_data(&layer);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let store = tempfile::tempdir().unwrap();
    let out = run_fail(rbuild(store.path()).args(["pull", &base]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&layer), "error must name {layer}: {err}");
    let images = run_ok(rbuild(store.path()).args(["images", "-q"]));
    assert_eq!(String::from_utf8_lossy(&images.stdout).trim(), "");
    run_fail(rbuild(store.path()).args(["inspect", &base]));
}

#[test]
fn login_push_logout_against_htpasswd_registry() {
    const PASS: &str = "s3cret-Pa55word";
    let reg = Registry::start_htpasswd("alice", PASS);
    let store = store_with_base();
    let cfg = tempfile::tempdir().unwrap();
    let dest = format!("{}/private/app:1", reg.host());
    let with_cfg = |c: &mut Command| {
        c.env("DOCKER_CONFIG", cfg.path())
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR");
    };
    let mut outputs = Vec::new();

    // Anonymous push is refused with a clear message.
    let mut c = rbuild(store.path());
    with_cfg(&mut c);
    let out = run_fail(c.args(["push", BUSYBOX, &dest]));
    assert!(
        text(&out).to_lowercase().contains("not authorized"),
        "{}",
        text(&out)
    );
    outputs.push(out);

    // A wrong password is refused and nothing is saved.
    let mut c = rbuild(store.path());
    with_cfg(&mut c);
    let out = run_fail(
        c.args(["login", "-u", "alice", "-p", "wrong-password", &reg.host()])
            .stdin(std::process::Stdio::null()),
    );
    assert!(!cfg.path().join("config.json").exists());
    outputs.push(out);

    // Login with the password on stdin.
    let mut c = rbuild(store.path());
    with_cfg(&mut c);
    c.args(["login", "-u", "alice", "--password-stdin", &reg.host()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{PASS}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Login Succeeded"), "{}", text(&out));
    outputs.push(out);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.path().join("config.json")).unwrap()).unwrap();
    assert!(saved["auths"][reg.host()]["auth"].is_string(), "{saved}");

    let mut c = rbuild(store.path());
    with_cfg(&mut c);
    outputs.push(run_ok(c.args(["push", BUSYBOX, &dest])));
    let m = skopeo_manifest_auth(&dest, PASS);
    assert!(m["config"]["digest"].is_string(), "{m}");

    let mut c = rbuild(store.path());
    with_cfg(&mut c);
    let out = run_ok(c.args(["logout", &reg.host()]));
    assert!(
        text(&out).contains("Removing login credentials"),
        "{}",
        text(&out)
    );
    outputs.push(out);

    let mut c = rbuild(store.path());
    with_cfg(&mut c);
    let out = run_fail(c.args(["push", BUSYBOX, &format!("{}/private/app:2", reg.host())]));
    assert!(
        text(&out).to_lowercase().contains("not authorized"),
        "{}",
        text(&out)
    );
    outputs.push(out);

    for o in &outputs {
        assert!(!text(o).contains(PASS), "password leaked: {}", text(o));
    }
}

fn skopeo_manifest_auth(image: &str, pass: &str) -> serde_json::Value {
    let out = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &format!("alice:{pass}"),
        &format!("docker://{image}"),
    ]));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn push_mounts_pulled_base_layers_from_their_repository() {
    let reg = Registry::start();
    let base = format!("{}/a/base:1", reg.host());
    skopeo_push_base(base_archive(), &base);
    let base_layers: Vec<String> = skopeo_manifest(&base)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(!base_layers.is_empty());

    let store = tempfile::tempdir().unwrap();
    run_ok(rbuild(store.path()).args(["pull", &base]));
    let ctx = context_with(&format!("FROM {base}\nCOPY f /f\n"), &[("f", "app")]);
    run_ok(
        rbuild(store.path())
            .args(["build", "-t", "app:1"])
            .arg(ctx.path()),
    );
    let dest = format!("{}/b/app:1", reg.host());
    let out = run_ok(rbuild(store.path()).args(["push", "app:1", &dest]));
    let log = text(&out);
    for l in &base_layers {
        let short = &l["sha256:".len().."sha256:".len() + 12];
        assert!(
            log.lines()
                .any(|line| line.starts_with(short) && line.contains("Mounted from a/base")),
            "base layer {l} was not mounted:\n{log}"
        );
        assert!(
            !log.lines()
                .any(|line| line.starts_with(short) && line.contains("Pushing")),
            "base layer {l} was uploaded:\n{log}"
        );
    }
    // The new layer had nowhere to come from: uploaded.
    assert!(log.contains("Pushed"), "{log}");
    // The registry holds the image with the base layers linked into b/app.
    let pushed = skopeo_manifest(&dest);
    let pushed_layers: Vec<&str> = pushed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(&pushed_layers[..base_layers.len()], base_layers.as_slice());
    for l in &base_layers {
        let link = reg
            .dir
            .path()
            .join("storage/docker/registry/v2/repositories/b/app/_layers/sha256")
            .join(&l["sha256:".len()..])
            .join("link");
        assert!(link.is_file(), "{} missing", link.display());
    }

    // A push of the result to a third repository mounts every blob, the new layer included,
    // because the first push recorded that b/app holds it.
    let again = format!("{}/c/app:1", reg.host());
    let out = run_ok(rbuild(store.path()).args(["push", "app:1", &again]));
    let log = text(&out);
    assert!(!log.contains(": Pushing"), "{log}");
    assert_eq!(
        log.matches("Mounted from").count(),
        base_layers.len() + 2,
        "{log}"
    );
    assert!(
        log.contains("Mounted from b/app") || log.contains("Mounted from a/base"),
        "{log}"
    );
}

#[test]
fn pulled_image_stays_listed_as_none_when_its_tag_moves() {
    let reg = Registry::start();
    let base = format!("{}/a/base:1", reg.host());
    skopeo_push_base(base_archive(), &base);
    let store = tempfile::tempdir().unwrap();
    let out = run_ok(rbuild(store.path()).args(["pull", "-q", &base]));
    let pulled = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let short = &pulled["sha256:".len().."sha256:".len() + 12];

    let ctx = context_with(&format!("FROM {base}\nCOPY f /f\n"), &[("f", "x")]);
    run_ok(
        rbuild(store.path())
            .args(["build", "-t", &base])
            .arg(ctx.path()),
    );
    let out = run_ok(rbuild(store.path()).args(["images"]));
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let row = listing
        .lines()
        .find(|l| l.contains(short))
        .unwrap_or_else(|| panic!("pulled image {short} dropped from the listing:\n{listing}"));
    assert!(row.starts_with("<none>"), "{listing}");
    // Like docker, the image is still usable by id.
    run_ok(rbuild(store.path()).args(["inspect", &pulled]));
}

#[test]
fn login_without_a_terminal_names_password_stdin() {
    let cfg = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    // No registry is needed: the arguments are refused before any request.
    for args in [
        &["login", "-u", "bob", "127.0.0.1:1"][..],
        &["login", "127.0.0.1:1"][..],
    ] {
        let out = run_fail(
            rbuild(store.path())
                .env("DOCKER_CONFIG", cfg.path())
                .args(args)
                .stdin(std::process::Stdio::piped()),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--password-stdin"), "{args:?}: {err}");
        assert!(err.contains("non-TTY"), "{args:?}: {err}");
        assert!(!cfg.path().join("config.json").exists());
    }
}

/// Runs `shell_cmd` under `script` (util-linux) so it gets a pseudo-terminal, answering each
/// prompt in `dialog` only once it appeared (typing ahead would be echoed before echo is off).
/// Returns everything the terminal showed.
fn on_terminal(shell_cmd: &str, envs: &[(&str, &Path)], dialog: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", shell_cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("script (util-linux)");
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = Vec::new();
    for (prompt, answer) in dialog {
        while !String::from_utf8_lossy(&seen).contains(prompt) {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(chunk) => seen.extend(chunk),
                Err(e) => panic!(
                    "no {prompt:?} prompt ({e}); terminal showed:\n{}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
        // Later prompts must be searched for after this one.
        let shown = String::from_utf8_lossy(&seen).to_string();
        let at = shown.find(prompt).unwrap() + prompt.len();
        seen = shown.as_bytes()[at..].to_vec();
        stdin.write_all(answer.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let mut rest = Vec::new();
    while let Ok(chunk) = rx.recv_timeout(Duration::from_secs(60)) {
        rest.extend(chunk);
    }
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&seen),
        String::from_utf8_lossy(&rest)
    );
    assert!(status.success(), "script failed: {shown}");
    shown
}

#[test]
fn login_prompts_on_a_terminal_without_echoing_the_password() {
    const PASS: &str = "tty-Pa55word";
    let reg = Registry::start_htpasswd("carol", PASS);
    let cfg = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_rbuild");
    let envs = [("DOCKER_CONFIG", cfg.path()), ("RBUILD_ROOT", store.path())];

    let shown = on_terminal(
        &format!("'{bin}' login {}", reg.host()),
        &envs,
        &[
            ("Username: ", "carol\n"),
            ("Password: ", &format!("{PASS}\n")),
        ],
    );
    assert!(shown.contains("Login Succeeded"), "{shown}");
    assert!(!shown.contains(PASS), "password echoed: {shown}");
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg.path().join("config.json")).unwrap()).unwrap();
    assert!(saved["auths"][reg.host()]["auth"].is_string(), "{saved}");

    // Ctrl-C at the password prompt ends the login and gives the terminal its echo back.
    std::fs::remove_file(cfg.path().join("config.json")).unwrap();
    let shown = on_terminal(
        &format!(
            "'{bin}' login -u carol {}; echo \"exit=$?\"; stty -a",
            reg.host()
        ),
        &envs,
        &[("Password: ", "tty-\u{3}")],
    );
    assert!(shown.contains("interrupted"), "{shown}");
    assert!(!shown.contains("exit=0"), "{shown}");
    let modes: Vec<&str> = shown.split([' ', ';', '\n', '\r']).collect();
    for mode in ["echo", "icanon", "isig"] {
        assert!(modes.contains(&mode), "{mode} not restored: {shown}");
        assert!(!modes.contains(&format!("-{mode}").as_str()), "{shown}");
    }
    assert!(!cfg.path().join("config.json").exists());
}

#[test]
fn pull_and_push_show_bars_on_a_terminal_and_lines_otherwise() {
    let reg = Registry::start();
    let base = format!("{}/a/base:1", reg.host());
    skopeo_push_base(base_archive(), &base);
    let bin = env!("CARGO_BIN_EXE_rbuild");

    // Not a terminal: one quiet line per blob state, and docker's closing status.
    let store = tempfile::tempdir().unwrap();
    let out = run_ok(rbuild(store.path()).args(["pull", &base]));
    let log = text(&out);
    assert!(log.contains(": Downloading "), "{log}");
    assert!(log.contains(": Download complete"), "{log}");
    assert!(
        log.contains(&format!("Status: Downloaded newer image for {base}")),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "escape codes off a terminal: {log}"
    );
    let out = run_ok(rbuild(store.path()).args(["pull", &base]));
    assert!(
        text(&out).contains(&format!("Status: Image is up to date for {base}")),
        "{}",
        text(&out)
    );

    // A terminal: per-layer bars (drawn with cursor control), not the quiet lines.
    let store = tempfile::tempdir().unwrap();
    let envs = [("RBUILD_ROOT", store.path())];
    let shown = on_terminal(&format!("'{bin}' pull {base}"), &envs, &[]);
    assert!(shown.contains('\u{1b}'), "no bars drawn: {shown}");
    assert!(shown.contains("Download complete"), "{shown}");
    assert!(
        !shown.contains(": Downloading "),
        "quiet lines on a terminal: {shown}"
    );
    let dest = format!("{}/b/copy:1", reg.host());
    let shown = on_terminal(&format!("'{bin}' push {base} {dest}"), &envs, &[]);
    assert!(shown.contains('\u{1b}'), "no bars drawn: {shown}");
    assert!(shown.contains("Mounted from a/base"), "{shown}");
    assert!(
        !shown.contains(": Mounted"),
        "quiet lines on a terminal: {shown}"
    );
}
