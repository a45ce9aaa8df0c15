//! The Slurm executor: each stage that must run becomes one Slurm job.
//!
//! The coordinator (`scoreflow run FILE --executor slurm`) plans exactly as it
//! does locally — a stage's key is computed when its inputs' content hashes are
//! known — but instead of a worker thread it writes the stage's [`Job`] as JSON
//! beside a batch script and `sbatch`es it. The job runs `scoreflow worker`
//! (this same binary) on that file against the same artifacts directory (on a
//! cluster: a shared filesystem), which calls the same [`crate::engine::worker::execute`]
//! a local run calls: same key, same lock, same record-last crash safety. So a
//! job the scheduler kills (time limit, memory, `scancel`) leaves no record, and
//! two coordinators, or a coordinator and a local run, never compute one key
//! twice.
//!
//! ```text
//! artifacts/slurm/<run id>/003-train.job.json      the job description (what determines the key)
//!                          003-train.sbatch        the batch script (resources as #SBATCH lines)
//!                          003-train.log           the job's output: progress lines, errors
//!                          003-train.result.json   what the worker reports back
//! ```
//!
//! One poller thread watches every submitted job: a result file ends a job that
//! succeeded; otherwise it asks the scheduler once per interval, for all jobs at
//! once (`squeue --states=all`, then `scontrol show job` for one that `squeue`
//! no longer lists; `sacct` is often disabled), and streams the progress lines
//! the workers print. A job that ends without a result — `FAILED`, `TIMEOUT`,
//! `CANCELLED`, `OUT_OF_MEMORY`, `NODE_FAIL`, … — fails its stage with that state
//! and the tail of its log. Ctrl-C (and an error in the coordinator) cancels
//! every job this process submitted that has not finished ([`cancel_outstanding`]).
//! The run's folder is removed when the run succeeds and kept, with the logs,
//! when a stage failed; `gc` removes what is left.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Duration;

use crate::engine::cache::{Cache, now_ms};
use crate::engine::fingerprint::outputs_of;
use crate::engine::progress::{Event, Reporter};
use crate::engine::spec::Resources;
use crate::engine::stage::Backend;
use crate::engine::worker::{Done, Job, WorkError, outcome_from_json};

/// How to use the cluster (`scoreflow run --executor slurm` flags).
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// `--partition` for every job (else the cluster's default).
    pub partition: Option<String>,
    /// `--account` for every job.
    pub account: Option<String>,
    /// More `sbatch` flags, one each (`--qos=high`); they come after the
    /// script's own and so override them.
    pub sbatch_args: Vec<String>,
    /// Most jobs submitted and not yet finished.
    pub max_jobs: usize,
    /// The program the jobs run: this scoreflow binary (on a cluster, at a path
    /// every node sees).
    pub program: PathBuf,
    /// How often the scheduler is asked about the jobs.
    pub poll: Duration,
}

/// The line a worker prints for its stage's progress (read back from its log).
pub const PROGRESS_PREFIX: &str = "scoreflow-progress ";

/// The files of one job, under the run's folder.
#[derive(Debug, Clone)]
pub struct JobFiles {
    /// The job description (JSON).
    pub job: PathBuf,
    /// What the worker reports back (JSON).
    pub result: PathBuf,
    /// The job's output.
    pub log: PathBuf,
    /// The batch script.
    pub script: PathBuf,
}

impl JobFiles {
    /// The files of stage `idx` (`stage`) under `dir`, as absolute paths.
    pub fn under(dir: &Path, idx: usize, stage: &str) -> JobFiles {
        let base = format!("{idx:03}-{}", file_safe(stage));
        let at = |ext: &str| {
            let p = dir.join(format!("{base}.{ext}"));
            std::path::absolute(&p).unwrap_or(p)
        };
        JobFiles { job: at("job.json"), result: at("result.json"), log: at("log"), script: at("sbatch") }
    }
}

/// One job submitted and not yet settled.
#[derive(Debug)]
pub struct Submitted {
    /// The stage's index in the spec.
    pub idx: usize,
    /// The scheduler's job id.
    pub id: String,
    pub job: Job,
    pub files: JobFiles,
    /// How many times the job may be resubmitted after it stopped with a
    /// checkpoint saved (`resources.max_requeues`).
    pub max_requeues: u32,
    /// When the current job was submitted.
    pub submitted_ms: u64,
}

/// The job ids this process submitted that have not finished (for Ctrl-C).
static OUTSTANDING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// `scancel` every job this process submitted that has not finished; returns
/// how many were cancelled.
pub fn cancel_outstanding() -> usize {
    let ids: Vec<String> =
        std::mem::take(&mut *OUTSTANDING.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect();
    if !ids.is_empty() {
        let _ = Command::new("scancel").args(&ids).status();
    }
    ids.len()
}

fn outstanding(id: &str, add: bool) {
    let mut set = OUTSTANDING.lock().unwrap_or_else(|e| e.into_inner());
    if add {
        set.insert(id.to_string());
    } else {
        set.remove(id);
    }
}

/// The folder of a run's job files.
pub fn run_dir(cache: &Cache, run_id: &str) -> PathBuf {
    cache.root().join("slurm").join(run_id)
}

/// A stage name as a file name and job name part (`tuned[beta=0.5]` → `tuned_beta_0.5_`).
fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// `s` quoted for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// How long before its time limit a checkpointing stage's job is warned
/// (SIGUSR1, `--signal=B:USR1@…`): two minutes, or half a shorter limit.
pub fn warning_seconds(time_limit_s: u64) -> u64 {
    (time_limit_s / 2).clamp(1, 120)
}

/// The batch script of one job: its `#SBATCH` lines, then the worker command.
/// A stage that checkpoints (`checkpoints`) is warned before its time limit,
/// so that it saves and exits for the coordinator to resubmit; the log of
/// every submission is kept in one file (appended).
pub fn batch_script(
    opts: &SlurmOptions,
    cache: &Cache,
    name: &str,
    files: &JobFiles,
    resources: &Resources,
    backend: Backend,
    checkpoints: bool,
) -> String {
    let mut s = String::from("#!/bin/sh\n");
    let _ = writeln!(s, "#SBATCH --job-name={name}");
    let _ = writeln!(s, "#SBATCH --output={}", files.log.display());
    let _ = writeln!(s, "#SBATCH --open-mode=append");
    let _ = writeln!(s, "#SBATCH --ntasks=1");
    if checkpoints && let Some(limit) = resources.time_seconds() {
        let _ = writeln!(s, "#SBATCH --signal=B:USR1@{}", warning_seconds(limit));
    }
    for flag in resources.sbatch_flags() {
        let _ = writeln!(s, "#SBATCH {flag}");
    }
    if let Some(p) = &opts.partition {
        let _ = writeln!(s, "#SBATCH --partition={p}");
    }
    if let Some(a) = &opts.account {
        let _ = writeln!(s, "#SBATCH --account={a}");
    }
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let _ = writeln!(
        s,
        "exec {} --artifacts {} worker {} --result {} --device {}",
        sh_quote(&abs(&opts.program)),
        sh_quote(&abs(cache.root())),
        sh_quote(&abs(&files.job)),
        sh_quote(&abs(&files.result)),
        backend.name()
    );
    s
}

/// Write `job`'s description and batch script under `dir`, and `sbatch` it.
#[allow(clippy::too_many_arguments)]
pub fn submit(
    opts: &SlurmOptions,
    cache: &Cache,
    dir: &Path,
    idx: usize,
    job: Job,
    resources: &Resources,
    backend: Backend,
    checkpoints: bool,
) -> Result<Submitted, String> {
    let files = JobFiles::under(dir, idx, &job.stage);
    // A stage resubmitted in one run (its input was recomputed) starts afresh.
    for stale in [&files.result, &files.log] {
        let _ = std::fs::remove_file(stale);
    }
    let text = serde_json::to_vec_pretty(&job.to_json()).expect("json");
    cache.write_atomic(&files.job, &text).map_err(|e| e.to_string())?;
    let name = format!("sf-{}-{}", file_safe(&job.pipeline), file_safe(&job.stage));
    let body = batch_script(opts, cache, &name, &files, resources, backend, checkpoints);
    cache.write_atomic(&files.script, body.as_bytes()).map_err(|e| e.to_string())?;
    let id = sbatch(opts, &files.script)?;
    let max_requeues = resources.max_requeues.unwrap_or(crate::engine::spec::resources::DEFAULT_MAX_REQUEUES);
    Ok(Submitted { idx, id, job, files, max_requeues, submitted_ms: now_ms() })
}

/// `sbatch` a written script; its job id.
fn sbatch(opts: &SlurmOptions, script: &Path) -> Result<String, String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(&opts.sbatch_args)
        .arg(script)
        .output()
        .map_err(|e| format!("cannot run sbatch ({e}): is Slurm installed and is this a submit host?"))?;
    if !out.status.success() {
        return Err(format!("sbatch refused the job: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    // `--parsable` prints `id` or `id;cluster`.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("sbatch printed no job id: {:?}", stdout.trim()));
    }
    outstanding(&id, true);
    Ok(id)
}

/// What the scheduler says of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `TIMEOUT`, …
    pub state: String,
    /// Slurm's reason (`NonZeroExitCode`, `TimeLimit`, `Resources`, …).
    pub reason: String,
}

impl JobState {
    /// Whether the job has ended (its processes are gone or going).
    pub fn ended(&self) -> bool {
        matches!(
            self.state.as_str(),
            "COMPLETED"
                | "FAILED"
                | "TIMEOUT"
                | "CANCELLED"
                | "OUT_OF_MEMORY"
                | "NODE_FAIL"
                | "BOOT_FAIL"
                | "DEADLINE"
                | "PREEMPTED"
                | "SPECIAL_EXIT"
                | "REVOKED"
        )
    }
}

/// `squeue -h --states=all -o %i|%T|%r` lines as states by job id.
pub fn parse_squeue(text: &str) -> HashMap<String, JobState> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, '|');
            let id = f.next()?.trim().to_string();
            let state = f.next()?.trim().to_string();
            let reason = f.next().unwrap_or_default().trim().to_string();
            (!id.is_empty()).then_some((id, JobState { state, reason }))
        })
        .collect()
}

/// `scontrol show job -o ID` (one line of `Key=Value` fields) as a state.
pub fn parse_scontrol(text: &str) -> Option<JobState> {
    let field = |k: &str| {
        text.split_whitespace().find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_string)
    };
    Some(JobState { state: field("JobState")?, reason: field("Reason").unwrap_or_default() })
}

/// The states of `ids`: one `squeue` for all, then `scontrol` for any it does
/// not list. A job neither knows is absent from the map.
fn query(ids: &[&str]) -> HashMap<String, JobState> {
    let mut states = Command::new("squeue")
        .args(["-h", "--states=all", "-o", "%i|%T|%r", "-j", &ids.join(",")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_squeue(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default();
    for id in ids {
        if !states.contains_key(*id)
            && let Ok(o) = Command::new("scontrol").args(["show", "job", "-o", id]).output()
            && o.status.success()
            && let Some(s) = parse_scontrol(&String::from_utf8_lossy(&o.stdout))
        {
            states.insert(id.to_string(), s);
        }
    }
    states
}

/// The last `n` lines of a job's log that are not progress lines.
pub fn log_tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(PROGRESS_PREFIX) && !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One watched job: where its log has been read to.
struct Watched {
    sub: Submitted,
    log_offset: u64,
    /// A failure the worker reported, held until the scheduler says how the job ended.
    failed: Option<(String, u64, u64)>,
    /// When the scheduler first did not know the job.
    unknown_since: Option<u64>,
    /// The submissions of this stage that stopped and were resubmitted.
    requeues: Vec<crate::engine::manifest::Requeue>,
}

impl Watched {
    fn new(sub: Submitted) -> Watched {
        Watched { sub, log_offset: 0, failed: None, unknown_since: None, requeues: Vec::new() }
    }
}

/// Resubmit a job that stopped (`state`) with its checkpoint at `step`: the
/// same script, so the worker resumes from the checkpoint. `None` when the
/// job may not be resubmitted again; else whether sbatch took it.
fn requeue(
    opts: &SlurmOptions,
    cache: &Cache,
    w: &mut Watched,
    state: &str,
    step: Option<u64>,
) -> Option<Result<(), String>> {
    if w.requeues.len() as u32 >= w.sub.max_requeues {
        return None;
    }
    // `--no-resume` means this run's first submission starts over; the
    // resubmissions continue from what it saved.
    if !w.sub.job.resume {
        w.sub.job.resume = true;
        let text = serde_json::to_vec_pretty(&w.sub.job.to_json()).expect("json");
        if let Err(e) = cache.write_atomic(&w.sub.files.job, &text) {
            return Some(Err(e.to_string()));
        }
    }
    let _ = std::fs::remove_file(&w.sub.files.result);
    outstanding(&w.sub.id, false);
    Some(sbatch(opts, &w.sub.files.script).map(|id| {
        w.requeues.push(crate::engine::manifest::Requeue {
            job: w.sub.id.clone(),
            state: state.to_string(),
            step,
            next_job: id.clone(),
        });
        w.sub.id = id;
        w.sub.submitted_ms = now_ms();
        w.failed = None;
        w.unknown_since = None;
    }))
}

/// The newest progress fraction in the log since the last look.
fn read_progress(w: &mut Watched) -> Option<f64> {
    let mut f = std::fs::File::open(&w.sub.files.log).ok()?;
    f.seek(SeekFrom::Start(w.log_offset)).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    // Only whole lines: a line being written is read next time.
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    w.log_offset += complete as u64;
    text[..complete].lines().rev().find_map(|l| l.strip_prefix(PROGRESS_PREFIX)?.trim().parse().ok())
}

/// How a job that the scheduler says ended without a usable result failed.
fn ended_without_result(w: &Watched, state: &JobState) -> String {
    let what = match state.state.as_str() {
        "TIMEOUT" => "exceeded its time limit".to_string(),
        "OUT_OF_MEMORY" => "ran out of memory".to_string(),
        "CANCELLED" => "was cancelled".to_string(),
        _ => "ended without a result".to_string(),
    };
    let reason =
        if state.reason.is_empty() || state.reason == "None" { String::new() } else { format!(", {}", state.reason) };
    let tail = log_tail(&w.sub.files.log, 12);
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!(
            "; last lines of {}:\n{}",
            w.sub.files.log.display(),
            tail.lines().map(|l| format!("    | {l}")).collect::<Vec<_>>().join("\n")
        )
    };
    format!("Slurm job {} {what} ({}{reason}){tail}", w.sub.id, state.state)
}

/// What to do with a watched job after reading its worker's report.
enum Next {
    /// It is done: this is its outcome.
    Settled(Result<Done, WorkError>),
    /// It was resubmitted (or is still running): look again next time.
    Wait,
    /// No report, or a failure to confirm: see how the scheduler ended it.
    AskScheduler,
}

/// Read the report of `w`'s worker, if it wrote one. A stage that saved a
/// checkpoint on the warning signal is resubmitted (up to its
/// `max_requeues`); a failure waits for the scheduler's word on the job.
fn read_report(opts: &SlurmOptions, cache: &Cache, reporter: &dyn Reporter, w: &mut Watched) -> Next {
    if w.failed.is_some() {
        return Next::AskScheduler;
    }
    let Some(outcome) = std::fs::read(&w.sub.files.result)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .and_then(|v| outcome_from_json(&v))
    else {
        return Next::AskScheduler;
    };
    match outcome {
        Err(WorkError::Failed { error, started_ms, finished_ms }) => w.failed = Some((error, started_ms, finished_ms)),
        Err(WorkError::Interrupted { step, total, signal, started_ms, finished_ms }) => {
            // Saved on the warning signal: resubmit, and it resumes.
            let old = w.sub.id.clone();
            match requeue(opts, cache, w, "CHECKPOINTED", Some(step)) {
                Some(Ok(())) => {
                    reporter.event(&Event::Warning {
                        message: format!(
                            "{}: Slurm job {old} saved a checkpoint at step {step} of {total} before its time limit; resubmitted as job {}",
                            w.sub.job.stage, w.sub.id
                        ),
                    });
                    return Next::Wait;
                }
                Some(Err(e)) => {
                    w.failed = Some((format!("resubmitting after a checkpoint: {e}"), started_ms, finished_ms))
                }
                None => {
                    let error = format!(
                        "stopped at step {step} of {total} (signal {signal}) after {} resubmissions (max_requeues); its checkpoint is kept and the next run resumes there",
                        w.requeues.len()
                    );
                    w.failed = Some((error, started_ms, finished_ms))
                }
            }
        }
        Ok(mut d) => {
            d.requeues = std::mem::take(&mut w.requeues);
            return Next::Settled(Ok(d));
        }
        other => return Next::Settled(other),
    }
    Next::AskScheduler
}

/// Watch submitted jobs until the coordinator stops sending them and all have
/// settled; send each one's outcome to `done`. When `submissions` closes with
/// jobs still watched (the coordinator is gone: an error), cancel them.
pub fn watch(
    submissions: Receiver<Submitted>,
    done: Sender<(usize, Result<Done, WorkError>)>,
    cache: &Cache,
    reporter: &dyn Reporter,
    opts: &SlurmOptions,
) {
    let poll = opts.poll;
    let mut watched: Vec<Watched> = Vec::new();
    let mut closed = false;
    loop {
        if watched.is_empty() {
            // Nothing to poll: wait for the next submission.
            match submissions.recv() {
                Ok(sub) => watched.push(Watched::new(sub)),
                Err(_) => return,
            }
        }
        loop {
            match submissions.try_recv() {
                Ok(sub) => watched.push(Watched::new(sub)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed {
            cancel_outstanding();
            return;
        }
        let ids: Vec<&str> = watched.iter().map(|w| w.sub.id.as_str()).collect();
        let states = query(&ids);
        let mut settled = BTreeMap::new();
        for (n, w) in watched.iter_mut().enumerate() {
            if let Some(fraction) = read_progress(w) {
                reporter.event(&Event::Progress { stage: w.sub.job.stage.clone(), fraction });
            }
            let state = states.get(&w.sub.id);
            // The worker's own report comes first: a finished stage is done
            // whatever the scheduler does next (COMPLETING takes a while).
            match read_report(opts, cache, reporter, w) {
                Next::Settled(outcome) => {
                    settled.insert(n, outcome);
                    continue;
                }
                Next::Wait => continue,
                Next::AskScheduler => {}
            }
            let ended = match state {
                Some(s) if s.ended() => s.clone(),
                Some(_) => {
                    w.unknown_since = None;
                    continue;
                }
                None => {
                    // Not known (yet, or any more): give the scheduler a minute.
                    let since = *w.unknown_since.get_or_insert(now_ms());
                    if now_ms() - since < 60_000 {
                        continue;
                    }
                    JobState { state: "UNKNOWN".into(), reason: "the scheduler no longer knows the job".into() }
                }
            };
            // Stopped by the scheduler after saving a checkpoint this
            // submission (the time limit, a preemption, a node that died):
            // resubmit, and it resumes there.
            if w.failed.is_none()
                && matches!(ended.state.as_str(), "TIMEOUT" | "PREEMPTED" | "NODE_FAIL")
                && let Some(h) = cache.checkpoint_header(&w.sub.job.key())
                && h.written_ms >= w.sub.submitted_ms
            {
                let old = w.sub.id.clone();
                match requeue(opts, cache, w, &ended.state, Some(h.step)) {
                    Some(Ok(())) => {
                        reporter.event(&Event::Warning {
                            message: format!(
                                "{}: Slurm job {old} ended ({}) after a checkpoint at step {}; resubmitted as job {}",
                                w.sub.job.stage, ended.state, h.step, w.sub.id
                            ),
                        });
                        continue;
                    }
                    Some(Err(e)) => {
                        let t = now_ms();
                        w.failed = Some((format!("resubmitting after {}: {e}", ended.state), t, t));
                    }
                    None => {}
                }
            }
            let outcome = if let Some((error, started_ms, finished_ms)) = w.failed.take() {
                let code = if ended.reason.is_empty() { String::new() } else { format!(", {}", ended.reason) };
                Err(WorkError::Failed {
                    error: format!(
                        "{error} (Slurm job {} {}{code}; log: {})",
                        w.sub.id,
                        ended.state,
                        w.sub.files.log.display()
                    ),
                    started_ms,
                    finished_ms,
                })
            } else if let Some(outputs) =
                cache.load_record(&w.sub.job.key()).ok().flatten().as_ref().and_then(outputs_of)
            {
                // The record is the result; only the report was lost.
                let t = now_ms();
                Ok(Done {
                    outputs,
                    fresh: false,
                    started_ms: t,
                    finished_ms: t,
                    summary: None,
                    resumes: Vec::new(),
                    warnings: Vec::new(),
                    requeues: std::mem::take(&mut w.requeues),
                })
            } else {
                let t = now_ms();
                Err(WorkError::Failed { error: ended_without_result(w, &ended), started_ms: t, finished_ms: t })
            };
            settled.insert(n, outcome);
        }
        for (n, outcome) in settled.into_iter().rev() {
            let w = watched.remove(n);
            outstanding(&w.sub.id, false);
            let _ = done.send((w.sub.idx, outcome));
        }
        if !watched.is_empty() {
            std::thread::sleep(poll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_output_parses() {
        let s = parse_squeue("12|RUNNING|None\n13|FAILED|NonZeroExitCode\n14|PENDING|Resources\n");
        assert_eq!(s["13"], JobState { state: "FAILED".into(), reason: "NonZeroExitCode".into() });
        assert!(s["13"].ended() && !s["12"].ended() && !s["14"].ended());
        let line = "JobId=7 JobName=x UserId=root(0) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) ExitCode=0:15";
        assert_eq!(parse_scontrol(line), Some(JobState { state: "TIMEOUT".into(), reason: "TimeLimit".into() }));
        assert_eq!(parse_scontrol("slurm_load_jobs error: Invalid job id specified"), None);
    }

    #[test]
    fn the_batch_script_asks_for_the_stage_resources_and_runs_the_worker() {
        let opts = SlurmOptions {
            partition: Some("gpu".into()),
            account: None,
            sbatch_args: vec![],
            max_jobs: 4,
            program: "/opt/bin/scoreflow".into(),
            poll: Duration::from_millis(100),
        };
        let cache = Cache::new("/shared/artifacts");
        let r = Resources { cpus: Some(8), time: Some("1:00:00".into()), ..Default::default() };
        let files = JobFiles::under(Path::new("/shared/artifacts/slurm/1"), 1, "train");
        let s = batch_script(&opts, &cache, "sf-p-train", &files, &r, Backend::Flex, false);
        assert!(!s.contains("--signal"), "{s}");
        let warned = batch_script(&opts, &cache, "sf-p-train", &files, &r, Backend::Flex, true);
        assert!(warned.lines().any(|l| l == "#SBATCH --signal=B:USR1@120"), "{warned}");
        assert_eq!((warning_seconds(60), warning_seconds(3600)), (30, 120));
        assert!(s.starts_with("#!/bin/sh\n#SBATCH --job-name=sf-p-train\n"), "{s}");
        for line in ["#SBATCH --cpus-per-task=8", "#SBATCH --time=1:00:00", "#SBATCH --partition=gpu"] {
            assert!(s.lines().any(|l| l == line), "{line} in {s}");
        }
        assert!(s.ends_with(
            "exec '/opt/bin/scoreflow' --artifacts '/shared/artifacts' worker '/shared/artifacts/slurm/1/001-train.job.json' --result '/shared/artifacts/slurm/1/001-train.result.json' --device flex\n"
        ), "{s}");
        assert_eq!(file_safe("tuned[beta=0.5]"), "tuned_beta_0.5_");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
