"""The real-env driver: one seeded episode of an agent, with callbacks on every step.

``drive(env, agent, seed, callbacks)`` seeds the agent, resets the env with ``seed`` (and reset
``options``), steps the agent until the episode terminates or truncates (or ``max_steps``), and
hands each callback the reset and then every ``Step``. What a caller keeps is a callback:
``EpisodeRecorder`` (the store's episode schema), ``Frames`` (video), ``DecisionTimer``
(seconds per decision). Episode ``i`` of a run seeded ``s`` is seeded ``episode_seed(s, i)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worldmodels.agents.base import Agent


def episode_seed(seed: int, index: int) -> int:
    """The seed of episode ``index`` of a run seeded ``seed``: independent of worker count."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


@dataclass(frozen=True)
class Step:
    """One agent step. ``obs`` (what the agent saw) and ``next_obs`` are frames [64, 64, 3] uint8;
    ``action`` is the agent's action for batch row 0 ([A] float32 or an int64 scalar); ``state``
    and ``next_state`` are the agent's recurrent state before and after ``act``; ``seconds`` is
    the time ``act`` took; ``t`` counts steps from 0."""

    t: int
    obs: np.ndarray
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    info: dict
    next_obs: np.ndarray
    state: Any
    next_state: Any
    seconds: float


class Callback:
    """What ``drive`` calls: override ``on_reset`` and/or ``on_step``."""

    def on_reset(self, obs: np.ndarray, info: dict) -> None:
        """After ``env.reset``: the first frame [64, 64, 3] uint8 and the reset info."""

    def on_step(self, step: Step) -> None:
        """After every ``env.step``."""


@dataclass(frozen=True)
class Outcome:
    """How an episode ended: ``steps`` taken, ``total_reward`` (the float32 sum, as of the store's
    reward column), the last frame and info, and whether it terminated or truncated (neither:
    ``max_steps`` stopped it)."""

    steps: int
    total_reward: float
    obs: np.ndarray
    info: dict
    terminated: bool
    truncated: bool


def drive(env, agent: Agent, seed: int, callbacks: Sequence[Callback] = (), options: dict | None = None,
          max_steps: int | None = None) -> Outcome:
    """One episode of ``agent`` in the pixel env ``env``: agent seeded and env reset with ``seed``.

    Runs until the env terminates or truncates, or after ``max_steps`` steps (None: no limit);
    ``options`` go to ``env.reset``. Each callback sees the reset, then every step in order.
    """
    agent.seed(seed)
    obs, info = env.reset(seed=seed, options=options)
    state = agent.reset(1)
    for callback in callbacks:
        callback.on_reset(obs, info)
    rewards, terminated, truncated = [], False, False
    while not (terminated or truncated) and (max_steps is None or len(rewards) < max_steps):
        start = time.perf_counter()
        action, next_state = agent.act(obs[None], state)
        seconds = time.perf_counter() - start
        next_obs, reward, terminated, truncated, info = env.step(action[0])
        step = Step(len(rewards), obs, action[0], reward, terminated, truncated, info, next_obs, state, next_state,
                    seconds)
        for callback in callbacks:
            callback.on_step(step)
        rewards.append(reward)
        obs, state = next_obs, next_state
    return Outcome(len(rewards), float(np.asarray(rewards, np.float32).sum()), obs, info, terminated, truncated)


class Frames(Callback):
    """The episode's frames: ``frames()`` is [T+1, 64, 64, 3] uint8, the reset frame first."""

    def on_reset(self, obs: np.ndarray, info: dict) -> None:
        self._frames = [obs]

    def on_step(self, step: Step) -> None:
        self._frames.append(step.next_obs)

    def frames(self) -> np.ndarray:
        return np.stack(self._frames)


class EpisodeRecorder(Frames):
    """The episode in the store's schema: ``episode()`` gives ``obs`` [T+1, 64, 64, 3] uint8,
    ``action`` [T, A] float32 or [T] int64, ``reward`` [T] float32, ``terminated`` and
    ``truncated`` [T] bool."""

    def on_reset(self, obs: np.ndarray, info: dict) -> None:
        super().on_reset(obs, info)
        self._columns = {"action": [], "reward": [], "terminated": [], "truncated": []}

    def on_step(self, step: Step) -> None:
        super().on_step(step)
        for key, column in self._columns.items():
            column.append(getattr(step, key))

    def episode(self) -> dict[str, np.ndarray]:
        c = self._columns
        return {"obs": self.frames(), "action": np.stack(c["action"]), "reward": np.asarray(c["reward"], np.float32),
                "terminated": np.asarray(c["terminated"], bool), "truncated": np.asarray(c["truncated"], bool)}


class DecisionTimer(Callback):
    """Seconds the agent spent choosing actions: ``seconds`` in all over ``decisions`` steps."""

    def on_reset(self, obs: np.ndarray, info: dict) -> None:
        self.seconds, self.decisions = 0.0, 0

    def on_step(self, step: Step) -> None:
        self.seconds += step.seconds
        self.decisions += 1

    @property
    def per_decision(self) -> float:
        """Mean seconds per decision (0 before any step)."""
        return self.seconds / max(self.decisions, 1)


def run_episode(env, agent: Agent, seed: int, options: dict | None = None,
                max_steps: int | None = None) -> dict[str, np.ndarray]:
    """``drive`` recording the episode in the store's schema (see ``EpisodeRecorder``)."""
    recorder = EpisodeRecorder()
    drive(env, agent, seed, [recorder], options, max_steps)
    return recorder.episode()
