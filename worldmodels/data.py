"""The episode store: list, validate and read a run's episodes; frames and sequences for training.

An episode is one compressed ``.npz`` in ``RUN/episodes/`` with
``obs`` uint8 ``[T+1, 64, 64, 3]``, ``action`` float32 ``[T, A]`` (int64 ``[T]`` if Discrete),
``reward`` float32 ``[T]``, ``terminated`` bool ``[T]``, ``truncated`` bool ``[T]``.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from envs.spaces import ActionSpec
from worldmodels.rundir import atomic_save_npz

EPISODE_KEYS = ("obs", "action", "reward", "terminated", "truncated")
_NAME = re.compile(r"^episode_(\d{6,})\.npz$")


class CorruptEpisode(Exception):
    """An episode file that is truncated, unreadable or not of the schema."""


def episode_path(directory: Path, index: int) -> Path:
    return Path(directory) / f"episode_{index:06d}.npz"


def list_episodes(directory: Path) -> dict[int, Path]:
    """Episode index -> path for every complete-looking episode file in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    out = {}
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match:
            out[int(match.group(1))] = path
    return dict(sorted(out.items()))


def save_episode(path: Path, obs, action, reward, terminated, truncated) -> int:
    """Write one episode atomically; returns bytes written."""
    return atomic_save_npz(path, obs=np.asarray(obs, np.uint8), action=np.asarray(action),
                           reward=np.asarray(reward, np.float32), terminated=np.asarray(terminated, bool),
                           truncated=np.asarray(truncated, bool))


def load_episode(path: Path, action_spec: ActionSpec | None = None) -> dict[str, np.ndarray]:
    """Read and validate one episode; raises ``CorruptEpisode`` with the reason."""
    try:
        with np.load(path, allow_pickle=False) as data:
            episode = {key: data[key] for key in EPISODE_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptEpisode(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    check_episode(episode, action_spec, str(path))
    return episode


def quick_check(path: Path, action_spec: ActionSpec | None = None) -> None:
    """Validate a file without decompressing its frames: the zip directory, every key, the shapes.

    Catches truncated and foreign files in milliseconds; a bit-flip inside the frames is caught
    later by ``load_episode`` (the zip CRC), which names the file.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in EPISODE_KEYS if k not in data.files]
            if missing:
                raise CorruptEpisode(f"{path}: missing {', '.join(missing)}")
            small = {k: data[k] for k in EPISODE_KEYS if k != "obs"}
            with data.zip.open("obs.npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, _, dtype = read_header(f)
    except CorruptEpisode:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptEpisode(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    steps = len(small["reward"])
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3 or shape[0] != steps + 1:
        raise CorruptEpisode(f"{path}: obs {dtype} {shape} for {steps} steps")
    small["obs"] = np.empty((steps + 1, 1, 1, 3), np.uint8)  # stands in for the frames, checked above
    check_episode(small, action_spec, str(path))


def check_episode(episode: dict[str, np.ndarray], action_spec: ActionSpec | None, name: str = "episode") -> None:
    obs, action = episode["obs"], episode["action"]
    steps = len(episode["reward"])
    problems = []
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[-1] != 3 or obs.shape[0] != steps + 1:
        problems.append(f"obs {obs.dtype} {obs.shape} for {steps} steps")
    if len(action) != steps or len(episode["terminated"]) != steps or len(episode["truncated"]) != steps:
        problems.append("action/terminated/truncated lengths differ from reward's")
    if action_spec is not None:
        want = (steps,) if action_spec.discrete else (steps, action_spec.dim)
        if action.shape != want:
            problems.append(f"action shape {action.shape}, expected {want}")
    if problems:
        raise CorruptEpisode(f"{name}: " + "; ".join(problems))


def load_frames(paths: list[Path]) -> np.ndarray:
    """All frames of ``paths`` as one uint8 array ``[N, 64, 64, 3]`` (the VAE's training set)."""
    return np.concatenate([load_episode(p)["obs"] for p in paths])


class SequenceBatcher:
    """Random fixed-length windows of latent sequences for memory-model training.

    ``episodes`` is a list of dicts with ``mu``/``logvar`` ``[T+1, Z]``, ``action`` model-side float
    ``[T, A]``, ``reward`` ``[T]``, ``done`` ``[T]``. A batch is ``z`` ``[B, L+1, Z]`` re-sampled from
    (mu, logvar) each call (as Ha & Schmidhuber do), ``action`` ``[B, L, A]``, ``reward``,
    ``done``, ``mask`` ``[B, L]``; episodes shorter than ``L`` are zero-padded with mask 0.
    """

    def __init__(self, episodes: list[dict[str, np.ndarray]], seq_len: int, seed: int = 0):
        self.seq_len = seq_len
        self.rng = np.random.default_rng(seed)
        lengths = np.array([len(e["reward"]) for e in episodes])
        self.lengths = lengths
        # Pad every episode to a common length once, so a batch is pure fancy indexing.
        width = max(int(lengths.max()), seq_len)
        z_dim = episodes[0]["mu"].shape[1]
        a_dim = episodes[0]["action"].shape[1]
        n = len(episodes)
        self.mu = np.zeros((n, width + 1, z_dim), np.float32)
        self.std = np.zeros((n, width + 1, z_dim), np.float32)
        self.action = np.zeros((n, width, a_dim), np.float32)
        self.reward = np.zeros((n, width), np.float32)
        self.done = np.zeros((n, width), np.float32)
        self.mask = np.zeros((n, width), np.float32)
        for i, e in enumerate(episodes):
            t = lengths[i]
            self.mu[i, :t + 1] = e["mu"]
            self.std[i, :t + 1] = np.exp(0.5 * e["logvar"])
            self.action[i, :t] = e["action"]
            self.reward[i, :t] = e["reward"]
            self.done[i, :t] = e["done"]
            self.mask[i, :t] = 1.0
        # Window starts are drawn in proportion to how many full windows an episode offers.
        self.starts_per_episode = np.maximum(lengths - seq_len + 1, 1)
        self.weights = self.starts_per_episode / self.starts_per_episode.sum()

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        ep = self.rng.choice(len(self.lengths), size=batch_size, p=self.weights)
        start = (self.rng.random(batch_size) * self.starts_per_episode[ep]).astype(np.int64)
        return self.window(ep, start)

    def window(self, ep: np.ndarray, start: np.ndarray) -> dict[str, np.ndarray]:
        L = self.seq_len
        t = start[:, None] + np.arange(L + 1)[None, :]
        rows = ep[:, None]
        mu, std = self.mu[rows, t], self.std[rows, t]
        z = mu + std * self.rng.standard_normal(mu.shape, dtype=np.float32)
        ts = t[:, :L]
        return {"z": z, "action": self.action[rows, ts], "reward": self.reward[rows, ts],
                "done": self.done[rows, ts], "mask": self.mask[rows, ts]}

    def iterate(self, batch_size: int):
        """Windows at stride ``L`` plus one ending each episode, in order: a deterministic validation pass."""
        eps, starts = [], []
        for i, n in enumerate(self.lengths):
            last = max(int(n) - self.seq_len, 0)
            for s in [*range(0, last + 1, self.seq_len), *([last] if last % self.seq_len else [])]:
                eps.append(i)
                starts.append(s)
        eps, starts = np.array(eps), np.array(starts)
        for b in range(0, len(eps), batch_size):
            yield self.window(eps[b:b + batch_size], starts[b:b + batch_size])
