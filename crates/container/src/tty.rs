//! The caller's side of `-t`: a pseudo-terminal for the container, the caller's terminal in raw
//! mode while attached (so Ctrl-C, Ctrl-Z and line editing travel as bytes to the container's
//! terminal, whose line discipline turns them into signals for *its* foreground process), its
//! window size copied initially and whenever it changes, and the terminal restored on every way
//! out ([`RawMode`] restores on drop, including unwinding; SIGTERM, SIGHUP and SIGQUIT are taken
//! through a signalfd while attached, so they end the attach loop instead of the process).
//!
//! Window changes are noticed by comparing the size on every wake-up (at least every 100 ms)
//! rather than with a SIGWINCH handler: a handler needs process-global state, and the change
//! only has to reach the container about as fast as a human resizes.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::termios::{self, OptionalActions, Termios, Winsize};

/// Both sides of a new pseudo-terminal.
#[derive(Debug)]
pub struct Pty {
    /// The caller's side.
    pub master: OwnedFd,
    /// The container's side (its stdin, stdout and stderr).
    pub slave: OwnedFd,
}

/// Opens a pseudo-terminal whose window size is `size` (when known).
pub fn open_pty(size: Option<Winsize>) -> std::io::Result<Pty> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    if let Some(ws) = size {
        termios::tcsetwinsize(&slave, ws)?;
    }
    Ok(Pty { master, slave })
}

/// Opens a pseudo-terminal on the devpts instance whose `ptmx` is at `ptmx` (a running
/// container's, `/proc/PID/root/dev/ptmx`), so the process using it finds its terminal's name
/// (`tty`, `ttyname`) inside the container. The slave is opened through the master
/// (`TIOCGPTPEER`), never by a path.
pub fn open_pty_in(ptmx: &std::path::Path, size: Option<Winsize>) -> std::io::Result<Pty> {
    use rustix::pty::{ioctl_tiocgptpeer, unlockpt, OpenptFlags};
    let master = rustix::fs::open(
        ptmx,
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    unlockpt(&master)?;
    let slave = ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )?;
    if let Some(ws) = size {
        termios::tcsetwinsize(&slave, ws)?;
    }
    Ok(Pty { master, slave })
}

/// The window size of the terminal on `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<Winsize> {
    termios::tcgetwinsize(fd).ok()
}

/// A terminal in raw mode; restores the saved settings when dropped.
#[derive(Debug)]
pub struct RawMode {
    fd: RawFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode (`None` when it is not a terminal).
    pub fn enter(fd: BorrowedFd<'_>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(fd, OptionalActions::Now, &raw).ok()?;
        Some(RawMode {
            fd: fd.as_raw_fd(),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: the fd is the caller's terminal, open for as long as the process runs.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, OptionalActions::Now, &self.saved);
    }
}

/// Why [`attach`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detached {
    /// The container side closed the terminal or the watched process ended.
    Ended,
    /// The caller got this signal (SIGTERM, SIGHUP, SIGQUIT).
    Signal(i32),
}

/// Blocks these signals in the calling thread and reads them from a signalfd instead.
struct SignalFd {
    fd: OwnedFd,
    old: libc::sigset_t,
}

impl SignalFd {
    fn new() -> Option<SignalFd> {
        // SAFETY: local sigsets; signalfd returns a fresh descriptor or -1.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
            if fd < 0 {
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                return None;
            }
            Some(SignalFd {
                fd: OwnedFd::from_raw_fd(fd),
                old,
            })
        }
    }

    fn read(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data; the read fills it or fails.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            );
            (n > 0).then_some(info.ssi_signo as i32)
        }
    }
}

impl Drop for SignalFd {
    fn drop(&mut self) {
        // SAFETY: restores this thread's mask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: valid buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        buf = buf.get(n as usize..).unwrap_or_default();
    }
    true
}

/// A pidfd for `pid` (Linux 5.3+), to wake up when it exits.
pub fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; returns a fresh descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: fresh descriptor we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Copies the caller's stdin (when `forward_stdin`) to `master` and `master` to the caller's
/// stdout until the container side is gone or `watch` (a pidfd) becomes readable, keeping the
/// container's window size in step with the caller's terminal.
pub fn attach(
    master: &OwnedFd,
    forward_stdin: bool,
    watch: Option<&OwnedFd>,
) -> std::io::Result<Detached> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let in_fd = stdin.as_fd().as_raw_fd();
    let out_fd = stdout.as_fd().as_raw_fd();
    let sig = SignalFd::new();
    let mut size = window_size(stdin.as_fd()).or_else(|| window_size(stdout.as_fd()));
    let mut stdin_open = forward_stdin;
    let mut buf = vec![0u8; 16384];
    let m = master.as_raw_fd();
    loop {
        let mut fds = vec![libc::pollfd {
            fd: m,
            events: libc::POLLIN,
            revents: 0,
        }];
        if stdin_open {
            fds.push(libc::pollfd {
                fd: in_fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(w) = watch {
            fds.push(libc::pollfd {
                fd: w.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(s) = &sig {
            fds.push(libc::pollfd {
                fd: s.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: valid pollfd array.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let now = window_size(stdin.as_fd()).or_else(|| window_size(stdout.as_fd()));
        if now.is_some() && now != size {
            size = now;
            if let Some(ws) = size {
                let _ = termios::tcsetwinsize(master, ws);
            }
        }
        let mut ended = false;
        for p in &fds {
            if p.revents == 0 {
                continue;
            }
            if p.fd == m {
                // SAFETY: valid buffer.
                let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 || !write_all(out_fd, buf.get(..n as usize).unwrap_or_default()) {
                    ended = true;
                }
            } else if p.fd == in_fd {
                // SAFETY: valid buffer.
                let n = unsafe { libc::read(in_fd, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    stdin_open = false;
                } else {
                    let _ = write_all(m, buf.get(..n as usize).unwrap_or_default());
                }
            } else if watch.is_some_and(|w| w.as_raw_fd() == p.fd) {
                drain(m, out_fd, &mut buf);
                return Ok(Detached::Ended);
            } else if let Some(s) = &sig {
                if s.fd.as_raw_fd() == p.fd {
                    if let Some(signo) = s.read() {
                        return Ok(Detached::Signal(signo));
                    }
                }
            }
        }
        if ended {
            return Ok(Detached::Ended);
        }
    }
}

/// Copies what is left to read on the master without blocking.
fn drain(m: RawFd, out: RawFd, buf: &mut [u8]) {
    loop {
        let mut p = libc::pollfd {
            fd: m,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; zero timeout.
        if unsafe { libc::poll(&mut p, 1, 0) } <= 0 {
            return;
        }
        // SAFETY: valid buffer.
        let n = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 || !write_all(out, buf.get(..n as usize).unwrap_or_default()) {
            return;
        }
    }
}
