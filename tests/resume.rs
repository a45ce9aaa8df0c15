//! Every stage that checkpoints, killed (`kill -9`) and stopped (SIGTERM) at
//! a random point after its first checkpoint, at 1 and 2 threads, then run
//! again: it resumes, and its outputs are byte-identical to an
//! uninterrupted run's ([`common::assert_resumes_identically`]).

mod common;

use common::{assert_resumes_identically, small_moons};

#[test]
fn ddpm_eps_resumes_identically() {
    let spec = small_moons()
        .replace("train_steps: 60", "train_steps: 2500")
        .replace("objective: ddpm_eps\n", "objective: ddpm_eps\n      ema: true\n");
    assert_resumes_identically(&spec, "two_moons", "ddpm", "200 steps", 150);
}

/// The DDPM-model samplers, in groups of 4096 particles (whole chunks of the
/// sampler's 256): the finished rows are the state; the ancestral sampler's
/// noise comes from per-particle streams, so a resumed group draws what an
/// uninterrupted run draws.
#[test]
fn the_ddpm_samplers_resume_identically() {
    for sampler in ["ddpm", "euler_discrete"] {
        let spec = small_moons().replace(
            "sampler: euler_discrete, n_samples: 300, steps: 20",
            &format!("sampler: {sampler}, n_samples: 20000, steps: 300"),
        );
        assert_resumes_identically(&spec, "two_moons", "samples", "4096 steps", 100);
    }
}

/// iDEM on GMM-40 (DEM's MLP): the state at a training step is the weights,
/// Adam's moments, the EMA, the replay buffer, the snapshots, the tracker
/// rows and the batch stream's position.
#[test]
fn idem_on_gmm_resumes_identically() {
    let spec = "name: gmm\nseed: 5\nstages:
  target:
    kind: generate
    params: { dataset: boltzmann, n_samples: 80, draw: 1 }
  train:
    kind: train
    inputs: { target: target.samples, val: target.samples }
    params: { objective: idem, outer: 40, inner: 4, batch: 40, k: 8, n_init: 48, samples_per_outer: 100, steps: 100, snapshot_every: 3, ema: 0.99, val_every: 3, val_batch: 40 }
";
    assert_resumes_identically(spec, "gmm", "train", "16 steps", 150);
}

/// iDEM on DW-4 (DEM's EGNN), validated each 4 steps with the plateau
/// schedule: its best loss, patience count and rate, and the validation
/// stream's position, are in the state too.
#[test]
fn idem_on_particles_resumes_identically() {
    let mcmc = "dataset: boltzmann, energy: dw4, method: mcmc, n_samples: 40, chains: 8, burn_in: 3000, thin: 200, step: 0.001, init_scale: 2.0, max_rhat: 0.0";
    let spec = format!(
        "name: dw\nseed: 4\nstages:
  reference:
    kind: generate
    params: {{ {mcmc}, draw: 1 }}
  val:
    kind: generate
    params: {{ {mcmc}, draw: 2 }}
  train:
    kind: train
    inputs: {{ target: reference.samples, val: val.samples }}
    params: {{ objective: idem, energy: dw4, outer: 40, inner: 5, batch: 16, k: 8, hidden: 8, steps: 60, samples_per_outer: 32, n_init: 16, lambda: none, max_norm: 20.0, sigma_max: 3.0, normalization: 1.0, lr: 0.001, snapshot_every: 2, plateau_every: 4, plateau_patience: 1, val_batch: 16, ema: 0.99 }}
"
    );
    assert_resumes_identically(&spec, "dw", "train", "20 steps", 150);
}

/// pipelines/smeme.yaml with a longer pre-training and tuning, short sampling.
fn smeme() -> String {
    std::fs::read_to_string(common::checkout("pipelines/smeme.yaml"))
        .unwrap()
        .replace("epochs: 16", "epochs: 30")
        .replace("n_samples: 4096, steps: 1000", "n_samples: 300, steps: 40")
        .replace("outer_epochs: 5", "outer_epochs: 20")
        .replace("inner_epochs: 10", "inner_epochs: 3")
        .replace("dataset_size: 1024", "dataset_size: 512")
        .replace("steps: 1000\n", "steps: 60\n")
}

/// The S-MEME predictor–corrector sampler, in groups of 4096 particles: the
/// finished samples and trajectory rows are the state.
#[test]
fn the_pc_sampler_resumes_identically() {
    let ws = common::Workspace::new();
    ws.write("p.yaml", &smeme().replace("n_samples: 300, steps: 40", "n_samples: 20000, steps: 100"));
    common::resumes_identically_in(&ws, "p.yaml", "smeme", "samples", "4096 steps", 150);
}

/// `dsm_ou` trains with burn's AdamW: its state, keyed by parameter ids,
/// is saved with the ids and given back to the rebuilt network. The S-MEME
/// tuning loop keeps the delta network, burn's Adam state, the pair stream
/// and the tracker rows at each outer epoch. (One workspace: the tuning
/// reuses the pre-training's cached upstream.)
#[test]
fn dsm_ou_and_smeme_tuning_resume_identically() {
    let ws = common::Workspace::new();
    ws.write("p.yaml", &smeme());
    common::resumes_identically_in(&ws, "p.yaml", "smeme", "pretrain", "300 steps", 150);
    common::resumes_identically_in(&ws, "p.yaml", "smeme", "tuned", "2 steps", 150);
}

/// S-MEME by mirror descent with Adjoint Matching: the trainable weights, the
/// previous iterate's, Adam's moments, the tracker and iterations rows and
/// the evaluation samples; each round's streams derive from (seed, k, round).
#[test]
fn smeme_am_tuning_resumes_identically() {
    let ws = common::Workspace::new();
    let am = "  tuned_am:\n    kind: tune\n    inputs: { model: pretrain.model }\n    params: { method: smeme_am, iterations: 2, gamma: 0.3, steps_per_iteration: 60, traj_per_batch: 32, am_steps: 50, eval_samples: 300, eval_steps: 40 }\n";
    ws.write("p.yaml", &(smeme() + am));
    common::resumes_identically_in(&ws, "p.yaml", "smeme", "tuned_am", "4 steps", 150);
}

/// The colour autoencoder on the seed's dopesheet (larger batches, so it
/// runs long enough to be stopped): the weights, Adam, the sampler's epoch
/// and stream, the loss rows (their NaN terms exactly) and the snapshots.
#[test]
fn color_ae_resumes_identically() {
    let ws = common::Workspace::new();
    for dir in ["pipelines", "data"] {
        std::fs::create_dir_all(ws.path().join(dir)).unwrap();
    }
    let spec =
        std::fs::read_to_string(common::checkout("pipelines/color.yaml")).unwrap().replace("batch: 32", "batch: 192");
    ws.write("pipelines/color.yaml", &spec);
    std::fs::copy(common::checkout("data/ex-1.7-dopesheet.csv"), ws.path().join("data/ex-1.7-dopesheet.csv")).unwrap();
    common::resumes_identically_in(&ws, "pipelines/color.yaml", "color", "train", "1000 steps", 150);
}

/// An MCMC reference (LJ-13, MALA): every chain's state, adapted step size,
/// kept draws and stream position, saved between segments of 100 steps.
#[test]
fn an_mcmc_reference_resumes_identically() {
    let spec = "name: mc\nseed: 2\nstages:
  reference:
    kind: generate
    params: { dataset: boltzmann, energy: lj13, method: mcmc, n_samples: 320, chains: 32, burn_in: 100000, thin: 200, step: 0.001, init: minimum, init_scale: 0.05, max_rhat: 0.0, draw: 1 }
";
    assert_resumes_identically(spec, "mc", "reference", "10000 steps", 150);
}

/// The network's reverse SDE (`ve_sde`), in fixed chunks of 1000 particles:
/// the finished particles are the state (each particle has its own stream);
/// a GMM-40 MLP here, the EGNN's chunks take the same loop.
#[test]
fn the_ve_sde_sampler_resumes_identically() {
    let spec = "name: ve\nseed: 6\nstages:
  target:
    kind: generate
    params: { dataset: boltzmann, n_samples: 40, draw: 1 }
  train:
    kind: train
    inputs: { target: target.samples }
    params: { objective: idem, outer: 1, inner: 2, batch: 8, k: 4, n_init: 8, samples_per_outer: 8, steps: 5, select: last }
  samples:
    kind: sample
    inputs: { model: train.model }
    params: { sampler: ve_sde, n_samples: 4500, steps: 400 }
";
    assert_resumes_identically(spec, "ve", "samples", "1000 steps", 150);
}

/// The Monte Carlo score sampler, in chunks of particles: the finished
/// particles are the state (each particle has its own stream).
#[test]
fn the_mc_score_sampler_resumes_identically() {
    let spec = "name: mcs\nseed: 3\nstages:
  mc:
    kind: sample
    params: { sampler: mc_score, n_samples: 6000, steps: 150, k: 32 }
";
    assert_resumes_identically(spec, "mcs", "mc", "256 steps", 150);
}

/// The colour autoencoder on 1.6's stepped curriculum: the anchor's snapshot
/// (taken at step 500, before the first checkpoint) and the dynamic sampler's
/// stream survive a stop.
#[test]
fn color_ae_curriculum_resumes_identically() {
    let ws = common::Workspace::new();
    for dir in ["pipelines", "data"] {
        std::fs::create_dir_all(ws.path().join(dir)).unwrap();
    }
    let spec = std::fs::read_to_string(common::checkout("pipelines/color.yaml"))
        .unwrap()
        .replace("ex-1.7-dopesheet.csv", "ex-1.6-stepped-dopesheet.csv")
        .replace("objective: color_ae, batch: 32", "objective: color_ae, form: ex_1_6, batch: 192");
    assert!(spec.contains("form: ex_1_6"));
    ws.write("pipelines/color.yaml", &spec);
    std::fs::copy(
        common::checkout("data/ex-1.6-stepped-dopesheet.csv"),
        ws.path().join("data/ex-1.6-stepped-dopesheet.csv"),
    )
    .unwrap();
    common::resumes_identically_in(&ws, "pipelines/color.yaml", "color", "train", "1000 steps", 150);
}
