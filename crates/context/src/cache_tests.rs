//! Stat-cache behaviour with the record clock under the test's control:
//! which files a digest reads (through [`HashStats`]), racy entries, damaged
//! cache files and concurrent use.

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Context, HashStats};

thread_local! {
    /// The record time a racy test wants; per thread, so tests running in
    /// parallel do not see each other's clocks.
    static CLOCK: Cell<i64> = const { Cell::new(0) };
}

fn thread_clock() -> i64 {
    CLOCK.with(Cell::get)
}

fn set_clock(secs: i64) {
    CLOCK.with(|c| c.set(secs));
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Records as if the build ran a day from now: every file in the fixture
/// (mtime and ctime at most "now") is strictly older, so entries are trusted.
fn a_day_later() -> i64 {
    now_secs() + 86_400
}

struct Fx {
    ctx: tempfile::TempDir,
    store: tempfile::TempDir,
}

fn write(base: &Path, rel: &str, content: &str, mode: u32) {
    let p = base.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(p: &Path, secs: i64) {
    let f = fs::File::options().write(true).open(p).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::from_secs(secs as u64))
        .unwrap();
}

impl Fx {
    /// Files, an executable, nested and empty directories, symlinks (to a
    /// file, a directory and nowhere) and ignored paths with an exception.
    fn new() -> Fx {
        let ctx = tempfile::tempdir().unwrap();
        let c = ctx.path();
        write(c, "app/main.py", "print('hi')\n", 0o644);
        write(c, "app/run.sh", "#!/bin/sh\n", 0o755);
        write(c, "app/lib/util.py", "x = 1\n", 0o600);
        write(c, "app/lib/data.bin", "\0\x01\x02", 0o644);
        write(c, "app/logs/debug.log", "noise", 0o644);
        write(c, "app/logs/keep.log", "kept", 0o644);
        write(c, "docs/a.md", "A", 0o644);
        write(c, "docs/b.md", "B", 0o644);
        write(c, "secret.txt", "ignored", 0o644);
        write(
            c,
            ".dockerignore",
            "secret.txt\napp/logs\n!app/logs/keep.log\n",
            0o644,
        );
        fs::create_dir_all(c.join("app/empty")).unwrap();
        fs::set_permissions(c.join("app/lib"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("main.py", c.join("app/link.py")).unwrap();
        symlink("../docs", c.join("app/docs")).unwrap();
        symlink("missing", c.join("app/dangling")).unwrap();
        Fx {
            ctx,
            store: tempfile::tempdir().unwrap(),
        }
    }

    fn c(&self) -> &Path {
        self.ctx.path()
    }

    fn cache_file(&self) -> PathBuf {
        self.store.path().join("cache")
    }

    /// A fresh context, as a new build would open it.
    fn open(&self, clock: fn() -> i64) -> Context {
        Context::open(self.c(), None)
            .unwrap()
            .with_stat_cache_clock(self.cache_file(), clock)
    }

    fn uncached(&self, sources: &[String]) -> String {
        Context::open(self.c(), None)
            .unwrap()
            .digest_sources(sources)
            .unwrap()
    }
}

fn srcs(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// Regular files the fixture's "." reaches (`secret.txt` and `debug.log` are
/// ignored; links are not files).
const FILES: u64 = 8;

fn hashed(ctx: &Context) -> u64 {
    ctx.hash_stats().files_hashed
}

#[test]
fn no_op_rebuild_reads_no_file() {
    let f = Fx::new();
    let all = srcs(&["."]);
    let want = f.uncached(&all);

    let cold = f.open(a_day_later);
    assert_eq!(cold.digest_sources(&all).unwrap(), want);
    assert_eq!(hashed(&cold), FILES);
    drop(cold);

    let warm = f.open(a_day_later);
    assert_eq!(warm.digest_sources(&all).unwrap(), want);
    assert_eq!(
        warm.hash_stats(),
        HashStats {
            files_hashed: 0,
            bytes_hashed: 0,
            files_reused: FILES,
            cache_save_error: None,
        }
    );
}

#[test]
fn cached_and_uncached_agree_on_every_source_shape() {
    let f = Fx::new();
    let cases: Vec<Vec<String>> = vec![
        srcs(&["."]),
        srcs(&["app"]),
        srcs(&["app/", "docs/a.md"]),
        srcs(&["app/*.py", "docs/*"]),
        srcs(&["app/docs"]),
        srcs(&["app/link.py", "app/empty"]),
        srcs(&["app/logs"]),
        srcs(&["app/l*/"]),
    ];
    // Cold (everything hashed and recorded), then warm (everything reused).
    for round in 0..2 {
        let ctx = f.open(a_day_later);
        for sources in &cases {
            let uncached = Context::open(f.c(), None)
                .unwrap()
                .source_manifest(sources)
                .unwrap();
            let cached = ctx.source_manifest(sources).unwrap();
            assert_eq!(cached, uncached, "{sources:?} round {round}");
            assert_eq!(cached.digest(), f.uncached(sources), "{sources:?}");
        }
        if round == 1 {
            assert_eq!(hashed(&ctx), 0);
        }
    }
}

#[test]
fn one_file_edit_rehashes_exactly_that_file() {
    let f = Fx::new();
    let all = srcs(&["."]);
    f.open(a_day_later).digest_sources(&all).unwrap();
    let before = f.uncached(&all);
    // Same size, so only the timestamps and the content tell.
    fs::write(f.c().join("app/lib/util.py"), "x = 2\n").unwrap();
    let ctx = f.open(a_day_later);
    let after = ctx.digest_sources(&all).unwrap();
    assert_eq!(hashed(&ctx), 1);
    assert_eq!(ctx.hash_stats().files_reused, FILES - 1);
    assert_ne!(after, before);
    assert_eq!(after, f.uncached(&all));
}

#[test]
fn content_restored_under_the_old_mtime_is_still_noticed() {
    let f = Fx::new();
    let all = srcs(&["."]);
    let p = f.c().join("docs/a.md");
    set_mtime(&p, 1_000_000_000);
    f.open(a_day_later).digest_sources(&all).unwrap();
    // What `touch -r` or an archive extraction does: new bytes, same size,
    // the old mtime put back. Only the ctime (and inode) still differ.
    fs::write(&p, "Z").unwrap();
    set_mtime(&p, 1_000_000_000);
    assert_eq!(fs::metadata(&p).unwrap().mtime(), 1_000_000_000);
    let ctx = f.open(a_day_later);
    assert_eq!(ctx.digest_sources(&all).unwrap(), f.uncached(&all));
    assert_eq!(hashed(&ctx), 1);
}

#[test]
fn racily_clean_entries_are_rehashed_until_recorded_later() {
    let f = Fx::new();
    let all = srcs(&["."]);
    // Record in the very second the files were last changed.
    let changed = fs::metadata(f.c().join("app/main.py")).unwrap().ctime();
    set_clock(changed);
    let ctx = f.open(thread_clock);
    ctx.digest_sources(&all).unwrap();
    assert_eq!(hashed(&ctx), FILES);
    drop(ctx);
    // Stat data unchanged, but none of it can be trusted.
    let ctx = f.open(thread_clock);
    ctx.digest_sources(&all).unwrap();
    assert_eq!(hashed(&ctx), FILES);
    drop(ctx);
    // Hashed again in a later second: now the entries are trusted.
    set_clock(changed + 1);
    let ctx = f.open(thread_clock);
    ctx.digest_sources(&all).unwrap();
    assert_eq!(hashed(&ctx), FILES);
    drop(ctx);
    let ctx = f.open(thread_clock);
    assert_eq!(ctx.digest_sources(&all).unwrap(), f.uncached(&all));
    assert_eq!(hashed(&ctx), 0);
}

#[test]
fn a_file_stamped_in_the_future_is_never_trusted() {
    let f = Fx::new();
    let all = srcs(&["."]);
    set_mtime(&f.c().join("docs/b.md"), a_day_later() + 86_400);
    let ctx = f.open(a_day_later);
    ctx.digest_sources(&all).unwrap();
    assert_eq!(hashed(&ctx), FILES);
    for _ in 0..2 {
        let ctx = f.open(a_day_later);
        assert_eq!(ctx.digest_sources(&all).unwrap(), f.uncached(&all));
        assert_eq!(hashed(&ctx), 1);
    }
}

#[test]
fn a_damaged_cache_file_is_ignored_and_replaced() {
    let f = Fx::new();
    let all = srcs(&["."]);
    f.open(a_day_later).digest_sources(&all).unwrap();
    let good = fs::read(f.cache_file()).unwrap();
    let mut flipped = good.clone();
    // A byte inside the last entry's digest: structurally fine, wrong data.
    let len = flipped.len();
    flipped[len - 40] ^= 0x55;
    let damages: Vec<Vec<u8>> = vec![
        good[..good.len() / 2].to_vec(),
        good[..good.len() - 1].to_vec(),
        flipped,
        Vec::new(),
        b"garbage".to_vec(),
    ];
    for damaged in damages {
        fs::write(f.cache_file(), &damaged).unwrap();
        let ctx = f.open(a_day_later);
        assert_eq!(ctx.digest_sources(&all).unwrap(), f.uncached(&all));
        assert_eq!(hashed(&ctx), FILES, "a damaged cache was trusted");
        drop(ctx);
        let ctx = f.open(a_day_later);
        ctx.digest_sources(&all).unwrap();
        assert_eq!(hashed(&ctx), 0, "the cache was not rewritten");
    }
}

#[test]
fn deleted_files_leave_the_cache() {
    let f = Fx::new();
    f.open(a_day_later).digest_sources(&srcs(&["."])).unwrap();
    fs::remove_file(f.c().join("docs/b.md")).unwrap();
    fs::write(f.c().join("docs/c.md"), "C").unwrap();
    // This build never looks at docs/b.md, but saves (docs/c.md is new).
    let ctx = f.open(a_day_later);
    ctx.digest_sources(&srcs(&["docs"])).unwrap();
    let cache = ctx.cache.clone().unwrap();
    drop(ctx);
    assert_eq!(cache.len(), FILES as usize);
}

#[test]
fn shared_context_digests_from_many_threads() {
    let f = Fx::new();
    let cases = [
        srcs(&["."]),
        srcs(&["app"]),
        srcs(&["docs/*"]),
        srcs(&["app/lib", "app/run.sh"]),
    ];
    let want: Vec<String> = cases.iter().map(|s| f.uncached(s)).collect();
    let ctx = f.open(a_day_later);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (ctx, cases, want) = (&ctx, &cases, &want);
            s.spawn(move || {
                for round in 0..4 {
                    let i = (t + round) % cases.len();
                    assert_eq!(ctx.digest_sources(&cases[i]).unwrap(), want[i]);
                }
            });
        }
    });
    drop(ctx);
    // Two "builds" saving at once (separate caches on one file, as two
    // processes would have) leave a file that one of them wrote whole.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| f.open(a_day_later).digest_sources(&cases[0]).unwrap());
        }
    });
    let ctx = f.open(a_day_later);
    assert_eq!(ctx.digest_sources(&cases[0]).unwrap(), want[0]);
    assert_eq!(hashed(&ctx), 0);
}

#[test]
fn an_unwritable_cache_location_is_reported_not_fatal() {
    let f = Fx::new();
    // A regular file where the cache's directory should be.
    fs::write(f.store.path().join("blocker"), "").unwrap();
    let ctx = Context::open(f.c(), None)
        .unwrap()
        .with_stat_cache_clock(f.store.path().join("blocker/cache"), a_day_later);
    let all = srcs(&["."]);
    assert_eq!(ctx.digest_sources(&all).unwrap(), f.uncached(&all));
    let err = ctx.hash_stats().cache_save_error.expect("save error kept");
    assert!(err.contains("blocker"), "{err}");
}
