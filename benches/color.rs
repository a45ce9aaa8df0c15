//! Colour autoencoder (seed 003) benchmarks: one training step of experiment
//! 1.7 at batch 32 (forward, the five regularizers with Separate's B² pairs,
//! backward), every weight on.
//!
//! Run with `cargo bench --bench color`.

use criterion::{Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use scoreflow::workloads::color::loss::{Batch, Form, StepWeights, loss_and_grad, seed_regularizers};
use scoreflow::workloads::color::model::{N_PARAMS, SHAPES};

fn step(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let layers = scoreflow::numerics::nn::init_layers(&SHAPES, false, &mut rng);
    let p: Vec<f32> = layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b).copied()).collect();
    let x: Vec<[f32; 3]> = (0..32).map(|_| [rng.random(), rng.random(), rng.random()]).collect();
    let red: Vec<f32> = (0..32).map(|_| rng.random()).collect();
    let vib: Vec<f32> = (0..32).map(|_| rng.random()).collect();
    let labels = vec![red, vib];
    let regs = seed_regularizers();
    let ws = [0.01, 0.005, 0.01, 0.01, 0.001];
    let w = StepWeights { recon: None, regs: &ws, anchor: None };
    let batch = Batch { x: &x, labels: &labels, weights: None };
    let mut grad = vec![0f32; N_PARAMS];
    c.bench_function("color/loss_and_grad_32", |b| {
        b.iter(|| loss_and_grad(&p, Form::Ex17, &regs, &batch, &w, &mut grad))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = step
}
criterion_main!(benches);
