"""The ε-network and DDPM schedule shared by train.py and sample.py: the origin's
ScoreNet as scoreflow's `architecture: origin` builds it (src/model/eps.rs)."""
import math

import torch
import torch.nn as nn


class EpsNet(nn.Module):
    """ε̂(x, t) for x [B, dim] and raw timesteps t [B] (0…T−1, fractional at sampling).

    diffusers Timesteps(time_channels, flip_sin_to_cos=True, downscale_freq_shift=0):
    [cos(t·f), sin(t·f)], f_k = exp(−ln(10000)·k/half); TimestepEmbedding:
    Linear → SiLU → Linear at width time_channels; trunk on [x, temb]:
    Linear(dim + tc, hidden) → SiLU → Linear(hidden, hidden) → SiLU →
    Linear(hidden, dim), the last layer zero-initialised.
    """

    def __init__(self, dim=2, hidden=128, time_channels=64):
        super().__init__()
        half = time_channels // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half).float())
        self.temb = nn.Sequential(nn.Linear(time_channels, time_channels), nn.SiLU(), nn.Linear(time_channels, time_channels))
        self.trunk = nn.Sequential(
            nn.Linear(dim + time_channels, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, dim),
        )
        nn.init.zeros_(self.trunk[-1].weight)
        nn.init.zeros_(self.trunk[-1].bias)

    def forward(self, x, t):
        arg = t.float()[:, None] * self.freqs[None, :]
        temb = self.temb(torch.cat([torch.cos(arg), torch.sin(arg)], dim=1))
        return self.trunk(torch.cat([x, temb], dim=1))


def alphas_cumprod(beta_start, beta_end, steps):
    """ᾱ_t of diffusers' linear β schedule, built in float64 as scoreflow does
    (src/sde/ddpm.rs, DdpmSchedule::linear)."""
    betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)
