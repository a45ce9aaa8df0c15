//! `validate` / `checks: color_latent`: what the 1.7 latent space should look
//! like — red at `e₁`, vibrant hues on the unit circle of the first two
//! dimensions in hue order, every colour near the unit sphere — measured on
//! the final model and on every latent snapshot.
//!
//! The vibrant set is the evaluation grid's fully saturated, fully bright
//! colours (`max = 1`, `min = 0`: 42 of the 8³ grid), ordered by hue. Metrics:
//!
//! * `recon_mse` — reconstruction MSE on the whole grid (final model only);
//! * `norm_dev` / `vibrant_norm_dev` — mean `|‖z‖ − 1|` on the grid / the vibrant set;
//! * `red_angle` (degrees) and `red_dist` — the angle between red's latent
//!   and `e₁`, and `‖z_red − e₁‖`;
//! * `off_plane` — mean `z₂² + z₃²` over the vibrant set;
//! * `hue_order` — the fraction of consecutive vibrant hues (cyclically) whose
//!   angle `atan2(z₁, z₀)` steps the way most steps go, and `hue_turns` — the
//!   winding number of that loop: 1.0 and ±1 are one clean turn.

use super::data::hsv_to_rgb;
use super::model::{LATENT, SHAPES, forward};
use crate::engine::frame::{ColumnData, Table};
use crate::engine::stage::{Artifact, InputDef, Kind, Media, OutputDef, Outputs, Stage, StageCtx, StageError};

pub struct ColorLatent;

static INPUTS: &[InputDef] = &[
    InputDef {
        name: "model",
        media: Media::Model("color_mlp"),
        required: true,
        doc: "train objective: color_ae's model",
    },
    InputDef {
        name: "latents",
        media: Media::Table,
        required: true,
        doc: "train objective: color_ae's latent snapshots",
    },
];
static OUTPUTS: &[OutputDef] = &[
    OutputDef { name: "metrics", media: Media::Table, doc: "metric, value: the final model" },
    OutputDef {
        name: "over_time",
        media: Media::Table,
        doc: "step, norm_dev, vibrant_norm_dev, red_angle, red_dist, off_plane, hue_order, hue_turns",
    },
];

/// Flat parameters of a `color_mlp` blob.
pub fn load_params(bytes: &[u8]) -> Result<Vec<f32>, String> {
    let (_, body): (serde_json::Value, _) =
        crate::numerics::nn::unframe_blob(bytes, b"SFCOL001", "not a colour model").map_err(|e| e.to_string())?;
    let skeleton = crate::numerics::nn::linears(
        &crate::numerics::nn::skeleton_layers(&SHAPES),
        &crate::numerics::nn::io_device(),
        0,
    );
    let lin = crate::numerics::nn::load_record(skeleton, body).map_err(|e| e.to_string())?;
    Ok(crate::numerics::nn::layers_of(&lin).into_iter().flat_map(|(w, b, _, _)| w.into_iter().chain(b)).collect())
}

fn hue_of(c: [f64; 3]) -> f64 {
    let (mx, mn) = (c.iter().copied().fold(f64::MIN, f64::max), c.iter().copied().fold(f64::MAX, f64::min));
    if mx == mn {
        return 0.0;
    }
    let d = mx - mn;
    let h = if mx == c[0] {
        ((c[1] - c[2]) / d).rem_euclid(6.0)
    } else if mx == c[1] {
        (c[2] - c[0]) / d + 2.0
    } else {
        (c[0] - c[1]) / d + 4.0
    };
    h / 6.0
}

/// Indices of the vibrant colours of `grid`, ordered by hue.
fn vibrant_by_hue(grid: &[[f64; 3]]) -> Vec<usize> {
    let mut v: Vec<usize> = (0..grid.len())
        .filter(|&i| {
            let c = grid[i];
            c.contains(&1.0) && c.contains(&0.0)
        })
        .collect();
    v.sort_by(|a, b| hue_of(grid[*a]).total_cmp(&hue_of(grid[*b])));
    v
}

fn nrm(z: &[f64; LATENT]) -> f64 {
    z.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// The latent metrics of one snapshot: (name, value) rows.
fn latent_metrics(grid: &[[f64; 3]], z: &[[f64; LATENT]]) -> Vec<(&'static str, f64)> {
    let vib = vibrant_by_hue(grid);
    let mean = |it: &mut dyn Iterator<Item = f64>, n: usize| it.sum::<f64>() / n.max(1) as f64;
    let norm_dev = mean(&mut z.iter().map(|v| (nrm(v) - 1.0).abs()), z.len());
    let vib_norm = mean(&mut vib.iter().map(|&i| (nrm(&z[i]) - 1.0).abs()), vib.len());
    let red = grid.iter().position(|c| *c == [1.0, 0.0, 0.0]).map(|i| z[i]);
    let (red_angle, red_dist) = match red {
        Some(r) => {
            let cos = (r[0] / nrm(&r).max(1e-12)).clamp(-1.0, 1.0);
            let dist = ((r[0] - 1.0).powi(2) + r[1] * r[1] + r[2] * r[2] + r[3] * r[3]).sqrt();
            (cos.acos().to_degrees(), dist)
        }
        None => (f64::NAN, f64::NAN),
    };
    let off_plane = mean(&mut vib.iter().map(|&i| z[i][2] * z[i][2] + z[i][3] * z[i][3]), vib.len());
    let angles: Vec<f64> = vib.iter().map(|&i| z[i][1].atan2(z[i][0])).collect();
    let n = angles.len();
    let steps: Vec<f64> = (0..n)
        .map(|k| {
            let d = angles[(k + 1) % n] - angles[k];
            (d + std::f64::consts::PI).rem_euclid(2.0 * std::f64::consts::PI) - std::f64::consts::PI
        })
        .collect();
    let pos = steps.iter().filter(|d| **d > 0.0).count();
    let hue_order = pos.max(n - pos) as f64 / n.max(1) as f64;
    let turns = (steps.iter().sum::<f64>() / (2.0 * std::f64::consts::PI)).round();
    vec![
        ("norm_dev", norm_dev),
        ("vibrant_norm_dev", vib_norm),
        ("red_angle", red_angle),
        ("red_dist", red_dist),
        ("off_plane", off_plane),
        ("hue_order", hue_order),
        ("hue_turns", turns),
    ]
}

impl Stage for ColorLatent {
    describe!(Kind::Validate, "color_latent", version 1, params crate::engine::stage::NoParams, INPUTS, OUTPUTS);
    fn metrics(&self) -> &'static [(&'static str, &'static str)] {
        &[("metrics", "value")]
    }
    fn input_columns(&self, input: &str) -> &'static [&'static str] {
        match input {
            "latents" => &["step", "r", "g", "b", "z0", "z1", "z2", "z3"],
            _ => &[],
        }
    }
    fn run(&self, ctx: &StageCtx) -> Result<Outputs, StageError> {
        let params = load_params(ctx.blob("model")?).map_err(StageError::Failed)?;
        let lat = ctx.table("latents")?;
        let step = lat.i64s("step")?;
        let (r, g, b) = (lat.f64s("r")?, lat.f64s("g")?, lat.f64s("b")?);
        let zs: Vec<Vec<f64>> = (0..LATENT).map(|k| lat.f64s(&format!("z{k}"))).collect::<Result<_, _>>()?;
        let mut rows: Vec<(i64, Vec<(&'static str, f64)>)> = Vec::new();
        let mut at = 0;
        while at < step.len() {
            let end = step[at..].iter().position(|s| *s != step[at]).map_or(step.len(), |n| at + n);
            let grid: Vec<[f64; 3]> = (at..end).map(|i| [r[i], g[i], b[i]]).collect();
            let z: Vec<[f64; LATENT]> = (at..end).map(|i| std::array::from_fn(|k| zs[k][i])).collect();
            rows.push((step[at], latent_metrics(&grid, &z)));
            at = end;
        }
        // The final model: its own latents of the last snapshot's grid, and reconstruction.
        let last = step.last().copied().unwrap_or(0);
        let grid: Vec<[f64; 3]> = (0..step.len()).filter(|&i| step[i] == last).map(|i| [r[i], g[i], b[i]]).collect();
        let outs: Vec<_> = grid.iter().map(|c| forward(&params, [c[0] as f32, c[1] as f32, c[2] as f32])).collect();
        let recon = outs
            .iter()
            .zip(&grid)
            .map(|(o, c)| (0..3).map(|d| (o.y[d] as f64 - c[d]).powi(2)).sum::<f64>())
            .sum::<f64>()
            / (3 * grid.len().max(1)) as f64;
        let z: Vec<[f64; LATENT]> = outs.iter().map(|o| o.z.map(|v| v as f64)).collect();
        let mut final_rows = vec![("recon_mse", recon)];
        final_rows.extend(latent_metrics(&grid, &z));
        // The 36 hues of the training cube at full saturation and value: red's
        // neighbours included, as the seed's figures show them.
        let hues: Vec<[f32; 3]> =
            (0..36).map(|i| hsv_to_rgb((i as f64 * (10.0 / 360.0)) % 1.0, 1.0, 1.0).map(|v| v as f32)).collect();
        let hue_z: Vec<[f64; LATENT]> = hues.iter().map(|c| forward(&params, *c).z.map(|v| v as f64)).collect();
        let hue_grid: Vec<[f64; 3]> = hues.iter().map(|c| c.map(|v| v as f64)).collect();
        let cube = latent_metrics(&hue_grid, &hue_z);
        for (name, v) in cube {
            if name == "hue_order" {
                final_rows.push(("hue_order_36", v));
            }
        }
        if final_rows.iter().any(|(_, v)| !v.is_finite()) {
            return Err(StageError::Failed(format!("a latent metric is not finite: {final_rows:?}")));
        }
        let metrics = Table::new()
            .with("metric", ColumnData::Str(final_rows.iter().map(|r| r.0.to_string()).collect()))
            .with("value", ColumnData::F64(final_rows.iter().map(|r| r.1).collect()));
        let mut over = Table::new().with("step", ColumnData::I64(rows.iter().map(|r| r.0).collect()));
        for (k, (name, _)) in rows[0].1.iter().enumerate() {
            over = over.with(name, ColumnData::F64(rows.iter().map(|r| r.1[k].1).collect()));
        }
        Ok([("metrics".to_string(), Artifact::Table(metrics)), ("over_time".to_string(), Artifact::Table(over))]
            .into_iter()
            .collect())
    }
    fn summary(&self, outputs: &std::collections::BTreeMap<String, std::sync::Arc<Artifact>>) -> Option<String> {
        let Artifact::Table(t) = outputs.get("metrics")?.as_ref() else {
            return None;
        };
        let (m, v) = (t.strs("metric").ok()?, t.f64s("value").ok()?);
        let mut text = String::from("latent metric (final snapshot)");
        for i in 0..m.len() {
            text.push_str(&format!("\n  {:<28} {:>11.6}", m[i], v[i]));
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A perfect latent space scores perfectly: vibrant hues on the unit circle
    /// in hue order, red at e₁.
    #[test]
    fn an_ideal_latent_space_scores_ideally() {
        let grid = super::super::data::rgb_grid(8);
        let z: Vec<[f64; LATENT]> = grid
            .iter()
            .map(|c| {
                let a = 2.0 * std::f64::consts::PI * hue_of(*c);
                [a.cos(), a.sin(), 0.0, 0.0]
            })
            .collect();
        let m: std::collections::BTreeMap<_, _> = latent_metrics(&grid, &z).into_iter().collect();
        assert_eq!(vibrant_by_hue(&grid).len(), 42);
        assert!(m["red_angle"].abs() < 1e-9 && m["red_dist"].abs() < 1e-12);
        assert_eq!((m["hue_order"], m["hue_turns"]), (1.0, 1.0));
        assert!(m["off_plane"] == 0.0 && m["vibrant_norm_dev"] < 1e-12);
        // Reversing half the wheel breaks the order.
        let mut bad = z.clone();
        for (i, c) in grid.iter().enumerate() {
            if hue_of(*c) > 0.5 {
                bad[i] = [1.0, 0.0, 0.0, 0.0];
            }
        }
        let m: std::collections::BTreeMap<_, _> = latent_metrics(&grid, &bad).into_iter().collect();
        assert!(m["hue_order"] < 1.0, "{m:?}");
    }
}
