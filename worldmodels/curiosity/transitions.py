"""Curiosity from a run's stored data: every real transition of the encoded episodes, fitting an
intrinsic-reward model on them, and the dream's curiosity bonus (``wm dream --intrinsic``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from worldmodels.core.errors import UserError
from worldmodels.curiosity.normalize import RewardMixer
from worldmodels.curiosity.rewards import Batch, Intrinsic, make_intrinsic
from worldmodels.dream.imagine import filter_states
from worldmodels.models.memory import State
from worldmodels.runs.episodes import list_episodes
from worldmodels.training.latents import load_latents


@torch.no_grad()
def run_transitions(run, memory, device: torch.device | str = "cpu") -> Batch:
    """Every real transition of the run's encoded episodes: ``z`` = the VAE mean, the memory state
    before each step from running ``memory`` over the episode. Tensors [N, ...] on ``device``."""
    episodes = load_latents(run, list(list_episodes(run.latents)))
    if not episodes:
        raise UserError(f"no encoded episodes in {run.latents}: run `wm train --run {run.root}` first")
    zs, actions, next_zs, states = [], [], [], []
    for e in episodes:
        z = torch.as_tensor(e["mu"], device=device)
        a = torch.as_tensor(e["action"], device=device)
        states.append(tuple(s[0, :-1] for s in filter_states(memory, z[None, :-1], a[None])))
        zs.append(z[:-1])
        next_zs.append(z[1:])
        actions.append(a)
    stacked = tuple(torch.cat(parts) for parts in zip(*states))
    return {"state": stacked, "z": torch.cat(zs), "action": torch.cat(actions), "next_z": torch.cat(next_zs)}


def fit_intrinsic(model: Intrinsic, data: Batch, steps: int = 500, batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Train ``model`` on ``data`` (a ``Batch`` of N transitions): ``steps`` minibatch updates, or one
    pass for ``single_pass`` models. Returns the last losses."""
    if model.single_pass:
        return model.update(data)
    g = torch.Generator().manual_seed(seed)
    n, losses = len(data["z"]), {}
    for _ in range(steps):
        idx = torch.randint(n, (min(batch_size, n),), generator=g).to(data["z"].device)
        losses = model.update({"state": None if data["state"] is None else tuple(s[idx] for s in data["state"]),
                               "z": data["z"][idx], "action": data["action"][idx], "next_z": data["next_z"][idx]})
    return losses


def dream_bonus(kind: str, run, memory, device: torch.device | str, beta: float,
                steps: int = 500) -> Callable[[State, Tensor, Tensor, Tensor], Tensor]:
    """For ``wm dream --intrinsic KIND --beta B``: ``bonus(state, z, action, next_z) -> [N]``.

    ``state``: the memory state before the dream step, ``z`` [N, Z] its latent, ``action`` [N, A]
    model-side float, ``next_z`` [N, Z] the dreamed next latent. Returns ``beta * r_int / std``
    (running std over all calls) to add to the dream reward. ``surprise`` reads ``memory`` itself;
    the other models are trained first on the run's real transitions (``steps`` updates; ICM then
    scores the dreamed ``next_z``, disagreement and infogain ignore it).
    """
    model = make_intrinsic(kind, memory, device, action=run.action_spec())
    if kind != "surprise":
        fit_intrinsic(model, run_transitions(run, memory, device), steps=steps)
    mixer = RewardMixer(beta)
    model.eval()

    def bonus(state: State, z: Tensor, action: Tensor, next_z: Tensor) -> Tensor:
        r = model.intrinsic_reward(state, z, action, next_z if model.needs_next else None)
        return mixer.intrinsic(r.float())

    return bonus
