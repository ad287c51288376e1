//! The `--progress=tty` display, drawn as BuildKit's: a `[+] Building 4.2s (3/9)` header, one
//! line per step with its timer, the last few output lines of each running step under it, and
//! the whole frame redrawn in place.
//!
//! Steps of independent stages run at once and report from their own threads, so events only
//! update a [`Model`] under a lock; one render thread turns the model into a frame at a steady
//! rate. Redrawing on a timer instead of on every event keeps a chatty `RUN` from flooding the
//! terminal and keeps the timers moving while nothing is reported.
//!
//! A frame is repainted by moving the cursor up over the previous one, so a live frame never
//! has more lines than the terminal minus one (lines scrolled off the top could not be reached
//! again), and no line is wider than the terminal (a wrapped line would take two rows and throw
//! the count off). Auto-wrap is also switched off while painting, as a guard against characters
//! that take two columns. The final frame is painted once, whole, and left on screen.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rbuild_engine::pull::{BlobState, Direction, RegistryEvent};
use rbuild_engine::{Event, MissReason, StepId};

/// How often the display is redrawn (BuildKit redraws at about this rate).
const TICK: Duration = Duration::from_millis(100);
/// Output lines shown under a running step.
const LOG_LINES: usize = 6;
/// Characters of an output line kept for display.
const MAX_LOG_CHARS: usize = 1024;
/// Terminal size used when the real one cannot be read (stderr redirected with `--progress=tty`)
/// or is reported as zero, which terminals do when they do not know it.
const FALLBACK_SIZE: (usize, usize) = (80, 25);

const RESET: &str = "\x1b[0m";
const DIM: &str = "\x1b[2m";
const BLUE: &str = "\x1b[34m";
const RED: &str = "\x1b[31m";

/// Where an entry of the display stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Done,
    Cached,
    Cancelled,
    /// Still running when the build ended: the step (or transfer) that failed it.
    Failed,
}

/// What an entry stands for, to route later events to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Step,
    Transfer(Direction),
    Note,
}

/// A status line kept under an entry: one blob of a transfer, or the name an image got.
#[derive(Debug)]
struct Sub {
    /// The blob digest, so later events of the blob update the same line.
    key: String,
    text: String,
    /// Bytes of the blob, remembered for its closing line.
    size: u64,
}

/// One line of the display (a step, a pull or push, an export) and what is shown under it.
#[derive(Debug)]
struct Entry {
    kind: Kind,
    label: String,
    status: Status,
    started: Instant,
    /// Frozen when the entry ends; steps take the engine's own measure.
    elapsed: Option<Duration>,
    /// Whether a time is shown at all (exports are reported after the fact, with no duration).
    timed: bool,
    /// Why the step runs instead of coming from the cache, when that is worth showing.
    reason: Option<String>,
    /// The last output lines, already made safe to print.
    logs: VecDeque<String>,
    subs: Vec<Sub>,
}

impl Entry {
    fn new(kind: Kind, label: String, now: Instant) -> Self {
        Entry {
            kind,
            label,
            status: Status::Running,
            started: now,
            elapsed: None,
            timed: true,
            reason: None,
            logs: VecDeque::new(),
            subs: Vec::new(),
        }
    }

    /// A line for something that is over when it is reported.
    fn note(label: String, subs: Vec<String>, now: Instant) -> Self {
        let mut e = Entry::new(Kind::Note, label, now);
        e.status = Status::Done;
        e.timed = false;
        e.subs = subs
            .into_iter()
            .map(|text| Sub {
                key: String::new(),
                text,
                size: 0,
            })
            .collect();
        e
    }

    fn end(&mut self, status: Status, now: Instant) {
        self.status = status;
        if self.elapsed.is_none() {
            self.elapsed = Some(now.saturating_duration_since(self.started));
        }
    }
}

/// Everything the display knows about the build, updated by events and drawn by [`Model::frame`].
#[derive(Debug)]
pub(crate) struct Model {
    start: Instant,
    /// When the build ended; freezes the header's timer.
    end: Option<Instant>,
    /// Steps the build will execute (from the plan, or the largest `total` a step reported).
    total: usize,
    entries: Vec<Entry>,
    /// Entry of each step, by its index.
    steps: HashMap<usize, usize>,
    /// Printed after the final frame, where they cannot be overdrawn.
    warnings: Vec<String>,
    /// Whether the image was written: the build got through its steps.
    written: bool,
    color: bool,
}

impl Model {
    pub(crate) fn new(start: Instant, color: bool) -> Self {
        Model {
            start,
            end: None,
            total: 0,
            entries: Vec::new(),
            steps: HashMap::new(),
            warnings: Vec::new(),
            written: false,
            color,
        }
    }

    fn step(&mut self, s: &StepId) -> Option<&mut Entry> {
        let i = *self.steps.get(&s.index)?;
        self.entries.get_mut(i)
    }

    /// The transfer in progress in `direction`, opened with a generic label if its blobs arrive
    /// without a `Started` (so no blob line is ever lost).
    fn transfer(&mut self, direction: Direction, now: Instant) -> &mut Entry {
        let open = self
            .entries
            .iter()
            .rposition(|e| e.kind == Kind::Transfer(direction) && e.status == Status::Running);
        let i = match open {
            Some(i) => i,
            None => {
                let label = match direction {
                    Direction::Pull => "pulling",
                    Direction::Push => "pushing",
                };
                self.entries.push(Entry::new(
                    Kind::Transfer(direction),
                    label.to_string(),
                    now,
                ));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    pub(crate) fn apply(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Planned { steps, .. } => self.total = *steps,
            Event::Snapshotter {
                name,
                fallback_reason: Some(why),
            } => self
                .warnings
                .push(format!("using the {name} snapshotter: {why}")),
            Event::Snapshotter { .. } => {}
            Event::CacheImported { source, records } => self.entries.push(Entry::note(
                sanitize(&format!("importing cache from {source}: {records} records")),
                Vec::new(),
                now,
            )),
            Event::StepStarted(s) => {
                self.total = self.total.max(s.total);
                let label = sanitize(&format!("[{} {}/{}] {}", s.stage, s.index, s.total, s.text));
                let entry = Entry::new(Kind::Step, label, now);
                match self.steps.get(&s.index) {
                    Some(&i) => self.entries[i] = entry,
                    None => {
                        self.steps.insert(s.index, self.entries.len());
                        self.entries.push(entry);
                    }
                }
            }
            Event::StepCached(s) => {
                if let Some(e) = self.step(s) {
                    e.end(Status::Cached, now);
                }
            }
            Event::StepMiss { step, reason } => {
                let shown = worth_showing(reason).then(|| sanitize(&reason.to_string()));
                if let Some(e) = self.step(step) {
                    e.reason = shown;
                }
            }
            Event::StepLog { step, text } => {
                if let Some(e) = self.step(step) {
                    let text = text.strip_suffix('\n').unwrap_or(text);
                    for line in text.split('\n') {
                        if e.logs.len() == LOG_LINES {
                            e.logs.pop_front();
                        }
                        // A line longer than any terminal is wide is cut before it is kept.
                        let line: String = sanitize(line).chars().take(MAX_LOG_CHARS).collect();
                        e.logs.push_back(line);
                    }
                }
            }
            Event::StepDone { step, elapsed } => {
                if let Some(e) = self.step(step) {
                    e.elapsed = Some(*elapsed);
                    e.end(Status::Done, now);
                }
            }
            Event::StepCancelled(s) => {
                if let Some(e) = self.step(s) {
                    e.end(Status::Cancelled, now);
                }
            }
            Event::Warning { message } => self.warnings.push(message.clone()),
            Event::ImageWritten { id, tags } => {
                self.written = true;
                let mut subs = vec![sanitize(&format!("writing image {id}"))];
                subs.extend(tags.iter().map(|t| sanitize(&format!("naming to {t}"))));
                self.entries
                    .push(Entry::note("exporting to image".into(), subs, now));
            }
            Event::Exported { kind, dest } => self.entries.push(Entry::note(
                sanitize(&format!("exporting {kind} to {dest}")),
                Vec::new(),
                now,
            )),
            Event::Registry(r) => self.registry(r, now),
            // Events added to the library later have no place on this display yet.
            _ => {}
        }
    }

    fn registry(&mut self, ev: &RegistryEvent, now: Instant) {
        match ev {
            RegistryEvent::Started {
                direction,
                reference,
            } => {
                let verb = match direction {
                    Direction::Pull => "pulling",
                    Direction::Push => "pushing",
                };
                self.entries.push(Entry::new(
                    Kind::Transfer(*direction),
                    sanitize(&format!("{verb} {reference}")),
                    now,
                ));
            }
            RegistryEvent::Blob {
                direction,
                digest,
                state,
            } => {
                let t = self.transfer(*direction, now);
                let i = match t.subs.iter().position(|s| s.key == *digest) {
                    Some(i) => i,
                    None => {
                        t.subs.push(Sub {
                            key: digest.clone(),
                            text: String::new(),
                            size: 0,
                        });
                        t.subs.len() - 1
                    }
                };
                let sub = &mut t.subs[i];
                let name = sanitize(&short_digest(digest));
                let bytes = |n| indicatif::HumanBytes(n).to_string();
                sub.text = match state {
                    BlobState::Started { size } => {
                        sub.size = *size;
                        format!("{name} 0 B / {}", bytes(*size))
                    }
                    BlobState::Progress { done, size } => {
                        sub.size = *size;
                        format!("{name} {} / {}", bytes(*done), bytes(*size))
                    }
                    BlobState::Retrying { attempt } => format!("{name} retrying ({attempt})"),
                    BlobState::Done => {
                        let what = match direction {
                            Direction::Pull => "downloaded",
                            Direction::Push => "pushed",
                        };
                        match sub.size {
                            // Done without a size seen: nothing truthful to count.
                            0 => format!("{name} {what}"),
                            n => format!("{name} {} {what}", bytes(n)),
                        }
                    }
                    BlobState::Exists => format!("{name} already exists"),
                    BlobState::Mounted { from } => sanitize(&format!("{name} mounted from {from}")),
                    BlobState::Extracted => format!("{name} pull complete"),
                    _ => return,
                };
            }
            RegistryEvent::Finished {
                direction,
                reference,
                digest,
                ..
            } => {
                let t = self.transfer(*direction, now);
                t.subs.push(Sub {
                    key: String::new(),
                    text: sanitize(&format!("{reference}@{digest}")),
                    size: 0,
                });
                t.end(Status::Done, now);
            }
            _ => {}
        }
    }

    /// Ends the build: what is still running is what failed it, the header's timer stops.
    pub(crate) fn close(&mut self, now: Instant) {
        self.end.get_or_insert(now);
        for e in &mut self.entries {
            if e.status == Status::Running {
                e.end(Status::Failed, now);
            }
        }
    }

    /// Steps that are over (ran or came from the cache), for the header's count.
    fn completed(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::Step && matches!(e.status, Status::Done | Status::Cached))
            .count()
    }

    /// Warnings collected during the build, printed once after the final frame.
    pub(crate) fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The lines to paint, each at most `width` characters. A live frame (`last` false) fits
    /// in `height - 1` lines, dropping finished lines first, then the oldest output lines of
    /// running steps; the last frame shows every entry collapsed to its line (and the status
    /// lines of transfers and exports), whatever its length, since it is never redrawn.
    pub(crate) fn frame(
        &self,
        now: Instant,
        width: usize,
        height: usize,
        last: bool,
    ) -> Vec<String> {
        let now = self.end.unwrap_or(now);
        let finished = last
            && self.written
            && !self
                .entries
                .iter()
                .any(|e| matches!(e.status, Status::Failed | Status::Cancelled));
        let header = Line {
            style: "",
            segs: vec![(
                format!(
                    "[+] Building {:.1}s ({}/{}){}",
                    now.saturating_duration_since(self.start).as_secs_f64(),
                    self.completed(),
                    self.total,
                    if finished { " FINISHED" } else { "" }
                ),
                false,
            )],
            right: String::new(),
        };
        let mut blocks: Vec<Block> = self
            .entries
            .iter()
            .map(|e| self.block(e, now, last))
            .collect();
        if !last {
            fit_height(&mut blocks, height.saturating_sub(2));
        }
        let mut out = vec![header.render(width, self.color)];
        for b in &blocks {
            out.push(b.main.render(width, self.color));
            out.extend(b.detail.iter().map(|l| l.render(width, self.color)));
        }
        out
    }

    fn block(&self, e: &Entry, now: Instant, last: bool) -> Block {
        let (style, mark) = match e.status {
            Status::Running => ("", ""),
            Status::Done => (BLUE, ""),
            Status::Cached => (BLUE, "CACHED "),
            Status::Cancelled => (RED, "CANCELED "),
            Status::Failed => (RED, "ERROR "),
        };
        let mut segs = vec![(format!(" => {mark}{}", e.label), false)];
        if let Some(r) = &e.reason {
            segs.push((format!("  ({r})"), true));
        }
        let right = match (e.timed, e.elapsed) {
            (false, _) => String::new(),
            (true, Some(d)) => format!(" {:.1}s", d.as_secs_f64()),
            (true, None) => format!(
                " {:.1}s",
                now.saturating_duration_since(e.started).as_secs_f64()
            ),
        };
        let mut detail: Vec<Line> = e
            .subs
            .iter()
            .map(|s| Line {
                style,
                segs: vec![(format!(" => => {}", s.text), false)],
                right: String::new(),
            })
            .collect();
        if e.status == Status::Running && !last {
            detail.extend(e.logs.iter().map(|l| Line {
                style: "",
                segs: vec![(format!(" => => # {l}"), true)],
                right: String::new(),
            }));
        }
        Block {
            main: Line { style, segs, right },
            detail,
            running: e.status == Status::Running,
        }
    }
}

/// Reasons that explain a rebuild; the ones every later step shares (its parent ran, the
/// store never saw it, `--no-cache` was asked for) would only repeat on every line.
fn worth_showing(r: &MissReason) -> bool {
    !matches!(
        r,
        MissReason::FirstBuild
            | MissReason::PreviousStepChanged
            | MissReason::DependsOnRun
            | MissReason::NoCache
    )
}

/// An entry as drawn: its own line, then status and output lines under it.
struct Block {
    main: Line,
    detail: Vec<Line>,
    running: bool,
}

/// Shrinks `blocks` to at most `budget` lines: finished entries' detail, then finished entries
/// (oldest first), then the oldest output lines of the running step that shows most, then the
/// oldest running entries. Running steps and their latest output are what a user watches.
fn fit_height(blocks: &mut Vec<Block>, budget: usize) {
    let count = |b: &[Block]| b.iter().map(|b| 1 + b.detail.len()).sum::<usize>();
    if count(blocks) <= budget {
        return;
    }
    for b in blocks.iter_mut().filter(|b| !b.running) {
        b.detail.clear();
    }
    while count(blocks) > budget {
        if let Some(i) = blocks.iter().position(|b| !b.running) {
            blocks.remove(i);
            continue;
        }
        // Ties go to the earliest step, so the newest step keeps its output longest.
        let widest = blocks
            .iter()
            .enumerate()
            .max_by_key(|(i, b)| (b.detail.len(), std::cmp::Reverse(*i)))
            .map(|(i, b)| (i, b.detail.len()));
        match widest {
            Some((i, n)) if n > 0 => {
                blocks[i].detail.remove(0);
            }
            _ => {
                blocks.remove(0);
            }
        }
    }
}

/// One line of a frame: text segments (some dimmed) and a time kept at the right edge.
struct Line {
    /// Color of the whole line, as BuildKit colors finished and failed steps.
    style: &'static str,
    segs: Vec<(String, bool)>,
    right: String,
}

impl Line {
    /// The line cut to `width` characters (escape sequences take no room), with the time
    /// right-aligned when it fits beside some text. Characters are counted, not bytes, so a
    /// step named in another script is cut at the same place as an ASCII one.
    fn render(&self, width: usize, color: bool) -> String {
        let right_len = self.right.chars().count();
        let show_right = right_len > 0 && width >= right_len + 8;
        let room = if show_right { width - right_len } else { width };
        let mut out = String::new();
        let styled = color && !self.style.is_empty();
        if styled {
            out.push_str(self.style);
        }
        let mut used = 0;
        for (text, dim) in &self.segs {
            if used >= room {
                break;
            }
            let part: String = text.chars().take(room - used).collect();
            used += part.chars().count();
            if *dim && color {
                out.push_str(DIM);
                out.push_str(&part);
                out.push_str(RESET);
                out.push_str(self.style);
            } else {
                out.push_str(&part);
            }
        }
        if show_right {
            out.push_str(&" ".repeat(room - used));
            out.push_str(&self.right);
        }
        if styled {
            out.push_str(RESET);
        }
        out
    }
}

/// Text made safe for one line of the display: what a carriage return would have overwritten
/// is dropped (progress meters print `\r` between updates), escape sequences are removed whole
/// (a step's colors or cursor moves must not reach the terminal: they would break the frame),
/// tabs become spaces and every other control character is dropped.
pub(crate) fn sanitize(s: &str) -> String {
    clean(s, true)
}

/// [`sanitize`], keeping tabs when `expand_tabs` is false: in text printed below the display,
/// a tab only moves right, and a Dockerfile error's caret line relies on it.
fn clean(s: &str, expand_tabs: bool) -> String {
    let s = s.trim_end_matches(['\r', '\n']);
    let s = s.rsplit_once('\r').map_or(s, |(_, after)| after);
    let mut out = String::with_capacity(s.len());
    let mut width = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => match chars.next() {
                // CSI: parameter and intermediate bytes, ended by a final byte in `@`..=`~`.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: a string ended by BEL or ST (`ESC \`).
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next_if_eq(&'\\');
                            break;
                        }
                    }
                }
                // Any other escape is two characters long.
                _ => {}
            },
            '\t' if !expand_tabs => out.push('\t'),
            '\t' => {
                let n = 8 - width % 8;
                out.push_str(&" ".repeat(n));
                width += n;
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                width += 1;
            }
        }
    }
    out
}

/// `sha256:` and the first 12 hex digits, enough to tell the blobs of one image apart.
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", hex.chars().take(12).collect::<String>()),
        None => d.chars().take(12).collect(),
    }
}

/// The terminal's size as (columns, rows), read from stderr at every frame so a resized
/// window is followed.
fn terminal_size() -> (usize, usize) {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(w) => (
            match w.ws_col {
                0 => FALLBACK_SIZE.0,
                c => c.into(),
            },
            match w.ws_row {
                0 => FALLBACK_SIZE.1,
                r => r.into(),
            },
        ),
        Err(_) => FALLBACK_SIZE,
    }
}

/// Paints frames over each other on stderr.
struct Painter {
    /// Lines of the frame on screen, to move back over.
    drawn: usize,
}

impl Painter {
    /// Writes `lines` over the previous frame in one write, so the terminal never shows half
    /// of each; leftover lines of a taller previous frame are cleared.
    fn paint(&mut self, lines: &[String], out: &mut impl Write) {
        let mut buf = String::from("\x1b[?7l");
        if self.drawn > 0 {
            buf.push_str(&format!("\r\x1b[{}A", self.drawn));
        }
        for l in lines {
            buf.push_str("\x1b[2K");
            buf.push_str(l);
            buf.push('\n');
        }
        buf.push_str("\x1b[J\x1b[?7h");
        let _ = out.write_all(buf.as_bytes());
        let _ = out.flush();
        self.drawn = lines.len();
    }
}

/// The display: events update the model, a thread paints it.
pub(crate) struct Display {
    model: Arc<Mutex<Model>>,
    /// Stops the render thread (by dropping the sender) and waits for its last frame.
    thread: Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>,
}

impl Display {
    /// Starts the render thread; colors are left out when `NO_COLOR` is set, as is customary.
    pub(crate) fn start() -> Self {
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let model = Arc::new(Mutex::new(Model::new(Instant::now(), color)));
        let (tx, rx) = mpsc::channel::<()>();
        let m = Arc::clone(&model);
        let thread = std::thread::Builder::new()
            .name("rbuild-progress".into())
            .spawn(move || render_loop(&m, &rx))
            .ok()
            .map(|h| (tx, h));
        Display {
            model,
            thread: Mutex::new(thread),
        }
    }

    pub(crate) fn event(&self, event: &Event) {
        if let Ok(mut m) = self.model.lock() {
            m.apply(event, Instant::now());
        }
    }

    /// Paints the final frame and the warnings, once; later calls do nothing. Without a render
    /// thread (it could not be spawned) the final frame is painted here.
    pub(crate) fn finish(&self) {
        let Ok(mut slot) = self.thread.lock() else {
            return;
        };
        match slot.take() {
            Some((tx, handle)) => {
                drop(tx);
                let _ = handle.join();
            }
            None => {
                // Either finished already (the model is closed), or there never was a thread.
                let closed = self.model.lock().map(|m| m.end.is_some()).unwrap_or(true);
                if !closed {
                    paint_last(&self.model, &mut Painter { drawn: 0 });
                }
            }
        }
    }
}

fn render_loop(model: &Mutex<Model>, stop: &mpsc::Receiver<()>) {
    let mut painter = Painter { drawn: 0 };
    // Until the sender is dropped: the build is over.
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(TICK) {
        let (w, h) = terminal_size();
        let lines = match model.lock() {
            Ok(m) => m.frame(Instant::now(), w, h, false),
            Err(_) => return,
        };
        painter.paint(&lines, &mut std::io::stderr().lock());
    }
    paint_last(model, &mut painter);
}

/// Closes the model and paints its final frame, then the warnings below it.
fn paint_last(model: &Mutex<Model>, painter: &mut Painter) {
    let (w, h) = terminal_size();
    let (lines, warnings) = match model.lock() {
        Ok(mut m) => {
            m.close(Instant::now());
            (m.frame(Instant::now(), w, h, true), m.warnings().to_vec())
        }
        Err(_) => return,
    };
    let mut err = std::io::stderr().lock();
    painter.paint(&lines, &mut err);
    for warning in warnings {
        let _ = writeln!(err, "WARNING: {}", sanitize_lines(&warning));
    }
}

/// A message of several lines with each line made safe, for text printed below the display.
pub(crate) fn sanitize_lines(s: &str) -> String {
    s.split('\n')
        .map(|l| clean(l, false))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: usize, text: &str) -> StepId {
        StepId {
            index,
            total: 3,
            stage: "s".into(),
            line: index + 1,
            text: text.into(),
        }
    }

    /// A frame without its escape sequences.
    fn plain(lines: &[String]) -> Vec<String> {
        lines.iter().map(|l| sanitize(l)).collect()
    }

    /// Step 1 cached, step 2 running with output, step 3 not started; `t0` is the build start.
    fn model(t0: Instant) -> Model {
        let mut m = Model::new(t0, true);
        let at = |ms| t0 + Duration::from_millis(ms);
        m.apply(
            &Event::Planned {
                steps: 3,
                stages: vec!["s".into()],
            },
            at(0),
        );
        m.apply(&Event::StepStarted(id(1, "COPY a /a")), at(10));
        m.apply(&Event::StepCached(id(1, "COPY a /a")), at(10));
        m.apply(&Event::StepStarted(id(2, "RUN make")), at(20));
        m.apply(
            &Event::StepMiss {
                step: id(2, "RUN make"),
                reason: MissReason::InstructionChanged {
                    was: "RUN make -j".into(),
                },
            },
            at(20),
        );
        for n in 1..=8 {
            m.apply(
                &Event::StepLog {
                    step: id(2, "RUN make"),
                    text: format!("out-{n}\n"),
                },
                at(30),
            );
        }
        m
    }

    #[test]
    fn running_steps_show_their_timer_and_last_output_lines() {
        let t0 = Instant::now();
        let m = model(t0);
        let frame = plain(&m.frame(t0 + Duration::from_millis(4250), 90, 40, false));
        assert_eq!(frame[0], "[+] Building 4.2s (1/3)", "{frame:#?}");
        assert!(
            frame[1].starts_with(" => CACHED [s 1/3] COPY a /a "),
            "{frame:#?}"
        );
        assert!(frame[1].ends_with(" 0.0s"), "{frame:#?}");
        assert!(
            frame[2]
                .starts_with(" => [s 2/3] RUN make  (the instruction changed (was: RUN make -j))"),
            "{frame:#?}"
        );
        assert!(frame[2].ends_with(" 4.2s"), "{frame:#?}");
        let logs: Vec<&str> = frame[3..].iter().map(String::as_str).collect();
        assert_eq!(
            logs,
            [
                " => => # out-3",
                " => => # out-4",
                " => => # out-5",
                " => => # out-6",
                " => => # out-7",
                " => => # out-8"
            ]
        );
        for l in &frame {
            assert!(l.chars().count() <= 90, "{l:?}");
        }
    }

    #[test]
    fn the_last_frame_collapses_steps_and_marks_how_they_ended() {
        let t0 = Instant::now();
        let mut m = model(t0);
        m.apply(&Event::StepStarted(id(3, "RUN test")), t0);
        m.apply(&Event::StepCancelled(id(3, "RUN test")), t0);
        // Step 2 never reported an end: it is the step that failed the build.
        m.close(t0 + Duration::from_secs(2));
        let frame = plain(&m.frame(t0 + Duration::from_secs(9), 80, 5, true));
        assert_eq!(
            frame[0], "[+] Building 2.0s (1/3)",
            "no FINISHED: {frame:#?}"
        );
        assert!(frame[1].starts_with(" => CACHED [s 1/3]"), "{frame:#?}");
        assert!(
            frame[2].starts_with(" => ERROR [s 2/3] RUN make"),
            "{frame:#?}"
        );
        assert!(frame[2].ends_with(" 2.0s"), "{frame:#?}");
        assert!(
            frame[3].starts_with(" => CANCELED [s 3/3] RUN test"),
            "{frame:#?}"
        );
        assert_eq!(frame.len(), 4, "no output lines once collapsed: {frame:#?}");
    }

    #[test]
    fn a_finished_build_says_so_and_lists_what_it_wrote() {
        let t0 = Instant::now();
        let mut m = Model::new(t0, false);
        let step = StepId {
            total: 1,
            ..id(1, "RUN a")
        };
        m.apply(&Event::StepStarted(step.clone()), t0);
        m.apply(
            &Event::StepDone {
                step,
                elapsed: Duration::from_millis(1234),
            },
            t0,
        );
        m.apply(
            &Event::ImageWritten {
                id: "sha256:abc".into(),
                tags: vec!["docker.io/library/x:1".into()],
            },
            t0,
        );
        m.apply(
            &Event::Warning {
                message: "w1".into(),
            },
            t0,
        );
        m.close(t0 + Duration::from_secs(3));
        let frame = m.frame(t0, 50, 25, true);
        assert_eq!(
            frame,
            [
                "[+] Building 3.0s (1/1) FINISHED",
                &format!("{:<46}1.2s", " => [s 1/1] RUN a"),
                " => exporting to image",
                " => => writing image sha256:abc",
                " => => naming to docker.io/library/x:1",
            ]
        );
        assert_eq!(m.warnings(), ["w1"]);
    }

    #[test]
    fn live_frames_fit_the_terminal_whatever_its_size() {
        let t0 = Instant::now();
        let mut m = model(t0);
        // A second running step with output, and a long label with multi-byte characters.
        m.apply(&Event::StepStarted(id(3, &"RUN échö ".repeat(20))), t0);
        m.apply(
            &Event::StepLog {
                step: id(3, "x"),
                text: "é\tlog\n".repeat(3),
            },
            t0,
        );
        for (w, h) in [(0, 0), (1, 1), (1, 2), (2, 3), (9, 4), (40, 6), (200, 100)] {
            let frame = m.frame(t0, w, h, false);
            assert!(
                frame.len() <= h.saturating_sub(1).max(1),
                "{w}x{h}: {frame:#?}"
            );
            for l in plain(&frame) {
                assert!(l.chars().count() <= w, "{w}x{h}: {l:?}");
            }
        }
        // With little room, the running steps stay and each keeps its newest output.
        let frame = plain(&m.frame(t0, 80, 6, false));
        assert_eq!(frame.len(), 5, "{frame:#?}");
        assert!(frame[1].starts_with(" => [s 2/3] RUN make"), "{frame:#?}");
        assert_eq!(frame[2], " => => # out-8", "{frame:#?}");
        assert!(frame[3].starts_with(" => [s 3/3] RUN échö"), "{frame:#?}");
        assert_eq!(frame[4], " => => # é       log", "{frame:#?}");
    }

    #[test]
    fn reasons_every_later_step_shares_are_not_repeated() {
        let t0 = Instant::now();
        let mut m = Model::new(t0, false);
        m.apply(&Event::StepStarted(id(1, "RUN a")), t0);
        m.apply(
            &Event::StepMiss {
                step: id(1, "RUN a"),
                reason: MissReason::PreviousStepChanged,
            },
            t0,
        );
        let frame = m.frame(t0, 80, 25, false);
        assert_eq!(
            frame[1].trim_end_matches(" 0.0s").trim_end(),
            " => [s 1/3] RUN a"
        );
    }

    #[test]
    fn output_cannot_move_the_cursor_or_change_colors() {
        let cases = [
            ("plain", "plain"),
            ("\x1b[31mred\x1b[0m", "red"),
            ("a\x1b[2J\x1b[Hb", "ab"),
            ("up\x1b[10A", "up"),
            ("\x1b]0;title\x07x", "x"),
            ("\x1b]8;;http://a\x1b\\link", "link"),
            ("10%\r50%\r100%", "100%"),
            ("done\r\n", "done"),
            ("a\tb", "a       b"),
            ("bell\x07 nul\0 del\x7f c1\u{9b}2J", "bell nul del c12J"),
            ("lossy \u{fffd} ok", "lossy \u{fffd} ok"),
            ("trailing escape \x1b", "trailing escape "),
            ("\x1b[", ""),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize(input), want, "{input:?}");
        }
    }

    #[test]
    fn text_below_the_display_keeps_its_lines_and_tabs() {
        assert_eq!(
            sanitize_lines("ERROR: x\n 3 | \tRUN \x1b[2Jy\n   | \t^\n"),
            "ERROR: x\n 3 | \tRUN y\n   | \t^\n"
        );
    }

    #[test]
    fn lines_are_cut_by_characters_and_keep_the_time_on_the_right() {
        let line = Line {
            style: BLUE,
            segs: vec![("ééééé".into(), false), (" why".into(), true)],
            right: " 1.0s".into(),
        };
        assert_eq!(line.render(0, false), "");
        assert_eq!(line.render(1, false), "é");
        // Too narrow for the time beside some text: the text alone.
        assert_eq!(line.render(12, false), "ééééé why");
        assert_eq!(line.render(13, false), "ééééé wh 1.0s");
        assert_eq!(line.render(16, false), "ééééé why   1.0s");
        assert_eq!(
            line.render(13, true),
            format!("{BLUE}ééééé{DIM} wh{RESET}{BLUE} 1.0s{RESET}")
        );
    }

    #[test]
    fn transfers_show_one_line_per_blob() {
        let t0 = Instant::now();
        let mut m = Model::new(t0, false);
        let blob = |state| {
            Event::Registry(RegistryEvent::Blob {
                direction: Direction::Pull,
                digest: "sha256:0123456789abcdef".into(),
                state,
            })
        };
        m.apply(
            &Event::Registry(RegistryEvent::Started {
                direction: Direction::Pull,
                reference: "docker.io/library/alpine:3".into(),
            }),
            t0,
        );
        m.apply(&blob(BlobState::Started { size: 2048 }), t0);
        m.apply(
            &blob(BlobState::Progress {
                done: 1024,
                size: 2048,
            }),
            t0,
        );
        let frame = m.frame(t0, 80, 25, false);
        assert!(frame[1].starts_with(" => pulling docker.io/library/alpine:3 "));
        assert_eq!(frame[2], " => => sha256:0123456789ab 1.00 KiB / 2.00 KiB");
        m.apply(&blob(BlobState::Done), t0);
        m.apply(
            &Event::Registry(RegistryEvent::Finished {
                direction: Direction::Pull,
                reference: "docker.io/library/alpine:3".into(),
                digest: "sha256:feed".into(),
                image_id: "sha256:beef".into(),
            }),
            t0,
        );
        m.close(t0);
        let frame = m.frame(t0, 80, 25, true);
        assert_eq!(frame[2], " => => sha256:0123456789ab 2.00 KiB downloaded");
        assert_eq!(frame[3], " => => docker.io/library/alpine:3@sha256:feed");
    }
}
