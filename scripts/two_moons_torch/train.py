"""`train` command stage: the two-moons ε-prediction DDPM (seed 002) in PyTorch.

Written from the seed's description to match scoreflow's `objective: ddpm_eps`
(src/workloads/two_moons/train.rs, src/model/eps.rs, src/model/backprop.rs,
src/sde/ddpm.rs), which follows the origin (RishiDesai/fal-task,
twomoons_baseline/). The network and schedule live in net.py. What matches:

* data: every float column of `data` (x, y; the integer `moon` label is skipped);
  shuffled epochs without replacement cut into batches in order, the short last
  batch skipped (the origin's DataLoader(shuffle=True, drop_last=True));
* network: diffusers-style Timesteps(64, flip_sin_to_cos=True, shift 0) on the raw
  timestep, TimestepEmbedding Linear(64, 64) → SiLU → Linear(64, 64); trunk on
  [x, temb]: Linear(dim + 64, 128) → SiLU → Linear(128, 128) → SiLU →
  Linear(128, dim), last layer zero; nn.Linear's default initialisation;
* DDPM: β = linspace(1e-4, 0.02, 1000), t ~ U{0..999}, ε ~ N(0, I),
  x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε, loss F.mse_loss(ε̂, ε);
* AdamW(lr, betas (0.9, 0.999), eps 1e-8, weight_decay), clip_grad_norm_(grad_clip)
  (0 turns it off), constant learning rate;
* optional EMA as diffusers' EMAModel: decay min(ema_decay, (1+n)/(10+n)) at the
  (n+1)-th update, 0 at the first (`ema_warmup: false`: constant decay).

Where it differs: random streams are torch's, not scoreflow's ChaCha8 (same
distributions, other draws); no cosine/warm-up learning-rate schedule; the loss
table holds step and loss only, one row per `log_every` steps (the mean over
those steps; 1, the default, gives scoreflow's one row per step). The model is a torch.save'd plain
dict (`state_dict`, `ema_state_dict` or None, `config`), not scoreflow's SFEPS001 blob.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from _helper import scoreflow
from net import EpsNet, alphas_cumprod


def column(table, name):
    """One column as a Python list, whatever library the helper read with."""
    col = table[name]
    for attr in ("to_list", "to_pylist", "tolist"):
        if hasattr(col, attr):
            return getattr(col, attr)()
    return list(col)


def float_columns(table):
    names = table.column_names if hasattr(table, "column_names") else list(table.columns if hasattr(table, "columns") else table)
    cols = {n: column(table, n) for n in names}
    return {n: v for n, v in cols.items() if any(isinstance(a, float) for a in v)}


def main():
    s = scoreflow.stage()
    p = s.params
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)

    cols = float_columns(s.read_table("data"))
    data = torch.tensor(list(zip(*cols.values())), dtype=torch.float32)
    n, dim = data.shape
    config = {
        "dim": dim, "hidden": int(p.get("hidden", 128)), "time_channels": int(p.get("time_channels", 64)),
        "beta_start": float(p.get("beta_start", 1e-4)), "beta_end": float(p.get("beta_end", 0.02)),
        "train_timesteps": int(p.get("train_timesteps", 1000)), "columns": list(cols),
    }
    steps, batch = int(p.get("train_steps", 5000)), int(p.get("batch_size", 512))
    if batch > n:
        raise SystemExit(f"batch_size {batch} exceeds the {n} training rows (the short last batch is dropped)")
    grad_clip, log_every = float(p.get("grad_clip", 1.0)), int(p.get("log_every", 1))
    use_ema, ema_decay = bool(p.get("ema", False)), float(p.get("ema_decay", 0.999))
    ema_warmup = bool(p.get("ema_warmup", True))

    net = EpsNet(dim, config["hidden"], config["time_channels"])
    opt = torch.optim.AdamW(net.parameters(), lr=float(p.get("lr", 1e-3)), betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=float(p.get("weight_decay", 0.01)))
    ab = alphas_cumprod(config["beta_start"], config["beta_end"], config["train_timesteps"])
    sqrt_ab, sqrt_1mab = ab.sqrt().float(), (1.0 - ab).sqrt().float()
    ema = [q.detach().clone() for q in net.parameters()] if use_ema else None

    order, at = None, n
    rows, window = [], []
    for step in range(steps):
        if at + batch > n:  # new epoch; the short remainder is dropped
            order, at = torch.randperm(n), 0
        x0 = data[order[at:at + batch]]
        at += batch
        t = torch.randint(0, config["train_timesteps"], (batch,))
        eps = torch.randn_like(x0)
        xt = sqrt_ab[t].unsqueeze(1) * x0 + sqrt_1mab[t].unsqueeze(1) * eps
        loss = F.mse_loss(net(xt, t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        opt.step()
        if ema is not None:
            k = step  # diffusers EMAModel: n = optimization_step − 1
            d = (0.0 if k == 0 else min(ema_decay, (1 + k) / (10 + k))) if ema_warmup else ema_decay
            with torch.no_grad():
                for e, q in zip(ema, net.parameters()):
                    e.mul_(d).add_(q.detach(), alpha=1.0 - d)
        window.append(loss.item())
        if not math.isfinite(window[-1]):
            raise SystemExit(f"non-finite loss at step {step}")
        if (step + 1) % log_every == 0 or step + 1 == steps:
            rows.append((step, sum(window) / len(window)))
            window = []
        if step % 100 == 0:
            s.progress((step + 1) / steps)

    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    ema_state = None
    if ema is not None:
        names = [k for k, _ in net.named_parameters()]
        ema_state = {**state, **{k: e.clone().contiguous() for k, e in zip(names, ema)}}
    torch.save({"state_dict": state, "ema_state_dict": ema_state, "config": config}, s.output_path("model", "pt"))
    s.write_table("loss", {"step": [r[0] for r in rows], "loss": [r[1] for r in rows]})


if __name__ == "__main__":
    main()
