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

// --- the embedder's handle on a running build ---

/// A build running on threads rbuild owns, started by [`crate::Builder::start`].
///
/// Await it (under any runtime, or none) or call [`Build::wait`] for the outcome; take its
/// [`Events`] stream before that to watch it; keep a [`Cancel`] from [`Build::canceller`] to stop it
/// from elsewhere. Dropping an unfinished `Build` cancels the build: its steps are killed and their
/// mounts, processes and scratch directories removed before the build thread ends.
#[must_use = "a Build is cancelled when dropped; await it or call wait()"]
pub struct Build {
    task: Task<Result<crate::BuildOutcome, BuildError>>,
    events: Option<Events>,
    cancel: Cancel,
}

impl Build {
    pub(crate) fn new(
        task: Task<Result<crate::BuildOutcome, BuildError>>,
        events: futures_channel::mpsc::UnboundedReceiver<crate::Event>,
        cancel: Cancel,
    ) -> Build {
        Build {
            task,
            events: Some(Events { rx: events }),
            cancel,
        }
    }

    /// The build's progress events, in the order each step reported them; the stream ends when
    /// the build does. Take it before awaiting the build: events of a build awaited without it
    /// are dropped rather than buffered, and a second call returns a stream that has ended.
    pub fn events(&mut self) -> Events {
        self.events.take().unwrap_or_else(|| {
            let (_, rx) = futures_channel::mpsc::unbounded();
            Events { rx }
        })
    }

    /// A handle that stops this build from any thread; the build then ends with
    /// [`BuildError::Cancelled`].
    pub fn canceller(&self) -> Cancel {
        self.cancel.clone()
    }

    /// Asks the build to stop (as [`Cancel::cancel`] on its handle).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Blocks the calling thread until the build ends; for programs without an async runtime.
    pub fn wait(self) -> Result<crate::BuildOutcome, BuildError> {
        block_on(self)
    }
}

impl Future for Build {
    type Output = Result<crate::BuildOutcome, BuildError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Nobody took the events: stop them piling up in memory for the whole build.
        self.events = None;
        Pin::new(&mut self.task).poll(cx)
    }
}

/// A build's progress events, as a [`futures_core::Stream`] for async code or, through
/// [`IntoIterator`], an iterator that blocks between events for threads. Fed by the build's own threads through a channel, so
/// a slow consumer never slows the build (events wait in the channel).
pub struct Events {
    rx: futures_channel::mpsc::UnboundedReceiver<crate::Event>,
}

impl futures_core::Stream for Events {
    type Item = crate::Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<crate::Event>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl IntoIterator for Events {
    type Item = crate::Event;
    type IntoIter = BlockingEvents;

    /// The events for a thread: `for event in build.events()` blocks between events.
    fn into_iter(self) -> BlockingEvents {
        BlockingEvents(self)
    }
}

/// [`Events`] as an [`Iterator`] that blocks the calling thread until the next event (or the end
/// of the build). A separate type, so `next()` on [`Events`] itself is the stream's, unambiguous.
pub struct BlockingEvents(Events);

impl Iterator for BlockingEvents {
    type Item = crate::Event;

    fn next(&mut self) -> Option<crate::Event> {
        block_on(std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(Pin::new(&mut self.0.rx), cx)
        }))
    }
}

/// The progress sink that feeds a [`Build`]'s [`Events`].
pub(crate) struct ChannelSink(pub(crate) futures_channel::mpsc::UnboundedSender<crate::Event>);

impl crate::ProgressSink for ChannelSink {
    fn event(&self, event: crate::Event) {
        // The receiver is gone when nobody watches: the build goes on without them.
        let _ = self.0.unbounded_send(event);
    }
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the calling thread, parking between polls: the work it waits
/// for runs on other threads, so nothing else needs driving.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
