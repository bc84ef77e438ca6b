"""MiniGrid in pixels: the full grid as an RGB frame, three actions, MiniGrid's own sparse reward.

``MiniGridPixels("MiniGrid-Empty-8x8-v0")`` makes the MiniGrid env with its fully observed RGB image
(``RGBImgObsWrapper`` + ``ImgObsWrapper``: ``tile_size`` pixels per grid square, by default the
fewest that give a frame of at least 64 pixels a side, so 8x8 grids draw 64x64 exactly). Not the
raw dict observation, whose ``image`` is MiniGrid's 7x7x3 symbolic view, not a frame.
Actions: ``Discrete(3)`` (0 turn left, 1 turn right, 2 forward; MiniGrid's own first three, the
only ones that matter in Empty and FourRooms). Reward: MiniGrid's, ``1 - 0.9 * steps / max_steps``
on reaching the goal (terminates), else 0; truncates after MiniGrid's ``max_steps``. Needs the
extra: ``pip install 'worldmodels[minigrid]'``.

    wm collect worldmodels.envs.minigrid_pixels:MiniGridPixels --env-kwargs '{"env_id": "MiniGrid-Empty-8x8-v0"}'
    wm task worldmodels.envs.minigrid_pixels:reached_goal --run RUN
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from worldmodels.core.errors import UserError

FRAME = 64
"""The side, in pixels, the default tile size reaches at least (the pixel pipeline resizes to it)."""


def _minigrid():
    try:
        from minigrid.wrappers import ImgObsWrapper, RGBImgObsWrapper
    except ImportError as e:
        raise UserError(f"MiniGrid envs need minigrid (cannot import it: {e}): "
                        "pip install 'worldmodels[minigrid]'") from None
    return RGBImgObsWrapper, ImgObsWrapper


class MiniGridPixels(gym.Env):
    """MiniGrid env ``env_id`` seen as its full-grid RGB frame ``[H, W, 3]`` uint8 (H, W = grid squares x
    ``tile_size``), with ``Discrete(3)`` actions; ``kwargs`` go to MiniGrid's constructor (``max_steps``,
    ``size``, ...). ``highlight`` shades the agent's 7x7 view cone (off by default: the frame then shows
    the grid, the goal and the agent's square and heading only)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, env_id: str = "MiniGrid-Empty-8x8-v0", render_mode: str | None = None,
                 tile_size: int | None = None, highlight: bool = False, **kwargs):
        rgb, img = _minigrid()
        if not str(env_id).startswith("MiniGrid-"):
            raise ValueError(f"env_id must be a MiniGrid id (MiniGrid-...), got {env_id!r}")
        try:
            inner = gym.make(env_id, highlight=highlight, **kwargs)
        except gym.error.Error as e:
            raise UserError(f"unknown MiniGrid env {env_id!r}: {e}") from None
        grid = inner.unwrapped
        self.tile_size = int(tile_size or math.ceil(FRAME / max(grid.width, grid.height)))
        if self.tile_size < 1:
            raise ValueError(f"tile_size must be >= 1, got {tile_size}")
        self.env = img(rgb(inner, tile_size=self.tile_size))
        self.env_id, self.render_mode = env_id, render_mode
        self.observation_space = self.env.observation_space
        self.action_space = gym.spaces.Discrete(3)
        self._frame: np.ndarray | None = None

    def get_action_meanings(self) -> list[str]:
        """ALE's words for the actions (``wm play`` maps keys from them): turn left, turn right, forward."""
        return ["LEFT", "RIGHT", "UP"]

    @property
    def grid(self):
        """The MiniGrid env itself (``agent_pos``, ``agent_dir``, ``max_steps``, ...)."""
        return self.env.unwrapped

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._frame, info = self.env.reset(seed=seed, options=options)
        return self._frame, info

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 (left), 1 (right) or 2 (forward), got {action!r}")
        self._frame, reward, terminated, truncated, info = self.env.step(int(action))
        return self._frame, float(reward), bool(terminated), bool(truncated), info

    def render(self):
        return self._frame

    def close(self):
        self.env.close()


def reached_goal(episode: dict[str, np.ndarray]) -> np.ndarray:
    """Task reward: 1 on each step whose env reward is > 0 (MiniGrid pays only on reaching the goal), else 0:
    float32 [T] from ``reward`` [T]. The env's own sparse goal, hidden from an explorer that never saw it
    (``wm task worldmodels.envs.minigrid_pixels:reached_goal --run RUN``)."""
    return (np.asarray(episode["reward"]) > 0).astype(np.float32)
