"""Catch: a tiny pixel game with discrete actions (no Box2D, thousands of steps per second).

Balls fall one at a time from a random column of a 16x16 grid (4x4-pixel cells); the agent
moves a 3-cell paddle along the bottom row. Reward +1 for a catch, -1 for a miss; the episode
terminates after ``balls`` balls. Observations are ``[64, 64, 3]`` uint8 frames.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

GRID = 16
CELL = 4
PADDLE = 3


class Catch(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, balls: int = 3, render_mode: str | None = None):
        self.balls = int(balls)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (GRID * CELL, GRID * CELL, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(3)  # 0: stay, 1: left, 2: right

    def get_action_meanings(self) -> list[str]:
        """What each action does, in ALE's words (``wm play`` maps keys from them)."""
        return ["NOOP", "LEFT", "RIGHT"]

    def _new_ball(self) -> None:
        self.ball = np.array([0, self.np_random.integers(GRID)])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.paddle = int(self.np_random.integers(GRID - PADDLE + 1))
        self.remaining = self.balls
        self._new_ball()
        return self._frame(), {}

    def step(self, action):
        move = (0, -1, 1)[int(action)]
        self.paddle = int(np.clip(self.paddle + move, 0, GRID - PADDLE))
        self.ball[0] += 1
        reward, terminated = 0.0, False
        if self.ball[0] == GRID - 1:
            reward = 1.0 if self.paddle <= self.ball[1] < self.paddle + PADDLE else -1.0
            self.remaining -= 1
            terminated = self.remaining == 0
            if not terminated:
                self._new_ball()
        return self._frame(), reward, terminated, False, {}

    def _frame(self) -> np.ndarray:
        frame = np.zeros(self.observation_space.shape, np.uint8)
        r, c = self.ball
        frame[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = (255, 255, 255)
        bottom = (GRID - 1) * CELL
        frame[bottom:, self.paddle * CELL:(self.paddle + PADDLE) * CELL] = (40, 200, 255)
        return frame

    def render(self):
        return self._frame()
