//! `--progress=tty` and `auto` as a user at a terminal sees them: rbuild runs with stderr on a
//! pseudo-terminal of a known size and everything the terminal receives is checked: BuildKit's
//! header and step lines, a running step's output shown while it runs, CACHED marks on a
//! rebuild, and no line or frame larger than the window. `auto` off a terminal stays plain.

mod common;
#[path = "common/registry.rs"]
mod reg;

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};

/// How long a build may take before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the terminal received so far, and whether the child side is closed.
#[derive(Default)]
struct Screen {
    bytes: Vec<u8>,
    closed: bool,
}

/// rbuild running with stderr on a pty, and the thread reading the pty's master side.
struct Session {
    child: Child,
    screen: Arc<(Mutex<Screen>, Condvar)>,
    reader: JoinHandle<()>,
}

/// Starts `cmd` with stderr on a new pty of `cols` x `rows`. The master is read all along (a
/// full pty would block the build) by a thread that stops when the last holder of the terminal
/// (rbuild and its steps) closes it.
fn spawn_on_pty(cmd: &mut Command, cols: u16, rows: u16) -> Session {
    let master =
        openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
    grantpt(&master).expect("grantpt");
    unlockpt(&master).expect("unlockpt");
    let name = ptsname(&master, Vec::new()).expect("ptsname");
    let slave: OwnedFd = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .expect("open the pty's terminal side");
    tcsetwinsize(
        &slave,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .expect("TIOCSWINSZ");
    // The command keeps its copy of the terminal side until that is replaced: after the
    // spawn only the child holds it, so the reader sees the end of the output when it exits.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let child = cmd.spawn().expect("spawn rbuild");
    cmd.stderr(Stdio::null());
    let screen = Arc::new((Mutex::new(Screen::default()), Condvar::new()));
    let s = Arc::clone(&screen);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match rustix::io::read(&master, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    s.0.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
                    s.1.notify_all();
                }
                Err(rustix::io::Errno::INTR) => continue,
                // EIO: every holder of the terminal side closed it.
                Err(_) => break,
            }
        }
        s.0.lock().unwrap().closed = true;
        s.1.notify_all();
    });
    Session {
        child,
        screen,
        reader,
    }
}

impl Session {
    /// Everything received so far, lossily decoded.
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.0.lock().unwrap().bytes).into_owned()
    }

    /// Waits until the output satisfies `done`, or `poll` (called between deliveries, at
    /// least every 50 ms) says to stop waiting; panics when rbuild closes its terminal or
    /// time runs out first.
    fn wait_until(&self, what: &str, done: impl Fn(&str) -> bool, mut poll: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut screen = self.screen.0.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&screen.bytes).into_owned();
            if done(&text) {
                return;
            }
            assert!(!screen.closed, "rbuild ended before {what}:\n{text}");
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{text}"
            );
            drop(screen);
            if poll() {
                return;
            }
            screen = self.screen.0.lock().unwrap();
            screen = self
                .screen
                .1
                .wait_timeout(screen, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }

    /// Waits for rbuild to exit and for the terminal to drain; returns success and the output.
    fn finish(mut self) -> (bool, String) {
        let status = self.child.wait().expect("wait for rbuild");
        self.reader.join().expect("pty reader");
        let bytes = &self.screen.0.lock().unwrap().bytes;
        (
            status.success(),
            String::from_utf8_lossy(bytes).into_owned(),
        )
    }
}

/// The output with escape sequences removed, as the characters that reach the screen.
fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                for c in chars.by_ref() {
                    if c == '\x07' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Every `ESC [ n A` (cursor up n lines) in the output.
fn cursor_ups(s: &str) -> Vec<usize> {
    s.split("\x1b[")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest[digits.len()..]
                .starts_with('A')
                .then(|| digits.parse().unwrap_or(1))
        })
        .collect()
}

/// Frames of the display: the text from each `[+] Building` header to the next, split in
/// lines (the terminal turns `\n` into `\r\n`; a `\r` alone starts a line over).
fn frames(screen: &str) -> Vec<Vec<String>> {
    strip_escapes(screen)
        .split("[+] Building")
        .skip(1)
        .map(|f| {
            format!("[+] Building{f}")
                .split(['\n', '\r'])
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// Checks what must hold for the display on a `cols` x `rows` terminal: no line wider than the
/// window, no frame taller than the window minus the line the cursor rests on, and no cursor
/// move up over more lines than that. A quick build may draw a single frame, so whether it
/// redrew is for the callers that know (the running-steps test holds its step open).
fn assert_fits(screen: &str, cols: usize, rows: usize) {
    for line in strip_escapes(screen).split(['\n', '\r']) {
        assert!(
            line.chars().count() <= cols,
            "line wider than {cols} columns: {line:?}\n{screen}"
        );
    }
    for frame in frames(screen) {
        assert!(
            frame.len() < rows,
            "{} lines on a {rows}-line terminal: {frame:#?}",
            frame.len()
        );
    }
    for n in cursor_ups(screen) {
        assert!(n < rows, "moved up {n} lines on a {rows}-line terminal");
    }
}

/// Ends with a time, as ` 0.3s`.
fn ends_with_time(line: &str) -> bool {
    let Some(t) = line.trim_end().rsplit(' ').next() else {
        return false;
    };
    let Some(t) = t.strip_suffix('s') else {
        return false;
    };
    t.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty() && b.len() == 1 && (a.to_string() + b).chars().all(|c| c.is_ascii_digit())
    })
}

/// The header's `(done/total)` count.
fn header_count(header: &str) -> (usize, usize) {
    let inner = header
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(c, _)| c)
        .unwrap_or_else(|| panic!("no count in {header:?}"));
    let (a, b) = inner.split_once('/').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

fn write_context(dir: &Path, dockerfile: &str) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.join("a.txt"), "a\n").unwrap();
    ctx
}

/// Two independent stages and a RUN that holds until the test saw its output on the terminal:
/// it connects to the test's listener, which answers only then.
const DOCKERFILE: &str = "FROM bb:1 AS base\n\
    COPY a.txt /a.txt\n\
    FROM bb:1 AS side\n\
    RUN echo side-output\n\
    FROM base\n\
    ARG PORT\n\
    RUN --network=host echo tty-log-one && echo tty-log-two && nc 127.0.0.1 $PORT\n\
    COPY --from=side /bin/busybox /copied\n";

#[test]
fn tty_display_shows_running_steps_with_their_output_then_collapses_them() {
    const COLS: u16 = 64;
    const ROWS: u16 = 12;
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = write_context(dir.path(), DOCKERFILE);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = format!("PORT={}", listener.local_addr().unwrap().port());

    let build = |progress: &str| {
        let mut cmd = rbuild(&store);
        cmd.args(["build", progress, "-t", "tty:1", "--build-arg", &port])
            .arg(&ctx);
        spawn_on_pty(&mut cmd, COLS, ROWS)
    };

    // First build: the RUN step waits in `nc` until the test answers.
    let session = build("--progress=tty");
    let mut conn = None;
    session.wait_until(
        "the RUN step to connect",
        |_| false,
        || match listener.accept() {
            Ok((c, _)) => {
                conn = Some(c);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        },
    );
    session.wait_until(
        "the running step's output on the display",
        |s| s.contains(" => => # tty-log-two"),
        || false,
    );
    // The step is still running (it waits for this answer): the frame that shows its output
    // shows it running, with a timer, under a header counting fewer than all steps.
    let shown = session.text();
    let frame = frames(&shown)
        .into_iter()
        .find(|f| f.iter().any(|l| l == " => => # tty-log-two"))
        .expect("a frame with the step's output");
    let (done, total) = header_count(&frame[0]);
    assert!(done < 5 && total == 5, "{frame:#?}");
    assert!(frame[0].starts_with("[+] Building "), "{frame:#?}");
    let step = frame
        .iter()
        .position(|l| l.contains(" 4/5] RUN --network=host"))
        .unwrap_or_else(|| panic!("no line for the running step: {frame:#?}"));
    assert!(
        frame[step].starts_with(" => ["),
        "running, not marked: {frame:#?}"
    );
    assert!(ends_with_time(&frame[step]), "{frame:#?}");
    assert_eq!(frame[step + 1], " => => # tty-log-one", "{frame:#?}");
    assert_eq!(frame[step + 2], " => => # tty-log-two", "{frame:#?}");

    let mut conn = conn.unwrap();
    conn.write_all(b"released\n").unwrap();
    drop(conn);
    let (ok, screen) = session.finish();
    assert!(ok, "build failed:\n{screen}");
    assert!(
        !cursor_ups(&screen).is_empty(),
        "the display never redrew:\n{screen}"
    );
    assert_fits(&screen, COLS.into(), ROWS.into());
    let last = frames(&screen).pop().unwrap();
    assert!(
        last[0].starts_with("[+] Building ") && last[0].ends_with(" (5/5) FINISHED"),
        "{last:#?}"
    );
    for (n, what) in [
        "1/5] COPY a.txt",
        "2/5] RUN echo side-output",
        "3/5] ARG PORT",
        "4/5] RUN --network=host",
        "5/5] COPY --from=side",
    ]
    .iter()
    .enumerate()
    {
        let line = last
            .iter()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("step {} missing from the last frame: {last:#?}", n + 1));
        assert!(line.starts_with(" => ["), "{line:?}");
        assert!(ends_with_time(line), "{line:?}");
    }
    assert!(
        !last.iter().any(|l| l.starts_with(" => => #")),
        "the last frame shows no output lines: {last:#?}"
    );

    // Rebuild, with `auto` on the terminal: the same display, every step but ARG from the
    // cache (the RUN never connects: it does not run).
    let (ok, screen) = build("--progress=auto").finish();
    assert!(ok, "rebuild failed:\n{screen}");
    let last = frames(&screen).pop().unwrap();
    assert!(last[0].ends_with(" (5/5) FINISHED"), "{last:#?}");
    let cached: Vec<&String> = last
        .iter()
        .filter(|l| l.starts_with(" => CACHED ["))
        .collect();
    assert_eq!(cached.len(), 4, "{last:#?}");
    assert!(cached.iter().all(|l| ends_with_time(l)), "{last:#?}");
    assert!(
        cached.iter().any(|l| l.contains("4/5] RUN --network=host")),
        "{last:#?}"
    );
    assert!(!screen.contains(" => => # tty-log"), "{screen}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a cached step ran"
    );

    // A changed file: the step that reads it says why it runs again, after its text.
    std::fs::write(ctx.join("a.txt"), "changed\n").unwrap();
    let session = build("--progress=tty");
    session.wait_until(
        "the RUN step to connect again",
        |_| false,
        || match listener.accept() {
            // Answered at once: an empty answer ends `nc`.
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        },
    );
    let (ok, screen) = session.finish();
    assert!(ok, "build failed:\n{screen}");
    let last = frames(&screen).pop().unwrap();
    let copy = last
        .iter()
        .find(|l| l.contains("1/5] COPY a.txt"))
        .unwrap_or_else(|| panic!("{last:#?}"));
    assert!(
        copy.starts_with(" => [base 1/5] COPY a.txt /a.txt  (") && copy.contains("changed in the"),
        "{copy:?}"
    );
    assert!(ends_with_time(copy), "{copy:?}");
}

#[test]
fn a_failed_step_is_marked_and_its_error_follows_the_display() {
    // Narrow and short: lines are cut, frames kept to three lines.
    const COLS: u16 = 30;
    const ROWS: u16 = 4;
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = write_context(
        dir.path(),
        "FROM bb:1\nCOPY a.txt /a\nRUN printf 'bad\\033[2J\\033[Hout\\n' && exit 3\n",
    );
    let mut cmd = rbuild(&store);
    cmd.args(["build", "--progress=tty", "--build-arg", "UNUSED=1"])
        .arg(&ctx);
    let (ok, screen) = spawn_on_pty(&mut cmd, COLS, ROWS).finish();
    assert!(!ok, "{screen}");
    // Warnings and the error are ordinary text below the display, wrapped by the terminal.
    let below = screen
        .find("WARNING: ")
        .unwrap_or_else(|| panic!("no warning below the display: {screen}"));
    assert_fits(&screen[..below], COLS.into(), ROWS.into());
    // The step's clear-screen and cursor-home reach the terminal neither from the display nor
    // from the error below it, which quotes the step's last output.
    assert!(!screen.contains("\x1b[2J"), "{screen:?}");
    assert!(!screen.contains("\x1b[H"), "{screen:?}");
    assert!(screen.contains("badout"), "{screen:?}");
    let (_, after) = screen.rsplit_once("[+] Building").unwrap();
    let after = strip_escapes(after);
    assert!(
        !after.lines().next().unwrap().contains("FINISHED"),
        "{after}"
    );
    assert!(
        after.contains(" => ERROR [stage-0 2/2"),
        "the failed step is marked: {after}"
    );
    let error = after
        .find("ERROR: ")
        .unwrap_or_else(|| panic!("no error below the display: {after}"));
    assert!(after[error..].contains("exit code: 3"), "{after}");
    // Warnings too come below the last frame, where no redraw can erase them.
    let warning = after
        .find("WARNING: build argument \"UNUSED\" was not consumed")
        .unwrap_or_else(|| panic!("no warning below the display: {after}"));
    assert!(warning < error, "{after}");
}

#[test]
fn auto_is_plain_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let ctx = write_context(dir.path(), "FROM bb:1\nRUN echo plain-output\n");
    let out = run_ok(rbuild(&store).args(["build", "--progress=auto"]).arg(&ctx));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains('\x1b'), "no escape sequences: {log:?}");
    assert!(!log.contains("[+] Building"), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.contains(&"#1 plain-output"), "{log}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("#1 DONE ") && ends_with_time(l)),
        "{log}"
    );

    // A terminal that cannot move its cursor gets plain lines too.
    let mut cmd = rbuild(&store);
    cmd.env("TERM", "dumb")
        .args(["build", "--progress=auto", "--no-cache"])
        .arg(&ctx);
    let (ok, screen) = spawn_on_pty(&mut cmd, 80, 24).finish();
    assert!(ok, "{screen}");
    assert!(!screen.contains('\x1b'), "{screen:?}");
    assert!(screen.contains("#1 plain-output"), "{screen}");
}

#[test]
fn tty_display_shows_the_pull_and_push_of_a_build() {
    const COLS: u16 = 80;
    const ROWS: u16 = 14;
    let reg = reg::Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let base = format!("{}/a/base:1", reg.host());
    run_ok(rbuild(&store).args(["push", "bb:1", &base]));

    // A fresh store pulls the base, builds, and pushes the result, all in the display.
    let fresh = dir.path().join("fresh");
    let ctx = write_context(dir.path(), &format!("FROM {base}\nRUN echo built\n"));
    let dest = format!("{}/b/out:1", reg.host());
    let mut cmd = rbuild(&fresh);
    cmd.args(["build", "--progress=tty", "--push", "-t", &dest])
        .arg(&ctx);
    let (ok, screen) = spawn_on_pty(&mut cmd, COLS, ROWS).finish();
    assert!(ok, "{screen}");
    assert_fits(&screen, COLS.into(), ROWS.into());
    let last = frames(&screen).pop().unwrap();
    assert!(last[0].ends_with(" (1/1) FINISHED"), "{last:#?}");
    let line = |prefix: &str| {
        last.iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?}: {last:#?}"))
    };
    let pull = line(&format!(" => pulling {base} "));
    assert!(ends_with_time(&last[pull]), "{last:#?}");
    assert!(
        last[pull + 1].starts_with(" => => sha256:") && last[pull + 1].ends_with(" downloaded"),
        "the base's layer: {last:#?}"
    );
    let push = line(&format!(" => pushing {dest} "));
    assert!(push > pull && ends_with_time(&last[push]), "{last:#?}");
    // Config and RUN layer uploaded; the base's layer mounted from the base's repository.
    let blobs = &last[push + 1..];
    assert_eq!(
        blobs.iter().filter(|l| l.ends_with(" pushed")).count(),
        2,
        "{last:#?}"
    );
    assert!(
        blobs.iter().any(|l| l.ends_with(" mounted from a/base")),
        "{last:#?}"
    );
    assert!(
        blobs
            .iter()
            .any(|l| l.starts_with(&format!(" => => {dest}@sha256:"))),
        "the pushed digest: {last:#?}"
    );
}
