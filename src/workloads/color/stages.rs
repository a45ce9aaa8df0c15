//! The colour workload's data stages: `generate dataset: color_cube` and
//! `label scheme: color_soft`.

use rand::Rng;

use super::data::{hsv_cube, rgb_grid};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::rng::stream as rng;

/// `dataset: color_cube`: the notebook's HSV training cube (3600 colours) with
/// its vibrancy and sampling bias, and the `n³` RGB evaluation grid.
pub struct ColorCube;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct ColorCubeParams {
        grid: usize = (ParamType::Int { min: 2, max: 64 }, Default::Int(8), "points per axis of the RGB evaluation grid (the notebook: 8)"),
    }
}
static CUBE_OUTPUTS: &[OutputDef] = &[
    OutputDef {
        name: "samples",
        media: Media::Table,
        doc: "h, s, v, r, g, b, vibrancy, bias: the HSV cube, flat index 100·ih + 10·is + iv",
    },
    OutputDef { name: "grid", media: Media::Table, doc: "r, g, b: the RGB evaluation grid, blue fastest" },
];

impl Stage for ColorCube {
    describe!(Kind::Generate, "color_cube", version 1, params ColorCubeParams, &[], CUBE_OUTPUTS);
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        match output {
            "samples" => Some(&["h", "s", "v", "r", "g", "b", "vibrancy", "bias"]),
            "grid" => Some(&["r", "g", "b"]),
            _ => None,
        }
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = ColorCubeParams::read(ctx.params);
        let cube = hsv_cube();
        let col = |f: &dyn Fn(&super::data::CubeColor) -> f64| ColumnData::F64(cube.iter().map(f).collect());
        let samples = Table::new()
            .with("h", col(&|c| c.h))
            .with("s", col(&|c| c.s))
            .with("v", col(&|c| c.v))
            .with("r", col(&|c| c.rgb[0]))
            .with("g", col(&|c| c.rgb[1]))
            .with("b", col(&|c| c.rgb[2]))
            .with("vibrancy", col(&|c| c.vibrancy))
            .with("bias", col(&|c| c.bias));
        let g = rgb_grid(p.grid);
        let grid = Table::new()
            .with("r", ColumnData::F64(g.iter().map(|c| c[0]).collect()))
            .with("g", ColumnData::F64(g.iter().map(|c| c[1]).collect()))
            .with("b", ColumnData::F64(g.iter().map(|c| c[2]).collect()));
        Ok([("samples".to_string(), Artifact::Table(samples)), ("grid".to_string(), Artifact::Table(grid))]
            .into_iter()
            .collect())
    }
}

/// `scheme: color_soft`: the notebook's soft labels, `red = (r(1 − g/2 − b/2))^10`
/// and `vibrant = vibrancy^100`, as probabilities (the seed's setting); `labels`
/// chooses among those and the origin's later `green`, `blue` and
/// `desaturated` ([`super::data::label_value`]).
/// `stochastic: true` draws discrete labels instead — the notebook's TODO, as
/// the origin's later HEAD does it: `1` with probability `scale·p`, else `0`.
pub struct ColorSoft;

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct ColorSoftParams {
        stochastic: bool = (ParamType::Bool, Default::Bool(false), "draw 0/1 labels with probability scale·p instead of the soft p (the seed: false)"),
        scale: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.5), "with stochastic: the probabilities' factor (the origin's HEAD: 0.5)"),
        labels: Vec<String> = (ParamType::StrList { choices: super::data::LABELS }, Default::StrList(&["red", "vibrant"]), "the label columns to write (the seed: red, vibrant; the origin later adds green, blue, desaturated)"),
    }
}
static SOFT_INPUTS: &[InputDef] = &[InputDef {
    name: "data",
    media: Media::Table,
    required: true,
    doc: "colours: r, g, b, vibrancy (and more, kept)",
}];
static SOFT_OUTPUTS: &[OutputDef] = &[OutputDef {
    name: "labels",
    media: Media::Table,
    doc: "the input's columns, then one per label (default: red, vibrant)",
}];

impl Stage for ColorSoft {
    describe!(Kind::Label, "color_soft", version 1, params ColorSoftParams, SOFT_INPUTS, SOFT_OUTPUTS);
    fn input_columns(&self, _input: &str) -> &'static [&'static str] {
        &["r", "g", "b", "vibrancy"]
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = ColorSoftParams::read(ctx.params);
        let data = ctx.table("data")?;
        let (r, g, b, vib) = (data.f64s("r")?, data.f64s("g")?, data.f64s("b")?, data.f64s("vibrancy")?);
        let mut draws = rng(ctx.seed, "color_soft/labels");
        let mut label =
            |prob: f64| -> f64 { if p.stochastic { f64::from(draws.random::<f64>() < p.scale * prob) } else { prob } };
        // One draw per colour and label, colour by colour, labels in order.
        let mut cols: Vec<Vec<f64>> = vec![Vec::with_capacity(r.len()); p.labels.len()];
        for i in 0..r.len() {
            for (col, name) in cols.iter_mut().zip(&p.labels) {
                col.push(label(super::data::label_value(name, [r[i], g[i], b[i]], vib[i])));
            }
        }
        let mut t = data.clone();
        for (name, col) in p.labels.iter().zip(cols) {
            t = t.with(name, ColumnData::F64(col));
        }
        Ok([("labels".to_string(), Artifact::Table(t))].into_iter().collect())
    }
}
