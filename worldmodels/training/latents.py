"""Latents: every episode encoded once by the vision model into ``RUN/latents`` (mu, logvar per
frame), read back as latent episodes for memory training, with optional reward smoothing.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodels.runs.artifacts import (
    load_vision,
    weights_id,
)
from worldmodels.runs.episodes import check_episodes, list_episodes, load_episode
from worldmodels.runs.rundir import CorruptFile, RunDir, atomic_save_npz, atomic_write_json, read_arrays
from worldmodels.training.labels import done_labels, hit_penalties

LATENT_KEYS = ("mu", "logvar", "action", "reward", "terminated")
"""The arrays of a latent file ``RUN/latents/episode_N.npz``."""


@torch.no_grad()
def encode_latents(run: RunDir, device: torch.device, progress: bool = True) -> int:
    """Encode every episode without up-to-date latents; returns how many were encoded."""
    meta_path = run.latents / "meta.json"
    vision_id = weights_id(run.vision)
    current = json.loads(meta_path.read_text()).get("vision") if meta_path.exists() else None
    if current != vision_id:
        if run.latents.exists():
            shutil.rmtree(run.latents)  # the vision model changed (or is unknown): every latent is stale
        atomic_write_json(meta_path, {"vision": vision_id})
    done = {i: p for i, p in list_episodes(run.latents).items() if readable(p)}
    todo = {i: p for i, p in list_episodes(run.episodes).items() if i not in done}
    if not todo:
        return 0
    action_spec = run.action_spec()
    check_episodes(list(todo.values()), action_spec)
    vae = load_vision(run, device)
    for path in tqdm(todo.values(), desc="encode latents", unit="ep", disable=not progress):
        episode = load_episode(path, action_spec)
        frames = torch.from_numpy(episode["obs"])
        mus, logvars = [], []
        for i in range(0, len(frames), 512):
            mu, logvar = vae.encode(frames[i:i + 512].to(device))
            mus.append(mu.float().cpu())
            logvars.append(logvar.float().cpu())
        atomic_save_npz(run.latents / path.name, mu=torch.cat(mus).numpy(), logvar=torch.cat(logvars).numpy(),
                        action=episode["action"], reward=episode["reward"], terminated=episode["terminated"])
    return len(todo)


def readable(path) -> bool:
    """Whether the latent file ``path`` reads whole; a corrupt one is removed (and re-encoded), with a warning."""
    try:
        read_arrays(path, LATENT_KEYS)
        return True
    except CorruptFile as e:
        print(f"latents: re-encoding a corrupt latent file ({e})", file=sys.stderr)
        path.unlink()
        return False


def smooth_rewards(reward: np.ndarray, window: int) -> np.ndarray:
    """Spread each reward evenly over the ``window`` steps up to and including it: ``[T] -> [T]``.

    Sparse spikes (CarRacing's +3.x per new tile) are unpredictable to the step, so a reward head
    trained on them learns little more than their mean; spread out they become a function of
    where the agent is heading, learnable, and the episode's return is kept (all but up to
    ``window - 1`` steps of the first reward's spread).
    """
    if window <= 1:
        return reward
    return np.convolve(reward, np.ones(window, np.float32) / window)[window - 1:].astype(np.float32)


def load_latents(run: RunDir, indices: list[int], reward_smoothing: int = 1,
                 done_label: str = "terminated", hit_cost: float = 0.0) -> list[dict[str, np.ndarray]]:
    """Latent episodes for memory training: mu/logvar ``[T+1, Z]``, model-side actions ``[T, A]``,
    reward and done ``[T]`` (done as ``done_label`` says, the reward less ``hit_cost`` at each hit the frames
    show: see ``worldmodels.training.labels``)."""
    action_spec = run.action_spec()
    paths = list_episodes(run.latents)
    frame_paths = list_episodes(run.episodes) if done_label != "terminated" or hit_cost else {}
    out = []
    for i in indices:
        data = read_arrays(paths[i], LATENT_KEYS)
        frames = read_arrays(frame_paths[i], ("obs",))["obs"] if frame_paths else None
        reward = data["reward"] - hit_penalties(hit_cost, frames) if hit_cost else data["reward"]
        out.append({"mu": data["mu"], "logvar": data["logvar"],
                    "reward": smooth_rewards(reward, reward_smoothing),
                    "done": done_labels(done_label, data["terminated"], frames),
                    "action": action_spec.to_model(torch.from_numpy(data["action"])).numpy()})
    return out
