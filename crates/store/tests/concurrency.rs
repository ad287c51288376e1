//! Concurrency and crash safety: several threads and several processes share one store, and a
//! process killed in the middle of a blob write leaves a store the next run can use.
//!
//! Child processes are this test binary re-executed with `RBUILD_STORE_CHILD` set; the
//! `child_process_entry` test is their entry point and does nothing in a normal run.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;

use rbuild_digest::Digest;
use rbuild_store::{RefTarget, Store, Variant};

const ROLE_ENV: &str = "RBUILD_STORE_CHILD";
const ROOT_ENV: &str = "RBUILD_STORE_CHILD_ROOT";
const THREADS: usize = 3;
const BLOBS: usize = 12;
const BIG: usize = 16 * 1024 * 1024;

/// Deterministic content, a few KiB to ~100 KiB, different per (tag, i).
fn content(tag: &str, i: usize) -> Vec<u8> {
    let len = 1000 + (i * 7919) % 100_000;
    let seed = format!("{tag}/{i};");
    seed.bytes().cycle().take(len).collect()
}

fn big_content() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

fn target(d: Digest) -> RefTarget {
    RefTarget {
        digest: d,
        media_type: "application/octet-stream".into(),
        created: None,
    }
}

/// What one writer (thread `t` of writer `who`) does: same blobs as everybody plus its own, written
/// through streaming ingests in small chunks, and refs both shared and private.
fn writer_work(store: &Store, who: &str, t: usize) {
    for i in 0..BLOBS {
        for data in [content("common", i), content(&format!("{who}-{t}"), i)] {
            let mut ing = store.ingest().unwrap();
            for chunk in data.chunks(4096) {
                ing.write_all(chunk).unwrap();
            }
            let (d, n) = ing.commit(Some(&Digest::of(&data))).unwrap();
            assert_eq!(n, data.len() as u64);
            // A committed blob is complete the moment it is visible.
            assert_eq!(store.read_blob(&d).unwrap(), data);
        }
        let common = Digest::of(&content("common", i));
        store
            .set_ref("docker.io/library/common:latest", &target(common))
            .unwrap();
        let own = Digest::of(&content(&format!("{who}-{t}"), i));
        store
            .set_ref(&format!("example.com/{who}/{t}:latest"), &target(own))
            .unwrap();
        store
            .set_variant(
                &common,
                "gzip",
                &Variant {
                    digest: own,
                    size: 1,
                    media_type: "x".into(),
                },
            )
            .unwrap();
    }
}

fn expected_blobs(writers: &[String]) -> BTreeSet<Digest> {
    let mut set = BTreeSet::new();
    for i in 0..BLOBS {
        set.insert(Digest::of(&content("common", i)));
        for who in writers {
            for t in 0..THREADS {
                set.insert(Digest::of(&content(&format!("{who}-{t}"), i)));
            }
        }
    }
    set
}

fn spawn_child(role: &str, root: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .env(ROOT_ENV, root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_ok(child: Child, role: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "child {role} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn say(line: &str) {
    // Straight to fd 1, past libtest's capture; on its own line, since libtest has already printed
    // "test child_process_entry ... " without a newline.
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{line}").unwrap();
    out.flush().unwrap();
}

/// Entry point of child processes; a no-op unless `RBUILD_STORE_CHILD` is set.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let root = std::env::var(ROOT_ENV).unwrap();
    let store = Store::open(&root).unwrap();
    if let Some(who) = role.strip_prefix("writer:") {
        let _build = store.lock_shared().unwrap();
        thread::scope(|s| {
            for t in 0..THREADS {
                let store = &store;
                s.spawn(move || writer_work(store, who, t));
            }
        });
        say("DONE");
    } else if role == "crash" {
        let _build = store.lock_shared().unwrap();
        let committed = store.put_bytes(b"committed before the crash").unwrap();
        store.set_ref("crash:before", &target(committed)).unwrap();
        let scratch = store.temp_dir("crash").unwrap();
        fs::write(scratch.path().join("partial-layer"), b"partial").unwrap();
        let data = big_content();
        let mut ing = store.ingest().unwrap();
        ing.write_all(&data[..BIG / 2]).unwrap();
        ing.flush().unwrap();
        say("RBUILD-CHILD-READY");
        // Block until killed; the parent never writes to or closes our stdin first.
        let mut buf = [0u8; 1];
        let _ = std::io::stdin().read(&mut buf);
        // Only reached if the parent went away without killing us: finish normally.
        ing.write_all(&data[BIG / 2..]).unwrap();
        ing.commit(None).unwrap();
        drop(scratch);
    } else {
        panic!("unknown child role {role}");
    }
}

#[test]
fn processes_and_threads_write_same_and_different_blobs_and_refs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let mut writers: Vec<String> = (0..3).map(|p| format!("proc{p}")).collect();
    let children: Vec<(String, Child)> = writers
        .iter()
        .map(|w| (w.clone(), spawn_child(&format!("writer:{w}"), &root)))
        .collect();
    // The parent writes at the same time, from several threads of its own.
    {
        let _build = store.lock_shared().unwrap();
        thread::scope(|s| {
            for t in 0..THREADS {
                let store = &store;
                s.spawn(move || writer_work(store, "parent", t));
            }
        });
    }
    for (w, child) in children {
        wait_ok(child, &w);
    }
    writers.push("parent".into());

    // Every blob is present, complete and named by its digest; nothing else is there.
    let store = Store::open(&root).unwrap();
    let listed: BTreeSet<Digest> = store.list_blobs().unwrap().into_iter().collect();
    assert_eq!(listed, expected_blobs(&writers));
    for d in &listed {
        assert_eq!(Digest::of(&store.read_blob(d).unwrap()), *d);
    }
    assert_eq!(fs::read_dir(root.join("ingest")).unwrap().count(), 0);

    // Refs: the shared one holds one of the candidates (last writer wins), private ones their last.
    let refs = store.list_refs().unwrap();
    assert_eq!(refs.len(), 1 + writers.len() * THREADS);
    let common = store
        .get_ref("docker.io/library/common:latest")
        .unwrap()
        .unwrap();
    assert!((0..BLOBS).any(|i| Digest::of(&content("common", i)) == common.digest));
    for w in &writers {
        for t in 0..THREADS {
            let got = store
                .get_ref(&format!("example.com/{w}/{t}:latest"))
                .unwrap()
                .unwrap();
            assert_eq!(
                got.digest,
                Digest::of(&content(&format!("{w}-{t}"), BLOBS - 1))
            );
        }
    }
    // Variant records are whole (parseable) after racing writers.
    for i in 0..BLOBS {
        assert!(store
            .get_variant(&Digest::of(&content("common", i)), "gzip")
            .unwrap()
            .is_some());
    }
}

#[test]
fn threads_racing_on_one_blob_and_one_ref() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = content("race", 3);
    let want = Digest::of(&data);
    let candidates: Vec<Digest> = (0..8).map(|t| Digest::of(&content("cand", t))).collect();
    thread::scope(|s| {
        for t in 0..8 {
            let (store, data, candidates) = (&store, &data, &candidates);
            s.spawn(move || {
                for _ in 0..10 {
                    assert_eq!(store.put_bytes(data).unwrap(), want);
                    store.set_ref("race", &target(candidates[t])).unwrap();
                    let seen = store.get_ref("race").unwrap().unwrap();
                    assert!(candidates.contains(&seen.digest));
                }
            });
        }
    });
    assert_eq!(store.list_blobs().unwrap(), vec![want]);
    assert_eq!(store.read_blob(&want).unwrap(), data);
    assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
}

#[test]
fn killed_writer_leaves_a_usable_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    Store::open(&root).unwrap();
    let mut child = spawn_child("crash", &root);
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("RBUILD-CHILD-READY"));
    if !ready {
        let out = child.wait_with_output().unwrap();
        panic!(
            "crash child exited before READY: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Mid-write: the partial blob is invisible, and a concurrent open does not steal the live
    // ingest or scratch directory.
    let big = big_content();
    let big_digest = Digest::of(&big);
    let store = Store::open(&root).unwrap();
    assert!(!store.contains(&big_digest));
    assert_eq!(fs::read_dir(root.join("ingest")).unwrap().count(), 1);
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 1);
    // gc cannot run while the child's build holds the shared lock.
    assert!(store.try_lock_exclusive().unwrap().is_none());

    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());

    // Reopen: leftovers of the dead process are gone, committed work survived.
    let store = Store::open(&root).unwrap();
    assert_eq!(fs::read_dir(root.join("ingest")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    let before = store.get_ref("crash:before").unwrap().unwrap();
    assert_eq!(
        store.read_blob(&before.digest).unwrap(),
        b"committed before the crash"
    );
    assert_eq!(store.list_blobs().unwrap(), vec![before.digest]);
    for d in store.list_blobs().unwrap() {
        assert_eq!(Digest::of(&store.read_blob(&d).unwrap()), d);
    }
    // The lock died with the process.
    assert!(store.try_lock_exclusive().unwrap().is_some());

    // The interrupted blob can be written again.
    let mut ing = store.ingest().unwrap();
    for chunk in big.chunks(1 << 20) {
        ing.write_all(chunk).unwrap();
    }
    assert_eq!(
        ing.commit(Some(&big_digest)).unwrap(),
        (big_digest, BIG as u64)
    );
    assert_eq!(store.blob_size(&big_digest).unwrap(), BIG as u64);
    assert_eq!(
        Digest::of(&store.read_blob(&big_digest).unwrap()),
        big_digest
    );
}
