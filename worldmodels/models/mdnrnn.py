"""The MDN-RNN memory model (Ha & Schmidhuber 2018): an LSTM with a mixture-density head.

Parameter count at z=32, a=3, H=256, K=5: the paper's TensorFlow LSTM + MDN head has 422,368
parameters; PyTorch's LSTM keeps two bias vectors (``bias_ih`` and ``bias_hh``, 4H = 1,024 extra),
so the same LSTM + MDN head here has 423,392. That is the count we report; the reward and done
heads (257 parameters each) come on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodels.models.memory import Prediction, State

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class MDNRNNConfig:
    z_dim: int = 32
    action_dim: int = 3
    hidden_size: int = 256
    mixtures: int = 5  # K Gaussians per latent dimension
    reward_weight: float = 1.0
    done_weight: float = 1.0
    done_pos_weight: float = 10.0  # BCE weight of terminal steps, which are rare
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    cell_features: bool = False  # features(state) = [h, c] (Ha's VizDoom controller sees both), else h


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over entries where ``mask`` is 1 (same shape); padding may hold anything."""
    return torch.where(mask > 0, x, 0.0).sum() / mask.sum().clamp(min=1)


def bound(x: Tensor, low: float, high: float) -> Tensor:
    """Smoothly squash ``x`` into [low, high]: about the identity well inside, softplus-bounded near the ends."""
    x = high - F.softplus(high - x)
    return low + F.softplus(x - low)


class GaussianMixture:
    """Independent mixtures of K Gaussians, one per latent dimension.

    ``logits``, ``mu``, ``log_std``: [..., Z, K]. Plain tensor ops only, so it is cheap to build
    in the dream's hot path; ``log_prob`` and ``sample`` reduce/act over the trailing dims.
    """

    def __init__(self, logits: Tensor, mu: Tensor, log_std: Tensor) -> None:
        self.logits, self.mu, self.log_std = logits, mu, log_std

    @property
    def mean(self) -> Tensor:
        """[..., Z] the mixture mean."""
        return (self.logits.softmax(-1) * self.mu).sum(-1)

    def sample(self, temperature: float = 1.0) -> Tensor:
        """[..., Z] as in Ha's code: component ~ softmax(logits / tau), z = mu + std * sqrt(tau) * eps."""
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        gumbel = -torch.log(-torch.log(torch.rand_like(self.logits).clamp(min=1e-20)))
        k = (self.logits / temperature + gumbel).argmax(-1, keepdim=True)  # Gumbel-max draw
        mu = self.mu.gather(-1, k).squeeze(-1)
        std = self.log_std.gather(-1, k).squeeze(-1).exp()
        return mu + std * math.sqrt(temperature) * torch.randn_like(mu)

    def log_prob(self, z: Tensor) -> Tensor:
        """[...] log density (nats) of ``z`` [..., Z], summed over latent dimensions."""
        z = z.unsqueeze(-1)
        log_normal = -0.5 * ((z - self.mu) * torch.exp(-self.log_std)).pow(2) - self.log_std - LOG_SQRT_2PI
        return torch.logsumexp(self.logits.log_softmax(-1) + log_normal, dim=-1).sum(-1)


class MDNRNN(nn.Module):
    """LSTM over [z_t, a_t] with a per-dimension Gaussian-mixture head on h for z_{t+1}.

    Implements ``worldmodels.models.memory.Memory``; the state is (h, c), each [B, H]. The
    reward head (h -> r_t) and done head (h -> termination logit) read the same h. A controller sees
    ``features``: h, or [h, c] with ``cell_features`` (then ``hidden_size``, the features' size, is 2H).
    """

    def __init__(self, config: MDNRNNConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim, self.action_dim = config.z_dim, config.action_dim
        self.hidden_size = config.hidden_size * (2 if config.cell_features else 1)
        self.lstm = nn.LSTM(config.z_dim + config.action_dim, config.hidden_size, batch_first=True)
        self.mdn = nn.Linear(config.hidden_size, 3 * config.mixtures * config.z_dim)
        self.reward_head = nn.Linear(config.hidden_size, 1)
        self.done_head = nn.Linear(config.hidden_size, 1)

    def mixture(self, h: Tensor) -> GaussianMixture:
        """Next-latent mixture from h [..., H]; its tensors are [..., Z, K]."""
        out = self.mdn(h).unflatten(-1, (self.z_dim, 3 * self.config.mixtures))
        logits, mu, log_std = out.chunk(3, dim=-1)
        return GaussianMixture(logits, mu, bound(log_std, self.config.log_std_min, self.config.log_std_max))

    def initial_state(self, batch: int) -> State:
        h = self.mdn.weight.new_zeros(batch, self.config.hidden_size)
        return h, torch.zeros_like(h)

    def step(self, state: State, z: Tensor, action: Tensor) -> State:
        """(h_t, c_t), z_t [B, Z], a_t [B, A] -> (h_{t+1}, c_{t+1}).

        The state may be a view (a planner's ``expand`` of one state to N candidates): cuDNN's
        LSTM refuses non-contiguous hidden states, so they are made contiguous here.
        """
        x = torch.cat([z, action], dim=-1).unsqueeze(1)
        hx = (state[0].unsqueeze(0).contiguous(), state[1].unsqueeze(0).contiguous())
        _, (h, c) = self.lstm(x, hx)
        return h[0], c[0]

    def predict(self, state: State) -> Prediction:
        h = state[0]
        return Prediction(self.mixture(h), self.reward_head(h)[:, 0], self.done_head(h)[:, 0])

    def sample(self, state: State, temperature: float = 1.0) -> Tensor:
        return self.mixture(state[0]).sample(temperature)

    def features(self, state: State) -> Tensor:
        return torch.cat(state, dim=-1) if self.config.cell_features else state[0]

    def loss(self, z: Tensor, action: Tensor, reward: Tensor, done: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Sequence losses (see ``Memory.loss``), each averaged over real steps.

        ``nll``: -log p(z_{t+1} | h_{t+1}) summed over latent dims (``nll_per_dim`` divides by Z);
        ``reward``: MSE; ``done``: BCE-with-logits with ``pos_weight=done_pos_weight``.
        """
        h, _ = self.lstm(torch.cat([z[:, :-1], action], dim=-1))  # [B, T, H]: h_1 .. h_T
        nll = masked_mean(-self.mixture(h).log_prob(z[:, 1:]), mask)
        reward_loss = masked_mean((self.reward_head(h)[..., 0] - reward).pow(2), mask)
        pos_weight = torch.tensor(self.config.done_pos_weight, device=h.device, dtype=h.dtype)
        done_bce = F.binary_cross_entropy_with_logits(
            self.done_head(h)[..., 0], done, pos_weight=pos_weight, reduction="none"
        )
        done_loss = masked_mean(done_bce, mask)
        c = self.config
        loss = nll + c.reward_weight * reward_loss + c.done_weight * done_loss
        return {"loss": loss, "nll": nll, "nll_per_dim": nll / self.z_dim, "reward": reward_loss, "done": done_loss}
