"""Curiosity: intrinsic rewards computed from a world model, for exploration.

One interface, ``intrinsic_reward(state, z, action, next_z) -> r [B]`` (nats or squared latent
units, see each class), batched torch: ``state`` is the memory state *before* the step (``None``
when no memory model is used), ``z`` [B, Z] the latent of frame t, ``action`` [B, A] the model-side
float action (one-hot if discrete), ``next_z`` [B, Z] the latent of frame t+1 (ignored by the
rewards that need no real next state, which therefore also work inside the dream).

- ``Surprise``: -log p(z_{t+1} | h_t, a_t) under the memory model (Stadie 2015, Achiam & Sastry 2017).
- ``ICM``: forward-model error in inverse-model features (Pathak et al. 2017).
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
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.spaces import ActionSpec
from worldmodels.errors import UserError
from worldmodels.models.memory import State

KINDS = ("surprise", "icm", "disagreement", "infogain")
Batch = dict  # {"state": State | None, "z": [N, Z], "action": [N, A], "next_z": [N, Z]}


# ------------------------------------------------------------------------------- normalisation


class RunningNorm:
    """Running mean and variance of a stream of values of shape ``shape`` (RND, Burda et al. 2018).

    ``update(x [N, *shape])`` merges a batch with Chan et al.'s parallel form of Welford's update,
    so the statistics equal numpy's ``mean``/``var`` (population variance) over everything seen.
    """

    def __init__(self, shape: tuple[int, ...] = (), eps: float = 1e-8) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 0
        self.eps = eps

    def update(self, x) -> None:
        x = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, np.float64).reshape(-1, *self.mean.shape)
        n = len(x)
        if n == 0:
            return
        mean, var = x.mean(0), x.var(0)
        if self.count == 0:
            self.mean, self.var, self.count = mean, var, n
            return
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var, self.count = m2 / total, total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var + self.eps)

    def normalize(self, x: Tensor, center: bool = False) -> Tensor:
        """``x / std`` (rewards keep their sign, as in RND), or ``(x - mean) / std`` with ``center``."""
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
        if center:
            return (x - torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)) / std
        return x / std

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}

    def load_state_dict(self, d: dict) -> None:
        self.mean, self.var, self.count = np.asarray(d["mean"]), np.asarray(d["var"]), int(d["count"])


class RewardMixer:
    """``r = r_ext + beta * r_int / std(r_int)``; the running std is updated with each call's ``r_int``.

    Not centred (as RND): familiar transitions are not punished. Surprise's nats carry an arbitrary
    offset, which this scales up too; a smaller ``beta`` suits it.
    """

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = float(beta)
        self.norm = RunningNorm()

    def intrinsic(self, r_int: Tensor, update: bool = True) -> Tensor:
        """[B] the scaled, normalised intrinsic part ``beta * r_int / std``."""
        if update:
            self.norm.update(r_int)
        return self.beta * self.norm.normalize(r_int)

    def __call__(self, r_ext: Tensor, r_int: Tensor) -> Tensor:
        return r_ext + self.intrinsic(r_int)


# ---------------------------------------------------------------------------- building blocks


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


# -------------------------------------------------------------------------------------- rewards


class Surprise(Intrinsic):
    """r = -log p(z_{t+1} | h_t, a_t) (nats, summed over latent dims) under the memory model.

    ``update`` takes one Adam step on that negative log-likelihood from the stored states (one-step
    truncated backprop), fine-tuning the memory model online; the weights are never saved.
    """

    kind = "surprise"

    def __init__(self, memory, lr: float = 1e-3) -> None:
        super().__init__(memory.z_dim, memory.action_dim, memory, use_hidden=False)
        self.lr = lr

    def own_parameters(self) -> list[nn.Parameter]:
        return list(self.memory.parameters())

    def nll(self, state: State, z: Tensor, action: Tensor, next_z: Tensor) -> Tensor:
        return -self.memory.predict(self.memory.step(state, z, action)).next_z.log_prob(next_z)

    @torch.no_grad()
    def intrinsic_reward(self, state, z, action, next_z):
        return self.nll(state, z, action, next_z)

    def update(self, batch: Batch) -> dict[str, float]:
        loss = self.nll(batch["state"], batch["z"], batch["action"], batch["next_z"]).mean()
        self._step(loss)
        return {"nll": loss.item()}


class ICM(Intrinsic):
    """Intrinsic Curiosity Module: r = eta/2 ||f(phi(z_t), a_t) - phi(z_{t+1})||^2 (feature units).

    The features ``phi`` [F] are trained only by the inverse model ``g(phi_t, phi_{t+1}) -> a_t``
    (cross-entropy for discrete actions, MSE for Box); the forward model ``f`` regresses onto
    detached ``phi_{t+1}``, so it cannot shrink its error by collapsing the features.
    """

    kind = "icm"

    def __init__(self, z_dim: int, action_dim: int, discrete: bool, features: int = 32, hidden: int = 128,
                 eta: float = 1.0, forward_weight: float = 0.2, lr: float = 1e-3) -> None:
        super().__init__(z_dim, action_dim)
        self.discrete, self.eta, self.forward_weight, self.lr = discrete, eta, forward_weight, lr
        self.phi = nn.Sequential(nn.Linear(z_dim, hidden), nn.ELU(), nn.Linear(hidden, features))
        self.inverse = mlp(2 * features, hidden, action_dim)
        self.forward_model = mlp(features + action_dim, hidden, features)

    def errors(self, z: Tensor, action: Tensor, next_z: Tensor) -> tuple[Tensor, Tensor]:
        """(forward error [B] = 1/2 ||f - phi'||^2, inverse loss [B])."""
        phi, phi_next = self.phi(z), self.phi(next_z)
        predicted = self.forward_model(torch.cat([phi.detach(), action], dim=-1))
        forward = 0.5 * (predicted - phi_next.detach()).pow(2).sum(-1)
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
        self.covariance = torch.linalg.inv(self.precision)
        self.weights = self.covariance @ self.moment / self.sigma2

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


# ------------------------------------------------------------------------------------ factory


def load_run_models(run, device: torch.device | str = "cpu"):
    """(vision, memory) of a run directory (``RunDir`` or path)."""
    from worldmodels.checkpoint import load_memory, load_vision
    from worldmodels.rundir import RunDir

    run = run if isinstance(run, RunDir) else RunDir(run)
    vision = load_vision(run, device)
    return vision, load_memory(run, device, vision)


def make_intrinsic(kind: str, run_or_models=None, device: torch.device | str = "cpu", *,
                   z_dim: int | None = None, action: ActionSpec | None = None, **kw) -> Intrinsic:
    """Intrinsic reward ``kind`` (surprise | icm | disagreement | infogain), on ``device``.

    ``run_or_models``: a run directory (its memory model is loaded), a memory model, or ``None``
    (then ``z_dim`` and ``action`` say the sizes; ``surprise`` gets a fresh small MDN-RNN). ``kw``
    go to the class (``members``, ``eta``, ``use_hidden``, ``lr``, ...).
    """
    from worldmodels.models import MDNRNN, MDNRNNConfig
    from worldmodels.rundir import RunDir

    if kind not in KINDS:
        raise UserError(f"unknown intrinsic reward {kind!r}; choose one of {', '.join(KINDS)}")
    memory = run_or_models
    if isinstance(run_or_models, (RunDir, str, Path)):
        run = run_or_models if isinstance(run_or_models, RunDir) else RunDir(run_or_models)
        memory = load_run_models(run, device)[1]
        action = action or run.action_spec()
    if memory is not None:
        z_dim = memory.z_dim
    if z_dim is None or action is None:
        raise UserError("make_intrinsic needs a run, a memory model, or z_dim and action")
    if memory is not None and memory.action_dim != action.dim:
        raise UserError(f"memory model takes actions of size {memory.action_dim}, the env's are {action.dim}")
    if kind == "surprise":
        if memory is None:
            memory = MDNRNN(MDNRNNConfig(z_dim=z_dim, action_dim=action.dim, hidden_size=kw.pop("hidden_size", 64),
                                         mixtures=1))
        module = Surprise(memory, **kw)
    elif kind == "icm":
        module = ICM(z_dim, action.dim, action.discrete, **kw)
    elif kind == "disagreement":
        module = Disagreement(z_dim, action.dim, memory, **kw)
    else:
        module = InfoGain(z_dim, action.dim, memory, **kw)
    return module.to(device)


# ------------------------------------------------------------------------------ online learning


class PixelEncoder(nn.Module):
    """The encoder used when no run is given: fixed random features of the downsampled frame.

    uint8 frames [B, H, W, 3] -> [0, 1] -> area-pooled to ``pool x pool`` -> a fixed random Gaussian
    projection to ``z_dim`` -> minus the running mean of the outputs (so targets are centred; the
    scale is that of one pooled pixel's change). Random features work well for curiosity (Burda et
    al. 2018) and need no training; the run's VAE is used instead when a run is given.
    """

    def __init__(self, z_dim: int = 32, pool: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.z_dim, self.pool = z_dim, pool
        self.register_buffer("proj", torch.randn(3 * pool * pool, z_dim, generator=g))
        self.norm = RunningNorm((z_dim,))

    @torch.no_grad()
    def forward(self, frames: Tensor, update: bool = True) -> Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 255.0
        z = F.adaptive_avg_pool2d(x, self.pool).flatten(1) @ self.proj.to(x.device)
        if update:
            self.norm.update(z)
        return z - torch.as_tensor(self.norm.mean, dtype=z.dtype, device=z.device)


class ReplayBuffer:
    """A ring buffer of transitions (tensors on the CPU) for online curiosity updates."""

    def __init__(self, capacity: int, seed: int = 0) -> None:
        self.capacity, self.data, self.size, self.cursor = capacity, {}, 0, 0
        self.generator = torch.Generator().manual_seed(seed)

    def add(self, **items: Tensor) -> None:
        n = len(next(iter(items.values())))
        for key, value in items.items():
            if key not in self.data:
                self.data[key] = torch.zeros(self.capacity, *value.shape[1:], dtype=value.dtype)
            index = (self.cursor + torch.arange(n)) % self.capacity
            self.data[key][index] = value.detach().cpu()
        self.cursor = (self.cursor + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def _take(self, index: Tensor, device) -> dict[str, Tensor]:
        return {k: v[index].to(device) for k, v in self.data.items()}

    def sample(self, n: int, device) -> dict[str, Tensor]:
        return self._take(torch.randint(self.size, (n,), generator=self.generator), device)

    def last(self, n: int, device) -> dict[str, Tensor]:
        n = min(n, self.size)
        return self._take((self.cursor - n + torch.arange(n)) % self.capacity, device)


def as_batch(items: dict[str, Tensor]) -> Batch:
    """Buffer rows -> an ``update`` batch (``state_i`` keys become the ``state`` tuple)."""
    keys = sorted(k for k in items if k.startswith("state_"))
    return {"state": tuple(items[k] for k in keys) if keys else None,
            "z": items["z"], "action": items["action"], "next_z": items["next_z"]}


class OnlineCuriosity:
    """What both wrappers share: encode frames, track the memory state, reward, store, learn.

    ``run``: a run directory whose VAE encodes frames (and whose memory model gives ``h`` and the
    surprise); without one, frames go through ``PixelEncoder`` and the models see ``z`` only.
    Every ``update_every`` transitions the model takes ``updates`` steps on replay batches of
    ``batch_size`` (``InfoGain`` instead absorbs the new transitions once). During the first
    ``warmup`` transitions the intrinsic reward (raw and scaled) is reported as 0 while the
    normaliser and the buffer fill, as RND initialises its normaliser.
    """

    def __init__(self, action_space: gym.Space, kind: str = "disagreement", run=None, beta: float = 1.0,
                 device: torch.device | str = "cpu", update_every: int = 64, updates: int = 4,
                 batch_size: int = 128, buffer_size: int = 50_000, warmup: int = 64, z_dim: int = 32,
                 seed: int = 0, **kw) -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.action = ActionSpec.from_space(action_space)
        if run is not None:
            self.vision, memory = load_run_models(run, self.device)
            self.encoder, self.z_dim = (lambda frames: self.vision.encode(frames)[0]), self.vision.z_dim
        else:
            self.z_dim = z_dim
            memory, self.pixel_encoder = None, PixelEncoder(z_dim, seed=seed).to(self.device)
            self.encoder = self.pixel_encoder
        self.model = make_intrinsic(kind, memory, self.device, z_dim=z_dim, action=self.action, **kw)
        self.memory = self.model.memory if (self.model.use_hidden or kind == "surprise") else None
        self.mixer = RewardMixer(beta)
        self.buffer = ReplayBuffer(buffer_size, seed)
        self.update_every, self.updates, self.batch_size, self.warmup = update_every, updates, batch_size, warmup
        self.steps, self.losses = 0, {}

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> Tensor:
        """uint8 frames [B, H, W, 3] -> z [B, Z]."""
        return self.encoder(torch.as_tensor(np.asarray(frames), device=self.device)).float()

    def initial_state(self, batch: int) -> State | None:
        return None if self.memory is None else self.memory.initial_state(batch)

    def reset_rows(self, state: State | None, done: np.ndarray) -> State | None:
        """``state`` with the rows where ``done`` [B] is true set to the initial state."""
        if state is None or not done.any():
            return state
        mask = torch.as_tensor(done, device=self.device)
        fresh = self.memory.initial_state(len(done))
        return tuple(torch.where(mask.view(-1, *[1] * (s.dim() - 1)), f, s) for s, f in zip(state, fresh))

    def transition(self, state: State | None, z: Tensor, action, next_z: Tensor,
                   ) -> tuple[np.ndarray, np.ndarray, State | None]:
        """Env actions [B, ...] -> (scaled normalised intrinsic reward [B], raw [B], next state)."""
        a = self.action.to_model(torch.as_tensor(np.asarray(action), device=self.device))
        with torch.no_grad():
            raw = self.model.intrinsic_reward(state, z, a, next_z).float()
            next_state = None if state is None else self.memory.step(state, z, a)
        items = {"z": z, "action": a, "next_z": next_z}
        for i, s in enumerate(state or ()):
            items[f"state_{i}"] = s
        self.buffer.add(**items)
        in_warmup = self.steps < self.warmup
        self.steps += len(z)
        scaled = self.mixer.intrinsic(raw)
        if in_warmup:  # both reported parts are 0 until the model and the normaliser have seen data
            scaled, raw = torch.zeros_like(scaled), torch.zeros_like(raw)
        if self.steps // self.update_every > (self.steps - len(z)) // self.update_every:
            self.learn()
        return scaled.cpu().numpy(), raw.cpu().numpy(), next_state

    def learn(self) -> None:
        if self.model.single_pass:
            self.losses = self.model.update(as_batch(self.buffer.last(self.update_every, self.device)))
            return
        for _ in range(self.updates):
            self.losses = self.model.update(as_batch(self.buffer.sample(self.batch_size, self.device)))


class CuriosityWrapper(gym.Wrapper):
    """Adds an intrinsic reward to any pixel env (observations uint8 [H, W, 3]), learnt online.

    ``reward = r_ext + beta * r_int / std(r_int)``; ``info["reward_extrinsic"]`` and
    ``info["reward_intrinsic"]`` (the scaled, normalised part, so the two sum to the reward) and
    ``info["reward_intrinsic_raw"]`` hold the parts. ``latent_obs=True`` replaces the frame by the
    encoder's ``z`` (float32 [Z]) as the observation. Other options: see ``OnlineCuriosity``.
    """

    def __init__(self, env: gym.Env, kind: str = "disagreement", run=None, beta: float = 1.0,
                 latent_obs: bool = False, **options) -> None:
        super().__init__(env)
        self.curiosity = OnlineCuriosity(env.action_space, kind, run, beta, **options)
        self.latent_obs = latent_obs
        if latent_obs:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.curiosity.z_dim,), np.float32)

    def _obs(self, frame: np.ndarray):
        return self.z[0].cpu().numpy().astype(np.float32) if self.latent_obs else frame

    def reset(self, *, seed=None, options=None):
        frame, info = self.env.reset(seed=seed, options=options)
        self.z, self.state = self.curiosity.encode(frame[None]), self.curiosity.initial_state(1)
        return self._obs(frame), info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        next_z = self.curiosity.encode(frame[None])
        scaled, raw, self.state = self.curiosity.transition(self.state, self.z, np.asarray(action)[None], next_z)
        self.z = next_z
        info = dict(info, reward_extrinsic=float(reward), reward_intrinsic=float(scaled[0]),
                    reward_intrinsic_raw=float(raw[0]))
        return self._obs(frame), float(reward) + float(scaled[0]), terminated, truncated, info


def curiosity_vec_env(venv, kind: str = "disagreement", run=None, beta: float = 1.0, latent_obs: bool = False,
                      **options):
    """The SB3 ``VecEnvWrapper`` equivalent of ``CuriosityWrapper`` (all envs' transitions batched).

    The next frame of an episode that ended is taken from ``infos[i]["terminal_observation"]``.
    """
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class CuriosityVecEnv(VecEnvWrapper):
        def __init__(self):
            curiosity = OnlineCuriosity(venv.action_space, kind, run, beta, **options)
            space = venv.observation_space
            if latent_obs:
                space = gym.spaces.Box(-np.inf, np.inf, (curiosity.z_dim,), np.float32)
            super().__init__(venv, observation_space=space)
            self.curiosity = curiosity

        def _obs(self, frames: np.ndarray) -> np.ndarray:
            return self.z.cpu().numpy().astype(np.float32) if latent_obs else frames

        def reset(self):
            frames = self.venv.reset()
            self.z, self.state = self.curiosity.encode(frames), self.curiosity.initial_state(self.num_envs)
            return self._obs(frames)

        def step_async(self, actions):
            self.actions = np.asarray(actions)
            self.venv.step_async(actions)

        def step_wait(self):
            frames, reward, done, infos = self.venv.step_wait()
            next_frames = frames.copy()
            for i in np.flatnonzero(done):
                next_frames[i] = infos[i]["terminal_observation"]
            next_z = self.curiosity.encode(next_frames)
            scaled, raw, state = self.curiosity.transition(self.state, self.z, self.actions, next_z)
            self.state = self.curiosity.reset_rows(state, done)
            self.z = next_z.clone()
            if done.any():  # the first frame of the next episode
                self.z[torch.as_tensor(done)] = self.curiosity.encode(frames[done])
            for i, info in enumerate(infos):
                info.update(reward_extrinsic=float(reward[i]), reward_intrinsic=float(scaled[i]),
                            reward_intrinsic_raw=float(raw[i]))
                if latent_obs and done[i]:
                    info["terminal_observation"] = next_z[i].cpu().numpy().astype(np.float32)
            return self._obs(frames), (reward + scaled).astype(np.float32), done, infos

    return CuriosityVecEnv()


# ------------------------------------------------------------------------------ from a run's data


@torch.no_grad()
def run_transitions(run, memory, device: torch.device | str = "cpu") -> Batch:
    """Every real transition of the run's encoded episodes: ``z`` = the VAE mean, the memory state
    before each step from running ``memory`` over the episode. Tensors [N, ...] on ``device``."""
    from worldmodels.data import list_episodes
    from worldmodels.train import load_latents

    episodes = load_latents(run, list(list_episodes(run.latents)))
    if not episodes:
        raise UserError(f"no encoded episodes in {run.latents}: run `wm train --run {run.root}` first")
    zs, actions, next_zs, states = [], [], [], []
    for e in episodes:
        z = torch.as_tensor(e["mu"], device=device)
        a = torch.as_tensor(e["action"], device=device)
        state = memory.initial_state(1)
        for t in range(len(a)):
            states.append(state)
            state = memory.step(state, z[t:t + 1], a[t:t + 1])
        zs.append(z[:-1])
        next_zs.append(z[1:])
        actions.append(a)
    stacked = tuple(torch.cat([s[i] for s in states]) for i in range(len(states[0])))
    return {"state": stacked, "z": torch.cat(zs), "action": torch.cat(actions), "next_z": torch.cat(next_zs)}


def fit(model: Intrinsic, data: Batch, steps: int = 500, batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Train ``model`` on ``data`` (a ``Batch`` of N transitions): ``steps`` minibatch updates, or one
    pass for ``single_pass`` models. Returns the last losses."""
    if model.single_pass:
        return model.update(data)
    g = torch.Generator().manual_seed(seed)
    n, losses = len(data["z"]), {}
    for _ in range(steps):
        idx = torch.randint(n, (min(batch_size, n),), generator=g).to(data["z"].device)
        losses = model.update({"state": None if data["state"] is None else tuple(s[idx] for s in data["state"]),
                               "z": data["z"][idx], "action": data["action"][idx], "next_z": data["next_z"][idx]})
    return losses


def dream_bonus(kind: str, run, memory, device: torch.device | str, beta: float,
                steps: int = 500) -> Callable[[State, Tensor, Tensor, Tensor], Tensor]:
    """For ``wm dream --intrinsic KIND --beta B``: ``bonus(state, z, action, next_z) -> [N]``.

    ``state``: the memory state before the dream step, ``z`` [N, Z] its latent, ``action`` [N, A]
    model-side float, ``next_z`` [N, Z] the dreamed next latent. Returns ``beta * r_int / std``
    (running std over all calls) to add to the dream reward. ``surprise`` reads ``memory`` itself;
    the other models are trained first on the run's real transitions (``steps`` updates; ICM then
    scores the dreamed ``next_z``, disagreement and infogain ignore it).
    """
    model = make_intrinsic(kind, memory, device, action=run.action_spec())
    if kind != "surprise":
        fit(model, run_transitions(run, memory, device), steps=steps)
    mixer = RewardMixer(beta)
    model.eval()

    def bonus(state: State, z: Tensor, action: Tensor, next_z: Tensor) -> Tensor:
        r = model.intrinsic_reward(state, z, action, next_z if model.needs_next else None)
        return mixer.intrinsic(r.float())

    return bonus
