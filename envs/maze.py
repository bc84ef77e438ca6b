"""Maze: a sparse-reward grid maze in 64x64 pixels, where random actions rarely reach the goal.

A ``cells x cells`` lattice of rooms, carved into a maze by a seeded depth-first search (the same
layout every episode for a given ``layout_seed``), with ``loops`` extra walls knocked through; on
a ``(2 cells + 1)``-square grid (walls between rooms), drawn with square pixels per grid square.
The agent starts in the top-left room, the goal is in the bottom-right one. Actions:
``Discrete(4)`` (0 up, 1 down, 2 left, 3 right; moving into a wall stays put). Reward 1 on
reaching the goal (terminates), else 0; truncates after ``max_steps``. The ground-truth state
(for coverage) is ``info["position"]`` = ``(row, col)`` grid indices, also ``env.unwrapped.position``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SIZE = 64
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
WALL, AGENT, GOAL = (90, 90, 110), (255, 60, 40), (40, 220, 80)


def carve(cells: int, loops: int, rng: np.random.Generator) -> np.ndarray:
    """Bool grid [2 cells + 1]^2, True where open: a DFS perfect maze plus ``loops`` extra openings."""
    n = 2 * cells + 1
    open_ = np.zeros((n, n), bool)
    seen = np.zeros((cells, cells), bool)
    stack = [(0, 0)]
    seen[0, 0] = open_[1, 1] = True
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in MOVES
                   if 0 <= r + dr < cells and 0 <= c + dc < cells and not seen[r + dr, c + dc]]
        if not options:
            stack.pop()
            continue
        nr, nc = options[rng.integers(len(options))]
        seen[nr, nc] = open_[2 * nr + 1, 2 * nc + 1] = True
        open_[r + nr + 1, c + nc + 1] = True  # the wall between the two rooms
        stack.append((nr, nc))
    walls = [(r, c) for r in range(1, n - 1) for c in range(1, n - 1)
             if not open_[r, c] and (r % 2) != (c % 2)]  # walls separating two rooms
    for i in rng.permutation(len(walls))[:loops]:
        open_[walls[i]] = True
    return open_


class Maze(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, cells: int = 7, loops: int = 0, max_steps: int = 200, layout_seed: int = 0,
                 render_mode: str | None = None):
        if not 1 <= cells <= 15:
            raise ValueError(f"cells must be in 1..15 to fit 64x64 pixels, got {cells}")
        self.cells, self.max_steps, self.render_mode = int(cells), int(max_steps), render_mode
        self.open = carve(self.cells, int(loops), np.random.default_rng(layout_seed))
        self.n = len(self.open)
        self.scale = SIZE // self.n
        self.margin = (SIZE - self.scale * self.n) // 2
        self.start, self.goal = (1, 1), (self.n - 2, self.n - 2)
        self.observation_space = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(4)
        self.background = self._draw_walls()

    def get_action_meanings(self) -> list[str]:
        """What each action does, in ALE's words (``wm play`` maps keys from them)."""
        return ["UP", "DOWN", "LEFT", "RIGHT"]

    @property
    def open_states(self) -> int:
        """How many positions the agent can occupy (the maximum coverage)."""
        return int(self.open.sum())

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.t = self.start, 0
        return self._frame(), {"position": self.position}

    def step(self, action):
        r, c = np.add(self.position, MOVES[int(action)])
        if self.open[r, c]:
            self.position = (int(r), int(c))
        self.t += 1
        at_goal = self.position == self.goal
        return (self._frame(), float(at_goal), at_goal, self.t >= self.max_steps and not at_goal,
                {"position": self.position})

    def _square(self, frame: np.ndarray, cell: tuple[int, int], color) -> None:
        y, x = (self.margin + self.scale * np.asarray(cell)).tolist()
        frame[y:y + self.scale, x:x + self.scale] = color

    def _draw_walls(self) -> np.ndarray:
        frame = np.zeros((SIZE, SIZE, 3), np.uint8)
        for cell in zip(*np.nonzero(~self.open)):
            self._square(frame, cell, WALL)
        self._square(frame, self.goal, GOAL)
        return frame

    def _frame(self) -> np.ndarray:
        frame = self.background.copy()
        self._square(frame, self.position, AGENT)
        return frame

    def render(self):
        return self._frame()


def grid_geometry(frame: np.ndarray) -> tuple[int, int, int]:
    """(squares per side ``n``, pixels per square, margin in pixels) of the maze drawn in ``frame`` uint8
    [64, 64, 3], read off the pixels: the square's size from the agent's, the margin from the outer wall."""
    agent = np.all(frame == AGENT, axis=-1)
    wall = np.all(frame == WALL, axis=-1)
    if not agent.any() or not wall.any():
        raise ValueError("not a Maze frame: no agent or no wall pixels")
    scale = int(agent.any(1).sum())
    margin = int(wall.any(1).argmax())
    return (SIZE - 2 * margin) // scale, scale, margin


def agent_cells(frames: np.ndarray) -> np.ndarray:
    """The agent's grid square ``(row, col)`` in each of ``frames`` uint8 [N, 64, 64, 3] -> int64 [N, 2], as
    ``info["position"]`` gives it, read off the pixels alone (the geometry from ``frames[0]``)."""
    _, scale, margin = grid_geometry(frames[0])
    agent = np.all(frames == AGENT, axis=-1)  # [N, 64, 64]
    return (np.stack([agent.any(2).argmax(1), agent.any(1).argmax(1)], axis=1) - margin) // scale


def reach_room(row: int, col: int):
    """A task reward (``wm task``) paying 1 on each step that ends with the agent in room ``(row, col)``, else 0.

    Rooms count from the top-left ``(0, 0)``; negative indices count from the far side, as Python's do
    (``(-1, -1)``: the bottom-right room). The returned function maps a stored episode (``obs`` uint8
    [T+1, 64, 64, 3]) to rewards float32 [T], from the frames alone.
    """

    def reward(episode: dict[str, np.ndarray]) -> np.ndarray:
        n, _, _ = grid_geometry(episode["obs"][0])
        rooms = (n - 1) // 2
        target = (2 * (row % rooms) + 1, 2 * (col % rooms) + 1)
        return np.all(agent_cells(episode["obs"])[1:] == target, axis=1).astype(np.float32)

    return reward


def reach_far_corner(episode: dict[str, np.ndarray]) -> np.ndarray:
    """Task reward: 1 on the step that reaches the bottom-right room (the goal), else 0: float32 [T] from
    ``obs`` uint8 [T+1, 64, 64, 3]. The same as the Maze's own reward, read off the frames, for a run
    explored without it (``wm task worldmodels.envs.maze:reach_far_corner --run RUN``)."""
    return reach_room(-1, -1)(episode)
