//! Typed progress events: the engine never prints, it reports; renderers (terminal, plain lines, JSON)
//! decide how a build looks.

use std::fmt;
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
    Registry(RegistryEvent),
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Downloading a base image.
    Pull,
    /// Uploading a result.
    Push,
}

/// What happened to one blob, in the renderer's terms (registry events, minus transport detail).
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
