//! The command line: [`args`] holds what clap reads, and each command is one
//! module with one function, `run`, taking its argument struct. Commands print
//! to stdout; warnings and errors go to stderr; [`error`] maps every error to
//! its exit code.

pub mod args;
pub mod error;

mod check;
mod compare;
mod dag;
mod export;
mod gc;
mod inspect;
mod logs;
mod resolve;
mod run;
mod runs;
mod stages;
mod status;
mod verify;
mod worker;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::engine::cache::Cache;
use crate::engine::spec::{self, Spec};
pub use args::{Cli, Command};
use error::Error;

/// What every command module uses.
mod prelude {
    pub(super) use std::path::{Path, PathBuf};
    pub(super) use std::process::ExitCode;

    pub(super) use super::args::*;
    pub(super) use super::error::{EXIT_CHECKPOINTED, EXIT_FAILURE, Error};
    pub(super) use super::resolve::{refuse_blob_extension, resolve_output};
    pub(super) use super::{cache_for, default_artifacts, human_bytes, load_spec, out, width};
    pub(super) use crate::engine::cache::Cache;
    pub(super) use crate::engine::dag::Dag;
    pub(super) use crate::engine::executor::{self, Executor, Outcome, RunOptions};
    pub(super) use crate::engine::progress::{Human, Json, Reporter};
    pub(super) use crate::engine::slurm::SlurmOptions;
    pub(super) use crate::engine::spec;
    pub(super) use crate::inspect::InspectOptions;
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
        return ExitCode::from(error::EXIT_FAILURE);
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
            return Ok(ExitCode::from(if e.use_stderr() { error::EXIT_BAD_INPUT } else { 0 }));
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
pub(super) fn load_spec(file: &Path, overrides: &[spec::Override]) -> Result<spec::Spec, Error> {
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

pub(super) fn cache_for(cli_dir: &Option<PathBuf>, spec: &Path) -> Cache {
    Cache::new(cli_dir.clone().unwrap_or_else(|| default_artifacts(spec)))
}

pub(super) fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
}

/// Run a parsed command line: one function per command.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    let overrides = cli.overrides()?;
    if !overrides.is_empty()
        && matches!(
            cli.command,
            Command::Gc(_)
                | Command::Tag(_)
                | Command::Tags
                | Command::Verify
                | Command::Stages(_)
                | Command::Worker(_)
        )
    {
        return Err(Error::BadInput("--set and --matrix change a spec; this command reads none".into()));
    }
    let o = &overrides;
    match &cli.command {
        Command::Run(a) => run::run(&cli, o, a),
        Command::Worker(a) => worker::run(&cli.artifacts, a),
        Command::Status(a) => status::run(&cli, o, a),
        Command::Dag(a) => dag::run(o, a),
        Command::Inspect(a) => inspect::run(&cli, o, a),
        Command::Export(a) => export::run(&cli, o, a),
        Command::Logs(a) => logs::run(&cli.artifacts, o, a),
        Command::Gc(a) => gc::run(&cli, a),
        Command::Tag(a) => gc::tag(&cli, a),
        Command::Tags => gc::tags(&cli),
        Command::Verify => verify::run(&cli),
        Command::Check(a) => check::run(o, a),
        Command::Compare(a) => compare::run(&cli, o, a),
        Command::Runs(a) => runs::run(&cli, o, a),
        Command::Stages(a) => stages::run(a),
    }
}

pub(super) fn width(spec: &Spec) -> usize {
    spec.stages.iter().map(|s| s.name.len()).max().unwrap_or(0)
}

pub(super) fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.2} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
