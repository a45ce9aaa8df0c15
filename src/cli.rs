//! Command-line interface: argument definitions (clap) and one function per
//! command. Commands print to stdout; warnings and errors go to stderr.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::engine::cache::Cache;
use crate::engine::dag::Dag;
use crate::engine::executor::{self, Executor, Outcome, RunOptions};
use crate::engine::progress::{Human, Json, Reporter};
use crate::engine::slurm::SlurmOptions;
use crate::engine::spec::{self, Spec};
use crate::error::{EXIT_FAILURE, Error};
use crate::inspect::{self, InspectOptions};

#[derive(Debug, Parser)]
#[command(name = "scoreflow", version, about = "Declarative, cached pipelines for diffusion-model experiments")]
pub struct Cli {
    /// Artifact cache directory [default: `artifacts/` beside the `pipelines/`
    /// folder holding the spec, else beside the spec; for gc: ./artifacts].
    #[arg(long, global = true, env = "SCOREFLOW_ARTIFACTS", value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Change the spec for this command: `--set stages.tuned.params.beta=2.0`,
    /// `--set seed=7` (the value is YAML; repeatable; checked like the file).
    #[arg(long = "set", global = true, value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Sweep a target for this command: `--matrix seed=1,2,3` adds (or
    /// replaces) that axis of the spec's `matrix:` (repeatable).
    #[arg(long = "matrix", global = true, value_name = "TARGET=V1,V2,..")]
    pub matrix: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline: reuse every stage whose key is cached, run the rest, say why.
    Run {
        /// The pipeline spec (YAML).
        file: PathBuf,
        /// Run only these stages and what they need.
        #[arg(long, num_args = 1.., value_name = "STAGE")]
        only: Vec<String>,
        /// Recompute these stages even when cached.
        #[arg(long, num_args = 1.., value_name = "STAGE")]
        force: Vec<String>,
        /// Print one JSON object per event instead of progress lines.
        #[arg(long)]
        json: bool,
        /// Most stages computed at once, and most threads inside a stage
        /// [default: number of CPUs].
        #[arg(long, short, default_value_t = 0, hide_default_value = true)]
        jobs: usize,
        /// burn CPU backend for training: `flex` or `ndarray`. Not part of any cache
        /// key (both agree within float tolerance).
        #[arg(long, env = "SCOREFLOW_DEVICE", default_value = "flex", value_parser = ["flex", "ndarray"])]
        device: String,
        /// Where stages run: `local` (worker threads here) or `slurm` (one
        /// `sbatch` job per stage, each running this binary as a worker on the
        /// shared artifacts directory; resources from each stage's `resources:`).
        #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
        executor: String,
        /// Slurm partition for every job [default: the cluster's].
        #[arg(long)]
        partition: Option<String>,
        /// Slurm account for every job.
        #[arg(long)]
        account: Option<String>,
        /// One more sbatch flag, e.g. `--sbatch-arg=--qos=high` (repeatable;
        /// overrides the job script's own).
        #[arg(long = "sbatch-arg", value_name = "FLAG", allow_hyphen_values = true)]
        sbatch_args: Vec<String>,
        /// Most Slurm jobs submitted and unfinished at once [default: 64].
        #[arg(long)]
        max_jobs: Option<usize>,
        /// Seconds between two looks at the Slurm queue [default: 1].
        #[arg(long)]
        poll: Option<f64>,
    },
    /// Run one stage job (what a Slurm job of `run --executor slurm` calls):
    /// read the job description, compute it against `--artifacts`, write the
    /// outcome to `--result`. Exits 1 when the stage failed.
    #[command(hide = true)]
    Worker {
        /// The job description (JSON, written by the coordinator).
        job: PathBuf,
        /// Where to write the outcome (JSON).
        #[arg(long)]
        result: PathBuf,
        /// burn CPU backend, as the coordinator's `--device`.
        #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray"])]
        device: String,
    },
    /// Show each stage as fresh or dirty, and why. Runs nothing.
    Status {
        /// The pipeline spec (YAML).
        file: PathBuf,
        /// Print a JSON array (stage, fresh, key, reasons) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the stage graph (text, or Graphviz with --dot).
    Dag {
        /// The pipeline spec (YAML).
        file: PathBuf,
        /// Print Graphviz `dot` source instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Show an artifact: `STAGE[.OUTPUT] --pipeline FILE`, or a Parquet file path.
    Inspect {
        /// `STAGE`, `STAGE.OUTPUT` or `PATH.parquet`.
        target: String,
        /// The pipeline that defines STAGE.
        #[arg(long, short)]
        pipeline: Option<PathBuf>,
        /// Rows to show.
        #[arg(long, short = 'n', default_value_t = 10)]
        head: usize,
        /// A polars SQL query over the table, registered as `t`.
        #[arg(long)]
        sql: Option<String>,
        /// Print JSON (schema, rows, head, describe, metadata) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a cached output to a file: tables as Parquet or CSV, blobs as they
    /// are, model weights also as safetensors (by the extension of `-o`).
    Export {
        /// `STAGE` (its first output), `STAGE.OUTPUT`, or a cached file's path.
        target: String,
        /// The pipeline that defines STAGE.
        #[arg(long, short)]
        pipeline: Option<PathBuf>,
        /// Where to write: `.parquet`/`.csv` for tables, `.safetensors` for model
        /// weights, any other name for the bytes as cached.
        #[arg(long, short, value_name = "PATH")]
        output: PathBuf,
        /// Replace PATH if it exists (a symbolic link is never written through).
        #[arg(long)]
        force: bool,
    },
    /// Show what a command stage printed in its latest run: the command,
    /// stdout and stderr (kept under `artifacts/logs/<key>/`).
    Logs {
        /// The stage (`STAGE`, or `STAGE[k=v]` for one instance of a matrix).
        stage: String,
        /// The pipeline that defines STAGE.
        #[arg(long, short)]
        pipeline: PathBuf,
        /// Only the last N lines of each stream.
        #[arg(long, short = 'n')]
        tail: Option<usize>,
    },
    /// Remove cached results that no pipeline's latest run uses.
    Gc {
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every cached object against its content hash and every record
    /// against its objects; remove what is bad (the next run recomputes it).
    /// Exits 1 when something was bad.
    Verify,
    /// Validate a spec: every error at once, with file:line:column. Runs nothing.
    Check {
        /// The pipeline spec (YAML).
        file: PathBuf,
    },
    /// The experiment table: one row per instance of the spec's matrix, the
    /// swept values, then every metric its stages produce (from the cache);
    /// median/min/max over seeds when the seed is swept. Also written to
    /// `artifacts/compare/<pipeline>.parquet`.
    Compare {
        /// The pipeline spec (YAML).
        file: PathBuf,
        /// Only metrics whose name (`stage.metric`) contains one of these.
        #[arg(long, num_args = 1.., value_name = "PART")]
        metrics: Vec<String>,
        /// One JSON object per row.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// CSV on standard output.
        #[arg(long)]
        csv: bool,
        /// Compare two recorded runs instead: `latest`, `previous`, or run ids
        /// (or unique prefixes) from `scoreflow runs FILE`.
        #[arg(long, num_args = 2, value_names = ["A", "B"])]
        runs: Vec<String>,
    },
    /// List the recorded runs of a pipeline, oldest first: when, how long, how
    /// many stages ran, were fresh or failed, and whether it succeeded.
    Runs {
        /// The pipeline spec (YAML).
        file: PathBuf,
        /// One JSON object per run.
        #[arg(long)]
        json: bool,
    },
    /// List the stage implementations: each one's params (type, default, doc),
    /// inputs and outputs with their media.
    Stages {
        /// Only this kind (generate, label, train, sample, validate, tune, report).
        kind: Option<String>,
        /// Only this implementation of the kind (its selector's value).
        method: Option<String>,
        /// Print the README's stage table (Markdown) instead.
        #[arg(long)]
        markdown: bool,
    },
}

/// The whole `scoreflow` program, with a user crate's stages beside the
/// built-in ones: every command (`run`, `status`, `inspect`, `compare`, …)
/// and the Slurm worker (jobs run this same binary) know them.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     scoreflow::cli::main_with(vec![/* &my_crate::Spiral, … */])
/// }
/// ```
///
/// `examples/custom_stage.rs` is a whole crate's worth.
pub fn main_with(stages: Vec<&'static dyn crate::engine::stage::Stage>) -> ExitCode {
    if let Err(why) = crate::add_stages(stages) {
        eprintln!("error: {why}");
        return ExitCode::from(crate::error::EXIT_FAILURE);
    }
    match main_with_args(std::env::args_os()) {
        Ok(code) => code,
        Err(err) => {
            let code = err.exit_code();
            match &err {
                // Spec errors print as a list of `error: file:line:col: …` lines.
                Error::Spec(e) => eprintln!("{e}"),
                // Every error's message already names its cause: print it once.
                _ => eprintln!("error: {err}"),
            }
            ExitCode::from(code)
        }
    }
}

/// Parse `args` and run the command.
pub fn main_with_args<I, T>(args: I) -> Result<ExitCode, Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(ExitCode::from(if e.use_stderr() { crate::error::EXIT_BAD_INPUT } else { 0 }));
        }
    };
    run(cli)
}

/// `artifacts/` beside the `pipelines/` folder that holds the spec (the repository
/// layout), else beside the spec itself — decided on the spec's canonical path, so
/// the cache is the same whichever directory the command runs from and however the
/// spec's path is written (`pipelines/x.yaml`, `x.yaml` from inside `pipelines/`,
/// `../pipelines/x.yaml`, a symbolic link).
pub fn default_artifacts(spec: &Path) -> PathBuf {
    let spec = std::fs::canonicalize(spec).unwrap_or_else(|_| spec.to_path_buf());
    let dir = spec.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if dir.file_name().is_some_and(|n| n == "pipelines") {
        dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join("artifacts")
    } else {
        dir.join("artifacts")
    }
}

/// Load a spec; a path that names no file is bad input in plain words (not a
/// position in a file that does not exist).
fn load_spec(file: &Path, overrides: &[spec::Override]) -> Result<spec::Spec, Error> {
    if !file.is_file() {
        let what = if file.exists() { "not a file" } else { "no such file" };
        return Err(Error::BadInput(format!("{}: {what}", file.display())));
    }
    Ok(spec::load_with(file, crate::registry(), overrides)?)
}

impl Cli {
    /// The `--set` and `--matrix` options, in the order given (sets first).
    fn overrides(&self) -> Result<Vec<spec::Override>, Error> {
        let sets = self.set.iter().map(|a| spec::Override::parse(false, a));
        let axes = self.matrix.iter().map(|a| spec::Override::parse(true, a));
        sets.chain(axes).collect::<Result<_, _>>().map_err(Error::BadInput)
    }
}

fn cache_for(cli_dir: &Option<PathBuf>, spec: &Path) -> Cache {
    Cache::new(cli_dir.clone().unwrap_or_else(|| default_artifacts(spec)))
}

fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
}

/// `scoreflow worker`: compute one job, as a Slurm job does. Its output is the
/// job's log: progress lines ([`crate::engine::slurm::PROGRESS_PREFIX`]) and
/// how the stage ended.
fn worker(artifacts: &Option<PathBuf>, job_file: &Path, result: &Path, device: &str) -> Result<ExitCode, Error> {
    use crate::engine::worker::{self, Job, Memo};
    let Some(root) = artifacts else {
        return Err(Error::BadInput("worker needs --artifacts DIR (the coordinator's cache)".into()));
    };
    let text = std::fs::read(job_file).map_err(|e| Error::BadInput(format!("{}: {e}", job_file.display())))?;
    let job = serde_json::from_slice(&text)
        .ok()
        .and_then(|v| Job::from_json(&v))
        .ok_or_else(|| Error::BadInput(format!("{}: not a scoreflow job description", job_file.display())))?;
    let imp =
        job.implementation(crate::registry()).map_err(|e| Error::BadInput(format!("{}: {e}", job_file.display())))?;
    // As many threads as the scheduler gave the job's task.
    if let Some(n) = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|n| n.parse::<usize>().ok()) {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build_global();
    }
    let cache = Cache::new(root.clone());
    let _lease = cache.lease()?;
    println!(
        "scoreflow worker: stage {} of {} on {}, key {}",
        job.stage,
        job.pipeline,
        crate::engine::cache::host(),
        job.key().short()
    );
    let progress = executor::per_percent(|fraction| println!("{}{fraction:.3}", crate::engine::slurm::PROGRESS_PREFIX));
    let backend = crate::engine::stage::Backend::parse(device).expect("clap checked the value");
    let outcome = worker::execute(&job, imp, &cache, &Memo::default(), backend, &progress);
    let ok = outcome.is_ok();
    match &outcome {
        Ok(d) if d.fresh => println!("scoreflow worker: already computed (another process finished it)"),
        Ok(d) => println!("scoreflow worker: done in {:.3}s", (d.finished_ms - d.started_ms) as f64 / 1000.0),
        Err(worker::WorkError::Failed { error, .. }) => {
            eprintln!("scoreflow worker: stage {} failed: {error}", job.stage)
        }
        Err(worker::WorkError::InputCorrupt { input }) => {
            eprintln!("scoreflow worker: input `{input}` is corrupt or missing; removed it")
        }
    }
    let bytes = serde_json::to_vec(&worker::outcome_to_json(&outcome)).expect("json");
    cache.write_atomic(result, &bytes)?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) })
}

/// `scoreflow logs`: a command stage's log of its latest run, found through
/// the key the pipeline's latest manifest records for it (a failed stage's
/// too), else through its current key.
fn logs(
    artifacts: &Option<PathBuf>,
    overrides: &[spec::Override],
    stage: &str,
    file: &Path,
    tail: Option<usize>,
) -> Result<ExitCode, Error> {
    let spec = load_spec(file, overrides)?;
    let cache = cache_for(artifacts, file);
    let home = cache.home(&spec.name, file, false)?;
    let recorded = cache
        .latest_manifest(&home.dir)
        .and_then(|m| m.stage(stage).and_then(|s| s.key.clone()))
        .and_then(|k| k.parse::<crate::engine::hash::Hash>().ok());
    let key = match recorded {
        Some(k) => Some(k),
        None => {
            let Some(idx) = spec.index(stage) else {
                let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::BadInput(format!(
                    "pipeline {} has no stage `{stage}`{}",
                    spec.name,
                    crate::engine::params::suggest(stage, &names)
                )));
            };
            crate::engine::fingerprint::status(&spec, &cache, &home.dir)?[idx].key
        }
    };
    let dir = key.map(|k| crate::engine::command::log_dir(&cache, &k)).filter(|d| d.is_dir());
    let Some(dir) = dir else {
        return Err(Error::BadInput(format!(
            "stage `{stage}` of {} has no log: only command stages keep one, once they have run",
            spec.name
        )));
    };
    let mut text = String::new();
    for (title, name) in [("command", "command.txt"), ("stdout", "stdout.log"), ("stderr", "stderr.log")] {
        let path = dir.join(name);
        let body = match tail {
            Some(n) => crate::engine::command::tail(&path, n),
            None => std::fs::read_to_string(&path).unwrap_or_default(),
        };
        text.push_str(&format!("── {title} ({}) ──\n{}", path.display(), body));
        if !body.is_empty() && !body.ends_with('\n') {
            text.push('\n');
        }
    }
    out(&text);
    Ok(ExitCode::SUCCESS)
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    let overrides = cli.overrides()?;
    if !overrides.is_empty()
        && matches!(cli.command, Command::Gc { .. } | Command::Verify | Command::Stages { .. } | Command::Worker { .. })
    {
        return Err(Error::BadInput("--set and --matrix change a spec; this command reads none".into()));
    }
    match &cli.command {
        Command::Check { file } => {
            let spec = load_spec(file, &overrides)?;
            let n = spec.stages.len();
            let sweep = spec.matrix.as_ref().map_or(String::new(), |m| format!(" (matrix: {m})"));
            out(&format!("{}: ok, {n} stage{}{sweep}\n", file.display(), if n == 1 { "" } else { "s" }));
            for stage in &spec.stages {
                for (input, f) in stage.files.iter().filter(|(_, f)| f.outside) {
                    out(&format!(
                        "note: input `{input}` of stage `{}` reads `{}` from outside the project (allow_outside: true)\n",
                        stage.name, f.path
                    ));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { file, metrics, json, csv, runs } => {
            let spec = load_spec(file, &overrides)?;
            let cache = cache_for(&cli.artifacts, file);
            let home = cache.home(&spec.name, file, false)?;
            let recorded = cache.runs_checked(&home.dir)?;
            if let [a, b] = runs.as_slice() {
                let a = crate::compare::find_run(&recorded, a).map_err(Error::BadInput)?;
                let b = crate::compare::find_run(&recorded, b).map_err(Error::BadInput)?;
                let mut d = crate::compare::diff_runs(&cache, a, b);
                d.metrics.retain(|(m, _, _)| metrics.is_empty() || metrics.iter().any(|p| m.contains(p.as_str())));
                out(&crate::compare::render_diff(&d, a, b, *json, *csv));
                return Ok(ExitCode::SUCCESS);
            }
            let mut cmp = crate::compare::compare(&spec, &cache)?;
            cmp.select(metrics);
            let rows = cmp.all_rows();
            let table = cmp.table(&rows);
            let parquet = table.to_parquet(&[]).map_err(|e| Error::Fault(e.to_string()))?;
            let path = cache.root().join("compare").join(format!("{}.parquet", home.dir));
            cache.write_atomic(&path, &parquet)?;
            if !cmp.missing.is_empty() {
                eprintln!(
                    "warning: no current result for {} (run `scoreflow run {}` first); their metrics are NaN",
                    cmp.missing.join(", "),
                    file.display()
                );
            }
            let label = |values: &[String]| -> String {
                if values.is_empty() {
                    "value".to_string()
                } else {
                    cmp.swept.iter().zip(values).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
                }
            };
            let text = if *json {
                rows.iter()
                    .map(|(values, m)| {
                        let mut o = serde_json::Map::new();
                        for (k, v) in cmp.swept.iter().zip(values) {
                            o.insert(k.clone(), serde_json::Value::String(v.clone()));
                        }
                        for (k, v) in cmp.metric_names.iter().zip(m) {
                            o.insert(k.clone(), serde_json::json!(if v.is_finite() { Some(*v) } else { None }));
                        }
                        serde_json::Value::Object(o).to_string() + "\n"
                    })
                    .collect()
            } else if *csv {
                String::from_utf8(crate::export::table_to_csv(&table).map_err(Error::Fault)?).expect("utf-8")
            } else {
                // Metrics down, instances across: a terminal is taller than wide.
                let heads: Vec<String> = rows.iter().map(|(v, _)| label(v)).collect();
                let w0 = cmp.metric_names.iter().map(|m| m.len()).max().unwrap_or(6).max(6);
                let ws: Vec<usize> = heads.iter().map(|h| h.len().max(10)).collect();
                let mut t = format!("{:w0$}", "metric");
                for (h, w) in heads.iter().zip(&ws) {
                    t.push_str(&format!("  {h:>w$}"));
                }
                t.push('\n');
                for (j, m) in cmp.metric_names.iter().enumerate() {
                    t.push_str(&format!("{m:w0$}"));
                    for ((_, vals), w) in rows.iter().zip(&ws) {
                        t.push_str(&format!("  {:>w$}", format!("{:.6}", vals[j])));
                    }
                    t.push('\n');
                }
                t.push_str(&format!("table: {}\n", path.display()));
                t
            };
            out(&text);
            if !cmp.unreadable.is_empty() {
                for what in &cmp.unreadable {
                    eprintln!(
                        "error: the metrics of {what} could not be read; they show as NaN (`scoreflow run` recomputes a corrupt result)"
                    );
                }
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { file, json } => {
            use crate::engine::cache::StageState;
            let spec = load_spec(file, &overrides)?;
            let cache = cache_for(&cli.artifacts, file);
            let home = cache.home(&spec.name, file, false)?;
            let mut text = String::new();
            if !*json {
                text.push_str(&format!(
                    "cache: {}
{:<22} {:<20} {:>9} {:>5} {:>5} {:>6} {:>7}  result\n",
                    cache.root().display(),
                    "run",
                    "started (UTC)",
                    "seconds",
                    "ran",
                    "fresh",
                    "failed",
                    "skipped"
                ));
            }
            for m in cache.runs_checked(&home.dir)? {
                let count = |s: StageState| m.stages.iter().filter(|l| l.status == s).count();
                let (ran, fresh, failed) =
                    (count(StageState::Ran), count(StageState::Fresh), count(StageState::Failed));
                let skipped = count(StageState::Skipped);
                let interrupted = count(StageState::Interrupted) > 0;
                let result = if m.ok {
                    "ok"
                } else if interrupted {
                    "interrupted"
                } else {
                    "failed"
                };
                let seconds = m.finished_ms.saturating_sub(m.started_ms) as f64 / 1000.0;
                if *json {
                    text.push_str(
                        &(serde_json::json!({"run": m.run_id, "started_ms": m.started_ms, "seconds": seconds, "ran": ran,
                            "fresh": fresh, "failed": failed, "skipped": skipped, "result": result,
                            "git_commit": m.git_commit, "overrides": m.overrides})
                        .to_string()
                            + "\n"),
                    );
                } else {
                    text.push_str(&format!(
                        "{:<22} {:<20} {seconds:>9.2} {ran:>5} {fresh:>5} {failed:>6} {skipped:>7}  {result}\n",
                        m.run_id,
                        crate::publish::utc(m.started_ms).trim_end_matches(" UTC"),
                    ));
                }
            }
            out(&text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Stages { kind, method, markdown } => {
            use crate::engine::stage::Kind;
            let kind = match kind {
                None => None,
                Some(k) => Some(Kind::parse(k).filter(|k| Kind::PUBLIC.contains(k)).ok_or_else(|| {
                    let names: Vec<&str> = Kind::PUBLIC.iter().map(|k| k.name()).collect();
                    Error::BadInput(format!(
                        "unknown stage kind `{k}`; expected one of: {}{}",
                        names.join(", "),
                        crate::engine::params::suggest(k, &names)
                    ))
                })?),
            };
            let stages = crate::describe::select(crate::registry(), kind, method.as_deref());
            if stages.is_empty() {
                let k = kind.expect("a method is only given with a kind");
                let names: Vec<&str> = crate::registry().methods(k).iter().map(|s| s.method()).collect();
                return Err(Error::BadInput(format!(
                    "no {k} implementation `{}`; expected one of: {}{}",
                    method.as_deref().unwrap_or_default(),
                    names.join(", "),
                    crate::engine::params::suggest(method.as_deref().unwrap_or_default(), &names)
                )));
            }
            out(&if *markdown { crate::describe::markdown(&stages) } else { crate::describe::text(&stages) });
            Ok(ExitCode::SUCCESS)
        }
        Command::Dag { file, dot } => {
            let spec = load_spec(file, &overrides)?;
            let dag = Dag::new(&spec);
            out(&if *dot { dag.to_dot(&spec) } else { dag.to_text(&spec) });
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { file, json } => {
            let spec = load_spec(file, &overrides)?;
            let cache = cache_for(&cli.artifacts, file);
            let home = cache.home(&spec.name, file, false)?;
            let statuses = crate::engine::fingerprint::status(&spec, &cache, &home.dir)?;
            if *json {
                let v: Vec<_> = statuses
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "stage": s.name,
                            "fresh": s.fresh,
                            "key": s.key.map(|k| k.hex()),
                            "reasons": s.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                out(&(serde_json::to_string_pretty(&v).expect("json") + "\n"));
            } else {
                let w = width(&spec);
                let mut text = format!("cache: {}\n", cache.root().display());
                if let Some(m) = &spec.matrix {
                    text.push_str(&format!("matrix: {m}\n"));
                }
                for s in &statuses {
                    let state = if s.fresh { "fresh" } else { "dirty" };
                    let detail = if s.fresh {
                        s.key.map(|k| k.short()).unwrap_or_default()
                    } else {
                        s.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ")
                    };
                    text.push_str(&format!("{:w$}  {state}  {detail}\n", s.name));
                }
                out(&text);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            only,
            force,
            json,
            jobs,
            device,
            executor,
            partition,
            account,
            sbatch_args,
            max_jobs,
            poll,
        } => {
            let executor = if executor == "slurm" {
                let poll = poll.unwrap_or(1.0);
                if !(poll.is_finite() && poll > 0.0) {
                    return Err(Error::BadInput(format!("--poll must be a positive number of seconds, not {poll}")));
                }
                // Values written into every batch script: names Slurm reads,
                // never a newline or a quote that would add lines of their own.
                for (flag, value) in [("--partition", partition), ("--account", account)] {
                    if let Some(v) = value
                        && !crate::engine::spec::resources::slurm_word(v)
                    {
                        return Err(Error::BadInput(format!(
                            "{flag} {v:?} is not a Slurm name (letters, digits, `_`, `-`, `.`, `,`)"
                        )));
                    }
                }
                let root = std::path::absolute(cli.artifacts.clone().unwrap_or_else(|| default_artifacts(file)))
                    .map_err(|e| Error::BadInput(format!("the artifacts directory: {e}")))?;
                if root.to_str().is_none_or(|p| p.chars().any(char::is_control)) {
                    return Err(Error::BadInput(format!(
                        "the artifacts directory {root:?} holds a control character or is not UTF-8; a Slurm batch script cannot name it"
                    )));
                }
                Executor::Slurm(SlurmOptions {
                    partition: partition.clone(),
                    account: account.clone(),
                    sbatch_args: sbatch_args.clone(),
                    max_jobs: max_jobs.unwrap_or(64).max(1),
                    program: std::env::current_exe().map_err(|e| Error::Fault(format!("this program's path: {e}")))?,
                    poll: std::time::Duration::from_secs_f64(poll),
                })
            } else {
                let given: Vec<&str> = [
                    ("--partition", partition.is_some()),
                    ("--account", account.is_some()),
                    ("--sbatch-arg", !sbatch_args.is_empty()),
                    ("--max-jobs", max_jobs.is_some()),
                    ("--poll", poll.is_some()),
                ]
                .into_iter()
                .filter_map(|(flag, set)| set.then_some(flag))
                .collect();
                if !given.is_empty() {
                    return Err(Error::BadInput(format!("{} only apply to `--executor slurm`", given.join(", "))));
                }
                Executor::Local
            };
            if *jobs > 0 {
                // `--jobs N` bounds the threads inside stages too (rayon's pool).
                let _ = rayon::ThreadPoolBuilder::new().num_threads(*jobs).build_global();
            }
            let spec = load_spec(file, &overrides)?;
            let cache = cache_for(&cli.artifacts, file);
            // Held from before the first write (the spec's ownership of its home)
            // until the manifest and the reports are written: `gc` waits.
            let _lease = cache.lease()?;
            let home = cache.home(&spec.name, file, true)?;
            if let Some(other) = &home.shared_with {
                eprintln!(
                    "warning: {other} also names its pipeline `{}`; this spec's runs and reports go to runs/{} and reports/{}",
                    spec.name, home.dir, home.dir
                );
            }
            let opts = RunOptions {
                only: only.clone(),
                force: force.clone(),
                jobs: *jobs,
                home: Some(home.dir.clone()),
                backend: crate::engine::stage::Backend::parse(device).expect("clap checked the value"),
                executor,
                overrides: overrides.iter().map(|o| o.text.clone()).collect(),
            };
            let human;
            let reporter: &dyn Reporter = if *json {
                &Json
            } else {
                human = Human::new(width(&spec));
                &human
            };
            if *json {
                out(&(serde_json::json!({"event": "cache", "path": cache.root().display().to_string()}).to_string()
                    + "\n"));
            } else {
                out(&format!("cache: {}\n", cache.root().display()));
                if let Some(m) = &spec.matrix {
                    out(&format!("matrix: {m}\n"));
                }
            }
            // Ctrl-C: record what finished (it stays cached) and what was running.
            let _ = ctrlc::set_handler(|| {
                let msg = executor::interrupt().unwrap_or_else(|| "interrupted".to_string());
                eprintln!("\n{msg}");
                std::process::exit(130);
            });
            cache.clean_stale_tmp();
            let mut report = executor::run(&spec, &cache, &opts, reporter)?;
            let published = match crate::publish::reports(&spec, &cache, &report.manifest)? {
                Ok(pages) => pages,
                Err(fault) => {
                    // The bad object and its record are gone: the report stage
                    // recomputes like any other stage with a corrupt output.
                    eprintln!("warning: {fault}; recomputing it");
                    report = executor::run(&spec, &cache, &opts, reporter)?;
                    crate::publish::reports(&spec, &cache, &report.manifest)?.map_err(Error::Fault)?
                }
            };
            if let Err(e) = crate::publish::link_latest(&spec, &cache, &report.manifest, report.previous.as_ref()) {
                eprintln!("warning: could not update artifacts/latest/: {e}");
            }
            let count = |f: fn(&Outcome) -> bool| report.outcomes.iter().filter(|(_, o)| f(o)).count();
            let ran = count(|o| matches!(o, Outcome::Ran));
            let fresh = count(|o| matches!(o, Outcome::Fresh));
            let failed = count(|o| matches!(o, Outcome::Failed(_)));
            let skipped = count(|o| matches!(o, Outcome::Skipped(_)));
            let secs = (report.manifest.finished_ms - report.manifest.started_ms) as f64 / 1000.0;
            if !*json {
                let mut text = String::new();
                for (stage, summary) in &report.summaries {
                    text.push_str(&format!("\n[{stage}]\n{summary}\n"));
                }
                text.push_str(&format!(
                    "\n{}: {} stages — {ran} ran, {fresh} fresh{}{} in {secs:.2}s\nmanifest: {}\n",
                    spec.name,
                    report.outcomes.len(),
                    if failed > 0 { format!(", {failed} failed") } else { String::new() },
                    if skipped > 0 { format!(", {skipped} skipped") } else { String::new() },
                    report.manifest_path.display()
                ));
                for path in &published {
                    text.push_str(&format!("report: {}\n", path.display()));
                }
                out(&text);
            } else {
                out(&(serde_json::json!({"event": "run_finished", "ok": report.ok(), "ran": ran, "fresh": fresh, "failed": failed, "skipped": skipped, "seconds": secs, "manifest": report.manifest_path.display().to_string()}).to_string() + "\n"));
            }
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) })
        }
        Command::Worker { job, result, device } => worker(&cli.artifacts, job, result, device),
        Command::Logs { stage, pipeline, tail } => logs(&cli.artifacts, &overrides, stage, pipeline, *tail),
        Command::Inspect { target, pipeline, head, sql, json } => {
            // polars prints at most 10 rows unless told otherwise; show all `-n`.
            // SAFETY: set before anything in this process has used polars or
            // started a thread that could read the environment concurrently.
            unsafe { std::env::set_var("POLARS_FMT_MAX_ROWS", head.to_string()) };
            let opts = InspectOptions { head: *head, sql: sql.clone(), json: *json };
            let r = resolve_output(&cli.artifacts, target, pipeline.as_deref(), &overrides)?;
            if let Some(w) = &r.warning {
                eprintln!("warning: {w}");
            }
            if r.format == crate::engine::stage::Format::Blob {
                let bytes =
                    std::fs::read(&r.path).map_err(|e| Error::BadInput(format!("{}: {e}", r.path.display())))?;
                let kind = crate::export::blob_kind(&bytes);
                if *json {
                    let v = serde_json::json!({"target": r.label, "kind": kind, "bytes": bytes.len(), "path": r.path.display().to_string()});
                    out(&(v.to_string() + "\n"));
                } else {
                    out(&format!(
                        "{}: {kind}, {} at {}\nscoreflow export {} -o FILE{} writes it out{}\n",
                        r.label,
                        human_bytes(bytes.len() as u64),
                        r.path.display(),
                        target,
                        pipeline.as_ref().map(|p| format!(" --pipeline {}", p.display())).unwrap_or_default(),
                        if kind.starts_with("model") { " (FILE.safetensors for PyTorch)" } else { "" }
                    ));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let metadata = std::fs::read(&r.path)
                .ok()
                .and_then(|b| crate::engine::frame::Table::from_parquet(b).ok())
                .map(|(_, m)| m)
                .unwrap_or_default();
            out(&inspect::render(&r.path, &metadata, &opts)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { target, pipeline, output, force } => {
            // Never through a link (`latest/` points into the object store),
            // never over a file unless asked.
            if let Ok(meta) = std::fs::symlink_metadata(output) {
                if meta.file_type().is_symlink() {
                    return Err(Error::BadInput(format!(
                        "{} is a symbolic link; export writes files, never through a link (remove it, or choose another path)",
                        output.display()
                    )));
                }
                if !force {
                    return Err(Error::BadInput(format!("{} exists; add --force to replace it", output.display())));
                }
            }
            let r = resolve_output(&cli.artifacts, target, pipeline.as_deref(), &overrides)?;
            if let Some(w) = &r.warning {
                return Err(Error::Fault(format!("{w}; not exported")));
            }
            let bytes = std::fs::read(&r.path).map_err(|e| Error::BadInput(format!("{}: {e}", r.path.display())))?;
            let ext = output.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
            let written = match (r.format, ext.as_str()) {
                (crate::engine::stage::Format::Table, "csv") => {
                    let (table, _) =
                        crate::engine::frame::Table::from_parquet(bytes).map_err(|e| Error::Fault(e.to_string()))?;
                    crate::export::table_to_csv(&table).map_err(Error::Fault)?
                }
                (crate::engine::stage::Format::Table, "parquet") => bytes,
                (crate::engine::stage::Format::Table, other) => {
                    return Err(Error::BadInput(format!(
                        "{} is a table: export it as .parquet or .csv, not .{other}",
                        r.label
                    )));
                }
                (crate::engine::stage::Format::Blob, "safetensors") => {
                    crate::export::to_safetensors(&bytes).map_err(|e| Error::BadInput(format!("{}: {e}", r.label)))?
                }
                (crate::engine::stage::Format::Blob, ext) => {
                    refuse_blob_extension(&r, ext)?;
                    bytes
                }
            };
            if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::Fault(format!("create {}: {e}", dir.display())))?;
            }
            std::fs::write(output, &written).map_err(|e| Error::Fault(format!("write {}: {e}", output.display())))?;
            out(&format!("{} → {} ({})\n", r.label, output.display(), human_bytes(written.len() as u64)));
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify => {
            let cache = Cache::new(cli.artifacts.clone().unwrap_or_else(|| PathBuf::from("artifacts")));
            let r = cache.verify()?;
            let mut text = String::new();
            for p in &r.problems {
                let fate = if p.removed { "removed" } else { "left in place: not a file verify can read" };
                text.push_str(&format!("bad: {}: {} ({fate})\n", p.path, p.what));
            }
            text.push_str(&format!(
                "verified {} records, {} objects in {}: {}\n",
                r.records,
                r.objects,
                cache.root().display(),
                if r.problems.is_empty() {
                    "all good".to_string()
                } else {
                    format!("{} bad, removed; the next run recomputes what they held", r.problems.len())
                }
            ));
            out(&text);
            Ok(if r.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FAILURE) })
        }
        Command::Gc { dry_run } => {
            let cache = Cache::new(cli.artifacts.clone().unwrap_or_else(|| PathBuf::from("artifacts")));
            let r = cache.gc(*dry_run)?;
            let verb = if *dry_run { "would remove" } else { "removed" };
            let mut text: String = r.removed.iter().map(|line| format!("{verb} {line}\n")).collect();
            text.push_str(&format!(
                "{verb} {} records, {} objects, {} temporary files: {} freed; kept {} records, {} objects\n",
                r.records,
                r.objects,
                r.temp_files,
                human_bytes(r.bytes),
                r.kept_records,
                r.kept_objects
            ));
            out(&text);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A model is written as safetensors, as scoreflow's own bytes (`.bin`), or
/// — a command's model, `model/pt` say — with its framing's extension; an
/// image or page with its own. Anything else would be a file that only looks
/// like what its name says (`-o model.pt` holding scoreflow's framing), so it
/// is refused with the formats that exist.
fn refuse_blob_extension(r: &Resolved, ext: &str) -> Result<(), Error> {
    use crate::engine::stage::Media;
    let allowed: Vec<String> = match r.media {
        None | Some(Media::File) | Some(Media::Table) => return Ok(()),
        Some(Media::Png) => vec!["png".into()],
        Some(Media::Html) => vec!["html".into()],
        Some(Media::Model(framing)) => {
            let mut v = vec!["safetensors".to_string(), "bin".to_string()];
            if !v.contains(&framing.to_string()) && framing.chars().all(|c| c.is_ascii_alphanumeric()) {
                v.push(framing.to_string());
            }
            v
        }
    };
    if allowed.iter().any(|a| a == ext) {
        return Ok(());
    }
    let media = r.media.map(|m| m.name()).unwrap_or_default();
    Err(Error::BadInput(format!(
        "{} is {media}: export it as {} (`.safetensors` loads in PyTorch with safetensors.torch.load_file; `.bin` is scoreflow's own framing), not `.{ext}`",
        r.label,
        allowed.iter().map(|a| format!(".{a}")).collect::<Vec<_>>().join(", ")
    )))
}

fn width(spec: &Spec) -> usize {
    spec.stages.iter().map(|s| s.name.len()).max().unwrap_or(0)
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.2} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// A Parquet path, or `STAGE[.OUTPUT]` resolved through the pipeline's current
/// (fresh) result. Returns the path and a warning if the object fails verification.
/// A cached output (or a file) that `inspect` or `export` names.
struct Resolved {
    path: PathBuf,
    format: crate::engine::stage::Format,
    /// `STAGE.OUTPUT`, or the path given.
    label: String,
    /// Set when the cached object failed verification.
    warning: Option<String>,
    /// What the output holds, when a stage's output was named.
    media: Option<crate::engine::stage::Media>,
}

fn resolve_output(
    artifacts: &Option<PathBuf>,
    target: &str,
    pipeline: Option<&Path>,
    overrides: &[spec::Override],
) -> Result<Resolved, Error> {
    use crate::engine::stage::Format;
    if target.ends_with(".parquet") || target.ends_with(".bin") || Path::new(target).is_file() {
        let path = PathBuf::from(target);
        if !path.is_file() {
            return Err(Error::BadInput(format!("no such file: {target}")));
        }
        let mut magic = [0u8; 4];
        let is_parquet = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok_and(|()| &magic == b"PAR1");
        let format = if is_parquet { Format::Table } else { Format::Blob };
        return Ok(Resolved { path, format, label: target.to_string(), warning: None, media: None });
    }
    let Some(file) = pipeline else {
        return Err(Error::BadInput(format!("`{target}` is not a file; to name a stage, add --pipeline FILE")));
    };
    let spec = load_spec(file, overrides)?;
    let cache = cache_for(artifacts, file);
    // A swept stage's name holds its values (`pretrain[seed=1,lr=0.01]`), dots
    // included: the output follows the closing bracket.
    let split = match target.find(']') {
        Some(end) => target[end..].find('.').map(|d| (&target[..end + d], &target[end + d + 1..])),
        None => target.split_once('.'),
    };
    let (stage_name, output) = match split {
        Some((s, o)) => (s, Some(o)),
        None => (target, None),
    };
    let stage = spec.stage(stage_name).ok_or_else(|| {
        let names: Vec<&str> = spec.stages.iter().map(|s| s.name.as_str()).collect();
        Error::BadInput(format!(
            "pipeline {} has no stage `{stage_name}`{}",
            spec.name,
            crate::engine::params::suggest(stage_name, &names)
        ))
    })?;
    let outputs: Vec<&str> = stage.imp.outputs().iter().map(|o| o.name).collect();
    let output = output.unwrap_or(outputs[0]);
    let def = crate::engine::stage::output_def(stage.imp, output).ok_or_else(|| {
        Error::BadInput(format!(
            "stage `{stage_name}` has no output `{output}`; its outputs are: {}",
            outputs.join(", ")
        ))
    })?;
    let idx = spec.index(stage_name).expect("looked up above");
    let Some((_, record)) = crate::engine::fingerprint::current_record(&spec, &cache, idx)? else {
        return Err(Error::BadInput(format!(
            "stage `{stage_name}` has no current result; run `scoreflow run {}` first",
            file.display()
        )));
    };
    let entry = &record.outputs[output];
    let warning = match cache.read_entry(entry) {
        Ok(_) => None,
        Err(e) => Some(format!("{stage_name}.{output} failed verification ({e}); the next run will recompute it")),
    };
    Ok(Resolved {
        path: cache.root().join(&entry.file),
        format: def.format(),
        label: format!("{stage_name}.{output}"),
        warning,
        media: Some(def.media),
    })
}

#[cfg(test)]
mod help_tests {
    use super::*;
    use clap::CommandFactory;

    /// `--help` describes every argument of every command.
    #[test]
    fn every_argument_has_a_description() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
            assert!(cmd.get_about().is_some() || cmd.get_name() == "scoreflow", "{} has no about", cmd.get_name());
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && !["help", "version"].contains(&arg.get_id().as_str()) {
                    missing.push(format!("{} {}", cmd.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
