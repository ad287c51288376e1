//! Timing of context digests on a real tree, cold and warm; run by hand:
//! `RBUILD_BENCH_CONTEXT=/path/to/ctx cargo test --release -p rbuild-context
//! --test bench -- --ignored --nocapture`. The stat cache goes to a temp dir.

use std::path::PathBuf;
use std::time::Instant;

use rbuild_context::Context;

#[test]
#[ignore = "needs RBUILD_BENCH_CONTEXT; prints timings"]
fn digest_cold_and_warm() {
    let Some(root) = std::env::var_os("RBUILD_BENCH_CONTEXT").map(PathBuf::from) else {
        eprintln!("RBUILD_BENCH_CONTEXT is not set");
        return;
    };
    // RBUILD_BENCH_WARM=n: only n warm runs against a cache left in
    // RBUILD_BENCH_CACHE by an earlier run (for profiling the warm path).
    let warm_only: Option<usize> = std::env::var("RBUILD_BENCH_WARM")
        .ok()
        .and_then(|v| v.parse().ok());
    let tmp = tempfile::tempdir().unwrap();
    let store = std::env::var_os("RBUILD_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    // RBUILD_BENCH_SOURCES=a,b: digest these instead of "." (one small file
    // shows what loading the cache costs).
    let sources: Vec<String> = std::env::var("RBUILD_BENCH_SOURCES")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_else(|_| vec![".".to_string()]);
    let mut digests = Vec::new();
    let runs = match warm_only {
        Some(n) => vec!["warm"; n],
        None => vec!["uncached", "cold", "warm", "warm"],
    };
    for run in runs {
        let ctx = Context::open(&root, None).unwrap();
        let ctx = if run == "uncached" {
            ctx
        } else {
            ctx.with_stat_cache_in(&store)
        };
        let cpu = process_cpu_ns();
        let t = Instant::now();
        let d = ctx.digest_sources(&sources).unwrap();
        let open_and_digest = t.elapsed();
        let cpu = process_cpu_ns() - cpu;
        drop(ctx.clone());
        let stats = ctx.hash_stats();
        drop(ctx);
        eprintln!(
            "{run:>8}: {:>8.1} ms wall {:>8.1} ms cpu  hashed {} files / {} bytes, reused {}",
            open_and_digest.as_secs_f64() * 1e3,
            cpu as f64 / 1e6,
            stats.files_hashed,
            stats.bytes_hashed,
            stats.files_reused
        );
        digests.push(d);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
}

/// User + system time of the whole process, helper threads included (the
/// machine may be shared, so wall time alone says little); 10 ms ticks.
fn process_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<u64> = after_comm
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after comm.
    (fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0)) * 10_000_000
}
