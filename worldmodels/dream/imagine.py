"""Imagination: rolling a trained memory model forward, batched on its device.

``imagine`` is the one rollout kernel: it steps any ``Memory`` for N trajectories, open loop
(actions ``[N, H, A]``) or closed loop (a policy of ``[z, h]``), taking the next latent as the
mean (temperature 0) or sampling it at temperature tau from a seedable generator, and shapes the
reward (``Shaping``: extrinsic weight, bonus, penalty). Dreams, planners, visual foresight,
curiosity and the memory trainer's dream strip all run on it; ``filter_states`` is its
teacher-forced sibling over real latents. ``BatchedDream`` keeps N dreams going step by step
(for RL code: ``DreamEnv``, ``dream_vec_env``): the observation is ``[z, h]`` (``[N, Z+H]``), the
reward comes from the reward head and termination from the done head (``P(done) >
done_threshold``); dreams start from encoded first frames of real episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.memory import LatentDistribution, Memory, State
from worldmodels.runs.episodes import list_episodes
from worldmodels.runs.rundir import CorruptFile, read_arrays

Policy = Callable[[Tensor], Tensor]
"""Closed-loop actions: observations ``[z, h]`` [N, Z+H] -> model-side actions [N, A] (one-hot if discrete)."""

Bonus = Callable[[State, Tensor, Tensor, Tensor], Tensor]
"""``bonus(state, z, action, next_z) -> [N]``: the memory state before a step, its latent [N, Z], the
model-side action [N, A] and the imagined next latent [N, Z]."""


START_STATES = ("first", "any")
TERMINATIONS = ("threshold", "sampled")


@dataclass
class DreamConfig:
    """How a dream runs: the randomness of its latents and when it ends."""

    temperature: float = 1.0
    """tau: randomness of the next latent (0: its mean, 1: the model's own spread); unitless"""
    done_threshold: float = 0.5
    """a dream terminates on the first step where the predicted P(done) exceeds this probability"""
    max_steps: int = field(default=1000, metadata={"flag": "dream_steps"})
    """dream length limit, in steps (truncation)"""
    start: str = field(default="first", metadata={"choices": list(START_STATES)})
    """where dreams start: "first" frames of real episodes (the paper's), or "any" stored frame, so short
    dreams cover every stretch the data reached (later parts of a track included)"""
    start_stride: int = 1
    """with start "any": every k-th stored frame (fewer, less correlated starts)"""
    termination: str = field(default="threshold", metadata={"choices": list(TERMINATIONS)})
    """when a dream ends: at ``done_threshold`` ("threshold"), or at step t with the predicted probability P(done_t),
    as the real env would ("sampled"; CMA-ES then scores each dream by its expected return, sum_t P(alive at t)
    r_t): a done head that never passes 0.5 still shortens the dreams"""

    def __post_init__(self) -> None:
        require_at_least(self, 0, "temperature")
        require_at_least(self, 1, "max_steps", "start_stride")
        if not 0 < self.done_threshold <= 1:
            raise UserError(f"--done-threshold must lie in (0, 1], got {self.done_threshold}")
        if self.termination not in TERMINATIONS:
            raise UserError(f"--termination must be one of {', '.join(TERMINATIONS)}, got {self.termination!r}")

    @property
    def stop_threshold(self) -> float | None:
        """The threshold at which imagination may stop early (None when termination is sampled)."""
        return self.done_threshold if self.termination == "threshold" else None


@dataclass(frozen=True)
class Shaping:
    """The reward paid per imagined step: ``extrinsic * r + bonus(...) - penalty(...)``."""

    extrinsic: float = 1.0
    """weight of the memory model's predicted reward r"""
    bonus: Bonus | None = None
    """added to the reward, e.g. a curiosity bonus (a ``Bonus``; None: nothing)"""
    penalty: Bonus | None = None
    """subtracted from the reward, e.g. model uncertainty for pessimism (a ``Bonus``; None: nothing)"""

    def __call__(self, reward: Tensor, state: State, z: Tensor, action: Tensor, next_z: Tensor) -> Tensor:
        """[N] the shaped reward of a step (arguments as in ``Bonus``, ``reward`` [N] predicted)."""
        shaped = self.extrinsic * reward
        if self.bonus is not None:
            shaped = shaped + self.bonus(state, z, action, next_z)
        if self.penalty is not None:
            shaped = shaped - self.penalty(state, z, action, next_z)
        return shaped


class Imagined(NamedTuple):
    """N imagined trajectories of T steps; every tensor on the memory model's device."""

    latents: Tensor
    """[N, T, Z] the latent after each step: z_1 .. z_T"""
    rewards: Tensor
    """[N, T] the shaped reward of each step"""
    continues: Tensor
    """[N, T] P(the episode goes on after step t): sigmoid(-done logit)"""
    state: State
    """the memory state after the last step (holds h_T)"""

    def survival(self) -> Tensor:
        """[N, T+1] P(no termination before step t), t = 0 .. T: products of earlier ``continues``."""
        ones = self.continues.new_ones(len(self.continues), 1)
        return torch.cat([ones, self.continues.cumprod(1)], dim=1)

    def total_reward(self, done_threshold: float) -> Tensor:
        """[N] reward summed up to each trajectory's first termination (P(done) > ``done_threshold``), included."""
        ended = terminated(self.continues, done_threshold).int()
        earlier = ended.cumsum(1) - ended  # terminations before step t
        return (self.rewards * (earlier == 0)).sum(1)

    def expected_reward(self) -> Tensor:
        """[N] expected return when each step t terminates with probability P(done_t): sum_t P(alive at t) r_t."""
        return (self.survival()[:, :-1] * self.rewards).sum(1)

    def dream_return(self, config: DreamConfig) -> Tensor:
        """[N] each dream's return under ``config``'s termination."""
        if config.termination == "sampled":
            return self.expected_reward()
        return self.total_reward(config.done_threshold)


def terminated(continues: Tensor, done_threshold: float) -> Tensor:
    """Bool, shaped like ``continues``: where P(done) = 1 - continues exceeds ``done_threshold``."""
    return continues < 1 - done_threshold


def memory_device(memory: Memory) -> torch.device:
    """Where ``memory`` computes: its weights' device (its initial state's, for weightless models)."""
    parameters = getattr(memory, "parameters", None)
    first = next(iter(parameters()), None) if parameters is not None else None
    return first.device if first is not None else memory.initial_state(1)[0].device


def sample_latent(distribution: LatentDistribution, temperature: float,
                  generator: torch.Generator | None = None) -> Tensor:
    """[N, Z]: the mean at ``temperature`` <= 0, else a sample at ``temperature`` drawn from ``generator``
    (the device's global RNG when None; a generator must live on the distribution's device)."""
    if temperature <= 0:
        return distribution.mean
    if generator is None:
        return distribution.sample(temperature)
    # ``sample`` draws from the device's global RNG: lend it the generator's state. (Cheaper than
    # fork_rng + manual_seed, and no per-step seed read back from the device.)
    default = _default_generator(generator.device)
    saved = default.get_state()
    default.set_state(generator.get_state())
    try:
        return distribution.sample(temperature)
    finally:
        generator.set_state(default.get_state())
        default.set_state(saved)


def _default_generator(device: torch.device) -> torch.Generator:
    """The generator that random ops on ``device`` use when given none."""
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    if device.type == "mps":
        return torch.mps._get_default_mps_generator()
    return torch.default_generator


def _batched(x: Tensor, n: int, device: torch.device) -> Tensor:
    """``x`` [1 or n, ...] as a contiguous [n, ...] on ``device`` (cuDNN's LSTM refuses a strided hx)."""
    x = x.to(device)
    if len(x) != n:
        if len(x) != 1:
            raise ValueError(f"a batch of {len(x)} cannot start {n} trajectories: give 1 or {n}")
        x = x.expand(n, *x.shape[1:])
    return x.contiguous()


def imagine(memory: Memory, state: State, z: Tensor, actions: Tensor | Policy, horizon: int | None = None,
            temperature: float = 0.0, generator: torch.Generator | None = None, shaping: Shaping | None = None,
            done_threshold: float | None = None) -> Imagined:
    """Roll ``memory`` forward for N trajectories from ``state`` and latent ``z`` [N or 1, Z].

    ``actions``: open loop, model-side ``[N, H, A]``; or closed loop, a ``Policy`` called on ``[z, h]``
    every step for ``horizon`` steps. A start of batch 1 is copied to all N trajectories. The next
    latent is the mean at ``temperature`` 0, else sampled (``sample_latent``, from ``generator``).
    Rewards are shaped by ``shaping`` (default: the predicted reward). With ``done_threshold``,
    imagination stops early once every trajectory has terminated (so T <= H).
    """
    device = memory_device(memory)
    if isinstance(actions, Tensor):
        actions = actions.to(device)
        n, horizon = actions.shape[:2]
    else:
        n = max(len(z), len(state[0]))
    if not horizon:
        raise ValueError(f"imagination needs a horizon of at least one step, got {horizon}")
    state = tuple(_batched(s, n, device) for s in state)
    z = _batched(z, n, device)
    shaping = shaping or Shaping()
    ended = torch.zeros(n, dtype=torch.bool, device=device)
    latents, rewards, continues = [], [], []
    for t in range(horizon):
        if isinstance(actions, Tensor):
            action = actions[:, t]
        else:
            action = actions(torch.cat([z, memory.features(state)], dim=1)).to(device)
        next_state = memory.step(state, z, action)
        prediction = memory.predict(next_state)
        next_z = sample_latent(prediction.next_z, temperature, generator)
        latents.append(next_z)
        rewards.append(shaping(prediction.reward, state, z, action, next_z))
        continues.append(torch.sigmoid(-prediction.done_logit))
        state, z = next_state, next_z
        if done_threshold is not None:
            ended |= terminated(continues[-1], done_threshold)
            if bool(ended.all()):
                break
    return Imagined(torch.stack(latents, 1), torch.stack(rewards, 1), torch.stack(continues, 1), state)


def filter_states(memory: Memory, latents: Tensor, actions: Tensor, state: State | None = None) -> State:
    """Teacher forcing: step ``memory`` over real latents [N, T, Z] and model-side actions [N, T, A].

    Returns every state passed, each tensor ``[N, T+1, ...]``: index t is the state before step t
    (it has seen z_0 .. z_{t-1}), index T the state after the last step. Starts from ``state``
    (default: the initial state); on the memory model's device.
    """
    device = memory_device(memory)
    latents, actions = latents.to(device), actions.to(device)
    if state is None:
        state = memory.initial_state(len(latents))
    state = tuple(_batched(s, len(latents), device) for s in state)
    states = [state]
    for t in range(actions.shape[1]):
        state = memory.step(state, latents[:, t], actions[:, t])
        states.append(state)
    return tuple(torch.stack(parts, dim=1) for parts in zip(*states))


def initial_latents(latents_dir, limit: int | None = None, start: str = "first",
                    stride: int = 1) -> tuple[Tensor, Tensor]:
    """(mu, logvar) ``[M, Z]`` of the frames dreams start from, in the first ``limit`` encoded episodes.

    ``start="first"``: each episode's first frame (M = episodes), as in the paper. ``start="any"``:
    every ``stride``-th frame of each episode but its last (M ~ frames / stride). A dream always
    starts from the memory model's initial state, as its training windows do.
    """
    mus, logvars = [], []
    for path in list(list_episodes(latents_dir).values())[:limit]:
        try:
            data = read_arrays(path, ("mu", "logvar"))
        except CorruptFile as e:
            raise CorruptFile(f"{e}; `wm train memory` re-encodes it") from None
        end = 1 if start == "first" else max(len(data["mu"]) - 1, 1)  # a start needs a real step after it
        mus.append(data["mu"][:end:stride])
        logvars.append(data["logvar"][:end:stride])
    if not mus:
        raise UserError(f"no encoded episodes in {latents_dir}: run `wm train` first")
    return torch.from_numpy(np.concatenate(mus)), torch.from_numpy(np.concatenate(logvars))


def dream_starts(latents_dir, config: DreamConfig) -> tuple[Tensor, Tensor]:
    """The start latents ``config`` asks for (see ``initial_latents``)."""
    return initial_latents(latents_dir, start=config.start, stride=config.start_stride)


class BatchedDream:
    """N dreams in lockstep over ``memory`` (any ``Memory``), all tensors on ``device``; each step is ``imagine``'s."""

    def __init__(self, memory: Memory, start: tuple[Tensor, Tensor], action: ActionSpec, config: DreamConfig,
                 device: torch.device | str = "cpu", vision=None, shaping: Shaping | None = None):
        self.memory = memory
        self.shaping = shaping or Shaping()
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

    def start(self, n: int) -> tuple[Tensor, State]:
        """``n`` fresh starts: latents [n, Z] drawn around encoded first frames, and initial memory states."""
        idx = torch.randint(len(self.start_mu), (n,), device=self.device, generator=self.generator)
        noise = torch.randn((n, self.start_mu.shape[1]), device=self.device, generator=self.generator)
        return self.start_mu[idx] + self.start_std[idx] * noise, self.memory.initial_state(n)

    @torch.no_grad()
    def reset(self, n: int) -> Tensor:
        """Start ``n`` dreams; returns observations ``[n, Z+H]``."""
        self.z, self.state = self.start(n)
        self.t = torch.zeros(n, dtype=torch.long, device=self.device)
        return self.observe()

    @torch.no_grad()
    def reset_where(self, mask: Tensor) -> None:
        """Restart the dreams where ``mask`` [n] is true (the others keep going)."""
        n = int(mask.sum())
        if n == 0:
            return
        z, fresh = self.start(n)
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
        model_action = self.action.to_model(action.to(self.device))[:, None]
        imagined = imagine(self.memory, self.state, self.z, model_action, temperature=self.config.temperature,
                           generator=self.sampler, shaping=self.shaping)
        self.state, self.z = imagined.state, imagined.latents[:, 0]
        self.t += 1
        if self.config.termination == "sampled":
            p_done = 1 - imagined.continues[:, 0]
            done = torch.rand(p_done.shape, device=self.device, generator=self.sampler, dtype=p_done.dtype) < p_done
        else:
            done = terminated(imagined.continues[:, 0], self.config.done_threshold)
        truncated = (self.t >= self.config.max_steps) & ~done
        return self.observe(), imagined.rewards[:, 0], done, truncated


@torch.no_grad()
def rollout_population(dream: BatchedDream, policy, population: int, rollouts: int) -> tuple[Tensor, Imagined]:
    """Total dream reward ``[population, rollouts]`` of a population acting in ``P x R`` fresh dreams at once,
    and the dreams (``Imagined``, N = P x R, candidate-major).

    ``policy(observations [P, R, Z+H]) -> env actions [P, R, ...]``. A dream earns until it terminates or
    reaches ``max_steps``; imagination stops once every dream has terminated.
    """
    n, config = population * rollouts, dream.config
    z, state = dream.start(n)

    def act(obs: Tensor) -> Tensor:
        action = policy(obs.view(population, rollouts, -1))
        return dream.action.to_model(action.reshape(n, *action.shape[2:]).to(dream.device))

    imagined = imagine(dream.memory, state, z, act, config.max_steps, config.temperature, dream.sampler,
                       dream.shaping, config.stop_threshold)
    return imagined.dream_return(config).view(population, rollouts), imagined
