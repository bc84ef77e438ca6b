"""The vision model: a convolutional VAE over 64x64 RGB frames (Ha & Schmidhuber 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class VAEConfig:
    z_dim: int = 32  # latent size
    kl_tolerance: float = 0.5  # free bits: KL per sample is at least kl_tolerance * z_dim nats
    salient_weight: float = 0.0  # extra weight of pixels unlike the batch's mean frame (0: Ha's plain loss)
    kl_weight: float = 1.0  # beta of a beta-VAE: the KL term's weight in the loss


class ConvVAE(nn.Module):
    """Ha & Schmidhuber's ConvVAE: 4,348,547 parameters at ``z_dim=32``.

    Frames come in as stored on disk, uint8 [B, 64, 64, 3] (HWC); reconstructions come out as
    float [B, 3, 64, 64] (CHW) in [0, 1].
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.mu = nn.Linear(1024, config.z_dim)
        self.logvar = nn.Linear(1024, config.z_dim)
        self.decoder = nn.Sequential(
            nn.Linear(config.z_dim, 1024),
            nn.Unflatten(1, (1024, 1, 1)),
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),
        )  # fmt: skip

    def _to_input(self, frames: Tensor) -> Tensor:
        """uint8 [B, 64, 64, 3] -> float [B, 3, 64, 64] in [0, 1]."""
        return frames.permute(0, 3, 1, 2).to(self.mu.weight.dtype) / 255.0

    def encode(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 frames [B, 64, 64, 3] -> (mu, logvar), each [B, Z]."""
        h = self.encoder(self._to_input(frames))
        return self.mu(h), self.logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """Latents [B, Z] -> frames float [B, 3, 64, 64] in [0, 1]."""
        return self.decoder(z)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """uint8 frames [B, 64, 64, 3] -> (reconstruction [B, 3, 64, 64], mu [B, Z], logvar [B, Z])."""
        mu, logvar = self.encode(frames)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.decode(z), mu, logvar

    def loss(self, frames: Tensor) -> dict[str, Tensor]:
        """Ha's VAE loss on uint8 frames [B, 64, 64, 3]; scalars averaged over the batch.

        ``recon``: squared error summed over pixels and channels (in [0, 1] units); ``kl``: KL to
        N(0, I) summed over latent dims, floored at ``kl_tolerance * z_dim``; ``loss = recon + kl_weight * kl``.
        With ``salient_weight`` w > 0, each pixel's squared error is weighted by ``1 + w * s``, where the
        salience s in [0, 1] is the pixel's largest channel difference from the batch's mean frame: a
        small moving object (a 4-pixel dot) then costs as much as the background it would otherwise be
        given up for.
        """
        recon, mu, logvar = self(frames)
        target = self._to_input(frames)
        error = (recon - target).pow(2)
        if self.config.salient_weight:
            salience = (target - target.mean(0, keepdim=True)).abs().amax(1, keepdim=True)  # [B, 1, 64, 64]
            error = error * (1 + self.config.salient_weight * salience)
        recon_loss = error.sum(dim=(1, 2, 3)).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        kl = kl.clamp(min=self.config.kl_tolerance * self.z_dim).mean()
        return {"loss": recon_loss + self.config.kl_weight * kl, "recon": recon_loss, "kl": kl}


def frames_to_uint8(x: Tensor) -> np.ndarray:
    """Float frames [B, 3, 64, 64] in [0, 1] -> uint8 numpy [B, 64, 64, 3] for images and videos."""
    x = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
