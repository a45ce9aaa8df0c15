"""A 'sampler' in plain Python: the input points plus Gaussian noise of
standard deviation `sigma`, seeded by the stage seed. Reads and writes tables
through the helper (polars or pandas when installed, else the standard library)."""
import random

from _helper import scoreflow

s = scoreflow.stage()
data = s.read_table("data")
if not isinstance(data, dict):  # a DataFrame: its columns as lists
    data = {c: list(data[c]) for c in ("x", "y")}
rng = random.Random(s.seed)
sigma = float(s.params["sigma"])
n = int(s.params["n_samples"])
xs, ys = data["x"][:n], data["y"][:n]
s.write_table("samples", {
    "x": [x + rng.gauss(0.0, sigma) for x in xs],
    "y": [y + rng.gauss(0.0, sigma) for y in ys],
})
