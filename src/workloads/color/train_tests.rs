//! Tests of the colour training loop's pieces: the schedule it reads, its
//! parameter rules, the per-draw labels.

use super::*;

/// A timeline table: steps 0..=n, one phase, the given property columns.
fn timeline(n: usize, action_at: Option<(usize, &str)>, props: &[(&str, Vec<f64>)]) -> Table {
    let mut action = vec![String::new(); n + 1];
    if let Some((s, a)) = action_at {
        action[s] = a.to_string();
    }
    let mut t = Table::new()
        .with("step", ColumnData::I64((0..=n as i64).collect()))
        .with("phase", ColumnData::Str(vec!["All hues".into(); n + 1]))
        .with("action", ColumnData::Str(action))
        .with("phase_start", ColumnData::Bool((0..=n).map(|s| s == 0).collect()))
        .with("phase_end", ColumnData::Bool((0..=n).map(|s| s == n).collect()));
    for (name, v) in props {
        t = t.with(name, ColumnData::F64(v.clone()));
    }
    t
}

fn setup_for(form: &str) -> Setup {
    let mut p: Params =
        ColorAeParams::DEFS.iter().filter_map(|d| d.default.value().map(|v| (d.name.to_string(), v))).collect();
    p.insert("form".into(), Value::Str(form.into()));
    setup(&ColorAeParams::read(&p)).unwrap()
}

/// Regularizer columns that are not free for one, and a batch too large for
/// a pairwise criterion, are refused with the parameter to point at.
#[test]
fn setup_refuses_reserved_columns_and_huge_pairwise_batches() {
    let mut p: Params =
        ColorAeParams::DEFS.iter().filter_map(|d| d.default.value().map(|v| (d.name.to_string(), v))).collect();
    let reg = |column: &str, criterion: &str| {
        let mut m = BTreeMap::new();
        m.insert("column".to_string(), Value::Str(column.into()));
        m.insert("criterion".to_string(), Value::Str(criterion.into()));
        m.insert("affinity".to_string(), Value::Map(BTreeMap::new()));
        Value::Map(m)
    };
    let list = ["", "phase", "total", "data-hues", "reg-ok"].map(|c| reg(c, "norm")).to_vec();
    p.insert("regularizers".into(), Value::List(list));
    let errors = setup(&ColorAeParams::read(&p)).err().unwrap();
    assert_eq!(errors.iter().filter(|(k, m)| *k == "regularizers" && m.contains("cannot weigh")).count(), 4);
    // The seed's own set includes `separate`: batch 5000 is refused, 4096 is not.
    let mut p: Params =
        ColorAeParams::DEFS.iter().filter_map(|d| d.default.value().map(|v| (d.name.to_string(), v))).collect();
    p.insert("batch".into(), Value::Int(5000));
    assert_eq!(setup(&ColorAeParams::read(&p)).err().unwrap()[0].0, "batch");
    p.insert("batch".into(), Value::Int(4096));
    assert!(setup(&ColorAeParams::read(&p)).is_ok());
}

/// Each sampler column steers the focus one step late: `data-fraction`
/// and `data-vibrancies` the vibrancy, `data-hues` the hue; `loss-recon`
/// weights the reconstruction in the curriculum forms; actions split on
/// commas.
#[test]
fn the_schedule_reads_each_curriculum_column() {
    let ramp: Vec<f64> = (0..=4).map(|s| s as f64 / 4.0).collect();
    let ones = vec![1.0; 5];
    let t = timeline(
        4,
        Some((2, "anchor, anchor")),
        &[
            ("lr", ones.clone()),
            ("loss-recon", ramp.clone()),
            ("data-vibrancies", ramp.clone()),
            ("data-hues", ones.clone()),
        ],
    );
    let sched = Schedule::read(&t, &setup_for("ex_1_6")).unwrap();
    assert_eq!(sched.sampler_focus(0), Focus { vibrancy: None, hues: None });
    assert_eq!(sched.sampler_focus(3), Focus { vibrancy: Some(0.5), hues: Some(1.0) });
    assert_eq!(sched.recon.as_ref().unwrap()[2], 0.5);
    assert_eq!(sched.actions(2).collect::<Vec<_>>(), ["anchor", "anchor"]);
    assert_eq!(sched.actions(1).count(), 0);
    // data-fraction is 1.5's name for the vibrancy focus.
    let t = timeline(4, None, &[("lr", ones.clone()), ("loss-recon", ones.clone()), ("data-fraction", ramp.clone())]);
    let sched = Schedule::read(&t, &setup_for("ex_1_5")).unwrap();
    assert_eq!(sched.sampler_focus(1), Focus { vibrancy: Some(0.0), hues: None });
    assert!(sched.regs.iter().all(Option::is_none), "the sheet has no regularizer columns");
    // Both vibrancy columns, a data column under 1.7, a curriculum without
    // loss-recon: errors.
    let both = timeline(
        4,
        None,
        &[
            ("lr", ones.clone()),
            ("loss-recon", ones.clone()),
            ("data-fraction", ramp.clone()),
            ("data-vibrancies", ramp.clone()),
        ],
    );
    assert!(Schedule::read(&both, &setup_for("ex_1_5")).is_err());
    let t = timeline(4, None, &[("lr", ones.clone()), ("data-fraction", ramp.clone())]);
    let err = Schedule::read(&t, &setup_for("ex_1_7")).err().unwrap().to_string();
    assert!(err.contains("data-fraction") && err.contains("form ex_1_7"), "{err}");
    let err = Schedule::read(&t, &setup_for("ex_1_5")).err().unwrap().to_string();
    assert!(err.contains("loss-recon"), "{err}");
    // An action the objective does not know stops the run before it trains.
    let t = timeline(4, Some((3, "anchor, freeze")), &[("lr", ones.clone())]);
    let err = Schedule::read(&t, &setup_for("ex_1_7")).err().unwrap().to_string();
    assert!(err.contains("action `freeze` at step 3"), "{err}");
    // 1.7 weights a missing regularizer column 1, the curricula 0.
    assert_eq!((Form::Ex17.missing_weight(), Form::Ex15.missing_weight()), (1.0, 0.0));
}

/// Per-draw labels: the same colour drawn again can get the other label,
/// and over many draws the share of 1s is `scale·p`.
#[test]
fn per_draw_labels_redraw_and_average_to_scale_times_p() {
    let mut r = rng(3, "color_ae/labels");
    let (p, scale, n) = (0.6, 0.5, 200_000);
    let draws: Vec<f32> = (0..n).map(|_| draw_label(p, scale, &mut r)).collect();
    assert!(draws.iter().all(|d| *d == 0.0 || *d == 1.0));
    assert!(draws.windows(2).any(|w| w[0] != w[1]), "two draws of one colour differ somewhere");
    let freq = draws.iter().map(|d| *d as f64).sum::<f64>() / n as f64;
    // Binomial sd: sqrt(0.3·0.7/200 000) ≈ 0.001.
    assert!((freq - scale * p).abs() < 0.005, "{freq} vs {}", scale * p);
    // p = 0 never labels; scale·p = 1 always does.
    assert!((0..1000).all(|_| draw_label(0.0, 1.0, &mut r) == 0.0));
    assert!((0..1000).all(|_| draw_label(1.0, 1.0, &mut r) == 1.0));
}
