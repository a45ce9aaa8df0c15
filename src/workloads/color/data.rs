//! The colour data of experiment 1.7 (spec §5: `ex_color.data`): the HSV cube
//! the model trains on, its sampling weights, its vibrancy, the soft labels,
//! and the RGB evaluation grid.

/// One colour of the HSV training cube.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CubeColor {
    pub h: f64,
    pub s: f64,
    pub v: f64,
    pub rgb: [f64; 3],
    /// `S·V` (the grid's; 1 for fully saturated, fully bright colours).
    pub vibrancy: f64,
    /// The sampler's weight: `(1/360)(1 − V) + (1/36)(1 − S)·V + S·V`.
    pub bias: f64,
}

/// numpy's `linspace(0, 1, n)`: `j·(1/(n − 1))`, the last exactly 1.
fn linspace01(n: usize) -> Vec<f64> {
    let step = 1.0 / (n - 1) as f64;
    (0..n).map(|j| if j + 1 == n { 1.0 } else { j as f64 * step }).collect()
}

/// skimage's `hsv2rgb` for one colour.
pub fn hsv_to_rgb(h: f64, s: f64, v: f64) -> [f64; 3] {
    let i = (6.0 * h).floor();
    let f = 6.0 * h - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    match (i as i64).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// The notebook's `ColorCube.from_hsv(h=arange_cyclic(10/360), s=linspace(0,1,10),
/// v=linspace(0,1,10))`: 36 hues × 10 saturations × 10 values, flat index
/// `100·ih + 10·is + iv`.
pub fn hsv_cube() -> Vec<CubeColor> {
    let hues: Vec<f64> = (0..36).map(|i| (i as f64 * (10.0 / 360.0)) % 1.0).collect();
    let (sats, vals) = (linspace01(10), linspace01(10));
    let mut out = Vec::with_capacity(3600);
    for &h in &hues {
        for &s in &sats {
            for &v in &vals {
                out.push(CubeColor {
                    h,
                    s,
                    v,
                    rgb: hsv_to_rgb(h, s, v),
                    vibrancy: s * v,
                    bias: (1.0 / 360.0) * (1.0 - v) + (1.0 / 36.0) * (1.0 - s) * v + s * v,
                });
            }
        }
    }
    out
}

/// `ColorCube.from_rgb(linspace(0, 1, n) ×3)`: `n³` colours, blue fastest.
pub fn rgb_grid(n: usize) -> Vec<[f64; 3]> {
    let axis = linspace01(n);
    let mut out = Vec::with_capacity(n * n * n);
    for &r in &axis {
        for &g in &axis {
            for &b in &axis {
                out.push([r, g, b]);
            }
        }
    }
    out
}

/// The labels `label scheme: color_soft` can compute: the seed's two, and the
/// three the origin adds later (`src/ex_color/labelling.py`: `desaturated` from
/// ex 2.8, `green` and `blue` from commit fcc5e9a).
pub const LABELS: &[&str] = &["red", "green", "blue", "vibrant", "desaturated"];

/// Label `name`'s probability for a colour: `red = (r(1 − g/2 − b/2))^10`
/// (green and blue alike, channels rotated), `vibrant = vibrancy^100`,
/// `desaturated = (1 − vibrancy)^10`. An unknown name is NaN.
pub fn label_value(name: &str, rgb: [f64; 3], vibrancy: f64) -> f64 {
    let [r, g, b] = rgb;
    match name {
        "red" => (r * (1.0 - g / 2.0 - b / 2.0)).powi(10),
        "green" => (g * (1.0 - r / 2.0 - b / 2.0)).powi(10),
        "blue" => (b * (1.0 - r / 2.0 - g / 2.0)).powi(10),
        "vibrant" => vibrancy.powi(100),
        "desaturated" => (1.0 - vibrancy).powi(10),
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each label is 1 on its own pure colour and near 0 on the others.
    #[test]
    fn each_label_marks_its_colours() {
        let (red, green, blue, white, grey) = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0; 3], [0.5; 3]);
        assert_eq!(label_value("red", red, 1.0), 1.0);
        assert_eq!(label_value("green", green, 1.0), 1.0);
        assert_eq!(label_value("blue", blue, 1.0), 1.0);
        assert_eq!(label_value("red", green, 1.0), 0.0);
        assert!(label_value("green", white, 0.0) < 1e-3);
        assert_eq!(label_value("vibrant", red, 1.0), 1.0);
        assert_eq!(label_value("desaturated", grey, 0.0), 1.0);
        assert_eq!(label_value("desaturated", red, 1.0), 0.0);
        assert!(label_value("nothing", red, 1.0).is_nan());
    }

    /// The spec's table of package values (§5).
    #[test]
    fn the_cube_matches_the_package_values() {
        let c = hsv_cube();
        assert_eq!(c.len(), 3600);
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol;
        assert_eq!(c[0].rgb, [0.0; 3]);
        assert!(close(c[0].bias, 0.0027778, 1e-7));
        assert!(close(c[1].rgb[0], 0.11111, 1e-5) && close(c[1].bias, 0.0055556, 1e-7));
        assert!(close(c[2].bias, 0.0083333, 1e-7));
        assert_eq!(c[99].rgb, [1.0, 0.0, 0.0]);
        assert_eq!((c[99].vibrancy, c[99].bias), (1.0, 1.0));
        assert_eq!(
            (label_value("red", c[99].rgb, c[99].vibrancy), label_value("vibrant", c[99].rgb, c[99].vibrancy)),
            (1.0, 1.0)
        );
        let want = [[0.77778, 0.0, 0.12963], [0.88889, 0.0, 0.14815], [1.0, 0.0, 0.16667]];
        for (k, idx) in [3597, 3598, 3599].into_iter().enumerate() {
            for (got, w) in c[idx].rgb.iter().zip(want[k]) {
                assert!(close(*got, w, 1e-5), "{idx}: {:?}", c[idx].rgb);
            }
        }
        assert!(close(c[3597].bias, 0.7783951, 1e-7) && close(c[3598].bias, 0.8891975, 1e-7));
        assert!(close(label_value("red", c[3599].rgb, 1.0), 0.4189, 1e-4));
        let total: f64 = c.iter().map(|x| x.bias).sum();
        assert!(close(total, 930.0, 1e-9), "{total}");
        let g = rgb_grid(8);
        assert_eq!(g.len(), 512);
        assert_eq!(g[1], [0.0, 0.0, 1.0 / 7.0]);
        assert_eq!(g[511], [1.0, 1.0, 1.0]);
    }
}
