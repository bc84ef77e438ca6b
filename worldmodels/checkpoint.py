"""Checkpoints: weights (``torch.load(..., weights_only=True)``, never unpickling code) + config JSON.

A stage directory (``RUN/vision``, ``RUN/memory``, ...) holds ``config.json`` (the model kind
and its config dataclass), ``best.pt`` (weights of the best validation epoch), ``last.pt``
(everything needed to resume) and, once finished, ``summary.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from worldmodels.errors import UserError
from worldmodels.models import MEMORY_CONFIGS, MEMORY_MODELS, ConvVAE, VAEConfig
from worldmodels.rundir import RunDir, atomic_torch_save, atomic_write_json

MODELS = {"vae": (ConvVAE, VAEConfig), **{k: (MEMORY_MODELS[k], MEMORY_CONFIGS[k]) for k in MEMORY_MODELS}}


def write_config(directory: Path, kind: str, config) -> None:
    atomic_write_json(Path(directory) / "config.json", {"kind": kind, "config": asdict(config)})


def read_config(directory: Path) -> tuple[str, object]:
    path = Path(directory) / "config.json"
    if not path.exists():
        raise UserError(f"no model in {directory} (missing config.json): train it first with `wm train`")
    data = json.loads(path.read_text())
    kind = data.get("kind")
    if kind not in MODELS:
        raise UserError(f"{path}: unknown model kind {kind!r}")
    _, config_cls = MODELS[kind]
    try:
        return kind, config_cls(**data["config"])
    except TypeError as e:
        raise UserError(f"{path}: config does not fit {config_cls.__name__}: {e}") from None


def weights_id(directory: Path) -> str:
    """A content hash of ``directory/best.pt``: tells whether a model changed, and survives copies."""
    import hashlib

    return hashlib.sha1((Path(directory) / "best.pt").read_bytes()).hexdigest()[:16]


def save_weights(path: Path, model: torch.nn.Module) -> None:
    atomic_torch_save(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def load_state(path: Path, device: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"missing checkpoint {path}: train that stage first") from None
    except Exception as e:  # a truncated or foreign file
        raise UserError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None


def load_weights(model: torch.nn.Module, path: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    state = load_state(path, device)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise UserError(f"checkpoint {path} does not fit the model: {' '.join(first[:3])}") from None
    return model


def build(directory: Path, device: torch.device | str = "cpu", weights: str = "best.pt"):
    """The model saved in ``directory`` (kind and config from its config.json), on ``device``, eval mode."""
    kind, config = read_config(directory)
    model_cls, _ = MODELS[kind]
    model = model_cls(config)
    load_weights(model, Path(directory) / weights, device)
    return model.to(device).eval()


def load_vision(run: RunDir, device: torch.device | str = "cpu") -> ConvVAE:
    model = build(run.vision, device)
    if not isinstance(model, ConvVAE):
        raise UserError(f"{run.vision} holds a {type(model).__name__}, not a vision model")
    return model


def load_memory(run: RunDir, device: torch.device | str = "cpu", vision: ConvVAE | None = None):
    """The run's memory model, checked against its action space and the vision model's z size."""
    model = build(run.memory, device)
    if not isinstance(model, tuple(MEMORY_MODELS.values())):
        raise UserError(f"{run.memory} holds a {type(model).__name__}, not a memory model")
    check_memory_fits(model, run, vision)
    return model


def check_memory_fits(memory, run: RunDir, vision: ConvVAE | None) -> None:
    action = run.action_spec()
    if memory.action_dim != action.dim:
        raise UserError(f"memory model in {run.memory} takes actions of size {memory.action_dim}, "
                        f"but the run's action space has size {action.dim}")
    if vision is not None and memory.z_dim != vision.z_dim:
        raise UserError(f"memory model in {run.memory} has z={memory.z_dim}, the vision model z={vision.z_dim}: "
                        "retrain the memory model (`wm train memory --no-resume`)")
