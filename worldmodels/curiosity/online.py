"""Curiosity learnt online while acting in a real env: a replay buffer, the shared update logic, and
wrappers for gymnasium (``CuriosityWrapper``) and stable-baselines3 (``curiosity_vec_env``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldmodels.curiosity.normalize import RewardMixer, RunningNorm
from worldmodels.curiosity.rewards import Batch, make_intrinsic
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.memory import State
from worldmodels.runs.artifacts import load_world_model


class PixelEncoder(nn.Module):
    """The encoder used when no run is given: fixed random features of the downsampled frame.

    uint8 frames [B, H, W, 3] -> [0, 1] -> area-pooled to ``pool x pool`` -> a fixed random Gaussian
    projection to ``z_dim`` -> minus the running mean of the outputs (so targets are centred; the
    scale is that of one pooled pixel's change). Random features work well for curiosity (Burda et
    al. 2018) and need no training; the run's VAE is used instead when a run is given.
    """

    def __init__(self, z_dim: int = 128, pool: int = 16, seed: int = 0) -> None:
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
    surprise); without one, frames go through ``PixelEncoder`` (``z_dim`` wide: 128 by default, as
    on the Maze 128 random features gave every reward more coverage than 32) and the models see ``z`` only.
    ``center``: normalise the reward as ``(r - mean) / std`` (``RewardMixer``).
    Every ``update_every`` transitions the model takes ``updates`` steps on replay batches of
    ``batch_size`` (``InfoGain`` instead absorbs the new transitions once). During the first
    ``warmup`` transitions the intrinsic reward (raw and scaled) is reported as 0 while the
    normaliser and the buffer fill, as RND initialises its normaliser.
    """

    def __init__(self, action_space: gym.Space, kind: str = "disagreement", run=None, beta: float = 1.0,
                 device: torch.device | str = "cpu", update_every: int = 64, updates: int = 4,
                 batch_size: int = 128, buffer_size: int = 50_000, warmup: int = 64, z_dim: int = 128,
                 center: bool = False, seed: int = 0, **kw) -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.action = ActionSpec.from_space(action_space)
        if run is not None:
            self.vision, memory = load_world_model(run, self.device)
            self.encoder, self.z_dim = (lambda frames: self.vision.encode(frames)[0]), self.vision.z_dim
        else:
            self.z_dim = z_dim
            memory, self.pixel_encoder = None, PixelEncoder(z_dim, seed=seed).to(self.device)
            self.encoder = self.pixel_encoder
        self.model = make_intrinsic(kind, memory, self.device, z_dim=z_dim, action=self.action, **kw)
        self.memory = self.model.memory if (self.model.use_hidden or kind == "surprise") else None
        self.mixer = RewardMixer(beta, center)
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
