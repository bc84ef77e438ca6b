"""Reacher2Link: a planar 2-link arm, for goal-image tasks where the goal is a whole arm pose.

The state is the two joint angles (radians, wrapped to [-pi, pi)); actions are joint velocities
in [-1, 1]^2 (``speed`` radians per step). Observations are the state as cos/sin of the angles
and of the goal angles, so frames come from ``render()``: a ``size`` x ``size`` image (96 by
default, which the pixel pipeline resizes to 64) of the arm, its two links in two colours so the
pose is unambiguous (the goal is not drawn; a goal *image* is the frame of the arm in the goal
pose). Reward is the negative distance to the goal pose; ``distance()``, the ground truth that
success is measured by, is the joint-angle distance normalised to [0, 1]: the Euclidean norm of
the wrapped angle differences divided by its largest value, pi * sqrt(2). An end effector at the
right place with the elbow bent the wrong way is not at the goal.
"""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np

SIZE = 96
LINKS = (0.24, 0.2)
"""Link lengths as fractions of the frame side (reach 0.44: the arm stays inside the frame)."""
COLOURS = ((255, 80, 40), (60, 180, 255))
"""RGB of the upper and the lower link."""
BACKGROUND = 30


def wrap(angles: np.ndarray) -> np.ndarray:
    """Angles (radians) wrapped to [-pi, pi)."""
    return (np.asarray(angles, np.float64) + np.pi) % (2 * np.pi) - np.pi


def pose_distance(angles, goal) -> float:
    """Joint-angle distance of two poses [2] (radians) in [0, 1]: ||wrap(angles - goal)|| / (pi sqrt 2)."""
    return float(np.linalg.norm(wrap(np.asarray(angles) - np.asarray(goal))) / (np.pi * np.sqrt(2)))


class Reacher2Link(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, speed: float = 0.2, max_steps: int = 50, render_mode: str | None = "rgb_array",
                 size: int = SIZE, width: int = 4):
        """``speed``: radians per step at full action; ``size``: rendered side (pixels); ``width``: link width (pixels)."""
        self.speed = float(speed)
        self.max_steps = int(max_steps)
        self.size, self.width = int(size), int(width)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (8,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        """``options`` may set ``angles`` and ``goal`` (each ``[shoulder, elbow]`` in radians; default uniform)."""
        super().reset(seed=seed)
        options = options or {}
        self.angles = wrap(options.get("angles", self.np_random.uniform(-np.pi, np.pi, 2)))
        self.goal = wrap(options.get("goal", self.np_random.uniform(-np.pi, np.pi, 2)))
        self.t = 0
        return self._obs(), {"distance": self.distance()}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.angles = wrap(self.angles + self.speed * action)
        self.t += 1
        distance = self.distance()
        return self._obs(), -distance, False, self.t >= self.max_steps, {"distance": distance}

    def distance(self) -> float:
        """Joint-angle distance to the goal pose in [0, 1] (``pose_distance``)."""
        return pose_distance(self.angles, self.goal)

    def _obs(self) -> np.ndarray:
        both = np.concatenate([self.angles, self.goal])
        return np.concatenate([np.cos(both), np.sin(both)]).astype(np.float32)

    @staticmethod
    def draw(angles, size: int = SIZE, width: int = 4) -> np.ndarray:
        """The ``size`` x ``size`` frame of the arm at ``angles`` [2] (also how goal images are made)."""
        frame = np.full((size, size, 3), BACKGROUND, np.uint8)
        points = [tuple(int(c) for c in (p * (size - 1)).round()) for p in joints(angles)]
        for a, b, colour in zip(points, points[1:], COLOURS):
            cv2.line(frame, a, b, colour, width, cv2.LINE_AA)
        cv2.circle(frame, points[0], width, (200, 200, 200), -1, cv2.LINE_AA)
        return frame

    def render(self):
        return self.draw(self.angles, self.size, self.width)


def joints(angles) -> np.ndarray:
    """[3, 2] positions (frame fractions) of the shoulder, the elbow and the tip for joint ``angles`` [2]."""
    shoulder, elbow = np.asarray(angles, np.float64)
    first = np.array([np.cos(shoulder), np.sin(shoulder)]) * LINKS[0]
    second = np.array([np.cos(shoulder + elbow), np.sin(shoulder + elbow)]) * LINKS[1]
    return np.array([0.5, 0.5]) + np.cumsum([np.zeros(2), first, second], axis=0)
