"""The VRNN memory model (Chung et al. 2015), action-conditioned, over VAE latents.

Naming: ``x`` is the VAE latent (the interface's ``z``); ``z`` here is the VRNN's own
stochastic latent. With h_t the GRU state before frame t:

    prior      p(z_t | h_t)              = N(mu, std)
    posterior  q(z_t | phi_x(x_t), h_t)  = N(mu, std)
    decoder    p(x_t | phi_z(z_t), h_t)  = N(mu, std)
    recurrence h_{t+1} = GRU([phi_x(x_t), phi_z(z_t), a_t], h_t)

Reward r_t and the done logit of transition t are read from h_{t+1}. Every std is
softplus(.) + min_std, so densities and KLs stay finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodels.models.mdnrnn import masked_mean
from worldmodels.models.memory import Prediction, State

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class VRNNConfig:
    z_dim: int = 32  # VAE latent size (x here)
    action_dim: int = 3
    hidden_size: int = 256  # GRU state h
    latent_dim: int = 32  # the VRNN's own stochastic z
    feature_dim: int = 128  # width of the feature extractors and MLPs
    min_std: float = 0.01
    reward_weight: float = 1.0
    done_weight: float = 1.0
    done_pos_weight: float = 10.0
    kl_weight: float = 1.0
    log_prob_samples: int = 16  # prior samples in the Monte-Carlo ``log_prob`` estimate


def gaussian_log_prob(x: Tensor, mu: Tensor, std: Tensor) -> Tensor:
    """Diagonal Gaussian log density (nats) summed over the last dim."""
    return (-0.5 * ((x - mu) / std).pow(2) - std.log() - LOG_SQRT_2PI).sum(-1)


def gaussian_kl(mu_q: Tensor, std_q: Tensor, mu_p: Tensor, std_p: Tensor) -> Tensor:
    """Analytic KL(q || p) between diagonal Gaussians, summed over the last dim."""
    kl = torch.log(std_p / std_q) + (std_q.pow(2) + (mu_q - mu_p).pow(2)) / (2 * std_p.pow(2)) - 0.5
    return kl.sum(-1)


class GaussianHead(nn.Module):
    """MLP input [..., D] -> (mu, std) each [..., out], std = softplus + min_std."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, min_std: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * out_dim))
        self.min_std = min_std

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw_std = self.net(x).chunk(2, dim=-1)
        return mu, F.softplus(raw_std) + self.min_std


class AncestralGaussian:
    """p(x_{t+1} | h) = ∫ p(z | h) p(x | z, h) dz: sample z from the prior, then x from the decoder.

    ``prior_mu``, ``prior_std``: [B, L]; ``decode`` maps z [..., B, L] to the decoder's (mu, std)
    [..., B, Z] for the same h.
    """

    def __init__(
        self, prior_mu: Tensor, prior_std: Tensor, decode: Callable[[Tensor], tuple[Tensor, Tensor]], samples: int
    ) -> None:
        self.prior_mu, self.prior_std, self.decode, self.samples = prior_mu, prior_std, decode, samples

    @property
    def mean(self) -> Tensor:
        """[B, Z] the decoder mean at the prior mean (not the exact marginal mean)."""
        return self.decode(self.prior_mu)[0]

    def sample(self, temperature: float = 1.0) -> Tensor:
        """[B, Z] ancestral sample; both stds are scaled by sqrt(temperature)."""
        scale = math.sqrt(temperature)
        z = self.prior_mu + self.prior_std * scale * torch.randn_like(self.prior_mu)
        mu, std = self.decode(z)
        return mu + std * scale * torch.randn_like(mu)

    def log_prob(self, x: Tensor) -> Tensor:
        """[B] Monte-Carlo estimate of log p(x | h), x [B, Z]: log-mean-exp over ``samples`` prior draws
        of log p(x | z, h). Noisy, and biased low for few samples (Jensen)."""
        eps = torch.randn(self.samples, *self.prior_mu.shape, device=x.device, dtype=x.dtype)
        mu, std = self.decode(self.prior_mu + self.prior_std * eps)  # [S, B, Z]
        return torch.logsumexp(gaussian_log_prob(x, mu, std), dim=0) - math.log(self.samples)


class VRNN(nn.Module):
    """Variational RNN memory model; implements ``worldmodels.models.memory.Memory``. State: (h,) [B, H]."""

    def __init__(self, config: VRNNConfig) -> None:
        super().__init__()
        c = self.config = config
        self.z_dim, self.action_dim, self.hidden_size = c.z_dim, c.action_dim, c.hidden_size
        self.phi_x = nn.Sequential(nn.Linear(c.z_dim, c.feature_dim), nn.ReLU())
        self.phi_z = nn.Sequential(nn.Linear(c.latent_dim, c.feature_dim), nn.ReLU())
        self.prior = GaussianHead(c.hidden_size, c.feature_dim, c.latent_dim, c.min_std)
        self.posterior = GaussianHead(c.feature_dim + c.hidden_size, c.feature_dim, c.latent_dim, c.min_std)
        self.decoder = GaussianHead(c.feature_dim + c.hidden_size, c.feature_dim, c.z_dim, c.min_std)
        self.rnn = nn.GRUCell(2 * c.feature_dim + c.action_dim, c.hidden_size)
        self.reward_head = nn.Linear(c.hidden_size, 1)
        self.done_head = nn.Linear(c.hidden_size, 1)

    def decode(self, z: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """p(x | z, h): z [..., B, L], h [B, H] (broadcast over leading dims) -> (mu, std) [..., B, Z]."""
        return self.decoder(torch.cat([self.phi_z(z), h.expand(*z.shape[:-1], -1)], dim=-1))

    def next_x(self, h: Tensor) -> AncestralGaussian:
        """The distribution of the next VAE latent given h [B, H]."""
        mu, std = self.prior(h)
        return AncestralGaussian(mu, std, lambda z: self.decode(z, h), self.config.log_prob_samples)

    def posterior_sample(self, h: Tensor, phi_x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """z_t ~ q(z_t | phi_x(x_t), h_t) -> (z_t, mu, std), each [B, L]."""
        mu, std = self.posterior(torch.cat([phi_x, h], dim=-1))
        return mu + std * torch.randn_like(mu), mu, std

    def recur(self, h: Tensor, phi_x: Tensor, z: Tensor, action: Tensor) -> Tensor:
        """h_{t+1} = GRU([phi_x(x_t), phi_z(z_t), a_t], h_t)."""
        return self.rnn(torch.cat([phi_x, self.phi_z(z), action], dim=-1), h)

    def initial_state(self, batch: int) -> State:
        return (self.reward_head.weight.new_zeros(batch, self.hidden_size),)

    def step(self, state: State, z: Tensor, action: Tensor) -> State:
        """(h_t,), x_t [B, Z] (the VAE latent), a_t [B, A] -> (h_{t+1},), with z_t ~ q(z_t | x_t, h_t).

        ``h_t`` may be a view (a planner's ``expand``); the GRU gets a contiguous copy, as cuDNN's
        recurrent kernels require.
        """
        h, phi_x = state[0].contiguous(), self.phi_x(z)
        return (self.recur(h, phi_x, self.posterior_sample(h, phi_x)[0], action),)

    def predict(self, state: State) -> Prediction:
        h = state[0]
        return Prediction(self.next_x(h), self.reward_head(h)[:, 0], self.done_head(h)[:, 0])

    def sample(self, state: State, temperature: float = 1.0) -> Tensor:
        return self.next_x(state[0]).sample(temperature)

    def features(self, state: State) -> Tensor:
        return state[0]

    def loss(self, z: Tensor, action: Tensor, reward: Tensor, done: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Sequence losses (see ``Memory.loss``); ``z`` [B, T+1, Z] are the VAE latents x_0 .. x_T.

        Per frame x_t (frame 0 and every frame after a real step): ``nll`` = -log p(x_t | z_t, h_t)
        summed over dims with z_t ~ q, ``kl`` = KL(q || prior) summed over latent dims; both are
        averaged over real frames, ``elbo = -(nll + kl)``. ``reward`` (MSE) and ``done`` (weighted
        BCE) are averaged over real steps; ``loss = nll + kl_weight*kl + reward_weight*reward
        + done_weight*done``.
        """
        c = self.config
        phi_x = self.phi_x(z)  # [B, T+1, F]
        steps = action.shape[1]
        h = self.initial_state(z.shape[0])[0]
        hs, zs, q_mu, q_std = [], [], [], []
        for t in range(steps + 1):
            z_t, mu, std = self.posterior_sample(h, phi_x[:, t])
            hs.append(h)
            zs.append(z_t)
            q_mu.append(mu)
            q_std.append(std)
            if t < steps:
                h = self.recur(h, phi_x[:, t], z_t, action[:, t])
        h_frames = torch.stack(hs, dim=1)  # [B, T+1, H]: h_t before frame t
        h_next = h_frames[:, 1:]  # [B, T, H]: h_{t+1}, the state after step t
        q_mu, q_std = torch.stack(q_mu, dim=1), torch.stack(q_std, dim=1)
        dec_mu, dec_std = self.decode(torch.stack(zs, dim=1), h_frames)
        p_mu, p_std = self.prior(h_frames)
        frame_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        nll = masked_mean(-gaussian_log_prob(z, dec_mu, dec_std), frame_mask)
        kl = masked_mean(gaussian_kl(q_mu, q_std, p_mu, p_std), frame_mask)
        reward_loss = masked_mean((self.reward_head(h_next)[..., 0] - reward).pow(2), mask)
        pos_weight = torch.tensor(c.done_pos_weight, device=z.device, dtype=z.dtype)
        done_bce = F.binary_cross_entropy_with_logits(
            self.done_head(h_next)[..., 0], done, pos_weight=pos_weight, reduction="none"
        )
        done_loss = masked_mean(done_bce, mask)
        loss = nll + c.kl_weight * kl + c.reward_weight * reward_loss + c.done_weight * done_loss
        return {"loss": loss, "nll": nll, "kl": kl, "reward": reward_loss, "done": done_loss, "elbo": -(nll + kl)}
