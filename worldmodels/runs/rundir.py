"""One run directory per experiment: paths, ``run.json`` and atomic writes.

runs/NAME/
  run.json     env spec, kwargs, pixel pipeline, action space, collections, versions
  episodes/    episode_000000.npz ...
  latents/     the VAE's (mu, logvar) per episode
  vision/ memory/ controller/ ...   config.json + weights + resumable state
  tb/          TensorBoard logs
  eval/        results.json, videos
"""

from __future__ import annotations

import copy
import io
import json
import os
import platform
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from worldmodels.core.errors import UserError
from worldmodels.envs.make import check_trusted, make_env, resolve_spec
from worldmodels.envs.pixels import PixelConfig
from worldmodels.envs.spaces import ActionSpec


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, so a killed process never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> int:
    """Save a compressed ``.npz`` atomically; returns its size in bytes."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return len(data)


class CorruptFile(UserError):
    """A stored file that is truncated, unreadable or not of its schema (a one-line error naming it)."""


def read_arrays(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (None: all) of the ``.npz`` at ``path``, never unpickling (object arrays are
    refused); a ``CorruptFile`` naming ``path`` when it is missing, truncated or lacks a key."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in (data.files if keys is None else keys)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptFile(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def atomic_torch_save(path: Path, obj) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def versions() -> dict:
    """Versions of Python and the packages a run depends on (read from metadata: no imports)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("worldmodels", "torch", "gymnasium", "numpy", "stable-baselines3"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


LOCK_NAME = ".lock"
_HELD: dict[Path, int] = {}  # locks this process holds, with their nesting depth


def _read_lock(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: half written by a killed process, treated as stale


def _alive(holder: dict) -> bool:
    """Whether the lock's process still runs (on another host we cannot tell: assume it does)."""
    if holder.get("host") not in (None, platform.node()):
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDir:
    """The paths of a run and its ``run.json``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.episodes = self.root / "episodes"
        self.latents = self.root / "latents"
        self.vision = self.root / "vision"
        self.memory = self.root / "memory"
        self.controller = self.root / "controller"
        self.tb = self.root / "tb"
        self.eval = self.root / "eval"

    @property
    def meta_path(self) -> Path:
        return self.root / "run.json"

    def absolute(self) -> RunDir:
        """A copy with every path absolute, for workers that may start in another directory; a view
        (a pipeline's scout or rounds, whose parts live elsewhere under the root) stays that view."""
        view = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, Path):
                setattr(view, name, value.absolute())
        return view

    def exists(self) -> bool:
        return self.meta_path.exists()

    def read_meta(self) -> dict:
        if not self.meta_path.exists():
            raise UserError(f"{self.root} is not a run directory (no run.json): run `wm collect ENV --run {self.root}` first")
        try:
            return json.loads(self.meta_path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{self.meta_path} is corrupt: {e}") from None

    def write_meta(self, meta: dict) -> None:
        atomic_write_json(self.meta_path, meta)

    @contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold ``RUN/.lock`` while ``command`` works on this run: one command per run at a time.

        A second command fails at once with a ``UserError`` naming the holder's command and PID. A
        lock left by a killed process (its PID gone) is taken over. Re-entrant within a process.
        Temporary files of writes cut short (``atomic_write_bytes``) are removed when the lock is taken.
        """
        path = self.root / LOCK_NAME
        if _HELD.get(path.resolve(), 0):
            _HELD[path.resolve()] += 1
            try:
                yield
            finally:
                _HELD[path.resolve()] -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        record = json.dumps({"pid": os.getpid(), "command": command, "host": platform.node(),
                             "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(path)
                if holder is not None and _alive(holder):
                    raise UserError(f"{self.root} is in use by `{holder.get('command', '?')}` (PID {holder['pid']}, "
                                    f"since {holder.get('since', '?')}); wait for it to finish or stop it") from None
                path.unlink(missing_ok=True)  # left by a killed command
                continue
            with os.fdopen(fd, "w") as f:
                f.write(record)
            break
        else:
            raise UserError(f"cannot take the lock {path}; remove it if no command is running on this run")
        _HELD[path.resolve()] = 1
        for tmp in self.root.rglob(".*.tmp-*"):  # writes of killed commands: no other command runs here now
            tmp.unlink(missing_ok=True)
        try:
            yield
        finally:
            _HELD.pop(path.resolve(), None)
            path.unlink(missing_ok=True)

    # What later stages read from run.json, never from repeated flags.
    def env_spec(self) -> tuple[str, dict, PixelConfig, int | None]:
        """(spec, kwargs, pixel pipeline, max_steps) from run.json; a spec naming a function other
        than an env class is refused unless trusted (``worldmodels.envs.make.check_trusted``)."""
        env = self.read_meta()["env"]
        _, factory = resolve_spec(env["spec"])
        if factory is not None:
            check_trusted(env["spec"], factory)
        return env["spec"], dict(env["kwargs"]), PixelConfig.from_dict(env["pixels"]), env.get("max_steps")

    def action_spec(self) -> ActionSpec:
        return ActionSpec.from_dict(self.read_meta()["env"]["action_space"])

    def make_env(self, **overrides):
        """The run's env with its pixel pipeline, as recorded in ``run.json``.

        The spec is not trusted: it may name a Gymnasium id or an env class, never another
        function, unless ``WM_TRUST_RUN=1`` (``worldmodels.envs.make.check_trusted``).
        """
        spec, kwargs, pixels, max_steps = self.env_spec()
        return make_env(spec, pixels=pixels, max_steps=overrides.pop("max_steps", max_steps), trusted=False, **kwargs)
