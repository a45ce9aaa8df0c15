//! The stage contract: what the engine asks of a stage implementation, and the
//! registry type the caller fills with implementations.
//!
//! A stage is a pure function of (canonical params, seed, input artifacts) to
//! named output artifacts. It does no file I/O, reads no clock and spawns no
//! processes of its own: the executor loads its inputs, calls [`Stage::run`] and
//! stores what it returns. Stages may use rayon for data parallelism, provided the
//! result does not depend on the number of threads.
//!
//! Each of the seven [`Kind`]s has a *selector* parameter that picks the
//! implementation (`generate` → `dataset`, `label` → `scheme`, …). An implementation
//! declares its parameters, inputs, outputs and an implementation version; bump the
//! version whenever the output for the same inputs changes, which invalidates every
//! cached result of that implementation and says so (`implementation version 1 → 2`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::engine::frame::{FrameError, Table};
use crate::engine::params::{ParamDef, Params};

/// Implements the six descriptive methods of [`Stage`] in one line:
/// `describe!(Kind::Train, "dsm_ou", version 2, PARAMS, INPUTS, OUTPUTS);`
#[macro_export]
macro_rules! describe {
    ($kind:expr, $method:expr, version $version:literal, params $params:ty, $inputs:expr, $outputs:expr) => {
        describe!($kind, $method, version $version, <$params>::DEFS, $inputs, $outputs);
        fn reads_its_params(&self) -> Option<usize> {
            let example = <$params>::example();
            let _ = <$params>::read(&example);
            Some(example.len())
        }
    };
    ($kind:expr, $method:expr, version $version:literal, $params:expr, $inputs:expr, $outputs:expr) => {
        fn kind(&self) -> $crate::engine::stage::Kind {
            $kind
        }
        fn method(&self) -> &'static str {
            $method
        }
        fn version(&self) -> u32 {
            $version
        }
        fn params(&self) -> &'static [$crate::engine::params::ParamDef] {
            $params
        }
        fn inputs(&self) -> &'static [$crate::engine::stage::InputDef] {
            $inputs
        }
        fn outputs(&self) -> &'static [$crate::engine::stage::OutputDef] {
            $outputs
        }
    };
}

/// The kinds of stage a spec may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Generate,
    Label,
    Train,
    Sample,
    Validate,
    Tune,
    Report,
    /// Test-only: sleeps, fails or echoes on demand (feature `test-stages`).
    #[cfg(feature = "test-stages")]
    Debug,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Generate,
        Kind::Label,
        Kind::Train,
        Kind::Sample,
        Kind::Validate,
        Kind::Tune,
        Kind::Report,
        #[cfg(feature = "test-stages")]
        Kind::Debug,
    ];

    /// The kinds a spec author is told about (test-only kinds are left out).
    pub const PUBLIC: &'static [Kind] =
        &[Kind::Generate, Kind::Label, Kind::Train, Kind::Sample, Kind::Validate, Kind::Tune, Kind::Report];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Generate => "generate",
            Kind::Label => "label",
            Kind::Train => "train",
            Kind::Sample => "sample",
            Kind::Validate => "validate",
            Kind::Tune => "tune",
            Kind::Report => "report",
            #[cfg(feature = "test-stages")]
            Kind::Debug => "debug",
        }
    }

    /// The parameter that selects the implementation of this kind.
    pub fn selector(self) -> &'static str {
        match self {
            Kind::Generate => "dataset",
            Kind::Label => "scheme",
            Kind::Train => "objective",
            Kind::Sample => "sampler",
            Kind::Validate => "checks",
            Kind::Tune => "method",
            Kind::Report => "layout",
            #[cfg(feature = "test-stages")]
            Kind::Debug => "mode",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an output (or the output an input expects) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A table, stored as Parquet.
    Table,
    /// Opaque bytes (model weights), stored as they are.
    Blob,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Blob => "blob",
        }
    }
}

/// What an output holds, finer than how it is stored: `check` matches the media
/// an input expects against its producer's (a `pc` sampler wired to a DDPM
/// model is refused before anything runs), and publishing names files by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// A table, stored as Parquet.
    Table,
    /// Model weights in a named framing (the framing's magic bytes say which).
    Model(&'static str),
    /// A PNG image.
    Png,
    /// An HTML page.
    Html,
    /// The bytes of a file the spec names (`inputs: { sheet: { file: path } }`),
    /// keyed by content, never by path.
    File,
}

impl Media {
    /// The file extension its bytes are shown with (`png`, `html`, `parquet`;
    /// a model framing named after a file format keeps that name, `pt`,
    /// `safetensors`, …; anything else `bin`).
    pub fn extension(self) -> &'static str {
        match self {
            Media::Png => "png",
            Media::Html => "html",
            Media::Table => "parquet",
            Media::Model(f)
                if ["pt", "pth", "safetensors", "onnx", "ckpt", "npz", "npy", "pkl", "joblib", "json"].contains(&f) =>
            {
                f
            }
            Media::Model(_) | Media::File => "bin",
        }
    }

    /// How the cache stores it.
    pub fn format(self) -> Format {
        match self {
            Media::Table => Format::Table,
            Media::Model(_) | Media::Png | Media::Html | Media::File => Format::Blob,
        }
    }

    /// `table`, `model/<framing>`, `image/png`, `text/html`.
    pub fn name(self) -> String {
        match self {
            Media::Table => "table".into(),
            Media::Model(framing) => format!("model/{framing}"),
            Media::Png => "image/png".into(),
            Media::Html => "text/html".into(),
            Media::File => "file".into(),
        }
    }
}

impl fmt::Display for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[derive(Debug, Clone, Copy)]
pub struct InputDef {
    pub name: &'static str,
    /// The media the input expects.
    pub media: Media,
    pub required: bool,
    pub doc: &'static str,
}

impl InputDef {
    pub fn format(&self) -> Format {
        self.media.format()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct OutputDef {
    pub name: &'static str,
    pub media: Media,
    pub doc: &'static str,
}

impl OutputDef {
    pub fn format(&self) -> Format {
        self.media.format()
    }
}

/// A value passed between stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Artifact {
    Table(Table),
    Blob(Vec<u8>),
}

impl Artifact {
    pub fn format(&self) -> Format {
        match self {
            Artifact::Table(_) => Format::Table,
            Artifact::Blob(_) => Format::Blob,
        }
    }
}

/// The CPU backend burn computes on (`--device`, `SCOREFLOW_DEVICE`). Not part
/// of any key: backends agree within float tolerance, and the hand-written
/// kernels do not use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Flex,
    NdArray,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "flex" => Some(Backend::Flex),
            "ndarray" => Some(Backend::NdArray),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
        }
    }
}

/// Where a job runs, for implementations that leave the process (command
/// stages: their sandbox, logs and limits); built-in stages never look.
pub struct JobCtx<'a> {
    pub stage: &'a str,
    pub pipeline: &'a str,
    pub key: crate::engine::hash::Hash,
    pub cache: &'a crate::engine::cache::Cache,
    /// The content hash of each input (its object in the cache).
    pub input_hashes: &'a BTreeMap<String, crate::engine::hash::Hash>,
    /// The wall-clock limit (`resources.time`), enforced here as on Slurm.
    pub time_limit: Option<std::time::Duration>,
    /// The threads the stage may use.
    pub threads: usize,
}

/// Everything a stage may look at.
pub struct StageCtx<'a> {
    pub params: &'a Params,
    pub seed: u64,
    /// Where burn computes (the device travels with the context, never a global).
    pub backend: Backend,
    pub inputs: BTreeMap<String, Arc<Artifact>>,
    /// Report progress as a fraction in [0, 1]; cheap, call it freely.
    pub progress: &'a (dyn Fn(f64) + Sync),
    /// Where the job runs (`None` in unit tests that call `run` directly).
    pub job: Option<&'a JobCtx<'a>>,
    /// Where a stage that [`Stage::checkpoints`] saves its state and finds
    /// it again ([`crate::engine::checkpoint`]).
    pub checkpoint: &'a crate::engine::checkpoint::Checkpointing<'a>,
}

impl StageCtx<'_> {
    /// The table bound to input `name` (presence and format were checked by the
    /// validator; a mismatch here is a bug).
    pub fn table(&self, name: &str) -> Result<&Table, StageError> {
        match self.inputs.get(name).map(|a| a.as_ref()) {
            Some(Artifact::Table(t)) => Ok(t),
            Some(Artifact::Blob(_)) => Err(StageError::Failed(format!("input `{name}` is not a table"))),
            None => Err(StageError::Failed(format!("input `{name}` is missing"))),
        }
    }

    pub fn blob(&self, name: &str) -> Result<&[u8], StageError> {
        match self.inputs.get(name).map(|a| a.as_ref()) {
            Some(Artifact::Blob(b)) => Ok(b),
            Some(Artifact::Table(_)) => Err(StageError::Failed(format!("input `{name}` is not a blob"))),
            None => Err(StageError::Failed(format!("input `{name}` is missing"))),
        }
    }
}

pub type Outputs = BTreeMap<String, Artifact>;

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{0}")]
    Failed(String),
    #[error("non-finite loss {value} at step {step}; nothing was cached")]
    NonFinite { step: usize, value: f64 },
    #[error(
        "training diverged: loss {value:.3e} at step {step} is more than {DIVERGENCE:.0e} times the first step's ({first:.3e}); nothing was cached"
    )]
    Diverged { step: usize, value: f64, first: f64 },
    /// A sampler whose output has too many non-finite rows.
    #[error(
        "{bad} of {total} samples are not finite (more than max_nonfinite = {max}); the sampler diverged; nothing was cached"
    )]
    NonFiniteSamples { bad: usize, total: usize, max: f64 },
    /// The process was asked to stop (a signal); the stage saved a
    /// checkpoint at `step` first.
    #[error("interrupted by signal {signal} at step {step} of {total}; checkpoint saved, the next run resumes there")]
    Interrupted { step: u64, total: u64, signal: i32 },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A loss this many times the first step's is divergence ([`LossGuard`]).
pub const DIVERGENCE: f64 = 1e6;

/// Watches a training loss step by step: a non-finite loss, or one more than
/// [`DIVERGENCE`] times the first step's, stops the stage with the step and the
/// value — a diverging run fails instead of caching a broken model.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct LossGuard {
    first: Option<f64>,
}

impl LossGuard {
    pub fn check(&mut self, step: usize, loss: f64) -> Result<(), StageError> {
        if !loss.is_finite() {
            return Err(StageError::NonFinite { step, value: loss });
        }
        let first = *self.first.get_or_insert(loss.abs().max(1e-12));
        if loss.abs() > DIVERGENCE * first {
            return Err(StageError::Diverged { step, value: loss, first });
        }
        Ok(())
    }
}

/// Fail when more than `max` (a fraction) of the rows of `x` (`dim` columns)
/// hold a non-finite value; returns how many do.
pub fn check_finite_rows(x: &[f32], dim: usize, max: f64) -> Result<usize, StageError> {
    let total = x.len() / dim.max(1);
    let bad = x.chunks(dim.max(1)).filter(|r| r.iter().any(|v| !v.is_finite())).count();
    if bad as f64 > max * total as f64 {
        return Err(StageError::NonFiniteSamples { bad, total, max });
    }
    Ok(bad)
}

/// One implementation of a stage kind.
pub trait Stage: Sync {
    fn kind(&self) -> Kind;
    /// The selector value that picks this implementation.
    fn method(&self) -> &'static str;
    /// Bump when the output for identical inputs changes.
    fn version(&self) -> u32;
    fn params(&self) -> &'static [ParamDef];
    fn inputs(&self) -> &'static [InputDef];
    fn outputs(&self) -> &'static [OutputDef];
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError>;
    /// Whether `run` saves checkpoints through `ctx.checkpoint` and resumes
    /// from them with identical output ([`crate::engine::checkpoint`]).
    fn checkpoints(&self) -> bool {
        false
    }
    /// Lines worth printing at the end of `scoreflow run` (e.g. a validity summary),
    /// derived from this stage's outputs.
    fn summary(&self, _outputs: &BTreeMap<String, Arc<Artifact>>) -> Option<String> {
        None
    }
    /// Columns a table input must have (checked against the producer's declared
    /// columns by `check`); empty: any.
    fn input_columns(&self, _input: &str) -> &'static [&'static str] {
        &[]
    }
    /// The columns a table output always has; `None`: they depend on the inputs
    /// (e.g. a sampler keeps its model's data columns).
    fn output_columns(&self, _output: &str) -> Option<&'static [&'static str]> {
        None
    }
    /// The outputs that hold metrics, for `scoreflow compare`: (output, the
    /// numeric column to read); such a table has a string column `metric`
    /// naming each row. An output listed with several columns gives each row
    /// once per column, named `column(metric)`.
    fn metrics(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Rules across this stage's parameters that their types cannot say
    /// (`time_channels` even, say), checked by `check` and before `run`: each
    /// broken rule as (the parameter to point at, why).
    fn check_params(&self, _params: &Params) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Optional inputs these parameter values need (`method: file` reads
    /// `data`): each as (the input, why), reported by `check` when the stage
    /// does not bind it.
    fn needs_inputs(&self, _params: &Params) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Rules between this stage's parameters and those of the stage that
    /// produces input `input` (a sampler's `use_ema` needs a model trained
    /// with `ema`): why the wiring cannot work, reported at the input.
    fn check_input(
        &self,
        _params: &Params,
        _input: &str,
        _producer: &dyn Stage,
        _producer_params: &Params,
    ) -> Option<String> {
        None
    }
    /// Problems the stage can see in a file bound to input `input` before it
    /// runs (a dopesheet that does not parse, a step past its bound): each at
    /// its 1-based line and column in that file, reported by `check` as
    /// `file:line:col` beside the spec's position.
    fn check_file(&self, _input: &str, _bytes: &[u8]) -> Vec<FileProblem> {
        Vec::new()
    }
    /// Read an example of every declared parameter through the stage's
    /// parameter struct (declared with `describe!(…, params STRUCT, …)`): the
    /// number read, or `None` for a stage without one (a command stage). A
    /// field whose Rust type disagrees with its declaration panics here, in
    /// the registry-wide test, instead of in a run.
    fn reads_its_params(&self) -> Option<usize> {
        None
    }
    /// The memory this stage needs with these params, where the params alone
    /// say (rows it will hold): the parameter that drives it and the bytes.
    /// `check` and `run` refuse, before anything runs, a stage that cannot fit
    /// in the machine's memory ([`crate::engine::spec`]).
    fn memory_bytes(&self, _params: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        None
    }
    /// What the stage's declaration adds to its key beyond kind, method,
    /// version, params, seed and inputs: `None` for a built-in stage (its code
    /// is the version); a command stage's argv, outputs and env values
    /// ([`crate::engine::command::CommandDef`]).
    fn definition(&self) -> Option<crate::engine::params::Value> {
        None
    }
}

crate::params! {
    /// The parameters of an implementation that takes none.
    pub struct NoParams {}
}

/// A problem in a file input, at its 1-based line and column.
#[derive(Debug, Clone, PartialEq)]
pub struct FileProblem {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// `bytes_per_row × n_samples` plus a fixed 64 MiB: the memory estimate of a
/// stage that holds `n_samples` rows. The per-row figures are the peak resident
/// memory of the stage's process at 2 million rows (`/usr/bin/time -v`), divided
/// by the rows and rounded up: triangles 238 → 250, two moons 95 → 100, the PC
/// sampler 71 → 80, the DDPM samplers 47 → 50 bytes a row.
pub fn rows_memory(p: &crate::engine::params::Params, bytes_per_row: u64) -> u64 {
    use crate::engine::params::ParamsExt;
    (p.i64("n_samples").max(0) as u64).saturating_mul(bytes_per_row).saturating_add(64 << 20)
}

/// Look up an output definition of an implementation.
pub fn output_def(stage: &dyn Stage, name: &str) -> Option<OutputDef> {
    stage.outputs().iter().copied().find(|o| o.name == name)
}

/// The stage implementations a run may use, built by the caller (the crate's
/// [`crate::registry`]) and passed to [`crate::engine::spec::load`]: the engine
/// knows the seven kinds, never which code implements them.
#[derive(Default)]
pub struct Registry {
    stages: Vec<&'static dyn Stage>,
}

impl Registry {
    pub fn new(stages: Vec<&'static dyn Stage>) -> Registry {
        Registry { stages }
    }

    /// Every registered implementation, in registration order.
    pub fn all(&self) -> &[&'static dyn Stage] {
        &self.stages
    }

    /// The implementations of one kind.
    pub fn methods(&self, kind: Kind) -> Vec<&'static dyn Stage> {
        self.stages.iter().copied().filter(|s| s.kind() == kind).collect()
    }

    /// The implementation of `kind` selected by `method`.
    pub fn find(&self, kind: Kind, method: &str) -> Option<&'static dyn Stage> {
        self.stages.iter().copied().find(|s| s.kind() == kind && s.method() == method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diverging_loss_is_an_error_naming_the_step() {
        let mut g = LossGuard::default();
        g.check(0, 2.0).unwrap();
        g.check(1, 2.0e6).unwrap();
        let err = g.check(7, 3.0e6).unwrap_err();
        assert!(matches!(err, StageError::Diverged { step: 7, .. }), "{err}");
        assert!(err.to_string().contains("loss 3.000e6 at step 7"), "{err}");
        assert!(matches!(g.check(8, f64::INFINITY), Err(StageError::NonFinite { step: 8, .. })));
    }
}
