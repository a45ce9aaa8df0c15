//! Triangle geometry of the S-MEME workload (seed 000): sampling valid side
//! triples, classifying them by sides and by angles, and checking validity.
//!
//! The classification follows the seed's `classify_triangle_sides` and
//! `classify_triangle_angles` exactly, including numpy's `isclose` semantics
//! (`|a − b| ≤ atol + rtol·|b|` with numpy's default `rtol = 1e-5`) and the
//! behaviour on degenerate input: a zero side makes the cosine NaN, every
//! comparison false, and the triangle `obtuse`, as in numpy.
//! Shared by the generate, label and validate stages.

use rand::Rng;

/// numpy's default relative tolerance in `isclose`.
const NUMPY_RTOL: f64 = 1e-5;

/// `numpy.isclose(a, b, atol=atol)`.
pub fn isclose(a: f64, b: f64, atol: f64) -> bool {
    (a - b).abs() <= atol + NUMPY_RTOL * b.abs()
}

/// Classification by side lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SideType {
    Equilateral,
    Isosceles,
    Scalene,
}

/// Classification by the largest angle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AngleType {
    Right,
    Acute,
    Obtuse,
}

impl SideType {
    pub const ALL: [SideType; 3] = [SideType::Equilateral, SideType::Isosceles, SideType::Scalene];
    pub fn name(self) -> &'static str {
        match self {
            SideType::Equilateral => "equilateral",
            SideType::Isosceles => "isosceles",
            SideType::Scalene => "scalene",
        }
    }
}

impl AngleType {
    pub const ALL: [AngleType; 3] = [AngleType::Right, AngleType::Acute, AngleType::Obtuse];
    pub fn name(self) -> &'static str {
        match self {
            AngleType::Right => "right",
            AngleType::Acute => "acute",
            AngleType::Obtuse => "obtuse",
        }
    }
}

fn sorted3(a: f64, b: f64, c: f64) -> [f64; 3] {
    let mut s = [a, b, c];
    s.sort_by(f64::total_cmp);
    s
}

/// The seed's `classify_triangle_sides(a, b, c, tol)`.
pub fn classify_sides(a: f64, b: f64, c: f64, tol: f64) -> SideType {
    let s = sorted3(a, b, c);
    let lo = isclose(s[0], s[1], tol);
    let hi = isclose(s[1], s[2], tol);
    if lo && hi {
        SideType::Equilateral
    } else if lo || hi {
        SideType::Isosceles
    } else {
        SideType::Scalene
    }
}

/// The seed's `classify_triangle_angles(a, b, c, tol)`: the angle opposite the
/// longest side, in degrees, is `right` within `tol·90°`.
pub fn classify_angles(a: f64, b: f64, c: f64, tol: f64) -> AngleType {
    let [a, b, c] = sorted3(a, b, c);
    let cos_c = ((a * a + b * b - c * c) / (2.0 * a * b)).clamp(-1.0, 1.0);
    let angle = cos_c.acos().to_degrees();
    if isclose(angle, 90.0, tol * 90.0) {
        AngleType::Right
    } else if angle < 90.0 {
        AngleType::Acute
    } else {
        AngleType::Obtuse
    }
}

/// The seed's `sample_valid_triangle_sides`: uniform draws from [0, 1)³ kept when
/// the strict triangle inequality holds, optionally sorted ascending.
pub fn sample_valid_sides(n: usize, rng: &mut impl Rng, sort_sides: bool) -> Vec<[f64; 3]> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (a, b, c): (f64, f64, f64) = (rng.random(), rng.random(), rng.random());
        if a + b > c && b + c > a && c + a > b {
            out.push(if sort_sides { sorted3(a, b, c) } else { [a, b, c] });
        }
    }
    out
}

/// Validity of one generated triple in side-length units, as the seed's
/// `triangle_validity_numpy`: every side within `[-eps, 1 + eps]`, and the sorted
/// sides satisfy `c ≤ a + b − eps`. The margin is `a + b − c`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validity {
    /// Every coordinate is finite (a diverged sampler particle is not; it fails
    /// every check, as NaN does in the seed's numpy code).
    pub finite: bool,
    pub negative: bool,
    pub over_one: bool,
    pub inequality_ok: bool,
    pub margin: f64,
}

/// The seed's `is_valid_triangle_torch` (its S-MEME tuning loop): the sorted
/// sides satisfy all three strict triangle inequalities — no range check and no
/// margin, unlike [`Validity`] (`triangle_validity_numpy`). A negative side fails
/// it (sorted, `a + b > c` needs `b > c`); sides above 1 pass. NaN fails.
pub fn is_triangle_strict(x: [f64; 3]) -> bool {
    let [a, b, c] = sorted3(x[0], x[1], x[2]);
    a + b > c && a + c > b && b + c > a
}

impl Validity {
    pub fn check(x: [f64; 3], eps: f64) -> Validity {
        let negative = x.iter().any(|v| *v < -eps);
        let over_one = x.iter().any(|v| *v > 1.0 + eps);
        let [a, b, c] = sorted3(x[0], x[1], x[2]);
        let finite = x.iter().all(|v| v.is_finite());
        Validity { finite, negative, over_one, inequality_ok: c <= a + b - eps, margin: a + b - c }
    }
    pub fn valid(&self) -> bool {
        self.finite && !self.negative && !self.over_one && self.inequality_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn side_types() {
        assert_eq!(classify_sides(0.5, 0.5, 0.505, 0.01), SideType::Equilateral);
        assert_eq!(classify_sides(0.3, 0.5, 0.505, 0.01), SideType::Isosceles);
        assert_eq!(classify_sides(0.3, 0.5, 0.7, 0.01), SideType::Scalene);
    }

    #[test]
    fn angle_types() {
        assert_eq!(classify_angles(0.3, 0.4, 0.5, 0.01), AngleType::Right);
        assert_eq!(classify_angles(0.5, 0.5, 0.5, 0.01), AngleType::Acute);
        assert_eq!(classify_angles(0.2, 0.3, 0.45, 0.01), AngleType::Obtuse);
        // 89.5° is within tol·90 = 0.9° of a right angle.
        let c = (0.3f64.powi(2) + 0.4f64.powi(2) - 2.0 * 0.3 * 0.4 * 89.5f64.to_radians().cos()).sqrt();
        assert_eq!(classify_angles(0.3, 0.4, c, 0.01), AngleType::Right);
        // Degenerate: numpy gives NaN → obtuse.
        assert_eq!(classify_angles(0.0, 0.4, 0.4, 0.01), AngleType::Obtuse);
    }

    #[test]
    fn isclose_matches_numpy_including_rtol() {
        // numpy.isclose(1.0, 1.0 + 1e-5, atol=0) is True because of rtol.
        assert!(isclose(1.0, 1.0 + 1e-5, 0.0));
        assert!(!isclose(1.0, 1.0 + 2e-5, 0.0));
    }

    #[test]
    fn sampled_sides_are_valid_and_sorted() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for [a, b, c] in sample_valid_sides(1000, &mut rng, true) {
            assert!(a <= b && b <= c && a + b > c && c < 1.0 && a >= 0.0);
        }
    }

    #[test]
    fn validity_reasons() {
        assert!(Validity::check([0.3, 0.4, 0.5], 1e-3).valid());
        assert!(Validity::check([-0.1, 0.4, 0.5], 1e-3).negative);
        assert!(Validity::check([0.3, 0.4, 1.2], 1e-3).over_one);
        assert!(!Validity::check([0.1, 0.2, 0.3], 1e-3).inequality_ok);
    }
}
