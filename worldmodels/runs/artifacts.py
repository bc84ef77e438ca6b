"""Checkpoints: weights (``torch.load(..., weights_only=True)``, never unpickling code) + config JSON.

A stage directory (``RUN/vision``, ``RUN/memory``, ...) holds ``config.json`` (the model kind
and its config dataclass), ``best.pt`` (weights of the best validation epoch), ``last.pt``
(everything needed to resume) and, once finished, ``summary.json``. Controllers are saved and
loaded here too: the dream-trained one in ``RUN/controller`` and the curious explorer in
``RUN/explore`` (``params.npz`` + ``config.json``), and the SB3 models ``wm dream`` trains
(state dicts in ``sb3_ALGO.pt`` + ``sb3_ALGO.json``: SB3's pickled ``.zip`` is never loaded).

What a stage consumed is recorded and checked: the memory model the vision model it was trained
on (``memory/summary.json``), a controller or SB3 model the memory model it was trained in.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict
from functools import reduce
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch

from worldmodels.core.errors import UserError
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models import MEMORY_CONFIGS, MEMORY_MODELS, ConvVAE, Memory, VAEConfig
from worldmodels.models.controller import ControllerSpec
from worldmodels.runs.rundir import RunDir, atomic_save_npz, atomic_torch_save, atomic_write_json, read_arrays

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
    path = Path(directory) / "best.pt"
    if not path.exists():
        raise UserError(f"missing checkpoint {path}: train that stage first")
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def memory_id(run: RunDir) -> str | None:
    """The ``weights_id`` of the run's memory model (None before one is trained): what controllers record."""
    return weights_id(run.memory) if (run.memory / "best.pt").exists() else None


def save_weights(path: Path, model: torch.nn.Module) -> None:
    atomic_torch_save(path, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def load_state(path: Path, device: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"missing checkpoint {path}: train that stage first") from None
    except pickle.UnpicklingError:
        raise UserError(f"cannot read checkpoint {path}: it holds Python objects besides tensors and numbers, "
                        "which are never unpickled (they could run code)") from None
    except Exception as e:  # a truncated or foreign file
        first = str(e).strip().splitlines()
        raise UserError(f"cannot read checkpoint {path}: {type(e).__name__}: {first[0] if first else ''}") from None


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
    memory = load_memory(run, device, vision)
    check_same_vision(run)
    return WorldModel(vision, memory)


def check_same_vision(run: RunDir) -> None:
    """A ``UserError`` when the memory model was trained on another vision model's latents than the run's
    (``vision`` in ``memory/summary.json``; a memory trained before it was recorded is not checked)."""
    summary = run.memory / "summary.json"
    recorded = json.loads(summary.read_text()).get("vision") if summary.exists() else None
    if recorded not in (None, weights_id(run.vision)):
        raise UserError(f"the memory model in {run.memory} was trained on another vision model's latents "
                        f"({run.vision / 'best.pt'} changed since); retrain the memory with "
                        f"`wm train memory --run {run.root} --no-resume`")


def save_controller(run: RunDir, spec: ControllerSpec, params: np.ndarray, info: dict) -> None:
    """The controller: ``params`` [n_params] (float32) to ``RUN/controller/params.npz``, its spec, ``info``
    and the id of the memory model it was trained in to ``config.json``."""
    memory = memory_id(run)
    _save_params(run.controller, spec, params, {**info, **({"memory": memory} if memory else {})})


def load_controller(run: RunDir) -> tuple[ControllerSpec, np.ndarray, dict]:
    """(spec, params [n_params] float32, info) of the run's controller (``wm dream``); a ``UserError``
    when it was trained in the dream of another memory model than the run's."""
    spec, params, info = _load_params(run.controller,
                                      f"no controller in {run.controller}: run `wm dream --run {run.root}` first")
    if info.get("memory") not in (None, memory_id(run)):
        raise UserError(f"the controller in {run.controller} was trained in the dream of another memory model "
                        f"({run.memory / 'best.pt'} changed since); retrain it with "
                        f"`wm dream --run {run.root} --no-resume`")
    return spec, params, info


def explorer_dir(run: RunDir) -> Path:
    """``RUN/explore``: what ``wm explore`` keeps (its explorer, history, ground-truth positions)."""
    return run.root / "explore"


def save_explorer(run: RunDir, spec: ControllerSpec, params: np.ndarray, info: dict) -> None:
    """The curious explorer (``wm explore``), as ``save_controller`` does, in ``RUN/explore``."""
    _save_params(explorer_dir(run), spec, params, info)


def load_explorer(run: RunDir) -> tuple[ControllerSpec, np.ndarray, dict]:
    """(spec, params [n_params] float32, info) of the run's curious explorer (``wm explore``)."""
    directory = explorer_dir(run)
    return _load_params(directory, f"no explorer in {directory}: run `wm explore --run {run.root} --explorer cma` "
                        "first (the default mpc explorer plans each step and saves no controller)")


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
    params = read_arrays(directory / "params.npz", ("params",))["params"].astype(np.float32)
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


SB3_FORMAT = "worldmodels-sb3/1"
"""The ``format`` of ``sb3_ALGO.json``; anything else (SB3's own pickled ``.zip``) is never loaded."""
SB3_COUNTERS = ("num_timesteps", "_n_updates", "_n_calls", "_episode_num")
"""The algorithm's step counters saved beside its weights (schedules and target updates depend on them)."""


def attribute(obj, dotted: str):
    """``obj.a.b`` for ``dotted`` = ``"a.b"``."""
    return reduce(getattr, dotted.split("."), obj)


def sb3_path(run: RunDir, algo: str) -> Path:
    """``RUN/controller/sb3_ALGO.pt``: the SB3 model's state dicts (policy, optimizers) and counters."""
    return run.controller / f"sb3_{algo.lower()}.pt"


def sb3_meta_path(run: RunDir, algo: str) -> Path:
    """``RUN/controller/sb3_ALGO.json``: how to rebuild the SB3 model (algo, policy, kwargs, spaces, memory id)."""
    return run.controller / f"sb3_{algo.lower()}.json"


def forget_sb3(run: RunDir, algo: str) -> None:
    """Delete the saved SB3 model ``algo`` (and an old pickled ``sb3_ALGO.zip``): ``wm dream --no-resume``."""
    for path in (sb3_path(run, algo), sb3_meta_path(run, algo), run.controller / f"sb3_{algo.lower()}.zip"):
        path.unlink(missing_ok=True)


def save_sb3(run: RunDir, model, algo: str, policy: str, kwargs: dict) -> dict:
    """Save an SB3 ``model`` as data, never as a pickle: its state dicts, tensors and counters to
    ``sb3_ALGO.pt`` (read with ``weights_only=True``), and to ``sb3_ALGO.json`` what rebuilds it:
    ``policy`` (``MlpPolicy``), the constructor ``kwargs`` (JSON), the spaces and the memory model's id."""
    _, variables = model._get_torch_save_params()
    state = {"params": model.get_parameters(),
             "variables": {name: attribute(model, name).detach().cpu() for name in variables},
             "counters": {name: int(getattr(model, name)) for name in SB3_COUNTERS if hasattr(model, name)}}
    run.controller.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(sb3_path(run, algo), state)
    meta = {"format": SB3_FORMAT, "algo": algo.lower(), "class": type(model).__name__, "policy": policy,
            "kwargs": kwargs, "observation_shape": list(model.observation_space.shape),
            "action": ActionSpec.from_space(model.action_space).to_dict(), "memory": memory_id(run),
            "timesteps": int(model.num_timesteps), "path": str(sb3_path(run, algo))}
    atomic_write_json(sb3_meta_path(run, algo), meta)
    return meta


def read_sb3_meta(run: RunDir, algo: str) -> dict | None:
    """``sb3_ALGO.json`` of a saved model, None if there is none; a ``UserError`` for SB3's pickled format."""
    path, old = sb3_meta_path(run, algo), run.controller / f"sb3_{algo.lower()}.zip"
    meta = json.loads(path.read_text()) if path.exists() else {}
    if meta.get("format") == SB3_FORMAT and sb3_path(run, algo).exists():
        return meta
    if old.exists():
        raise UserError(f"{old} is in stable-baselines3's pickle format, which is never loaded (unpickling can run "
                        f"code); retrain it with `wm dream --run {run.root} --algo {algo} --no-resume`")
    return None


def load_sb3(run: RunDir, algo: str | None, device="cpu", env=None, stale_ok: bool = False, **overrides):
    """The SB3 model saved by ``wm dream --algo ALGO`` (the only one when ``algo`` is None), rebuilt
    from ``sb3_ALGO.json`` on ``env`` (or on its recorded spaces) with its weights loaded as data.

    A model trained in the dream of another memory model than the run's is a ``UserError``
    unless ``stale_ok`` (training resumed on the new dream).
    """
    if algo is None:
        found = sorted({p.stem.removeprefix("sb3_") for p in run.controller.glob("sb3_*.*")
                        if p.suffix in (".json", ".zip")})
        if len(found) != 1:
            raise UserError(f"{'no' if not found else 'several'} SB3 models in {run.controller}; "
                            "train one with `wm dream --algo ppo` or name it with --algo")
        algo = found[0]
    meta = read_sb3_meta(run, algo)
    if meta is None:
        raise UserError(f"no {algo.upper()} model in {run.controller}: run `wm dream --run {run.root} --algo {algo}` first")
    retrain = f"retrain it with `wm dream --run {run.root} --algo {algo} --no-resume`"
    if ActionSpec.from_dict(meta["action"]) != run.action_spec():
        raise UserError(f"the {algo.upper()} model in {run.controller} acts in another action space than the run's; {retrain}")
    if not stale_ok and meta["memory"] not in (None, memory_id(run)):
        raise UserError(f"the {algo.upper()} model in {run.controller} was trained in the dream of another memory "
                        f"model ({run.memory / 'best.pt'} changed since); {retrain}")
    cls = algo_class(meta["algo"])
    kwargs = {**meta["kwargs"], **overrides}
    try:
        if env is None:  # rebuilt on the recorded spaces, as SB3's own load does
            model = cls(meta["policy"], None, device=device, _init_setup_model=False, **kwargs)
            model.observation_space = gym.spaces.Box(-np.inf, np.inf, tuple(meta["observation_shape"]), np.float32)
            model.action_space = ActionSpec.from_dict(meta["action"]).space()
            model.n_envs = 1
            model._setup_model()
        else:
            if list(env.observation_space.shape) != meta["observation_shape"]:
                raise UserError(f"the {algo.upper()} model in {run.controller} observes {meta['observation_shape']}, "
                                f"the dream gives {list(env.observation_space.shape)}; {retrain}")
            model = cls(meta["policy"], env, device=device, **kwargs)
        state = load_state(sb3_path(run, algo), device)
        model.set_parameters(state["params"], exact_match=True, device=device)
        for name, value in state["variables"].items():
            attribute(model, name).data.copy_(value)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{sb3_path(run, algo)} does not fit a {cls.__name__} ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0]}); {retrain}") from None
    for name, value in state["counters"].items():
        setattr(model, name, value)
    return model
