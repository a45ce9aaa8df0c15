//! The colour loss against hand values and against burn's autodiff of the
//! same computation, for every criterion in every form.

use super::loss::*;
use super::model::{LATENT, N_PARAMS, SHAPES, forward};
use burn::tensor::activation::{gelu as burn_gelu, sigmoid};
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};

fn close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

fn reg(column: &str, criterion: Criterion, affinity: Vec<(usize, f32)>) -> Regularizer {
    Regularizer { column: column.into(), criterion, affinity }
}

/// Each regularizer's per-sample losses against hand values.
#[test]
fn regularizers_at_hand_values() {
    let z = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 0.0, 0.0]];
    assert_eq!(polar_losses(&z), vec![0.0, 2.0, 29.0, 20.0]);
    assert_eq!(planar_losses(&z), vec![0.0, 0.0, 25.0, 0.0]);
    let u = unit_losses(&z);
    assert!(close(u[2], (30f32.sqrt() - 1.0).powi(2), 1e-6) && u[3] == 16.0 && u[0] == 0.0);
    // Two orthogonal unit vectors: d = 1000²·2, Sᵢ = 1/(2·10⁶ + 1), Lᵢ = √Sᵢ.
    let (l, s) = separate_losses(&z[..2]);
    let want = 1.0 / (2.0e6f32 + 1.0);
    assert!(close(s[0], want, 1e-5) && close(l[1], want.sqrt(), 1e-5), "{l:?}");
    // A duplicate and a point on the same ray are degenerate pairs: masked.
    let (l, _) = separate_losses(&[[1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]);
    assert_eq!(l, vec![0.0, 0.0, 0.0]);
    // Cosine: e₁ against e₂ (0), against (1, 1, 0, 0)/√2 (0.5¹⁰·…), itself masked.
    let c = cosine_losses(&[[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]);
    let h = 0.5f32.sqrt().powi(10);
    assert!(close(c[0], h, 1e-5) && close(c[1], h, 1e-5) && close(c[2], 3.0 * h, 1e-5), "{c:?}");
    // 1.5/1.6's inverse separation: (0,0), (1,0): off-diagonal 1/(1 + 1e-6) twice,
    // the diagonal 10⁶ twice, over 4.
    let v = inverse_separation(&[[0.0, 0.0, 5.0, 5.0], [1.0, 0.0, -5.0, 0.0]]);
    assert!(close(v, (2.0e6 + 2.0 / (1.0 + 1e-6)) / 4.0, 1e-6), "{v}");
}

/// The seed's batch-sum quirk: `separate`'s term of B samples is ΣLᵢ.
#[test]
fn the_seed_separate_sums_over_the_batch() {
    let p = vec![0.05f32; N_PARAMS];
    let x = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let regs = seed_regularizers();
    let labels = vec![vec![0.0; 3], vec![0.0; 3]];
    let batch = Batch { x: &x, labels: &labels, weights: None };
    let ws = [0.0, 1.0, 0.0, 0.0, 0.0];
    let mut g = vec![0f32; N_PARAMS];
    let t = loss_and_grad(&p, Form::Ex17, &regs, &batch, &StepWeights { recon: None, regs: &ws, anchor: None }, &mut g);
    let z: Vec<[f32; LATENT]> = x.iter().map(|v| forward(&p, *v).z).collect();
    let sum: f32 = separate_losses(&z).0.iter().sum();
    assert!(close(t.regs[1].unwrap() as f32, sum, 1e-6), "{t:?} vs {sum}");
    // Zero weight skips a term.
    assert_eq!(t.regs[0], None);
    assert_eq!(t.regs[2], None);
}

/// The anchor before its snapshot: 1.5 records a zero term, 1.6 skips it.
#[test]
fn the_anchor_before_its_snapshot() {
    let p = vec![0.05f32; N_PARAMS];
    let x = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
    let regs = curriculum_regularizers();
    let batch = Batch { x: &x, labels: &[], weights: None };
    let ws = [0.0, 0.0, 0.0, 0.5];
    let mut g = vec![0f32; N_PARAMS];
    let w = StepWeights { recon: Some(1.0), regs: &ws, anchor: None };
    assert_eq!(loss_and_grad(&p, Form::Ex15, &regs, &batch, &w, &mut g).regs[3], Some(0.0));
    assert_eq!(loss_and_grad(&p, Form::Ex16, &regs, &batch, &w, &mut g).regs[3], None);
    // At its snapshot the term is 0; moved away, it is the mean squared drift.
    let refs = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    let snap: Vec<[f32; LATENT]> = refs.iter().map(|c| forward(&p, *c).z).collect();
    let w = StepWeights { recon: Some(1.0), regs: &ws, anchor: Some((&refs, &snap)) };
    assert_eq!(loss_and_grad(&p, Form::Ex16, &regs, &batch, &w, &mut g).regs[3], Some(0.0));
    let moved: Vec<[f32; LATENT]> = snap.iter().map(|z| z.map(|v| v + 0.5)).collect();
    let w = StepWeights { recon: Some(1.0), regs: &ws, anchor: Some((&refs, &moved)) };
    let t = loss_and_grad(&p, Form::Ex16, &regs, &batch, &w, &mut g).regs[3].unwrap();
    assert!((t - 0.25).abs() < 1e-6, "{t}");
}

/// A case for the autodiff comparison.
struct Case {
    form: Form,
    regs: Vec<Regularizer>,
    weights: Vec<f64>,
    recon: Option<f64>,
    batch_weights: bool,
    anchor: bool,
}

/// The loss and every gradient equal burn's autodiff of the same computation:
/// each form with all its terms, then each criterion alone with a weight that
/// makes it dominate the reconstruction, with and without affinities.
#[test]
fn gradients_match_burn_autodiff() {
    use Criterion::*;
    let mut cases = vec![
        Case {
            form: Form::Ex17,
            regs: seed_regularizers(),
            weights: vec![0.7, 0.3, 1.3, 0.4, 0.9],
            recon: None,
            batch_weights: false,
            anchor: false,
        },
        Case {
            form: Form::Ex15,
            regs: curriculum_regularizers(),
            weights: vec![0.3, 0.2, 0.25, 0.6],
            recon: Some(0.8),
            batch_weights: false,
            anchor: true,
        },
        Case {
            form: Form::Ex16,
            regs: curriculum_regularizers(),
            weights: vec![0.3, 0.2, 0.25, 0.6],
            recon: Some(1.0),
            batch_weights: true,
            anchor: true,
        },
    ];
    for form in [Form::Ex17, Form::Ex15, Form::Ex16] {
        for (criterion, w) in [
            (Polar, 100.0),
            (Planar, 100.0),
            (Norm, 100.0),
            (Separate, 1e4),
            (SeparateCosine, 100.0),
            (SeparateInverse, 1e-2),
            (Anchor, 100.0),
        ] {
            let affinities: Vec<Vec<(usize, f32)>> =
                if criterion.is_scalar() { vec![vec![]] } else { vec![vec![], vec![(0, 0.7), (1, 0.6)]] };
            for affinity in affinities {
                cases.push(Case {
                    form,
                    regs: vec![reg("reg-x", criterion, affinity)],
                    weights: vec![w],
                    recon: if form == Form::Ex17 { None } else { Some(1.0) },
                    batch_weights: form == Form::Ex16,
                    anchor: criterion == Anchor,
                });
            }
        }
    }
    // 1.6's primaries phase (no sampler weights) and a reconstruction weighed 0.
    cases.push(Case {
        form: Form::Ex16,
        regs: curriculum_regularizers(),
        weights: vec![0.3, 0.2, 0.25, 0.6],
        recon: Some(0.0),
        batch_weights: false,
        anchor: true,
    });
    for case in &cases {
        gradients_match(case);
    }
}

fn gradients_match(case: &Case) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    let layers = crate::numerics::nn::init_layers(&SHAPES, false, &mut rng);
    let p: Vec<f32> = layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b).copied()).collect();
    assert_eq!(p.len(), N_PARAMS);
    let b = 7;
    let mut x: Vec<[f32; 3]> = (0..b).map(|_| [rng.random(), rng.random(), rng.random()]).collect();
    // A colour drawn twice (the samplers draw with replacement): the pairwise
    // criteria's masks and the inverse separation's 10⁶ duplicate term.
    x[6] = x[2];
    let red: Vec<f32> = (0..b).map(|i| if i % 3 == 0 { 0.0 } else { rng.random() }).collect();
    let vib: Vec<f32> = (0..b).map(|_| rng.random()).collect();
    let labels = vec![red, vib];
    let bw: Vec<f32> = {
        let raw: Vec<f32> = (0..b).map(|_| rng.random::<f32>()).collect();
        let s: f32 = raw.iter().sum();
        raw.iter().map(|v| v / s).collect()
    };
    let refs: Vec<[f32; 3]> =
        (0..6).map(|k| super::data::hsv_to_rgb(k as f64 / 6.0, 1.0, 1.0).map(|v| v as f32)).collect();
    let snap: Vec<[f32; LATENT]> = (0..6).map(|_| std::array::from_fn(|_| rng.random::<f32>() - 0.5)).collect();
    let batch = Batch { x: &x, labels: &labels, weights: case.batch_weights.then_some(&bw[..]) };
    // The weights the reference applies: ones where the batch has none.
    let bw: Vec<f32> = if case.batch_weights { bw.clone() } else { vec![1.0; b] };
    let sw =
        StepWeights { recon: case.recon, regs: &case.weights, anchor: case.anchor.then_some((&refs[..], &snap[..])) };
    let mut grad = vec![0f32; N_PARAMS];
    let terms = loss_and_grad(&p, case.form, &case.regs, &batch, &sw, &mut grad);

    let dev = crate::workloads::train_device(crate::engine::stage::Backend::Flex);
    let lin = crate::numerics::nn::linears(&layers, &dev, 0);
    let mat = |v: &[[f32; 3]]| {
        Tensor::<2>::from_data(TensorData::new(v.iter().flatten().copied().collect::<Vec<f32>>(), [v.len(), 3]), &dev)
    };
    let net = |xt: Tensor<2>| {
        let z = lin[1].forward(burn_gelu(lin[0].forward(xt)));
        let y = sigmoid(lin[3].forward(burn_gelu(lin[2].forward(z.clone()))));
        (z, y)
    };
    let xt = mat(&x);
    let (z, y) = net(xt.clone());
    let vec1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev);
    let bf = b as f32;
    let per_sample_recon = (y - xt).powi_scalar(2).mean_dim(1).reshape([b]);
    let mut total = match (case.form, case.recon) {
        (Form::Ex16, Some(w)) => (per_sample_recon * vec1(&bw)).mean() * w as f32,
        (_, Some(w)) => per_sample_recon.mean() * w as f32,
        (_, None) => per_sample_recon.mean(),
    };
    let norms = z.clone().powi_scalar(2).sum_dim(1).sqrt(); // [b, 1]
    let unit_pts = z.clone() / (norms.clone() + 1e-8);
    for (k, r) in case.regs.iter().enumerate() {
        let w = case.weights[k] as f32;
        let aff: Option<Vec<f32>> = (!r.affinity.is_empty()).then(|| {
            (0..b).map(|i| r.affinity.iter().map(|(l, v)| labels[*l][i] * v).sum::<f32>().clamp(0.0, 1.0)).collect()
        });
        let reduce = |l: Tensor<1>, half: bool| match (&aff, case.form) {
            (Some(a), _) => (l * vec1(a)).sum() / (a.iter().sum::<f32>() + 1e-8),
            (None, Form::Ex17) => l.sum() / (bf + 1e-8),
            (None, Form::Ex15) => l.mean() / if half { 2.0 } else { 1.0 },
            (None, Form::Ex16) => (l * vec1(&bw)).mean(),
        };
        let term = match r.criterion {
            Criterion::Polar => {
                let e1 = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 0.0], [1, LATENT]), &dev);
                reduce((z.clone() - e1).powi_scalar(2).sum_dim(1).reshape([b]), false)
            }
            Criterion::Planar => reduce(z.clone().slice([0..b, 2..4]).powi_scalar(2).sum_dim(1).reshape([b]), true),
            Criterion::Norm => reduce((norms.clone() - 1.0).powi_scalar(2).reshape([b]), false),
            Criterion::Separate => {
                let diffs = (unit_pts.clone().unsqueeze_dim::<3>(1) - unit_pts.clone().unsqueeze_dim::<3>(0)) * 1000.0;
                let sq = diffs.powi_scalar(2).sum_dim(2).reshape([b, b]);
                let mask = sq.clone().lower_equal_elem(1e-8);
                let l = (sq + 1.0).recip().mask_fill(mask, 0.0).sum_dim(1).sqrt().reshape([b]);
                // The [B, 1] loss broadcast against [B] factors.
                let scale = match (&aff, case.form) {
                    (Some(a), _) => a.iter().sum::<f32>() / (a.iter().sum::<f32>() + 1e-8),
                    (None, Form::Ex17) => bf / (bf + 1e-8),
                    (None, Form::Ex15) => 1.0 / bf,
                    (None, Form::Ex16) => bw.iter().sum::<f32>() / (bf * bf),
                };
                l.sum() * scale
            }
            Criterion::SeparateCosine => {
                let c = unit_pts.clone().matmul(unit_pts.clone().transpose());
                let mask = (c.clone() - 1.0).abs().lower_equal_elem(1e-8 + 1e-5);
                reduce(c.mask_fill(mask, 0.0).powi_scalar(10).sum_dim(1).reshape([b]), false)
            }
            Criterion::SeparateInverse => {
                let pts = z.clone().slice([0..b, 0..2]);
                let diffs = pts.clone().unsqueeze_dim::<3>(1) - pts.unsqueeze_dim::<3>(0);
                let sq = diffs.powi_scalar(2).sum_dim(2).reshape([b, b]);
                let eye: Vec<f32> = (0..b * b).map(|i| if i / b == i % b { 0.0 } else { 1.0 }).collect();
                let off = Tensor::<2>::from_data(TensorData::new(eye, [b, b]), &dev);
                ((sq * off) + 1e-6).recip().mean()
            }
            Criterion::Anchor => {
                let (zr, _) = net(mat(&refs));
                let s = Tensor::<2>::from_data(
                    TensorData::new(snap.iter().flatten().copied().collect::<Vec<f32>>(), [6, LATENT]),
                    &dev,
                );
                (zr - s).powi_scalar(2).mean()
            }
        };
        total = total + term * w;
    }
    let want_total: f32 = total.clone().into_scalar();
    let what =
        format!("{:?} {:?}", case.form, case.regs.iter().map(|r| (r.criterion, r.affinity.len())).collect::<Vec<_>>());
    assert!(close(terms.total as f32, want_total, 1e-5), "{what}: {} vs burn {want_total}", terms.total);
    let grads = total.backward();
    let mut want = Vec::new();
    for l in &lin {
        want.extend(l.weight.val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap());
        want.extend(l.bias.as_ref().unwrap().val().grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap());
    }
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (i, (a, e)) in grad.iter().zip(&want).enumerate() {
        assert!((a - e).abs() <= 2e-4 * scale + 1e-4 * e.abs(), "{what}: param {i}: {a} vs burn {e}");
    }
}
