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

from worldmodels.envs.spaces import ActionSpec


@dataclass(frozen=True)
class ControllerSpec:
    """Shapes of a controller: ``in_dim`` features, ``out_dim`` outputs, optional ``hidden`` layer."""

    in_dim: int
    out_dim: int
    hidden: int = 0  # 0: linear (the paper's); >0: one tanh hidden layer of this width

    @classmethod
    def for_run(cls, z_dim: int, h_dim: int, action: ActionSpec, hidden: int = 0) -> ControllerSpec:
        return cls(z_dim + h_dim, action.dim, hidden)

    def to_dict(self) -> dict:
        return asdict(self)

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
        low, high = action.bounds(logits.device)
        return low + (torch.tanh(logits) + 1) * 0.5 * (high - low)
