//! iDEM (seed 001) benchmarks: the log-sum-exp score estimator on GMM-40 at a
//! DEM training batch (512 points × K = 500 energy and gradient evaluations,
//! DEM's ÷50 coordinates and norm clip), one thread per chunk of points as a
//! training step runs it.
//!
//! Run with `cargo bench --bench idem`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use scoreflow::energy::Scaled;
use scoreflow::energy::gmm::Gmm;
use scoreflow::sde::ve::Geometric;
use scoreflow::workloads::idem::estimator::{Estimator, Form, Scratch};
use scoreflow::workloads::idem::mlp::{DemMlpRun, flatten};
use scoreflow::workloads::idem::net::DemMlpConfig;

fn estimator(c: &mut Criterion) {
    let gmm = Gmm::dem40();
    let energy = Scaled { energy: &gmm, scale: 50.0 };
    let h = Geometric { sigma_min: 1e-5, sigma_max: 1.0 }.h(0.5);
    let (batch, k) = (512usize, 500usize);
    let points = gmm.rescaled(50.0).noised(h).sample(batch, &mut scoreflow::engine::rng::stream(1, "bench/points"));
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
                    let mut rng = scoreflow::engine::rng::particle(round, "bench/estimate", i);
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = estimator, network
}
criterion_main!(benches);
