"""The curious explorer: the controller that ``wm explore`` optimised in the dream on intrinsic reward.

Loaded from ``RUN/explore/params.npz`` + ``RUN/explore/config.json``; acts like the dream-trained
controller (``[z, h] -> action`` through the run's vision and memory models), with exploration
noise (``noise``: Gaussian std x range for Box, random-action probability for Discrete).
"""

from __future__ import annotations

from worldmodels.agents.loaders import controller_agent
from worldmodels.agents.world_model import with_noise
from worldmodels.runs.artifacts import load_explorer


def curious(run, device="cpu", noise: float | None = None, **options):
    """The explorer of ``wm explore`` behind the run's models, with exploration ``noise`` (None: as it was saved)."""
    spec, params, info = load_explorer(run)
    agent = controller_agent(run, device, spec, params, f"re-run `wm explore --run {run.root}`")
    agent.policy = with_noise(agent.policy, agent.action, info.get("noise", 0.1) if noise is None else noise)
    return agent
