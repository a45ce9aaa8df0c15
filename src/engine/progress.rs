//! How a run shows itself: one line per stage for people, JSON lines for machines.
//!
//! The executor emits [`Event`]s; a [`Reporter`] renders them. On a terminal the
//! human reporter draws an indicatif bar for each running stage that reports
//! progress; elsewhere (CI logs, pipes, a run left in the background) it prints
//! plain lines, and a stage that reports progress gets a line like
//! `train  running  42% after 21m04s` at most once a minute, so a log shows
//! how far an hour-long stage has come (`… (resumed at 12%)` when this run
//! took over from a checkpoint). `--json` prints one JSON object per
//! event on stdout and nothing else there.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
        /// The checkpoint it continues from, if it has one.
        resumes: Option<crate::engine::checkpoint::Header>,
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
    /// Stopped by a signal after saving its checkpoint (the next run resumes).
    Stopped {
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
    /// Without a terminal: each running stage's progress lines.
    plain: Mutex<HashMap<String, Plain>>,
    /// Without a terminal: the least time between two progress lines of a stage.
    every: Duration,
    width: usize,
}

/// A running stage's plain progress lines: when it started, when the last
/// line was written and, when it resumed, the fraction its checkpoint had reached.
struct Plain {
    start: Instant,
    last: Instant,
    from: Option<f64>,
}

impl Human {
    /// `width` pads stage names so columns line up.
    pub fn new(width: usize) -> Human {
        let tty = std::io::stdout().is_terminal();
        let multi = tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout()));
        Human::with(multi, width, Duration::from_secs(60))
    }

    fn with(multi: Option<MultiProgress>, width: usize, every: Duration) -> Human {
        Human { multi, bars: Mutex::new(HashMap::new()), plain: Mutex::new(HashMap::new()), every, width }
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

    /// Without a terminal, the progress line of `stage` at `fraction` when the
    /// last one is at least `every` old (then it counts as written).
    fn plain_progress(&self, stage: &str, fraction: f64) -> Option<String> {
        let mut plain = self.plain.lock().expect("not poisoned");
        let Plain { start, last, from } = plain.get_mut(stage)?;
        let now = Instant::now();
        if now.duration_since(*last) < self.every {
            return None;
        }
        *last = now;
        let secs = now.duration_since(*start).as_secs();
        let pct = (fraction.clamp(0.0, 1.0) * 100.0).floor();
        let w = self.width;
        let resumed = match from {
            Some(f) => format!(" (resumed at {:.0}%)", (f.clamp(0.0, 1.0) * 100.0).floor()),
            None => String::new(),
        };
        Some(format!("{stage:w$}  running  {pct:.0}% after {}m{:02}s{resumed}", secs / 60, secs % 60))
    }
}

impl Reporter for Human {
    fn event(&self, event: &Event) {
        let w = self.width;
        match event {
            Event::Fresh { stage, key } => self.line(format!("{stage:w$}  fresh    {}", &key[..12])),
            Event::Started { stage, reasons, resumes, .. } => {
                let mut why = reasons.join("; ");
                if let Some(h) = resumes {
                    why.push_str(&format!("; resumes from {}", h.describe()));
                }
                self.line(format!("{stage:w$}  running  because {why}"));
                if let Some(m) = &self.multi {
                    let bar = m.add(ProgressBar::new(1000));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix} {bar:30} {percent:>3}% {elapsed}")
                            .expect("static template"),
                    );
                    bar.set_prefix(format!("{stage:w$}"));
                    bar.enable_steady_tick(Duration::from_millis(200));
                    self.bars.lock().expect("not poisoned").insert(stage.clone(), bar);
                } else {
                    let now = Instant::now();
                    let from = resumes.as_ref().filter(|h| h.total > 0).map(|h| h.step as f64 / h.total as f64);
                    self.plain
                        .lock()
                        .expect("not poisoned")
                        .insert(stage.clone(), Plain { start: now, last: now, from });
                }
            }
            Event::Submitted { stage, job } => self.line(format!("{stage:w$}  queued   as Slurm job {job}")),
            Event::Progress { stage, fraction } => {
                if let Some(bar) = self.bars.lock().expect("not poisoned").get(stage) {
                    bar.set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                }
                if let Some(text) = self.plain_progress(stage, *fraction) {
                    self.line(text);
                }
            }
            Event::Finished { stage, seconds, fresh, .. } => {
                if let Some(bar) = self.bars.lock().expect("not poisoned").remove(stage) {
                    bar.finish_and_clear();
                }
                self.plain.lock().expect("not poisoned").remove(stage);
                let what = if *fresh { "fresh    (computed by a concurrent run)" } else { "done    " };
                self.line(format!("{stage:w$}  {what} {seconds:.3}s"));
            }
            Event::Failed { stage, error } | Event::Stopped { stage, error } => {
                if let Some(bar) = self.bars.lock().expect("not poisoned").remove(stage) {
                    bar.finish_and_clear();
                }
                self.plain.lock().expect("not poisoned").remove(stage);
                let what = if matches!(event, Event::Failed { .. }) { "FAILED " } else { "stopped" };
                self.line(format!("{stage:w$}  {what}  {error}"));
            }
            Event::Skipped { stage, because } => self.line(format!("{stage:w$}  skipped  {because}")),
            Event::Warning { message } => {
                let _ = self.multi.as_ref().map(|m| m.suspend(|| eprintln!("warning: {message}")));
                if self.multi.is_none() {
                    eprintln!("warning: {message}");
                }
            }
            Event::Summary { stage, text } => self.line(format!("\n[{stage}]\n{text}")),
        }
    }
}

/// One JSON object per event on stdout.
pub struct Json;

impl Reporter for Json {
    fn event(&self, event: &Event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", Json::of(event));
        let _ = out.flush();
    }
}

impl Json {
    /// The JSON object of `event` (the table in docs/spec.md, "Machine-readable output").
    pub fn of(event: &Event) -> serde_json::Value {
        match event {
            Event::Fresh { stage, key } => {
                serde_json::json!({"event": "fresh", "stage": stage, "key": key})
            }
            Event::Started { stage, key, reasons, resumes } => {
                let mut v = serde_json::json!({"event": "started", "stage": stage, "key": key, "reasons": reasons});
                if let Some(h) = resumes {
                    v["resumes_from"] = h.to_json();
                }
                v
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
            Event::Stopped { stage, error } => {
                serde_json::json!({"event": "stopped", "stage": stage, "error": error})
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
        }
    }
}

/// Discards everything (library use, benchmarks).
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _event: &Event) {}
}

/// A stage's progress callback that passes on at most one fraction per percent.
pub fn per_percent<'a>(emit: impl Fn(f64) + Sync + 'a) -> impl Fn(f64) + Sync + 'a {
    let last = std::sync::Mutex::new(-1i64);
    move |fraction: f64| {
        let pct = (fraction * 100.0) as i64;
        let mut last = last.lock().expect("not poisoned");
        if pct != *last {
            *last = pct;
            emit(fraction);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(stage: &str) -> Event {
        Event::Started { stage: stage.into(), key: "0".repeat(64), reasons: vec!["no record".into()], resumes: None }
    }

    #[test]
    fn without_a_terminal_progress_is_a_line_at_most_every_interval() {
        // due at once: a line with the percentage (floored) and the time so far
        let h = Human::with(None, 6, Duration::ZERO);
        assert_eq!(h.plain_progress("train", 0.5), None, "no line for a stage that has not started");
        h.event(&started("train"));
        assert_eq!(h.plain_progress("train", 0.427).as_deref(), Some("train   running  42% after 0m00s"));
        assert_eq!(h.plain_progress("train", 1.7).as_deref(), Some("train   running  100% after 0m00s"));
        // finished: no more lines
        h.event(&Event::Finished { stage: "train".into(), key: "0".repeat(64), seconds: 1.0, fresh: false });
        assert_eq!(h.plain_progress("train", 0.9), None);
        // an hour apart: the first report comes only after the interval
        let h = Human::with(None, 6, Duration::from_secs(3600));
        h.event(&started("sample"));
        assert_eq!(h.plain_progress("sample", 0.9), None);
    }

    /// Every event `--json` prints, and every field of it, is in the table
    /// the docs give scripts to read.
    #[test]
    fn the_json_events_are_the_documented_ones() {
        let doc = include_str!("../../docs/spec.md");
        let (s, k) = (|| "s".to_string(), || "k".to_string());
        let events = [
            Event::Fresh { stage: s(), key: k() },
            Event::Started { stage: s(), key: k(), reasons: vec![], resumes: Some(header(7, 10)) },
            Event::Submitted { stage: s(), job: "1".into() },
            Event::Progress { stage: s(), fraction: 0.5 },
            Event::Finished { stage: s(), key: k(), seconds: 1.0, fresh: false },
            Event::Failed { stage: s(), error: "e".into() },
            Event::Stopped { stage: s(), error: "e".into() },
            Event::Skipped { stage: s(), because: "b".into() },
            Event::Warning { message: "m".into() },
            Event::Summary { stage: s(), text: "t".into() },
        ];
        for event in &events {
            let v = Json::of(event);
            let name = v["event"].as_str().unwrap();
            let row = doc.lines().find(|l| l.starts_with(&format!("| `{name}` |"))).unwrap_or_else(|| {
                panic!("docs/spec.md has no row for the `{name}` event");
            });
            let mut fields: Vec<&String> = v.as_object().unwrap().keys().collect();
            if let Some(nested) = v.get("resumes_from").and_then(|r| r.as_object()) {
                fields.extend(nested.keys());
            }
            for field in fields.into_iter().filter(|f| *f != "event") {
                assert!(row.contains(&format!("`{field}`")), "the `{name}` row lacks `{field}`: {row}");
            }
        }
    }

    fn header(step: u64, total: u64) -> crate::engine::checkpoint::Header {
        crate::engine::checkpoint::Header {
            key: "0".repeat(64),
            step,
            total,
            written_ms: 0,
            state_bytes: 0,
            state_hash: String::new(),
            resumes: Vec::new(),
            work: None,
        }
    }

    /// A resumed stage's line says where this run took over, so `14% after
    /// 4m` is not read as 14% in four minutes.
    #[test]
    fn a_resumed_stage_says_where_it_resumed() {
        let h = Human::with(None, 6, Duration::ZERO);
        let header = header(12_751, 100_000);
        let Event::Started { stage, key, reasons, .. } = started("train") else { unreachable!() };
        h.event(&Event::Started { stage, key, reasons, resumes: Some(header) });
        let line = h.plain_progress("train", 0.14);
        assert_eq!(line.as_deref(), Some("train   running  14% after 0m00s (resumed at 12%)"));
    }
}
