//! `generate` / `dataset: boltzmann`: exact reference samples of a Boltzmann
//! target, for validation (a test set, and independent draws for floors).

use crate::energy::gmm::Gmm;
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamDef, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError, rng};

/// Peak memory per requested row (2-D points and a mode label; estimated).
const BYTES_PER_ROW: u64 = 64;

/// `dataset: boltzmann`: `n_samples` exact draws of the target `energy`.
///
/// `gmm40` is DEM's GMM-40 ([`Gmm::dem40`]): a component uniformly, then its
/// normal — in the energy's own coordinates (DEM's test set is in these too;
/// its training works on `x / 50`). Each row records the component drawn.
/// `draw` selects an independent stream under the same seed (draw 1 and 2
/// give two independent reference sets for a floor). Streams are ChaCha8,
/// not torch's.
pub struct Boltzmann;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct BoltzmannParams {
        energy: String = (ParamType::Str { choices: &["gmm40"] }, Default::Str("gmm40"), "the target: `gmm40` (DEM's 40-mode mixture in 2-D)"),
        n_samples: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(1000), "exact samples"),
        draw: i64 = (ParamType::Int { min: 0, max: 1_000_000 }, Default::Int(0), "independent draw number under the same seed"),
    }
}
static PARAMS: &[ParamDef] = BoltzmannParams::DEFS;
static INPUTS: &[InputDef] = &[];
static OUTPUTS: &[OutputDef] = &[OutputDef {
    name: "samples",
    media: Media::Table,
    doc: "x, y and mode (the component each point was drawn from)",
}];

impl Stage for Boltzmann {
    describe!(Kind::Generate, "boltzmann", version 1, PARAMS, INPUTS, OUTPUTS);
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        (output == "samples").then_some(&["x", "y", "mode"][..])
    }
    fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        Some(("n_samples", crate::engine::stage::rows_memory(p, BYTES_PER_ROW)))
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = BoltzmannParams::read(ctx.params);
        let gmm = match p.energy.as_str() {
            "gmm40" => Gmm::dem40(),
            other => return Err(StageError::Failed(format!("unknown energy `{other}`"))),
        };
        let mut r = rng(ctx.seed, &format!("boltzmann/{}/{}", p.energy, p.draw));
        let (xs, components) = gmm.sample_labelled(p.n_samples, &mut r);
        let (x, y): (Vec<f64>, Vec<f64>) = xs.chunks(2).map(|v| (v[0], v[1])).unzip();
        let mode = components.into_iter().map(|k| k as i64).collect();
        let table = Table::new()
            .with("x", ColumnData::F64(x))
            .with("y", ColumnData::F64(y))
            .with("mode", ColumnData::I64(mode));
        Ok([("samples".to_string(), Artifact::Table(table))].into_iter().collect())
    }
}
