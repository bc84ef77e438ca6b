"""``wm task``: a task solved zero-shot after exploration (Plan2Explore, Sekar et al. 2020).

A run explored without reward (``wm explore``, or any collected run with a trained world model) is given
a task reward after the fact. Its stored episodes are relabelled with it, only the memory model's reward
head is retrained on them (every other weight frozen), a controller is trained by CMA-ES in the dream of
that model, with no new real env steps, and it is then scored on the task in the real env.

A task reward is ``package.module:callable`` (found as env specs are: ``worldmodels.envs.make.resolve_spec``),
called once per stored episode::

    fn(episode: dict[str, np.ndarray]) -> reward [T] (float)

``episode`` holds the stored arrays (``worldmodels.runs.episodes``): ``obs`` uint8 [T+1, 64, 64, 3] (frames
after the run's pixel pipeline), ``action`` [T] (Discrete) or [T, A], the env's ``reward`` float32 [T],
``terminated`` and ``truncated`` bool [T]. ``reward[t]`` is the task's reward for the step from ``obs[t]``
to ``obs[t+1]``. The library's example: ``worldmodels.envs.maze:reach_far_corner`` (``reach_room`` makes
others). Success on an episode is a task return above 0.

Everything goes to ``RUN/tasks/NAME/`` (NAME: ``--name``, else the callable's name), so the run's own
models stay as they are; each step resumes, or says it is done:

  task.json          the task spec and how its relabelling came out (steps, rewarded steps, per episode)
  rewards.npz        the relabelled rewards, one float32 [T] array per episode (``episode_000003``)
  memory/            the run's memory model with the reward head retrained (config.json, best.pt, summary.json)
  controller/        CMA-ES in that model's dream, as ``wm dream``'s ``RUN/controller`` (no real-env checks)
  tb/                TensorBoard: ``reward_head`` (losses/reward), ``dream`` (CMA-ES)
  eval/task.json     the controller's real-env episodes scored on the task: returns, successes, env returns
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from worldmodels.agents import load_agent
from worldmodels.collect.driver import EpisodeRecorder, drive, episode_seed
from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least, require_fraction, require_positive
from worldmodels.dream.cma import CMAConfig, forget, train_cma
from worldmodels.dream.imagine import DreamConfig
from worldmodels.envs.make import resolve_spec
from worldmodels.models.memory import Memory
from worldmodels.runs.artifacts import load_world_model, read_config, save_weights, weights_id, write_config
from worldmodels.runs.episodes import list_episodes, load_episode
from worldmodels.runs.rundir import RunDir, atomic_save_npz, atomic_write_json, read_arrays
from worldmodels.runs.tensorboard import stage_writer
from worldmodels.training.latents import encode_latents, load_latents
from worldmodels.training.sequences import SequenceBatcher


@dataclass
class TaskConfig:
    """A zero-shot task on an explored run: relabel, retrain the reward head, CMA-ES in the dream, score."""

    name: str | None = field(default=None, metadata={"none": "the callable's name"})
    """the task's name: its results go to RUN/tasks/NAME"""
    reward_steps: int = 500
    """Adam updates of the reward head on the relabelled episodes"""
    reward_lr: float = 3e-3
    """the reward head's Adam learning rate"""
    batch_size: int = 32
    """reward-head batch, in sequences"""
    seq_len: int = 32
    """reward-head training window, in steps"""
    rewarded_fraction: float = 0.5
    """share of each reward-head batch drawn from windows that hold a rewarded step (task reward != 0), the rest
    uniform; a sparse task (a goal reached on a few of thousands of stored steps) otherwise trains the head to
    predict 0 everywhere (0: uniform windows only)"""
    generations: int = 30
    """CMA-ES generations in the dream"""
    population: int = 16
    """CMA-ES candidates per generation"""
    rollouts: int = 4
    """dreams per candidate; its fitness is their mean predicted task return"""
    sigma0: float = 0.1
    """initial CMA-ES step size, in controller-parameter units"""
    hidden: int = field(default=0, metadata={"flag": "controller_hidden"})
    """controller hidden layer width in units (0: linear)"""
    dream: DreamConfig = field(default_factory=lambda: DreamConfig(max_steps=100))
    """how the controller's dreams run: temperature, done threshold, length in steps (100 by default)"""
    episodes: int = 10
    """real-env episodes the controller is scored on (task return, success)"""
    max_steps: int | None = field(default=None, metadata={"none": "the run's max_steps"})
    """truncate the scoring episodes after this many steps"""
    seed: int = 0
    """seeds the reward head's batches, CMA-ES, the dreams and the scoring episodes"""
    device: str = "auto"
    """torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N"""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "reward_steps", "batch_size", "seq_len", "generations", "rollouts", "episodes",
                         "max_steps")
        require_at_least(self, 2, "population")
        require_at_least(self, 0, "hidden")
        require_positive(self, "reward_lr", "sigma0")
        require_fraction(self, "rewarded_fraction", closed=True)


def load_task(spec: str):
    """(default name, callable) of the task reward ``package.module:callable``; a one-line ``UserError`` otherwise."""
    if ":" not in spec:
        raise UserError(f"bad task reward {spec!r}: expected 'package.module:callable', e.g. "
                        "worldmodels.envs.maze:reach_far_corner")
    try:
        _, fn = resolve_spec(spec)
    except UserError as e:  # the resolver words its errors for env specs
        raise UserError(str(e).replace("bad env spec", "bad task reward", 1)
                        .removesuffix(" and registers no env of that id")) from None
    if fn is None:
        raise UserError(f"bad task reward {spec!r}: it names a registered env, not a function")
    return spec.rpartition(":")[2].rpartition(".")[2], fn


def task_rewards(fn, episode: dict[str, np.ndarray], spec: str) -> np.ndarray:
    """``fn(episode)`` checked: float32 [T] of finite numbers, T the episode's steps; else a ``UserError``."""
    steps = len(episode["reward"])
    try:
        value = np.asarray(fn(episode), dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise UserError(f"task reward {spec!r} failed on an episode of {steps} steps: {type(e).__name__}: {e}") from None
    if value.shape != (steps,):
        raise UserError(f"task reward {spec!r} returned shape {value.shape} for an episode of {steps} steps; "
                        f"expected ({steps},): one reward per step")
    if not np.isfinite(value).all():
        raise UserError(f"task reward {spec!r} returned non-finite rewards")
    return value


def relabel(run: RunDir, fn, spec: str) -> dict[int, np.ndarray]:
    """Episode index -> the task's rewards float32 [T], for every stored episode of ``run``."""
    action = run.action_spec()
    paths = list_episodes(run.episodes)
    if not paths:
        raise UserError(f"no episodes in {run.episodes}: collect or explore first")
    return {i: task_rewards(fn, load_episode(path, action), spec) for i, path in paths.items()}


def task_run(run: RunDir, name: str) -> RunDir:
    """A view of ``run`` for task ``name``: the run's env, episodes, latents and vision model; its own memory,
    controller, TensorBoard and eval directories under ``RUN/tasks/NAME``."""
    view = copy.copy(run)
    base = task_dir(run, name)
    view.memory, view.controller, view.tb, view.eval = (base / d for d in ("memory", "controller", "tb", "eval"))
    return view


def task_dir(run: RunDir, name: str):
    return run.root / "tasks" / name


def reward_head(memory: Memory) -> nn.Module:
    """The memory model's reward head (``reward_head``: MDN-RNN, VRNN; ``heads.reward``: RSSM, SRNN, SVG)."""
    head = getattr(memory, "reward_head", None)
    if head is None:
        head = getattr(getattr(memory, "heads", None), "reward", None)
    if not isinstance(head, nn.Module):
        raise UserError(f"{type(memory).__name__} has no reward head to retrain")
    return head


def reward_loss(memory: Memory, data: SequenceBatcher, batch_size: int, device) -> float:
    """Mean reward loss (MSE, per real step) of ``memory`` over one deterministic pass of ``data``."""
    total, steps = 0.0, 0.0
    with torch.no_grad():
        for batch in data.iterate(batch_size):
            batch = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            n = float(batch["mask"].sum())
            total += float(memory.loss(**batch)["reward"]) * n
            steps += n
    return total / max(steps, 1.0)


def fit_reward_head(memory: Memory, episodes: list[dict[str, np.ndarray]], steps: int, lr: float, batch_size: int,
                    seq_len: int, seed: int, device, writer=None, rewarded_fraction: float = 0.0) -> dict:
    """Train only ``reward_head(memory)`` on latent ``episodes`` (``load_latents``' dicts: ``reward`` [T] is the
    target) for ``steps`` Adam updates of the memory's reward loss; every other weight is left as it was.
    ``rewarded_fraction`` of each batch (rounded) are windows around steps with reward != 0, when there are any.
    Returns the reward loss (MSE per step, over all windows, uniformly weighted) before and after."""
    head = reward_head(memory)
    for p in memory.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    torch.manual_seed(seed)
    data = SequenceBatcher(episodes, seq_len, seed=seed)
    rewarded = [(i, t) for i, e in enumerate(episodes) for t in np.flatnonzero(e["reward"])]
    focused = round(batch_size * rewarded_fraction) if rewarded else 0
    ep, t = np.array(rewarded, dtype=np.int64).reshape(-1, 2).T
    before = reward_loss(memory, SequenceBatcher(episodes, seq_len, seed=seed + 1), batch_size, device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    for step in range(steps):
        parts = [data.sample(batch_size - focused)] + ([data.sample_around(focused, ep, t)] if focused else [])
        batch = {k: torch.from_numpy(np.concatenate([p[k] for p in parts])).to(device) for k in parts[0]}
        loss = memory.loss(**batch)["reward"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if writer is not None:
            writer.add_scalar("losses/reward", loss.item(), step + 1)
    after = reward_loss(memory, SequenceBatcher(episodes, seq_len, seed=seed + 1), batch_size, device)
    for p in memory.parameters():
        p.requires_grad_(True)
    return {"loss_before": before, "loss_after": after}


def file_id(path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:16]


def relabelled(run: RunDir, spec: str, fn, directory) -> dict[int, np.ndarray]:
    """The task's rewards per episode: read from ``rewards.npz`` when it covers the run's episodes for this
    spec, else computed (``relabel``) and saved with ``task.json``."""
    meta_path, path = directory / "task.json", directory / "rewards.npz"
    indices = list(list_episodes(run.episodes))
    if meta_path.exists() and path.exists():
        meta = json.loads(meta_path.read_text())
        if meta["reward"] == spec and meta["episodes"] == indices:
            stored = read_arrays(path)
            return {i: stored[f"episode_{i:06d}"] for i in indices}
    rewards = relabel(run, fn, spec)
    atomic_save_npz(path, **{f"episode_{i:06d}": r for i, r in rewards.items()})
    returns = [float(r.sum()) for r in rewards.values()]
    atomic_write_json(meta_path, {"reward": spec, "episodes": indices, "steps": sum(len(r) for r in rewards.values()),
                                  "rewarded_steps": int(sum((r != 0).sum() for r in rewards.values())),
                                  "successes": sum(x > 0 for x in returns), "returns": returns})
    print(f"task: relabelled {len(rewards)} episodes: {sum(x > 0 for x in returns)} with task return > 0")
    return rewards


def retrain_reward_head(run: RunDir, view: RunDir, config: TaskConfig, rewards: dict[int, np.ndarray],
                        labels: str, device) -> dict:
    """``view.memory``: the run's memory model with its reward head retrained on ``rewards`` (resumable: done
    when its summary names the same run memory, labels and settings); a fresh one forgets the old controller."""
    encode_latents(run, device, progress=False)  # the last explore round's episodes have none yet
    key = {"vision": weights_id(run.vision), "base_memory": weights_id(run.memory), "labels": labels,
           "reward_steps": config.reward_steps, "reward_lr": config.reward_lr, "batch_size": config.batch_size,
           "seq_len": config.seq_len, "rewarded_fraction": config.rewarded_fraction, "seed": config.seed}
    summary_path = view.memory / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if {k: summary.get(k) for k in key} == key:
            print(f"task: reward head already retrained (loss {summary['loss_before']:.4f} -> "
                  f"{summary['loss_after']:.4f}); nothing to do")
            return summary
    _, memory = load_world_model(run, device)
    episodes = load_latents(run, list(rewards))
    for i, episode in zip(rewards, episodes):
        episode["reward"] = rewards[i]
    writer = stage_writer(view, "reward_head", config)
    losses = fit_reward_head(memory, episodes, config.reward_steps, config.reward_lr, config.batch_size,
                             config.seq_len, config.seed, device, writer, config.rewarded_fraction)
    writer.close()
    shutil.rmtree(view.memory, ignore_errors=True)
    write_config(view.memory, *read_config(run.memory))
    save_weights(view.memory / "best.pt", memory)
    summary = {**key, **losses}
    atomic_write_json(summary_path, summary)
    forget(view)  # a controller trained in the old head's dream no longer applies
    shutil.rmtree(view.eval, ignore_errors=True)
    print(f"task: reward head retrained, loss {losses['loss_before']:.4f} -> {losses['loss_after']:.4f}")
    return summary


def score_task(view: RunDir, fn, spec: str, episodes: int, seed: int, max_steps: int | None, device) -> dict:
    """The view's controller in the real env for ``episodes`` seeded episodes, scored on the task: returns
    (task units), successes (task return > 0), env returns and lengths per episode, with their means."""
    env = view.make_env(**({"max_steps": max_steps} if max_steps else {}))
    agent = load_agent("controller", view, str(device))
    returns, env_returns, lengths = [], [], []
    for i in range(episodes):
        recorder = EpisodeRecorder()
        outcome = drive(env, agent, episode_seed(10_000 + seed, i), [recorder])
        returns.append(float(task_rewards(fn, recorder.episode(), spec).sum()))
        env_returns.append(outcome.total_reward)
        lengths.append(outcome.steps)
    env.close()
    return {"returns": returns, "successes": [r > 0 for r in returns], "env_returns": env_returns,
            "lengths": lengths, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
            "success_rate": float(np.mean([r > 0 for r in returns]))}


def zero_shot(run: RunDir, spec: str, config: TaskConfig, resume: bool = True, progress: bool = True) -> dict:
    """Relabel, retrain the reward head, train a controller in the dream, score it (see the module's doc);
    returns ``RUN/tasks/NAME/eval/task.json``'s summary. ``resume=False`` deletes the task's directory first."""
    run.read_meta()
    default_name, fn = load_task(spec)
    name = config.name or default_name
    if not name.isidentifier():
        raise UserError(f"task name {name!r}: use letters, digits and underscores (--name)")
    directory = task_dir(run, name)
    if not resume:
        shutil.rmtree(directory, ignore_errors=True)
    view = task_run(run, name)
    device = pick_device(config.device)
    rewards = relabelled(run, spec, fn, directory)
    retrain_reward_head(run, view, config, rewards, file_id(directory / "rewards.npz"), device)
    cma = CMAConfig(generations=config.generations, population=config.population, rollouts=config.rollouts,
                    sigma0=config.sigma0, hidden=config.hidden, dream=config.dream, real_every=0, select="dream",
                    seed=config.seed, device=config.device)
    history = train_cma(view, cma, progress=progress)
    result_path = view.eval / "task.json"
    key = {"task": spec, "controller": file_id(view.controller / "params.npz"), "episodes": config.episodes,
           "seed": config.seed, "max_steps": config.max_steps}
    if result_path.exists():
        summary = json.loads(result_path.read_text())
        if {k: summary.get(k) for k in key} == key:
            print("task: controller already scored; nothing to do")
            return summary
    score = score_task(view, fn, spec, config.episodes, config.seed, config.max_steps, device)
    last = history["generations"][-1]
    summary = {**key, "name": name, "config": asdict(config), "dream_fitness_best": last["best"],
               "dream_fitness_mean": last["mean"], "real_env_steps_used": 0, **score}
    atomic_write_json(result_path, summary)
    return summary
