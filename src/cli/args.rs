//! The command line, as clap reads it: the global options and one argument
//! struct per command (each command's module takes its struct).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "scoreflow", version, about = "Declarative, cached pipelines for diffusion-model experiments")]
pub struct Cli {
    /// Artifact cache directory [default: `artifacts/` beside the `pipelines/`
    /// folder holding the spec, else beside the spec; for gc, tag, tags and
    /// verify: ./artifacts].
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
    Run(RunArgs),
    /// Run one stage job (what a Slurm job of `run --executor slurm` calls):
    /// read the job description, compute it against `--artifacts`, write the
    /// outcome to `--result`. Exits 1 when the stage failed.
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Show each stage as fresh or dirty, and why. Runs nothing.
    Status(StatusArgs),
    /// Print the stage graph (text, or Graphviz with --dot).
    Dag(DagArgs),
    /// Show an artifact: `STAGE[.OUTPUT] --pipeline FILE`, or a Parquet file path.
    Inspect(InspectArgs),
    /// Write a cached output to a file: tables as Parquet or CSV, blobs as they
    /// are, model weights also as safetensors (by the extension of `-o`).
    Export(ExportArgs),
    /// Show what a command stage printed in its latest run: the command,
    /// stdout and stderr (kept under `artifacts/logs/<key>/`).
    Logs(LogsArgs),
    /// Remove cached results no run worth keeping uses: kept are each
    /// pipeline's latest run, every run younger than `--older-than` (30 days)
    /// and every tagged run.
    Gc(GcArgs),
    /// Keep a run's results through any `gc`: `scoreflow tag RUN NAME` (RUN as
    /// `scoreflow runs` prints it, or a unique prefix); `--delete NAME` removes
    /// a tag.
    Tag(TagArgs),
    /// List the tags: name, pipeline, run, when tagged.
    Tags,
    /// Check every cached object against its content hash and every record
    /// against its objects; remove what is bad (the next run recomputes it).
    /// Exits 1 when something was bad.
    Verify,
    /// Validate a spec: every error at once, with file:line:column. Runs nothing.
    Check(CheckArgs),
    /// The experiment table: one row per instance of the spec's matrix, the
    /// swept values, then every metric its stages produce (from the cache);
    /// median/min/max over seeds when the seed is swept. Also written to
    /// `artifacts/compare/<pipeline>.parquet`.
    Compare(CompareArgs),
    /// List the recorded runs of a pipeline, oldest first: when, how long, how
    /// many stages ran, were fresh or failed, and whether it succeeded.
    Runs(RunsArgs),
    /// List the stage implementations: each one's params (type, default, doc),
    /// inputs and outputs with their media.
    Stages(StagesArgs),
}

/// The arguments of `scoreflow run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline spec (YAML).
    pub file: PathBuf,
    /// Run only this stage and what it needs (repeatable, or a comma list:
    /// `--only samples,validity`; a sweep's instance as `samples[seed=1]`).
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Recompute this stage even when cached (repeatable, or a comma list).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Print one JSON object per event instead of progress lines.
    #[arg(long)]
    pub json: bool,
    /// Most stages computed at once, and most threads inside a stage
    /// [default: number of CPUs].
    #[arg(long, short, default_value_t = 0, hide_default_value = true)]
    pub jobs: usize,
    /// burn CPU backend for training: `flex` or `ndarray`. Not part of any cache
    /// key (both agree within float tolerance).
    #[arg(long, env = "SCOREFLOW_DEVICE", default_value = "flex", value_parser = ["flex", "ndarray"])]
    pub device: String,
    /// Where stages run: `local` (worker threads here) or `slurm` (one
    /// `sbatch` job per stage, each running this binary as a worker on the
    /// shared artifacts directory; resources from each stage's `resources:`).
    #[arg(long, default_value = "local", value_parser = ["local", "slurm"])]
    pub executor: String,
    /// Slurm partition for every job [default: the cluster's].
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account for every job.
    #[arg(long)]
    pub account: Option<String>,
    /// One more sbatch flag, e.g. `--sbatch-arg=--qos=high` (repeatable;
    /// overrides the job script's own).
    #[arg(long = "sbatch-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Most Slurm jobs submitted and unfinished at once [default: 64].
    #[arg(long)]
    pub max_jobs: Option<usize>,
    /// Seconds between two looks at the Slurm queue [default: 1].
    #[arg(long)]
    pub poll: Option<f64>,
    /// How often long stages save a checkpoint: a duration (`10m`, `90s`)
    /// or `N steps` [default: each stage's `resources.checkpoint_every`, else 5m].
    #[arg(long, value_name = "INTERVAL", value_parser = parse_every)]
    pub checkpoint_every: Option<crate::engine::checkpoint::Every>,
    /// Start stages over instead of resuming from their checkpoints (which
    /// are removed).
    #[arg(long)]
    pub no_resume: bool,
}

fn parse_every(s: &str) -> Result<crate::engine::checkpoint::Every, String> {
    crate::engine::checkpoint::Every::parse(s)
        .ok_or_else(|| format!("`{s}` is not an interval: a positive duration (`10m`, `90s`) or `N steps`"))
}

/// The arguments of `scoreflow worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The job description (JSON, written by the coordinator).
    pub job: PathBuf,
    /// Where to write the outcome (JSON).
    #[arg(long)]
    pub result: PathBuf,
    /// burn CPU backend, as the coordinator's `--device`.
    #[arg(long, default_value = "flex", value_parser = ["flex", "ndarray"])]
    pub device: String,
}

/// The arguments of `scoreflow status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The pipeline spec (YAML).
    pub file: PathBuf,
    /// Print a JSON array (stage, fresh, key, reasons) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `scoreflow dag`.
#[derive(Debug, Args)]
pub struct DagArgs {
    /// The pipeline spec (YAML).
    pub file: PathBuf,
    /// Print Graphviz `dot` source instead of text.
    #[arg(long)]
    pub dot: bool,
}

/// The arguments of `scoreflow inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// `STAGE`, `STAGE.OUTPUT` or `PATH.parquet`.
    pub target: String,
    /// The pipeline that defines STAGE.
    #[arg(long, short)]
    pub pipeline: Option<PathBuf>,
    /// Rows to show.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub head: usize,
    /// A polars SQL query over the table, registered as `t`.
    #[arg(long)]
    pub sql: Option<String>,
    /// Print JSON (schema, rows, head, describe, metadata) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `scoreflow export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// `STAGE` (its first output), `STAGE.OUTPUT`, or a cached file's path.
    pub target: String,
    /// The pipeline that defines STAGE.
    #[arg(long, short)]
    pub pipeline: Option<PathBuf>,
    /// Where to write: `.parquet`/`.csv` for tables, `.safetensors` for model
    /// weights, any other name for the bytes as cached.
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
    /// Replace PATH if it exists (a symbolic link is never written through).
    #[arg(long)]
    pub force: bool,
}

/// The arguments of `scoreflow logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The stage (`STAGE`, or `STAGE[k=v]` for one instance of a matrix).
    pub stage: String,
    /// The pipeline that defines STAGE.
    #[arg(long, short)]
    pub pipeline: PathBuf,
    /// Only the last N lines of each stream.
    #[arg(long, short = 'n')]
    pub tail: Option<usize>,
}

/// The arguments of `scoreflow gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep every run that finished less than this long ago (`30d`, `12h`,
    /// `0s`: only latest runs and tags).
    #[arg(long, value_name = "AGE", default_value = "30d", value_parser = humantime::parse_duration)]
    pub older_than: std::time::Duration,
}

/// The arguments of `scoreflow tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The run (its id, or a unique prefix of it).
    #[arg(required_unless_present = "delete")]
    pub run: Option<String>,
    /// The tag's name (letters, digits, `_`, `-`, `.`).
    #[arg(required_unless_present = "delete")]
    pub name: Option<String>,
    /// Remove this tag instead.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["run", "name"])]
    pub delete: Option<String>,
}

/// The arguments of `scoreflow check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The pipeline spec (YAML).
    pub file: PathBuf,
}

/// The arguments of `scoreflow compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The pipeline spec (YAML).
    pub file: PathBuf,
    /// Only metrics whose name (`stage.metric`) contains this (repeatable,
    /// or a comma list).
    #[arg(long, value_name = "PART", value_delimiter = ',')]
    pub metrics: Vec<String>,
    /// One JSON object per row.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV on standard output.
    #[arg(long)]
    pub csv: bool,
    /// Compare two recorded runs instead: `latest`, `previous`, or run ids
    /// (or unique prefixes) from `scoreflow runs FILE`.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    pub runs: Vec<String>,
}

/// The arguments of `scoreflow runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The pipeline spec (YAML).
    pub file: PathBuf,
    /// One JSON object per run.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `scoreflow stages`.
#[derive(Debug, Args)]
pub struct StagesArgs {
    /// Only this kind (generate, label, train, sample, validate, tune, report).
    pub kind: Option<String>,
    /// Only this implementation of the kind (its selector's value).
    pub method: Option<String>,
    /// Print the README's stage table (Markdown) instead.
    #[arg(long)]
    pub markdown: bool,
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

/// The stage names of `--only`/`--force` values: each value one name or a
/// comma list, where a comma inside brackets belongs to a sweep instance's
/// name (`train[seed=1,beta=2]`).
pub fn stage_list(values: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for v in values {
        let (mut depth, mut start) = (0i32, 0);
        for (i, ch) in v.char_indices() {
            match ch {
                '[' => depth += 1,
                ']' => depth -= 1,
                ',' if depth == 0 => {
                    out.push(v[start..i].trim().to_string());
                    start = i + 1;
                }
                _ => {}
            }
        }
        out.push(v[start..].trim().to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::stage_list;

    #[test]
    fn stage_lists_split_on_commas_outside_brackets() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(stage_list(&v(&["a,b", "c"])), ["a", "b", "c"]);
        assert_eq!(stage_list(&v(&["train[seed=1,beta=2],samples"])), ["train[seed=1,beta=2]", "samples"]);
        assert_eq!(stage_list(&v(&["a,,b,"])), ["a", "b"]);
    }
}
