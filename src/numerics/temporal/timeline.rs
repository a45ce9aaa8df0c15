//! A dopesheet's values at every step (spec §2–3).
//!
//! Each property has a value `y` (in its space) and at most one running
//! transition `(y₀, y₁, T, t)`. It starts at its first keyed value (0 when it
//! has none). At a step where a row is the frame (the last row at that step),
//! each property keyed in that row gets its **next** keyed row as the target:
//! `T` = that row's step − this step; `|T| ≤ 10⁻⁸` sets `y` at once; an idle
//! property already at the target (within `10⁻⁸ + 10⁻⁵·|y₁|`) stays; otherwise
//! a transition starts from the current value. Each step advances `t` by one
//! and ends the transition once `t > T − 10⁻¹⁰` (`y = y₁`), then handles the
//! new step's keys. The value read is the timing function at `τ = t/T` while a
//! transition runs, else `y` (through `exp` in log space).
//!
//! So a key's step reads exactly its value, a property holds its first value
//! before its first key and its last after its last key, and — the origin's
//! quirk, kept — a key within the tolerance of the value before it is never
//! reached (1000 → 1000.005 → 0 holds 1000, then falls to 0).
//!
//! [`realize`] gives steps `0..=len` (len + 1 rows, as the origin's
//! `realize_timeline`), each with its phase and, at exact frames, its action.

use super::dopesheet::{Dopesheet, Space, Timing};

/// Every property's value at every step.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The property names, in the sheet's order.
    pub names: Vec<String>,
    /// The phase in force at each step ("" before the first named one).
    pub phase: Vec<String>,
    /// `ACTION` at the steps whose frame is exact ("" elsewhere).
    pub action: Vec<String>,
    /// Whether a phase starts at this step: a row with a `PHASE` cell keyed
    /// here (each such row starts a phase, so a repeated name is a new phase).
    pub phase_start: Vec<bool>,
    /// Whether a phase ends at this step: the step before the next phase's
    /// start, or the sheet's last keyed step for the last phase (the origin's
    /// `is_phase_end`).
    pub phase_end: Vec<bool>,
    /// `values[p][s]`: property `p` at step `s`.
    pub values: Vec<Vec<f64>>,
}

impl Timeline {
    /// The number of rows (steps `0..=len`).
    pub fn steps(&self) -> usize {
        self.phase.len()
    }
    /// Property `name` at every step.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.names.iter().position(|n| n == name).map(|p| self.values[p].as_slice())
    }
}

/// `y₀ → y₁` at `t` of `T` steps.
fn curve(timing: Timing, y0: f64, y1: f64, big_t: f64, t: f64) -> f64 {
    let tau = (t / big_t).clamp(0.0, 1.0);
    let d = y1 - y0;
    match timing {
        Timing::MinJerk => y0 + ((6.0 * d * tau - 15.0 * d) * tau + 10.0 * d) * tau * tau * tau,
        Timing::Linear => y0 + t * (d / big_t),
        Timing::Step => {
            if t < big_t {
                y0
            } else {
                y1
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Transition {
    y0: f64,
    y1: f64,
    big_t: f64,
    t: f64,
}

/// Realise a sheet: steps `0..=len`.
pub fn realize(sheet: &Dopesheet) -> Timeline {
    let n_props = sheet.properties.len();
    let len = sheet.len();
    let rows = &sheet.rows;
    let to_space = |p: usize, v: f64| match sheet.properties[p].space {
        Space::Linear => v,
        Space::Log => v.max(1e-10).ln(),
    };
    let from_space = |p: usize, y: f64| match sheet.properties[p].space {
        Space::Linear => y,
        Space::Log => y.exp(),
    };
    // The frame row of each exact step: the last row at that step.
    let mut frame = vec![None; len + 1];
    for (r, row) in rows.iter().enumerate() {
        frame[row.step] = Some(r);
    }
    // Next keyed row of each property after each row.
    let mut next = vec![vec![None; n_props]; rows.len()];
    #[allow(clippy::needless_range_loop)] // indexes rows × properties, transposed
    for p in 0..n_props {
        let mut after = None;
        for r in (0..rows.len()).rev() {
            next[r][p] = after;
            if rows[r].values[p].is_some() {
                after = Some(r);
            }
        }
    }
    let mut y: Vec<f64> =
        (0..n_props).map(|p| rows.iter().find_map(|r| r.values[p]).map_or(0.0, |v| to_space(p, v))).collect();
    let mut running: Vec<Option<Transition>> = vec![None; n_props];
    let read = |p: usize, y: &[f64], running: &[Option<Transition>]| match running[p] {
        Some(tr) => curve(sheet.properties[p].timing, tr.y0, tr.y1, tr.big_t, tr.t),
        None => y[p],
    };
    let keys = |s: usize, y: &mut [f64], running: &mut [Option<Transition>]| {
        let Some(r) = frame[s] else { return };
        for p in 0..n_props {
            if rows[r].values[p].is_none() {
                continue;
            }
            let Some(n) = next[r][p] else { continue };
            let target = to_space(p, rows[n].values[p].expect("a keyed row"));
            let big_t = rows[n].step as f64 - s as f64;
            if big_t.abs() <= 1e-8 {
                y[p] = target;
                running[p] = None;
                continue;
            }
            if running[p].is_none() && (y[p] - target).abs() <= 1e-8 + 1e-5 * target.abs() {
                continue;
            }
            let now = read(p, y, running);
            y[p] = now;
            running[p] = Some(Transition { y0: now, y1: target, big_t, t: 0.0 });
        }
    };

    // Before the first row: row 0's phase (the origin's frame is row 0 there).
    let mut phase_now = rows.first().and_then(|r| r.phase.clone()).unwrap_or_default();
    let mut out = Timeline {
        names: sheet.properties.iter().map(|p| p.name.clone()).collect(),
        phase: Vec::with_capacity(len + 1),
        action: Vec::with_capacity(len + 1),
        phase_start: vec![false; len + 1],
        phase_end: vec![false; len + 1],
        values: vec![Vec::with_capacity(len + 1); n_props],
    };
    let mut starts: Vec<usize> = rows.iter().filter(|r| r.phase.is_some() && r.step <= len).map(|r| r.step).collect();
    starts.dedup();
    let last_step = rows.iter().map(|r| r.step).max().unwrap_or(0).min(len);
    for (i, &at) in starts.iter().enumerate() {
        out.phase_start[at] = true;
        let end = starts.get(i + 1).map_or(last_step, |next| next.saturating_sub(1)).max(at);
        out.phase_end[end] = true;
    }
    // The phase row in force: the last row at or before the frame with a PHASE.
    let mut last_row: Option<usize> = None;
    #[allow(clippy::needless_range_loop)] // s is the step, not only an index
    for s in 0..=len {
        if s > 0 {
            for (p, tr) in running.iter_mut().enumerate() {
                if let Some(t) = tr {
                    t.t += 1.0;
                    if t.t > t.big_t - 1e-10 {
                        y[p] = t.y1;
                        *tr = None;
                    }
                }
            }
        }
        keys(s, &mut y, &mut running);
        // Rows up to this step (sorted): advance the phase.
        let upto = rows.partition_point(|r| r.step <= s);
        let start = last_row.map_or(0, |r| r + 1);
        for row in &rows[start.min(upto)..upto] {
            if let Some(ph) = &row.phase {
                phase_now = ph.clone();
            }
        }
        if upto > 0 {
            last_row = Some(upto - 1);
        }
        out.phase.push(phase_now.clone());
        out.action.push(frame[s].and_then(|r| rows[r].action.clone()).unwrap_or_default());
        for p in 0..n_props {
            out.values[p].push(from_space(p, read(p, &y, &running)));
        }
    }
    out
}
