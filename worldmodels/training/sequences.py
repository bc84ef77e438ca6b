"""Memory-model batches: random fixed-length windows of latent episodes, re-sampled from (mu, logvar).
"""

from __future__ import annotations

import numpy as np


class SequenceBatcher:
    """Random fixed-length windows of latent sequences for memory-model training.

    ``episodes`` is a list of dicts with ``mu``/``logvar`` ``[T+1, Z]``, ``action`` model-side float
    ``[T, A]``, ``reward`` ``[T]``, ``done`` ``[T]``. A batch is ``z`` ``[B, L+1, Z]`` re-sampled from
    (mu, logvar) each call (as Ha & Schmidhuber do), ``action`` ``[B, L, A]``, ``reward``,
    ``done``, ``mask`` ``[B, L]``; episodes shorter than ``L`` are zero-padded with mask 0.
    """

    def __init__(self, episodes: list[dict[str, np.ndarray]], seq_len: int, seed: int = 0):
        self.seq_len = seq_len
        self.rng = np.random.default_rng(seed)
        lengths = np.array([len(e["reward"]) for e in episodes])
        self.lengths = lengths
        # Pad every episode to a common length once, so a batch is pure fancy indexing.
        width = max(int(lengths.max()), seq_len)
        z_dim = episodes[0]["mu"].shape[1]
        a_dim = episodes[0]["action"].shape[1]
        n = len(episodes)
        self.mu = np.zeros((n, width + 1, z_dim), np.float32)
        self.std = np.zeros((n, width + 1, z_dim), np.float32)
        self.action = np.zeros((n, width, a_dim), np.float32)
        self.reward = np.zeros((n, width), np.float32)
        self.done = np.zeros((n, width), np.float32)
        self.mask = np.zeros((n, width), np.float32)
        for i, e in enumerate(episodes):
            t = lengths[i]
            self.mu[i, :t + 1] = e["mu"]
            self.std[i, :t + 1] = np.exp(0.5 * e["logvar"])
            self.action[i, :t] = e["action"]
            self.reward[i, :t] = e["reward"]
            self.done[i, :t] = e["done"]
            self.mask[i, :t] = 1.0
        # Window starts are drawn in proportion to how many full windows an episode offers.
        self.starts_per_episode = np.maximum(lengths - seq_len + 1, 1)
        self.weights = self.starts_per_episode / self.starts_per_episode.sum()

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        ep = self.rng.choice(len(self.lengths), size=batch_size, p=self.weights)
        start = (self.rng.random(batch_size) * self.starts_per_episode[ep]).astype(np.int64)
        return self.window(ep, start)

    def sample_around(self, batch_size: int, ep: np.ndarray, t: np.ndarray) -> dict[str, np.ndarray]:
        """Windows that each hold one of the steps ``(ep[i], t[i])`` (indices [K]; picked uniformly with
        replacement) at a uniformly drawn place in the window: oversampling rare steps, e.g. a sparse reward."""
        pick = self.rng.integers(len(ep), size=batch_size)
        ep, t = ep[pick], t[pick]
        low = np.maximum(t - self.seq_len + 1, 0)
        high = np.minimum(t, self.starts_per_episode[ep] - 1)
        start = low + (self.rng.random(batch_size) * (high - low + 1)).astype(np.int64)
        return self.window(ep, start)

    def window(self, ep: np.ndarray, start: np.ndarray) -> dict[str, np.ndarray]:
        L = self.seq_len
        t = start[:, None] + np.arange(L + 1)[None, :]
        rows = ep[:, None]
        mu, std = self.mu[rows, t], self.std[rows, t]
        z = mu + std * self.rng.standard_normal(mu.shape, dtype=np.float32)
        ts = t[:, :L]
        return {"z": z, "action": self.action[rows, ts], "reward": self.reward[rows, ts],
                "done": self.done[rows, ts], "mask": self.mask[rows, ts]}

    def iterate(self, batch_size: int):
        """Windows at stride ``L`` plus one ending each episode, in order: a deterministic validation pass."""
        eps, starts = [], []
        for i, n in enumerate(self.lengths):
            last = max(int(n) - self.seq_len, 0)
            for s in [*range(0, last + 1, self.seq_len), *([last] if last % self.seq_len else [])]:
                eps.append(i)
                starts.append(s)
        eps, starts = np.array(eps), np.array(starts)
        for b in range(0, len(eps), batch_size):
            yield self.window(eps[b:b + batch_size], starts[b:b + batch_size])
