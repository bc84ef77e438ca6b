"""Action spaces the toolkit supports: ``Box`` (continuous) and ``Discrete``.

Models see every action as a float vector: Box actions as they are, Discrete actions one-hot.
Episodes store Box actions as float32 ``[T, A]`` and Discrete actions as int64 ``[T]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from worldmodels.core.errors import UserError

if TYPE_CHECKING:  # torch is imported where models need it, so env-only processes start fast
    import torch


@dataclass(frozen=True)
class ActionSpec:
    """A JSON-friendly description of an action space.

    ``kind`` is ``"box"`` or ``"discrete"``; ``dim`` is the model-side size (Box: its length;
    Discrete(n): n, the one-hot size); ``low``/``high`` are the Box bounds (empty for Discrete).
    """

    kind: str
    dim: int
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @classmethod
    def from_space(cls, space: gym.Space) -> ActionSpec:
        if isinstance(space, gym.spaces.Discrete):
            if int(space.start) != 0:
                raise UserError(f"unsupported action space {space}: Discrete spaces must start at 0")
            return cls("discrete", int(space.n))
        if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            low, high = space.low.astype(np.float64), space.high.astype(np.float64)
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise UserError(f"unsupported action space {space}: Box actions need finite bounds")
            return cls("box", int(space.shape[0]), tuple(low.tolist()), tuple(high.tolist()))
        raise UserError(
            f"unsupported action space {space} ({type(space).__name__}): "
            "worldmodels handles Box (1-D, bounded) and Discrete action spaces only"
        )

    @classmethod
    def from_dict(cls, d: dict) -> ActionSpec:
        return cls(d["kind"], int(d["dim"]), tuple(d.get("low", ())), tuple(d.get("high", ())))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def discrete(self) -> bool:
        return self.kind == "discrete"

    def space(self) -> gym.Space:
        if self.discrete:
            return gym.spaces.Discrete(self.dim)
        return gym.spaces.Box(np.array(self.low, np.float32), np.array(self.high, np.float32), dtype=np.float32)

    def empty(self, length: int) -> np.ndarray:
        """Storage for ``length`` actions: int64 ``[T]`` or float32 ``[T, A]``."""
        return np.zeros(length, np.int64) if self.discrete else np.zeros((length, self.dim), np.float32)

    def to_model(self, action: torch.Tensor) -> torch.Tensor:
        """Stored actions (int ``[...]`` or float ``[..., A]``) -> float model input ``[..., dim]``."""
        import torch

        if self.discrete:
            return torch.nn.functional.one_hot(action.long(), self.dim).float()
        return action.float()

    def bounds(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Box bounds as float tensors ``[A]``."""
        import torch

        return (torch.tensor(self.low, dtype=torch.float32, device=device),
                torch.tensor(self.high, dtype=torch.float32, device=device))
