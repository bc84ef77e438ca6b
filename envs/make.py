"""``make_env``: Gymnasium ids and ``package.module:Callable`` specs, wrapped into pixels."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys

import gymnasium as gym

from worldmodels.core.errors import UserError
from worldmodels.envs.pixels import PixelConfig, PixelObservation
from worldmodels.envs.spaces import ActionSpec

# pygame-rendered envs (CarRacing) must never need a display.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def parse_kwargs(text: str | None) -> dict:
    """``--env-kwargs`` JSON text -> dict (``None`` or empty -> ``{}``)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--env-kwargs is not valid JSON ({e.msg}): {text}") from None
    if not isinstance(value, dict):
        raise UserError(f"--env-kwargs must be a JSON object, got {text}")
    return value


ID_MODULES: dict[str, tuple[str, str]] = {"Vizdoom": ("vizdoom.gymnasium_wrapper", "doom"), "MiniGrid": ("minigrid", "minigrid")}
"""Gymnasium id prefix -> (the module whose import registers those ids, the extra that installs it)."""

TRUST_RUN = "WM_TRUST_RUN"
"""Environment variable: set to 1 to let a run directory's run.json name any env factory."""


def _import(module_name: str, spec: str):
    """``module_name`` imported; a module in the current directory is found too, as ``python -m`` finds it."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")[0]
        hint = f"not installed, and no {top}.py or {top}/ in the current directory {os.getcwd()}" if e.name == top else e
        raise UserError(f"bad env spec {spec!r}: cannot import module {module_name!r} ({hint})") from None
    except ImportError as e:
        raise UserError(f"bad env spec {spec!r}: cannot import module {module_name!r} ({e})") from None


def register_id(env_id: str) -> str:
    """``env_id``, after importing the module that registers it when ``ID_MODULES`` names one
    (``VizdoomTakeCover-v1``: ``vizdoom.gymnasium_wrapper``); a one-line ``UserError`` naming the
    extra to install when that module is missing."""
    for prefix, (module_name, extra) in ID_MODULES.items():
        if env_id.startswith(prefix) and env_id not in gym.registry:
            try:
                importlib.import_module(module_name)
            except ImportError as e:
                raise UserError(f"{env_id} needs {module_name.split('.')[0]} (cannot import {module_name}: {e}): "
                                f"pip install 'worldmodels[{extra}]'") from None
    return env_id


def resolve_spec(spec: str) -> tuple[str | None, object | None]:
    """``(gymnasium id, None)`` or ``(None, factory)`` for an env spec.

    ``"CarRacing-v3"`` is a registered id (``VizdoomTakeCover-v1`` too, once ``register_id`` has
    imported vizdoom's registrations); ``"package.module:EnvId"`` imports the module (which
    registers its envs, as ALE's do) and names an id; ``"package.module:Callable"`` names a class or
    function returning a ``gymnasium.Env``.
    """
    if ":" not in spec:
        return register_id(spec), None
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"bad env spec {spec!r}: expected a Gymnasium id, 'package.module:EnvId' or "
                        "'package.module:Callable'")
    factory = _import(module_name, spec)
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            break
    if factory is None:
        if attr in gym.registry:
            return attr, None
        raise UserError(f"bad env spec {spec!r}: module {module_name!r} has no attribute {attr!r} "
                        "and registers no env of that id")
    if not callable(factory):
        raise UserError(f"bad env spec {spec!r}: {attr!r} is not callable")
    return None, factory


def check_trusted(spec: str, factory) -> None:
    """Refuse a factory that is not a ``gymnasium.Env`` class unless ``WM_TRUST_RUN=1`` (run.json specs)."""
    if os.environ.get(TRUST_RUN) == "1" or (inspect.isclass(factory) and issubclass(factory, gym.Env)):
        return
    raise UserError(f"run.json names the env factory {spec!r}, not a gymnasium.Env class: a run directory from "
                    f"someone else could run any function that way. If you trust this run, set {TRUST_RUN}=1")


def _accepts(factory, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def make_raw_env(spec: str, *, trusted: bool = True, **kwargs) -> gym.Env:
    """The env named by ``spec`` with ``kwargs``, rendering ``rgb_array`` where it can.

    ``trusted=False`` (a spec read from a run directory) admits Gymnasium ids and env classes
    only, never an arbitrary callable (see ``check_trusted``).
    """
    env_id, factory = resolve_spec(spec)
    if factory is not None:
        if not trusted:
            check_trusted(spec, factory)
        if "render_mode" not in kwargs and _accepts(factory, "render_mode"):
            kwargs["render_mode"] = "rgb_array"
        try:
            env = factory(**kwargs)
        except (TypeError, ValueError) as e:  # kwargs the constructor refuses
            raise UserError(f"cannot create {spec!r} with kwargs {kwargs}: {e}") from None
        if not isinstance(env, gym.Env):
            raise UserError(f"{spec!r} returned {type(env).__name__}, not a gymnasium.Env")
        return env
    kwargs.setdefault("render_mode", "rgb_array")
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise UserError(f"unknown environment {spec!r}: {e}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"cannot create {spec!r} with kwargs {kwargs}: {e}") from None


def make_env(spec: str, pixels: PixelConfig | None = None, max_steps: int | None = None, *, trusted: bool = True,
             **kwargs) -> gym.Env:
    """A pixel env: observations ``[64, 64, 3]`` uint8, a supported action space.

    ``spec`` is a registered Gymnasium id (``"CarRacing-v3"``), ``"package.module:EnvId"`` or
    ``"package.module:Callable"`` (a class or factory returning a ``gymnasium.Env``; a module in the
    current directory is found too); ``kwargs`` go to the env's constructor. ``trusted=False``:
    see ``make_raw_env``.
    ``max_steps`` truncates episodes after that many agent steps. Fails with a ``UserError``
    naming the problem for unknown specs, bad kwargs and unsupported spaces.
    """
    env = make_raw_env(spec, trusted=trusted, **kwargs)
    try:
        ActionSpec.from_space(env.action_space)
        env = PixelObservation(env, pixels or PixelConfig.for_env(spec))
        if max_steps:
            env = gym.wrappers.TimeLimit(env, max_episode_steps=int(max_steps))
    except UserError:
        env.close()
        raise
    return env
