"""Curiosity: intrinsic rewards computed from a world model, for exploration.

One interface, ``intrinsic_reward(state, z, action, next_z) -> r [B]`` (nats or squared latent
units, see each class), batched torch: ``state`` is the memory state *before* the step (``None``
when no memory model is used), ``z`` [B, Z] the latent of frame t, ``action`` [B, A] the model-side
float action (one-hot if discrete), ``next_z`` [B, Z] the latent of frame t+1 (ignored by the
rewards that need no real next state, which therefore also work inside the dream).

- ``Surprise``: -log p(z_{t+1} | h_t, a_t) under the memory model, or p(z_{t+1} | z_t, a_t) of a Gaussian
  MLP without one (Stadie 2015, Achiam & Sastry 2017).
- ``ICM``: forward-model error in features learnt with an inverse model (Pathak et al. 2017).
- ``Disagreement``: variance of an ensemble of one-step predictors (Sekar et al. 2020, Plan2Explore).
- ``InfoGain``: closed-form information gain of a Bayesian linear model (a practical VIME, Houthooft 2016).
- ``RunningNorm`` / ``RewardMixer``: RND-style normalisation and ``r = r_ext + beta * r_int / std``.

Each model learns with ``update(batch)``, ``batch`` a dict of ``state`` (tuple of [N, ...] or
``None``), ``z`` [N, Z], ``action`` [N, A], ``next_z`` [N, Z]. Where users meet it:
``CuriosityWrapper`` (gymnasium), ``curiosity_vec_env`` (SB3), ``dream_bonus`` (``wm dream``) and
``worldmodels.explore`` (``wm explore``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodels.core.errors import UserError
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.memory import State
from worldmodels.runs.artifacts import load_world_model
from worldmodels.runs.rundir import RunDir

KINDS = ("surprise", "icm", "disagreement", "infogain")


Batch = dict  # {"state": State | None, "z": [N, Z], "action": [N, A], "next_z": [N, Z]}


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                         nn.Linear(hidden, out_dim))


class EnsembleLinear(nn.Module):
    """K independent linear layers applied at once: x [K, N, in] -> [K, N, out]."""

    def __init__(self, members: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Intrinsic(nn.Module):
    """Base of the intrinsic rewards: the shared input ``[z, h, a]`` and the optimiser.

    ``needs_next``: the reward reads the real ``next_z``; ``single_pass``: ``update`` is an exact
    posterior update, so each transition must be given once (not re-sampled from a replay buffer).
    """

    kind = ""
    needs_next = True
    single_pass = False

    def __init__(self, z_dim: int, action_dim: int, memory=None, use_hidden: bool = True) -> None:
        super().__init__()
        self.z_dim, self.action_dim = z_dim, action_dim
        self.memory = memory
        self.use_hidden = bool(use_hidden and memory is not None)
        self.in_dim = z_dim + action_dim + (memory.hidden_size if self.use_hidden else 0)

    def inputs(self, state: State | None, z: Tensor, action: Tensor) -> Tensor:
        """[B, in_dim] the predictors' input: ``[z, h, a]`` (``[z, a]`` without a memory model)."""
        parts = [z, action]
        if self.use_hidden:
            parts.insert(1, self.memory.features(state).to(z.dtype))
        return torch.cat(parts, dim=-1)

    def own_parameters(self) -> list[nn.Parameter]:
        """Parameters ``update`` trains (not those of a shared memory model)."""
        shared = {id(p) for p in self.memory.parameters()} if isinstance(self.memory, nn.Module) else set()
        return [p for p in self.parameters() if id(p) not in shared]

    def intrinsic_reward(self, state: State | None, z: Tensor, action: Tensor, next_z: Tensor | None) -> Tensor:
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, float]:
        raise NotImplementedError

    def _step(self, loss: Tensor) -> None:
        if not hasattr(self, "optimizer"):
            self.optimizer = torch.optim.Adam(self.own_parameters(), lr=self.lr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


class Surprise(Intrinsic):
    """r = -log p(z_{t+1} | ., a_t) (nats, summed over latent dims).

    With a memory model, ``p(z_{t+1} | h_t, a_t)`` is its prediction, and ``update`` takes one Adam step
    on that negative log-likelihood from the stored states (one-step truncated backprop), fine-tuning the
    memory model online; the weights are never saved. Without one, ``p(z_{t+1} | z_t, a_t)`` is a
    fully factored Gaussian from an MLP of ``hidden`` units (Achiam & Sastry 2017's surprisal model), its
    log-std bounded to [-5, 2]: on the Maze it gave 1.94x random's coverage (6 seeds) where a fresh recurrent
    MDN-RNN, trained one truncated step at a time on stale stored states, gave 1.75x (BENCHMARKS.md, issue 19).
    """

    kind = "surprise"

    def __init__(self, memory=None, z_dim: int | None = None, action_dim: int | None = None, hidden: int = 256,
                 lr: float = 1e-3) -> None:
        if memory is not None:
            super().__init__(memory.z_dim, memory.action_dim, memory, use_hidden=False)
            self.net = None
        else:
            super().__init__(z_dim, action_dim)
            self.net = mlp(z_dim + action_dim, hidden, 2 * z_dim)
        self.lr = lr

    def own_parameters(self) -> list[nn.Parameter]:
        return list((self.net if self.memory is None else self.memory).parameters())

    def nll(self, state: State | None, z: Tensor, action: Tensor, next_z: Tensor) -> Tensor:
        if self.memory is not None:
            return -self.memory.predict(self.memory.step(state, z, action)).next_z.log_prob(next_z)
        mean, log_std = self.net(torch.cat([z, action], dim=-1)).chunk(2, dim=-1)
        return -torch.distributions.Normal(mean, log_std.clamp(-5.0, 2.0).exp()).log_prob(next_z).sum(-1)

    @torch.no_grad()
    def intrinsic_reward(self, state, z, action, next_z):
        return self.nll(state, z, action, next_z)

    def update(self, batch: Batch) -> dict[str, float]:
        loss = self.nll(batch["state"], batch["z"], batch["action"], batch["next_z"]).mean()
        self._step(loss)
        return {"nll": loss.item()}


class ICM(Intrinsic):
    """Intrinsic Curiosity Module: r = eta/2 ||f(phi(z_t), a_t) - phi(z_{t+1})||^2 (feature units).

    As in Pathak et al. 2017, the features ``phi`` [F] learn from both losses, ``(1 - forward_weight)``
    of the inverse model's ``g(phi_t, phi_{t+1}) -> a_t`` (cross-entropy for discrete actions, MSE for
    Box) and ``forward_weight`` of the forward model's error: the inverse loss keeps them from collapsing,
    the forward loss keeps what the next step's features can be predicted from. Trained by the inverse
    model alone (forward targets detached), 32 features gave 1.35x random's coverage on the Maze, against
    2.2x for this over 6 seeds (BENCHMARKS.md, issue 19).
    """

    kind = "icm"

    def __init__(self, z_dim: int, action_dim: int, discrete: bool, features: int = 128, hidden: int = 128,
                 eta: float = 1.0, forward_weight: float = 0.2, lr: float = 1e-3) -> None:
        super().__init__(z_dim, action_dim)
        self.discrete, self.eta, self.forward_weight, self.lr = discrete, eta, forward_weight, lr
        self.phi = nn.Sequential(nn.Linear(z_dim, hidden), nn.ELU(), nn.Linear(hidden, features))
        self.inverse = mlp(2 * features, hidden, action_dim)
        self.forward_model = mlp(features + action_dim, hidden, features)

    def errors(self, z: Tensor, action: Tensor, next_z: Tensor) -> tuple[Tensor, Tensor]:
        """(forward error [B] = 1/2 ||f - phi'||^2, inverse loss [B]); both backpropagate into ``phi``."""
        phi, phi_next = self.phi(z), self.phi(next_z)
        predicted = self.forward_model(torch.cat([phi, action], dim=-1))
        forward = 0.5 * (predicted - phi_next).pow(2).sum(-1)
        logits = self.inverse(torch.cat([phi, phi_next], dim=-1))
        if self.discrete:
            inverse = F.cross_entropy(logits, action.argmax(-1), reduction="none")
        else:
            inverse = (logits - action).pow(2).mean(-1)
        return forward, inverse

    @torch.no_grad()
    def intrinsic_reward(self, state, z, action, next_z):
        return self.eta * self.errors(z, action, next_z)[0]

    def update(self, batch: Batch) -> dict[str, float]:
        forward, inverse = self.errors(batch["z"], batch["action"], batch["next_z"])
        loss = self.forward_weight * forward.mean() + (1 - self.forward_weight) * inverse.mean()
        self._step(loss)
        return {"forward": forward.mean().item(), "inverse": inverse.mean().item()}


class Disagreement(Intrinsic):
    """Plan2Explore: K one-step predictors ``[z, h, a] -> E[z_{t+1}]``; r = Var_k(mean_k), averaged
    over latent dims (squared latent units). Needs no real next state, so it works in the dream.
    ``update`` trains each member on its own bootstrap resample of the batch (MSE)."""

    kind = "disagreement"
    needs_next = False

    def __init__(self, z_dim: int, action_dim: int, memory=None, use_hidden: bool = True, members: int = 5,
                 hidden: int = 128, lr: float = 1e-3) -> None:
        super().__init__(z_dim, action_dim, memory, use_hidden)
        self.members, self.lr = members, lr
        self.net = nn.Sequential(EnsembleLinear(members, self.in_dim, hidden), nn.ELU(),
                                 EnsembleLinear(members, hidden, hidden), nn.ELU(),
                                 EnsembleLinear(members, hidden, z_dim))

    def predictions(self, x: Tensor) -> Tensor:
        """[K, B, Z] each member's predicted next latent from inputs ``x`` [B, D] (or [K, B, D])."""
        return self.net(x.expand(self.members, *x.shape[-2:]))

    @torch.no_grad()
    def intrinsic_reward(self, state, z, action, next_z=None):
        return self.predictions(self.inputs(state, z, action)).var(0, unbiased=False).mean(-1)

    def update(self, batch: Batch) -> dict[str, float]:
        with torch.no_grad():
            x = self.inputs(batch["state"], batch["z"], batch["action"])
        n = len(x)
        boot = torch.randint(n, (self.members, n), device=x.device)  # one bootstrap per member
        loss = (self.predictions(x[boot]) - batch["next_z"][boot]).pow(2).mean()
        self._step(loss)
        return {"mse": loss.item()}


class InfoGain(Intrinsic):
    """A practical VIME: information gain about the weights of a Bayesian linear model, in closed form.

    Approximation: the dynamics model is ``z_{t+1} = W^T phi(x) + noise``, ``x = [z, h, a]``, with
    fixed random tanh features ``phi`` [F] (plus a bias), prior ``W ~ N(0, I/alpha)`` per latent dim
    and noise variance ``sigma2``; the posterior (shared precision ``A = alpha I + sum phi phi^T /
    sigma2``, mean ``M`` [F, Z]) is exact. VIME's reward is ``KL(posterior after the transition ||
    posterior before)``, here per latent dim with ``s = phi^T A^{-1} phi`` and error
    ``e = z_{t+1} - M^T phi``:

        KL = 1/2 [ log(1 + s/sigma2) - s/(sigma2 + s) + s e^2 / (sigma2 + s)^2 ]   (nats, summed over dims).

    Without ``next_z`` (in the dream) the reward is its expectation under the predictive
    ``e ~ N(0, sigma2 + s)``: the mutual information ``Z/2 log(1 + s/sigma2)``. ``update`` adds the
    batch to the posterior exactly (``single_pass``: give each transition once).
    """

    kind = "infogain"
    needs_next = False
    single_pass = True

    def __init__(self, z_dim: int, action_dim: int, memory=None, use_hidden: bool = True, features: int = 128,
                 alpha: float = 1.0, sigma2: float = 0.1, seed: int = 0) -> None:
        super().__init__(z_dim, action_dim, memory, use_hidden)
        g = torch.Generator().manual_seed(seed)
        self.alpha, self.sigma2 = alpha, sigma2
        self.register_buffer("proj", torch.randn(self.in_dim, features, generator=g) / math.sqrt(self.in_dim))
        self.register_buffer("offset", torch.rand(features, generator=g) * 2 - 1)
        self.register_buffer("precision", alpha * torch.eye(features + 1, dtype=torch.float64))
        self.register_buffer("moment", torch.zeros(features + 1, z_dim, dtype=torch.float64))
        self._posterior()

    def phi(self, x: Tensor) -> Tensor:
        """[B, F+1] random tanh features and a bias, float64."""
        f = torch.tanh(x @ self.proj.to(x.dtype) + self.offset.to(x.dtype))
        return torch.cat([f, torch.ones_like(f[:, :1])], dim=-1).double()

    def _posterior(self) -> None:
        """The posterior's covariance ``A^{-1}`` [F+1, F+1] and mean ``M`` [F+1, Z]: buffers that move with the
        module (``.to(device)``) but are not saved (recomputed on load)."""
        covariance = torch.linalg.inv(self.precision)
        self.register_buffer("covariance", covariance, persistent=False)
        self.register_buffer("weights", covariance @ self.moment / self.sigma2, persistent=False)

    @torch.no_grad()
    def intrinsic_reward(self, state, z, action, next_z=None):
        phi = self.phi(self.inputs(state, z, action))
        s = ((phi @ self.covariance) * phi).sum(-1, keepdim=True)  # [B, 1]
        kl = 0.5 * (torch.log1p(s / self.sigma2) - s / (self.sigma2 + s))
        if next_z is None:
            return (0.5 * torch.log1p(s / self.sigma2) * self.z_dim)[:, 0].to(z.dtype)
        e2 = (next_z.double() - phi @ self.weights).pow(2)
        return (kl + 0.5 * s * e2 / (self.sigma2 + s).pow(2)).sum(-1).to(z.dtype)

    @torch.no_grad()
    def update(self, batch: Batch) -> dict[str, float]:
        phi = self.phi(self.inputs(batch["state"], batch["z"], batch["action"]))
        error = float((batch["next_z"].double() - phi @ self.weights).pow(2).mean())
        self.precision += phi.T @ phi / self.sigma2
        self.moment += phi.T @ batch["next_z"].double()
        self._posterior()
        return {"mse": error}

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._posterior()


def make_intrinsic(kind: str, run_or_models=None, device: torch.device | str = "cpu", *,
                   z_dim: int | None = None, action: ActionSpec | None = None, **kw) -> Intrinsic:
    """Intrinsic reward ``kind`` (surprise | icm | disagreement | infogain), on ``device``.

    ``run_or_models``: a run directory (its memory model is loaded), a memory model, or ``None``
    (then ``z_dim`` and ``action`` say the sizes; ``surprise`` gets its own Gaussian MLP). ``kw``
    go to the class (``members``, ``eta``, ``use_hidden``, ``lr``, ...).
    """
    if kind not in KINDS:
        raise UserError(f"unknown intrinsic reward {kind!r}; choose one of {', '.join(KINDS)}")
    memory = run_or_models
    if isinstance(run_or_models, (RunDir, str, Path)):
        run = run_or_models if isinstance(run_or_models, RunDir) else RunDir(run_or_models)
        memory = load_world_model(run, device)[1]
        action = action or run.action_spec()
    if memory is not None:
        z_dim = memory.z_dim
    if z_dim is None or action is None:
        raise UserError("make_intrinsic needs a run, a memory model, or z_dim and action")
    if memory is not None and memory.action_dim != action.dim:
        raise UserError(f"memory model takes actions of size {memory.action_dim}, the env's are {action.dim}")
    if kind == "surprise":
        module = Surprise(memory, z_dim, action.dim, **kw)
    elif kind == "icm":
        module = ICM(z_dim, action.dim, action.discrete, **kw)
    elif kind == "disagreement":
        module = Disagreement(z_dim, action.dim, memory, **kw)
    else:
        module = InfoGain(z_dim, action.dim, memory, **kw)
    return module.to(device)
