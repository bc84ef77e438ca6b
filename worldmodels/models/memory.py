"""The memory-model interface shared by MDN-RNN and VRNN.

Planners, the dream and curiosity depend on this interface only. Time indexing: the state
before ``step`` holds ``h_t``; ``step(state, z_t, a_t)`` consumes the latent of frame ``t`` and
the action taken there and returns the state holding ``h_{t+1}``; ``predict`` on that state
gives the distribution of ``z_{t+1}``, the reward ``r_t`` of the transition and the logit that
the episode terminated on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

State = tuple[Tensor, ...]
"""A recurrent state: a tuple of tensors, each with the batch as its first dimension."""


class LatentDistribution(Protocol):
    """Distribution of the next latent ``z`` [B, Z] given the memory state."""

    @property
    def mean(self) -> Tensor:
        """[B, Z] expected next latent."""

    def sample(self, temperature: float = 1.0) -> Tensor:
        """[B, Z] a sample; ``temperature`` scales the randomness (Ha & Schmidhuber's tau)."""

    def log_prob(self, z: Tensor) -> Tensor:
        """[B] log density of ``z`` [B, Z], summed over latent dimensions (nats)."""


@dataclass
class Prediction:
    """What a memory model predicts from a state."""

    next_z: LatentDistribution
    reward: Tensor  # [B] predicted reward of the last transition
    done_logit: Tensor  # [B] logit of P(terminated) on the last transition


@runtime_checkable
class Memory(Protocol):
    """A recurrent world model over VAE latents: MDN-RNN and VRNN alike."""

    z_dim: int
    action_dim: int  # Box: its size; Discrete(n): n (actions are fed one-hot)
    hidden_size: int  # size of ``features(state)``

    def initial_state(self, batch: int) -> State: ...

    def step(self, state: State, z: Tensor, action: Tensor) -> State:
        """Advance with latent ``z`` [B, Z] and action ``action`` [B, A] (float, one-hot if discrete)."""

    def predict(self, state: State) -> Prediction: ...

    def sample(self, state: State, temperature: float = 1.0) -> Tensor:
        """[B, Z] next latent drawn from ``predict(state).next_z`` at ``temperature``."""

    def features(self, state: State) -> Tensor:
        """[B, hidden_size] the deterministic summary ``h`` a controller sees beside ``z``."""

    def loss(self, z: Tensor, action: Tensor, reward: Tensor, done: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Training losses on sequences.

        ``z`` [B, T+1, Z] latents (frame 0..T), ``action`` [B, T, A], ``reward`` [B, T],
        ``done`` [B, T] (float 0/1, terminated), ``mask`` [B, T] (1 where the step is real,
        0 for padding). Returns a dict with ``loss`` (scalar to minimise) and its named parts
        (``nll``, ``reward``, ``done``, ...), each a scalar averaged over real steps.
        """


def select_state(state: State, index: Tensor) -> State:
    """Gather batch rows ``index`` [N] of every tensor in ``state``."""
    return tuple(s[index] for s in state)


def repeat_state(state: State, times: int) -> State:
    """Repeat each batch row ``times`` times (row i -> rows i*times .. i*times+times-1)."""
    return tuple(torch.repeat_interleave(s, times, dim=0) for s in state)
