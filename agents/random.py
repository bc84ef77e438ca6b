"""Model-free exploration policies: uniform random and Brownian (a smooth random walk)."""

from __future__ import annotations

import numpy as np

from worldmodels.envs.spaces import ActionSpec


class RandomAgent:
    """Samples the action space uniformly at every step."""

    def __init__(self, action_spec: ActionSpec):
        self.spec = action_spec
        self.rng = np.random.default_rng()

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, batch: int = 1):
        return None

    def _uniform(self, batch: int) -> np.ndarray:
        if self.spec.discrete:
            return self.rng.integers(self.spec.dim, size=batch).astype(np.int64)
        low, high = np.array(self.spec.low), np.array(self.spec.high)
        return self.rng.uniform(low, high, size=(batch, self.spec.dim)).astype(np.float32)

    def act(self, obs: np.ndarray, state):
        return self._uniform(len(obs)), state


class BrownianAgent(RandomAgent):
    """A random walk within the bounds: ``a_t = clip(a_{t-1} + sqrt(dt) * N(0, I))``.

    With ``dt = 1/50`` this is the exploration policy of the PyTorch reimplementation of World
    Models; it gives CarRacing rollouts that move. For Discrete actions the previous action is
    kept with probability ``stick`` (sticky random actions).
    """

    def __init__(self, action_spec: ActionSpec, dt: float = 1 / 50, stick: float = 0.8):
        super().__init__(action_spec)
        self.dt = dt
        self.stick = stick

    def reset(self, batch: int = 1):
        return self._uniform(batch)

    def act(self, obs: np.ndarray, state):
        if self.spec.discrete:
            switch = self.rng.random(len(state)) >= self.stick
            action = np.where(switch, self._uniform(len(state)), state)
        else:
            step = np.sqrt(self.dt) * self.rng.standard_normal(state.shape)
            action = np.clip(state + step, self.spec.low, self.spec.high).astype(np.float32)
        return action, action
