"""scoreflow's model weights as ``torch.nn.Module``s.

``scoreflow export STAGE.model --pipeline FILE -o m.safetensors`` writes the
weights in PyTorch's layout with the model's configuration in the header
(``__metadata__["scoreflow.model"]``); :func:`load` rebuilds the network from
it. The modules compute what scoreflow's own forward passes compute (a test in
``tests/command.rs`` compares them row by row):

* ``kind: eps`` — the two-moons ε-network. ``join: concat`` is the origin's
  ``ScoreNet`` (its state-dict names: ``time_emb.time_mlp.linear_1/2``,
  ``net.0/2/4``); ``join: add`` scoreflow's ``wide`` variant (``temb.i``,
  ``trunk.i``). ``forward(x, t)`` takes raw timesteps (0…999) and returns ε̂.
* ``kind: score`` — the S-MEME score network (``layers.i``) and, for a tuned
  model, its delta network (``delta.i``); ``forward(x, t)`` returns the score
  ``s_pre(x, t) + Δ(x, t)``.

Needs torch (imported here, not by the helper's core); ``safetensors`` is used
when installed, else the file is parsed with the standard library.
"""

import json
import math
import struct

import torch
from torch import nn


def read_safetensors(path):
    """(tensors by name, metadata) of a safetensors file."""
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except ImportError:
        pass
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {}) or {}
    body = data[8 + n :]
    dtypes = {"F32": torch.float32, "F64": torch.float64}
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[start:end]), dtype=dtypes[info["dtype"]])
        tensors[name] = t.reshape(info["shape"])
    return tensors, meta


class _Time(nn.Module):
    """diffusers' ``TimestepEmbedding``: Linear → SiLU → Linear."""

    def __init__(self, n_in, width):
        super().__init__()
        self.linear_1 = nn.Linear(n_in, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, e):
        return self.linear_2(nn.functional.silu(self.linear_1(e)))


class _TimeEmb(nn.Module):
    def __init__(self, n_in, width):
        super().__init__()
        self.time_mlp = _Time(n_in, width)


class EpsNet(nn.Module):
    """The two-moons ε-network (``kind: eps``)."""

    def __init__(self, dim, hidden, depth, time_channels, join):
        super().__init__()
        self.time_channels, self.concat = time_channels, join == "concat"
        half = time_channels // 2
        freqs = [math.exp(-math.log(10000.0) * k / half) for k in range(half)]
        self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float32), persistent=False)
        width = time_channels if self.concat else hidden
        sizes = [(dim + (width if self.concat else 0), hidden)] + [(hidden, hidden)] * (depth - 1) + [(hidden, dim)]
        if self.concat:
            self.time_emb = _TimeEmb(time_channels, width)
            mods = []
            for i, (a, b) in enumerate(sizes):
                mods.append(nn.Linear(a, b))
                if i + 1 < len(sizes):
                    mods.append(nn.SiLU())
            self.net = nn.Sequential(*mods)
        else:
            self.temb = nn.ModuleList([nn.Linear(time_channels, width), nn.Linear(width, width)])
            self.trunk = nn.ModuleList([nn.Linear(a, b) for a, b in sizes])

    def forward(self, x, t):
        arg = t.reshape(-1, 1).to(torch.float32) * self.freqs.reshape(1, -1)
        e = torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)  # flip_sin_to_cos
        if self.concat:
            return self.net(torch.cat([x, self.time_emb.time_mlp(e)], dim=1))
        temb = self.temb[1](nn.functional.silu(self.temb[0](e)))
        h = nn.functional.silu(self.trunk[0](x) + temb)
        for layer in self.trunk[1:-1]:
            h = nn.functional.silu(layer(h))
        return self.trunk[-1](h)


def _mlp(sizes):
    return nn.ModuleList([nn.Linear(a, b) for a, b in sizes])


def _run(layers, h):
    for i, layer in enumerate(layers):
        h = layer(h)
        if i + 1 < len(layers):
            h = nn.functional.silu(h)
    return h


class ScoreNet(nn.Module):
    """The S-MEME score network (``kind: score``), with its delta when tuned."""

    def __init__(self, freqs, layer_sizes, delta_sizes):
        super().__init__()
        self.register_buffer("freqs", torch.tensor(freqs, dtype=torch.float32), persistent=False)
        self.layers = _mlp(layer_sizes)
        self.delta = _mlp(delta_sizes)

    def forward(self, x, t):
        t = t.reshape(-1, 1).to(torch.float32)
        arg = t * self.freqs.reshape(1, -1)
        score = _run(self.layers, torch.cat([x, torch.sin(arg), torch.cos(arg)], dim=1))
        if len(self.delta):
            score = score + _run(self.delta, torch.cat([x, t], dim=1))
        return score


def _sizes(tensors, prefix):
    out, i = [], 0
    while "%s.%d.weight" % (prefix, i) in tensors:
        o, n = tensors["%s.%d.weight" % (prefix, i)].shape
        out.append((n, o))
        i += 1
    return out


def load(path, ema=False):
    """The network in a safetensors file written by ``scoreflow export``, in
    eval mode; ``ema=True`` takes the EMA weights of a model trained with them."""
    tensors, meta = read_safetensors(path)
    if "scoreflow.model" not in meta:
        raise ValueError("%s has no scoreflow.model metadata: export it with `scoreflow export … -o x.safetensors`" % path)
    info = json.loads(meta["scoreflow.model"])
    kind = info.get("kind")
    if kind == "eps":
        c = info["config"]
        model = EpsNet(c["dim"], c["hidden"], c["depth"], c["time_channels"], c.get("join", "add"))
        if ema:
            if not any(k.startswith("ema.") for k in tensors):
                raise ValueError("%s holds no EMA weights (trained without ema)" % path)
            state = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        else:
            state = {k: v for k, v in tensors.items() if not k.startswith("ema.")}
    elif kind == "score":
        model = ScoreNet(info["freqs"], _sizes(tensors, "layers"), _sizes(tensors, "delta"))
        state = tensors
    else:
        raise ValueError("%s holds a model of kind %r, which this helper does not know" % (path, kind))
    model.load_state_dict(state, strict=True)
    model.info = info
    return model.eval()
