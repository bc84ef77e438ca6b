"""``wm collect``: roll an agent out in a pixel env, one compressed ``.npz`` per episode.

Episode ``i`` is seeded from ``(seed, i)``, so the data are the same whatever the worker
count; finished episodes are never redone, partial or corrupt ones are recollected.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from worldmodels.agents import load_agent
from worldmodels.collect.driver import episode_seed, run_episode
from worldmodels.core.errors import UserError
from worldmodels.core.executor import default_workers, make_executor
from worldmodels.core.settings import require_at_least
from worldmodels.envs.make import make_env
from worldmodels.envs.pixels import PixelConfig
from worldmodels.envs.spaces import ActionSpec
from worldmodels.runs.episodes import (
    CorruptEpisode,
    episode_path,
    list_episodes,
    quick_check,
    save_episode,
    stored_steps,
)
from worldmodels.runs.rundir import RunDir, versions
from worldmodels.runs.tensorboard import NullWriter, log_episodes, stage_writer


@dataclass
class CollectConfig:
    """What ``wm collect`` does."""

    env: str = field(metadata={"cli": False})
    """Gymnasium id (CarRacing-v3) or package.module:Callable returning a gymnasium.Env."""
    episodes: int = 16
    """Total episodes the run should hold (a re-run completes it)."""
    max_steps: int | None = field(default=None, metadata={"none": "the env's own limit"})
    """Truncate real-env episodes after this many agent steps."""
    workers: int | None = field(default=None, metadata={"none": "one per core"})
    """Worker processes (or Ray actors) running episodes."""
    agent: str = "random"
    """Agent that acts: random, brownian, or any trained agent of the run (see wm eval --agent)."""
    agent_options: dict = field(default_factory=dict)
    """JSON object of the agent loader's options, e.g. '{"noise": 0.2}' for noisy-controller."""
    seed: int = 0
    """Episode i is seeded from (seed, i), whatever the worker count."""
    env_kwargs: dict = field(default_factory=dict)
    """JSON object of env constructor kwargs, e.g. '{"continuous": false}'."""
    frame_skip: int | None = field(default=None, metadata={"none": "1"})
    """Env steps per agent action."""
    crop: tuple[int, int, int, int] | None = field(default=None, metadata={"none": "CarRacing drops its dashboard",
                                                                         "metavar": "TOP,BOTTOM,LEFT,RIGHT"})
    """Crop of raw frames in raw-frame pixels, before resizing to 64x64."""
    device: str = "cpu"
    """Where a model-based agent runs in the workers: cpu, cuda, cuda:N, or auto."""
    backend: str = field(default="local", metadata={"choices": ["local", "ray"]})
    """Where episodes run: local processes, or Ray actors (the run directory must be on shared storage)."""
    ray_address: str | None = field(default=None, metadata={"none": "$RAY_ADDRESS, else a new local Ray"})
    """Ray cluster to attach to: HOST:PORT, or auto for the one `ray start` made on this node."""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "episodes", "max_steps", "workers", "frame_skip")


def env_meta(config: CollectConfig) -> dict:
    """Build the env once (failing early with a clear message) and describe it for run.json."""
    pixels = PixelConfig.for_env(config.env, frame_skip=config.frame_skip, crop=config.crop)
    env = make_env(config.env, pixels=pixels, **config.env_kwargs)
    try:
        action = ActionSpec.from_space(env.action_space)
    finally:
        env.close()
    return {"spec": config.env, "kwargs": config.env_kwargs, "pixels": pixels.to_dict(),
            "action_space": action.to_dict(), "max_steps": config.max_steps}


def check_same_env(existing: dict, new: dict, root: Path) -> None:
    for key in ("spec", "kwargs", "pixels", "action_space"):
        if json.dumps(existing.get(key), sort_keys=True) != json.dumps(new.get(key), sort_keys=True):
            raise UserError(
                f"{root} was collected with a different env {key}: {existing.get(key)} (run.json) vs "
                f"{new.get(key)} (now). Use a new --run directory for a different env or pipeline."
            )


# Worker state: built once per process by _init_worker.
_WORKER: dict = {}


def _init_worker(run: RunDir, agent: str, device: str, max_steps: int | None, options: dict) -> None:
    _WORKER["env"] = run.make_env(max_steps=max_steps)
    _WORKER["agent"] = load_agent(agent, run, device, **options)
    _WORKER["dir"] = run.episodes


def _collect_one(task: tuple[int, int]) -> dict:
    index, seed = task
    episode = run_episode(_WORKER["env"], _WORKER["agent"], seed)
    size = save_episode(episode_path(_WORKER["dir"], index), **episode)
    return {"index": index, "steps": len(episode["reward"]), "return": float(episode["reward"].sum()),
            "bytes": size}


def scan(run: RunDir, action: ActionSpec, episodes: int) -> tuple[list[int], list[str]]:
    """Indices below ``episodes`` still to collect, and a report line per corrupt file removed."""
    for tmp in run.episodes.glob(".episode_*.tmp-*"):
        tmp.unlink()  # a write cut short by a killed collection
    existing = list_episodes(run.episodes)
    problems = []
    for index, path in existing.items():
        if index >= episodes:
            continue
        try:
            quick_check(path, action)
        except CorruptEpisode as e:
            problems.append(f"corrupt episode, recollecting: {e}")
            path.unlink()
    existing = list_episodes(run.episodes)
    return [i for i in range(episodes) if i not in existing], problems


def collect(run: RunDir, config: CollectConfig, progress: bool = True) -> dict:
    """Complete ``run`` to ``config.episodes`` episodes; returns the summary printed by the CLI."""
    meta_env = env_meta(config)
    if run.exists():
        meta = run.read_meta()
        check_same_env(meta["env"], meta_env, run.root)
    elif list_episodes(run.episodes):
        raise UserError(f"{run.root} holds episodes but no run.json, so what env made them is unknown: collect "
                        "into a new --run directory (or restore run.json)")
    else:
        meta = {"env": meta_env, "collections": [], "versions": versions()}
    action = ActionSpec.from_dict(meta_env["action_space"])
    workers = config.workers or default_workers()
    executor = make_executor(config.backend, workers, _init_worker,
                             (run.absolute(), config.agent, config.device, config.max_steps, config.agent_options), config.ray_address)
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_meta(meta)
    todo, problems = scan(run, action, config.episodes)
    for line in problems:
        tqdm.write(line)

    tasks = [(i, episode_seed(config.seed, i)) for i in todo]
    writer = stage_writer(run, "collect", config) if tasks else NullWriter()
    env_steps = stored_steps(run.episodes) if tasks else 0  # TensorBoard's x axis: the run's real env steps
    start, steps = time.perf_counter(), 0
    bar = tqdm(total=len(tasks), desc=f"collect {config.env}", unit="ep", disable=not progress or not tasks)
    for result in executor.map_unordered(_collect_one, tasks):
        steps += result["steps"]
        rate = steps / (time.perf_counter() - start)
        env_steps = log_episodes(writer, [result["return"]], [result["steps"]], env_steps)
        writer.add_scalar("charts/env_steps_per_s", rate, env_steps)
        bar.update(1)
        bar.set_postfix(ret=f"{result['return']:.1f}", steps_s=f"{rate:.0f}")
    bar.close()
    writer.close()
    elapsed = time.perf_counter() - start

    if tasks:
        meta = run.read_meta()
        meta["collections"].append({"agent": config.agent, "seed": config.seed, "episodes": todo,
                                    "max_steps": config.max_steps, "workers": workers, "backend": config.backend,
                                    "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        run.write_meta(meta)
    return summarize(run, config.episodes, len(tasks), steps, elapsed)


def summarize(run: RunDir, episodes: int, collected: int, steps: int, elapsed: float) -> dict:
    paths = [p for i, p in list_episodes(run.episodes).items() if i < episodes]
    returns, frames = [], 0
    for path in paths:
        with np.load(path) as data:
            reward = data["reward"]
        returns.append(float(reward.sum()))
        frames += len(reward) + 1
    returns = np.array(returns) if returns else np.zeros(1)
    return {
        "episodes": len(paths),
        "collected": collected,
        "frames": frames,
        "return_mean": float(returns.mean()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "steps_per_second": steps / elapsed if collected and elapsed > 0 else 0.0,
        "disk_mb": sum(p.stat().st_size for p in paths) / 2**20,
    }
