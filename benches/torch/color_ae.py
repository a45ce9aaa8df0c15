"""PyTorch CPU reference for `train objective: color_ae` (seed 003, experiment 1.7).

The seed notebook's training loop, reduced to what costs time: ColorMLP
(3 → 16 GELU → 4 → 16 GELU → 3 sigmoid), Adam with the per-step learning rate,
batches of 32 from a WeightedRandomSampler over the HSV cube's bias (3600 draws
an epoch), MSE plus the five regularizers with their label affinities and
per-step weights, backward and step when the total is positive. The schedule
is read from the timeline scoreflow realised (`scoreflow export schedule.timeline
--pipeline pipelines/color.yaml -o timeline.csv`), so both loops see the same
numbers. Not a dependency of scoreflow: run it from a separate virtualenv.

    python benches/torch/color_ae.py timeline.csv [--threads N]
"""

import argparse
import csv
import time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler


def hsv_cube():
    hues = [(i * (10 / 360)) % 1 for i in range(36)]
    lin = [j * (1 / 9) for j in range(9)] + [1.0]
    rows, vib, bias = [], [], []
    for h in hues:
        for s in lin:
            for v in lin:
                i = int(6 * h)
                f = 6 * h - i
                p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
                rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
                rows.append(rgb)
                vib.append(s * v)
                bias.append((1 / 360) * (1 - v) + (1 / 36) * (1 - s) * v + s * v)
    return torch.tensor(rows, dtype=torch.float32), torch.tensor(vib, dtype=torch.float32), bias


class ColorMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 16), nn.GELU(), nn.Linear(16, 4))
        self.decoder = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 3), nn.Sigmoid())

    def forward(self, x):
        z = self.encoder(x)
        return self.decoder(z), z


def separate(z):
    points = z[:, None]
    points = points / (torch.norm(points, dim=-1, keepdim=True) + 1e-8)
    diffs = (points.unsqueeze(1) - points.unsqueeze(0)) * 1000
    sq = torch.sum(diffs**2, dim=-1)
    mask = torch.isclose(sq, torch.zeros_like(sq))
    losses = 1.0 / (sq + 1)
    losses[mask] = 0.0
    return torch.sum(losses, dim=1) ** 0.5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("timeline")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.timeline) as f:
        sched = list(csv.DictReader(f))[:-1]  # steps 0..len-1
    x, vib, bias = hsv_cube()
    loader = DataLoader(
        TensorDataset(x, vib),
        batch_size=32,
        sampler=WeightedRandomSampler(bias, num_samples=len(x), replacement=True),
    )

    def batches():
        while True:
            yield from loader

    it = batches()
    model = ColorMLP()
    opt = torch.optim.Adam(model.parameters(), lr=0)
    e1 = torch.tensor([1.0, 0, 0, 0])
    mse = nn.MSELoss()
    start = time.perf_counter()
    for row in sched:
        data, v = next(it)
        for g in opt.param_groups:
            g["lr"] = float(row["lr"])
        opt.zero_grad()
        out, z = model(data)
        total = mse(data, out).mean()
        r, gg, b = data[:, 0], data[:, 1], data[:, 2]
        red = (r * (1 - gg / 2 - b / 2)) ** 10
        vibrant = v**100
        norms = torch.linalg.vector_norm(z, dim=-1)
        terms = [
            ("reg-polar", torch.sum((z - e1) ** 2, dim=-1), red),
            ("reg-separate", separate(z), None),
            ("reg-planar", torch.sum(z[:, 2:] ** 2, dim=-1), vibrant),
            ("reg-norm-v", (norms - 1) ** 2, vibrant),
            ("reg-norm", (norms - 1) ** 2, None),
        ]
        for name, loss, aff in terms:
            w = float(row.get(name, 1.0))
            if w == 0:
                continue
            a = torch.ones(len(data)) if aff is None else torch.clamp(aff, 0, 1)
            if aff is not None and torch.allclose(a, torch.zeros_like(a)):
                continue
            term = (loss * a).sum() / (a.sum() + 1e-8)
            if torch.isfinite(term):
                total = total + term * w
        if total > 0:
            total.backward()
            opt.step()
    elapsed = time.perf_counter() - start
    print(f"{len(sched)} steps in {elapsed:.2f} s ({args.threads} threads); final total {total.item():.5f}")


if __name__ == "__main__":
    main()
