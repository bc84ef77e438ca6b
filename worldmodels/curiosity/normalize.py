"""Reward normalisation for curiosity: running statistics (RND-style) and ``r = r_ext + beta * r_int / std``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class RunningNorm:
    """Running mean and variance of a stream of values of shape ``shape`` (RND, Burda et al. 2018).

    ``update(x [N, *shape])`` merges a batch with Chan et al.'s parallel form of Welford's update,
    so the statistics equal numpy's ``mean``/``var`` (population variance) over everything seen.
    """

    def __init__(self, shape: tuple[int, ...] = (), eps: float = 1e-8) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 0
        self.eps = eps

    def update(self, x) -> None:
        x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, np.float64).reshape(-1, *self.mean.shape)
        n = len(x)
        if n == 0:
            return
        mean, var = x.mean(0), x.var(0)
        if self.count == 0:
            self.mean, self.var, self.count = mean, var, n
            return
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var, self.count = m2 / total, total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + self.eps)

    def normalize(self, x: Tensor, center: bool = False) -> Tensor:
        """``x / std`` (rewards keep their sign, as in RND), or ``(x - mean) / std`` with ``center``."""
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
        if center:
            return (x - torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)) / std
        return x / std

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, d: dict) -> None:
        self.mean, self.var, self.count = np.asarray(d["mean"]), np.asarray(d["var"]), int(d["count"])


class RewardMixer:
    """``r = r_ext + beta * r_int / std(r_int)``; the running std is updated with each call's ``r_int``.

    Not centred by default (as RND): familiar transitions are not punished, so ending an episode
    early never pays. Surprise's nats carry an arbitrary offset, which this scales up too.
    ``center=True`` gives ``beta * (r_int - mean) / std`` instead: only the contrast between novel
    and familiar transitions is left (on the Maze it lifts every learnt reward's coverage; see
    BENCHMARKS.md), at the price of a negative reward for familiar steps, which pays an agent for
    ending its episodes where an env lets it (e.g. by dying).
    """

    def __init__(self, beta: float = 1.0, center: bool = False) -> None:
        self.beta, self.center = float(beta), bool(center)
        self.norm = RunningNorm()

    def intrinsic(self, r_int: Tensor, update: bool = True) -> Tensor:
        """[B] the scaled, normalised intrinsic part ``beta * r_int / std`` (``(r_int - mean)`` with ``center``)."""
        if update:
            self.norm.update(r_int)
        return self.beta * self.norm.normalize(r_int, center=self.center)

    def __call__(self, r_ext: Tensor, r_int: Tensor) -> Tensor:
        return r_ext + self.intrinsic(r_int)
