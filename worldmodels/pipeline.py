"""``wm run``: the whole pipeline on one preset: collect -> train -> dream -> (rounds) -> eval.

Every stage is resumable, so re-running the same command after an interruption picks up where
it stopped. With ``rounds > 1`` the pipeline iterates as Ha & Schmidhuber suggest for harder
tasks: each later round collects new episodes with the current controller (plus exploration
noise: the ``noisy-controller`` agent), retrains the memory model on all data and continues
CMA-ES, so the dream is corrected where the controller goes. Measured on CarRacing's laptop
preset, the second round's dream overfits again within 10 generations; selection by real-env
checks is what keeps the controller that transfers.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.core.errors import UserError
from worldmodels.dream.cma import CMAConfig, train_cma
from worldmodels.dream.imagine import DreamConfig
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision


@dataclass
class Preset:
    """Sizes of every stage. ``rounds`` > 1 adds iterative collect/retrain/dream rounds."""

    collect: CollectConfig
    """Data collection (``wm collect``)."""
    vision: VisionTrainConfig
    """Vision model training (``wm train vision``)."""
    memory: MemoryTrainConfig
    """Memory model training (``wm train memory``)."""
    cma: CMAConfig
    """CMA-ES in the dream (``wm dream``)."""
    eval_episodes: int = 20
    """Real-env episodes scoring each agent at the end."""
    eval_max_steps: int | None = None
    """Truncate the final evaluation's episodes (None: the run's setting)."""
    rounds: int = 1
    """Iterative rounds in all: each later one collects with the controller, retrains memory, continues CMA-ES."""
    round_episodes: int = 0
    """Episodes the noisy controller collects in each later round."""
    round_memory_epochs: int = 0
    """Extra memory epochs per later round."""
    round_generations: int = 0
    """Extra CMA-ES generations per later round."""
    baselines: list[str] = field(default_factory=lambda: ["random"])
    """Agents scored beside the controller on the same tracks."""


def presets(env: str) -> dict[str, Preset]:
    """smoke (a minute, CI), laptop (~8 min on 2 CPU cores), gpu (hours), paper (Ha & Schmidhuber's sizes).

    The laptop preset learns from and is scored on the first 250 steps of each track (CarRacing's
    zoom-in included); its controller is not trained for the full 1,000 (see BENCHMARKS.md). Its
    memory model learns rewards spread over 10 steps with the reward loss weighted x20: with
    CarRacing's sparse tile rewards as they are, the reward head does no better than a constant
    and the dream controller exploits the noise (scoring below random in the real env).
    """
    return {
        "smoke": Preset(
            CollectConfig(env, episodes=4, max_steps=40, agent="brownian"),
            VisionTrainConfig(epochs=1, batch_size=32),
            MemoryTrainConfig(epochs=2, seq_len=16, batch_size=8, hidden_size=64),
            CMAConfig(generations=2, population=8, rollouts=2, dream=DreamConfig(max_steps=30), real_every=1,
                      real_episodes=2, real_max_steps=40),
            eval_episodes=2, eval_max_steps=40, rounds=2, round_episodes=2, round_memory_epochs=1,
            round_generations=1),
        "laptop": Preset(
            CollectConfig(env, episodes=48, max_steps=250, agent="brownian"),
            VisionTrainConfig(epochs=4, batch_size=64, lr=1e-3),
            MemoryTrainConfig(epochs=20, seq_len=32, batch_size=32, lr=1e-3, batches_per_epoch=20,
                              reward_weight=20.0, reward_smoothing=10, patience=20),
            CMAConfig(generations=30, population=32, rollouts=8, dream=DreamConfig(max_steps=250), real_every=5,
                      real_episodes=4, real_max_steps=250),
            eval_episodes=20, eval_max_steps=250, rounds=2, round_episodes=16, round_memory_epochs=10,
            round_generations=15),
        "gpu": Preset(
            CollectConfig(env, episodes=1000, max_steps=1000, agent="brownian"),
            VisionTrainConfig(epochs=10, batch_size=256, lr=1e-3),
            MemoryTrainConfig(epochs=40, seq_len=128, batch_size=64, lr=1e-3, reward_weight=20.0,
                              reward_smoothing=10, patience=10),
            CMAConfig(generations=300, population=64, rollouts=16, real_every=20, real_episodes=8),
            eval_episodes=100, rounds=3, round_episodes=200, round_memory_epochs=10, round_generations=100),
        "paper": Preset(
            CollectConfig(env, episodes=10_000, max_steps=1000, agent="random"),
            VisionTrainConfig(epochs=10, batch_size=100, lr=1e-4),
            MemoryTrainConfig(epochs=20, seq_len=999, batch_size=100, lr=1e-3),
            CMAConfig(generations=2000, population=64, rollouts=16, real_every=25, real_episodes=16),
            eval_episodes=100),
    }


def run_pipeline(env: str, run: RunDir, preset: Preset | str, workers: int | None = None, device: str = "auto",
                 seed: int = 0, progress: bool = True, preset_name: str | None = None) -> dict:
    """Run (or resume) every stage of ``preset`` (a ``Preset``, or a name in ``presets``); returns and
    saves ``RUN/pipeline.json``."""
    if isinstance(preset, str):
        table = presets(env)
        if preset not in table:
            raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(table)}")
        preset_name, preset = preset, table[preset]
    p = preset
    stages: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - t0
        return out

    collect_config = replace(p.collect, workers=workers, seed=seed)
    vision_config = replace(p.vision, device=device, seed=seed)
    memory_config = replace(p.memory, device=device, seed=seed)
    cma_config = replace(p.cma, workers=workers, device=device, seed=seed)
    timed("collect", collect, run, collect_config, progress=progress)
    timed("vision", train_vision, run, vision_config, progress=progress)
    timed("memory", train_memory, run, memory_config, progress=progress)
    timed("dream", train_cma, run, cma_config, progress=progress)
    for r in range(1, p.rounds):
        print(f"round {r + 1}/{p.rounds}: collecting with the current controller")
        timed("collect", collect, run, replace(collect_config, episodes=collect_config.episodes + r * p.round_episodes,
                                               agent="noisy-controller"), progress=progress)
        timed("memory", train_memory, run, replace(memory_config, epochs=memory_config.epochs + r * p.round_memory_epochs),
              progress=progress)
        timed("dream", train_cma, run, replace(cma_config, generations=cma_config.generations + r * p.round_generations),
              progress=progress)
    results = {}
    for agent in ["controller", *p.baselines]:
        results[agent] = timed(f"eval_{agent}", evaluate, run, agent, episodes=p.eval_episodes, workers=workers,
                               seed=seed + 1, max_steps=p.eval_max_steps, progress=progress, video=agent == "controller")
    summary = {"env": env, "preset": preset_name or "custom", "settings": asdict(p), "seconds": stages,
               "scores": {a: {k: r[k] for k in ("mean", "std", "min", "max", "episodes")} for a, r in results.items()}}
    atomic_write_json(run.root / "pipeline.json", summary)
    return summary
