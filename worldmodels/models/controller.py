"""The controller of Ha & Schmidhuber: ``a = tanh(W [z h] + b)``, mapped to the action bounds.

A controller is a flat parameter vector (what CMA-ES searches) plus a ``ControllerSpec`` that
knows its shapes. ``ControllerSpec.act`` evaluates a whole *population* of controllers at once:
parameters ``[P, n]`` and features ``[P, R, F]`` -> actions ``[P, R, ...]``, one batched matmul.
At z=32, h=256 on CarRacing (3 actions) the linear controller has 288*3 + 3 = 867 parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from worldmodels.core.errors import UserError
from worldmodels.envs.spaces import ActionSpec


@dataclass(frozen=True)
class ControllerSpec:
    """Shapes of a controller: ``in_dim`` features, ``out_dim`` outputs, optional ``hidden`` layer."""

    in_dim: int
    out_dim: int
    hidden: int = 0  # 0: linear (the paper's); >0: one tanh hidden layer of this width
    # Box actions only: the controller's own bounds [A] inside the env's (None: the env's), a
    # constraint on what it may do, e.g. CarRacing gas <= 0.3 and no brake (high = 1, 0.3, 0).
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))

    @classmethod
    def for_run(cls, z_dim: int, h_dim: int, action: ActionSpec, hidden: int = 0,
                low: tuple[float, ...] | None = None, high: tuple[float, ...] | None = None) -> ControllerSpec:
        """The spec for a run's models; ``low``/``high`` (Box only) are clipped to the env's bounds."""
        if action.discrete or (low is None and high is None):
            return cls(z_dim + h_dim, action.dim, hidden)
        env_low, env_high = list(action.low), list(action.high)
        low = [max(a, b) for a, b in zip(env_low if low is None else low, env_low)]
        high = [min(a, b) for a, b in zip(env_high if high is None else high, env_high)]
        if len(low) != action.dim or len(high) != action.dim or any(lo > hi for lo, hi in zip(low, high)):
            raise UserError(f"controller bounds {low}..{high} do not fit the action space {env_low}..{env_high}")
        return cls(z_dim + h_dim, action.dim, hidden, tuple(low), tuple(high))

    def to_dict(self) -> dict:
        d = asdict(self)
        for name in ("low", "high"):
            d[name] = None if d[name] is None else list(d[name])
        return d

    def bounds(self, action: ActionSpec, device) -> tuple[Tensor, Tensor]:
        """Box bounds ``([A], [A])`` the controller's tanh outputs map to: its own, else the env's."""
        low, high = action.bounds(device)
        if self.low is not None:
            low = torch.as_tensor(self.low, dtype=low.dtype, device=device)
        if self.high is not None:
            high = torch.as_tensor(self.high, dtype=high.dtype, device=device)
        return low, high

    def _shapes(self) -> list[tuple[int, ...]]:
        if self.hidden:
            return [(self.hidden, self.in_dim), (self.hidden,), (self.out_dim, self.hidden), (self.out_dim,)]
        return [(self.out_dim, self.in_dim), (self.out_dim,)]

    @property
    def n_params(self) -> int:
        return sum(int(torch.tensor(s).prod()) for s in self._shapes())

    def logits(self, params: Tensor, features: Tensor) -> Tensor:
        """Pre-activation outputs ``[P, R, out]`` of controllers ``params`` [P, n] on ``features`` [P, R, F]."""
        out, offset = features, 0
        layers = []
        for shape in self._shapes():
            size = int(torch.tensor(shape).prod())
            layers.append(params[:, offset:offset + size].reshape(params.shape[0], *shape))
            offset += size
        for i in range(0, len(layers), 2):
            weight, bias = layers[i], layers[i + 1]
            out = torch.baddbmm(bias.unsqueeze(1), out, weight.transpose(1, 2))
            if i + 2 < len(layers):
                out = torch.tanh(out)
        return out

    def act(self, params: Tensor, features: Tensor, action: ActionSpec) -> Tensor:
        """Env actions ``[P, R, A]`` in the Box bounds (tanh mapped), or indices ``[P, R]`` (argmax)."""
        logits = self.logits(params, features)
        if action.discrete:
            return logits.argmax(-1)
        low, high = self.bounds(action, logits.device)
        return low + (torch.tanh(logits) + 1) * 0.5 * (high - low)
