//! Running a pipeline: the scheduler.
//!
//! A stage's key is known only once the content hashes of its inputs are, so
//! the coordinator plans as it goes: it walks the DAG, and when every upstream
//! stage of a stage has settled it computes the stage's key and assesses it
//! ([`crate::engine::fingerprint`]): a complete record makes it **fresh**;
//! otherwise it becomes a [`Job`] for a worker thread ([`crate::engine::worker`],
//! the code a remote worker runs too), with the [`Reason`]s that explain the miss.
//! Independent stages run at the same time (up to `jobs` workers); within a
//! stage, rayon parallelises the numerics. With [`Executor::Slurm`] the job is
//! submitted to the cluster instead ([`crate::engine::slurm`]) and its outcome
//! comes back through the same channel, so everything below is the same. A corrupt input object is removed,
//! reported, and its producer recomputed before the consumer runs again. A
//! failed stage skips its dependents and leaves no record; the others run on.
//! Every way a stage settles goes through one place (the `board`), which tells the
//! reporter and writes the stage's manifest line (status and reasons
//! structured, with the reasons also in words).
//!
//! Early cutoff falls out of the two-level keys: a stage that reruns and yields
//! the same content hashes gives its dependents the same keys, and they stay
//! fresh.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc;

use crate::engine::cache::{Cache, CacheError, Manifest, ManifestStage, StageState, Verify, now_ms};
use crate::engine::dag::Dag;
pub use crate::engine::fingerprint::Reason;
use crate::engine::fingerprint::{Assessment, assess, key_inputs, outputs_of};
pub use crate::engine::progress::per_percent;
use crate::engine::progress::{Event, Reporter};
use crate::engine::slurm::{self, SlurmOptions};
use crate::engine::spec::Spec;
use crate::engine::worker::{self, Job, Memo, WorkError};

mod board;
use board::{Board, Settle};
pub use board::{Outcome, RunReport};

/// Errors that stop a run before or around stages (a failing stage is not one:
/// it is reported and recorded in the manifest).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// An unknown stage name (the message names it and the nearest known one).
    #[error("{0}")]
    UnknownStage(String),
    /// [`interrupt`] took the run meanwhile: its manifest stands; its caller exits.
    #[error("interrupted")]
    Interrupted,
}

/// What the run in progress has settled so far, so that an interrupt (Ctrl-C)
/// can record it: the manifest with the settled stages, and the stages running.
struct InFlight {
    cache: Cache,
    manifest: Manifest,
    running: Vec<String>,
}

static IN_FLIGHT: Mutex<Option<InFlight>> = Mutex::new(None);

/// Record the run in progress as interrupted: its manifest gets every stage that
/// settled (their results are cached and stay valid) and the running ones as
/// `interrupted` (they leave no record). Returns what to tell the user; `None`
/// when no run is in progress. For a Ctrl-C handler, which then exits.
pub fn interrupt() -> Option<String> {
    let mut guard = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    let state = guard.take()?;
    let commands = crate::engine::command::kill_all();
    let cancelled = slurm::cancel_outstanding();
    let cancelled = match cancelled {
        0 => String::new(),
        1 => "; cancelled its Slurm job".to_string(),
        n => format!("; cancelled its {n} Slurm jobs"),
    };
    let cancelled = match commands {
        0 => cancelled,
        n => format!("{cancelled}; killed {n} running command{}", if n == 1 { "" } else { "s" }),
    };
    let mut manifest = state.manifest;
    let t = now_ms();
    for name in &state.running {
        manifest.stages.push(ManifestStage {
            name: name.clone(),
            kind: String::new(),
            method: String::new(),
            status: StageState::Interrupted,
            key: None,
            reasons: Vec::new(),
            why: Vec::new(),
            started_ms: t,
            finished_ms: t,
            duration_ms: 0,
            computed_ms: None,
            outputs: BTreeMap::new(),
            error: Some("interrupted".into()),
            resumed_from: None,
            resumes: Vec::new(),
            requeues: Vec::new(),
        });
    }
    manifest.ok = false;
    manifest.finished_ms = t;
    let settled = manifest.stages.iter().filter(|s| s.status.settled()).count();
    let written = state.cache.write_manifest(&manifest);
    let running = if state.running.is_empty() {
        "between stages".to_string()
    } else {
        format!("while {} ran", state.running.join(", "))
    };
    Some(match written {
        Ok(path) => format!(
            "interrupted {running}{cancelled}; {settled} finished stages are recorded in {} (the next run reuses them)",
            path.display()
        ),
        Err(e) => format!("interrupted {running}{cancelled}; the manifest could not be written: {e}"),
    })
}

fn unknown_stage(spec: &Spec, name: &str) -> ExecError {
    let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
    ExecError::UnknownStage(format!(
        "pipeline {} has no stage `{name}`{}",
        spec.name,
        crate::engine::params::suggest(name, &names)
    ))
}

/// Options of `scoreflow run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Run only these stages (and what they need).
    pub only: Vec<String>,
    /// Recompute these stages even when their key is cached.
    pub force: Vec<String>,
    /// Most stages computed at once; 0 means the number of CPUs.
    pub jobs: usize,
    /// The spec file's folder under `runs/` (see [`crate::engine::cache::Home`]);
    /// `None`: the pipeline's name.
    pub home: Option<String>,
    /// Where burn computes; handed to every stage in its [`crate::engine::stage::StageCtx`].
    pub backend: crate::engine::stage::Backend,
    /// Where stages run: worker threads here, or jobs on a Slurm cluster.
    pub executor: Executor,
    /// The command-line changes applied to the spec, as given (recorded in the manifest).
    pub overrides: Vec<String>,
    /// How often checkpointing stages save (`--checkpoint-every`; else each
    /// stage's `resources.checkpoint_every`, else 5 minutes).
    pub checkpoint_every: Option<crate::engine::checkpoint::Every>,
    /// Start over instead of resuming from checkpoints (`--no-resume`).
    pub no_resume: bool,
}

/// Where the stages that must run are computed.
#[derive(Debug, Clone, Default)]
pub enum Executor {
    /// Worker threads in this process (`jobs` at once).
    #[default]
    Local,
    /// One Slurm job per stage ([`crate::engine::slurm`]).
    Slurm(SlurmOptions),
}

/// A cached validate stage's summary (its headline metrics), from its
/// recorded outputs, so a run that computes nothing still answers "did it
/// work?". Other kinds print theirs only when they run; an output that
/// cannot be read gives none (the stage is verified when it is next used).
fn cached_summary(
    cache: &Cache,
    imp: &dyn crate::engine::stage::Stage,
    r: &crate::engine::cache::Record,
) -> Option<String> {
    if imp.kind() != crate::engine::stage::Kind::Validate {
        return None;
    }
    let mut outputs = BTreeMap::new();
    for (name, entry) in &r.outputs {
        outputs.insert(name.clone(), std::sync::Arc::new(cache.read_entry(entry).ok()?));
    }
    imp.summary(&outputs)
}

/// What the coordinator knows while a run goes on, beside the [`Board`]:
/// what was asked, what is waiting for a worker, and what is being
/// recomputed because a consumer found its copy corrupt.
struct Coordinator<'a> {
    spec: &'a Spec,
    cache: &'a Cache,
    reporter: &'a dyn Reporter,
    dag: Dag,
    forced: BTreeSet<usize>,
    previous: Option<Manifest>,
    board: Board<'a>,
    /// Assessed, not cached, waiting for a worker (in DAG order).
    waiting: VecDeque<(usize, Assessment)>,
    in_progress: BTreeSet<usize>,
    summaries: Vec<(String, String)>,
    corrupt_retries: HashMap<usize, u32>,
    /// Producers being recomputed because a consumer found their output corrupt.
    recompute: HashMap<usize, String>,
    checkpoint_every: Option<crate::engine::checkpoint::Every>,
    no_resume: bool,
}

impl<'a> Coordinator<'a> {
    /// The stages `--only` selects (and what they need) and those `--force`d;
    /// an unknown name is an error before anything runs.
    fn new(
        spec: &'a Spec,
        cache: &'a Cache,
        opts: &RunOptions,
        reporter: &'a dyn Reporter,
        previous: Option<Manifest>,
    ) -> Result<Coordinator<'a>, ExecError> {
        for name in opts.only.iter().chain(&opts.force) {
            if spec.index(name).is_none() {
                return Err(unknown_stage(spec, name));
            }
        }
        let dag = Dag::new(spec);
        let n = spec.stages.len();
        let selected: BTreeSet<usize> = if opts.only.is_empty() {
            (0..n).collect()
        } else {
            let roots: Vec<usize> = opts.only.iter().filter_map(|s| spec.index(s)).collect();
            dag.ancestors_of(&roots)
        };
        let mut board = Board::new(spec, reporter);
        for i in (0..n).filter(|i| !selected.contains(i)) {
            board.outcomes[i] = Some(Outcome::NotSelected);
        }
        Ok(Coordinator {
            spec,
            cache,
            reporter,
            dag,
            forced: opts.force.iter().filter_map(|s| spec.index(s)).collect(),
            previous,
            board,
            waiting: VecDeque::new(),
            in_progress: BTreeSet::new(),
            summaries: Vec::new(),
            corrupt_retries: HashMap::new(),
            recompute: HashMap::new(),
            checkpoint_every: opts.checkpoint_every,
            no_resume: opts.no_resume,
        })
    }

    fn is_forced(&self, i: usize) -> bool {
        self.forced.contains(&i) || self.recompute.contains_key(&i)
    }

    /// Assess every stage whose upstream is settled: skip it when something
    /// upstream failed, settle it from the cache when fresh, else queue it.
    fn assess_ready(&mut self) -> Result<(), ExecError> {
        let (spec, board) = (self.spec, &mut self.board);
        let mut progressed = true;
        while progressed {
            progressed = false;
            for &i in &self.dag.order {
                if board.outcomes[i].is_some() || board.keys[i].is_some() {
                    continue;
                }
                let stage = &spec.stages[i];
                let failed_upstream = self
                    .dag
                    .upstream(i)
                    .into_iter()
                    .find(|u| board.outcomes[*u].as_ref().is_some_and(Outcome::incomplete));
                if let Some(bad) = failed_upstream {
                    let because = format!("upstream stage {} did not complete", spec.stages[bad].name);
                    board.settle(i, Settle::Skipped(because), (now_ms(), now_ms()));
                    progressed = true;
                    continue;
                }
                let Some(ki) = key_inputs(stage, &board.done) else {
                    continue;
                };
                let is_forced = self.forced.contains(&i) || self.recompute.contains_key(&i);
                let mut a = assess(self.cache, stage, ki, self.previous.as_ref(), is_forced, Verify::Bytes)?;
                for message in a.warnings.drain(..) {
                    self.reporter.event(&Event::Warning { message });
                }
                if let Some(output) = self.recompute.get(&i) {
                    a.reasons = vec![Reason::OutputCorrupt { output: output.clone() }];
                }
                board.keys[i] = Some(a.key);
                progressed = true;
                if let Some(r) = &a.record
                    && let Some(outs) = outputs_of(r)
                {
                    let t = now_ms();
                    board.settle(i, Settle::Cached(outs, [r.started_ms, r.finished_ms]), (t, t));
                    if let Some(text) = cached_summary(self.cache, stage.imp, r) {
                        self.summaries.push((stage.name.clone(), text));
                    }
                    continue;
                }
                board.reasons[i] = a.reasons.clone();
                self.waiting.push_back((i, a));
            }
        }
        Ok(())
    }

    /// Announce stage `i` and describe its job; the files its spec names
    /// enter the store first, so a worker (here or on a cluster node) reads
    /// them like any input. A file that cannot be stored fails the stage.
    fn job(&mut self, i: usize, a: Assessment, spec_id: &str) -> Option<Job> {
        let stage = &self.spec.stages[i];
        self.reporter.event(&Event::Started {
            stage: stage.name.clone(),
            key: a.key.hex(),
            reasons: a.reasons.iter().map(|r| r.to_string()).collect(),
            resumes: if self.no_resume { None } else { self.cache.checkpoint_header(&a.key) },
        });
        if let Some(error) = stage
            .files
            .values()
            .find_map(|f| self.cache.store(&f.artifact, &[]).err().map(|e| format!("storing file {}: {e}", f.path)))
        {
            self.board.settle(i, Settle::Failed(error), (now_ms(), now_ms()));
            return None;
        }
        Some(Job {
            key_inputs: a.key_inputs,
            stage: stage.name.clone(),
            pipeline: self.spec.name.clone(),
            spec_file: spec_id.to_string(),
            forced: self.is_forced(i),
            time_limit_s: stage.resources.time_seconds(),
            checkpoint_every: self
                .checkpoint_every
                .or(stage.resources.checkpoint_every)
                .unwrap_or(crate::engine::checkpoint::DEFAULT_EVERY),
            resume: !self.no_resume,
        })
    }

    /// Settle what a worker reported for stage `idx`. A corrupt input is
    /// removed and its producer re-planned (a file the spec names, or a
    /// command's code, is stored again from the spec's bytes), at most twice.
    fn on_result(&mut self, idx: usize, result: Result<worker::Done, WorkError>) {
        let (spec, board) = (self.spec, &mut self.board);
        let stage = &spec.stages[idx];
        let (error, started_ms, finished_ms) = match result {
            Ok(d) => {
                if let Some(text) = d.summary {
                    self.summaries.push((stage.name.clone(), text));
                }
                for message in d.warnings {
                    self.reporter.event(&Event::Warning { message });
                }
                let how = Settle::Done { outputs: d.outputs, fresh: d.fresh, resumes: d.resumes, requeues: d.requeues };
                board.settle(idx, how, (d.started_ms, d.finished_ms));
                return;
            }
            Err(WorkError::Failed { error, started_ms, finished_ms }) => (error, started_ms, finished_ms),
            Err(e @ WorkError::Interrupted { .. }) => {
                let WorkError::Interrupted { started_ms, finished_ms, .. } = e else { unreachable!() };
                board.settle(idx, Settle::Interrupted(e.to_string()), (started_ms, finished_ms));
                return;
            }
            Err(WorkError::InputCorrupt { input }) => {
                let producer = stage
                    .inputs
                    .get(&input)
                    .map(|r| (spec.index(&r.stage).expect("validated reference"), r.stage.clone(), r.output.clone()));
                let (retry, what, redo) = match &producer {
                    Some((p, s, o)) => (*p, format!("output {s}.{o}"), format!("recomputing {s}")),
                    None => (idx, format!("copy of `{input}` of {}", stage.name), "storing it again".to_string()),
                };
                let tries = self.corrupt_retries.entry(retry).or_insert(0);
                *tries += 1;
                if *tries > 2 {
                    (format!("{what} is corrupt again after {redo}"), now_ms(), now_ms())
                } else {
                    self.reporter.event(&Event::Warning {
                        message: format!("cached {what} is corrupt or missing; removed it and {redo}"),
                    });
                    board.keys[idx] = None;
                    if let Some((p, producer, output)) = producer {
                        if let Some(k) = board.keys[p] {
                            self.cache.remove_record(&k);
                        }
                        // Re-plan the producer, then this consumer.
                        board.done.remove(&producer);
                        board.outcomes[p] = None;
                        board.keys[p] = None;
                        self.recompute.insert(p, output);
                    }
                    return;
                }
            }
        };
        board.settle(idx, Settle::Failed(error), (started_ms, finished_ms));
    }

    /// The run's manifest: every selected stage's line, and for a stage not
    /// selected the previous run's (so `gc` does not drop its results).
    /// Stages never reached are reported as skipped. The report's
    /// `manifest_path` is left empty: the manifest is not written yet.
    fn finish(mut self, template: Manifest) -> RunReport {
        let n = self.spec.stages.len();
        for i in 0..n {
            if self.board.outcomes[i].is_none() {
                self.board.settle(i, Settle::Skipped("not reached".into()), (now_ms(), now_ms()));
            }
        }
        let Board { lines, outcomes, .. } = self.board;
        let ok = !outcomes.iter().flatten().any(Outcome::incomplete);
        let previous = self.previous;
        let stages = (0..n)
            .filter_map(|i| match &outcomes[i] {
                Some(Outcome::NotSelected) => {
                    previous.as_ref().and_then(|m| m.stage(&self.spec.stages[i].name)).cloned()
                }
                _ => lines[i].clone(),
            })
            .collect();
        let manifest = Manifest { finished_ms: now_ms(), ok, stages, ..template };
        let outcomes =
            self.spec.stages.iter().zip(outcomes).map(|(s, o)| (s.name.clone(), o.expect("settled"))).collect();
        RunReport { manifest, manifest_path: PathBuf::new(), outcomes, summaries: self.summaries, previous }
    }
}

/// Run a pipeline.
pub fn run(spec: &Spec, cache: &Cache, opts: &RunOptions, reporter: &dyn Reporter) -> Result<RunReport, ExecError> {
    let home = opts.home.clone().unwrap_or_else(|| spec.name.clone());
    let mut co = Coordinator::new(spec, cache, opts, reporter, cache.latest_manifest(&home))?;
    let jobs = match &opts.executor {
        Executor::Slurm(s) => s.max_jobs.max(1),
        Executor::Local if opts.jobs == 0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        Executor::Local => opts.jobs,
    };
    let run_started = now_ms();
    let template = Manifest {
        pipeline: spec.name.clone(),
        home: home.clone(),
        spec_file: spec.path.display().to_string(),
        spec_id: cache.spec_id(&spec.path),
        git_commit: crate::engine::manifest::git_commit(&spec.path),
        overrides: opts.overrides.clone(),
        run_id: format!("{}-{}", run_started, std::process::id()),
        started_ms: run_started,
        finished_ms: run_started,
        ok: false,
        stages: Vec::new(),
    };
    *IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(InFlight { cache: cache.clone(), manifest: template.clone(), running: Vec::new() });
    // Keep the in-flight record in step with the coordinator.
    let sync = |lines: &[Option<ManifestStage>], running: &BTreeSet<usize>| {
        if let Some(state) = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            state.manifest.stages = lines.iter().flatten().cloned().collect();
            state.running = running.iter().map(|i| spec.stages[*i].name.clone()).collect();
        }
    };
    let memo = Memo::default();

    std::thread::scope(|scope| -> Result<(), ExecError> {
        let (tx, rx) = mpsc::channel::<(usize, Result<worker::Done, WorkError>)>();
        // On Slurm, one thread watches every submitted job and reports as a
        // worker thread would.
        let (submit_tx, submit_rx) = mpsc::channel::<slurm::Submitted>();
        if let Executor::Slurm(s) = &opts.executor {
            let tx = tx.clone();
            scope.spawn(move || slurm::watch(submit_rx, tx, cache, reporter, s));
        }
        let job_dir = slurm::run_dir(cache, &template.run_id);
        let mut running = 0usize;
        loop {
            sync(&co.board.lines, &co.in_progress);
            co.assess_ready()?;
            // Start workers.
            let mut refused = false;
            // Asked to stop (a signal): start nothing more; running stages checkpoint and return.
            while running < jobs && crate::engine::checkpoint::stop_requested().is_none() {
                let Some((i, a)) = co.waiting.pop_front() else {
                    break;
                };
                let Some(job) = co.job(i, a, &template.spec_id) else {
                    refused = true;
                    continue;
                };
                let stage = &spec.stages[i];
                match &opts.executor {
                    Executor::Local => {
                        let (tx, memo, backend) = (tx.clone(), &memo, opts.backend);
                        scope.spawn(move || {
                            let progress = per_percent(|fraction| {
                                reporter.event(&Event::Progress { stage: stage.name.clone(), fraction })
                            });
                            let result = worker::execute(&job, stage.imp, cache, memo, backend, &progress);
                            let _ = tx.send((i, result));
                        });
                    }
                    Executor::Slurm(s) => {
                        let checkpoints = stage.imp.checkpoints();
                        match slurm::submit(s, cache, &job_dir, i, job, &stage.resources, opts.backend, checkpoints) {
                            Ok(sub) => {
                                reporter.event(&Event::Submitted { stage: stage.name.clone(), job: sub.id.clone() });
                                submit_tx.send(sub).expect("the poller lives as long as the run");
                            }
                            Err(error) => {
                                co.board.settle(i, Settle::Failed(error), (now_ms(), now_ms()));
                                refused = true;
                                continue;
                            }
                        }
                    }
                }
                running += 1;
                co.in_progress.insert(i);
                sync(&co.board.lines, &co.in_progress);
            }
            if running == 0 {
                if refused {
                    // Settle the refused stages' dependents before stopping.
                    continue;
                }
                break;
            }
            let (idx, result) = rx.recv().expect("a worker is running");
            running -= 1;
            co.in_progress.remove(&idx);
            co.on_result(idx, result);
        }
        // Lets the poller (on Slurm) finish; on an early return it goes with
        // the closure, and the poller cancels the jobs still out.
        drop(submit_tx);
        Ok(())
    })?;

    let mut report = co.finish(template);
    // From here on an interrupt has nothing to add: the manifest is complete.
    if IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).take().is_none() {
        return Err(ExecError::Interrupted); // an interrupt recorded the run meanwhile
    }
    report.manifest_path = cache.write_manifest(&report.manifest)?;
    // The job files of a successful run are of no more use; a failed run's are
    // kept beside their logs (gc removes them).
    let job_dir = slurm::run_dir(cache, &report.manifest.run_id);
    if report.manifest.ok && job_dir.exists() {
        let _ = std::fs::remove_dir_all(&job_dir);
        let _ = job_dir.parent().map(std::fs::remove_dir); // when empty
    }
    reporter.finish();
    Ok(report)
}
