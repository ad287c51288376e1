//! A future for work on a thread rbuild owns, so the async API needs no particular runtime:
//! the thread does the blocking work, the future only waits for its result. Dropping the future
//! before it resolves raises the build's cancel flag, so an abandoned build stops and cleans up.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::shared::Cancel;
use crate::BuildError;

struct Slot<T> {
    result: Option<T>,
    waker: Option<Waker>,
}

/// The pending result of work started by [`spawn`].
pub(crate) struct Task<T> {
    slot: Arc<Mutex<Slot<T>>>,
    cancel: Cancel,
    done: bool,
}

/// Runs `work` on a new thread and returns a future of its result; dropping the future early
/// raises `cancel`.
pub(crate) fn spawn<T: Send + 'static>(
    cancel: Cancel,
    work: impl FnOnce() -> Result<T, BuildError> + Send + 'static,
) -> Task<Result<T, BuildError>> {
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
    }));
    let theirs = slot.clone();
    let spawned = std::thread::Builder::new()
        .name("rbuild-build".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                .unwrap_or_else(|_| Err(BuildError::Task("the build thread panicked".into())));
            if let Ok(mut s) = theirs.lock() {
                s.result = Some(r);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        });
    if let Err(e) = spawned {
        if let Ok(mut s) = slot.lock() {
            s.result = Some(Err(BuildError::Task(format!(
                "cannot start a build thread: {e}"
            ))));
        }
    }
    Task {
        slot,
        cancel,
        done: false,
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let polled = match self.slot.lock() {
            Ok(mut s) => match s.result.take() {
                Some(r) => Poll::Ready(r),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
            // The worker panicked while holding the lock: it will never deliver.
            Err(_) => Poll::Pending,
        };
        if polled.is_ready() {
            self.done = true;
        }
        polled
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if !self.done {
            self.cancel.cancel();
        }
    }
}
