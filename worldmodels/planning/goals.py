"""Goal images for visual foresight: read at any size, put through the run's own pixel pipeline, or
rendered from a chosen env state.

An env renders frames at its own size (CarRacing 96x96, a custom env whatever it likes); the run's
frames are those renders cropped and resized to 64x64 by ``process_frame`` at collection.
``goal_frame`` applies the same function to a goal image: a frame of the run's size is taken as is,
a render of the env (at its own size, or scaled with the same aspect ratio) is cropped like the run's
frames and resized, and an image already cropped to the run's crop (at any scale) is resized.
``render_goal`` (``wm goal-image``) writes the render of an env state: the goal a user wants reached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np

from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least
from worldmodels.envs.make import make_raw_env
from worldmodels.envs.pixels import PixelConfig, is_image, process_frame
from worldmodels.runs.episodes import list_episodes, load_episode
from worldmodels.runs.rundir import RunDir

ASPECT_TOLERANCE = 0.02
"""Relative difference of width/height ratios under which a goal image counts as a scaled render or crop."""


@dataclass
class GoalImageConfig:
    """Which env state ``wm goal-image`` renders."""

    env_kwargs: dict = field(default_factory=dict)
    """JSON object of env constructor kwargs, e.g. '{"radius": 8}' (with --run: the run's)."""
    reset_options: dict | None = field(default=None, metadata={"metavar": "JSON"})
    """Env reset options that set the state, e.g. PointMass '{"position": [0.7, 0.6]}'."""
    seed: int = 0
    """Env reset seed, and the seed of the random actions."""
    steps: int = 0
    """Uniform random actions taken after the reset, before the frame is rendered."""

    def __post_init__(self) -> None:
        require_at_least(self, 0, "steps")


def env_frame(env: gym.Env, obs) -> np.ndarray:
    """What the pixel pipeline starts from: the observation when it is an RGB image, else ``env.render()``."""
    frame = obs if is_image(obs) else env.render()
    if not is_image(frame):
        raise UserError(f"the env renders no RGB frame (got {type(frame).__name__}); it cannot make goal images")
    return frame


def render_goal(spec: str, config: GoalImageConfig, trusted: bool = True) -> np.ndarray:
    """The raw frame uint8 [H, W, 3] (the env's own size) of env ``spec`` after ``config``'s reset and random
    steps; ``trusted``: see ``make_raw_env`` (False for a spec read from a run directory)."""
    env = make_raw_env(spec, trusted=trusted, **config.env_kwargs)
    try:
        obs, _ = env.reset(seed=config.seed, options=config.reset_options)
        env.action_space.seed(config.seed)
        for _ in range(config.steps):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                break
        return env_frame(env, obs)
    finally:
        env.close()


def raw_frame_shape(run: RunDir) -> tuple[int, int]:
    """(height, width) of the frames the run's env renders before its pixel pipeline."""
    spec, kwargs, _, _ = run.env_spec()
    env = make_raw_env(spec, trusted=False, **kwargs)
    try:
        return env_frame(env, env.reset(seed=0)[0]).shape[:2]
    finally:
        env.close()


def goal_frame(image: np.ndarray, pixels: PixelConfig, raw_shape: tuple[int, int], name: str) -> np.ndarray:
    """A goal image uint8 [H, W, 3] of any size -> the 64x64 frame the run's pipeline makes of it.

    ``pixels``: the run's pixel pipeline; ``raw_shape``: (height, width) of the env's renders. A frame of
    ``pixels.size`` is already one; an image with the render's aspect ratio is a render (scaled by
    ``H / raw height``: the crop is scaled with it); one with the crop's aspect ratio is a crop.
    """
    image = np.asarray(image)
    if not is_image(image):
        raise UserError(f"{name} is not an RGB image (uint8 [H, W, 3]), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if (height, width) == (pixels.size, pixels.size):
        return image
    if same_aspect((height, width), raw_shape):
        scale = height / raw_shape[0]
        crop = None if pixels.crop is None else tuple(round(c * scale) for c in pixels.crop)
        return process_frame(image, PixelConfig(size=pixels.size, crop=crop))
    if pixels.crop is not None:
        top, bottom, left, right = pixels.crop
        if same_aspect((height, width), (bottom - top, right - left)):
            return process_frame(image, PixelConfig(size=pixels.size))
    crop = "" if pixels.crop is None else f", or a crop of it to rows {pixels.crop[0]}:{pixels.crop[1]} and columns " \
                                          f"{pixels.crop[2]}:{pixels.crop[3]}"
    raise UserError(f"{name} is {width}x{height}; give the env's render ({raw_shape[1]}x{raw_shape[0]}, or scaled)"
                    f"{crop}, or a {pixels.size}x{pixels.size} frame like the run's")


def same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether (height, width) ``a`` and ``b`` have the same width/height ratio within ``ASPECT_TOLERANCE``."""
    return abs(a[1] / a[0] - b[1] / b[0]) <= ASPECT_TOLERANCE * b[1] / b[0]


def check_goal(goal: np.ndarray, name: str) -> np.ndarray:
    """``goal`` as uint8 [64, 64, 3], or a ``UserError`` naming ``name``."""
    goal = np.asarray(goal)
    if goal.shape != (64, 64, 3):
        raise UserError(f"{name} is {'x'.join(map(str, goal.shape))}; it must be a 64x64 RGB image like the run's frames")
    return goal.astype(np.uint8)


def read_image(path: str | Path) -> np.ndarray:
    """The RGB image uint8 [H, W, 3] in file ``path``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"goal image {path} not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read goal image {path}: not an image file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, frame: np.ndarray) -> None:
    """Write the RGB ``frame`` uint8 [H, W, 3] to ``path`` (format from the suffix, e.g. PNG)."""
    path = Path(path)
    if not cv2.haveImageWriter(str(path)):
        raise UserError(f"cannot write {path}: use an image suffix such as .png")
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def load_goal(run: RunDir, path: str | Path | None = None, episode: int | None = None, step: int | None = None) -> np.ndarray:
    """The goal frame uint8 [64, 64, 3]: an image file of any size (``path``, see ``goal_frame``), or frame
    ``step`` of stored ``episode``."""
    if path is not None:
        image = read_image(path)
        frame = goal_frame(image, run.env_spec()[2], raw_frame_shape(run), f"goal image {path}")
        return check_goal(frame, f"goal image {path}")
    episodes = list_episodes(run.episodes)
    if episode is None or step is None:
        raise UserError("give a goal: --goal IMAGE, or --goal-episode E with --goal-step T")
    if episode not in episodes:
        known = f"{min(episodes)}..{max(episodes)}" if episodes else "none"
        raise UserError(f"no episode {episode} in {run.episodes} (episodes: {known})")
    frames = load_episode(episodes[episode])["obs"]
    if not 0 <= step < len(frames):
        raise UserError(f"episode {episode} has frames 0..{len(frames) - 1}; --goal-step {step} is out of range")
    return check_goal(frames[step], f"frame {step} of episode {episode}")
