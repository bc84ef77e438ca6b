"""PointMass: a dot moving on a plane, for goal-image tasks (visual foresight).

The state is a position in [0, 1]^2; actions are velocities in [-1, 1]^2 (``speed`` units of
the plane per step). Observations are the state vector, so frames come from ``render()``: a
64x64 image of the dot (the goal is not drawn; a goal *image* is the frame with the dot at the
goal). Reward is the negative distance to the goal; ``distance()`` is the ground truth that
success is measured by. A fixed ``goal`` (constructor) makes the reward a function of the frame
alone, so a world model can learn it; ``radius`` sets the dot's size in pixels.
"""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np

SIZE = 64
RADIUS = 4


class PointMass(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, speed: float = 0.08, max_steps: int = 50, render_mode: str | None = "rgb_array",
                 goal: tuple[float, float] | None = None, radius: int = RADIUS):
        """``goal``: the goal of every episode (default: random per episode); ``radius``: dot size (pixels)."""
        self.speed = float(speed)
        self.max_steps = int(max_steps)
        self.fixed_goal = None if goal is None else np.asarray(goal, np.float64)
        self.radius = int(radius)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        """``options`` may set ``position`` and ``goal`` (each ``[x, y]`` in [0, 1]; ``goal`` overrides the fixed one)."""
        super().reset(seed=seed)
        options = options or {}
        self.position = np.asarray(options.get("position", self.np_random.uniform(0.1, 0.9, 2)), np.float64)
        default_goal = self.np_random.uniform(0.1, 0.9, 2) if self.fixed_goal is None else self.fixed_goal
        self.goal = np.asarray(options.get("goal", default_goal), np.float64)
        self.t = 0
        return self._obs(), {"distance": self.distance()}

    def step(self, action):
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.position = np.clip(self.position + self.speed * action, 0.0, 1.0)
        self.t += 1
        distance = self.distance()
        return self._obs(), -distance, False, self.t >= self.max_steps, {"distance": distance}

    def distance(self) -> float:
        return float(np.linalg.norm(self.position - self.goal))

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.position, self.goal]).astype(np.float32)

    @staticmethod
    def draw(position, radius: int = RADIUS) -> np.ndarray:
        """The 64x64 frame of the dot at ``position`` (also how goal images are made)."""
        frame = np.full((SIZE, SIZE, 3), 30, np.uint8)
        x, y = (np.asarray(position) * (SIZE - 1)).round().astype(int)
        cv2.circle(frame, (int(x), int(y)), int(radius), (255, 80, 40), -1)
        return frame

    def render(self):
        return self.draw(self.position, self.radius)
