//! The curricula of experiments 1.5 and 1.6 (`z0u/ex-color-transformer`):
//! which colours a step trains on, read from the dopesheet's phase and its
//! `data-*` columns as the origin's notebooks read them.
//!
//! * **Phase → data.** A phase named in `primary_phases` (the origin's
//!   `'Primary & secondary'`) trains on the six primary and secondary colours
//!   (`h = k/6`, `s = v = 1`) as one batch, every step; every other phase
//!   draws from the HSV cube.
//! * **The cube's sampler** for forms `ex_1_5` / `ex_1_6` is the origin's
//!   `DynamicWeightedRandomBatchSampler`: each batch draws `batch` colours
//!   with replacement, with probability ∝ `max(focusᵢ·biasᵢ, 0)` (uniform when
//!   that sums to ≤ 10⁻⁹). The focus comes from the sheet:
//!   `data-fraction` (1.5) and `data-vibrancies` (1.6) remap the colours'
//!   vibrancy `S·V`, `data-hues` (1.6) remaps the hue focus
//!   `(cos(d·π/30) + 1)/2` (`d`: degrees to the nearest multiple of 60°), each
//!   by `levels(x, in_low, out_low)` with `in_low = interp(f, [0, ½], [0.99,
//!   0])`, `out_low = interp(f, [½, 1], [0, 1])` — so 0 keeps (almost) only
//!   the fully vibrant (or primary/secondary-hued) colours, ½ leaves the
//!   weights as they are, 1 makes them all 1 — and several multiply.
//! * **One step late, as the origin.** The notebooks update the sampler's
//!   weights in a pre-step handler, after that step's batch was drawn: the
//!   batch of step `s` uses the sheet's values at `s − 1` (all ones at step 0).
//!
//! Two choices of ours where the origin is lax: a sheet cell may list several
//! actions separated by commas (trimmed), and an action the objective does not
//! know is an error; a curriculum form needs the sheet's `loss-recon` column
//! (the origin would weigh a missing one 0 and train nothing).
//!
//! Note: the `data-fraction` column does not choose the primary/secondary
//! subset — the phase name does; `data-fraction` only reshapes the cube's
//! vibrancy weights once a cube phase begins.

use super::data::hsv_to_rgb;

/// The phase the origin trains on the primaries.
pub const PRIMARY_PHASE: &str = "Primary & secondary";

/// The sheet columns that steer the sampler.
pub const DATA_COLUMNS: &[&str] = &["data-fraction", "data-hues", "data-vibrancies"];

/// The six primary and secondary colours (`ColorCube.from_hsv(h =
/// arange_cyclic(1/6), s = 1, v = 1)`), red first.
pub fn primaries() -> Vec<[f32; 3]> {
    (0..6).map(|k| hsv_to_rgb(k as f64 / 6.0, 1.0, 1.0).map(|v| v as f32)).collect()
}

/// numpy's `interp(x, [x0, x1], [y0, y1])`, clamped outside.
fn interp(x: f64, (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> f64 {
    if x <= x0 {
        y0
    } else if x >= x1 {
        y1
    } else {
        y0 + (x - x0) * (y1 - y0) / (x1 - x0)
    }
}

/// The origin's `levels(x, in_low, out_low)` (in_high = out_high = 1, clamped).
pub fn levels(x: f64, in_low: f64, out_low: f64) -> f64 {
    if (in_low - 1.0).abs() < 1e-10 {
        return (out_low + 1.0) / 2.0;
    }
    let alpha = ((x - in_low) / (1.0 - in_low)).clamp(0.0, 1.0);
    out_low + alpha * (1.0 - out_low)
}

/// The notebooks' `scale_weights(weights, frac)` for one weight.
pub fn scale_weight(x: f64, frac: f64) -> f64 {
    levels(x, interp(frac, (0.0, 0.5), (0.99, 0.0)), interp(frac, (0.5, 1.0), (0.0, 1.0)))
}

/// `primary_secondary_focus` of a hue in [0, 1).
pub fn hue_focus(h: f64) -> f64 {
    let m = (h * 360.0).rem_euclid(60.0);
    let d = m.min(60.0 - m);
    ((d * std::f64::consts::PI / 30.0).cos() + 1.0) / 2.0
}

/// The sheet's sampler settings at one step: the vibrancy fraction
/// (`data-fraction` or `data-vibrancies`) and the hue fraction (`data-hues`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Focus {
    pub vibrancy: Option<f64>,
    pub hues: Option<f64>,
}

/// The cube's colours as the sampler sees them.
pub struct Cube {
    pub bias: Vec<f64>,
    pub vibrancy: Vec<f64>,
    /// The hue focus of each colour (`hue_focus(h)`).
    pub hue_focus: Vec<f64>,
}

impl Cube {
    /// The focus weights at `focus` (ones where the sheet steers nothing).
    pub fn weights(&self, focus: Focus) -> Vec<f64> {
        (0..self.bias.len())
            .map(|i| {
                let v = focus.vibrancy.map_or(1.0, |f| scale_weight(self.vibrancy[i], f));
                let h = focus.hues.map_or(1.0, |f| scale_weight(self.hue_focus[i], f));
                v * h
            })
            .collect()
    }
}

/// The cumulative sums of `max(wᵢ·biasᵢ, 0)`, the sampler's table.
fn cumulative(bias: &[f64], w: &[f64]) -> Vec<f64> {
    let mut acc = 0.0;
    bias.iter()
        .zip(w)
        .map(|(b, w)| {
            acc += (w * b).max(0.0);
            acc
        })
        .collect()
}

/// `k` indices from the cumulative table `cum`, or uniformly when its total is
/// ≤ 10⁻⁹.
fn draw_from(cum: &[f64], k: usize, rng: &mut impl rand::Rng) -> Vec<usize> {
    let n = cum.len();
    let acc = cum.last().copied().unwrap_or(0.0);
    if acc <= 1e-9 {
        return (0..k).map(|_| ((rng.random::<f64>() * n as f64) as usize).min(n - 1)).collect();
    }
    (0..k)
        .map(|_| {
            let u = rng.random::<f64>() * acc;
            cum.partition_point(|c| *c <= u).min(n - 1)
        })
        .collect()
}

/// One batch of the origin's `DynamicWeightedRandomBatchSampler` with focus
/// weights `w`: `k` indices drawn with replacement, ∝ `max(wᵢ·biasᵢ, 0)`, or
/// uniformly when that sums to ≤ 10⁻⁹.
pub fn draw_batch(bias: &[f64], w: &[f64], k: usize, rng: &mut impl rand::Rng) -> Vec<usize> {
    draw_from(&cumulative(bias, w), k, rng)
}

/// The dynamic sampler over a cube, its focus weights and their table
/// recomputed only when the sheet's fractions change.
pub struct DynamicSampler {
    cube: Cube,
    /// The focus, its weights and their cumulative table, last computed.
    cached: Option<(Focus, Vec<f64>, Vec<f64>)>,
}

impl DynamicSampler {
    pub fn new(cube: Cube) -> DynamicSampler {
        DynamicSampler { cube, cached: None }
    }
    /// One batch at `focus`: the drawn indices and the focus weights they
    /// were drawn with ([`draw_batch`]).
    pub fn draw(&mut self, focus: Focus, k: usize, rng: &mut impl rand::Rng) -> (Vec<usize>, &[f64]) {
        if self.cached.as_ref().is_none_or(|(f, _, _)| *f != focus) {
            let w = self.cube.weights(focus);
            let cum = cumulative(&self.cube.bias, &w);
            self.cached = Some((focus, w, cum));
        }
        let (_, w, cum) = self.cached.as_ref().expect("set above");
        (draw_from(cum, k, rng), w)
    }
}

/// 1.6's weighted collate: the drawn colours' focus weights, normalised to sum
/// 1 within the batch (uniform `1/B` when they sum to ≤ 10⁻⁶).
pub fn batch_weights(w: &[f64], drawn: &[usize]) -> Vec<f32> {
    let raw: Vec<f32> = drawn.iter().map(|&i| w[i] as f32).collect();
    let sum: f32 = raw.iter().sum();
    if sum > 1e-6 { raw.iter().map(|v| v / sum).collect() } else { vec![1.0 / raw.len() as f32; raw.len()] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::numerics::rng::stream as rng;
    use crate::workloads::color::data::hsv_cube;

    fn cube() -> (Vec<super::super::data::CubeColor>, Cube) {
        let c = hsv_cube();
        let cube = Cube {
            bias: c.iter().map(|x| x.bias).collect(),
            vibrancy: c.iter().map(|x| x.vibrancy).collect(),
            hue_focus: c.iter().map(|x| hue_focus(x.h)).collect(),
        };
        (c, cube)
    }

    /// `levels` and the fraction map at the notebooks' landmarks.
    #[test]
    fn scale_weight_at_its_landmarks() {
        // ½ leaves a weight as it is; 1 makes every weight 1; 0 keeps only 1.
        for x in [0.0, 0.3, 0.7, 1.0] {
            assert!((scale_weight(x, 0.5) - x).abs() < 1e-12);
            assert_eq!(scale_weight(x, 1.0), 1.0);
        }
        assert_eq!(scale_weight(1.0, 0.0), 1.0);
        assert_eq!(scale_weight(0.98, 0.0), 0.0);
        assert!((scale_weight(0.995, 0.0) - 0.5).abs() < 1e-9);
        // 0.25: in_low 0.495, out_low 0.
        assert!((scale_weight(0.7, 0.25) - (0.7 - 0.495) / 0.505).abs() < 1e-12);
        // 0.75: in_low 0, out_low 0.5.
        assert!((scale_weight(0.2, 0.75) - 0.6).abs() < 1e-12);
        assert_eq!(levels(0.3, 1.0, 0.2), 0.6);
        assert_eq!(hue_focus(0.0), 1.0);
        assert!((hue_focus(1.0 / 6.0) - 1.0).abs() < 1e-12);
        assert!(hue_focus(30.0 / 360.0) < 1e-12);
        assert!((hue_focus(15.0 / 360.0) - 0.5).abs() < 1e-12);
    }

    /// `data-fraction` 0 (and `data-vibrancies` 0): the sampler draws only fully
    /// vibrant colours (S = V = 1); 0.2 draws only colours with S·V ≥ 0.594;
    /// 1 draws every colour in proportion to its bias.
    #[test]
    fn data_fraction_draws_only_vibrant_colours_until_it_opens() {
        let (c, cube) = cube();
        let mut r = rng(1, "test");
        for (frac, floor) in [(0.0, 0.99), (0.2, 0.594)] {
            let w = cube.weights(Focus { vibrancy: Some(frac), hues: None });
            let drawn = draw_batch(&cube.bias, &w, 20_000, &mut r);
            assert!(drawn.iter().all(|&i| c[i].vibrancy >= floor), "frac {frac}");
        }
        let w = cube.weights(Focus { vibrancy: Some(1.0), hues: None });
        assert!(w.iter().all(|v| *v == 1.0));
        let drawn = draw_batch(&cube.bias, &w, 200_000, &mut r);
        // Black (bias 1/360) against pure red (bias 1): about 1/360 as often.
        let (black, red) = (drawn.iter().filter(|&&i| i == 0).count(), drawn.iter().filter(|&&i| i == 99).count());
        let ratio = black as f64 / red as f64;
        assert!((ratio - 1.0 / 360.0).abs() < 0.003, "{ratio}");
    }

    /// `data-hues` 0: only the primary and secondary hues (multiples of 60°,
    /// weight 1, every other cube hue is at least 10° away: weight ≤ 0.75 → 0).
    #[test]
    fn data_hues_focus_on_primary_and_secondary_hues() {
        let (c, cube) = cube();
        let mut r = rng(2, "test");
        let w = cube.weights(Focus { vibrancy: Some(1.0), hues: Some(0.0) });
        let drawn = draw_batch(&cube.bias, &w, 20_000, &mut r);
        assert!(drawn.iter().all(|&i| ((c[i].h * 360.0).round() as i64) % 60 == 0));
        // With both at 0: only S = V = 1 at those six hues.
        let w = cube.weights(Focus { vibrancy: Some(0.0), hues: Some(0.0) });
        let mut seen: Vec<usize> = draw_batch(&cube.bias, &w, 5_000, &mut r);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 6);
        assert!(seen.iter().all(|&i| c[i].s == 1.0 && c[i].v == 1.0));
        // Nothing to draw: uniform.
        let drawn = draw_batch(&cube.bias, &vec![0.0; c.len()], 50_000, &mut r);
        let dark = drawn.iter().filter(|&&i| c[i].v == 0.0).count() as f64 / 50_000.0;
        assert!((dark - 0.1).abs() < 0.01, "{dark}");
    }

    /// 1.6's collate weights sum to 1 and follow the focus; all-zero is uniform.
    #[test]
    fn batch_weights_normalise_within_the_batch() {
        let w = [0.0, 1.0, 3.0];
        assert_eq!(batch_weights(&w, &[1, 2, 2, 0]), vec![1.0 / 7.0, 3.0 / 7.0, 3.0 / 7.0, 0.0]);
        assert_eq!(batch_weights(&w, &[0, 0]), vec![0.5, 0.5]);
        assert_eq!(primaries()[0], [1.0, 0.0, 0.0]);
        assert_eq!(primaries()[3], [0.0, 1.0, 1.0]);
    }
}
