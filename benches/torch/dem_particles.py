"""PyTorch CPU reference for the particle-system benches in `cargo bench --bench
idem`, the way DEM computes them:

* the log-sum-exp score estimator on LJ-13 at a training batch (512 points x
  K = 1000): `torch.func.grad` of `logsumexp(-E(x + sqrt(h) z_i)) - log K`,
  vmapped over the points with different randomness; E is DEM's Lennard-Jones
  (bgflow's ordered pairs, r = sqrt(|d|^2 + 1e-6), harmonic pull to the centre
  of mass); then DEM's per-particle norm clip of 20;
* DEM's EGNN (`EGNN_dynamics`: recurrent, attention, tanh, sum aggregation,
  time as the node input, edge attribute = input squared distances), written
  here from the architecture, one training step (forward, backward, global-norm clip 0.5, Adam) at
  DW-4 (128 wide, 3 layers, batch 512), LJ-13 (128 wide, 5 layers, batch
  64) and LJ-55 (128 wide, 5 layers, batch 128), and one forward over 1000 DW-4 and LJ-13 particles. Edges are DEM's index lists
  with scatter-add (its `unsorted_segment_sum`).

Not a dependency: run it in a venv outside the repository (`pip install
torch`), on the machine that runs the Rust bench:

    python benches/torch/dem_particles.py [--threads N] [--only estimator|train|forward]

Prints the median time of each over 10 runs after 2 warm-up runs.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=torch.get_num_threads())
parser.add_argument("--only", choices=["estimator", "train", "forward"], help="run one group")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)


def timeit(name, fn, reps=10):
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"{name}: {med * 1e3:.1f} ms (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})")
    return med


# --- the estimator on LJ-13 -------------------------------------------------
N, D = 13, 3


def lj_energy(x):
    x = x.view(-1, N, D)
    r = x.unsqueeze(2) - x.unsqueeze(1)
    mask = ~torch.eye(N, dtype=torch.bool)
    r = r[:, mask].view(-1, N, N - 1, D)
    d = (r.pow(2).sum(-1) + 1e-6).sqrt()
    lj = (1.0 / d) ** 12 - 2 * (1.0 / d) ** 6
    e = lj.view(x.shape[0], -1).sum(-1)
    c = x - x.mean(1, keepdim=True)
    return e + 0.5 * c.pow(2).sum((-2, -1))


sigma_min, sigma_max = 0.01, 2.0
h = (sigma_min * math.sqrt((sigma_max / sigma_min) ** (2 * 0.5) - 1)) ** 2


def log_expectation(x, k):
    samples = x.unsqueeze(0) + torch.randn(k, x.shape[0]) * math.sqrt(h)
    return torch.logsumexp(-lj_energy(samples), dim=-1) - math.log(k)


estimate = torch.vmap(torch.func.grad(log_expectation), in_dims=(0, None), randomness="different")

phi = (1 + 5 ** 0.5) / 2
ico = torch.tensor([[0, a, b] for a in (1, -1) for b in (phi, -phi)]
                   + [[a, b, 0] for a in (1, -1) for b in (phi, -phi)]
                   + [[b, 0, a] for a in (1, -1) for b in (phi, -phi)], dtype=torch.float32) * 0.5
base = torch.cat([torch.zeros(1, 3), ico]).reshape(-1)
x = base + 0.3 * torch.randn(512, 39)
x = (x.view(-1, N, D) - x.view(-1, N, D).mean(1, keepdim=True)).reshape(512, 39)


def est_batch():
    s = estimate(x, 1000).view(-1, N, D)
    norm = torch.linalg.vector_norm(s, dim=-1)
    return (s * torch.clamp(20.0 / (norm + 1e-6), max=1).unsqueeze(-1)).view(512, 39)


print(f"torch {torch.__version__}, {args.threads} threads")
if args.only in (None, "estimator"):
    timeit("estimator log_sum_exp lj13 512x1000", est_batch, reps=5)


# --- DEM's EGNN ---------------------------------------------------------------
class GCL(nn.Module):
    def __init__(self, hid, coords_range):
        super().__init__()
        act = nn.SiLU()
        self.edge_mlp = nn.Sequential(nn.Linear(2 * hid + 2, hid), act, nn.Linear(hid, hid), act)
        self.node_mlp = nn.Sequential(nn.Linear(2 * hid, hid), act, nn.Linear(hid, hid))
        layer = nn.Linear(hid, 1, bias=False)
        nn.init.xavier_uniform_(layer.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(hid, hid), act, layer, nn.Tanh())
        self.att_mlp = nn.Sequential(nn.Linear(hid, 1), nn.Sigmoid())
        self.coords_range = coords_range

    def forward(self, h, edges, coord, edge_attr):
        row, col = edges
        diff = coord[row] - coord[col]
        radial = diff.pow(2).sum(1, keepdim=True)
        diff = diff / (torch.sqrt(radial + 1e-8) + 1)
        m = self.edge_mlp(torch.cat([h[row], h[col], radial, edge_attr], 1))
        m = m * self.att_mlp(m)
        trans = diff * self.coord_mlp(m) * self.coords_range
        coord = coord + torch.zeros_like(coord).index_add_(0, row, trans)
        agg = torch.zeros_like(h).index_add_(0, row, m)
        h = h + self.node_mlp(torch.cat([h, agg], 1))
        return h, coord


class EGNN(nn.Module):
    def __init__(self, n, d, hid, layers):
        super().__init__()
        self.n, self.d = n, d
        self.embedding = nn.Linear(1, hid)
        self.layers = nn.ModuleList([GCL(hid, 15.0 / layers) for _ in range(layers)])
        rows, cols = zip(*[(i, j) for i in range(n) for j in range(n) if i != j])
        self.rows, self.cols = torch.tensor(rows), torch.tensor(cols)
        self._edges = {}

    def edges(self, b):
        if b not in self._edges:
            off = torch.arange(b).repeat_interleave(len(self.rows)) * self.n
            self._edges[b] = (self.rows.repeat(b) + off, self.cols.repeat(b) + off)
        return self._edges[b]

    def forward(self, t, xs):
        b = xs.shape[0]
        e = self.edges(b)
        x = xs.reshape(b * self.n, self.d)
        h = self.embedding(t.repeat_interleave(self.n).unsqueeze(1))
        edge_attr = (x[e[0]] - x[e[1]]).pow(2).sum(1, keepdim=True)
        c = x
        for layer in self.layers:
            h, c = layer(h, e, c, edge_attr)
        vel = (c - x).view(b, self.n, self.d)
        return (vel - vel.mean(1, keepdim=True)).view(b, self.n * self.d)


def train_bench(name, n, d, hid, layers, b):
    net = EGNN(n, d, hid, layers)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xs, ts, ys = torch.rand(b, n * d) * 4 - 2, torch.rand(b), torch.rand(b, n * d) * 10 - 5

    def step():
        opt.zero_grad()
        loss = (net(ts, xs) - ys).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 0.5)
        opt.step()

    timeit(name, step)


if args.only in (None, "train"):
    train_bench("egnn dw4 train step 512", 4, 2, 128, 3, 512)
    train_bench("egnn lj13 train step 64", 13, 3, 128, 5, 64)
    train_bench("egnn lj55 train step 128", 55, 3, 128, 5, 128)
if args.only in (None, "forward"):
    net = EGNN(4, 2, 128, 3)
    xs, ts = torch.rand(1000, 8) * 4 - 2, torch.full((1000,), 0.4)
    with torch.no_grad():
        timeit("egnn dw4 forward 1000", lambda: net(ts, xs))
    net13 = EGNN(13, 3, 128, 5)
    xs13, ts13 = torch.rand(1000, 39) * 3 - 1.5, torch.full((1000,), 0.4)
    with torch.no_grad():
        timeit("egnn lj13 forward 1000", lambda: net13(ts13, xs13), reps=5)
