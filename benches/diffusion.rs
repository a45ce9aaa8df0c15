//! Diffusion-core benchmarks: the score network's forward pass (burn and the fast
//! inference path) at batch 4096, one training step at batch 16 and 256, and the
//! full predictor–corrector sampler at the seed's settings (4096 × 1000 steps).
//!
//! Run with `cargo bench --bench diffusion` (the sampler group alone takes a few
//! minutes; `cargo bench --bench diffusion -- forward` runs only the forward pass).

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use scoreflow::model::fast::FastMlp;
use scoreflow::model::{Backend, ModelMeta, ScoreNet, ScoreNetConfig, ScoreNetWeights, backend_device};
use scoreflow::sde::sampler::{PcConfig, Prior, ScoreModel, pc_sample, prior_draw};
use scoreflow::sde::{Ou, ou_pairs};

fn weights() -> ScoreNetWeights {
    let meta = ModelMeta { lambda: 0.3, sigma: 0.5, t_max: 1.0, scale: 2.0, shift: -1.0 };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut w = ScoreNetWeights::init(ScoreNetConfig::seed_default(), meta, &mut rng);
    let last = w.layers.len() - 1;
    let (wl, _, _, _) = &mut w.layers[last];
    wl.iter_mut().for_each(|v| *v = rng.random_range(-0.05..0.05));
    w
}

fn forward(c: &mut Criterion) {
    let w = weights();
    let rows = 4096;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let x: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut g = c.benchmark_group("forward_4096");
    for backend in [Backend::Flex, Backend::NdArray] {
        let device = backend_device(backend);
        let net = ScoreNet::from_weights(&w, &device);
        g.bench_function(BenchmarkId::new("burn", backend.name()), |b| {
            b.iter(|| {
                let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, 3]), &device);
                let t = Tensor::<1>::from_data(TensorData::new(vec![0.5f32; rows], [rows]), &device);
                net.forward(xt, t).into_data()
            })
        });
    }
    let fast = FastMlp::new(&w);
    let mut out = vec![0f32; rows * 3];
    let mut scratch = fast.scratch(rows);
    g.bench_function("fast_single_thread", |b| b.iter(|| fast.eval(&x, 0.5, &mut out, &mut scratch)));
    g.finish();
}

fn train_step(c: &mut Criterion) {
    let w = weights();
    let pool: Vec<f32> = (0..3000).map(|i| ((i * 37 % 100) as f32 / 50.0) - 1.0).collect();
    let mut g = c.benchmark_group("train_step");
    for batch in [16usize, 256] {
        let device = backend_device(Backend::Flex).autodiff();
        let mut model = ScoreNet::from_weights(&w, &device);
        let mut optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0).init();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        g.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter(|| {
                let p = ou_pairs(&pool, 3, batch, Ou::SEED, 1.0, &mut rng);
                let mv = p.var.iter().sum::<f32>() / batch as f32;
                let wts: Vec<f32> = p.var.iter().map(|v| v / mv).collect();
                let xt = Tensor::<2>::from_data(TensorData::new(p.xt, [batch, 3]), &device);
                let t = Tensor::<1>::from_data(TensorData::new(p.t, [batch]), &device);
                let target = Tensor::<2>::from_data(TensorData::new(p.score, [batch, 3]), &device);
                let wt = Tensor::<2>::from_data(TensorData::new(wts, [batch, 1]), &device);
                let loss = (target - model.forward(xt, t)).powi_scalar(2).mul(wt).mean();
                let v: f32 = loss.clone().into_scalar();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(0.01, model.clone(), grads);
                v
            })
        });
    }
    g.finish();
}

fn sampler(c: &mut Criterion) {
    let w = weights();
    let fast = FastMlp::new(&w);
    let mut g = c.benchmark_group("sampler");
    g.sample_size(10);
    g.bench_function("pc_4096x1000", |b| {
        b.iter(|| {
            let mut x = prior_draw(4096, 3, Prior::Standard, Ou::SEED, 1.0, 5);
            let cfg = PcConfig { steps: 1000, snr: 0.15, t_max: 1.0, chunk: scoreflow::stages::sample::CHUNK };
            pc_sample(&fast, Ou::SEED, &mut x, cfg, 6, 0, 1, &|_| {});
            x
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = forward, train_step, sampler
}
criterion_main!(benches);
