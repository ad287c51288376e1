//! Runs one command in a rootfs through the sandbox and prints the result; used by the rootless
//! tests (run as an unprivileged user) and handy for poking at the sandbox by hand.
//!
//! Usage: sandbox-run --probe
//!        sandbox-run [--single] --set-owner-mode PATH UID:GID OCTAL-MODE
//!        sandbox-run [--single] --copy-tree SRC DEST
//!        sandbox-run [--single] [--net-none] [--uid N] [--gid N]
//!                    (--dir ROOTFS | --overlay LOWER,UPPER,WORK) -- ARGV...
//! Prints the step's output as it arrives, then `RESULT code=.. signal=..`, `WARNING ..` and
//! `STUB ..` lines on stdout; a sandbox error prints `ERROR ..` and exits 2.

use rbuild_sandbox::{IdMapMode, Network, RootfsSpec, RunSpec, Sandbox, SandboxOptions, Stream};
use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut opts = SandboxOptions::default();
    let mut spec = RunSpec {
        env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
        ..RunSpec::default()
    };
    let mut have_root = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--probe" => {
                let c = rbuild_sandbox::probe();
                let ranges = |r: &[rbuild_sandbox::IdRange]| {
                    r.iter()
                        .map(|r| format!("{}+{}", r.start, r.count))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                println!("is_root={}", c.is_root);
                println!("subuid={}", ranges(&c.subuid));
                println!("subgid={}", ranges(&c.subgid));
                println!("overlay_in_userns={}", c.overlay_in_userns);
                for n in c.notes {
                    println!("NOTE {n}");
                }
                return;
            }
            "--set-owner-mode" | "--copy-tree" => {
                // File operations with the steps' privileges: PATH UID:GID MODE, or SRC DEST.
                let (a1, a2) = (
                    args.next().unwrap_or_default(),
                    args.next().unwrap_or_default(),
                );
                let result = Sandbox::new(opts.clone()).and_then(|sb| {
                    if a == "--copy-tree" {
                        return sb.copy_tree(a1.as_ref(), a2.as_ref());
                    }
                    let owner = a2
                        .split_once(':')
                        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)));
                    let mode = args.next().and_then(|m| u32::from_str_radix(&m, 8).ok());
                    sb.set_owner_mode(a1.as_ref(), owner, mode)
                });
                match result {
                    Ok(()) => println!("RESULT ok"),
                    Err(e) => println!("ERROR {e}"),
                }
                return;
            }
            "--single" => opts.id_map = IdMapMode::Single,
            "--net-none" => spec.network = Network::None,
            "--uid" => spec.uid = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--gid" => spec.gid = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--dir" => {
                spec.rootfs = RootfsSpec::Dir(args.next().unwrap_or_default().into());
                have_root = true;
            }
            "--overlay" => {
                let v = args.next().unwrap_or_default();
                let parts: Vec<&str> = v.split(',').collect();
                if let [lower, upper, work] = parts.as_slice() {
                    spec.rootfs = RootfsSpec::Overlay {
                        lowers: vec![lower.into()],
                        upper: upper.into(),
                        work: work.into(),
                        volatile: false,
                    };
                    have_root = true;
                }
            }
            "--" => {
                spec.args = args.by_ref().collect();
            }
            other => {
                eprintln!("sandbox-run: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    if !have_root || spec.args.is_empty() {
        eprintln!(
            "usage: sandbox-run [--single] [--net-none] (--dir R | --overlay L,U,W) -- ARGV..."
        );
        std::process::exit(2);
    }
    let result = Sandbox::new(opts).and_then(|sb| {
        sb.run(&spec, &mut |s, b| {
            let _ = match s {
                Stream::Stdout => std::io::stdout().write_all(b),
                Stream::Stderr => std::io::stderr().write_all(b),
            };
        })
    });
    match result {
        Ok(r) => {
            let show = |v: Option<i32>| v.map_or("-".to_string(), |v| v.to_string());
            println!("RESULT code={} signal={}", show(r.code), show(r.signal));
            for w in r.warnings {
                println!("WARNING {w}");
            }
            for s in r.mount_stubs {
                println!("STUB {s}");
            }
        }
        Err(e) => {
            println!("ERROR {e}");
            std::process::exit(2);
        }
    }
}
