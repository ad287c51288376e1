//! `rbuild run -it` under a pseudo-terminal, as a person at a terminal uses it: a prompt appears,
//! typed input reaches the shell, the window size (and a change of it) reaches the container,
//! Ctrl-C stops a foreground `sleep` and leaves the shell running, the exit code is the shell's,
//! and the terminal's settings are restored afterwards.

mod common;

use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, tcsetwinsize, Winsize};

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Waits until the terminal output since `from` contains `what` (60 s at most).
fn wait_output(screen: &Arc<Mutex<Vec<u8>>>, from: usize, what: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let s = screen.lock().unwrap();
            let text = String::from_utf8_lossy(s.get(from..).unwrap_or_default()).into_owned();
            if let Some(i) = text.find(what) {
                return from + i + what.len();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what:?}; the terminal shows:\n{}",
                String::from_utf8_lossy(&s)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_it_gives_a_real_terminal_and_restores_the_callers() {
    let work = tempfile::tempdir().unwrap();
    let store = store_with_busybox(work.path());

    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave: OwnedFd = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    tcsetwinsize(&slave, winsize(30, 100)).unwrap();
    let before = tcgetattr(&slave).unwrap();

    let mut cmd = rbuild(&store);
    cmd.args(["run", "-it", "--rm", "--name", "tty", "bb:1", "sh"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe; rbuild gets the pty as its controlling
    // terminal, as in a real session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn rbuild run -it");
    let screen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&screen);
    let reader_fd = master.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match rustix::io::read(&reader_fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => s.lock().unwrap().extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        }
    });
    let type_in = |text: &str| {
        rustix::io::write(&master, text.as_bytes()).unwrap();
    };

    // A prompt appears, and typed input reaches the shell (the arithmetic proves the shell, not
    // the terminal's echo, produced the line).
    let at = wait_output(&screen, 0, "# ");
    type_in("echo typed-$((40+2))\r");
    let at = wait_output(&screen, at, "typed-42");

    // The container's terminal has the caller's size, and follows a change of it.
    type_in("stty size\r");
    let at = wait_output(&screen, at, "30 100");
    tcsetwinsize(&slave, winsize(40, 120)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut at = at;
    loop {
        type_in("stty size\r");
        let seen = wait_output(&screen, at, "# ");
        let text = String::from_utf8_lossy(&screen.lock().unwrap()[at..seen]).into_owned();
        at = seen;
        if text.contains("40 120") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the window size change never reached the container"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Ctrl-C stops a foreground sleep; the shell goes on.
    type_in("sleep 97\r");
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with_cmdline("sleep 97").is_empty() {
        assert!(Instant::now() < deadline, "the sleep never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    type_in("\x03");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_with_cmdline("sleep 97").is_empty() {
        assert!(
            Instant::now() < deadline,
            "Ctrl-C did not stop the foreground sleep"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    type_in("echo still-$((1+1))-here\r");
    let _ = wait_output(&screen, at, "still-2-here");

    // The shell's exit code is rbuild's; the terminal is as it was.
    type_in("exit 3\r");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "rbuild run -it did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(3));
    let after = tcgetattr(&slave).unwrap();
    assert_eq!(after.input_modes, before.input_modes);
    assert_eq!(after.output_modes, before.output_modes);
    assert_eq!(after.local_modes, before.local_modes);
    assert_eq!(after.control_modes, before.control_modes);
    // --rm removed the container.
    let out = rbuild(&store).args(["ps", "-a", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // The reader ends once every holder of the terminal side is gone.
    drop(slave);
    drop(cmd);
    reader.join().unwrap();
}
