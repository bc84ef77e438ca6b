"""``make_env``: Gymnasium ids and ``package.module:Callable`` specs, wrapped into pixels."""

from __future__ import annotations

import importlib
import inspect
import json
import os

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


def _load_callable(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UserError(f"bad env spec {spec!r}: expected a Gymnasium id or 'package.module:Callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"bad env spec {spec!r}: cannot import module {module_name!r} ({e})") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise UserError(f"bad env spec {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise UserError(f"bad env spec {spec!r}: {attr!r} is not callable")
    return factory


def _accepts(factory, name: str) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def make_raw_env(spec: str, **kwargs) -> gym.Env:
    """The env named by ``spec`` with ``kwargs``, rendering ``rgb_array`` where it can."""
    if ":" in spec:
        factory = _load_callable(spec)
        if "render_mode" not in kwargs and _accepts(factory, "render_mode"):
            kwargs["render_mode"] = "rgb_array"
        try:
            env = factory(**kwargs)
        except TypeError as e:
            raise UserError(f"cannot create {spec!r} with kwargs {kwargs}: {e}") from None
        if not isinstance(env, gym.Env):
            raise UserError(f"{spec!r} returned {type(env).__name__}, not a gymnasium.Env")
        return env
    kwargs.setdefault("render_mode", "rgb_array")
    try:
        return gym.make(spec, **kwargs)
    except gym.error.Error as e:
        raise UserError(f"unknown environment {spec!r}: {e}") from None
    except TypeError as e:
        raise UserError(f"cannot create {spec!r} with kwargs {kwargs}: {e}") from None


def make_env(spec: str, pixels: PixelConfig | None = None, max_steps: int | None = None, **kwargs) -> gym.Env:
    """A pixel env: observations ``[64, 64, 3]`` uint8, a supported action space.

    ``spec`` is a registered Gymnasium id (``"CarRacing-v3"``) or ``"package.module:Callable"``
    (a class or factory returning a ``gymnasium.Env``); ``kwargs`` go to the env's constructor.
    ``max_steps`` truncates episodes after that many agent steps. Fails with a ``UserError``
    naming the problem for unknown specs, bad kwargs and unsupported spaces.
    """
    env = make_raw_env(spec, **kwargs)
    try:
        ActionSpec.from_space(env.action_space)
        env = PixelObservation(env, pixels or PixelConfig.for_env(spec))
        if max_steps:
            env = gym.wrappers.TimeLimit(env, max_episode_steps=int(max_steps))
    except UserError:
        env.close()
        raise
    return env
