//! `generate` / `dataset: dopesheet`: a dopesheet file realised as a timeline
//! table — the schedule as a cached, inspectable, plottable artifact.

use crate::engine::frame::{ColumnData, Table};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::temporal::{parse, realize};

/// `dataset: dopesheet`: reads the `sheet` file input ([`crate::numerics::temporal::parse`])
/// and writes the value of every property at every step
/// ([`crate::numerics::temporal::realize`]: steps `0..=len`), and the keyframes.
pub struct DopesheetTimeline;

/// The timeline table's columns that are not the sheet's properties.
pub const NOT_PROPERTIES: &[&str] = &["step", "phase", "action", "phase_start", "phase_end"];

static INPUTS: &[InputDef] =
    &[InputDef { name: "sheet", media: Media::File, required: true, doc: "the dopesheet CSV: `{ file: path }`" }];
static OUTPUTS: &[OutputDef] = &[
    OutputDef {
        name: "timeline",
        media: Media::Table,
        doc: "step, phase, action, phase_start, phase_end, then one column per property (its value at that step)",
    },
    OutputDef { name: "keys", media: Media::Table, doc: "property, step, value: every keyframe of the sheet" },
];

impl Stage for DopesheetTimeline {
    describe!(Kind::Generate, "dopesheet", version 2, params crate::engine::stage::NoParams, INPUTS, OUTPUTS);
    /// The whole sheet is parsed and range-checked when the spec is, so a bad
    /// cell stops `check` at its line and column before anything runs.
    fn check_file(&self, _input: &str, bytes: &[u8]) -> Vec<crate::engine::stage::FileProblem> {
        use crate::engine::stage::FileProblem;
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
                return vec![FileProblem { line, col: 1, message: format!("the sheet is not UTF-8: {e}") }];
            }
        };
        match parse(text) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|e| {
                    let (line, col) = e.position(text);
                    let what = if e.column.is_empty() { String::new() } else { format!("{}: ", e.column) };
                    FileProblem { line, col, message: format!("{what}{}", e.message) }
                })
                .collect(),
        }
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let bytes = ctx.blob("sheet")?;
        let text =
            std::str::from_utf8(bytes).map_err(|e| StageError::Failed(format!("the sheet is not UTF-8: {e}")))?;
        let sheet = parse(text).map_err(|errors| {
            StageError::Failed(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
        })?;
        let t = realize(&sheet);
        let mut table = Table::new()
            .with("step", ColumnData::I64((0..t.steps() as i64).collect()))
            .with("phase", ColumnData::Str(t.phase.clone()))
            .with("action", ColumnData::Str(t.action.clone()))
            .with("phase_start", ColumnData::Bool(t.phase_start.clone()))
            .with("phase_end", ColumnData::Bool(t.phase_end.clone()));
        for (name, values) in t.names.iter().zip(&t.values) {
            table = table.with(name, ColumnData::F64(values.clone()));
        }
        let (mut prop, mut step, mut value) = (Vec::new(), Vec::new(), Vec::new());
        for (p, property) in sheet.properties.iter().enumerate() {
            for (s, v) in sheet.keys(p) {
                prop.push(property.name.clone());
                step.push(s as i64);
                value.push(v);
            }
        }
        let keys = Table::new()
            .with("property", ColumnData::Str(prop))
            .with("step", ColumnData::I64(step))
            .with("value", ColumnData::F64(value));
        Ok([("timeline".to_string(), Artifact::Table(table)), ("keys".to_string(), Artifact::Table(keys))]
            .into_iter()
            .collect())
    }
}
