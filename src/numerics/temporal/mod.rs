//! Keyframed hyperparameter schedules: the dopesheet format of `mini.temporal`
//! (`z0u/ex-color-transformer`, seed 003) and the timeline it realises.
//!
//! A **dopesheet** is a CSV file: `STEP`, `PHASE`, `ACTION`, then one column per
//! property (a learning rate, a loss weight…). Each non-blank property cell is a
//! keyframe; between keyframes a property moves along a minimum-jerk curve (or
//! linearly, or in a step, per property), before its first key it holds its
//! first value and after its last key its last value. [`dopesheet::parse`]
//! reads one, [`timeline::realize`] gives every property's value at every step.
//!
//! The behaviour is the origin package's, as `shared/data/temporal-and-color-spec.md`
//! specifies it (parsing §1, timeline §2, realisation §3), with one deliberate
//! difference: where the origin reads a malformed cell as "not keyed" with a
//! warning (a `+0` step, a fraction after the last anchor, an unknown timing
//! name), this parser rejects the sheet, naming every bad cell by line and
//! column at once.

pub mod dopesheet;
pub mod timeline;

pub use dopesheet::{Dopesheet, Property, SheetError, Space, Timing, parse};
pub use timeline::{Timeline, realize};

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = crate::checkout(&format!("tests/fixtures/dopesheets/{name}"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn steps(text: &str) -> Vec<usize> {
        let sheet = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        let mut by_line: Vec<(usize, usize)> = sheet.rows.iter().map(|r| (r.line, r.step)).collect();
        by_line.sort();
        by_line.into_iter().map(|(_, s)| s).collect()
    }

    fn sheet_of_steps(cells: &[&str]) -> String {
        let mut s = String::from("STEP,PHASE,ACTION,x\n");
        for c in cells {
            s.push_str(&format!("{c},,,1\n"));
        }
        s
    }

    /// Every STEP form resolves as the spec's examples say.
    #[test]
    fn step_cells_resolve_as_specified() {
        assert_eq!(steps(&sheet_of_steps(&["0", "+2", "+0.5", "-1", "10"])), vec![0, 2, 5, 9, 10]);
        assert_eq!(steps(&sheet_of_steps(&["0", "+0.5", "5"])), vec![0, 2, 5], "round half to even");
        assert_eq!(steps(&sheet_of_steps(&["0", "+0.5", "7"])), vec![0, 4, 7], "3.5 rounds to 4");
        assert_eq!(steps(&sheet_of_steps(&["0", "+20", "10"])), vec![0, 20, 10], "no clamping to the bracket");
        assert_eq!(steps(&sheet_of_steps(&["-5", "3"])), vec![0, 3], "negatives become 0");
        assert_eq!(steps(&sheet_of_steps(&["007", "-.25", "15"])), vec![7, 13, 15]);
        let sheet = parse(&sheet_of_steps(&["0", "+20", "10"])).unwrap();
        assert_eq!(sheet.len(), 21);
        assert_eq!(sheet.rows.iter().map(|r| r.step).collect::<Vec<_>>(), vec![0, 10, 20], "ordered by step");
    }

    /// Malformed cells are errors with their line and column, all at once.
    #[test]
    fn bad_sheets_name_every_bad_cell() {
        let bad = ["+0", "-0", "+05", "+1.0", "+1.", "+1e3", "1.5", "", "x"];
        let mut text = String::from("STEP,PHASE,ACTION,lr:log:wobbly,x\n0,,,1,1\n");
        for c in bad {
            text.push_str(&format!("{c},,,,1\n"));
        }
        text.push_str("10,,,,oops\n5,,,,1\n+0.5,,,,\n");
        let errors = parse(&text).expect_err("a bad sheet");
        let lines: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.column.as_str())).collect();
        assert!(lines.contains(&(1, "lr:log:wobbly")), "{errors:?}");
        for (i, _) in bad.iter().enumerate() {
            assert!(lines.contains(&(3 + i, "STEP")), "line {}: {errors:?}", 3 + i);
        }
        assert!(lines.contains(&(12, "x")), "{errors:?}");
        assert!(lines.contains(&(13, "STEP")), "a decreasing anchor: {errors:?}");
        assert!(lines.contains(&(14, "STEP")), "a fraction after the last anchor: {errors:?}");
        assert!(errors.iter().any(|e| e.message.contains("must not decrease")));
        // Required columns.
        let errors = parse("STEP,lr\n0,1\n").expect_err("no PHASE/ACTION");
        assert_eq!(errors.iter().filter(|e| e.message.contains("required column")).count(), 2);
        // A relative row with no anchor above.
        let errors = parse("STEP,PHASE,ACTION,x\n+5,,,1\n").expect_err("no anchor");
        assert!(errors[0].to_string().starts_with("line 2, column STEP: a relative step needs an anchor above"));
    }

    /// The minimum-jerk curve at hand-computed points, and the other timings.
    #[test]
    fn timings_at_hand_computed_points() {
        // 0 → 1 over 10 steps: 10τ³ − 15τ⁴ + 6τ⁵.
        let t = realize(
            &parse("STEP,PHASE,ACTION,a,b::linear,c::step,d:log:linear\n0,,,0,0,0,1\n10,,,1,1,1,100\n").unwrap(),
        );
        assert_eq!(t.steps(), 12);
        let a = t.get("a").unwrap();
        for (s, want) in [(0, 0.0), (1, 0.00856), (3, 0.16308), (5, 0.5), (8, 0.94208), (10, 1.0), (11, 1.0)] {
            assert!((a[s] - want).abs() < 1e-12, "minjerk at {s}: {} vs {want}", a[s]);
        }
        assert!((t.get("b").unwrap()[3] - 0.3).abs() < 1e-12);
        assert_eq!(t.get("c").unwrap()[9], 0.0);
        assert_eq!(t.get("c").unwrap()[10], 1.0);
        // Log space, linear timing: geometric steps 1 → 100.
        assert!((t.get("d").unwrap()[5] - 10.0).abs() < 1e-9);
        // The origin's quirk: a key within tolerance of the current value is never reached.
        let q = realize(&parse("STEP,PHASE,ACTION,x::linear\n0,,,1000\n10,,,1000.005\n20,,,0\n").unwrap());
        let x = q.get("x").unwrap();
        assert_eq!(x[10], 1000.0);
        assert!((x[15] - 500.0).abs() < 1e-9);
    }

    /// The spec's worked example (§4) on the seed's sheet and on HEAD's.
    #[test]
    fn the_worked_examples_realise_as_published() {
        #[rustfmt::skip]
        let seed: &[(usize, [f64; 6])] = &[
            (0, [1e-8, 0.005, 0.0, 0.0, 0.0, 0.01]),
            (5, [0.005000005, 0.005000000, 9.8506e-8, 7.976019e-11, 7.976019e-10, 0.01]),
            (10, [0.01, 0.005000003, 7.76192e-7, 6.361661e-10, 6.361661e-9, 0.009999999]),
            (250, [0.01, 0.0050428, 0.005, 8.56e-6, 8.56e-5, 0.009988535]),
            (500, [0.01, 0.0052896, 0.01, 5.792e-5, 0.0005792, 0.009915256]),
            (2500, [0.01, 0.01, 0.0258675, 0.001, 0.01, 0.00505]),
            (3750, [0.01, 0.03, 0.04460194, 0.0055, 0.02966797, 0.001124805]),
            (5000, [0.01, 0.05, 0.05, 0.01, 0.105, 0.0001]),
            (6250, [0.01, 0.05, 0.03, 0.01, 0.180332, 0.0001]),
            (7500, [0.01, 0.05, 0.01, 0.01, 0.2, 0.0001]),
            (10000, [0.003, 0.05, 0.01, 0.01, 0.2, 0.0001]),
        ];
        #[rustfmt::skip]
        let head: &[(usize, [f64; 6])] = &[
            (0, [1e-8, 0.001, 0.02, 0.01, 0.02, 0.006]),
            (5, [0.005000005, 0.001000187, 0.02000000, 0.01000000, 0.02, 0.006]),
            (10, [0.01, 0.001001475, 0.02000004, 0.01000002, 0.02, 0.006]),
            (250, [0.01, 0.0105, 0.0205136, 0.01022004, 0.02, 0.006]),
            (500, [0.01, 0.02, 0.0234752, 0.0116264, 0.02, 0.006]),
            (2500, [0.01, 0.01, 0.08, 0.105, 0.02, 0.006]),
            (3750, [0.01, 0.0055, 0.05, 0.180332, 0.02, 0.006]),
            (5000, [0.01, 0.001, 0.02, 0.2, 0.02, 0.006]),
            (6250, [0.009482422, 0.001, 0.02, 0.2, 0.02, 0.0031]),
            (7500, [0.0075, 0.001, 0.02, 0.2, 0.02, 0.0002]),
            (10000, [0.005, 0.001, 0.02, 0.2, 0.02, 0.0002]),
        ];
        let cols = ["lr", "reg-separate", "reg-planar", "reg-norm", "reg-norm-v", "reg-polar"];
        for (file, table) in [("ex-1.7-dopesheet.csv", seed), ("ex-1.7-dopesheet.head.csv", head)] {
            let sheet = parse(&fixture(file)).unwrap();
            assert_eq!(sheet.len(), 10_001, "{file}");
            let mut resolved: Vec<usize> = sheet.rows.iter().map(|r| r.step).collect();
            resolved.dedup();
            assert_eq!(resolved, vec![0, 10, 500, 2500, 3500, 5000, 7500, 10000], "{file}");
            let t = realize(&sheet);
            assert_eq!(t.steps(), 10_002);
            assert!(t.phase.iter().all(|p| p == "Train"), "{file}: one phase");
            for (step, want) in table {
                for (c, w) in cols.iter().zip(want) {
                    let v = t.get(c).unwrap()[*step];
                    // The published values carry 7 significant digits.
                    assert!((v - w).abs() <= 5e-7 * w.abs().max(1e-9) + 1e-12, "{file} {c} at {step}: {v} vs {w}");
                }
            }
        }
    }

    /// Every published sheet parses; phases and actions land on their steps.
    #[test]
    fn every_published_sheet_parses() {
        let dir = crate::checkout("tests/fixtures/dopesheets");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let sheet = parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            let t = realize(&sheet);
            assert_eq!(t.steps(), sheet.len() + 1);
            assert!(t.values.iter().flatten().all(|v| v.is_finite()), "{}", path.display());
            n += 1;
        }
        assert!(n >= 16, "{n} sheets");
        let t = realize(&parse(&fixture("ex-1.6-stepped-dopesheet.csv")).unwrap());
        assert_eq!(t.phase[0], "Primary & secondary");
        assert_eq!(t.phase[499], "Primary & secondary");
        assert_eq!(t.phase[500], "All hues");
        assert_eq!(t.action[500], "anchor");
        assert_eq!(t.action[501], "");
        assert_eq!(t.phase[10_000], "Full color space");
        // step-end: the value jumps at the next key.
        let sep = t.get("reg-separate").unwrap();
        assert_eq!((sep[99], sep[100]), (0.0, 0.15));
        // Phase flags: each PHASE row starts a phase; it ends the step before the next.
        let starts: Vec<usize> = (0..t.steps()).filter(|&s| t.phase_start[s]).collect();
        let ends: Vec<usize> = (0..t.steps()).filter(|&s| t.phase_end[s]).collect();
        // The sheet repeats "Primary & secondary" at 100 and 300: new phases.
        assert_eq!(starts, [0, 100, 300, 500, 1000, 5000, 6500]);
        assert_eq!(ends, [99, 299, 499, 999, 4999, 6499, sheet_last_step(&t)]);
    }

    /// The last step of the sheet behind a realised timeline (its rows are `0..=len`, len one past it).
    fn sheet_last_step(t: &super::Timeline) -> usize {
        t.steps() - 2
    }

    /// A repeated phase name is a new phase, with its own start and end.
    #[test]
    fn a_repeated_phase_name_is_a_new_phase() {
        let sheet = parse("STEP,PHASE,ACTION,lr\n0,A,,0.1\n10,B,,0.1\n20,A,,0.1\n30,,,0.1\n").unwrap();
        let t = realize(&sheet);
        let starts: Vec<usize> = (0..t.steps()).filter(|&s| t.phase_start[s]).collect();
        let ends: Vec<usize> = (0..t.steps()).filter(|&s| t.phase_end[s]).collect();
        assert_eq!(starts, [0, 10, 20]);
        assert_eq!(ends, [9, 19, 30]);
        assert_eq!((t.phase[9].as_str(), t.phase[10].as_str(), t.phase[20].as_str()), ("A", "B", "A"));
    }
}
