//! Device nodes, device mounts and OCI hooks applied in a real sandbox, as root and in a user
//! namespace, on a directory rootfs and on an overlay.

mod common;

use common::{rootfs, run_with, sh};
use rbuild_sandbox::{
    DeviceBind, DeviceEdits, DeviceHook, DeviceNodeBind, HookStage, IdMapMode, RootfsSpec, Sandbox,
    SandboxOptions,
};
use std::path::Path;
use std::time::Duration;

const HOST_HOOK: &str = r#"#!/bin/sh
state=$(cat)
bundle=$(printf '%s' "$state" | sed -n 's/.*"bundle":"\([^"]*\)".*/\1/p')
root=$(sed -n 's/.*"root":{"path":"\([^"]*\)".*/\1/p' "$bundle/config.json")
printf '%s' "$state" > "$root/dev/rbuild-hook-state"
echo "$1" > "$root/dev/rbuild-hook-arg"
"#;

const STEP: &str = r#"set -e
test -c /dev/rbuild-zero
test "$(head -c 4 /dev/rbuild-zero | od -An -tx1 | tr -d ' \n')" = 00000000
test -c /opt/devs/null
if chmod 600 /opt/devs/null 2>/dev/null; then echo "read-only node is changeable"; exit 1; fi
cat /mnt/share/hello
if touch /mnt/share/new 2>/dev/null; then echo "ro mount is writable"; exit 1; fi
grep -q '"status":"creating"' /dev/rbuild-hook-state
grep -q '"status":"created"' /dev/rbuild-start-state
cat /dev/rbuild-hook-arg
"#;

fn edits(dir: &Path) -> DeviceEdits {
    let share = dir.join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::write(share.join("hello"), "hello from the host\n").unwrap();
    let hook = dir.join("hook.sh");
    std::fs::write(&hook, HOST_HOOK).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let poststop = dir.join("poststop.sh");
    std::fs::write(
        &poststop,
        format!(
            "#!/bin/sh\ncat > {}\n",
            dir.join("poststop-state").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &poststop,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let env = vec!["PATH=/usr/bin:/bin".to_string()];
    DeviceEdits {
        nodes: vec![
            DeviceNodeBind {
                path: "/dev/rbuild-zero".into(),
                host_path: "/dev/zero".into(),
                readonly: false,
            },
            DeviceNodeBind {
                path: "/opt/devs/null".into(),
                host_path: "/dev/null".into(),
                readonly: true,
            },
        ],
        mounts: vec![DeviceBind {
            host_path: share,
            container_path: "/mnt/share".into(),
            kind: "bind".into(),
            readonly: true,
            recursive: false,
            nosuid: true,
            nodev: true,
            noexec: false,
        }],
        hooks: vec![
            DeviceHook {
                stage: HookStage::CreateContainer,
                path: hook.clone(),
                args: vec!["hook.sh".into(), "ldcache-ran".into()],
                env: env.clone(),
                timeout: Some(Duration::from_secs(30)),
            },
            DeviceHook {
                stage: HookStage::StartContainer,
                path: "/bin/sh".into(),
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "cat > /dev/rbuild-start-state".into(),
                ],
                env: env.clone(),
                timeout: None,
            },
            DeviceHook {
                stage: HookStage::Poststop,
                path: poststop,
                args: vec![],
                env,
                timeout: Some(Duration::from_secs(30)),
            },
        ],
        setup_only: false,
    }
}

fn check(mode: IdMapMode, overlay: bool) {
    let (t, root) = rootfs();
    let mut spec = sh(&root, STEP);
    spec.devices = edits(t.path());
    let writable = if overlay {
        let (upper, work) = (t.path().join("upper"), t.path().join("work"));
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&work).unwrap();
        spec.rootfs = RootfsSpec::Overlay {
            lowers: vec![root.clone()],
            upper: upper.clone(),
            work,
            volatile: false,
        };
        upper
    } else {
        root.clone()
    };
    let sb = Sandbox::new(SandboxOptions {
        id_map: mode,
        ..Default::default()
    })
    .unwrap();
    let out = run_with(&sb, &spec);
    let res = out
        .result
        .unwrap_or_else(|e| panic!("{mode:?} overlay={overlay}: {e}\n{}", out.stderr));
    assert_eq!(
        res.code,
        Some(0),
        "{mode:?} overlay={overlay}: {}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(out.stdout, "hello from the host\nldcache-ran\n");
    let post = std::fs::read_to_string(t.path().join("poststop-state")).unwrap();
    assert!(post.contains("\"status\":\"stopped\""), "{post}");
    // Nothing of the devices stays in the writable layer.
    for p in ["mnt", "opt", ".rbuild-hostroot", "dev"] {
        assert!(
            !writable.join(p).exists(),
            "{mode:?} overlay={overlay}: /{p} left in the layer (stubs {:?})",
            res.mount_stubs
        );
    }
}

#[test]
fn devices_mounts_and_hooks_as_root() {
    check(IdMapMode::Auto, false);
    check(IdMapMode::Auto, true);
}

#[test]
fn devices_mounts_and_hooks_in_a_user_namespace() {
    check(IdMapMode::ForceUserNs, false);
    check(IdMapMode::ForceUserNs, true);
}

#[test]
fn failing_hook_names_itself() {
    let (t, root) = rootfs();
    let mut spec = sh(&root, "true");
    spec.devices.hooks.push(DeviceHook {
        stage: HookStage::StartContainer,
        path: "/bin/sh".into(),
        args: vec!["sh".into(), "-c".into(), "exit 3".into()],
        env: vec![],
        timeout: None,
    });
    let err = run_with(&Sandbox::new(Default::default()).unwrap(), &spec)
        .result
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("startContainer hook /bin/sh") && err.contains("exited with status 3"),
        "{err}"
    );
    let mut spec = sh(&root, "true");
    spec.devices.hooks.push(DeviceHook {
        stage: HookStage::CreateContainer,
        path: "/bin/sleep".into(),
        args: vec!["sleep".into(), "30".into()],
        env: vec![],
        timeout: Some(Duration::from_millis(200)),
    });
    let err = run_with(&Sandbox::new(Default::default()).unwrap(), &spec)
        .result
        .unwrap_err()
        .to_string();
    assert!(err.contains("createContainer hook /bin/sleep"), "{err}");
    let mut spec = sh(&root, "true");
    spec.devices.nodes.push(DeviceNodeBind {
        path: "/dev/x".into(),
        host_path: t.path().join("no-such-node"),
        readonly: false,
    });
    let err = run_with(&Sandbox::new(Default::default()).unwrap(), &spec)
        .result
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("device /dev/x") && err.contains("no-such-node"),
        "{err}"
    );
}

#[test]
fn setup_only_runs_hooks_but_not_the_process() {
    let (t, root) = rootfs();
    let mut spec = sh(&root, "touch /ran");
    spec.devices = edits(t.path());
    spec.devices
        .hooks
        .retain(|h| h.stage == HookStage::CreateContainer);
    // The hook writes into the root's /dev, which is this run's own: point it at /tmp instead.
    std::fs::write(
        t.path().join("hook.sh"),
        HOST_HOOK.replace("$root/dev/", "$root/tmp/"),
    )
    .unwrap();
    spec.devices.setup_only = true;
    let out = run_with(&Sandbox::new(Default::default()).unwrap(), &spec);
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert!(!root.join("ran").exists(), "the process ran");
    let state = std::fs::read_to_string(root.join("tmp/rbuild-hook-state")).unwrap();
    assert!(state.contains("\"status\":\"creating\""), "{state}");
}
