//! Sample-quality metrics that do not depend on a model.
//!
//! [`hist2d_entropy`] is the exploration measure of the S-MEME report: the
//! Shannon entropy (nats) of a 2-D histogram, and the fraction of its bins that
//! are occupied. A uniform spread over all `n²` bins gives `ln(n²)`; a point mass
//! gives 0. [`distance`] holds the two-sample distances of the two-moons workload
//! (MMD, energy distance, sliced Wasserstein-1). [`median`] summarises
//! per-seed figures.

pub mod distance;

/// Entropy (nats) and occupied-bin fraction of the histogram of `(x, y)` points on
/// `bins × bins` equal cells over `[lo, hi)²`. Points outside (and non-finite
/// points) are ignored; with no point inside, both are 0.
pub fn hist2d_entropy(x: &[f64], y: &[f64], bins: usize, lo: f64, hi: f64) -> (f64, f64) {
    let mut counts = vec![0u64; bins * bins];
    let width = (hi - lo) / bins as f64;
    let mut total = 0u64;
    for (&u, &v) in x.iter().zip(y) {
        if !(u >= lo && u < hi && v >= lo && v < hi) {
            continue;
        }
        let i = (((u - lo) / width) as usize).min(bins - 1);
        let j = (((v - lo) / width) as usize).min(bins - 1);
        counts[i * bins + j] += 1;
        total += 1;
    }
    if total == 0 {
        return (0.0, 0.0);
    }
    let n = total as f64;
    let entropy = counts.iter().filter(|c| **c > 0).map(|c| {
        let p = *c as f64 / n;
        -p * p.ln()
    });
    let entropy: f64 = entropy.sum();
    let occupied = counts.iter().filter(|c| **c > 0).count() as f64 / counts.len() as f64;
    (entropy, occupied)
}

/// The median (the mean of the middle two for an even count); sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_gives_log_of_the_bin_count() {
        let bins = 10;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..bins {
            for j in 0..bins {
                for _ in 0..3 {
                    x.push((i as f64 + 0.5) * 0.2);
                    y.push((j as f64 + 0.5) * 0.2);
                }
            }
        }
        let (h, occ) = hist2d_entropy(&x, &y, bins, 0.0, 2.0);
        assert!((h - ((bins * bins) as f64).ln()).abs() < 1e-12);
        assert_eq!(occ, 1.0);
    }

    #[test]
    fn a_point_mass_has_zero_entropy() {
        let (h, occ) = hist2d_entropy(&[0.7; 50], &[1.3; 50], 50, 0.0, 2.0);
        assert_eq!(h, 0.0);
        assert_eq!(occ, 1.0 / 2500.0);
    }

    #[test]
    fn two_equal_cells_give_ln2_and_outside_points_are_ignored() {
        let (h, _) = hist2d_entropy(&[0.1, 1.9, 5.0, f64::NAN], &[0.1, 1.9, 0.5, 0.5], 4, 0.0, 2.0);
        assert!((h - 2f64.ln()).abs() < 1e-12);
    }
}
