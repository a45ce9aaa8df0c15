"""`sample` command stage: diffusers' EulerDiscreteScheduler (ε-prediction, default
config) on a model from train.py, in PyTorch.

Matches scoreflow's `sampler: euler_discrete` (src/workloads/two_moons/sample.rs,
src/sde/ddpm.rs, EulerDiscrete) and the origin's sample_with_euler
(RishiDesai/fal-task, twomoons_baseline/): σ(t) = √((1 − ᾱ_t)/ᾱ_t) on the
training timesteps; timesteps = linspace(0, T−1, steps) in float32, descending;
σ_i linearly interpolated at them (numpy.interp), then σ = 0 appended;
x_T = N(0, I)·init_noise_sigma with init_noise_sigma = max σ ("linspace" spacing);
at each step the model sees scale_model_input's x/√(σ_i² + 1) and the timestep as
it is (fractional values unrounded), and x ← x + ε̂·(σ_{i+1} − σ_i) (Euler with
s_churn = 0, so no noise after x_T). `use_ema` picks the EMA weights.

Where it differs: x_T comes from torch's generator seeded with the stage seed,
not scoreflow's per-particle ChaCha streams; every particle is integrated in one
batch; a non-finite sample fails the stage (scoreflow tolerates up to
`max_nonfinite`). Samples are written as float64 columns named as the training
data's (x, y), in its standardised coordinates.
"""
import math

import torch

from _helper import scoreflow
from net import EpsNet, alphas_cumprod


def euler_tables(ab, steps):
    """(timesteps, sigmas, init_noise_sigma) of EulerDiscreteScheduler.set_timesteps."""
    table = ((1.0 - ab) / ab).sqrt().tolist()  # float64
    last = len(table) - 1
    ts = [float(torch.tensor(last * i / (steps - 1) if steps > 1 else 0.0, dtype=torch.float32))
          for i in reversed(range(steps))]
    sigmas = []
    for t in ts:
        i = min(int(math.floor(t)), last - 1)
        f = t - i
        sigma = table[i] + f * (table[i + 1] - table[i])
        sigmas.append(float(torch.tensor(sigma, dtype=torch.float32)))
    sigmas.append(0.0)
    return ts, sigmas, max(sigmas)


def main():
    s = scoreflow.stage()
    p = s.params
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    try:
        ckpt = torch.load(s.input_path("model"), map_location="cpu", weights_only=True)
    except TypeError:  # torch < 1.13
        ckpt = torch.load(s.input_path("model"), map_location="cpu")
    cfg = ckpt["config"]
    state = ckpt["ema_state_dict"] if p.get("use_ema", False) else ckpt["state_dict"]
    if state is None:
        raise SystemExit("use_ema: true, but the model was trained without `ema: true`")
    net = EpsNet(cfg["dim"], cfg["hidden"], cfg["time_channels"])
    net.load_state_dict(state)
    net.eval()

    n, steps = int(p.get("n_samples", 5000)), int(p.get("steps", 1000))
    ab = alphas_cumprod(cfg["beta_start"], cfg["beta_end"], cfg["train_timesteps"])
    ts, sigmas, init_sigma = euler_tables(ab, steps)
    x = torch.randn(n, cfg["dim"]) * init_sigma
    with torch.no_grad():
        for i, t in enumerate(ts):
            scale = 1.0 / math.sqrt(sigmas[i] ** 2 + 1.0)  # scale_model_input
            eps = net(x * scale, torch.full((n,), t, dtype=torch.float32))
            x = x + eps * (sigmas[i + 1] - sigmas[i])
            if i % 50 == 0:
                s.progress((i + 1) / steps)
    bad = int((~torch.isfinite(x)).any(dim=1).sum())
    if bad:
        raise SystemExit(f"{bad} of {n} samples are not finite")
    x = x.double()
    s.write_table("samples", {name: x[:, j].tolist() for j, name in enumerate(cfg["columns"])})


if __name__ == "__main__":
    main()
