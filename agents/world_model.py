"""An agent that sees the world through the run's vision and memory models.

In the real env it encodes each frame with the VAE (``z = mu``), reads ``h`` from the memory
model, asks its policy for an action from ``[z, h]`` and advances the memory with ``(z, a)``.
In the dream it receives ``[z, h]`` directly (a float ``[B, Z+H]`` observation), so the same
object acts in both.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from worldmodels.envs.spaces import ActionSpec


class WorldModelAgent:
    """``policy(features [B, Z+H]) -> env actions [B, A] (or indices [B])`` behind the world model."""

    def __init__(self, vision, memory, policy: Callable[[Tensor], Tensor], action: ActionSpec,
                 device: torch.device | str = "cpu"):
        self.vision, self.memory, self.policy = vision, memory, policy
        self.action = action
        self.device = torch.device(device)

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    @torch.no_grad()
    def reset(self, batch: int = 1):
        return self.memory.initial_state(batch)

    @torch.no_grad()
    def act(self, obs: np.ndarray, state):
        obs = torch.as_tensor(obs, device=self.device)
        if obs.dtype == torch.uint8:  # real frames [B, 64, 64, 3]
            z = self.vision.encode(obs)[0]
            features = torch.cat([z, self.memory.features(state)], dim=1)
        else:  # dream observations [B, Z+H]
            features = obs.float()
            z = features[:, :self.memory.z_dim]
        action = self.policy(features)
        state = self.memory.step(state, z, self.action.to_model(action))
        return action.cpu().numpy(), state



def with_noise(policy: Callable[[Tensor], Tensor], action: ActionSpec, noise: float) -> Callable[[Tensor], Tensor]:
    """``policy`` plus exploration: Gaussian noise (std ``noise`` x range) on Box actions, clipped;
    a uniformly random action with probability ``noise`` on Discrete ones. The memory model sees
    the action actually taken."""

    def noisy(features: Tensor) -> Tensor:
        a = policy(features)
        if action.discrete:
            explore = torch.rand(a.shape, device=a.device) < noise
            return torch.where(explore, torch.randint_like(a, action.dim), a)
        low, high = action.bounds(a.device)
        return torch.clamp(a + noise * (high - low) * torch.randn_like(a), low, high)

    return noisy
