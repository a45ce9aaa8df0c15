"""PyTorch CPU reference for `cargo bench --bench idem`: DEM's log-sum-exp score
estimator on GMM-40 at a training batch (512 points x K = 500), the way DEM
computes it — `torch.func.grad` of `logsumexp(log p(x + sqrt(h) z_i)) - log K`,
vmapped over the points with different randomness, the GMM as FAB's
`MixtureSameFamily` with its -inf floor, evaluated on the points scaled back by
50, then DEM's norm clip of 70. Not a dependency: run it in a venv outside the
repository (`pip install torch`), on the machine that runs the Rust bench:

    python benches/torch/dem_estimator.py [--threads N]

Prints the median time per batch over 20 batches after 3 warm-up batches.
"""
import argparse
import math
import statistics
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=torch.get_num_threads())
parser.add_argument("--batch", type=int, default=512)
parser.add_argument("--k", type=int, default=500)
args = parser.parse_args()
torch.set_num_threads(args.threads)

# GMM-40 as DEM builds it (torch.manual_seed(0), FAB's GMM with loc_scaling 40, log_var_scaling 1).
torch.manual_seed(0)
means = (torch.rand((40, 2)) - 0.5) * 2 * 40
scale = torch.nn.functional.softplus(torch.ones(40, 2))
mix = torch.distributions.Categorical(torch.ones(40))
comp = torch.distributions.MultivariateNormal(means, scale_tril=torch.diag_embed(scale), validate_args=False)
gmm = torch.distributions.MixtureSameFamily(mix, comp, validate_args=False)


def log_reward(y):
    lp = gmm.log_prob(y * 50.0)  # DEM: unnormalize (x 50), then FAB's log_prob
    return lp + torch.where(lp < -1e4, torch.tensor(-math.inf), torch.tensor(0.0))


sigma_min, sigma_max = 1e-5, 1.0
h = (sigma_min * math.sqrt((sigma_max / sigma_min) ** (2 * 0.5) - 1)) ** 2  # DEM's geometric h(t = 0.5)


def log_expectation(x, k):
    samples = x.unsqueeze(0) + torch.randn(k, x.shape[0]) * math.sqrt(h)
    return torch.logsumexp(log_reward(samples), dim=-1) - math.log(k)


estimate = torch.vmap(torch.func.grad(log_expectation), in_dims=(0, None), randomness="different")


def batch(x):
    s = estimate(x, args.k)
    norm = torch.linalg.vector_norm(s, dim=-1)
    return s * torch.clamp(70.0 / (norm + 1e-6), max=1).unsqueeze(-1)


x = (gmm.sample((args.batch,)) / 50.0) + torch.randn(args.batch, 2) * math.sqrt(h)
for _ in range(3):
    batch(x)
times = []
for _ in range(20):
    t0 = time.perf_counter()
    out = batch(x)
    times.append(time.perf_counter() - t0)
assert torch.isfinite(out).all()
med = statistics.median(times)
print(f"torch {torch.__version__}, {args.threads} threads: {args.batch} x K {args.k} in {med * 1e3:.1f} ms "
      f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}); {args.batch * args.k / med / 1e6:.2f} M evaluations/s")
