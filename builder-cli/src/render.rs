//! How the CLI shows progress and errors; the library only emits typed events and errors.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_engine::pull::{BlobState, Direction, RegistryEvent};
use rbuild_engine::{BuildError, Event, ProgressSink};

use crate::tty::Display;

/// Progress styles, as `docker build --progress` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One line per event on stderr (`plain`, and `auto` when stderr is not a terminal).
    Plain,
    /// BuildKit's live display of running steps, redrawn in place (`tty`, and `auto` on a
    /// terminal).
    Tty,
    /// Nothing (`-q` and `--progress=quiet`).
    Quiet,
    /// One JSON object per event (`rawjson`), for machines.
    Json,
}

/// Writes events to stderr in the chosen style.
pub struct Renderer {
    style: Style,
    out: Mutex<std::io::Stderr>,
    bars: Option<Bars>,
    /// Whether the pull in progress downloaded a blob, for its closing status line.
    fetched: AtomicBool,
    /// The live display, for [`Style::Tty`]; it shows registry transfers itself.
    display: Option<Display>,
}

impl Renderer {
    /// A renderer for `style`; registry transfers get per-layer bars when stderr is a terminal.
    pub fn new(style: Style) -> Self {
        let bars = (style == Style::Plain && std::io::stderr().is_terminal()).then(Bars::new);
        Renderer {
            style,
            out: Mutex::new(std::io::stderr()),
            bars,
            fetched: AtomicBool::new(false),
            display: (style == Style::Tty).then(Display::start),
        }
    }

    /// Removes finished progress bars, or paints the display's final frame, so what is printed
    /// next (the command's output, an error) starts on a clean line below it.
    pub fn finish(&self) {
        if let Some(b) = &self.bars {
            let _ = b.multi.clear();
        }
        if let Some(d) = &self.display {
            d.finish();
        }
    }
}

impl Drop for Renderer {
    /// A build that fails returns early, and its error is printed after the renderer is gone:
    /// the display must have painted its last frame (the failed step marked) by then.
    fn drop(&mut self) {
        if let Some(d) = &self.display {
            d.finish();
        }
    }
}

// --- registry transfer progress: bars on a terminal, quiet lines otherwise ---

/// Per-blob progress bars for pulls and pushes on a terminal.
struct Bars {
    multi: MultiProgress,
    by_digest: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            by_digest: Mutex::new(HashMap::new()),
        }
    }

    /// Updates the bar of the blob the event is about; other events print above the bars.
    fn show(&self, ev: &RegistryEvent, fetched: bool) {
        let RegistryEvent::Blob {
            direction,
            digest,
            state,
        } = ev
        else {
            if let Some(l) = registry_line(ev, fetched) {
                let _ = self.multi.println(l);
            }
            return;
        };
        let Ok(mut map) = self.by_digest.lock() else {
            return;
        };
        let bar = map
            .entry(digest.clone())
            .or_insert_with(|| {
                let pb = self.multi.add(ProgressBar::new(0));
                let style = ProgressStyle::with_template(
                    "{prefix} {msg:<18} [{bar:30}] {bytes}/{total_bytes}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                pb.set_style(style);
                pb.set_prefix(short_digest(digest));
                pb
            })
            .clone();
        drop(map);
        match state {
            BlobState::Started { size } => {
                bar.set_length(*size);
                bar.set_message(verb(*direction, "Downloading", "Pushing"));
            }
            BlobState::Progress { done, size } => {
                bar.set_length(*size);
                bar.set_position(*done);
            }
            BlobState::Retrying { attempt } => bar.set_message(format!("Retrying ({attempt})")),
            BlobState::Done => {
                if let Some(len) = bar.length() {
                    bar.set_position(len);
                }
                // Pulls keep layers compressed (decoded on first use), so a downloaded layer is
                // complete; an `Extracted` that follows only changes the message.
                bar.finish_with_message(verb(*direction, "Download complete", "Pushed"));
            }
            // Nothing moves for these: a line without a bar, as docker shows them.
            BlobState::Exists => {
                bar.set_style(no_bar_style());
                bar.finish_with_message("Already exists");
            }
            BlobState::Mounted { from } => {
                bar.set_style(no_bar_style());
                bar.finish_with_message(format!("Mounted from {from}"));
            }
            BlobState::Extracted => bar.finish_with_message("Pull complete"),
            // States added later show as the plain line does.
            _ => {}
        }
    }
}

/// The style of a blob line that has no bytes to move.
fn no_bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn verb(d: Direction, pull: &'static str, push: &'static str) -> &'static str {
    match d {
        Direction::Pull => pull,
        Direction::Push => push,
    }
}

fn short_digest(d: &str) -> String {
    let hex = d.split_once(':').map_or(d, |(_, h)| h);
    hex.chars().take(12).collect()
}

fn human_bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// The quiet one-line form of a registry event; `None` for byte-level progress. `fetched` says
/// whether the current pull downloaded anything (docker's "Downloaded newer image" status).
fn registry_line(ev: &RegistryEvent, fetched: bool) -> Option<String> {
    Some(match ev {
        RegistryEvent::Started {
            direction,
            reference,
        } => format!("{} {reference}", verb(*direction, "Pulling", "Pushing to")),
        RegistryEvent::Blob {
            direction,
            digest,
            state,
        } => {
            let what = match state {
                BlobState::Started { size } => format!(
                    "{} {}",
                    verb(*direction, "Downloading", "Pushing"),
                    human_bytes(*size)
                ),
                BlobState::Progress { .. } => return None,
                BlobState::Retrying { attempt } => format!("Retrying (attempt {attempt})"),
                BlobState::Done => verb(*direction, "Download complete", "Pushed").to_string(),
                BlobState::Exists => "Already exists".to_string(),
                BlobState::Mounted { from } => format!("Mounted from {from}"),
                BlobState::Extracted => "Pull complete".to_string(),
                _ => return None,
            };
            format!("{}: {what}", short_digest(digest))
        }
        RegistryEvent::Finished {
            direction: Direction::Pull,
            reference,
            digest,
            ..
        } => {
            let status = if fetched {
                "Downloaded newer image for"
            } else {
                "Image is up to date for"
            };
            format!("Digest: {digest}\nStatus: {status} {reference}")
        }
        RegistryEvent::Finished {
            direction: Direction::Push,
            reference,
            digest,
            ..
        } => format!("{reference}: pushed, digest: {digest}"),
        _ => return None,
    })
}

impl ProgressSink for Renderer {
    fn event(&self, event: Event) {
        if let Some(d) = &self.display {
            d.event(&event);
            return;
        }
        match &event {
            Event::Registry(RegistryEvent::Started { direction, .. }) => {
                if *direction == Direction::Pull {
                    self.fetched.store(false, Ordering::Relaxed);
                }
                // Each transfer gets fresh bars: a blob that "already existed" for one tag's push
                // is pushed with a bar of its own for the next.
                if let Some(b) = &self.bars {
                    if let Ok(mut map) = b.by_digest.lock() {
                        map.clear();
                    }
                }
            }
            Event::Registry(RegistryEvent::Blob {
                direction: Direction::Pull,
                state: BlobState::Started { .. },
                ..
            }) => self.fetched.store(true, Ordering::Relaxed),
            _ => {}
        }
        let fetched = self.fetched.load(Ordering::Relaxed);
        if let (Event::Registry(r), Some(bars)) = (&event, &self.bars) {
            bars.show(r, fetched);
            return;
        }
        let line = match self.style {
            Style::Quiet => return,
            Style::Json => json(&event),
            // Handled by the display above.
            Style::Tty => return,
            Style::Plain => match plain(&event, fetched) {
                Some(l) => l,
                None => return,
            },
        };
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{line}");
        }
    }
}

fn plain(event: &Event, fetched: bool) -> Option<String> {
    Some(match event {
        Event::Planned { steps, stages } => {
            format!("#0 planned {steps} steps in {} stage(s)", stages.len())
        }
        Event::Snapshotter {
            name,
            fallback_reason: None,
        } => format!("#0 snapshotter: {name}"),
        Event::Snapshotter {
            name,
            fallback_reason: Some(why),
        } => format!("WARNING: using the {name} snapshotter: {why}"),
        Event::StepStarted(s) => format!(
            "#{} [{} {}/{}] {}",
            s.index, s.stage, s.index, s.total, s.text
        ),
        Event::StepLog { step, text } => text
            .lines()
            .map(|l| format!("#{} {l}", step.index))
            .collect::<Vec<_>>()
            .join("\n"),
        Event::StepCached(step) => format!("#{} CACHED", step.index),
        Event::StepMiss { step, reason } => format!("#{} cache miss: {reason}", step.index),
        Event::StepCancelled(step) => format!("#{} CANCELED", step.index),
        Event::CacheImported { source, records } => {
            format!("#0 importing cache from {source}: {records} records")
        }
        Event::StepDone { step, elapsed } => {
            format!("#{} DONE {:.1}s", step.index, elapsed.as_secs_f64())
        }
        Event::Warning { message } => format!("WARNING: {message}"),
        Event::ImageWritten { id, tags } => {
            let mut s = format!("writing image {id} done");
            for t in tags {
                s.push_str(&format!("\nnaming to {t} done"));
            }
            s
        }
        Event::Exported { kind, dest } => format!("exported {kind} to {dest}"),
        Event::Registry(r) => return registry_line(r, fetched),
        _ => return None,
    })
}

/// `rawjson` is the library's own serialization of each event, so a machine reading rbuild's
/// output and a program embedding the library see one format, documented on [`Event`].
fn json(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

/// Text for an error: Dockerfile errors show the offending line with a caret. A failed step's
/// error quotes its last output, which may hold escape sequences: they are removed, so the
/// error cannot clear the screen or overwrite the display above it.
pub fn error(e: &BuildError) -> String {
    let text = match e {
        // The parser's rendering opens with its own `error: `; one prefix is enough.
        BuildError::Dockerfile(pe) => {
            let r = pe.render();
            format!("ERROR: {}", r.strip_prefix("error: ").unwrap_or(&r))
        }
        other => format!("ERROR: {other}"),
    };
    crate::tty::sanitize_lines(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn blob(direction: Direction, state: BlobState) -> RegistryEvent {
        RegistryEvent::Blob {
            direction,
            digest: D.into(),
            state,
        }
    }

    #[test]
    fn quiet_lines_for_pull_and_push() {
        let finished = |direction| RegistryEvent::Finished {
            direction,
            reference: "h:5000/a/b:1".into(),
            digest: "sha256:aa".into(),
            image_id: "sha256:bb".into(),
        };
        let cases: Vec<(RegistryEvent, bool, Option<&str>)> = vec![
            (
                RegistryEvent::Started {
                    direction: Direction::Pull,
                    reference: "h:5000/a/b:1".into(),
                },
                false,
                Some("Pulling h:5000/a/b:1"),
            ),
            (
                blob(Direction::Pull, BlobState::Started { size: 2048 }),
                false,
                Some("0123456789ab: Downloading 2.00 KiB"),
            ),
            (
                blob(Direction::Pull, BlobState::Progress { done: 1, size: 2 }),
                false,
                None,
            ),
            (
                blob(Direction::Pull, BlobState::Done),
                false,
                Some("0123456789ab: Download complete"),
            ),
            (
                blob(Direction::Pull, BlobState::Exists),
                false,
                Some("0123456789ab: Already exists"),
            ),
            (
                blob(Direction::Push, BlobState::Started { size: 1 }),
                false,
                Some("0123456789ab: Pushing 1 B"),
            ),
            (
                blob(Direction::Push, BlobState::Done),
                false,
                Some("0123456789ab: Pushed"),
            ),
            (
                blob(
                    Direction::Push,
                    BlobState::Mounted {
                        from: "a/base".into(),
                    },
                ),
                false,
                Some("0123456789ab: Mounted from a/base"),
            ),
            (
                blob(Direction::Push, BlobState::Retrying { attempt: 2 }),
                false,
                Some("0123456789ab: Retrying (attempt 2)"),
            ),
            (
                finished(Direction::Pull),
                true,
                Some("Digest: sha256:aa\nStatus: Downloaded newer image for h:5000/a/b:1"),
            ),
            (
                finished(Direction::Pull),
                false,
                Some("Digest: sha256:aa\nStatus: Image is up to date for h:5000/a/b:1"),
            ),
            (
                finished(Direction::Push),
                false,
                Some("h:5000/a/b:1: pushed, digest: sha256:aa"),
            ),
        ];
        for (ev, fetched, want) in cases {
            assert_eq!(registry_line(&ev, fetched).as_deref(), want, "{ev:?}");
        }
    }

    #[test]
    fn rawjson_is_the_librarys_serialization() {
        let cases = [
            (
                blob(Direction::Pull, BlobState::Progress { done: 3, size: 9 }),
                r#"{"event":"registry","registry":"blob","direction":"pull","digest":"DIG","state":{"state":"progress","done":3,"size":9}}"#,
            ),
            (
                blob(
                    Direction::Push,
                    BlobState::Mounted {
                        from: "a/base".into(),
                    },
                ),
                r#"{"event":"registry","registry":"blob","direction":"push","digest":"DIG","state":{"state":"mounted","from":"a/base"}}"#,
            ),
        ];
        for (ev, want) in cases {
            assert_eq!(
                json(&Event::Registry(ev)),
                want.replace("DIG", D),
                "json form"
            );
        }
    }
}
