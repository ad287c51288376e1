//! Chroot isolation forced on this host (the harness runs as root): what an unprivileged
//! container's root gets when namespaces are refused. The refusal itself is exercised for real by
//! builder-cli/tests/incontainer.rs (docker's default seccomp profile).

mod common;

use common::{rootfs, run_with, sh};
use rbuild_sandbox::{
    Isolation, MountKind, MountSpec, RootfsSpec, Sandbox, SandboxError, SandboxOptions,
};

fn chroot_sandbox() -> Sandbox {
    let sb = Sandbox::new(SandboxOptions {
        isolation: Isolation::Chroot,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(sb.isolation(), Isolation::Chroot);
    sb
}

#[test]
fn chroot_step_gets_devices_files_and_secrets_that_do_not_stay() {
    let (t, root) = rootfs();
    let secret = t.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let sb = chroot_sandbox();
    let mut spec = sh(
        &root,
        "test -c /dev/null && echo gone > /dev/null && head -c 4 /dev/zero | wc -c && \
         cat /run/secrets/token && test -s /etc/resolv.conf && grep -q localhost /etc/hosts && \
         id -u && echo kept > /kept",
    );
    spec.uid = 0;
    spec.mounts = vec![MountSpec {
        target: "/run/secrets/token".into(),
        kind: MountKind::Bind {
            source: secret.clone(),
            readonly: true,
        },
    }];
    let out = run_with(&sb, &spec);
    let r = out.result.unwrap_or_else(|e| panic!("{e}: {}", out.stderr));
    assert_eq!(r.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "4\ns3cret\n0\n");
    assert_eq!(
        r.warnings
            .iter()
            .filter(|w| w.starts_with("chroot isolation"))
            .count(),
        1,
        "{:?}",
        r.warnings
    );
    // Nothing the sandbox made is left for the layer; what the step wrote is.
    for gone in [
        "dev/null",
        "dev/zero",
        "etc/resolv.conf",
        "etc/hosts",
        "run/secrets/token",
        "run/secrets",
        "proc",
    ] {
        assert!(
            std::fs::symlink_metadata(root.join(gone)).is_err(),
            "{gone} was left in the rootfs"
        );
    }
    assert_eq!(
        std::fs::read_to_string(root.join("kept")).unwrap(),
        "kept\n"
    );

    // The warning is said once per sandbox, not per step.
    let again = run_with(&sb, &sh(&root, "true")).result.unwrap();
    assert!(again
        .warnings
        .iter()
        .all(|w| !w.starts_with("chroot isolation")));
}

#[test]
fn chroot_step_switches_user() {
    let (_t, root) = rootfs();
    let mut spec = sh(&root, "id -u; id -g");
    spec.uid = 1234;
    spec.gid = 4321;
    let out = run_with(&chroot_sandbox(), &spec);
    assert_eq!(out.result.unwrap().code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout, "1234\n4321\n");
}

#[test]
fn chroot_refuses_what_needs_mounts() {
    let (t, root) = rootfs();
    let sb = chroot_sandbox();
    let mut spec = sh(&root, "true");
    spec.mounts = vec![MountSpec {
        target: "/cache".into(),
        kind: MountKind::Tmpfs { size: None },
    }];
    let err = run_with(&sb, &spec).result.unwrap_err();
    assert!(matches!(err, SandboxError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("tmpfs"), "{err}");

    let mut spec = sh(&root, "true");
    spec.mounts = vec![MountSpec {
        target: "/src".into(),
        kind: MountKind::Bind {
            source: t.path().to_path_buf(),
            readonly: true,
        },
    }];
    let err = run_with(&sb, &spec).result.unwrap_err();
    assert!(err.to_string().contains("only files"), "{err}");

    let mut spec = sh(&root, "true");
    spec.rootfs = RootfsSpec::Overlay {
        lowers: vec![root.clone()],
        upper: t.path().join("u"),
        work: t.path().join("w"),
        volatile: false,
    };
    let err = run_with(&sb, &spec).result.unwrap_err();
    assert!(err.to_string().contains("directory rootfs"), "{err}");
}
