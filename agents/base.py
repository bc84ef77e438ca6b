"""The agent interface: anything that acts, in the real env and in the dream.

An agent is batched: ``reset(batch)`` returns its recurrent state for ``batch`` parallel
episodes (``None`` for stateless agents); ``act(obs, state)`` maps observations
``[B, 64, 64, 3]`` uint8 to actions (``[B, A]`` float32 for Box, ``[B]`` int64 for Discrete)
and the next state. ``seed(s)`` makes an agent's own randomness reproducible.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Agent(Protocol):
    def reset(self, batch: int = 1) -> Any: ...

    def act(self, obs: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...

    def seed(self, seed: int) -> None: ...
