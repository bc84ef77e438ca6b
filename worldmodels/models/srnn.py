"""The SRNN memory model (Fraccaro et al. 2016), action-conditioned, over VAE latents.

Naming: ``x_t`` [B, Z] is the VAE latent (the interface's ``z``), ``z_t`` [B, L] the SRNN's
stochastic state, ``d_t`` [B, H] the forward deterministic state, ``a_t`` the action and
``b_t`` [B, H] the backward (inference) state. With d_0 = 0, z_{-1} = 0, b_{T+1} = 0:

    forward RNN   d_t = GRU_d(d_{t-1}, [x_{t-1}, a_{t-1}])              (eq. 2, input u_t)
    prior         p(z_t | z_{t-1}, d_t)    = N(mu_p, std_p)               (eq. 3)
    emission      p(x_t | z_t, d_t)        = N(mu, std)
    backward RNN  b_t = GRU_b(b_{t+1}, [d_t, x_t])                        (eq. 10: smoothing)
    posterior     q(z_t | z_{t-1}, b_t)    = N(mu_p + dmu, std_q)         ("Resq", eq. 12)

ELBO (eq. 11), per frame x_0 .. x_T with z_t ~ q:
    ln p(x_t | z_t, d_t) - KL[q(z_t | z_{t-1}, b_t) || p(z_t | z_{t-1}, d_t)].

Only training sees the future. The interface filters: ``step(x_t, a_t)`` draws z_t from the
posterior with an empty future (b_t = GRU_b(0, [d_t, x_t]): what the inference network sees at the
last frame of every training window) and returns (d_{t+1}, z_t); ``predict`` and the dream use
only the forward generative path, p(x_{t+1}) = ∫ p(z | z_t, d_{t+1}) p(x | z, d_{t+1}) dz.
Reward r_t and the done logit of transition t are read from d_{t+1}. Stds are softplus(.) +
``min_std``. Sizes are the paper's structure at world-model scale (the paper's speech models:
d, b of 1024, z of 256); it anneals the KL weight from 0.01 to 1 (``kl_weight`` here is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from worldmodels.models.heads import TransitionHeads
from worldmodels.models.mdnrnn import masked_mean
from worldmodels.models.memory import Prediction, State
from worldmodels.models.vrnn import AncestralGaussian, GaussianHead, gaussian_kl, gaussian_log_prob


@dataclass
class SRNNConfig:
    z_dim: int = 32  # VAE latent size (x here)
    action_dim: int = 3
    hidden_size: int = 256  # forward state d and backward state b
    latent_dim: int = 32  # the SRNN's stochastic z
    feature_dim: int = 128  # width of the MLPs
    min_std: float = 0.01
    kl_weight: float = 1.0
    reward_weight: float = 1.0
    done_weight: float = 1.0
    done_pos_weight: float = 10.0
    log_prob_samples: int = 16  # prior samples in the Monte-Carlo ``log_prob`` estimate


def reverse_real(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of ``x`` [B, T, ...] within its first ``lengths`` [B] entries; the rest stay put.

    An involution, so it also maps back. Lets a forward RNN run backwards over the real frames only.
    """
    t = torch.arange(x.shape[1], device=x.device)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # [B, T]
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class SRNN(nn.Module):
    """Stochastic RNN; implements ``worldmodels.models.memory.Memory``. State: (d, z_prev) [B, H], [B, L]."""

    def __init__(self, config: SRNNConfig) -> None:
        super().__init__()
        c = self.config = config
        self.z_dim, self.action_dim, self.hidden_size = c.z_dim, c.action_dim, c.hidden_size
        self.forward_rnn = nn.GRU(c.z_dim + c.action_dim, c.hidden_size, batch_first=True)
        self.backward_rnn = nn.GRU(c.hidden_size + c.z_dim, c.hidden_size, batch_first=True)
        self.prior = GaussianHead(c.latent_dim + c.hidden_size, c.feature_dim, c.latent_dim, c.min_std)
        self.posterior = GaussianHead(c.latent_dim + c.hidden_size, c.feature_dim, c.latent_dim, c.min_std)
        self.emission = GaussianHead(c.latent_dim + c.hidden_size, c.feature_dim, c.z_dim, c.min_std)
        self.heads = TransitionHeads(c.hidden_size, c.done_pos_weight)

    def transition(self, z_prev: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """p(z_t | z_{t-1}, d_t): z_prev [..., L], d [..., H] -> (mu, std) [..., L]."""
        return self.prior(torch.cat([z_prev, d], dim=-1))

    def infer(self, z_prev: Tensor, b: Tensor, prior_mu: Tensor) -> tuple[Tensor, Tensor]:
        """q(z_t | z_{t-1}, b_t) with the residual mean mu_p + dmu -> (mu, std) [..., L]."""
        dmu, std = self.posterior(torch.cat([z_prev, b], dim=-1))
        return prior_mu + dmu, std

    def decode(self, z: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
        """p(x | z, d): z [..., B, L], d [B, H] (broadcast over leading dims) -> (mu, std) [..., B, Z]."""
        return self.emission(torch.cat([z, d.expand(*z.shape[:-1], -1)], dim=-1))

    def initial_state(self, batch: int) -> State:
        d = self.heads.reward.weight.new_zeros(batch, self.hidden_size)
        return d, d.new_zeros(batch, self.config.latent_dim)

    def step(self, state: State, z: Tensor, action: Tensor) -> State:
        """(d_t, z_{t-1}), x_t [B, Z], a_t [B, A] -> (d_{t+1}, z_t), z_t ~ q with an empty future."""
        d, z_prev = state
        d = d.contiguous()
        b = self.backward_rnn(torch.cat([d, z], dim=-1).unsqueeze(1))[0][:, 0]  # b_{t+1} = 0
        mu, std = self.infer(z_prev, b, self.transition(z_prev, d)[0])
        _, d_next = self.forward_rnn(torch.cat([z, action], dim=-1).unsqueeze(1), d.unsqueeze(0))
        return d_next[0], mu + std * torch.randn_like(mu)

    def next_x(self, state: State) -> AncestralGaussian:
        d, z_prev = state
        mu, std = self.transition(z_prev, d)
        return AncestralGaussian(mu, std, lambda z: self.decode(z, d), self.config.log_prob_samples)

    def predict(self, state: State) -> Prediction:
        return Prediction(self.next_x(state), *self.heads(state[0]))

    def sample(self, state: State, temperature: float = 1.0) -> Tensor:
        return self.next_x(state).sample(temperature)

    def features(self, state: State) -> Tensor:
        return state[0]

    def loss(self, z: Tensor, action: Tensor, reward: Tensor, done: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Sequence losses (see ``Memory.loss``); ``z`` [B, T+1, Z] are the VAE latents x_0 .. x_T.

        ``nll`` = -ln p(x_t | z_t, d_t) (z_t ~ q, summed over dims) and ``kl`` averaged over real
        frames (padding must follow the real steps: the backward RNN starts at each row's last
        real frame); ``reward`` (MSE) and ``done`` (weighted BCE) over real steps.
        ``loss = nll + kl_weight * kl + reward_weight * reward + done_weight * done``.
        """
        c = self.config
        batch, steps = action.shape[:2]
        d_next, _ = self.forward_rnn(torch.cat([z[:, :-1], action], dim=-1))  # d_1 .. d_T
        d = torch.cat([d_next.new_zeros(batch, 1, c.hidden_size), d_next], dim=1)  # [B, T+1, H]
        frame_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        lengths = frame_mask.sum(1).long()
        b = reverse_real(self.backward_rnn(reverse_real(torch.cat([d, z], dim=-1), lengths))[0], lengths)
        z_prev = d.new_zeros(batch, c.latent_dim)
        zs, p_mu, p_std, q_mu, q_std = [], [], [], [], []
        for t in range(steps + 1):
            mu_p, std_p = self.transition(z_prev, d[:, t])
            mu_q, std_q = self.infer(z_prev, b[:, t], mu_p)
            z_prev = mu_q + std_q * torch.randn_like(mu_q)
            for seq, value in zip((zs, p_mu, p_std, q_mu, q_std), (z_prev, mu_p, std_p, mu_q, std_q)):
                seq.append(value)
        zs, p_mu, p_std, q_mu, q_std = (torch.stack(seq, dim=1) for seq in (zs, p_mu, p_std, q_mu, q_std))
        x_mu, x_std = self.emission(torch.cat([zs, d], dim=-1))
        nll = masked_mean(-gaussian_log_prob(z, x_mu, x_std), frame_mask)
        kl = masked_mean(gaussian_kl(q_mu, q_std, p_mu, p_std), frame_mask)
        reward_loss, done_loss = self.heads.losses(d_next, reward, done, mask)
        loss = nll + c.kl_weight * kl + c.reward_weight * reward_loss + c.done_weight * done_loss
        return {"loss": loss, "nll": nll, "kl": kl, "reward": reward_loss, "done": done_loss, "elbo": -(nll + kl)}
