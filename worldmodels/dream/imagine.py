"""Dreams: rolling a trained memory model forward as a simulator, batched on the device.

``BatchedDream`` runs N dreams as one tensor computation per step: the observation is
``[z, h]`` (``[N, Z+H]``), an action advances the memory model, the next ``z`` is sampled at
temperature ``tau``, the reward comes from the reward head and termination from the done head
(``P(done) > done_threshold``); dreams start from encoded first frames of real episodes.
``DreamEnv`` (a ``gymnasium.Env``) and ``DreamVecEnv`` (an SB3 ``VecEnv``) expose it to RL code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from worldmodels.core.errors import UserError
from worldmodels.envs.spaces import ActionSpec
from worldmodels.runs.episodes import list_episodes


@dataclass
class DreamConfig:
    temperature: float = 1.0  # tau: randomness of the next latent (0: the mean)
    done_threshold: float = 0.5  # a dream terminates when P(done) exceeds this
    max_steps: int = 1000  # truncation


def initial_latents(latents_dir, limit: int | None = None) -> tuple[Tensor, Tensor]:
    """(mu, logvar) ``[M, Z]`` of the first frame of every encoded episode."""
    mus, logvars = [], []
    for path in list(list_episodes(latents_dir).values())[:limit]:
        with np.load(path) as data:
            mus.append(data["mu"][0])
            logvars.append(data["logvar"][0])
    if not mus:
        raise UserError(f"no encoded episodes in {latents_dir}: run `wm train` first")
    return torch.from_numpy(np.stack(mus)), torch.from_numpy(np.stack(logvars))


class BatchedDream:
    """N dreams in lockstep over ``memory`` (any ``Memory``), all tensors on ``device``."""

    def __init__(self, memory, start: tuple[Tensor, Tensor], action: ActionSpec, config: DreamConfig,
                 device: torch.device | str = "cpu", vision=None, bonus=None):
        self.memory = memory
        self.bonus = bonus  # optional intrinsic reward: bonus(state, z, action, next_z) -> [n] (curiosity)
        self.start_mu, self.start_std = start[0].to(device), torch.exp(0.5 * start[1]).to(device)
        self.action = action
        self.config = config
        self.device = torch.device(device)
        self.vision = vision
        self.obs_dim = memory.z_dim + memory.hidden_size
        self.generator = torch.Generator(device=self.device)  # start latents
        self.sampler = torch.Generator(device=self.device)  # next latents

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))
        self.sampler.manual_seed(int(seed) + 1)

    def _start(self, n: int) -> tuple[Tensor, tuple]:
        idx = torch.randint(len(self.start_mu), (n,), device=self.device, generator=self.generator)
        noise = torch.randn((n, self.start_mu.shape[1]), device=self.device, generator=self.generator)
        return self.start_mu[idx] + self.start_std[idx] * noise, self.memory.initial_state(n)

    @torch.no_grad()
    def reset(self, n: int) -> Tensor:
        """Start ``n`` dreams; returns observations ``[n, Z+H]``."""
        self.z, self.state = self._start(n)
        self.t = torch.zeros(n, dtype=torch.long, device=self.device)
        return self.observe()

    @torch.no_grad()
    def reset_where(self, mask: Tensor) -> None:
        """Restart the dreams where ``mask`` [n] is true (the others keep going)."""
        n = int(mask.sum())
        if n == 0:
            return
        z, fresh = self._start(n)
        self.z[mask] = z
        state = tuple(s.clone() for s in self.state)
        for s, f in zip(state, fresh):
            s[mask] = f
        self.state = state
        self.t[mask] = 0

    def observe(self) -> Tensor:
        return torch.cat([self.z, self.memory.features(self.state)], dim=1)

    def frames(self) -> Tensor:
        """The current latents decoded by the vision model: ``[n, 3, 64, 64]`` in [0, 1]."""
        if self.vision is None:
            raise UserError("decoded dream frames need the vision model")
        return self.vision.decode(self.z)

    @torch.no_grad()
    def step(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Env actions ``[n, A]`` (or indices ``[n]``) -> (obs ``[n, Z+H]``, reward, terminated, truncated ``[n]``)."""
        state, z, a = self.state, self.z, self.action.to_model(action.to(self.device))
        self.state = self.memory.step(state, z, a)
        prediction = self.memory.predict(self.state)
        tau = self.config.temperature
        self.z = prediction.next_z.mean if tau <= 0 else self._sample(prediction.next_z, tau)
        self.t += 1
        terminated = torch.sigmoid(prediction.done_logit) > self.config.done_threshold
        truncated = (self.t >= self.config.max_steps) & ~terminated
        reward = prediction.reward if self.bonus is None else prediction.reward + self.bonus(state, z, a, self.z)
        return self.observe(), reward, terminated, truncated

    def _sample(self, distribution, tau: float) -> Tensor:
        # ``sample`` draws from the device's global RNG: lend it our sampler's state, so dreams are
        # seeded. (Cheaper than fork_rng + manual_seed, and no per-step seed read back from the device.)
        default = _default_generator(self.device)
        saved = default.get_state()
        default.set_state(self.sampler.get_state())
        try:
            return distribution.sample(tau)
        finally:
            self.sampler.set_state(default.get_state())
            default.set_state(saved)


def _default_generator(device: torch.device) -> torch.Generator:
    """The generator that random ops on ``device`` use when given none."""
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    if device.type == "mps":
        return torch.mps._get_default_mps_generator()
    return torch.default_generator


@torch.no_grad()
def rollout_population(dream: BatchedDream, policy, population: int, rollouts: int,
                       record: int | None = None) -> tuple[Tensor, list[Tensor]]:
    """Total dream reward ``[population, rollouts]`` of a population acting in ``P x R`` dreams at once.

    ``policy(features [P, R, F]) -> env actions [P, R, ...]``. Dreams that end stop earning.
    With ``record`` = p, also returns decoded frames of candidate p's first rollout.
    """
    n = population * rollouts
    obs = dream.reset(n)
    total = torch.zeros(n, device=dream.device)
    alive = torch.ones(n, dtype=torch.bool, device=dream.device)
    frames = []
    for _ in range(dream.config.max_steps):
        if record is not None:
            frames.append(dream.vision.decode(dream.z[record * rollouts:record * rollouts + 1]).cpu())
        action = policy(obs.view(population, rollouts, -1))
        obs, reward, terminated, truncated = dream.step(action.reshape(n, *action.shape[2:]))
        total += reward * alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    return total.view(population, rollouts), frames
