//! The scheduler: runs a build graph, every vertex whose inputs are ready, several at once.
//!
//! Workers are threads this module owns (scoped to the solve), at most `jobs` of them; a vertex
//! starts when all its inputs (and the steps it is reported after) are done. A RUN does not start
//! while another one runs and the machine is short of memory, so a wide graph does not push the
//! host into swap. Each vertex first computes its key and looks it up in the cache; a hit
//! returns the recorded chain, a miss is explained (see `explain`) and the op runs.
//!
//! The first failure wins: it is kept, the cancel flag is raised so running RUN steps are killed,
//! no new vertex starts, and the solve returns that error once every worker has cleaned up. A
//! caller's cancel works the same way and returns [`BuildError::Cancelled`].

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rbuild_digest::Digest;

use crate::chain::Chain;
use crate::explain;
use crate::graph::{Graph, Step, VertexId};
use crate::ops::{KeyParts, Op};
use crate::progress::Event;
use crate::progress::MissReason;
use crate::shared::Shared;
use crate::BuildError;

/// A RUN waits for running steps to finish while less memory than this is available.
const MIN_AVAILABLE_MEMORY: u64 = 512 << 20;
/// How often waiting workers look at the caller's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// What a solve produced.
pub(crate) struct Solved {
    /// Each vertex's result (`None` for vertices the targets did not need).
    pub results: Vec<Option<Chain>>,
    /// Keys of the steps that were keyed (hits and new records), for `--cache-to`.
    pub keys: Vec<Digest>,
}

struct State {
    /// Unfinished dependencies per vertex.
    pending: Vec<usize>,
    ready: VecDeque<VertexId>,
    results: Vec<Option<Chain>>,
    running: usize,
    /// Needed vertices not finished yet.
    left: usize,
    error: Option<BuildError>,
    keys: Vec<Digest>,
}

/// Runs what `targets` need with at most `jobs` vertices at once.
pub(crate) fn solve(
    graph: &Graph,
    targets: &[VertexId],
    sh: &Shared<'_>,
    jobs: usize,
) -> Result<Solved, BuildError> {
    let n = graph.vertices.len();
    let needed = graph.needed(targets);
    let mut dependents: Vec<Vec<VertexId>> = vec![Vec::new(); n];
    let mut pending = vec![0usize; n];
    for (v, vx) in graph.vertices.iter().enumerate() {
        if !needed[v] {
            continue;
        }
        let mut deps: Vec<VertexId> = vx.inputs.iter().chain(&vx.after).copied().collect();
        deps.sort_unstable();
        deps.dedup();
        pending[v] = deps.len();
        for d in deps {
            dependents[d].push(v);
        }
    }
    let ready: VecDeque<VertexId> = (0..n).filter(|&v| needed[v] && pending[v] == 0).collect();
    let state = Mutex::new(State {
        pending,
        ready,
        results: vec![None; n],
        running: 0,
        left: needed.iter().filter(|&&x| x).count(),
        error: None,
        keys: Vec::new(),
    });
    let wake = Condvar::new();
    let workers = jobs.max(1).min(n.max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| worker(graph, sh, &state, &wake, &dependents, &needed));
        }
    });
    let st = state
        .into_inner()
        .map_err(|_| BuildError::Task("a build worker panicked".into()))?;
    if let Some(e) = st.error {
        return Err(e);
    }
    if sh.cancel.is_cancelled() {
        return Err(BuildError::Cancelled);
    }
    Ok(Solved {
        results: st.results,
        keys: st.keys,
    })
}

fn worker(
    graph: &Graph,
    sh: &Shared<'_>,
    state: &Mutex<State>,
    wake: &Condvar,
    dependents: &[Vec<VertexId>],
    needed: &[bool],
) {
    loop {
        // Take the next ready vertex, with copies of its inputs' results.
        let next = {
            let Ok(mut st) = state.lock() else { return };
            loop {
                if st.error.is_some() || st.left == 0 {
                    break None;
                }
                if sh.cancel.is_cancelled() {
                    st.error.get_or_insert(BuildError::Cancelled);
                    wake.notify_all();
                    break None;
                }
                let pick = st.ready.iter().position(|&v| {
                    !(matches!(graph.vertices[v].op, Op::Exec(_)) && st.running > 0 && memory_low())
                });
                if let Some(i) = pick {
                    let v = st.ready.remove(i).unwrap_or(i);
                    st.running += 1;
                    let inputs: Vec<Chain> = graph.vertices[v]
                        .inputs
                        .iter()
                        .map(|&i| st.results[i].clone().unwrap_or_default())
                        .collect();
                    break Some((v, inputs));
                }
                st = match wake.wait_timeout(st, CANCEL_POLL) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
            }
        };
        let Some((v, inputs)) = next else {
            wake.notify_all();
            return;
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_vertex(graph, v, &inputs, sh)
        }))
        .unwrap_or_else(|_| Err(BuildError::Task("a build step panicked".into())));
        let Ok(mut st) = state.lock() else { return };
        st.running -= 1;
        match result {
            Ok((chain, key)) => {
                st.results[v] = Some(chain);
                st.keys.extend(key);
                st.left -= 1;
                for &d in &dependents[v] {
                    st.pending[d] -= 1;
                    if st.pending[d] == 0 && needed[d] {
                        st.ready.push_back(d);
                    }
                }
            }
            Err(e) => {
                // The first failure is the build's error; the rest are its consequences.
                if st.error.is_none() {
                    st.error = Some(e);
                }
                sh.cancel.cancel();
            }
        }
        wake.notify_all();
    }
}

/// Solves one vertex: a cache hit, or the op's run; reports its steps.
fn run_vertex(
    graph: &Graph,
    v: VertexId,
    inputs: &[Chain],
    sh: &Shared<'_>,
) -> Result<(Chain, Option<Digest>), BuildError> {
    let vx = &graph.vertices[v];
    let inputs: Vec<&Chain> = inputs.iter().collect();
    let Some(first) = vx.steps.first() else {
        return Ok((vx.op.run(sh, &dummy_step(), &inputs)?, None));
    };
    let started = Instant::now();
    for s in &vx.steps {
        sh.event(Event::StepStarted(s.id.clone()));
    }
    if let Op::Config(_) = vx.op {
        for s in &vx.steps {
            sh.event(Event::StepDone {
                step: s.id.clone(),
                elapsed: started.elapsed(),
            });
        }
        return Ok((Chain::default(), None));
    }
    let store = sh.images.store();
    let parts = vx.op.key(sh, &first.id, &inputs)?;
    let reason = match look_up(sh, first, parts.as_ref()) {
        Lookup::Hit(hit, p) => {
            for s in &vx.steps {
                let _ = explain::record(store, s, p, &|| manifest_of(sh, p));
                sh.event(Event::StepCached(s.id.clone()));
            }
            return Ok((hit, Some(p.key)));
        }
        Lookup::Miss(reason) => reason,
    };
    for s in &vx.steps {
        sh.event(Event::StepMiss {
            step: s.id.clone(),
            reason: reason.clone(),
        });
    }
    // The manifest of the context files read is stored now and dropped before the op runs: a
    // 100,000-file context's manifest would otherwise stay in memory through the copy.
    let manifest = parts.as_ref().and_then(|p| manifest_of(sh, p));
    let parts = parts.map(|mut p| {
        if let Some(s) = p.sources.as_mut() {
            s.manifest = None;
        }
        p
    });
    let chain = match vx.op.run(sh, &first.id, &inputs) {
        Ok(c) => c,
        Err(e) => {
            if matches!(e, BuildError::Cancelled) {
                for s in &vx.steps {
                    sh.event(Event::StepCancelled(s.id.clone()));
                }
            }
            return Err(e);
        }
    };
    if let Some(p) = &parts {
        if let Err(e) = crate::cache::put(store, &p.key, &chain) {
            sh.event(Event::Warning {
                message: format!("step {}: not cached: {e}", first.id.index),
            });
        }
        for s in &vx.steps {
            let _ = explain::record(store, s, p, &|| manifest);
        }
    }
    for s in &vx.steps {
        sh.event(Event::StepDone {
            step: s.id.clone(),
            elapsed: started.elapsed(),
        });
    }
    Ok((chain, parts.map(|p| p.key)))
}

/// Whether a step comes from the cache, as a build and `--explain` both decide it.
enum Lookup<'p> {
    /// The recorded chain, found under these key parts.
    Hit(Chain, &'p KeyParts),
    /// Why the step runs.
    Miss(MissReason),
}

/// Looks a keyed step up in the cache (unless `--no-cache` or `--no-cache-filter` says not
/// to), explaining a miss against the step's previous record.
fn look_up<'p>(sh: &Shared<'_>, step: &Step, parts: Option<&'p KeyParts>) -> Lookup<'p> {
    let store = sh.images.store();
    if sh.req.no_cache || sh.req.no_cache_filter.contains(&step.id.stage) {
        return Lookup::Miss(MissReason::NoCache);
    }
    let Some(p) = parts else {
        return Lookup::Miss(MissReason::Uncacheable);
    };
    let found =
        crate::cache::get(store, &p.key).or_else(|| sh.imported.hit(store, &p.key, sh.progress));
    match found {
        Some(hit) => Lookup::Hit(hit, p),
        None => Lookup::Miss(explain::why(store, step, p, &|old| {
            changed_files(sh, p, old)
        })),
    }
}

/// Stores the manifest of the context files a step read (content-addressed, so an unchanged
/// context costs nothing), for naming changed files at a later miss.
fn manifest_of(sh: &Shared<'_>, parts: &KeyParts) -> Option<Digest> {
    let m = parts.sources.as_ref()?.manifest.as_ref()?;
    sh.images.store().put_bytes(&m.to_bytes()).ok()
}

/// The context paths that changed since the manifest `old`, when it is still stored.
fn changed_files(sh: &Shared<'_>, parts: &KeyParts, old: Option<&str>) -> Option<Vec<String>> {
    let new = parts.sources.as_ref()?.manifest.as_ref()?;
    let old: Digest = old?.parse().ok()?;
    let bytes = sh.images.store().read_blob(&old).ok()?;
    let old = rbuild_context::SourceManifest::from_bytes(&bytes).ok()?;
    Some(
        new.changes(&old)
            .into_iter()
            .filter(|c| !c.path.as_os_str().is_empty())
            .map(|c| c.path.to_string_lossy().into_owned())
            .collect(),
    )
}

/// Source vertices have no step; their ops never report one.
fn dummy_step() -> crate::progress::StepId {
    crate::progress::StepId {
        index: 0,
        total: 0,
        stage: String::new(),
        line: 0,
        text: String::new(),
    }
}

/// Whether the machine has less memory available than a RUN should start with.
fn memory_low() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/meminfo") else {
        return false;
    };
    info.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .is_some_and(|kb| kb * 1024 < MIN_AVAILABLE_MEMORY)
}

/// What a build would do with one step, as `--explain` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Explained {
    /// The step.
    pub step: crate::progress::StepId,
    /// `None` when the step would come from the cache (or changes only the config), else why
    /// it would run.
    pub runs: Option<MissReason>,
    /// The step changes only the image config: it has nothing to run or cache.
    pub config_only: bool,
}

/// Walks the graph as a solve would, without running anything: a step whose inputs are all
/// known (base images, or steps that would be cached) is keyed and looked up; a step after one
/// that would run is reported as such, since its input is not known before that step ran.
pub(crate) fn explain(
    graph: &Graph,
    targets: &[VertexId],
    sh: &Shared<'_>,
) -> Result<Vec<Explained>, BuildError> {
    let needed = graph.needed(targets);
    let mut results: Vec<Option<Chain>> = vec![None; graph.vertices.len()];
    let mut out = Vec::new();
    for (v, vx) in graph.vertices.iter().enumerate() {
        if !needed[v] {
            continue;
        }
        let inputs: Option<Vec<&Chain>> = vx.inputs.iter().map(|&i| results[i].as_ref()).collect();
        let Some(first) = vx.steps.first() else {
            if let Some(inputs) = inputs {
                results[v] = Some(vx.op.run(sh, &dummy_step(), &inputs)?);
            }
            continue;
        };
        let runs = match (&vx.op, inputs) {
            (Op::Config(_), _) => None,
            (_, None) => Some(MissReason::DependsOnRun),
            (op, Some(inputs)) => {
                let parts = op.key(sh, &first.id, &inputs)?;
                match look_up(sh, first, parts.as_ref()) {
                    Lookup::Hit(hit, _) => {
                        results[v] = Some(hit);
                        None
                    }
                    Lookup::Miss(reason) => Some(reason),
                }
            }
        };
        for s in &vx.steps {
            out.push(Explained {
                step: s.id.clone(),
                runs: runs.clone(),
                config_only: matches!(vx.op, Op::Config(_)),
            });
        }
    }
    out.sort_by_key(|e| e.step.index);
    Ok(out)
}
