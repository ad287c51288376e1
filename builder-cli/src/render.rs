//! How the CLI shows progress and errors; the library only emits typed events and errors.

use std::io::Write;
use std::sync::Mutex;

use engine::{BuildError, Event, ProgressSink};

/// Progress styles, as `docker build --progress` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// One line per event on stderr (`plain`, and `auto`/`tty` for now).
    Plain,
    /// Nothing (`-q` and `--progress=quiet`).
    Quiet,
    /// One JSON object per event (`rawjson`), for machines.
    Json,
}

/// Writes events to stderr in the chosen style.
pub struct Renderer {
    style: Style,
    out: Mutex<std::io::Stderr>,
}

impl Renderer {
    /// A renderer for `style`.
    pub fn new(style: Style) -> Self {
        Renderer {
            style,
            out: Mutex::new(std::io::stderr()),
        }
    }
}

impl ProgressSink for Renderer {
    fn event(&self, event: Event) {
        let line = match self.style {
            Style::Quiet => return,
            Style::Json => json(&event),
            Style::Plain => match plain(&event) {
                Some(l) => l,
                None => return,
            },
        };
        if let Ok(mut o) = self.out.lock() {
            let _ = writeln!(o, "{line}");
        }
    }
}

fn plain(event: &Event) -> Option<String> {
    Some(match event {
        Event::Planned { steps, stages } => {
            format!("#0 planned {steps} steps in {} stage(s)", stages.len())
        }
        Event::StepStarted(s) => format!(
            "#{} [{} {}/{}] {}",
            s.index, s.stage, s.index, s.total, s.text
        ),
        Event::StepLog { step, text } => text
            .lines()
            .map(|l| format!("#{} {l}", step.index))
            .collect::<Vec<_>>()
            .join("\n"),
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
    })
}

fn json(event: &Event) -> String {
    use serde_json::json;
    let v = match event {
        Event::Planned { steps, stages } => {
            json!({"event": "planned", "steps": steps, "stages": stages})
        }
        Event::StepStarted(s) => {
            json!({"event": "step_started", "index": s.index, "total": s.total, "stage": s.stage, "line": s.line, "text": s.text})
        }
        Event::StepLog { step, text } => json!({"event": "log", "index": step.index, "text": text}),
        Event::StepDone { step, elapsed } => {
            json!({"event": "step_done", "index": step.index, "seconds": elapsed.as_secs_f64()})
        }
        Event::Warning { message } => json!({"event": "warning", "message": message}),
        Event::ImageWritten { id, tags } => json!({"event": "image", "id": id, "tags": tags}),
        Event::Exported { kind, dest } => json!({"event": "exported", "kind": kind, "dest": dest}),
    };
    v.to_string()
}

/// Text for an error: Dockerfile errors show the offending line with a caret.
pub fn error(e: &BuildError) -> String {
    match e {
        BuildError::Dockerfile(pe) => format!("ERROR: {}", pe.render()),
        other => format!("ERROR: {other}"),
    }
}
