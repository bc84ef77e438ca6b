"""The RSSM memory model (Hafner et al. 2019, PlaNet), action-conditioned, over VAE latents.

Naming: ``x_t`` [B, Z] is the VAE latent (the interface's ``z``), ``s_t`` [B, S] the stochastic
state, ``h_t`` [B, H] the deterministic state, h_0 = 0 (eqs. 4 of the paper):

    deterministic  h_{t+1} = GRU(h_t, MLP([s_t, a_t]))    the only path from one step to the next
    prior          p(s_t | h_t)       = N(mu, std)        [B, S]
    posterior      q(s_t | h_t, x_t)  = N(mu, std)        [B, S]
    observation    p(x_t | h_t, s_t)  = N(mu, std)        [B, Z]

Training maximises the one-step ELBO with free nats (eq. 3), per frame x_0 .. x_T with s_t ~ q:
    ln p(x_t | h_t, s_t) - max(free_nats, KL[q(s_t | h_t, x_t) || p(s_t | h_t)])
(the KL averaged over real frames, then clamped: Dreamer's convention). Latent overshooting
(eq. 7, ``overshooting`` = D >= 2; 0 = off, PlaNet's RSSM trains well without it) adds
``overshooting_scale`` times the mean over d = 2..D of the KL between the posterior at t (its
gradient stopped) and the d-step prior p(s_t | s_{t-d}, a_{t-d:t}): the prior rolled d steps
with the real actions from the posterior sample at t - d.

Interface: the state is (h_{t+1},) after ``step(x_t, a_t)`` (which samples s_t from q); the next
latent is the ancestral p(x_{t+1} | h_{t+1}) = ∫ p(s | h_{t+1}) p(x | h_{t+1}, s) ds; reward r_t
and the done logit of transition t are read from h_{t+1}. Stds are softplus(.) + ``min_std``.
Defaults are PlaNet's sizes: H = 200, S = 30, dense layers of 200, std floor 0.1, 3 free nats.
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
class RSSMConfig:
    z_dim: int = 32  # VAE latent size (x here)
    action_dim: int = 3
    hidden_size: int = 200  # deterministic GRU state h
    state_dim: int = 30  # stochastic state s
    feature_dim: int = 200  # width of the dense layers
    min_std: float = 0.1
    free_nats: float = 3.0
    overshooting: int = 0  # latent overshooting distance D (0: off)
    overshooting_scale: float = 1.0
    reward_weight: float = 1.0
    done_weight: float = 1.0
    done_pos_weight: float = 10.0
    log_prob_samples: int = 16  # prior samples in the Monte-Carlo ``log_prob`` estimate


class RSSM(nn.Module):
    """Recurrent state-space model; implements ``worldmodels.models.memory.Memory``. State: (h,) [B, H]."""

    def __init__(self, config: RSSMConfig) -> None:
        super().__init__()
        c = self.config = config
        self.z_dim, self.action_dim, self.hidden_size = c.z_dim, c.action_dim, c.hidden_size
        self.embed = nn.Sequential(nn.Linear(c.state_dim + c.action_dim, c.feature_dim), nn.ELU())
        self.rnn = nn.GRUCell(c.feature_dim, c.hidden_size)
        self.prior = GaussianHead(c.hidden_size, c.feature_dim, c.state_dim, c.min_std)
        self.posterior = GaussianHead(c.hidden_size + c.z_dim, c.feature_dim, c.state_dim, c.min_std)
        self.observation = GaussianHead(c.hidden_size + c.state_dim, c.feature_dim, c.z_dim, c.min_std)
        self.heads = TransitionHeads(c.hidden_size, c.done_pos_weight)

    def recur(self, h: Tensor, s: Tensor, action: Tensor) -> Tensor:
        """h_{t+1} = GRU(h_t, MLP([s_t, a_t])); h [..., H], s [..., S], action [..., A] -> [..., H]."""
        x = self.embed(torch.cat([s, action], dim=-1))
        return self.rnn(x.reshape(-1, x.shape[-1]), h.reshape(-1, h.shape[-1]).contiguous()).view(h.shape)

    def decode(self, s: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """p(x | h, s): s [..., B, S], h [B, H] (broadcast over leading dims) -> (mu, std) [..., B, Z]."""
        return self.observation(torch.cat([h.expand(*s.shape[:-1], -1), s], dim=-1))

    def initial_state(self, batch: int) -> State:
        return (self.heads.reward.weight.new_zeros(batch, self.hidden_size),)

    def step(self, state: State, z: Tensor, action: Tensor) -> State:
        """(h_t,), x_t [B, Z], a_t [B, A] -> (h_{t+1},), with s_t ~ q(s_t | h_t, x_t)."""
        h = state[0]
        mu, std = self.posterior(torch.cat([h, z], dim=-1))
        return (self.recur(h, mu + std * torch.randn_like(mu), action),)

    def next_x(self, h: Tensor) -> AncestralGaussian:
        mu, std = self.prior(h)
        return AncestralGaussian(mu, std, lambda s: self.decode(s, h), self.config.log_prob_samples)

    def predict(self, state: State) -> Prediction:
        h = state[0]
        return Prediction(self.next_x(h), *self.heads(h))

    def sample(self, state: State, temperature: float = 1.0) -> Tensor:
        return self.next_x(state[0]).sample(temperature)

    def features(self, state: State) -> Tensor:
        return state[0]

    def loss(self, z: Tensor, action: Tensor, reward: Tensor, done: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Sequence losses (see ``Memory.loss``); ``z`` [B, T+1, Z] are the VAE latents x_0 .. x_T.

        ``nll`` = -ln p(x_t | h_t, s_t) (s_t ~ q, summed over dims) and ``kl`` (before the free-nats
        clamp) averaged over real frames; ``overshooting`` the d >= 2 KLs when enabled; ``reward``
        (MSE) and ``done`` (weighted BCE) over real steps. ``loss = nll + max(free_nats, kl)
        + overshooting_scale * overshooting + reward_weight * reward + done_weight * done``.
        """
        c = self.config
        steps = action.shape[1]
        h = self.initial_state(z.shape[0])[0]
        hs, ss, q_mu, q_std = [], [], [], []
        for t in range(steps + 1):
            mu, std = self.posterior(torch.cat([h, z[:, t]], dim=-1))
            s = mu + std * torch.randn_like(mu)
            hs.append(h)
            ss.append(s)
            q_mu.append(mu)
            q_std.append(std)
            if t < steps:
                h = self.recur(h, s, action[:, t])
        h, s = torch.stack(hs, dim=1), torch.stack(ss, dim=1)  # [B, T+1, H], [B, T+1, S]
        q_mu, q_std = torch.stack(q_mu, dim=1), torch.stack(q_std, dim=1)
        frame_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        x_mu, x_std = self.observation(torch.cat([h, s], dim=-1))
        nll = masked_mean(-gaussian_log_prob(z, x_mu, x_std), frame_mask)
        kl = masked_mean(gaussian_kl(q_mu, q_std, *self.prior(h)), frame_mask)
        reward_loss, done_loss = self.heads.losses(h[:, 1:], reward, done, mask)
        loss = nll + kl.clamp(min=c.free_nats) + c.reward_weight * reward_loss + c.done_weight * done_loss
        out = {"nll": nll, "kl": kl, "reward": reward_loss, "done": done_loss, "elbo": -(nll + kl)}
        if c.overshooting >= 2:
            out["overshooting"] = self.overshooting_kl(h, s, q_mu.detach(), q_std.detach(), action, frame_mask)
            loss = loss + c.overshooting_scale * out["overshooting"].clamp(min=c.free_nats)
        return {"loss": loss, **out}

    def overshooting_kl(self, h: Tensor, s: Tensor, q_mu: Tensor, q_std: Tensor, action: Tensor,
                        frame_mask: Tensor) -> Tensor:
        """Mean over d = 2..D of KL[q(s_t) || p(s_t | s_{t-d})], averaged over real frames t >= d.

        ``h``, ``s`` [B, T+1, ...]: the posterior path; ``q_mu``, ``q_std`` [B, T+1, S] (detached);
        ``action`` [B, T, A]. All start times are rolled forward together, one prior step per d.
        """
        steps = action.shape[1]
        distance = min(self.config.overshooting, steps)
        h, s, kls = h[:, :-1], s[:, :-1], []  # starts t = 0 .. T-1
        for d in range(1, distance + 1):
            h = self.recur(h[:, :steps - d + 1], s[:, :steps - d + 1], action[:, d - 1:])  # at t + d
            mu, std = self.prior(h)
            if d >= 2:
                kls.append(masked_mean(gaussian_kl(q_mu[:, d:], q_std[:, d:], mu, std), frame_mask[:, d:]))
            s = mu + std * torch.randn_like(mu)
        return torch.stack(kls).mean() if kls else h.new_zeros(())
