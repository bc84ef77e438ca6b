"""Checkpoints: weights (``torch.load(..., weights_only=True)``, never unpickling code) + config JSON.

A stage directory (``RUN/vision``, ``RUN/memory``, ...) holds ``config.json`` (the model kind
and its config dataclass), ``best.pt`` (weights of the best validation epoch), ``last.pt``
(everything needed to resume) and, once finished, ``summary.json``. Controllers are saved and
loaded here too: the dream-trained one in ``RUN/controller`` and the curious explorer in
``RUN/explore`` (``params.npz`` + ``config.json``), and the SB3 models ``wm dream`` trains.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from worldmodels.core.errors import UserError
from worldmodels.models import MEMORY_CONFIGS, MEMORY_MODELS, ConvVAE, Memory, VAEConfig
from worldmodels.models.controller import ControllerSpec
from worldmodels.runs.rundir import RunDir, atomic_save_npz, atomic_torch_save, atomic_write_json

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


class WorldModel(NamedTuple):
    """A run's trained world model: the vision model (``encode``/``decode``) and the memory model."""

    vision: ConvVAE
    memory: Memory


def load_world_model(run: RunDir | str | Path, device: torch.device | str = "cpu") -> WorldModel:
    """The run's vision and memory models, on ``device`` in eval mode, checked to fit each other."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    vision = load_vision(run, device)
    return WorldModel(vision, load_memory(run, device, vision))


def save_controller(run: RunDir, spec: ControllerSpec, params: np.ndarray, info: dict) -> None:
    """The controller: ``params`` [n_params] (float32) to ``RUN/controller/params.npz``, its spec and ``info`` to ``config.json``."""
    _save_params(run.controller, spec, params, info)


def load_controller(run: RunDir) -> tuple[ControllerSpec, np.ndarray, dict]:
    """(spec, params [n_params] float32, info) of the run's controller (``wm dream``)."""
    return _load_params(run.controller, f"no controller in {run.controller}: run `wm dream --run {run.root}` first")


def explorer_dir(run: RunDir) -> Path:
    """``RUN/explore``: what ``wm explore`` keeps (its explorer, history, ground-truth positions)."""
    return run.root / "explore"


def save_explorer(run: RunDir, spec: ControllerSpec, params: np.ndarray, info: dict) -> None:
    """The curious explorer (``wm explore``), as ``save_controller`` does, in ``RUN/explore``."""
    _save_params(explorer_dir(run), spec, params, info)


def load_explorer(run: RunDir) -> tuple[ControllerSpec, np.ndarray, dict]:
    """(spec, params [n_params] float32, info) of the run's curious explorer (``wm explore``)."""
    directory = explorer_dir(run)
    return _load_params(directory, f"no explorer in {directory}: run `wm explore --run {run.root}` first")


def _save_params(directory: Path, spec: ControllerSpec, params: np.ndarray, info: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(directory / "params.npz", params=np.asarray(params, np.float32))
    atomic_write_json(directory / "config.json", {"kind": "mlp" if spec.hidden else "linear", "spec": spec.to_dict(),
                                                  **info})


def _load_params(directory: Path, missing: str) -> tuple[ControllerSpec, np.ndarray, dict]:
    if not (directory / "config.json").exists():
        raise UserError(missing)
    info = json.loads((directory / "config.json").read_text())
    info.pop("kind", None)
    spec = ControllerSpec(**info.pop("spec"))
    with np.load(directory / "params.npz") as data:
        params = data["params"].astype(np.float32)
    if params.shape != (spec.n_params,):
        raise UserError(f"{directory / 'params.npz'} holds {params.size} parameters, its spec {spec.n_params}")
    return spec, params, info


def algo_classes() -> dict[str, type]:
    """stable-baselines3's algorithms, and sb3-contrib's where installed, by lower-case class name
    (``ppo``, ``sac``, ..., ``tqc``, ``qrdqn``, ``recurrentppo``, ...)."""
    import stable_baselines3
    from stable_baselines3.common.base_class import BaseAlgorithm

    modules = [stable_baselines3]
    try:
        import sb3_contrib

        modules.append(sb3_contrib)
    except ImportError:
        pass
    found = {name: getattr(m, name) for m in modules for name in m.__all__}
    return {name.lower(): c for name, c in found.items() if isinstance(c, type) and issubclass(c, BaseAlgorithm)}


def algo_class(name: str):
    """The stable-baselines3 or sb3-contrib algorithm class called ``name``, in any case (``ppo`` -> ``PPO``)."""
    classes = algo_classes()
    if name.lower() not in classes:
        raise UserError(f"unknown stable-baselines3 algorithm {name!r}; choose one of cma, {', '.join(sorted(classes))}"
                        " (sb3-contrib's too with pip install 'worldmodels[contrib]')")
    return classes[name.lower()]


def sb3_path(run: RunDir, algo: str) -> Path:
    return run.controller / f"sb3_{algo.lower()}.zip"


def load_sb3(run: RunDir, algo: str | None, device="cpu"):
    """The SB3 model saved by ``wm dream --algo ALGO`` (the only one when ``algo`` is None)."""
    if algo is None:
        found = sorted(run.controller.glob("sb3_*.zip"))
        if len(found) != 1:
            raise UserError(f"{'no' if not found else 'several'} SB3 models in {run.controller}; "
                            "train one with `wm dream --algo ppo` or name it with --algo")
        algo = found[0].stem.removeprefix("sb3_")
    path = sb3_path(run, algo)
    if not path.exists():
        raise UserError(f"no {algo.upper()} model at {path}: run `wm dream --run {run.root} --algo {algo}` first")
    return algo_class(algo).load(str(path), device=device)
