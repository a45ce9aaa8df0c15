//! The board: the coordinator's record of every stage — its key once known,
//! why it runs, what it settled to ([`Outcome`]) and its manifest line. Every
//! way a stage settles goes through [`Board::settle`], which also tells the
//! reporter, so the manifest, the events and the run's summary cannot disagree.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::engine::cache::{Manifest, ManifestStage, StageState};
use crate::engine::fingerprint::{OutputMap, Reason};
use crate::engine::hash::Hash;
use crate::engine::progress::{Event, Reporter};
use crate::engine::spec::Spec;

/// What happened to one stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Fresh,
    Ran,
    Failed(String),
    /// Stopped by a signal with its checkpoint saved (the next run resumes).
    Stopped(String),
    Skipped(String),
    NotSelected,
}

impl Outcome {
    /// The stage has no result: its dependents are skipped, the run is not ok.
    pub fn incomplete(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::Stopped(_) | Outcome::Skipped(_))
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct RunReport {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// Per stage, in file order.
    pub outcomes: Vec<(String, Outcome)>,
    /// Stage summaries (e.g. validity tables) to print at the end.
    pub summaries: Vec<(String, String)>,
    /// The manifest of the spec's run before this one (what the views show
    /// until this run updates them).
    pub previous: Option<Manifest>,
}

impl RunReport {
    pub fn ok(&self) -> bool {
        self.manifest.ok
    }
}

/// How a stage settled, for [`Board::settle`].
pub(super) enum Settle {
    /// Its record was found when its key became known (`computed`: the
    /// record's start and end).
    Cached(OutputMap, [u64; 2]),
    /// A worker finished it (`fresh`: another process computed it meanwhile).
    Done {
        outputs: OutputMap,
        fresh: bool,
        resumes: Vec<crate::engine::checkpoint::Resume>,
        requeues: Vec<crate::engine::manifest::Requeue>,
    },
    Failed(String),
    /// Stopped by a signal after saving a checkpoint (the next run resumes).
    Interrupted(String),
    Skipped(String),
}

/// The coordinator's view of every stage: its key once known, why it runs,
/// what it settled to and its manifest line. Every way a stage settles goes
/// through [`Board::settle`], which also tells the reporter.
pub(super) struct Board<'a> {
    spec: &'a Spec,
    reporter: &'a dyn Reporter,
    pub(super) keys: Vec<Option<Hash>>,
    pub(super) reasons: Vec<Vec<Reason>>,
    pub(super) outcomes: Vec<Option<Outcome>>,
    pub(super) lines: Vec<Option<ManifestStage>>,
    /// The outputs of every settled stage, for its dependents' keys.
    pub(super) done: HashMap<String, OutputMap>,
}

impl<'a> Board<'a> {
    pub(super) fn new(spec: &'a Spec, reporter: &'a dyn Reporter) -> Board<'a> {
        let n = spec.stages.len();
        Board {
            spec,
            reporter,
            keys: vec![None; n],
            reasons: vec![Vec::new(); n],
            outcomes: vec![None; n],
            lines: vec![None; n],
            done: HashMap::new(),
        }
    }

    pub(super) fn settle(&mut self, i: usize, how: Settle, (started_ms, finished_ms): (u64, u64)) {
        let stage = &self.spec.stages[i];
        let name = stage.name.clone();
        let key = self.keys[i];
        let mut computed = None;
        let (mut resumed, mut requeued) = (Vec::new(), Vec::new());
        let (state, outcome, outputs, reasons, error) = match how {
            Settle::Cached(outputs, when) => {
                self.reporter.event(&Event::Fresh { stage: name, key: key.expect("assessed").hex() });
                computed = Some(when);
                (StageState::Fresh, Outcome::Fresh, Some(outputs), Vec::new(), None)
            }
            Settle::Done { outputs, fresh, resumes, requeues } => {
                (resumed, requeued) = (resumes, requeues);
                let seconds = finished_ms.saturating_sub(started_ms) as f64 / 1000.0;
                self.reporter.event(&Event::Finished {
                    stage: name,
                    key: key.expect("assessed").hex(),
                    seconds,
                    fresh,
                });
                if fresh {
                    (StageState::Fresh, Outcome::Fresh, Some(outputs), Vec::new(), None)
                } else {
                    (StageState::Ran, Outcome::Ran, Some(outputs), self.reasons[i].clone(), None)
                }
            }
            Settle::Failed(error) => {
                self.reporter.event(&Event::Failed { stage: name, error: error.clone() });
                (StageState::Failed, Outcome::Failed(error.clone()), None, self.reasons[i].clone(), Some(error))
            }
            Settle::Interrupted(error) => {
                self.reporter.event(&Event::Stopped { stage: name, error: error.clone() });
                let reasons = self.reasons[i].clone();
                (StageState::Interrupted, Outcome::Stopped(error.clone()), None, reasons, Some(error))
            }
            Settle::Skipped(because) => {
                self.reporter.event(&Event::Skipped { stage: name, because: because.clone() });
                (StageState::Skipped, Outcome::Skipped(because.clone()), None, Vec::new(), Some(because))
            }
        };
        self.lines[i] = Some(ManifestStage {
            name: stage.name.clone(),
            kind: stage.imp.kind().name().into(),
            method: stage.imp.method().into(),
            status: state,
            key: if state == StageState::Skipped { None } else { key.map(|k| k.hex()) },
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            why: reasons,
            started_ms,
            finished_ms,
            duration_ms: finished_ms.saturating_sub(started_ms),
            computed_ms: computed,
            outputs: outputs
                .as_ref()
                .map(|o| o.iter().map(|(k, (h, _))| (k.clone(), h.hex())).collect())
                .unwrap_or_default(),
            error,
            resumed_from: resumed.last().map(|r| r.step),
            resumes: resumed,
            requeues: requeued,
        });
        if let Some(outputs) = outputs {
            self.done.insert(stage.name.clone(), outputs);
        }
        self.outcomes[i] = Some(outcome);
    }
}
