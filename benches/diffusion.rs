//! Diffusion-core benchmarks.
//!
//! S-MEME (seed 000): the score network's forward pass (burn and the fast
//! inference path) at batch 4096, one training step at batch 16 and 256, and the
//! full predictor–corrector sampler at the seed's settings (4096 × 1000 steps).
//!
//! Two-moons DDPM (seed 002): one ε-network training step at batch 512 (forward,
//! backward, clipping, AdamW, EMA) and 1000 such steps (×40 is the 40k run), the
//! Euler-discrete sampler at 5000 × 1000 steps, and each distance on 5000 vs 5000.
//!
//! S-MEME with Adjoint Matching: the lean adjoint's step (forward and input
//! VJP of the score network) at 64 and 4096 rows, and an AM regression step.
//!
//! Run with `cargo bench --bench diffusion` (the sampler groups alone take a few
//! minutes; `cargo bench --bench diffusion -- forward` runs only the forward pass,
//! `-- ddpm` only the two-moons group).

use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use scoreflow::engine::checkpoint::Checkpointing;
use scoreflow::engine::stage::Backend;
use scoreflow::numerics::sde::sampler::{PcConfig, Prior, ScoreModel, pc_sample, prior_draw};
use scoreflow::numerics::sde::{Ou, ou_pairs};
use scoreflow::workloads::backend_device;
use scoreflow::workloads::triangles::net::FastMlp;
use scoreflow::workloads::triangles::net::{ModelMeta, ScoreNet, ScoreNetConfig, ScoreNetWeights};

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
            let cfg = PcConfig {
                steps: 1000,
                snr: 0.15,
                t_max: 1.0,
                chunk: scoreflow::workloads::triangles::sample::CHUNK,
                denoise: false,
            };
            pc_sample(&fast, Ou::SEED, &mut x, cfg, (6, 0), 0, 1, &|_| {});
            x
        })
    });
    g.finish();
}

fn ddpm(c: &mut Criterion) {
    use scoreflow::numerics::metrics::distance::{Points, directions, energy_distance, mmd, sliced_w1};
    use scoreflow::numerics::nn::backprop::{AdamW, clip_grad_norm, ema_update};
    use scoreflow::numerics::sde::ddpm::{DdpmSchedule, EulerDiscrete, euler_sample};
    use scoreflow::workloads::two_moons::backprop::EpsBackprop;
    use scoreflow::workloads::two_moons::net::FastEps;
    use scoreflow::workloads::two_moons::net::{EpsLayers, EpsNetConfig, ScheduleMeta};
    use scoreflow::workloads::two_moons::train::{DdpmConfig, train_ddpm};

    let cfg = EpsNetConfig::origin(2);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut layers = EpsLayers::init(&cfg, &mut rng);
    let last = layers.trunk.len() - 1;
    layers.trunk[last].0.iter_mut().for_each(|v| *v = rng.random_range(-0.05..0.05));
    let (moons, _) = scoreflow::workloads::two_moons::generate::make_moons(50_000, 0.05, 1, 0);
    let data: Vec<f32> = moons.iter().map(|v| *v as f32).collect();
    let mut g = c.benchmark_group("ddpm");

    let b = 512;
    let xt: Vec<f32> = data[..2 * b].to_vec();
    let t: Vec<f32> = (0..b).map(|i| (i * 37 % 1000) as f32).collect();
    let eps: Vec<f32> = (0..2 * b).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut bp = EpsBackprop::new(&cfg);
    let mut params = layers.flatten();
    let mut ema = params.clone();
    let mut opt = AdamW::new(params.len(), 0.01);
    let mut grad = vec![0f32; params.len()];
    g.bench_function("train_step_512", |bench| {
        bench.iter(|| {
            let loss = bp.loss_and_grad(&params, &xt, &t, &eps, &mut grad);
            clip_grad_norm(&mut grad, 1.0);
            opt.step(&mut params, &grad, 1e-4);
            ema_update(&mut ema, &params, 0.999);
            loss
        })
    });

    // The same step on burn's autodiff (flex), for comparison.
    {
        use scoreflow::workloads::two_moons::net::EpsNet;
        let device = backend_device(Backend::Flex).autodiff();
        let mut model = EpsNet::from_layers(&layers, &cfg, &device);
        let mut optim = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.01).init();
        g.bench_function("burn_train_step_512", |bench| {
            bench.iter(|| {
                let x = Tensor::<2>::from_data(TensorData::new(xt.clone(), [b, 2]), &device);
                let tt = Tensor::<1>::from_data(TensorData::new(t.clone(), [b]), &device);
                let e = Tensor::<2>::from_data(TensorData::new(eps.clone(), [b, 2]), &device);
                let loss = (model.forward(x, tt) - e).powi_scalar(2).mean();
                let v: f32 = loss.clone().into_scalar();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(1e-4, model.clone(), grads);
                v
            })
        });
    }

    g.sample_size(10);
    let steps_cfg = DdpmConfig {
        net: cfg.clone(),
        schedule: ScheduleMeta { beta_start: 1e-4, beta_end: 0.02, train_timesteps: 1000 },
        steps: 1000,
        batch_size: 512,
        lr: 1e-3,
        cosine: false,
        warmup: 0,
        weight_decay: 0.01,
        grad_clip: 1.0,
        drop_last: true,
        ema: Some(0.999),
        ema_warmup: true,
    };
    g.bench_function("train_1000_steps_512", |bench| {
        bench.iter(|| {
            train_ddpm(&steps_cfg, &data, vec!["x".into(), "y".into()], 1, &|_| {}, &Checkpointing::none())
                .unwrap()
                .loss
                .len()
        })
    });

    let fast = FastEps::new(&cfg, &layers);
    let sched = EulerDiscrete::new(&DdpmSchedule::linear(1e-4, 0.02, 1000), 1000);
    g.bench_function("euler_5000x1000", |bench| {
        bench.iter(|| {
            let mut x = scoreflow::numerics::sde::sampler::normal_rows(5000, 2, 3, "x_T");
            x.iter_mut().for_each(|v| *v *= sched.init_noise_sigma);
            euler_sample(&fast, &sched, &mut x, scoreflow::workloads::two_moons::sample::EULER_CHUNK, &|_| {});
            x
        })
    });
    let ancestral = scoreflow::numerics::sde::ddpm::DdpmAncestral::new(&DdpmSchedule::linear(1e-4, 0.02, 1000), 1000);
    g.bench_function("ancestral_5000x1000", |bench| {
        bench.iter(|| {
            let mut x = scoreflow::numerics::sde::sampler::normal_rows(5000, 2, 3, "x_T");
            scoreflow::numerics::sde::ddpm::ancestral_sample(
                &fast,
                &ancestral,
                &mut x,
                scoreflow::workloads::two_moons::sample::EULER_CHUNK,
                5,
                &|_| {},
            );
            x
        })
    });

    let (a, _) = scoreflow::workloads::two_moons::generate::make_moons(5000, 0.05, 1, 1);
    let (bb, _) = scoreflow::workloads::two_moons::generate::make_moons(5000, 0.05, 1, 2);
    let (x, y) = (Points::new(&a, 2), Points::new(&bb, 2));
    let dirs = directions(256, 2, &mut rng);
    g.bench_function("mmd_5000", |bench| bench.iter(|| mmd(x, y)));
    g.bench_function("energy_distance_5000", |bench| bench.iter(|| energy_distance(x, y)));
    g.bench_function("sliced_w1_5000_L256", |bench| bench.iter(|| sliced_w1(x, y, &dirs)));
    g.finish();
}

/// S-MEME with Adjoint Matching: one lean-adjoint step — the base score
/// network's forward and input VJP `Jₓsᵀ·a` at one shared t — at 64 rows (a
/// round's trajectories) and 4096, and one AM regression step's loss and
/// weight gradient at 2816 rows (64 trajectories × 44 times). PyTorch's
/// `torch.func.vjp` of the same network: `benches/torch/smeme_adjoint.py`.
fn adjoint(c: &mut Criterion) {
    use scoreflow::workloads::triangles::backprop::{Features, Mlp};
    let w = weights();
    let p = Mlp::flatten(&w.layers);
    let mut mlp = Mlp::new(3, Features::Sinusoidal(w.freqs.clone()), &w.config.shapes());
    let mut g = c.benchmark_group("smeme_am");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for rows in [64usize, 4096] {
        let x: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let a: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
        let (mut out, mut vjp) = (vec![0f32; rows * 3], vec![0f32; rows * 3]);
        g.bench_with_input(BenchmarkId::new("adjoint_step", rows), &rows, |bench, _| {
            bench.iter(|| mlp.forward_vjp(&p, &x, 0.37, Some(&a), &mut out, &mut vjp))
        });
    }
    let rows = 2816;
    let x: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
    let t: Vec<f32> = (0..rows).map(|_| rng.random_range(0.0..1.0)).collect();
    let y: Vec<f32> = (0..rows * 3).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut grad = vec![0f32; mlp.n_params()];
    g.bench_function("loss_grad_2816", |bench| bench.iter(|| mlp.loss_and_grad(&p, (&x, &t, &y), 0.25, &mut grad)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = forward, train_step, sampler, ddpm, adjoint
}
criterion_main!(benches);
