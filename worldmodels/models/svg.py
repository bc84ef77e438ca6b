"""The SVG-LP memory model (Denton & Fergus 2018): a learned-prior stochastic frame predictor whose
"frames" are the VAE latents, conditioned on actions.

Naming: ``x_t`` [B, Z] is the VAE latent (the interface's ``z``), ``e_t = enc(x_t)`` [B, G] its
embedding, ``z_t`` [B, L] the SVG latent, ``a_t`` the action; LSTM states are [B, H]. With
e_{-1} = 0, a_{-1} = 0 and zero initial LSTM states (the paper's Fig. 1 and eqs. 1-3):

    posterior       q(z_t | x_{<=t})           = N(mu_phi(h^phi_t), std),  h^phi_t = LSTM_phi(e_t)
    learned prior   p(z_t | x_{<t}, a_{<t})    = N(mu_psi(h^psi_{t-1}), std),
                                                 h^psi_{t-1} = LSTM_psi([e_{t-1}, a_{t-1}])
    frame predictor g_t = LSTM_theta([e_{t-1}, a_{t-1}, z_t])  (2 layers),  p(x_t | g_t) = N(mu, std)

Loss per frame x_0 .. x_T with z_t ~ q (eq. 3): -ln p(x_t | g_t) + beta * KL[q(z_t | x_{<=t}) ||
p(z_t | x_{<t})]. The paper's beta (1e-4) weighs an unnormalised pixel L2; against this Gaussian
NLL in nats, ``beta`` = 1 is the ELBO and the default.

Interface: the state after ``step(x_t, a_t)`` holds the frame predictor after consuming
[e_{t-1}, a_{t-1}, z_t] (z_t ~ q), the prior and posterior LSTMs after x_t, and the next frame
predictor input [e_t, a_t]. ``predict`` samples z_{t+1} from the learned prior and runs the frame
predictor one step: p(x_{t+1}) = ∫ p(z | h^psi_t) p(x | LSTM_theta([e_t, a_t, z])) dz. ``features``,
reward r_t and the done logit read h^psi_t (it has seen x_t and a_t). Paper sizes: LSTMs of 256
(``hidden_size``), g = 128, z = 10 to 32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodels.models.heads import TransitionHeads
from worldmodels.models.mdnrnn import masked_mean
from worldmodels.models.memory import Prediction, State
from worldmodels.models.vrnn import AncestralGaussian, GaussianHead, gaussian_kl, gaussian_log_prob


@dataclass
class SVGConfig:
    z_dim: int = 32  # VAE latent size (x here)
    action_dim: int = 3
    hidden_size: int = 256  # every LSTM's width
    latent_dim: int = 32  # the SVG latent z
    embed_dim: int = 128  # g, the frame embedding
    predictor_layers: int = 2
    min_std: float = 0.01
    beta: float = 1.0  # KL weight
    reward_weight: float = 1.0
    done_weight: float = 1.0
    done_pos_weight: float = 10.0
    log_prob_samples: int = 16  # prior samples in the Monte-Carlo ``log_prob`` estimate


def stepwise_normal(mu: Tensor) -> Tensor:
    """N(0, 1) noise like ``mu`` [B, T, ...], drawn one step at a time: a window's draws do not
    depend on how much padding follows it."""
    return torch.stack([torch.randn_like(mu[:, t]) for t in range(mu.shape[1])], dim=1)


class SVG(nn.Module):
    """SVG-LP; implements ``worldmodels.models.memory.Memory``.

    State: (theta_h, theta_c) [B, layers, H], (psi_h, psi_c, phi_h, phi_c) [B, H], last input [B, G + A].
    """

    def __init__(self, config: SVGConfig) -> None:
        super().__init__()
        c = self.config = config
        self.z_dim, self.action_dim, self.hidden_size = c.z_dim, c.action_dim, c.hidden_size
        self.encoder = nn.Sequential(nn.Linear(c.z_dim, c.embed_dim), nn.ReLU(), nn.Linear(c.embed_dim, c.embed_dim))
        self.posterior_rnn = nn.LSTM(c.embed_dim, c.hidden_size, batch_first=True)
        self.prior_rnn = nn.LSTM(c.embed_dim + c.action_dim, c.hidden_size, batch_first=True)
        self.predictor_rnn = nn.LSTM(c.embed_dim + c.action_dim + c.latent_dim, c.hidden_size, c.predictor_layers,
                                     batch_first=True)
        self.posterior = nn.Linear(c.hidden_size, 2 * c.latent_dim)
        self.prior = nn.Linear(c.hidden_size, 2 * c.latent_dim)
        self.decoder = GaussianHead(c.hidden_size, c.hidden_size, c.z_dim, c.min_std)
        self.heads = TransitionHeads(c.hidden_size, c.done_pos_weight)

    def gaussian(self, layer: nn.Linear, h: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw_std = layer(h).chunk(2, dim=-1)
        return mu, F.softplus(raw_std) + self.config.min_std

    def predictor_step(self, inputs: Tensor, z: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One frame-predictor step for z [..., B, L] (leading dims broadcast): inputs [B, G + A], h, c
        [B, layers, H] -> (g [..., B, H], h, c [..., B, layers, H])."""
        lead = z.shape[:-1]
        x = torch.cat([inputs.expand(*lead, -1), z], dim=-1).reshape(-1, 1, inputs.shape[-1] + z.shape[-1])
        h0, c0 = (s.expand(*lead, *s.shape[-2:]).reshape(-1, *s.shape[-2:]).transpose(0, 1).contiguous() for s in (h, c))
        g, (h1, c1) = self.predictor_rnn(x, (h0, c0))
        h1, c1 = (s.transpose(0, 1).contiguous().view(*lead, s.shape[0], s.shape[2]) for s in (h1, c1))
        return g.view(*lead, -1), h1, c1

    def initial_state(self, batch: int) -> State:
        c = self.config
        zeros = self.prior.weight.new_zeros
        theta = zeros(batch, c.predictor_layers, c.hidden_size)
        psi = zeros(batch, c.hidden_size)
        return theta, theta.clone(), psi, psi.clone(), psi.clone(), psi.clone(), zeros(batch, c.embed_dim + c.action_dim)

    def step(self, state: State, z: Tensor, action: Tensor) -> State:
        """State before x_t, x_t [B, Z], a_t [B, A] -> the state after (z_t ~ q(z_t | x_{<=t}))."""
        theta_h, theta_c, psi_h, psi_c, phi_h, phi_c, inputs = state
        e = self.encoder(z).unsqueeze(1)
        _, (phi_h, phi_c) = self.posterior_rnn(e, (phi_h.unsqueeze(0).contiguous(), phi_c.unsqueeze(0).contiguous()))
        mu, std = self.gaussian(self.posterior, phi_h[0])
        _, theta_h, theta_c = self.predictor_step(inputs, mu + std * torch.randn_like(mu), theta_h, theta_c)
        now = torch.cat([e[:, 0], action], dim=-1)
        _, (psi_h, psi_c) = self.prior_rnn(now.unsqueeze(1), (psi_h.unsqueeze(0).contiguous(),
                                                               psi_c.unsqueeze(0).contiguous()))
        return theta_h, theta_c, psi_h[0], psi_c[0], phi_h[0], phi_c[0], now

    def next_x(self, state: State) -> AncestralGaussian:
        theta_h, theta_c, psi_h, _, _, _, inputs = state
        mu, std = self.gaussian(self.prior, psi_h)

        def decode(z: Tensor) -> tuple[Tensor, Tensor]:
            return self.decoder(self.predictor_step(inputs, z, theta_h, theta_c)[0])

        return AncestralGaussian(mu, std, decode, self.config.log_prob_samples)

    def predict(self, state: State) -> Prediction:
        return Prediction(self.next_x(state), *self.heads(state[2]))

    def sample(self, state: State, temperature: float = 1.0) -> Tensor:
        return self.next_x(state).sample(temperature)

    def features(self, state: State) -> Tensor:
        return state[2]

    def loss(self, z: Tensor, action: Tensor, reward: Tensor, done: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Sequence losses (see ``Memory.loss``); ``z`` [B, T+1, Z] are the VAE latents x_0 .. x_T.

        ``nll`` = -ln p(x_t | g_t) (z_t ~ q, summed over dims) and ``kl`` averaged over real frames;
        ``reward`` (MSE) and ``done`` (weighted BCE) over real steps, read from h^psi_t.
        ``loss = nll + beta * kl + reward_weight * reward + done_weight * done``.
        """
        c = self.config
        e = self.encoder(z)  # [B, T+1, G]
        now = torch.cat([e[:, :-1], action], dim=-1)  # [e_t, a_t], t = 0 .. T-1
        previous = torch.cat([torch.zeros_like(now[:, :1]), now], dim=1)  # [e_{t-1}, a_{t-1}], t = 0 .. T
        psi, _ = self.prior_rnn(now)  # h^psi_0 .. h^psi_{T-1}
        q_mu, q_std = self.gaussian(self.posterior, self.posterior_rnn(e)[0])
        p_mu, p_std = self.gaussian(self.prior, torch.cat([torch.zeros_like(psi[:, :1]), psi], dim=1))
        sampled = q_mu + q_std * stepwise_normal(q_mu)
        g, _ = self.predictor_rnn(torch.cat([previous, sampled], dim=-1))
        x_mu, x_std = self.decoder(g)
        frame_mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        nll = masked_mean(-gaussian_log_prob(z, x_mu, x_std), frame_mask)
        kl = masked_mean(gaussian_kl(q_mu, q_std, p_mu, p_std), frame_mask)
        reward_loss, done_loss = self.heads.losses(psi, reward, done, mask)
        loss = nll + c.beta * kl + c.reward_weight * reward_loss + c.done_weight * done_loss
        return {"loss": loss, "nll": nll, "kl": kl, "reward": reward_loss, "done": done_loss, "elbo": -(nll + kl)}
