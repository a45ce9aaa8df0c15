//! Stages from your own Rust crate: a `generate` stage (`dataset: spiral`)
//! added to scoreflow's registry, with the whole CLI around it — `run`,
//! `status`, `inspect`, `compare`, the Slurm worker — as the `scoreflow`
//! binary has for its built-in stages.
//!
//! In your crate: depend on `scoreflow`, implement [`Stage`] for a type (the
//! `describe!` macro fills in the six descriptive methods), and make your
//! binary's `main` call [`scoreflow::cli::main_with`] with your stages:
//!
//! ```text
//! cargo run --release --example custom_stage -- run my_spiral.yaml
//! ```
//! with `my_spiral.yaml`:
//! ```yaml
//! name: spiral
//! stages:
//!   points: { kind: generate, params: { dataset: spiral, n_samples: 1000, turns: 2.0 } }
//! ```

use scoreflow::engine::frame::{ColumnData, Table};
use scoreflow::engine::params::{Default, ParamDef, ParamType, ParamsExt};
use scoreflow::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};

/// `dataset: spiral`: points on an Archimedean spiral with Gaussian noise.
struct Spiral;

static PARAMS: &[ParamDef] = &[
    ParamDef {
        name: "n_samples",
        ty: ParamType::Int { min: 1, max: 10_000_000 },
        default: Default::Int(1000),
        doc: "points",
    },
    ParamDef {
        name: "turns",
        ty: ParamType::Float { min: 0.1, max: 100.0 },
        default: Default::Float(2.0),
        doc: "turns of the spiral",
    },
    ParamDef {
        name: "noise",
        ty: ParamType::Float { min: 0.0, max: 10.0 },
        default: Default::Float(0.02),
        doc: "standard deviation of the noise",
    },
];
static INPUTS: &[InputDef] = &[];
static OUTPUTS: &[OutputDef] = &[OutputDef { name: "samples", media: Media::Table, doc: "x, y" }];

impl Stage for Spiral {
    scoreflow::describe!(Kind::Generate, "spiral", version 1, PARAMS, INPUTS, OUTPUTS);

    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        use rand_distr::{Distribution, Normal};
        let n = ctx.params.i64("n_samples") as usize;
        let turns = ctx.params.f64("turns");
        // Every random stream derives from the stage seed: same spec, same bytes.
        let mut rng = scoreflow::numerics::rng::stream(ctx.seed, "spiral");
        let noise = Normal::new(0.0, ctx.params.f64("noise")).map_err(|e| StageError::Failed(e.to_string()))?;
        let (mut x, mut y) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let t = turns * std::f64::consts::TAU * i as f64 / n as f64;
            let r = t / (turns * std::f64::consts::TAU);
            x.push(r * t.cos() + noise.sample(&mut rng));
            y.push(r * t.sin() + noise.sample(&mut rng));
            (ctx.progress)((i + 1) as f64 / n as f64);
        }
        let table = Table::new().with("x", ColumnData::F64(x)).with("y", ColumnData::F64(y));
        Ok([("samples".to_string(), Artifact::Table(table))].into())
    }
}

fn main() -> std::process::ExitCode {
    scoreflow::cli::main_with(vec![&Spiral])
}
