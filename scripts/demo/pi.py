"""A Monte-Carlo estimate of pi, standard library only: `draws` points in the
unit square, the fraction inside the quarter circle, in `batches` batches.
Writes the running estimate per batch and the final error as metrics."""
import math
import random

from _helper import scoreflow

s = scoreflow.stage()
draws, batches = int(s.params["draws"]), int(s.params["batches"])
rng = random.Random(s.seed)
inside = done = 0
rows = {"batch": [], "draws": [], "estimate": []}
for b in range(batches):
    n = draws // batches
    inside += sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    done += n
    rows["batch"].append(b)
    rows["draws"].append(done)
    rows["estimate"].append(4.0 * inside / done)
    s.progress((b + 1) / batches)
estimate = rows["estimate"][-1]
s.write_table("estimates", rows)
s.metrics({"pi_estimate": estimate, "abs_error": abs(estimate - math.pi),
           "std_error": 4.0 * math.sqrt(estimate / 4 * (1 - estimate / 4) / done)})
