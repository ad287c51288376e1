//! What every op of one build reads and nobody changes while the graph runs: the store, the
//! snapshotter, the sandbox, the context, the request, the progress sink and the cancel flag.
//!
//! Whole-build state lives here, read-only and shared by the scheduler's worker threads; what one
//! op owns (its snapshot, its scratch directories, its output tail) stays in the op's run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rbuild_image::Images;

use crate::progress::{Event, ProgressSink, StepId};
use crate::request::BuildRequest;
use crate::sandboxes::Sandboxes;
use crate::BuildError;

/// Stops a build: running RUN steps are killed, no new step starts, and the build returns
/// [`BuildError::Cancelled`] after every step has cleaned up (mounts, processes, scratch
/// directories). Clone it freely; all clones share one flag.
#[derive(Clone, Default, Debug)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A handle that is not cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Asks the build to stop. Safe to call from any thread, and more than once.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag the sandbox polls to kill a running step.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// The build's read-only context, borrowed by every op while the graph runs.
pub(crate) struct Shared<'a> {
    pub images: &'a Images,
    pub snap: &'a rbuild_snapshot::Snapshotter,
    pub sandbox: &'a Sandboxes,
    pub context: &'a rbuild_context::Context,
    pub req: &'a BuildRequest,
    pub progress: &'a dyn ProgressSink,
    /// Raised by the caller or by the first failing step.
    pub cancel: Cancel,
    /// The Dockerfile's name, for step errors.
    pub file_name: &'a str,
    /// The id map layers are written with (computed once: it reads the sandbox's set-up).
    pub id_map: Option<rbuild_layer::IdMap>,
    /// `--cache-from` registry caches, looked up when the store has no record for a key.
    pub imported: &'a crate::cacheio::Imported,
    /// `--device`s, resolved once for every RUN step.
    pub devices: &'a rbuild_cdi::Resolved,
    /// The builder's registry access; its client also downloads `ADD https://…`.
    pub registry: &'a crate::transfer::RegistryOptions,
}

impl Shared<'_> {
    /// The error of a failing step, located in the Dockerfile and numbered as the build shows it.
    pub fn step_error(&self, step: &StepId, message: impl std::fmt::Display) -> BuildError {
        BuildError::Step {
            file: self.file_name.to_string(),
            line: step.line,
            step: format!("{}/{}", step.index, step.total),
            text: step.text.clone(),
            message: message.to_string(),
        }
    }

    /// How layers are written: timestamps clamped to `SOURCE_DATE_EPOCH`, owners mapped back to
    /// the ids the steps saw.
    pub fn write_options(&self) -> rbuild_layer::WriteOptions {
        rbuild_layer::WriteOptions {
            source_date_epoch: self.req.source_date_epoch,
            id_map: self.id_map.clone(),
            ..Default::default()
        }
    }

    pub fn event(&self, e: Event) {
        self.progress.event(e);
    }
}
