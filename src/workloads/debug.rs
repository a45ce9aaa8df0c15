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
        panic: bool = (ParamType::Bool, Default::Bool(false), "panic after sleeping (a stage's bug)"),
    }
}
static INPUTS: &[InputDef] =
    &[InputDef { name: "data", media: Media::Table, required: false, doc: "a table with an i64 column `value`" }];
static OUTPUTS: &[OutputDef] = &[OutputDef { name: "table", media: Media::Table, doc: "one i64 column `value`" }];

impl Stage for Debug {
    describe!(Kind::Debug, "echo", version 1, params DebugParams, INPUTS, OUTPUTS);
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = DebugParams::read(ctx.params);
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
