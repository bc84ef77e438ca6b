"""The ConvVAE's salient reconstruction weight: pixels unlike the batch's mean frame cost more, so a
reconstruction that drops a small object costs more than one as wrong everywhere else."""

from __future__ import annotations

import pytest
import torch

from worldmodels.core.errors import UserError
from worldmodels.envs.point import PointMass
from worldmodels.models.vision import ConvVAE, VAEConfig
from worldmodels.training.vision import VisionTrainConfig


def recon_loss(weight: float, frames: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """``ConvVAE.loss``'s ``recon`` when the network returns ``reconstruction`` [B, 3, 64, 64]."""
    vae = ConvVAE(VAEConfig(z_dim=4, salient_weight=weight))
    mu = torch.zeros(len(frames), 4)
    vae.forward = lambda _: (reconstruction, mu, mu)
    return vae.loss(frames)["recon"].item()


def test_dropping_the_dot_costs_more_than_an_equal_plain_error_elsewhere() -> None:
    frames = torch.stack([torch.from_numpy(PointMass.draw(p)) for p in ([0.2, 0.3], [0.7, 0.5], [0.4, 0.8])])
    target = frames.permute(0, 3, 1, 2).float() / 255
    background = torch.from_numpy(PointMass.draw([-1, -1])).permute(2, 0, 1).float()[None] / 255
    no_dot = background.expand_as(target)  # the blur-free version of what the plain loss settles into
    plain_error = (no_dot - target).square().sum().item() / len(frames)
    shifted = (target + (plain_error / target[0].numel()) ** 0.5).clamp(max=1)  # dots kept, background off
    assert recon_loss(0.0, frames, no_dot) == pytest.approx(plain_error, rel=1e-5)
    assert recon_loss(0.0, frames, shifted) == pytest.approx(plain_error, rel=0.05)
    assert recon_loss(20.0, frames, no_dot) > 5 * recon_loss(20.0, frames, shifted)
    assert recon_loss(20.0, frames[:1], no_dot[:1]) == pytest.approx(recon_loss(0.0, frames[:1], no_dot[:1]))


def test_kl_weight_scales_the_kl_term_only() -> None:
    frames = torch.from_numpy(PointMass.draw([0.5, 0.5]))[None].expand(4, -1, -1, -1)
    losses = {}
    for beta in (1.0, 4.0):
        torch.manual_seed(0)
        losses[beta] = ConvVAE(VAEConfig(z_dim=4, kl_tolerance=0.0, kl_weight=beta)).loss(frames)
    assert torch.allclose(losses[4.0]["kl"], losses[1.0]["kl"]) and losses[1.0]["kl"] > 0
    assert torch.allclose(losses[4.0]["loss"], losses[1.0]["recon"] + 4 * losses[1.0]["kl"])


def test_the_options_are_training_flags_checked_once() -> None:
    assert VisionTrainConfig().salient_weight == VAEConfig().salient_weight == 0.0  # Ha's loss by default
    assert VisionTrainConfig().kl_weight == VAEConfig().kl_weight == 1.0
    with pytest.raises(UserError, match="--salient-weight must be at least 0"):
        VisionTrainConfig(salient_weight=-1.0)
    with pytest.raises(UserError, match="--kl-weight must be at least 0"):
        VisionTrainConfig(kl_weight=-1.0)
