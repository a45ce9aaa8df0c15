"""PyTorch CPU reference for the lean adjoint's step of `tune method: smeme_am`.

The seed's score network (x ++ a sinusoidal embedding of t, 32 frequencies
1…1000, sines then cosines → Linear(67, 256) → SiLU → Linear(256, 256) → SiLU
→ Linear(256, 3)), its forward and the input vector–Jacobian product
J_x s(x, t)ᵀ·a at one shared t by `torch.func.vjp` — what one step of the lean
adjoint costs — at 64 and 4096 rows, and one AM regression step (loss and
weight gradient, rows at their own t) at 2816 rows, as
`cargo bench --bench diffusion -- smeme_am`. Not a dependency of scoreflow:
run it from a virtualenv outside the repository (`pip install torch`).

    python benches/torch/smeme_adjoint.py [--threads N]
"""

import argparse
import math
import time

import torch
import torch.nn as nn


class ScoreNet(nn.Module):
    def __init__(self):
        super().__init__()
        n = 32
        self.register_buffer("freqs", torch.tensor([1000.0 ** (k / (n - 1)) for k in range(n)]))
        self.net = nn.Sequential(nn.Linear(67, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 3))

    def forward(self, x, t):
        arg = t[:, None] * self.freqs[None, :]
        return self.net(torch.cat([x, arg.sin(), arg.cos()], dim=1))


def timeit(f, reps):
    f()
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ScoreNet()
    for rows, reps in [(64, 2000), (4096, 50)]:
        x = torch.rand(rows, 3) * 2 - 1
        a = torch.rand(rows, 3) * 2 - 1
        t = torch.full((rows,), 0.37)

        def step():
            out, vjp_fn = torch.func.vjp(lambda x_: model(x_, t), x)
            return out, vjp_fn(a)[0]

        print(f"adjoint_step/{rows}: {timeit(step, reps) * 1e6:.1f} µs ({args.threads} threads)")
    rows = 2816
    x = torch.rand(rows, 3) * 2 - 1
    t = torch.rand(rows)
    y = torch.rand(rows, 3) * 2 - 1

    def loss_grad():
        model.zero_grad(set_to_none=True)
        loss = 0.25 * ((model(x, t) - y) ** 2).sum(dim=1).mean()
        loss.backward()
        return loss

    print(f"loss_grad_2816: {timeit(loss_grad, 100) * 1e6:.1f} µs ({args.threads} threads)")


if __name__ == "__main__":
    main()
