"""Loaders for the agents registry: ``load(run, device, **options) -> Agent``."""

from __future__ import annotations

import numpy as np
import torch

from worldmodels.agents.random import BrownianAgent, RandomAgent
from worldmodels.agents.world_model import WorldModelAgent, with_noise
from worldmodels.core.errors import UserError
from worldmodels.models.controller import ControllerSpec
from worldmodels.runs.artifacts import load_controller, load_sb3, load_world_model


def random(run, device="cpu", **options):
    return RandomAgent(run.action_spec())


def brownian(run, device="cpu", **options):
    """Brownian noise; ``options``: its ``dt`` and ``stick`` (``BrownianAgent``)."""
    return BrownianAgent(run.action_spec(), **options)


def controller(run, device="cpu", params=None, spec=None, **options):
    """The dream-trained controller (``RUN/controller``), or explicit ``params``/``spec`` (a ``ControllerSpec`` dict)."""
    if params is None:
        spec, params, _ = load_controller(run)
    else:
        spec = ControllerSpec(**spec)
    return controller_agent(run, device, spec, params, "retrain it with `wm dream --no-resume`")


def controller_agent(run, device, spec: ControllerSpec, params, retrain: str) -> WorldModelAgent:
    """A ``WorldModelAgent`` acting with controller ``spec`` and ``params`` [n_params] through the run's
    models, which it must fit (else a ``UserError`` that ends with ``retrain``)."""
    vision, memory = load_world_model(run, device)
    action = run.action_spec()
    if spec.in_dim != memory.z_dim + memory.hidden_size or spec.out_dim != action.dim:
        raise UserError(f"controller {spec} does not fit the run's models (z={memory.z_dim}, "
                        f"h={memory.hidden_size}, actions {action.dim}); {retrain}")
    weights = torch.as_tensor(np.asarray(params, np.float32), device=device)[None]
    return WorldModelAgent(vision, memory, lambda f: spec.act(weights, f[None], action)[0], action, device)


def noisy_controller(run, device="cpu", noise: float = 0.1, **options):
    """The controller with Gaussian action noise (std ``noise`` x the action range): for collection."""
    agent = controller(run, device, **options)
    agent.policy = with_noise(agent.policy, agent.action, noise)
    return agent


def sb3(run, device="cpu", algo=None, **options):
    """A stable-baselines3 model trained in the dream (``RUN/controller/sb3_ALGO.pt`` + ``.json``)."""
    model = load_sb3(run, algo, device)
    vision, memory = load_world_model(run, device)
    action = run.action_spec()

    def policy(features):
        actions, _ = model.predict(features.cpu().numpy(), deterministic=True)
        return torch.as_tensor(actions, device=device)

    return WorldModelAgent(vision, memory, policy, action, device)
