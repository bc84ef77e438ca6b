"""``wm eval``: any agent in the real env for N seeded episodes on W workers.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from worldmodels.agents import load_agent
from worldmodels.collect.driver import EpisodeRecorder, drive, episode_seed
from worldmodels.core.executor import default_workers, make_executor
from worldmodels.core.settings import require_at_least
from worldmodels.evaluation.video import write_videos
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.runs.tensorboard import log_episodes, stage_writer


@dataclass
class EvalConfig:
    """What ``wm eval`` does: ``episodes`` seeded real-env episodes of one agent."""

    agent: str = "controller"
    """Agent to score: random, brownian, controller, noisy-controller, sb3, curious, cem."""
    episodes: int = 10
    """Real-env episodes; episode i is seeded from (seed, i)."""
    max_steps: int | None = field(default=None, metadata={"none": "the run's setting"})
    """Truncate real-env episodes after this many agent steps."""
    seed: int = 0
    """Episode i is seeded from (seed, i), whatever the worker count."""
    video: bool = False
    """Write videos of the best and the worst episode (real frames beside the VAE reconstruction)."""
    device: str = "cpu"
    """Where a model-based agent runs: cpu, cuda, cuda:N, or auto."""
    workers: int | None = field(default=None, metadata={"none": "one per core"})
    """Worker processes (or Ray actors) running episodes."""
    backend: str = field(default="local", metadata={"choices": ["local", "ray"]})
    """Where episodes run: local processes, or Ray actors (the run directory must be on shared storage)."""
    ray_address: str | None = field(default=None, metadata={"none": "$RAY_ADDRESS, else a new local Ray"})
    """Ray cluster to attach to: HOST:PORT, or auto for the one `ray start` made on this node."""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "episodes", "max_steps", "workers")


_WORKER: dict = {}


def _init_worker(run: RunDir, agent: str, device: str, max_steps: int | None, options: list[dict]) -> None:
    """Each worker holds the env and, loaded on first use, one ``agent`` per option set of ``options``."""
    _WORKER.update(run=run, env=run.make_env(max_steps=max_steps), name=agent, device=device, options=options,
                   agents={})


def _agent(which: int):
    if which not in _WORKER["agents"]:
        _WORKER["agents"][which] = load_agent(_WORKER["name"], _WORKER["run"], _WORKER["device"],
                                              **_WORKER["options"][which])
    return _WORKER["agents"][which]


def _eval_one(task: tuple[int, int, int, bool]) -> dict:
    which, index, seed, keep_frames = task
    recorder = EpisodeRecorder()
    outcome = drive(_WORKER["env"], _agent(which), seed, [recorder] if keep_frames else [])
    out = {"which": which, "index": index, "seed": seed, "return": outcome.total_reward, "length": outcome.steps}
    if keep_frames:
        episode = recorder.episode()
        out["frames"], out["rewards"] = episode["obs"], episode["reward"]
    return out


def run_episodes(run: RunDir, agent: str, options: list[dict], episodes: int, workers: int | None, seed: int,
                 max_steps: int, device: str, backend: str = "local", ray_address: str | None = None,
                 keep_frames: bool = False, progress: bool = True) -> tuple[list[list[dict]], list[dict]]:
    """``episodes`` real episodes of ``agent`` under each option set of ``options`` (episode i on the same
    track, seeded from (seed, i), for every set), all on one pool of workers.

    Returns, per option set, its episodes' ``{index, seed, return, length}`` in episode order and, with
    ``keep_frames``, its best and worst episode ``{"best"|"worst": (result, frames [T+1, H, W, 3] uint8,
    rewards [T])}`` (only those two episodes' frames are held in memory)."""
    for o in options:
        load_agent(agent, run, device, **o)  # user errors (unknown agent, missing model) here, not in a worker
    tasks = [(k, i, episode_seed(seed, i), keep_frames) for k in range(len(options)) for i in range(episodes)]
    workers = min(workers or default_workers(), len(tasks))
    executor = make_executor(backend, workers, _init_worker, (run.absolute(), agent, device, max_steps,
                                                             options), ray_address)
    results: list[list[dict]] = [[] for _ in options]
    extremes: list[dict] = [{} for _ in options]
    bar = tqdm(total=len(tasks), desc=f"eval {agent}", unit="ep", disable=not progress)
    for r in executor.map_unordered(_eval_one, tasks):
        which, frames, rewards = r.pop("which"), r.pop("frames", None), r.pop("rewards", None)
        results[which].append(r)
        if frames is not None:
            for name, better in (("best", np.greater), ("worst", np.less)):
                if name not in extremes[which] or better(r["return"], extremes[which][name][0]["return"]):
                    extremes[which][name] = (r, frames, rewards)
        bar.update(1)
        bar.set_postfix(ret=f"{r['return']:.1f}")
    bar.close()
    return [sorted(rs, key=lambda r: r["index"]) for rs in results], extremes


def evaluate(run: RunDir, agent: str, episodes: int = 10, workers: int | None = None, seed: int = 0,
             max_steps: int | None = None, video: bool = False, progress: bool = True,
             agent_options: dict | None = None, device: str = "cpu", write: bool = True, backend: str = "local",
             ray_address: str | None = None) -> dict:
    """Score ``agent`` over ``episodes`` real episodes (episode i seeded from (seed, i)).

    Returns (and, with ``write``, saves to ``RUN/eval/results.json`` and ``RUN/eval/AGENT.json``)
    per-episode returns and lengths with their mean, std, min and max; with ``write``, TensorBoard's
    ``RUN/tb/eval_AGENT`` is replaced by this evaluation's episodes (``charts/episodic_return``). ``video`` writes mp4s of
    the best and the worst episode, real frames beside the VAE reconstruction. ``backend``
    ``"ray"`` runs the episodes on Ray actors (at ``ray_address``; see ``worldmodels.executor``).
    """
    run_max_steps = run.env_spec()[3]  # run.json read (and its env spec checked) before any worker starts
    if max_steps is None:
        max_steps = run_max_steps
    options = agent_options or {}
    start = time.perf_counter()
    [results], [extremes] = run_episodes(run, agent, [options], episodes, workers, seed, max_steps, device, backend,
                                         ray_address, keep_frames=video, progress=progress)
    returns = np.array([r["return"] for r in results])
    summary = {
        "agent": agent,
        "checkpoint": _checkpoint(run, agent, options),
        "options": {k: v for k, v in options.items() if k != "params"},
        "env": run.env_spec()[0],
        "episodes": episodes,
        "seed": seed,
        "max_steps": max_steps,
        "returns": returns.tolist(),
        "lengths": [r["length"] for r in results],
        "seeds": [r["seed"] for r in results],
        "mean": float(returns.mean()),
        "std": float(returns.std()),
        "min": float(returns.min()),
        "max": float(returns.max()),
        "seconds": time.perf_counter() - start,
    }
    videos = write_videos(run, agent, extremes) if video and extremes else {}
    if videos:
        summary["videos"] = videos
    if write:
        atomic_write_json(run.eval / "results.json", summary)
        atomic_write_json(run.eval / f"{agent}.json", summary)
        log_evaluation(run, summary)
    return summary


def log_evaluation(run: RunDir, summary: dict) -> None:
    """``RUN/tb/eval_AGENT``, replaced: the settings, then each episode's return and length (episode order)
    against the real env steps of the evaluation so far."""
    name = f"eval_{summary['agent']}"
    shutil.rmtree(run.tb / name, ignore_errors=True)
    settings = ("agent", "checkpoint", "options", "env", "episodes", "seed", "max_steps")
    writer = stage_writer(run, name, {k: summary[k] for k in settings})
    log_episodes(writer, summary["returns"], summary["lengths"])
    writer.close()


def _checkpoint(run: RunDir, agent: str, options: dict) -> str | None:
    """What the agent was loaded from: explicit parameters, or the run's model directories."""
    if "params" in options:
        return "explicit parameters"
    if agent in ("random", "brownian"):
        return None
    if agent in ("controller", "noisy-controller", "sb3"):
        return str(run.controller)
    return f"{run.vision}, {run.memory}"
