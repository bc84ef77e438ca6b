"""TensorBoard: one named run per stage under ``RUN/tb``, CleanRL's tags.

``tensorboard --logdir RUN/tb`` lists every stage as its own run: ``collect``, ``vision``,
``memory``, ``dream`` (CMA-ES), ``dream_sb3_ALGO``, ``explore``, ``eval_AGENT``, ``foresight``.
Tags, as in CleanRL: ``charts/episodic_return`` and ``charts/episodic_length`` of real-env
episodes against the real env steps counted so far; ``losses/...`` for training losses;
``charts/...`` for throughput, learning rate and CMA-ES's sigma; ``dream/...`` for dream
fitness and dreamed frames; ``config``, the stage's settings as a text table, when it starts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass

import torch

from worldmodels.runs.rundir import RunDir


class NullWriter:
    """A stand-in for TensorBoard's ``SummaryWriter`` that writes nothing (DDP ranks other than 0)."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


def stage_writer(run: RunDir, name: str, config=None, enabled: bool = True):
    """A ``SummaryWriter`` on ``RUN/tb/NAME``, with ``config`` (a dataclass or dict) logged as the text
    ``config`` at step 0; a ``NullWriter`` when not ``enabled``."""
    if not enabled:
        return NullWriter()
    from torch.utils.tensorboard import SummaryWriter  # tensorboard loads slowly: only when a stage logs

    writer = SummaryWriter(str(run.tb / name))
    if config is not None:
        writer.add_text("config", config_table(config), 0)
    return writer


def config_table(config) -> str:
    """``config`` (a dataclass or dict, nested ones flattened to ``outer.inner``) as a markdown table."""
    rows = flatten(asdict(config) if is_dataclass(config) else dict(config))
    return "|setting|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in rows.items())


def flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def log_episodes(writer, returns: Sequence[float], lengths: Sequence[int], env_steps: int = 0) -> int:
    """``charts/episodic_return`` and ``charts/episodic_length`` of each episode, in order, at the real env
    steps counted after it (from ``env_steps`` before the first); returns the steps counted after the last."""
    for episode_return, length in zip(returns, lengths):
        env_steps += int(length)
        writer.add_scalar("charts/episodic_return", float(episode_return), env_steps)
        writer.add_scalar("charts/episodic_length", int(length), env_steps)
    return env_steps


def frame_grid(frames: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """Images ``[R, C, 3, H, W]`` in [0, 1] -> one image ``[3, R*(H+gap)-gap, C*(W+gap)-gap]``: R rows of C
    frames on white, ``gap`` pixels apart."""
    rows, columns, channels, h, w = frames.shape
    out = frames.new_ones(channels, rows * (h + gap) - gap, columns * (w + gap) - gap)
    for r in range(rows):
        for c in range(columns):
            out[:, r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = frames[r, c]
    return out.clamp(0, 1)
