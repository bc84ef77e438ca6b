"""The curious explorer: the controller that ``wm explore`` optimised in the dream on intrinsic reward.

Loaded from ``RUN/explore/params.npz`` + ``RUN/explore/config.json``; acts like the dream-trained
controller (``[z, h] -> action`` through the run's vision and memory models), with exploration
noise (``noise``: Gaussian std x range for Box, random-action probability for Discrete).
"""

from __future__ import annotations

import json

import numpy as np
import torch

from worldmodels.core.errors import UserError


def curious(run, device="cpu", noise: float | None = None, **options):
    from worldmodels.agents.world_model import WorldModelAgent, with_noise
    from worldmodels.models.controller import ControllerSpec
    from worldmodels.runs.artifacts import load_world_model

    directory = run.root / "explore"
    if not (directory / "config.json").exists():
        raise UserError(f"no explorer in {directory}: run `wm explore --run {run.root}` first")
    config = json.loads((directory / "config.json").read_text())
    spec = ControllerSpec(**config["spec"])
    with np.load(directory / "params.npz") as data:
        params = torch.as_tensor(data["params"], device=device)[None]
    vision, memory = load_world_model(run, device)
    action = run.action_spec()
    if spec.in_dim != memory.z_dim + memory.hidden_size or spec.out_dim != action.dim:
        raise UserError(f"explorer {spec} does not fit the run's models; re-run `wm explore --run {run.root}`")
    policy = with_noise(lambda f: spec.act(params, f[None], action)[0], action,
                        config.get("noise", 0.1) if noise is None else noise)
    return WorldModelAgent(vision, memory, policy, action, device)
