//! `generate` / `dataset: triangles`: the seed's `generate_biased_triangle_dataset`
//! (seed 000): draw `5·n_samples` valid triangles uniformly, classify each, keep
//! `floor(n_samples·ratio)` of every side type (or all there are, if fewer), then of
//! every angle type among those, and shuffle. Types are visited in a fixed order
//! (equilateral, isosceles, scalene; right, acute, obtuse) whatever the YAML order,
//! and a type left out of a bias map keeps none of its triangles, as in the seed.

use crate::engine::frame::{ColumnData, Table};
use crate::engine::params::{Default, ParamType};
use crate::engine::stage::{Artifact, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};
use crate::numerics::rng::stream as rng;
use crate::workloads::triangles::geometry::{AngleType, SideType, classify_angles, classify_sides, sample_valid_sides};
use rand::seq::{SliceRandom, index};

pub struct Triangles;

/// Peak memory per requested row (measured; see [`crate::engine::stage::rows_memory`]).
const TRIANGLE_BYTES_PER_ROW: u64 = 250;

const SIDE_KEYS: &[&str] = &["equilateral", "isosceles", "scalene"];
const ANGLE_KEYS: &[&str] = &["right", "acute", "obtuse"];

crate::params! {
    /// The parameters of this implementation, read once per run.
    pub struct TrianglesParams {
        n_samples: usize = (ParamType::Int { min: 1, max: 100_000_000 }, Default::Int(4096), "target size; 5× as many candidates are drawn"),
        side_bias: Option<std::collections::BTreeMap<String, f64>> = (ParamType::FloatMap { keys: SIDE_KEYS, min: 0.0, max: 1.0 }, Default::Optional, "fraction of n_samples to keep per side type"),
        angle_bias: Option<std::collections::BTreeMap<String, f64>> = (ParamType::FloatMap { keys: ANGLE_KEYS, min: 0.0, max: 1.0 }, Default::Optional, "fraction of n_samples to keep per angle type"),
        sort_sides: bool = (ParamType::Bool, Default::Bool(true), "store each triple sorted ascending"),
        tol: f64 = (ParamType::Float { min: 0.0, max: 1.0 }, Default::Float(0.01), "classification tolerance used for the quotas"),
    }
}

static OUTPUTS: &[OutputDef] = &[OutputDef { name: "samples", media: Media::Table, doc: "side lengths a, b, c" }];

/// Keep `floor(n·ratio)` rows (or all) of each class, in the given class order;
/// each class subsample uses its own random stream.
fn apply_quota<T: Copy + PartialEq>(
    rows: &[usize],
    class_of: impl Fn(usize) -> T,
    quotas: &[(T, &str, f64)],
    n: usize,
    seed: u64,
    family: &str,
) -> Vec<usize> {
    let mut kept = Vec::new();
    for (class, name, ratio) in quotas {
        let subset: Vec<usize> = rows.iter().copied().filter(|r| class_of(*r) == *class).collect();
        // Python's int(n * ratio) truncates the float product.
        let target = ((n as f64) * ratio) as usize;
        let k = target.min(subset.len());
        let mut r = rng(seed, &format!("{family}/{name}"));
        kept.extend(index::sample(&mut r, subset.len(), k).into_iter().map(|i| subset[i]));
    }
    kept
}

impl Stage for Triangles {
    describe!(Kind::Generate, "triangles", version 1, params TrianglesParams, &[], OUTPUTS);
    fn output_columns(&self, output: &str) -> Option<&'static [&'static str]> {
        (output == "samples").then_some(&["a", "b", "c"])
    }
    fn memory_bytes(&self, p: &crate::engine::params::Params) -> Option<(&'static str, u64)> {
        Some(("n_samples", crate::engine::stage::rows_memory(p, TRIANGLE_BYTES_PER_ROW)))
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let p = &TrianglesParams::read(ctx.params);
        let n = p.n_samples;
        let tol = p.tol;
        let candidates = sample_valid_sides(n * 5, &mut rng(ctx.seed, "candidates"), p.sort_sides);
        let sides: Vec<SideType> = candidates.iter().map(|[a, b, c]| classify_sides(*a, *b, *c, tol)).collect();
        let angles: Vec<AngleType> = candidates.iter().map(|[a, b, c]| classify_angles(*a, *b, *c, tol)).collect();
        (ctx.progress)(0.5);

        let mut rows: Vec<usize> = (0..candidates.len()).collect();
        if let Some(bias) = p.side_bias.clone() {
            let quotas: Vec<_> = SideType::ALL.iter().map(|t| (*t, t.name(), bias[t.name()])).collect();
            rows = apply_quota(&rows, |r| sides[r], &quotas, n, ctx.seed, "side");
        }
        if let Some(bias) = p.angle_bias.clone() {
            let quotas: Vec<_> = AngleType::ALL.iter().map(|t| (*t, t.name(), bias[t.name()])).collect();
            rows = apply_quota(&rows, |r| angles[r], &quotas, n, ctx.seed, "angle");
        }
        rows.shuffle(&mut rng(ctx.seed, "shuffle"));

        let col = |j: usize| ColumnData::F64(rows.iter().map(|r| candidates[*r][j]).collect());
        let table = Table::new().with("a", col(0)).with("b", col(1)).with("c", col(2));
        Ok([("samples".to_string(), Artifact::Table(table))].into_iter().collect())
    }
}
