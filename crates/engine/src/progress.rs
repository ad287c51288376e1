//! Typed progress events: the engine never prints, it reports; renderers (terminal, plain lines, JSON)
//! decide how a build looks.

use std::sync::Mutex;
use std::time::Duration;

/// Identifies one step of a build in every event about it, so renderers can group lines per step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepId {
    /// One-based number of the step in file order (stages in dependency order); steps of
    /// independent stages may run at the same time.
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
#[derive(Debug, Clone, PartialEq)]
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
        reason: crate::explain::MissReason,
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
        /// Wall time it took.
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
    Registry(crate::pull::RegistryEvent),
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
