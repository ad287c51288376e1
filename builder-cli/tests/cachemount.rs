//! `RUN --mount=type=cache` options (`sharing`, `ro`, `mode`/`uid`/`gid`, `from`/`source`) and the
//! owner and mode of secret and ssh mounts. What docker 20.10's BuildKit does is the oracle where
//! it can be observed from one build (owners, modes, seeding, read-only); sharing between
//! concurrent builds is asserted against the Dockerfile reference.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;

fn rbuild_build(store: &Path, ctx: &Path, args: &[&str]) -> Command {
    let mut c = rbuild(store);
    c.args(["build", "--progress", "plain"]).args(args).arg(ctx);
    c
}

fn log_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// A tag unique to this test run, so caches docker keeps between runs never seed this one.
fn nonce() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Eight `rbuild` processes run the same `sharing=locked` step on one store at once, each writing
/// its own number into the cache, waiting a second and reading it back: each sees only its own
/// number, so no two held the cache together, and all eight builds succeed.
#[test]
fn locked_cache_admits_one_build_at_a_time() {
    let store = store_with_base();
    let ctx = context_with(
        &format!(
            "FROM {BUSYBOX}\n\
             ARG N\n\
             RUN --mount=type=cache,target=/c,sharing=locked \
             echo \"$N\" > /c/owner && sleep 1 && test \"$(cat /c/owner)\" = \"$N\" && \
             echo \"$N\" >> /c/log\n"
        ),
        &[],
    );
    let children: Vec<_> = (0..8)
        .map(|n| {
            rbuild_build(
                store.path(),
                ctx.path(),
                &["--no-cache", "--build-arg", &format!("N={n}")],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for (n, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "build {n} failed:\n{}", log_of(out));
    }
    // Every build wrote to the one cache they share (no private copies were made).
    let family: Vec<_> = std::fs::read_dir(store.path().join("cache-mounts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(family.len(), 1, "{family:?}");
    let mut log: Vec<u32> = std::fs::read_to_string(family[0].join("0/log"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    log.sort();
    assert_eq!(log, (0..8).collect::<Vec<_>>());
}

/// `private`: two mounts of one cache held at once by one step get two instances; once free,
/// a later step reuses the first. `shared`: both mounts are the same directory.
#[test]
fn private_cache_is_a_separate_copy_per_concurrent_holder() {
    let store = store_with_base();
    let ctx = context_with(
        &format!(
            "FROM {BUSYBOX}\n\
             RUN --mount=type=cache,id=p,target=/a,sharing=private \
             --mount=type=cache,id=p,target=/b,sharing=private \
             touch /a/from-a && test ! -e /b/from-a\n\
             RUN --mount=type=cache,id=p,target=/a,sharing=private test -e /a/from-a\n\
             RUN --mount=type=cache,id=s,target=/a --mount=type=cache,id=s,target=/b \
             touch /a/from-a && test -e /b/from-a\n"
        ),
        &[],
    );
    let out = rbuild_build(store.path(), ctx.path(), &[])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", log_of(&out));
}

/// A killed build leaves neither a lock (the kernel drops a dead process's flocks) nor a
/// half-made cache: a temporary instance left behind is deleted, not used, by the next build.
#[test]
fn killed_build_leaves_no_lock_and_no_half_made_cache() {
    let store = store_with_base();
    let ctx = context_with(
        &format!(
            "FROM {BUSYBOX}\n\
             ARG STEP\n\
             RUN --mount=type=cache,target=/c,sharing=locked \
             echo \"$STEP\" >> /c/log && if [ \"$STEP\" = hang ]; then echo holding-the-$STEP; sleep 600; fi\n"
        ),
        &[],
    );
    let mut hung = rbuild_build(store.path(), ctx.path(), &["--build-arg", "STEP=hang"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The step's output arrives as it prints: once it says so, it holds the cache (its text,
    // unlike the RUN line the progress shows, names the value of STEP).
    let mut seen = String::new();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(hung.stderr.take().unwrap()).lines();
        while !seen.contains("holding-the-hang") {
            match lines.next() {
                Some(line) => seen.push_str(&(line.unwrap() + "\n")),
                None => panic!("the build ended before its step held the cache:\n{seen}"),
            }
        }
    }
    let log = std::fs::read_dir(store.path().join("cache-mounts"))
        .unwrap()
        .map(|e| e.unwrap().path().join("0/log"))
        .next()
        .unwrap();
    let family = log.parent().unwrap().parent().unwrap().to_path_buf();
    // SIGKILL: no destructor runs, exactly what a crash or an OOM kill does.
    let lock = family.join("0.lock");
    let free = || {
        Command::new("flock")
            .args(["--nonblock", "--exclusive"])
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
    };
    assert!(!free(), "the running step does not hold the cache's lock");
    hung.kill().unwrap();
    hung.wait().unwrap();
    assert!(free(), "the killed build's lock is still held");
    // A creation cut short by a kill: a temporary instance that must never be used.
    let stale = family.join(".tmp-999999");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("half"), "x").unwrap();
    std::fs::rename(family.join("0"), family.join("gone")).unwrap();

    let out = rbuild_build(store.path(), ctx.path(), &["--build-arg", "STEP=after"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", log_of(&out));
    assert_eq!(
        std::fs::read_to_string(family.join("0/log")).unwrap(),
        "after\n",
        "the new instance is not a fresh directory"
    );
    assert!(!stale.exists(), "the half-made instance was left behind");
}

/// The owner, mode, seeding and read-only-ness of cache mounts, and the owner and mode of secret
/// files, as docker 20.10's BuildKit gives them, compared line by line.
#[test]
fn cache_and_secret_options_match_docker() {
    let n = nonce();
    let dockerfile = format!(
        "FROM {BUSYBOX} AS src\n\
         RUN mkdir -p /seed/sub && echo seeded > /seed/sub/f && chown -R 5:6 /seed && chmod 700 /seed\n\
         FROM {BUSYBOX}\n\
         RUN --mount=type=cache,target=/c1,id=plain-{n} stat -c '%u:%g %a' /c1 > /o1\n\
         RUN --mount=type=cache,target=/c2,id=owned-{n},uid=1000,gid=50,mode=0750 stat -c '%u:%g %a' /c2 > /o2\n\
         RUN --mount=type=cache,target=/c3,id=seeded-{n},from=src,source=/seed \
         stat -c '%u:%g %a %n' /c3 /c3/sub /c3/sub/f > /o3 && cat /c3/sub/f >> /o3 && echo more > /c3/new\n\
         RUN --mount=type=cache,target=/c3,id=seeded-{n},from=src,source=/seed ls /c3 > /o4\n\
         RUN --mount=type=cache,target=/c5,id=seeded-{n},from=src,source=/seed,uid=7,mode=0711 \
         stat -c '%u:%g %a' /c5 > /o5 && ls /c5 >> /o5\n\
         RUN --mount=type=cache,target=/c6,id=root-{n},from=src,uid=7,mode=0711 \
         stat -c '%u:%g %a' /c6 > /o6 && ls -A /c6 >> /o6\n\
         RUN --mount=type=cache,target=/c7,id=ro-{n},ro stat -c '%u:%g %a' /c7 > /o7 && \
         (touch /c7/x 2>> /o7 || echo write-refused >> /o7)\n\
         RUN --mount=type=cache,target=/c8,id=other-{n},from=src,source=/seed/sub ls /c8 > /o8\n\
         RUN --mount=type=secret,id=s,uid=1000,mode=0640 stat -c '%u:%g %a' /run/secrets/s > /o9\n\
         RUN --mount=type=secret,id=s stat -c '%u:%g %a' /run/secrets/s > /o10 && chmod 1777 /tmp\n\
         USER app\n\
         RUN --mount=type=secret,id=s,uid=1000 cat /run/secrets/s > /tmp/o11\n\
         RUN --mount=type=secret,id=s (cat /run/secrets/s 2>/dev/null || echo read-refused) > /tmp/o12\n\
         FROM scratch\n\
         COPY --from=1 /o* /tmp/o* /\n"
    );
    let ctx = context_with(&dockerfile, &[("s.txt", "secret\n")]);
    let secret = format!("id=s,src={}", ctx.path().join("s.txt").display());
    let work = tempfile::tempdir().unwrap();
    let (ours, theirs) = (work.path().join("rbuild"), work.path().join("docker"));

    let store = store_with_base();
    let out = rbuild_build(
        store.path(),
        ctx.path(),
        &[
            "--secret",
            &secret,
            "-o",
            &format!("type=local,dest={}", ours.display()),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", log_of(&out));
    run_ok(
        docker()
            .args([
                "build",
                "--network",
                "host",
                "-q",
                "--secret",
                &secret,
                "-o",
            ])
            .arg(format!("type=local,dest={}", theirs.display()))
            .arg(ctx.path()),
    );
    let read = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for i in 1..=12 {
        let name = format!("o{i}");
        let (a, b) = (read(&ours, &name), read(&theirs, &name));
        assert_eq!(a, b, "/{name} differs (left rbuild, right docker)");
    }
    // The oracle itself shows each option at work, so equality is not of two defaults.
    assert_eq!(read(&theirs, "o1"), "0:0 755\n");
    assert_eq!(read(&theirs, "o2"), "1000:50 750\n");
    assert!(read(&theirs, "o3").starts_with("5:6 700 /c3\n"));
    assert_eq!(read(&theirs, "o4"), "new\nsub\n");
    assert_eq!(read(&theirs, "o6"), "7:0 711\n");
    assert!(read(&theirs, "o7").ends_with("write-refused\n"));
    assert_eq!(read(&theirs, "o9"), "1000:0 640\n");
    assert_eq!(read(&theirs, "o12"), "read-refused\n");
}

/// The seeded cache is persistent: a later build with the same id and `from` sees what an
/// earlier one wrote, not a fresh copy.
#[test]
fn cache_seeded_from_a_stage_keeps_writes_across_builds() {
    let store = store_with_base();
    let ctx = context_with(
        &format!(
            "FROM {BUSYBOX} AS src\n\
             RUN mkdir /seed && echo seeded > /seed/f\n\
             FROM {BUSYBOX}\n\
             ARG N\n\
             RUN --mount=type=cache,target=/c,from=src,source=/seed \
             cat /c/f && echo \"$N\" >> /c/runs && cat /c/runs > /runs\n"
        ),
        &[],
    );
    let work = tempfile::tempdir().unwrap();
    for n in 1..=2 {
        let dest = work.path().join(n.to_string());
        let out = rbuild_build(
            store.path(),
            ctx.path(),
            &[
                "--build-arg",
                &format!("N={n}"),
                "-o",
                &format!("type=local,dest={}", dest.display()),
            ],
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", log_of(&out));
    }
    assert_eq!(
        std::fs::read_to_string(work.path().join("2/runs")).unwrap(),
        "1\n2\n"
    );
}

/// The ssh socket a step gets is BuildKit's default (0600, root's) or what `mode`, `uid` and
/// `gid` ask (busybox has no unix-socket client: forwarding is tested in `mountfile`).
#[test]
fn ssh_socket_has_the_requested_owner_and_mode() {
    let store = store_with_base();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let ctx = context_with(
        &format!(
            "FROM {BUSYBOX}\n\
             RUN --mount=type=ssh stat -c '%u:%g %a' \"$SSH_AUTH_SOCK\" > /default\n\
             RUN --mount=type=ssh,id=deploy,target=/agent,uid=1000,gid=50,mode=0660 \
             stat -c '%u:%g %a' /agent > /owned\n"
        ),
        &[],
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = rbuild_build(
        store.path(),
        ctx.path(),
        &[
            "--ssh",
            &format!("default={}", sock.display()),
            "--ssh",
            &format!("deploy={}", sock.display()),
            "-o",
            &format!("type=local,dest={}", out_dir.path().display()),
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", log_of(&out));
    let read = |p: &str| std::fs::read_to_string(out_dir.path().join(p)).unwrap();
    assert_eq!(read("default"), "0:0 600\n");
    assert_eq!(read("owned"), "1000:50 660\n");
}

/// Rootless (rbuild as `rbuildtest`, root of a user namespace over its subordinate ids): a cache
/// made with `uid`/`gid` is theirs as the step sees ids (and a subordinate id's on the host),
/// the seeded copy keeps the seed's owners, and secrets get their owner too.
#[test]
fn rootless_cache_and_secret_owners() {
    let user = "rbuildtest";
    run_ok(&mut Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/test-users.sh"
    )));
    let dir = tempfile::Builder::new()
        .prefix("rbuild-cachemount-")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path();
    let ctx = root.join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BUSYBOX} AS src\n\
             RUN mkdir /seed && echo seeded > /seed/f && chown -R 5:6 /seed && chmod 700 /seed\n\
             FROM {BUSYBOX}\n\
             RUN --mount=type=cache,target=/c,id=owned,uid=1000,gid=50,mode=0750 \
             stat -c '%u:%g %a' /c > /owned && touch /c/by-root\n\
             RUN chmod 1777 /tmp\n\
             USER app\n\
             RUN --mount=type=cache,target=/c,id=owned,uid=1000,gid=50,mode=0750 touch /c/by-app\n\
             RUN --mount=type=secret,id=s,uid=1000 stat -c '%u:%g %a' /run/secrets/s > /tmp/secret && \
             cat /run/secrets/s >> /tmp/secret\n\
             USER root\n\
             RUN --mount=type=cache,target=/s,from=src,source=/seed stat -c '%u:%g %a' /s /s/f > /seeded\n"
        ),
    )
    .unwrap();
    std::fs::write(ctx.join("s.txt"), "secret\n").unwrap();
    std::fs::copy(base_archive(), root.join("base.tar")).unwrap();
    run_ok(
        Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(root),
    );
    run_ok(Command::new("chmod").arg("755").arg(root));
    let store = root.join("store");
    rbuild_as(user, &store, &["load", "-i", "base.tar"], root);
    rbuild_as(
        user,
        &store,
        &[
            "build",
            "-q",
            "--secret",
            "id=s,src=ctx/s.txt",
            "-o",
            "type=local,dest=out",
            "ctx",
        ],
        root,
    );
    let read = |p: &str| std::fs::read_to_string(root.join("out").join(p)).unwrap();
    assert_eq!(read("owned"), "1000:50 750\n");
    assert_eq!(read("tmp/secret"), "1000:0 400\nsecret\n");
    assert_eq!(read("seeded"), "5:6 700\n5:6 644\n");
    // On the host the cache belongs to the subordinate ids container 1000 and 50 map to.
    let family = std::fs::read_dir(store.join("cache-mounts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("owned-")
        })
        .expect("the owned cache");
    let meta = std::fs::metadata(family.join("0")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (100_000 + 999, 100_000 + 49));
    assert!(family.join("0/by-app").exists());
}
