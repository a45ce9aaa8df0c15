//! Test-only `debug` stage (feature `test-stages`): sleeps, fails or echoes on
//! demand, so integration tests can exercise crash safety, concurrency and early
//! cutoff without depending on the numerics of real stages.

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};

pub struct Debug;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct DebugParams {
        value: i64 = (ParamType::Int { min: i64::MIN, max: i64::MAX }, Default::Int(0), "added to the input's values"),
        sleep_ms: u64 = (ParamType::Int { min: 0, max: 600_000 }, Default::Int(0), "sleep before returning (does not change the output)"),
        fail: bool = (ParamType::Bool, Default::Bool(false), "fail after sleeping"),
        nan: bool = (ParamType::Bool, Default::Bool(false), "report a non-finite loss"),
        panic: bool = (ParamType::Bool, Default::Bool(false), "panic after sleeping, or after the steps (a stage's bug)"),
        steps: u64 = (ParamType::Int { min: 0, max: 10_000_000 }, Default::Int(0), "> 0: take this many steps instead, each a draw from the stage's random stream, checkpointing as a long stage does (output: step, draw)"),
        step_ms: u64 = (ParamType::Int { min: 0, max: 600_000 }, Default::Int(10), "with steps: sleep per step (does not change the output)"),
    }
}

/// The state of `steps` at a step boundary: the draws so far and the
/// stream's position.
#[derive(serde::Serialize, serde::Deserialize)]
struct StepsState {
    draws: Vec<f64>,
    rng: crate::numerics::rng::Position,
}

/// `steps` steps of `step_ms` each, every one a draw from the stage's random
/// stream, checkpointing as a long stage does: the engine's checkpoint,
/// resume and Slurm requeue tests run it.
fn steps(ctx: &StageCtx, steps: u64, step_ms: u64, panic: bool) -> Result<Outputs, StageError> {
    use crate::engine::checkpoint::{decode, encode};
    use crate::numerics::rng::Position;
    use rand::Rng;
    let mut rng = crate::numerics::rng::stream(ctx.seed, "steps");
    let mut draws = Vec::with_capacity(steps as usize);
    if let Some((_, s)) =
        ctx.checkpoint.resume_with(|b| decode::<StepsState>(b).filter(|s| s.draws.len() as u64 <= steps))
    {
        draws = s.draws;
        s.rng.seek(&mut rng);
    }
    for step in draws.len() as u64..steps {
        ctx.checkpoint
            .at_boundary(step, steps, || encode(&StepsState { draws: draws.clone(), rng: Position::of(&rng) }))?;
        std::thread::sleep(std::time::Duration::from_millis(step_ms));
        draws.push(rng.random::<f64>());
        (ctx.progress)((step + 1) as f64 / steps as f64);
    }
    if panic {
        panic!("debug stage asked to panic after its steps");
    }
    let table =
        Table::new().with("step", ColumnData::I64((0..steps as i64).collect())).with("draw", ColumnData::F64(draws));
    Ok([("table".to_string(), Artifact::Table(table))].into_iter().collect())
}
static INPUTS: &[InputDef] =
    &[InputDef { name: "data", media: Media::Table, required: false, doc: "a table with an i64 column `value`" }];
static OUTPUTS: &[OutputDef] = &[OutputDef { name: "table", media: Media::Table, doc: "one i64 column `value`" }];

impl Stage for Debug {
    describe!(Kind::Debug, "echo", version 1, params DebugParams, INPUTS, OUTPUTS);
    fn checkpoints(&self) -> bool {
        true
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = DebugParams::read(ctx.params);
        if p.steps > 0 {
            return steps(ctx, p.steps, p.step_ms, p.panic);
        }
        let sleep = p.sleep_ms;
        let steps = 10;
        for i in 0..steps {
            std::thread::sleep(std::time::Duration::from_millis(sleep / steps));
            (ctx.progress)((i + 1) as f64 / steps as f64);
        }
        if p.fail {
            return Err(StageError::Failed("debug stage asked to fail".into()));
        }
        if p.panic {
            panic!("debug stage asked to panic");
        }
        if p.nan {
            return Err(StageError::NonFinite { step: 3, value: f64::NAN });
        }
        let base = p.value;
        let values = match ctx.inputs.get("data") {
            Some(_) => ctx.table("data")?.i64s("value")?.iter().map(|v| v + base).collect(),
            None => vec![base],
        };
        Ok([("table".to_string(), Artifact::Table(Table::new().with("value", ColumnData::I64(values))))]
            .into_iter()
            .collect())
    }
}
