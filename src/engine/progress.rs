//! How a run shows itself: one line per stage for people, JSON lines for machines.
//!
//! The executor emits [`Event`]s; a [`Reporter`] renders them. On a terminal the
//! human reporter draws an indicatif bar for each running stage that reports
//! progress; elsewhere (CI logs, pipes) it prints plain lines. `--json` prints one
//! JSON object per event on stdout and nothing else there.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Something that happened during a run.
#[derive(Debug, Clone)]
pub enum Event {
    Fresh {
        stage: String,
        key: String,
    },
    Started {
        stage: String,
        key: String,
        reasons: Vec<String>,
    },
    /// A stage handed to a cluster scheduler as job `job`.
    Submitted {
        stage: String,
        job: String,
    },
    Progress {
        stage: String,
        fraction: f64,
    },
    Finished {
        stage: String,
        key: String,
        seconds: f64,
        fresh: bool,
    },
    Failed {
        stage: String,
        error: String,
    },
    Skipped {
        stage: String,
        because: String,
    },
    Warning {
        message: String,
    },
    Summary {
        stage: String,
        text: String,
    },
}

pub trait Reporter: Sync {
    fn event(&self, event: &Event);
    /// Called once at the end of a run, before the final summary lines.
    fn finish(&self) {}
}

/// Human-readable lines (and bars on a terminal).
pub struct Human {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    width: usize,
}

impl Human {
    /// `width` pads stage names so columns line up.
    pub fn new(width: usize) -> Human {
        let tty = std::io::stdout().is_terminal();
        let multi = tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Human { multi, bars: Mutex::new(HashMap::new()), width }
    }

    /// One finished line. On a terminal the bars are cleared, the line is
    /// written with its own newline, and the bars redrawn below it
    /// (`MultiProgress::println` pads the line to the terminal's width instead
    /// of ending it, so lines ran together where the width was not known).
    fn line(&self, text: String) {
        let write = || {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        };
        match &self.multi {
            Some(m) => m.suspend(write),
            None => write(),
        }
    }
}

impl Reporter for Human {
    fn event(&self, event: &Event) {
        let w = self.width;
        match event {
            Event::Fresh { stage, key } => self.line(format!("{stage:w$}  fresh    {}", &key[..12])),
            Event::Started { stage, reasons, .. } => {
                self.line(format!("{stage:w$}  running  because {}", reasons.join("; ")));
                if let Some(m) = &self.multi {
                    let bar = m.add(ProgressBar::new(1000));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} {bar:30} {percent:>3}% {elapsed}")
                            .expect("static template"),
                    );
                    bar.set_prefix(format!("{stage:w$}"));
                    bar.enable_steady_tick(Duration::from_millis(200));
                    self.bars.lock().expect("not poisoned").insert(stage.clone(), bar);
                }
            }
            Event::Submitted { stage, job } => self.line(format!("{stage:w$}  queued   as Slurm job {job}")),
            Event::Progress { stage, fraction } => {
                if let Some(bar) = self.bars.lock().expect("not poisoned").get(stage) {
                    bar.set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                }
            }
            Event::Finished { stage, seconds, fresh, .. } => {
                if let Some(bar) = self.bars.lock().expect("not poisoned").remove(stage) {
                    bar.finish_and_clear();
                }
                let what = if *fresh { "fresh    (computed by a concurrent run)" } else { "done    " };
                self.line(format!("{stage:w$}  {what} {seconds:.3}s"));
            }
            Event::Failed { stage, error } => {
                if let Some(bar) = self.bars.lock().expect("not poisoned").remove(stage) {
                    bar.finish_and_clear();
                }
                self.line(format!("{stage:w$}  FAILED   {error}"));
            }
            Event::Skipped { stage, because } => self.line(format!("{stage:w$}  skipped  {because}")),
            Event::Warning { message } => {
                let _ = self.multi.as_ref().map(|m| m.suspend(|| eprintln!("warning: {message}")));
                if self.multi.is_none() {
                    eprintln!("warning: {message}");
                }
            }
            Event::Summary { stage, text } => self.line(format!("{stage:w$}  {text}")),
        }
    }
}

/// One JSON object per event on stdout.
pub struct Json;

impl Reporter for Json {
    fn event(&self, event: &Event) {
        let value = match event {
            Event::Fresh { stage, key } => {
                serde_json::json!({"event": "fresh", "stage": stage, "key": key})
            }
            Event::Started { stage, key, reasons } => {
                serde_json::json!({"event": "started", "stage": stage, "key": key, "reasons": reasons})
            }
            Event::Submitted { stage, job } => {
                serde_json::json!({"event": "submitted", "stage": stage, "job": job})
            }
            Event::Progress { stage, fraction } => {
                serde_json::json!({"event": "progress", "stage": stage, "fraction": fraction})
            }
            Event::Finished { stage, key, seconds, fresh } => {
                serde_json::json!({"event": "finished", "stage": stage, "key": key, "seconds": seconds, "fresh": fresh})
            }
            Event::Failed { stage, error } => {
                serde_json::json!({"event": "failed", "stage": stage, "error": error})
            }
            Event::Skipped { stage, because } => {
                serde_json::json!({"event": "skipped", "stage": stage, "because": because})
            }
            Event::Warning { message } => {
                serde_json::json!({"event": "warning", "message": message})
            }
            Event::Summary { stage, text } => {
                serde_json::json!({"event": "summary", "stage": stage, "text": text})
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}");
        let _ = out.flush();
    }
}

/// Discards everything (library use, benchmarks).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _event: &Event) {}
}
