"""The Python API: ``load_run`` gives a trained run's models, agents, dream env and evaluation in one
object; ``register_envs`` adds the Gymnasium ids ``worldmodels/Dream-v0`` (a run's dream) and
``worldmodels/Catch-v0``, ``worldmodels/PointMass-v0``, ``worldmodels/Maze-v0``, ``worldmodels/Reacher2Link-v0``
(the small custom envs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from worldmodels.agents import load_agent
from worldmodels.agents.base import Agent
from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.dream.env import DreamEnv
from worldmodels.dream.imagine import BatchedDream, DreamConfig, initial_latents
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.models.memory import Memory
from worldmodels.models.vision import ConvVAE, frames_to_uint8
from worldmodels.runs.artifacts import load_world_model
from worldmodels.runs.rundir import RunDir

CUSTOM_ENVS = {"Catch": "worldmodels.envs.catch:Catch", "PointMass": "worldmodels.envs.point:PointMass",
               "Maze": "worldmodels.envs.maze:Maze", "Reacher2Link": "worldmodels.envs.reacher:Reacher2Link"}
OBSERVATIONS = ("latent", "pixels")


class PixelDream(gym.ObservationWrapper):
    """A dream whose observations are its latents decoded by the vision model: [64, 64, 3] uint8."""

    def __init__(self, env: DreamEnv):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return frames_to_uint8(self.env.unwrapped.dream.frames())[0]


@dataclass
class Run:
    """A trained run, loaded: ``vision`` (ConvVAE), ``memory`` (any ``Memory``), on ``device``."""

    dir: RunDir
    vision: ConvVAE
    memory: Memory
    device: torch.device

    @property
    def root(self) -> Path:
        return self.dir.root

    def agent(self, name: str = "controller", **options) -> Agent:
        """An agent by name (controller, sb3, cem, random, ...; ``wm eval --agent``), with its options."""
        return load_agent(name, self.dir, str(self.device), **options)

    def real_env(self, max_steps: int | None = None) -> gym.Env:
        """The run's real env, as collected: frames [64, 64, 3] uint8, the run's action space."""
        return self.dir.make_env(max_steps=max_steps)

    def dream_env(self, obs: str = "latent", temperature: float = 1.0, done_threshold: float = 0.5,
                  dream_steps: int = 1000, termination: str = "threshold") -> gym.Env:
        """One dream as a ``gymnasium.Env``: observations ``[z, h]`` float32 [Z+H] (``obs="latent"``) or
        decoded frames [64, 64, 3] uint8 (``obs="pixels"``); rewards and ends as the memory model predicts
        (``termination``: at ``done_threshold``, or "sampled" at the predicted P(done) each step);
        truncated after ``dream_steps``."""
        if obs not in OBSERVATIONS:
            raise UserError(f"obs={obs!r}: choose one of {', '.join(OBSERVATIONS)}")
        dream = BatchedDream(self.memory, initial_latents(self.dir.latents), self.dir.action_spec(),
                             DreamConfig(temperature=temperature, done_threshold=done_threshold,
                                         max_steps=dream_steps, termination=termination), self.device, self.vision)
        env = DreamEnv(dream, render_mode="rgb_array")
        return PixelDream(env) if obs == "pixels" else env

    def evaluate(self, agent: str = "controller", episodes: int = 10, seed: int = 0, max_steps: int | None = None,
                 workers: int = 1, **options) -> dict:
        """Score ``agent`` in the real env over seeded episodes, as ``wm eval`` does (nothing written):
        per-episode ``returns`` and ``lengths``, their ``mean``, ``std``, ``min``, ``max``."""
        return evaluate(self.dir, agent, episodes=episodes, workers=workers, seed=seed, max_steps=max_steps,
                        progress=False, agent_options=options, device=str(self.device), write=False)


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """The run at ``path`` with its vision and memory models on ``device`` (cpu, cuda, cuda:N, auto)."""
    run = RunDir(path)
    run.read_meta()
    device = pick_device(device)
    vision, memory = load_world_model(run, device)
    return Run(run, vision, memory, device)


def make_dream_env(run: str | Path, obs: str = "latent", device: str = "cpu", **settings) -> gym.Env:
    """``gymnasium.make("worldmodels/Dream-v0", run=PATH, obs=...)``: ``load_run(run).dream_env(obs, ...)``."""
    return load_run(run, device).dream_env(obs, **settings)


def register_envs() -> None:
    """Register ``worldmodels/Dream-v0`` and the custom envs with Gymnasium (once; done on ``import worldmodels``)."""
    if "worldmodels/Dream-v0" in gym.registry:
        return
    gym.register("worldmodels/Dream-v0", entry_point="worldmodels.api:make_dream_env")
    for name, entry_point in CUSTOM_ENVS.items():
        gym.register(f"worldmodels/{name}-v0", entry_point=entry_point)
