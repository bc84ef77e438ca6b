"""Reward and done heads of the RSSM, SRNN and SVG memory models (the same as MDN-RNN's and VRNN's)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodels.models.mdnrnn import masked_mean


class TransitionHeads(nn.Module):
    """Linear heads on the features h [..., H] after transition t: reward r_t and the done logit, each [...].

    Losses: reward MSE and done BCE-with-logits weighted ``pos_weight`` on terminal steps (rare),
    each averaged over real steps (``mask`` 1).
    """

    def __init__(self, hidden_size: int, pos_weight: float) -> None:
        super().__init__()
        self.reward = nn.Linear(hidden_size, 1)
        self.done = nn.Linear(hidden_size, 1)
        self.pos_weight = pos_weight

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.reward(h)[..., 0], self.done(h)[..., 0]

    def losses(self, h: Tensor, reward: Tensor, done: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(reward MSE, done BCE), scalars; ``h`` [B, T, H], ``reward``, ``done``, ``mask`` [B, T]."""
        predicted, logit = self(h)
        pos_weight = torch.tensor(self.pos_weight, device=h.device, dtype=h.dtype)
        bce = F.binary_cross_entropy_with_logits(logit, done, pos_weight=pos_weight, reduction="none")
        return masked_mean((predicted - reward).pow(2), mask), masked_mean(bce, mask)
