//! Ctrl-C and SIGTERM become a build cancellation instead of killing rbuild mid-step, so the
//! engine can kill the running steps and remove their snapshots, mounts and scratch directories.
//!
//! The handler only records the signal and writes one byte to a pipe (both async-signal-safe);
//! a thread blocked on the pipe raises the cancel flag. Handlers (unlike a blocked signal mask)
//! are reset by `execve`, so RUN steps still get default signal behaviour.

use std::sync::atomic::{AtomicI32, Ordering};

use rbuild_engine::Cancel;

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signo: libc::c_int) {
    RECEIVED.store(signo, Ordering::SeqCst);
    let fd = PIPE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid local byte.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Which signal stopped the build, if one did.
pub struct Interrupt;

impl Interrupt {
    /// The signal number received, if any.
    pub fn received(&self) -> Option<i32> {
        match RECEIVED.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

/// Installs SIGINT and SIGTERM handlers that raise `cancel`. If they cannot be installed the
/// signals keep their default action (rbuild dies; the next build's store sweep cleans up).
pub fn on_interrupt(cancel: Cancel) -> Interrupt {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Interrupt;
    }
    let (read_fd, write_fd) = (fds[0], fds[1]);
    PIPE_WRITE.store(write_fd, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("rbuild-signals".into())
        .spawn(move || {
            let mut b = 0u8;
            // SAFETY: read(2) into a valid local byte from the pipe this thread owns.
            let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
            if n == 1 {
                cancel.cancel();
            }
        });
    if spawned.is_err() {
        return Interrupt;
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid; the
        // handler only touches atomics and write(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    Interrupt
}
