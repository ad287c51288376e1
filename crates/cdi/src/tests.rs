use super::*;
use std::time::Duration;

fn yaml(version: &str) -> String {
    format!(
        r#"
cdiVersion: "{version}"
kind: example.com/gpu
containerEdits:
  env: ["SPEC=1", "SHARED=spec"]
  hooks:
    - hookName: createContainer
      path: /usr/bin/hook
      args: ["hook", "update-ldcache"]
      timeout: 5
devices:
  - name: "0"
    containerEdits:
      env: ["SHARED=dev0"]
      deviceNodes:
        - path: /dev/card0
          hostPath: /dev/zero
          type: c
          major: 1
          minor: 5
          fileMode: 438
          permissions: rw
          uid: 0
          gid: 44
      mounts:
        - hostPath: /usr/lib/libx.so
          containerPath: /usr/lib/libx.so
          options: [ro, nosuid, nodev, bind]
      additionalGids: [44]
  - name: "1"
    containerEdits:
      deviceNodes:
        - path: /dev/card1
          permissions: r
"#
    )
}

const JSON: &str = r#"{
  "cdiVersion": "0.5.0",
  "kind": "vendor.test/fpga",
  "devices": [
    {"name": "a", "containerEdits": {"deviceNodes": [{"path": "/dev/fpga0"}]}},
    {"name": "all", "containerEdits": {"env": ["FPGA=all"]}}
  ],
  "containerEdits": {"mounts": [{"hostPath": "/opt/fpga", "containerPath": "/opt/fpga", "options": ["rbind", "ro"]}]}
}"#;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

#[test]
fn every_known_version_parses_in_yaml_and_json() {
    for v in [
        "0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.0.1", "1.1.0",
    ] {
        let y = parse_spec(Path::new("x.yaml"), yaml(v).as_bytes()).unwrap();
        assert_eq!(y.cdi_version, v);
        assert_eq!(y.devices.len(), 2);
        let n = &y.devices[0].container_edits.device_nodes[0];
        assert_eq!(n.host_path.as_deref(), Some("/dev/zero"));
        assert_eq!(
            (n.kind.as_deref(), n.major, n.minor, n.file_mode, n.gid),
            (Some("c"), Some(1), Some(5), Some(0o666), Some(44))
        );
        // The same spec written as JSON reads the same.
        let j = serde_json::to_vec(&y).unwrap();
        assert_eq!(parse_spec(Path::new("x.json"), &j).unwrap(), y);
    }
    let j = parse_spec(Path::new("f.json"), JSON.as_bytes()).unwrap();
    assert_eq!(j.kind, "vendor.test/fpga");
    assert_eq!(j.container_edits.mounts[0].options, ["rbind", "ro"]);
}

#[test]
fn bad_specs_say_what_is_wrong_and_where() {
    let cases: &[(&str, &str, &str)] = &[
        ("v.yaml", &yaml("0.2.0"), "unsupported cdiVersion \"0.2.0\""),
        ("v.yaml", &yaml("2.0.0"), "unsupported cdiVersion"),
        (
            "k.yaml",
            &yaml("0.6.0").replace("example.com/gpu", "gpu"),
            "is not vendor.com/class",
        ),
        (
            "n.yaml",
            &yaml("0.6.0").replace("name: \"1\"", "name: \"-x\""),
            "device name \"-x\"",
        ),
        (
            "d.yaml",
            &yaml("0.6.0").replace("name: \"1\"", "name: \"0\""),
            "device \"0\" is defined twice",
        ),
        (
            "e.yaml",
            &yaml("0.6.0").replace("SPEC=1", "SPEC"),
            "env entry \"SPEC\" is not KEY=value",
        ),
        (
            "p.yaml",
            &yaml("0.6.0").replace("path: /dev/card1", "path: dev/card1"),
            "device node path \"dev/card1\" is not absolute",
        ),
        (
            "h.yaml",
            &yaml("0.6.0").replace("hookName: createContainer", "hookName: preStart"),
            "unknown hookName \"preStart\"",
        ),
        (
            "t.yaml",
            &yaml("0.6.0").replace("type: c", "type: x"),
            "has type \"x\"",
        ),
        (
            "m.yaml",
            &yaml("0.6.0").replace("permissions: r\n", "permissions: rx\n"),
            "expected a subset of rwm",
        ),
        ("s.yaml", "cdiVersion: [", "invalid CDI spec s.yaml"),
        ("j.json", "{\"cdiVersion\": 1}", "invalid type"),
        (
            "none.json",
            r#"{"cdiVersion":"0.6.0","kind":"a.b/c","devices":[]}"#,
            "no devices",
        ),
        (
            "empty.json",
            r#"{"cdiVersion":"0.6.0","kind":"a.b/c","devices":[{"name":"x"}]}"#,
            "device \"x\" has no containerEdits",
        ),
    ];
    for (name, text, want) in cases {
        let err = parse_spec(Path::new(name), text.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{name}: {err:?} lacks {want:?}");
        assert!(err.contains(name), "{name}: {err:?} does not name the file");
    }
}

#[test]
fn resolution_merges_spec_then_device_edits() {
    let d = dir_with(&[("gpu.yaml", &yaml("0.8.0")), ("fpga.json", JSON)]);
    let reg = Registry::load(&[d.path().to_path_buf()]).unwrap();
    assert_eq!(
        reg.device_names(),
        [
            "example.com/gpu=0",
            "example.com/gpu=1",
            "vendor.test/fpga=a",
            "vendor.test/fpga=all"
        ]
    );
    let r = reg
        .resolve(&[
            DeviceRequest::Cdi("example.com/gpu=0".into()),
            DeviceRequest::Cdi("example.com/gpu=1".into()),
        ])
        .unwrap();
    // Spec edits once, before the devices'; a device's env wins over the spec's.
    assert_eq!(r.edits.env, ["SPEC=1", "SHARED=dev0"]);
    assert_eq!(r.edits.hooks.len(), 1);
    assert_eq!(
        r.edits
            .device_nodes
            .iter()
            .map(|n| n.path.as_str())
            .collect::<Vec<_>>(),
        ["/dev/card0", "/dev/card1"]
    );
    assert_eq!(r.edits.additional_gids, [44]);

    // `=all`: every device of the kind when the spec has no device of that name.
    let all = reg
        .resolve(&[DeviceRequest::Cdi("example.com/gpu=all".into())])
        .unwrap();
    assert_eq!(all.edits, r.edits);
    // ... and the spec's own `all` device when it has one.
    let fpga = reg
        .resolve(&[DeviceRequest::Cdi("vendor.test/fpga=all".into())])
        .unwrap();
    assert_eq!(fpga.edits.env, ["FPGA=all"]);
    assert!(fpga.edits.device_nodes.is_empty());
    assert_eq!(fpga.edits.mounts.len(), 1);
}

#[test]
fn later_directories_win_and_same_directory_conflicts() {
    let first = dir_with(&[("a.yaml", &yaml("0.6.0"))]);
    let later = dir_with(&[(
        "b.yaml",
        &yaml("0.6.0").replace("SHARED=dev0", "SHARED=later"),
    )]);
    let reg = Registry::load(&[first.path().into(), later.path().into()]).unwrap();
    let r = reg
        .resolve(&[DeviceRequest::Cdi("example.com/gpu=0".into())])
        .unwrap();
    assert!(r.edits.env.contains(&"SHARED=later".to_string()));
    assert_eq!(
        reg.spec_path("example.com/gpu=0"),
        Some(later.path().join("b.yaml").as_path())
    );

    let both = dir_with(&[("a.yaml", &yaml("0.6.0")), ("b.yml", &yaml("0.6.0"))]);
    let err = Registry::load(&[both.path().into()]).unwrap_err();
    assert!(
        matches!(&err, CdiError::Conflict { name, .. } if name == "example.com/gpu=0"),
        "{err}"
    );
    // A bad file anywhere is an error naming it.
    let bad = dir_with(&[("bad.yaml", "kind: x")]);
    let err = Registry::load(&[bad.path().into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.yaml"), "{err}");
    // Missing directories are empty; other extensions are ignored.
    let other = dir_with(&[("notes.txt", "not a spec")]);
    let reg = Registry::load(&[other.path().into(), "/nonexistent/cdi".into()]).unwrap();
    assert!(reg.device_names().is_empty());
}

#[test]
fn unknown_devices_name_the_device_and_how_to_get_a_spec() {
    let d = dir_with(&[("gpu.yaml", &yaml("0.6.0"))]);
    let reg = Registry::load(&[d.path().into()]).unwrap();
    let err = reg
        .resolve(&[DeviceRequest::Cdi("nvidia.com/gpu=all".into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown device nvidia.com/gpu=all"), "{err}");
    assert!(err.contains(NVIDIA_HINT), "{err}");
    let err = reg
        .resolve(&[DeviceRequest::Cdi("example.com/gpu=7".into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("example.com/gpu=7"), "{err}");
    assert!(
        err.contains("define example.com/gpu devices 0, 1 only"),
        "{err}"
    );
    assert!(DeviceRequest::parse("example.com=0").is_err());
}

#[test]
fn gpus_flag_as_docker_parses_it() {
    let p = |s: &str| GpuRequest::parse(s).unwrap();
    assert_eq!(p("all").count, Some(GpuCount::All));
    assert_eq!(p("2").count, Some(GpuCount::N(2)));
    assert_eq!(p("count=all").count, Some(GpuCount::All));
    assert_eq!(p("count=3,driver=nvidia").count, Some(GpuCount::N(3)));
    assert_eq!(p("device=1").device_ids, ["1"]);
    assert_eq!(p("\"device=0,1\"").device_ids, ["0", "1"]);
    let caps = p("\"capabilities=compute,utility\"");
    assert_eq!(caps.capabilities, ["compute", "utility"]);
    assert_eq!(caps.count, Some(GpuCount::N(1)), "docker's default count");
    for bad in [
        "some",
        "count=x",
        "all,2",
        "count=1,device=0",
        "driver=amd",
        "bogus=1",
        "\"device=0,",
    ] {
        assert!(GpuRequest::parse(bad).is_err(), "{bad}");
    }
    let err = GpuRequest::parse("bogus=1").unwrap_err().to_string();
    assert!(err.contains("--gpus") && err.contains("bogus"), "{err}");

    let spec = yaml("0.6.0")
        .replace("example.com/gpu", "nvidia.com/gpu")
        .replace("name: \"1\"", "name: \"10\"");
    let spec = format!(
        "{spec}  - name: \"2\"\n    containerEdits:\n      env: [X=2]\n  - name: all\n    containerEdits:\n      env: [X=all]\n"
    );
    let d = dir_with(&[("nvidia.yaml", &spec)]);
    let reg = Registry::load(&[d.path().into()]).unwrap();
    let names = |s: &str| -> Vec<DeviceRequest> { p(s).to_requests(&reg).unwrap() };
    let cdi = |n: &str| DeviceRequest::Cdi(format!("nvidia.com/gpu={n}"));
    assert_eq!(names("all"), [cdi("all")]);
    assert_eq!(names("2"), [cdi("0"), cdi("2")], "numeric order, not text");
    assert_eq!(names("\"device=10,0\""), [cdi("10"), cdi("0")]);
    assert!(p("4").to_requests(&reg).is_err());
    let empty = Registry::load(&[]).unwrap();
    let err = p("1").to_requests(&empty).unwrap_err().to_string();
    assert!(err.contains(NVIDIA_HINT), "{err}");
}

#[test]
fn device_flag_cdi_names_and_host_nodes() {
    assert_eq!(
        DeviceRequest::parse("nvidia.com/gpu=all").unwrap(),
        DeviceRequest::Cdi("nvidia.com/gpu=all".into())
    );
    let host = |h: &str, c: &str, p: &str| {
        DeviceRequest::Host(HostDevice {
            host: h.into(),
            container: c.into(),
            permissions: p.into(),
        })
    };
    assert_eq!(
        DeviceRequest::parse("/dev/fuse").unwrap(),
        host("/dev/fuse", "/dev/fuse", "rwm")
    );
    assert_eq!(
        DeviceRequest::parse("/dev/sda:r").unwrap(),
        host("/dev/sda", "/dev/sda", "r")
    );
    assert_eq!(
        DeviceRequest::parse("/dev/sda:/dev/xvda").unwrap(),
        host("/dev/sda", "/dev/xvda", "rwm")
    );
    assert_eq!(
        DeviceRequest::parse("/dev/sda:/dev/xvda:rw").unwrap(),
        host("/dev/sda", "/dev/xvda", "rw")
    );
    for bad in ["dev/sda", "/dev/a:/b:xyz", "/a:/b:r:w", "/dev/a:rel"] {
        assert!(DeviceRequest::parse(bad).is_err(), "{bad}");
    }
    let reg = Registry::default();
    let r = reg
        .resolve(&[DeviceRequest::parse("/dev/sda:/dev/xvda:r").unwrap()])
        .unwrap();
    assert_eq!(r.names, ["/dev/sda:/dev/xvda:r"]);
    assert_eq!(
        r.edits.device_nodes[0].host_path.as_deref(),
        Some("/dev/sda")
    );
}

#[test]
fn apply_fills_the_run_spec() {
    let d = dir_with(&[("gpu.yaml", &yaml("1.0.0"))]);
    let reg = Registry::load(&[d.path().into()]).unwrap();
    let r = reg
        .resolve(&[DeviceRequest::Cdi("example.com/gpu=all".into())])
        .unwrap();
    let mut spec = rbuild_sandbox::RunSpec {
        env: vec!["PATH=/bin".into(), "SHARED=image".into()],
        additional_gids: vec![44, 10],
        ..Default::default()
    };
    apply(&r, &mut spec);
    assert_eq!(spec.env, ["PATH=/bin", "SPEC=1", "SHARED=dev0"]);
    assert_eq!(spec.additional_gids, [44, 10]);
    let dev = &spec.devices;
    assert_eq!(dev.nodes.len(), 2);
    assert_eq!(dev.nodes[0].host_path, PathBuf::from("/dev/zero"));
    assert!(!dev.nodes[0].readonly);
    assert_eq!(dev.nodes[1].host_path, PathBuf::from("/dev/card1"));
    assert!(dev.nodes[1].readonly, "permissions r");
    let m = &dev.mounts[0];
    assert!(m.readonly && m.nosuid && m.nodev && !m.noexec && !m.recursive);
    let h = &dev.hooks[0];
    assert_eq!(h.stage, rbuild_sandbox::HookStage::CreateContainer);
    assert_eq!(h.args, ["hook", "update-ldcache"]);
    assert_eq!(h.timeout, Some(Duration::from_secs(5)));
}

#[test]
fn flags_resolve_in_one_call() {
    let spec = yaml("0.6.0").replace("example.com/gpu", "nvidia.com/gpu");
    let d = dir_with(&[("nvidia.yaml", &spec)]);
    let dirs = [d.path().to_path_buf()];
    let r = resolve_flags(&["1".into()], &["/dev/null:/dev/x:r".into()], &dirs).unwrap();
    assert_eq!(r.names, ["/dev/null:/dev/x:r", "nvidia.com/gpu=0"]);
    let paths: Vec<&str> = r
        .edits
        .device_nodes
        .iter()
        .map(|n| n.path.as_str())
        .collect();
    assert_eq!(paths, ["/dev/x", "/dev/card0"]);
    // Host nodes alone never read specs (a broken spec directory does not matter then).
    let broken = dir_with(&[("bad.yaml", "kind: [")]);
    assert!(resolve_flags(&[], &["/dev/null".into()], &[broken.path().into()]).is_ok());
    let err = resolve_flags(&["all".into()], &[], &[broken.path().into()]).unwrap_err();
    assert!(err.to_string().contains("bad.yaml"), "{err}");
    assert!(resolve_flags(&["x".into()], &[], &dirs).is_err());
}
