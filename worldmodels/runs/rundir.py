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

import io
import json
import os
import platform
import sys
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
