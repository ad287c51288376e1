//! Typed progress events: the engine never prints, it reports; renderers (terminal, plain lines, JSON)
//! decide how a build looks.
//!
//! Every event is `Serialize` (an internally tagged object: `{"event": "step_started", ...}`), so
//! an embedder can forward the stream as JSON lines without a renderer of its own. The enums are
//! `#[non_exhaustive]`: new kinds of events arrive in minor releases, and a consumer matches the
//! ones it shows and ignores the rest.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// Identifies one step of a build in every event about it, so renderers can group lines per step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepId {
    /// One-based number of the step in file order (stages in dependency order); steps of
    /// independent stages may run at the same time. Unique within one build, so it is the key
    /// a renderer groups a step's events by.
    pub index: usize,
    /// Number of steps the build will execute.
    pub total: usize,
    /// The stage's name (or its index when unnamed), as `docker build` prefixes steps with `[stage N/M]`.
    pub stage: String,
    /// Dockerfile line the step starts on (1-based).
    pub line: usize,
    /// The instruction as written, for display (`COPY a b`).
    pub text: String,
}

/// One thing that happened during a build.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The Dockerfile was parsed and planned; `steps` is the number of steps to run.
    Planned {
        /// How many steps will execute.
        steps: usize,
        /// Stage names or indices in execution order.
        stages: Vec<String>,
    },
    /// The snapshotter chosen for this builder (first step that needs one), so users see
    /// whether steps run on overlayfs or on the slower copy fallback, and why.
    Snapshotter {
        /// `overlayfs`, `overlayfs (rootless, userxattr)` or `copy`.
        name: String,
        /// Why overlayfs was not used, when it was not.
        fallback_reason: Option<String>,
    },
    /// An exported build cache (`--cache-from`) was loaded before the steps ran.
    CacheImported {
        /// Where it came from.
        source: String,
        /// How many step records it held.
        records: usize,
    },
    /// A step began.
    StepStarted(StepId),
    /// A step's result came from the build cache; it did not run (follows its `StepStarted`).
    StepCached(StepId),
    /// A step runs instead of coming from the cache, and why (follows its `StepStarted`).
    StepMiss {
        /// The step.
        step: StepId,
        /// Why its cached result could not be used.
        reason: MissReason,
    },
    /// A running step was stopped: the build was cancelled, or another step failed.
    StepCancelled(StepId),
    /// Output of a step (RUN output, or a note from the engine such as "copied 3 files").
    StepLog {
        /// The step.
        step: StepId,
        /// The text, one or more lines.
        text: String,
    },
    /// A step finished successfully.
    StepDone {
        /// The step.
        step: StepId,
        /// Wall time it took (in JSON: seconds, a float).
        #[serde(serialize_with = "seconds")]
        elapsed: Duration,
    },
    /// Something the user should know that does not stop the build (unused build args, lints).
    Warning {
        /// The message, already naming file/line where it has one.
        message: String,
    },
    /// The image was written.
    ImageWritten {
        /// Image id (config digest), `sha256:...`.
        id: String,
        /// Tags applied, in normalized form.
        tags: Vec<String>,
    },
    /// An output (archive, layout directory) was exported.
    Exported {
        /// What kind of output (`oci`, `docker`, `tar`).
        kind: String,
        /// Where it went.
        dest: String,
    },
    // --- registry transfers (pull of base images, push of results) ---
    /// A registry pull or push made progress (per blob, for progress bars).
    Registry(RegistryEvent),
}

/// Durations travel as seconds (a float) in JSON, the unit a reader of `rawjson` expects, rather
/// than serde's `{secs, nanos}` pair.
fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Receives events; implemented by renderers and by embedders that forward events elsewhere.
pub trait ProgressSink: Send + Sync {
    /// Called once per event. Steps that run in parallel report from their own threads, so
    /// events of different steps interleave; each step's own events arrive in order.
    fn event(&self, event: Event);
}

/// A sink that drops everything, for embedders that do not care.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: Event) {}
}

/// A sink that keeps every event, for tests and for callers that render after the fact.
#[derive(Default)]
pub struct CollectProgress {
    events: Mutex<Vec<Event>>,
}

impl CollectProgress {
    /// The events received so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl ProgressSink for CollectProgress {
    fn event(&self, event: Event) {
        if let Ok(mut e) = self.events.lock() {
            e.push(event);
        }
    }
}

impl<F: Fn(Event) + Send + Sync> ProgressSink for F {
    fn event(&self, event: Event) {
        self(event)
    }
}

// --- registry transfers ---

/// Which way a registry transfer goes, so one event type serves pull and push bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Downloading a base image.
    Pull,
    /// Uploading a result.
    Push,
}

/// What happened to one blob, in the renderer's terms (registry events, minus transport detail).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum BlobState {
    /// Transfer began; `size` per the manifest.
    Started {
        /// Bytes to move.
        size: u64,
    },
    /// Bytes moved so far.
    Progress {
        /// Bytes moved.
        done: u64,
        /// Bytes to move.
        size: u64,
    },
    /// The connection dropped and the transfer goes on (resumed or restarted).
    Retrying {
        /// Which retry (1-based).
        attempt: u32,
    },
    /// Transferred and verified.
    Done,
    /// Nothing to move: already in the store (pull) or in the registry (push).
    Exists,
    /// Linked from another repository of the same registry instead of uploaded.
    Mounted {
        /// The repository it came from.
        from: String,
    },
    /// A pulled layer was decompressed into the store (the form builds use).
    Extracted,
}

/// A registry event for progress renderers; carried by [`Event::Registry`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "registry", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A pull or push of `reference` began.
    Started {
        /// Pull or push.
        direction: Direction,
        /// The normalized reference.
        reference: String,
    },
    /// One blob changed state.
    Blob {
        /// Pull or push.
        direction: Direction,
        /// The blob (compressed form).
        digest: String,
        /// What happened.
        state: BlobState,
    },
    /// The pull or push finished.
    Finished {
        /// Pull or push.
        direction: Direction,
        /// The normalized reference.
        reference: String,
        /// The manifest digest (as in the registry for a push; the registry's for a pull).
        digest: String,
        /// The local image id (config digest).
        image_id: String,
    },
}

// --- cache misses ---

/// Why a step runs instead of coming from the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MissReason {
    /// `--no-cache` (or `--no-cache-filter` naming the step's stage).
    NoCache,
    /// The step was never solved in this store.
    FirstBuild,
    /// The instruction's text changed.
    InstructionChanged {
        /// The previous text.
        was: String,
    },
    /// The filesystem the step starts from changed: an earlier step or the base image did.
    PreviousStepChanged,
    /// Build arguments the step sees changed.
    BuildArgsChanged {
        /// Their names, sorted.
        names: Vec<String>,
    },
    /// Context files the step reads changed.
    ContextChanged {
        /// Changed, added or removed paths (the first few), when the previous manifest is known.
        files: Vec<String>,
        /// How many paths changed (0 when unknown).
        count: usize,
    },
    /// A stage or image the step reads (`--from`) changed.
    FromChanged,
    /// Something else in the step's definition changed (environment, user, working directory,
    /// mounts, or how layers are written).
    DefinitionChanged,
    /// The same key was recorded, but its layers are no longer in the store (pruned).
    ResultPruned,
    /// The step cannot be keyed before it runs (it downloads a URL).
    Uncacheable,
    /// `--explain` only: a step this one depends on will run, so its input is not known yet.
    DependsOnRun,
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::NoCache => write!(f, "--no-cache"),
            MissReason::FirstBuild => write!(f, "first build of this step"),
            MissReason::InstructionChanged { was } => {
                write!(f, "the instruction changed (was: {was})")
            }
            MissReason::PreviousStepChanged => write!(f, "the step before it changed"),
            MissReason::BuildArgsChanged { names } if names.len() == 1 => {
                write!(f, "build argument {} changed", names[0])
            }
            MissReason::BuildArgsChanged { names } => {
                write!(f, "build arguments {} changed", names.join(", "))
            }
            MissReason::ContextChanged { files, count } if files.is_empty() => {
                let _ = count;
                write!(f, "files changed in the context")
            }
            MissReason::ContextChanged { files, count } => {
                let noun = if *count == 1 { "file" } else { "files" };
                write!(
                    f,
                    "{count} {noun} changed in the context: {}",
                    files.join(", ")
                )?;
                if *count > files.len() {
                    write!(f, ", …")?;
                }
                Ok(())
            }
            MissReason::FromChanged => write!(f, "a stage or image it reads changed"),
            MissReason::DefinitionChanged => {
                write!(f, "its environment or options changed")
            }
            MissReason::ResultPruned => {
                write!(f, "its cached result was removed from the store")
            }
            MissReason::Uncacheable => write!(f, "it downloads a URL, which is never cached"),
            MissReason::DependsOnRun => write!(f, "a step it depends on runs"),
        }
    }
}

// --- per-step results, as the outcome reports them ---

/// How the cache served one step, as [`crate::BuildOutcome::steps`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "cache", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheResult {
    /// The step's result came from the cache; it did not run.
    Hit,
    /// The step ran, and why its cached result could not be used.
    Miss {
        /// Why.
        reason: MissReason,
    },
    /// The step only changes the image config (ENV, LABEL, CMD…): nothing to cache or run.
    ConfigOnly,
}

/// One step of a finished build: which step, how the cache served it, how long it took.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct StepResult {
    /// The step, as its events named it.
    pub step: StepId,
    /// Cache hit, miss (with the reason) or config-only.
    pub cache: CacheResult,
    /// Wall time from start to done (zero for a cache hit; in JSON: seconds, a float).
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

/// Forwards every event and remembers what the outcome reports per step, so the outcome does not
/// depend on the caller keeping its events.
pub(crate) struct Recorder<'a> {
    inner: &'a dyn ProgressSink,
    steps: Mutex<std::collections::BTreeMap<usize, StepResult>>,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(inner: &'a dyn ProgressSink) -> Self {
        Recorder {
            inner,
            steps: Mutex::default(),
        }
    }

    /// The steps that finished, in step order.
    pub(crate) fn steps(&self) -> Vec<StepResult> {
        self.steps
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }
}

impl ProgressSink for Recorder<'_> {
    fn event(&self, event: Event) {
        if let Ok(mut steps) = self.steps.lock() {
            let mut set = |id: &StepId, f: &dyn Fn(&mut StepResult)| {
                let r = steps.entry(id.index).or_insert_with(|| StepResult {
                    step: id.clone(),
                    cache: CacheResult::ConfigOnly,
                    elapsed: Duration::ZERO,
                });
                f(r);
            };
            match &event {
                Event::StepStarted(id) => set(id, &|_| {}),
                Event::StepCached(id) => set(id, &|r| r.cache = CacheResult::Hit),
                Event::StepMiss { step, reason } => set(step, &|r| {
                    r.cache = CacheResult::Miss {
                        reason: reason.clone(),
                    }
                }),
                Event::StepDone { step, elapsed } => set(step, &|r| r.elapsed = *elapsed),
                _ => {}
            }
        }
        self.inner.event(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: usize) -> StepId {
        StepId {
            index,
            total: 2,
            stage: "0".into(),
            line: index + 1,
            text: "RUN true".into(),
        }
    }

    #[test]
    fn events_serialize_as_tagged_objects() {
        let cases = [
            (
                Event::StepStarted(id(1)),
                r#"{"event":"step_started","index":1,"total":2,"stage":"0","line":2,"text":"RUN true"}"#,
            ),
            (
                Event::StepMiss {
                    step: id(1),
                    reason: MissReason::BuildArgsChanged {
                        names: vec!["A".into()],
                    },
                },
                r#"{"event":"step_miss","step":{"index":1,"total":2,"stage":"0","line":2,"text":"RUN true"},"reason":{"reason":"build_args_changed","names":["A"]}}"#,
            ),
            (
                Event::Registry(RegistryEvent::Blob {
                    direction: Direction::Push,
                    digest: "sha256:x".into(),
                    state: BlobState::Progress { done: 1, size: 2 },
                }),
                r#"{"event":"registry","registry":"blob","direction":"push","digest":"sha256:x","state":{"state":"progress","done":1,"size":2}}"#,
            ),
            (
                Event::StepDone {
                    step: id(1),
                    elapsed: Duration::from_millis(1500),
                },
                r#"{"event":"step_done","step":{"index":1,"total":2,"stage":"0","line":2,"text":"RUN true"},"elapsed":1.5}"#,
            ),
        ];
        for (event, want) in cases {
            assert_eq!(serde_json::to_string(&event).unwrap(), want);
        }
    }

    #[test]
    fn recorder_keeps_each_steps_cache_result() {
        let rec = Recorder::new(&NoProgress);
        rec.event(Event::StepStarted(id(2)));
        rec.event(Event::StepStarted(id(1)));
        rec.event(Event::StepCached(id(1)));
        rec.event(Event::StepMiss {
            step: id(2),
            reason: MissReason::FirstBuild,
        });
        rec.event(Event::StepDone {
            step: id(2),
            elapsed: Duration::from_secs(3),
        });
        let steps = rec.steps();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].cache, CacheResult::Hit);
        assert_eq!(
            steps[1].cache,
            CacheResult::Miss {
                reason: MissReason::FirstBuild
            }
        );
        assert_eq!(steps[1].elapsed, Duration::from_secs(3));
    }
}
