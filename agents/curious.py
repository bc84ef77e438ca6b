"""The curious explorer: the controller that ``wm explore`` optimised in the dream on intrinsic reward.

Loaded from ``RUN/explore/params.npz`` + ``RUN/explore/config.json``; acts like the dream-trained
controller (``[z, h] -> action`` through the run's vision and memory models), but on Discrete actions it
samples from ``softmax(tanh(logits) / temperature)`` (temperature 0: argmax, a deterministic explorer): the tanh
bounds how greedy CMA-ES can make it (at temperature 1 and 4 actions no action gets probability above 0.71, an
entropy floor of 0.92 nats, however large its weights grow), then adds
exploration noise (``noise``: Gaussian std x range for Box, random-action probability for Discrete).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from worldmodels.agents.loaders import controller_agent
from worldmodels.agents.world_model import with_noise
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.controller import ControllerSpec
from worldmodels.runs.artifacts import load_explorer


def sample(logits: Tensor, temperature: float, generator: torch.Generator | None = None) -> Tensor:
    """Action indices ``[...]`` drawn from ``softmax(logits [..., A] / temperature)``; argmax at temperature 0."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, -1)
    flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    return flat.view(probs.shape[:-1])


def explorer_act(spec: ControllerSpec, params: Tensor, features: Tensor, action: ActionSpec, temperature: float,
                 generator: torch.Generator | None = None) -> Tensor:
    """``spec.act`` of controllers ``params`` [P, n] on ``features`` [P, R, F], Discrete actions (indices [P, R])
    sampled from ``softmax(tanh(logits) / temperature)``; Box actions as ``spec.act`` gives them."""
    if not action.discrete:
        return spec.act(params, features, action)
    return sample(torch.tanh(spec.logits(params, features)), temperature, generator)


def curious(run, device="cpu", noise: float | None = None, temperature: float | None = None, **options):
    """The explorer of ``wm explore`` behind the run's models, sampling at ``temperature`` with exploration
    ``noise`` (None: as it was saved; explorers saved without a temperature act greedily)."""
    spec, params, info = load_explorer(run)
    agent = controller_agent(run, device, spec, params, f"re-run `wm explore --run {run.root}`")
    weights = torch.as_tensor(np.asarray(params, np.float32), device=device)[None]
    tau = info.get("action_temperature", 0.0) if temperature is None else temperature
    agent.policy = with_noise(lambda f: explorer_act(spec, weights, f[None], agent.action, tau)[0], agent.action,
                              info.get("noise", 0.1) if noise is None else noise)
    return agent
