//! iDEM (seed 001) benchmarks: the log-sum-exp score estimator on GMM-40 at a
//! DEM training batch (512 points × K = 500 energy and gradient evaluations,
//! DEM's ÷50 coordinates and norm clip), one thread per chunk of points as a
//! training step runs it; DEM's MLP; and for the particle systems the
//! estimator on LJ-13 (512 × K = 1000) and DEM's EGNN (training steps, a
//! sampler forward). The PyTorch references: `benches/torch/dem_estimator.py`
//! and `benches/torch/dem_particles.py`.
//!
//! Run with `cargo bench --bench idem`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use scoreflow::numerics::energy::Scaled;
use scoreflow::numerics::energy::gmm::Gmm;
use scoreflow::numerics::sde::ve::Geometric;
use scoreflow::workloads::idem::estimator::{Estimator, Form, Scratch};
use scoreflow::workloads::idem::mlp::{DemMlpRun, flatten};
use scoreflow::workloads::idem::net::DemMlpConfig;

fn estimator(c: &mut Criterion) {
    let gmm = Gmm::dem40();
    let energy = Scaled { energy: &gmm, scale: 50.0 };
    let h = Geometric { sigma_min: 1e-5, sigma_max: 1.0 }.h(0.5);
    let (batch, k) = (512usize, 500usize);
    let points = gmm.rescaled(50.0).noised(h).sample(batch, &mut scoreflow::numerics::rng::stream(1, "bench/points"));
    let est = Estimator { form: Form::LogSumExp, k, max_norm: Some(70.0) };
    let mut g = c.benchmark_group("estimator");
    g.throughput(Throughput::Elements((batch * k) as u64));
    g.bench_function("log_sum_exp_gmm40_512x500", |b| {
        let mut round = 0u64;
        b.iter(|| {
            round += 1;
            let out: Vec<[f64; 2]> = points
                .par_chunks(2)
                .enumerate()
                .map(|(i, x)| {
                    let mut rng = scoreflow::numerics::rng::particle(round, "bench/estimate", i);
                    let mut s = [0.0; 2];
                    est.estimate(&energy, x, h, &mut rng, &mut Scratch::default(), &mut s).unwrap();
                    s
                })
                .collect();
            out
        })
    });
    g.finish();
}

/// DEM's GMM network (99 074 parameters): one training step's loss and
/// gradient at batch 512, and one reverse-SDE step's forward over 1000
/// particles at a shared `t` (DEM's samples per outer step).
fn network(c: &mut Criterion) {
    use rand::{Rng, SeedableRng};
    let cfg = DemMlpConfig::GMM;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let params = flatten(&cfg.init(&mut rng));
    let mut run = DemMlpRun::new(&cfg);
    let mut g = c.benchmark_group("dem_mlp");
    let n = 512;
    let x: Vec<f32> = (0..n * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
    let t: Vec<f32> = (0..n).map(|_| rng.random_range(0.0..1.0)).collect();
    let y: Vec<f32> = (0..n * 2).map(|_| rng.random_range(-5.0..5.0)).collect();
    let w = vec![1.0f32; n];
    let mut grad = vec![0f32; run.n_params()];
    g.bench_function("loss_and_grad_512", |b| b.iter(|| run.loss_and_grad(&params, &x, &t, &y, &w, &mut grad)));
    let m = 1000;
    let xs: Vec<f32> = (0..m * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut out = vec![0f32; m * 2];
    g.bench_function("forward_shared_t_1000", |b| b.iter(|| run.forward_shared_t(&params, &xs, 0.4, &mut out)));
    g.finish();
}

/// The particle systems: the log-sum-exp estimator on LJ-13 at
/// DEM's batch 512 × K = 1000 (per-particle clip 20), and DEM's EGNN — one
/// training step (forward, backward, clip, Adam) at batch 512 on DW-4 (128
/// wide, 3 layers) and LJ-13 (128 wide, 5 layers, batch 64) through burn's
/// autodiff and by hand (`_by_hand`, what training runs), LJ-55's by hand,
/// and one reverse-SDE forward over 1000 DW-4 particles.
fn particles(c: &mut Criterion) {
    use burn::optim::GradientsParams;
    use burn::tensor::{Tensor, TensorData};
    use rand::{Rng, SeedableRng};
    use scoreflow::numerics::energy::particles::{Particles, icosahedron, remove_mean};
    use scoreflow::workloads::idem::egnn::{Egnn, EgnnConfig};

    let lj = Particles::lj(13);
    let h = Geometric { sigma_min: 0.01, sigma_max: 2.0 }.h(0.5);
    let (batch, k) = (512usize, 1000usize);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let base = icosahedron(1, 1.0);
    let mut points: Vec<f64> = (0..batch)
        .flat_map(|_| {
            base.iter().map(|v| v + 0.3 * rng.sample::<f64, _>(rand_distr::StandardNormal)).collect::<Vec<_>>()
        })
        .collect();
    remove_mean(&mut points, 13, 3);
    let est = Estimator { form: Form::LogSumExp, k, max_norm: Some(20.0) };
    let mut g = c.benchmark_group("estimator");
    g.throughput(Throughput::Elements((batch * k) as u64));
    g.sample_size(10);
    g.bench_function("log_sum_exp_lj13_512x1000", |b| {
        let mut round = 0u64;
        b.iter(|| {
            round += 1;
            let out: Vec<Vec<f64>> = points
                .par_chunks(39)
                .enumerate()
                .map(|(i, x)| {
                    let mut rng = scoreflow::numerics::rng::particle(round, "bench/estimate", i);
                    let mut s = vec![0.0; 39];
                    est.estimate(&lj, x, h, &mut rng, &mut Scratch::default(), &mut s).unwrap();
                    s
                })
                .collect();
            out
        })
    });
    g.finish();

    let mut g = c.benchmark_group("egnn");
    g.sample_size(10);
    for (name, cfg, b) in
        [("dw4_train_step_512", EgnnConfig::DW4, 512usize), ("lj13_train_step_64", EgnnConfig::lj(13), 64)]
    {
        let dim = cfg.n * cfg.d;
        let dev = scoreflow::workloads::train_device(scoreflow::engine::stage::Backend::Flex);
        let mut net = Some(Egnn::from_layers(&cfg.init(&mut rng), &cfg, &dev));
        let mut optim = scoreflow::numerics::nn::adamw(0.0).init();
        let x: Vec<f32> = (0..b * dim).map(|_| rng.random_range(-2.0..2.0)).collect();
        let t: Vec<f32> = (0..b).map(|_| rng.random_range(0.0..1.0)).collect();
        let y: Vec<f32> = (0..b * dim).map(|_| rng.random_range(-5.0..5.0)).collect();
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let n = net.take().unwrap();
                let xs = Tensor::<2>::from_data(TensorData::new(x.clone(), [b, dim]), &dev);
                let ts = Tensor::<1>::from_data(TensorData::new(t.clone(), [b]), &dev);
                let ys = Tensor::<2>::from_data(TensorData::new(y.clone(), [b, dim]), &dev);
                let loss = (n.forward(xs, ts) - ys).powi_scalar(2).mean();
                let grads = GradientsParams::from_grads(loss.backward(), &n);
                net = Some(optim.step(1e-3, n, grads));
            })
        });
        // The same step by hand (what `train objective: idem` runs): loss and
        // gradients (EgnnBackprop), global-norm clip, Adam.
        let bp = scoreflow::workloads::idem::egnn_backprop::EgnnBackprop::new(&cfg);
        let mut params = scoreflow::workloads::idem::mlp::flatten(&cfg.init(&mut rng));
        let mut grad = vec![0f32; params.len()];
        let mut adam = scoreflow::numerics::nn::backprop::AdamW::new(params.len(), 0.0);
        let w = vec![1f32; b];
        g.bench_function(format!("{name}_by_hand"), |bench| {
            bench.iter(|| {
                let loss = bp.loss_and_grad(&params, &x, &t, &y, &w, &mut grad);
                scoreflow::numerics::nn::backprop::clip_grad_norm(&mut grad, 0.5);
                adam.step(&mut params, &grad, 1e-3);
                loss
            })
        });
    }
    // LJ-55 at DEM's width and batch (128 × 5, 128 configurations), by hand.
    {
        let cfg = EgnnConfig::lj(55);
        let b = 128;
        let bp = scoreflow::workloads::idem::egnn_backprop::EgnnBackprop::new(&cfg);
        let mut params = scoreflow::workloads::idem::mlp::flatten(&cfg.init(&mut rng));
        let mut grad = vec![0f32; params.len()];
        let mut adam = scoreflow::numerics::nn::backprop::AdamW::new(params.len(), 0.0);
        let x: Vec<f32> = (0..b * 165).map(|_| rng.random_range(-2.0..2.0)).collect();
        let t: Vec<f32> = (0..b).map(|_| rng.random_range(0.0..1.0)).collect();
        let y: Vec<f32> = (0..b * 165).map(|_| rng.random_range(-5.0..5.0)).collect();
        let w = vec![1f32; b];
        g.bench_function("lj55_train_step_128_by_hand", |bench| {
            bench.iter(|| {
                let loss = bp.loss_and_grad(&params, &x, &t, &y, &w, &mut grad);
                scoreflow::numerics::nn::backprop::clip_grad_norm(&mut grad, 0.5);
                adam.step(&mut params, &grad, 1e-3);
                loss
            })
        });
    }
    let cfg = EgnnConfig::DW4;
    let dev = scoreflow::numerics::nn::io_device();
    let net = Egnn::from_layers(&cfg.init(&mut rng), &cfg, &dev);
    let m = 1000;
    let x: Vec<f32> = (0..m * 8).map(|_| rng.random_range(-2.0..2.0)).collect();
    g.bench_function("dw4_forward_1000", |bench| {
        bench.iter(|| {
            let xs = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, 8]), &dev);
            let ts = Tensor::<1>::from_data(TensorData::new(vec![0.4f32; m], [m]), &dev);
            net.forward(xs, ts).into_data()
        })
    });
    // The sampler's hand-written forward on the same weights.
    let fast =
        scoreflow::workloads::idem::egnn::EgnnRun::new(&cfg, &scoreflow::workloads::idem::egnn::plain_layers(&net));
    let mut out = vec![0f32; m * 8];
    g.bench_function("dw4_fast_forward_1000", |bench| bench.iter(|| fast.forward(&x, 0.4, &mut out)));
    let cfg13 = EgnnConfig::lj(13);
    let layers13 = cfg13.init(&mut rng);
    let fast13 = scoreflow::workloads::idem::egnn::EgnnRun::new(&cfg13, &layers13);
    let x13: Vec<f32> = (0..m * 39).map(|_| rng.random_range(-1.5..1.5)).collect();
    let mut out13 = vec![0f32; m * 39];
    g.bench_function("lj13_fast_forward_1000", |bench| bench.iter(|| fast13.forward(&x13, 0.4, &mut out13)));
    g.finish();
}

/// Checkpoints of iDEM's training (the checkpoint contract's cost):
/// GMM-40 training (DEM's MLP, batch 512, K 100, 1000 SDE particles of 100
/// steps an outer step; 6 outer steps of 10 training steps) and DW-4 training
/// (DEM's EGNN, 128 wide, 3 layers; batch 64, K 100, 256 particles of 50
/// steps; 6 × 10), each with no
/// checkpoints and with one after every outer step — the ratio bounds the
/// overhead at any interval of an outer step or more; and the cost of one
/// checkpoint of the state GMM-40 training holds at the end of DEM's budget
/// (99 074 weights with Adam's two moments, a full buffer of 10 000 points,
/// 201 snapshots of 1000 points, 100 000 loss rows), written, read back,
/// verified and decoded — divided by the default interval (5 minutes), the
/// overhead at DEM's budget.
fn checkpoints(c: &mut Criterion) {
    use scoreflow::engine::cache::Cache;
    use scoreflow::engine::checkpoint::{Checkpointing, Every, decode, encode};
    use scoreflow::engine::hash::Hash;
    use scoreflow::engine::params::Value;
    use scoreflow::workloads::idem::fitting::IdemParams;
    use scoreflow::workloads::idem::particles_train::fit_particles;
    use scoreflow::workloads::idem::train::fit;

    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let params = |extra: &[(&str, Value)]| {
        let mut m = IdemParams::example();
        let common = [
            ("outer", Value::Int(6)),
            ("inner", Value::Int(10)),
            ("k", Value::Int(100)),
            ("n_init", Value::Int(256)),
            ("samples_per_outer", Value::Int(1000)),
            ("steps", Value::Int(100)),
        ];
        for (k, v) in common.iter().chain(extra) {
            m.insert(k.to_string(), v.clone());
        }
        IdemParams::read(&m)
    };
    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(10);
    let gmm = Gmm::dem40().unmasked();
    let energy = Scaled { energy: &gmm, scale: 50.0 };
    let target: Vec<f64> = gmm.sample(500, &mut scoreflow::numerics::rng::stream(1, "bench/target"));
    let p = params(&[]);
    // Every outer step: after each 10 training steps.
    let every_outer = || Checkpointing::for_key(&cache, Hash([1; 32]), Every::Steps(10), false);
    g.bench_function("gmm40_train_no_checkpoints", |b| {
        b.iter(|| fit(&p, &energy, (&target, None), 1, &|_| {}, &Checkpointing::none()).unwrap().loss.num_rows())
    });
    g.bench_function("gmm40_train_checkpoint_every_outer", |b| {
        b.iter(|| fit(&p, &energy, (&target, None), 1, &|_| {}, &every_outer()).unwrap().loss.num_rows())
    });
    let dw4 = scoreflow::numerics::energy::particles::Particles::by_name("dw4").unwrap();
    let pd = params(&[
        ("energy", Value::Str("dw4".into())),
        ("batch", Value::Int(64)),
        ("lambda", Value::Str("none".into())),
        ("max_norm", Value::Float(20.0)),
        ("sigma_max", Value::Float(3.0)),
        ("normalization", Value::Float(1.0)),
        ("samples_per_outer", Value::Int(256)),
        ("steps", Value::Int(50)),
    ]);
    let dw4_target = vec![0.0; 40 * 8];
    g.bench_function("dw4_train_no_checkpoints", |b| {
        b.iter(|| {
            fit_particles(&pd, &dw4, &dw4_target, None, 1, &|_| {}, &Checkpointing::none()).unwrap().loss.num_rows()
        })
    });
    g.bench_function("dw4_train_checkpoint_every_outer", |b| {
        b.iter(|| fit_particles(&pd, &dw4, &dw4_target, None, 1, &|_| {}, &every_outer()).unwrap().loss.num_rows())
    });
    type Losses = (Vec<i64>, Vec<i64>, Vec<f64>, Vec<f64>, Vec<f64>);
    #[derive(serde::Serialize, serde::Deserialize)]
    struct DemBudgetState {
        params: [Vec<f32>; 3],
        buffer: Vec<f32>,
        snaps: (Vec<i64>, Vec<f64>, Vec<f64>),
        losses: Losses,
    }
    let n_snap = 201 * 1000;
    let steps = 100_000;
    let state = DemBudgetState {
        params: std::array::from_fn(|k| (0..99_074).map(|i| (i * (k + 1)) as f32 * 1e-5).collect()),
        buffer: (0..20_000).map(|i| i as f32 * 1e-3).collect(),
        snaps: ((0..n_snap as i64).collect(), vec![0.5; n_snap], vec![-0.5; n_snap]),
        losses: ((0..steps as i64).collect(), vec![3; steps], vec![1.5; steps], vec![0.7; steps], vec![5e-4; steps]),
    };
    let key = Hash([2; 32]);
    g.bench_function("gmm40_dem_budget_state_write_and_read", |b| {
        b.iter(|| {
            cache.write_checkpoint(&key, (99_000, 100_000), (&[], None), &encode(&state)).unwrap();
            let back = cache.read_checkpoint(&key).unwrap().unwrap();
            decode::<DemBudgetState>(&back.state).unwrap().buffer.len()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = estimator, network, particles, checkpoints
}
criterion_main!(benches);
