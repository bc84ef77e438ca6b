"""The dream as an RL environment: ``DreamEnv`` (one dream, a ``gymnasium.Env``) and ``dream_vec_env``
(N batched dreams, a stable-baselines3 ``VecEnv``), with an optional curiosity bonus.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from worldmodels.curiosity.transitions import dream_bonus
from worldmodels.dream.imagine import BatchedDream
from worldmodels.models import frames_to_uint8


def intrinsic_bonus(run, memory, device, kind: str | None, beta: float):
    """The dream's curiosity bonus for ``--intrinsic KIND`` (None when not asked for)."""
    if not kind:
        return None
    print(f"dream: adding {beta} x normalised {kind} intrinsic reward")
    return dream_bonus(kind, run, memory, device, beta)


class DreamEnv(gym.Env):
    """One dream as a ``gymnasium.Env``: observation ``[z, h]`` float32, the run's action space."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, dream: BatchedDream, render_mode: str | None = None):
        self.dream = dream
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dream.obs_dim,), np.float32)
        self.action_space = dream.action.space()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.dream.seed(seed)
        return self.dream.reset(1)[0].cpu().numpy().astype(np.float32), {}

    def step(self, action):
        batch = torch.as_tensor(np.asarray(action)[None])
        obs, reward, terminated, truncated = self.dream.step(batch)
        return (obs[0].cpu().numpy().astype(np.float32), float(reward[0]), bool(terminated[0]),
                bool(truncated[0]), {})

    def render(self):
        return frames_to_uint8(self.dream.frames())[0]


def dream_vec_env(dream: BatchedDream, num_envs: int):
    """N dreams as a stable-baselines3 ``VecEnv`` (auto-reset, ``terminal_observation`` in infos)."""
    from stable_baselines3.common.vec_env import VecEnv

    class DreamVecEnv(VecEnv):
        def __init__(self):
            space = gym.spaces.Box(-np.inf, np.inf, (dream.obs_dim,), np.float32)
            self.render_mode = None
            super().__init__(num_envs, space, dream.action.space())
            self.actions = None

        def reset(self):
            if self._seeds and self._seeds[0] is not None:
                dream.seed(self._seeds[0])
            self._reset_seeds()
            return dream.reset(num_envs).cpu().numpy().astype(np.float32)

        def step_async(self, actions):
            self.actions = torch.as_tensor(np.asarray(actions))

        def step_wait(self):
            obs, reward, terminated, truncated = dream.step(self.actions)
            done = terminated | truncated
            obs_np = obs.cpu().numpy().astype(np.float32)
            infos = [{} for _ in range(num_envs)]
            if bool(done.any()):
                for i in torch.nonzero(done).flatten().tolist():
                    infos[i] = {"terminal_observation": obs_np[i].copy(),
                                "TimeLimit.truncated": bool(truncated[i])}
                dream.reset_where(done)
                obs_np = dream.observe().cpu().numpy().astype(np.float32)
            return obs_np, reward.cpu().numpy().astype(np.float32), done.cpu().numpy(), infos

        def close(self):
            pass

        def get_attr(self, attr_name, indices=None):
            return [getattr(self, attr_name)] * len(self._indices(indices))

        def set_attr(self, attr_name, value, indices=None):
            setattr(self, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [getattr(self, method_name)(*args, **kwargs) for _ in self._indices(indices)]

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(self._indices(indices))

        def _indices(self, indices):
            if indices is None:
                return range(num_envs)
            return [indices] if isinstance(indices, int) else indices

    return DreamVecEnv()
