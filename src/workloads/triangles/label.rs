//! `label` stages: annotate samples.
//!
//! `scheme: triangle_types` adds the seed's side type (equilateral / isosceles /
//! scalene) and angle type (right / acute / obtuse) to every triangle, with the
//! seed's `tol`, and counts them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::workloads::triangles::geometry::{AngleType, SideType, classify_angles, classify_sides};

pub struct TriangleTypes;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct LabelParams {
        tol: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.01), "absolute tolerance for equal sides; tol·90° for right angles"),
    }
}
static INPUTS: &[InputDef] =
    &[InputDef { name: "data", media: Media::Table, required: true, doc: "a table with columns a, b, c" }];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "labels", media: Media::Table, doc: "a, b, c, side_type, angle_type" },
    OutputDef { name: "counts", media: Media::Table, doc: "family, type, count, fraction" },
];

/// Side and angle types of every row of (a, b, c).
pub fn classify_all(a: &[f64], b: &[f64], c: &[f64], tol: f64) -> (Vec<SideType>, Vec<AngleType>) {
    let sides = (0..a.len()).map(|i| classify_sides(a[i], b[i], c[i], tol)).collect();
    let angles = (0..a.len()).map(|i| classify_angles(a[i], b[i], c[i], tol)).collect();
    (sides, angles)
}

/// Counts of each side type, then each angle type, in the fixed order of
/// `SideType::ALL` and `AngleType::ALL`.
pub fn type_tally(sides: &[SideType], angles: &[AngleType]) -> Vec<i64> {
    let side = SideType::ALL.iter().map(|t| sides.iter().filter(|s| *s == t).count() as i64);
    let angle = AngleType::ALL.iter().map(|t| angles.iter().filter(|s| *s == t).count() as i64);
    side.chain(angle).collect()
}

/// [`type_tally`] as fractions of the number of rows (0 for no rows).
pub fn type_fractions(sides: &[SideType], angles: &[AngleType]) -> Vec<f64> {
    let n = sides.len().max(1) as f64;
    type_tally(sides, angles).iter().map(|c| *c as f64 / n).collect()
}

/// The `counts` table: one row per side type and per angle type, fixed order,
/// zero counts included.
pub fn type_counts(sides: &[SideType], angles: &[AngleType]) -> Table {
    let family = ["side"; 3].into_iter().chain(["angle"; 3]).map(String::from).collect();
    let ty = SideType::ALL
        .iter()
        .map(|t| t.name())
        .chain(AngleType::ALL.iter().map(|t| t.name()))
        .map(String::from)
        .collect();
    Table::new()
        .with("family", ColumnData::Str(family))
        .with("type", ColumnData::Str(ty))
        .with("count", ColumnData::I64(type_tally(sides, angles)))
        .with("fraction", ColumnData::F64(type_fractions(sides, angles)))
}

/// "side: equilateral 0 (0.0%), … | angle: …" from a counts table.
pub fn format_counts(counts: &Table) -> Option<String> {
    let family = counts.strs("family").ok()?;
    let ty = counts.strs("type").ok()?;
    let count = counts.i64s("count").ok()?;
    let fraction = counts.f64s("fraction").ok()?;
    let part = |fam: &str| {
        (0..ty.len())
            .filter(|i| family[*i] == fam)
            .map(|i| format!("{} {} ({:.1}%)", ty[i], count[i], 100.0 * fraction[i]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!("sides: {} | angles: {}", part("side"), part("angle")))
}

impl Stage for TriangleTypes {
    describe!(Kind::Label, "triangle_types", version 1, params LabelParams, INPUTS, OUTPUTS);
    fn input_columns(&self, _input: &str) -> &'static [&'static str] {
        &["a", "b", "c"]
    }
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        match output {
            "labels" => Some(&["a", "b", "c", "side_type", "angle_type"]),
            "counts" => Some(&["family", "type", "count", "fraction"]),
            _ => None,
        }
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let data = ctx.table("data")?;
        let (a, b, c) = (data.f64s("a")?, data.f64s("b")?, data.f64s("c")?);
        let (sides, angles) = classify_all(&a, &b, &c, LabelParams::read(ctx.params).tol);
        let counts = type_counts(&sides, &angles);
        let labels = Table::new()
            .with("a", ColumnData::F64(a))
            .with("b", ColumnData::F64(b))
            .with("c", ColumnData::F64(c))
            .with("side_type", ColumnData::Str(sides.iter().map(|s| s.name().to_string()).collect()))
            .with("angle_type", ColumnData::Str(angles.iter().map(|s| s.name().to_string()).collect()));
        Ok([("labels".to_string(), Artifact::Table(labels)), ("counts".to_string(), Artifact::Table(counts))]
            .into_iter()
            .collect())
    }
    fn summary(&self, outputs: &BTreeMap<String, Arc<Artifact>>) -> Option<String> {
        match outputs.get("counts")?.as_ref() {
            Artifact::Table(t) => {
                let rows: i64 = t.i64s("count").ok()?[..3].iter().sum();
                format_counts(t).map(|s| format!("{rows} rows; {s}"))
            }
            _ => None,
        }
    }
}
