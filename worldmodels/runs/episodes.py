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

from worldmodels.envs.spaces import ActionSpec
from worldmodels.runs.rundir import CorruptFile, atomic_save_npz, read_arrays

EPISODE_KEYS = ("obs", "action", "reward", "terminated", "truncated")


_NAME = re.compile(r"^episode_(\d{6,})\.npz$")


class CorruptEpisode(CorruptFile):
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


def stored_steps(directory: Path) -> int:
    """Real env steps of every episode stored in ``directory`` (the lengths of their ``reward`` columns)."""
    total = 0
    for path in list_episodes(directory).values():
        with np.load(path) as data:
            total += len(data["reward"])
    return total


def save_episode(path: Path, obs, action, reward, terminated, truncated) -> int:
    """Write one episode atomically; returns bytes written."""
    return atomic_save_npz(path, obs=np.asarray(obs, np.uint8), action=np.asarray(action),
                           reward=np.asarray(reward, np.float32), terminated=np.asarray(terminated, bool),
                           truncated=np.asarray(truncated, bool))


def load_episode(path: Path, action_spec: ActionSpec | None = None) -> dict[str, np.ndarray]:
    """Read and validate one episode; raises ``CorruptEpisode`` with the reason."""
    try:
        episode = read_arrays(path, EPISODE_KEYS)
    except CorruptFile as e:
        raise CorruptEpisode(str(e)) from None
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


def check_episodes(paths: list[Path], action_spec: ActionSpec | None = None) -> None:
    """``quick_check`` every file of ``paths``: one ``CorruptEpisode`` naming all the bad ones."""
    problems = []
    for path in paths:
        try:
            quick_check(path, action_spec)
        except CorruptEpisode as e:
            problems.append(str(e))
    corrupt(problems)


def corrupt(problems: list[str]) -> None:
    """A ``CorruptEpisode`` listing ``problems`` (one per file), if any."""
    if problems:
        raise CorruptEpisode(f"{len(problems)} corrupt episode{'s' * (len(problems) > 1)}: {'; '.join(problems)}; "
                             "delete them, or re-run `wm collect` with the same settings, which replaces them")


def load_frames(paths: list[Path]) -> np.ndarray:
    """All frames of ``paths`` as one uint8 array ``[N, 64, 64, 3]`` (the VAE's training set); a
    ``CorruptEpisode`` names every file that cannot be read."""
    frames, problems = [], []
    for path in paths:
        try:
            frames.append(load_episode(path)["obs"])
        except CorruptEpisode as e:
            problems.append(str(e))
    corrupt(problems)
    return np.concatenate(frames)
