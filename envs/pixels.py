"""The pixel pipeline every stage shares: frame -> crop -> 64x64 uint8 HWC, with action repeat."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import gymnasium as gym
import numpy as np

from worldmodels.core.errors import UserError

# Environment ids with a known crop: CarRacing drops its dashboard (bottom 12 of 96 rows),
# as Ha & Schmidhuber do. VizDoom's TakeCover needs none: Ha & Schmidhuber cut the status bar off
# their Doom env's 640x480 frames (rows 0-400), and ViZDoom's take_cover.cfg renders no status bar,
# so its whole 320x240 frame is the same view, resized to 64x64.
DEFAULT_CROPS: dict[str, tuple[int, int, int, int]] = {
    "CarRacing-v3": (0, 84, 0, 96),
    "CarRacing-v2": (0, 84, 0, 96),
}


@dataclass
class PixelConfig:
    """How raw frames become model inputs.

    ``crop`` is ``(top, bottom, left, right)`` in raw-frame pixels (``None``: the whole frame);
    ``size`` the square output side; ``frame_skip`` how many env steps one agent action lasts
    (rewards summed over them).
    """

    size: int = 64
    crop: tuple[int, int, int, int] | None = None
    frame_skip: int = 1

    @classmethod
    def for_env(cls, spec: str, **overrides) -> PixelConfig:
        config = cls(crop=DEFAULT_CROPS.get(spec))
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        if config.crop is not None:
            config.crop = tuple(int(c) for c in config.crop)
        if config.frame_skip < 1:
            raise UserError(f"frame_skip must be >= 1, got {config.frame_skip}")
        return config

    @classmethod
    def from_dict(cls, d: dict) -> PixelConfig:
        crop = d.get("crop")
        return cls(size=int(d["size"]), crop=tuple(crop) if crop else None, frame_skip=int(d["frame_skip"]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop"] = list(self.crop) if self.crop else None
        return d


def is_image(x) -> bool:
    """True for an RGB image: uint8 array ``[H, W, 3]``."""
    return isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[-1] == 3 and x.dtype == np.uint8


def process_frame(frame: np.ndarray, config: PixelConfig) -> np.ndarray:
    """Raw RGB frame ``[H, W, 3]`` uint8 -> ``[size, size, 3]`` uint8 (crop, then INTER_AREA resize)."""
    if config.crop is not None:
        top, bottom, left, right = config.crop
        frame = frame[top:bottom, left:right]
    if frame.shape[0] != config.size or frame.shape[1] != config.size:
        frame = cv2.resize(frame, (config.size, config.size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame, dtype=np.uint8)


class PixelObservation(gym.Wrapper):
    """Wraps any env so observations are ``[size, size, 3]`` uint8 frames.

    The frame is the observation itself when that is an RGB image, its RGB image entry when it is
    a dict (``image_key``: ViZDoom's ``screen``, ``[240, 320, 3]``), else ``env.render()`` in
    ``rgb_array`` mode. The original observation stays in ``info["state"]``.
    """

    def __init__(self, env: gym.Env, config: PixelConfig):
        super().__init__(env)
        self.config = config
        self.observation_space = gym.spaces.Box(0, 255, (config.size, config.size, 3), np.uint8)
        self._key = image_key(env.observation_space)
        self._from_obs = self._key is not None or is_image_space(env.observation_space)
        if not self._from_obs and env.render_mode != "rgb_array":
            raise UserError(
                f"observation space {env.observation_space} is not an RGB image and the env's "
                f"render_mode is {env.render_mode!r}, not 'rgb_array': no frames to learn from"
            )

    def _frame(self, obs) -> np.ndarray:
        if self._key is not None:
            obs = obs[self._key]
        frame = obs if self._from_obs else self.env.render()
        if not is_image(frame):
            raise UserError(f"the env produced no RGB frame (got {type(frame).__name__} "
                            f"{getattr(frame, 'shape', '')}); pixels need uint8 [H, W, 3]")
        return process_frame(frame, self.config)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info, state=obs)
        return self._frame(obs), info

    def step(self, action):
        total = 0.0
        for _ in range(self.config.frame_skip):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        info = dict(info, state=obs)
        return self._frame(obs), total, terminated, truncated, info


MIN_FRAME_SIDE = 16
"""Smaller uint8 [H, W, 3] observations are symbolic grids (MiniGrid's 7x7x3 view), not frames: render instead."""


def is_image_space(space: gym.Space) -> bool:
    """True for a Box of RGB frames: uint8 ``[H, W, 3]`` with both sides at least ``MIN_FRAME_SIDE`` pixels."""
    return (isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.shape[-1] == 3
            and space.dtype == np.uint8 and min(space.shape[:2]) >= MIN_FRAME_SIDE)


def image_key(space: gym.Space) -> str | None:
    """The key of the RGB image in a ``Dict`` observation space (``"screen"`` when several are), else None."""
    if not isinstance(space, gym.spaces.Dict):
        return None
    keys = [key for key, sub in space.spaces.items() if is_image_space(sub)]
    if len(keys) > 1 and "screen" in keys:
        return "screen"
    return keys[0] if keys else None
