"""``wm run``: the whole pipeline on one preset: collect -> train -> dream -> (rounds) -> eval.

Every stage is resumable, so re-running the same command after an interruption picks up where
it stopped. With ``rounds > 1`` the pipeline iterates as Ha & Schmidhuber suggest for harder
tasks: each later round collects new episodes with the current controller (plus exploration
noise: the ``noisy-controller`` agent), retrains the memory model on all data and continues
CMA-ES, so the dream is corrected where the controller goes. A preset with a ``scout`` runs
round 1's CMA-ES in ``RUN/controller_scout`` only to collect round 2's data, then trains the
controller afresh on all of it (the laptop CarRacing preset: BENCHMARKS.md, "Drive whole tracks").
With ``refit_vision_epochs`` (an experiment's ``--set``; no preset uses it: on TakeCover it lost 156 tics on
average) a fresh VAE, memory model and controller train on all episodes after the last round, the rounds'
models kept in ``RUN/rounds/``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least
from worldmodels.dream.cma import CMAConfig, train_cma
from worldmodels.dream.imagine import DreamConfig
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.runs.artifacts import load_controller
from worldmodels.runs.episodes import list_episodes, stored_steps
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
    round_max_steps: int | None = None
    """Length of later rounds' episodes (None: the collection's max_steps)."""
    scout: CMAConfig | None = None
    """Round 1's CMA-ES when it should differ from ``cma`` (rounds >= 2): a scout whose controller
    (RUN/controller_scout) only collects round 2's data; round 2 runs ``cma`` afresh in RUN/controller."""
    baselines: list[str] = field(default_factory=lambda: ["random"])
    """Agents scored beside the controller on the same tracks."""
    refit_vision_epochs: int = 0
    """With E > 0, after the last round a fresh VAE trains E epochs on all episodes (the first round's VAE saw only
    the first collection), every episode is re-encoded, and a fresh memory model (``refit_memory_epochs``) and
    controller (``cma``) train on its latents: the run's models; the rounds' stay in RUN/rounds/, their controller
    scored beside (``rounds_controller``)."""
    refit_memory_epochs: int = 60
    """The refitted memory model's epochs (no early stopping)."""
    refit_rounds: int = 0
    """Rounds after the refit, on its models, as the rounds before it (``round_episodes`` collected by its
    controller, ``round_memory_epochs`` and ``round_generations`` more): a fresh controller in a fresh dream
    can exploit a flaw of its own that only its own episodes correct."""

    def __post_init__(self) -> None:
        require_at_least(self, 0, "refit_vision_epochs", "refit_rounds")
        require_at_least(self, 1, "refit_memory_epochs")


def carracing_levers(env: str) -> tuple[dict, dict]:
    """(memory, cma) settings that let the laptop preset drive whole CarRacing tracks; none elsewhere.

    The memory model's done head learns the off-track frame label (dreams end where the car leaves
    the track); the controller's gas is capped at 0.3 and its brake pinned at 0 (at full gas the car
    outruns the corners, and the data, after a few hundred steps). BENCHMARKS.md, "Drive whole tracks".
    """
    if not env.removeprefix("gymnasium.envs.box2d:").startswith("CarRacing"):
        return {}, {}
    return {"done_label": "carracing-off-track"}, {"action_low": (-1.0, 0.0, 0.0), "action_high": (1.0, 0.3, 0.0)}


def presets(env: str) -> dict[str, Preset]:
    """smoke (a minute, CI), laptop (2 CPU cores), gpu (one GPU, 16 cores), paper (Ha & Schmidhuber's sizes);
    on VizDoom ids also doom and doom-gpu (``doom_presets``).

    The laptop preset learns from 64 Brownian episodes of 250 steps plus 16 of a scout controller
    and is scored on full 1,000-step episodes. Its memory model is PlaNet's RSSM (its dream
    controllers transfer better than the MDN-RNN's on every seed measured); it learns rewards spread over 10 steps
    with the reward loss weighted x20 (CarRacing's sparse tile rewards alone leave the reward head
    no better than a constant) and, on CarRacing, an off-track done label. Round 1's scout
    (250-step dreams from first frames, full action range) drives forward fast, so its noisy
    episodes hold twice the Brownian ones' tiles: what the reward head needs. Round 2's CMA-ES,
    afresh: dreams of 100 steps from any stored frame, gas <= 0.3 and no brake on CarRacing; every
    10 generations CMA-ES's mean and its best 2 candidates are scored on 3 full real episodes and
    the best is kept (the dream is still exploited after a few generations). BENCHMARKS.md,
    "Drive whole tracks", has the measurements and the ablation behind each setting. The gpu preset
    is the laptop one at 4x the data and twice the memory training and CMA-ES; its real-env checks
    score 3 candidates x 5 episodes, one wave on 16 cores (measured on an H100 machine: BENCHMARKS.md,
    "The GPU preset on one H100"). The gpu preset keeps the MDN-RNN, whose stage times on the H100 were
    measured against the 10-minute budget (the RSSM's per-step loop trains 2.6x fewer steps/s than it on one CPU thread).
    """
    memory_levers, cma_levers = carracing_levers(env)
    table = {
        "smoke": Preset(
            CollectConfig(env, episodes=4, max_steps=40, agent="brownian"),
            VisionTrainConfig(epochs=1, batch_size=32),
            MemoryTrainConfig(epochs=2, seq_len=16, batch_size=8, hidden_size=64),
            CMAConfig(generations=2, population=8, rollouts=2, dream=DreamConfig(max_steps=30), real_every=1,
                      real_episodes=2, real_max_steps=40),
            eval_episodes=2, eval_max_steps=40, rounds=2, round_episodes=2, round_memory_epochs=1,
            round_generations=1),
        "laptop": Preset(
            CollectConfig(env, episodes=64, max_steps=250, agent="brownian"),
            VisionTrainConfig(epochs=4, batch_size=64, lr=1e-3),
            MemoryTrainConfig(kind="rssm", epochs=20, seq_len=32, batch_size=32, lr=1e-3, batches_per_epoch=20,
                              reward_weight=20.0, reward_smoothing=10, patience=20, **memory_levers),
            CMAConfig(generations=30, population=32, rollouts=8, dream=DreamConfig(max_steps=100, start="any"),
                      real_every=10, real_episodes=3, real_max_steps=1000, select_candidates=3, **cma_levers),
            eval_episodes=20, eval_max_steps=1000, rounds=2, round_episodes=16, round_memory_epochs=10,
            scout=CMAConfig(generations=30, population=32, rollouts=8, dream=DreamConfig(max_steps=250),
                            real_every=10, real_episodes=3, real_max_steps=250)),
        "gpu": Preset(
            CollectConfig(env, episodes=256, max_steps=250, agent="brownian"),
            VisionTrainConfig(epochs=10, batch_size=256, lr=1e-3),
            MemoryTrainConfig(epochs=40, seq_len=64, batch_size=64, lr=1e-3, batches_per_epoch=50,
                              reward_weight=20.0, reward_smoothing=10, patience=20, **memory_levers),
            CMAConfig(generations=60, population=64, rollouts=16, dream=DreamConfig(max_steps=100, start="any"),
                      real_every=10, real_episodes=5, real_max_steps=1000, select_candidates=3, **cma_levers),
            eval_episodes=100, eval_max_steps=1000, rounds=2, round_episodes=64, round_memory_epochs=10,
            scout=CMAConfig(generations=30, population=64, rollouts=16, dream=DreamConfig(max_steps=250),
                            real_every=10, real_episodes=5, real_max_steps=250)),
        "paper": Preset(
            CollectConfig(env, episodes=10_000, max_steps=1000, agent="random"),
            VisionTrainConfig(epochs=10, batch_size=100, lr=1e-4),
            MemoryTrainConfig(epochs=20, seq_len=999, batch_size=100, lr=1e-3),
            CMAConfig(generations=2000, population=64, rollouts=16, real_every=25, real_episodes=16),
            eval_episodes=100),
    }
    return {**table, **doom_presets(env)}


DOOM_STEPS = 2100
"""Ha & Schmidhuber's cap on a TakeCover episode, in game tics (their steps; the score counts tics survived)."""

DOOM_SKIP = 4
"""The doom preset's frame skip: an agent step (a controller decision, a memory and dream step) lasts 4
tics, the env summing TakeCover's +1 per tic, so scores stay tics survived and the cap is
``DOOM_STEPS // DOOM_SKIP`` agent steps."""


def doom_presets(env: str) -> dict[str, Preset]:
    """doom (2 CPU cores, at most 30 minutes) and doom-gpu for VizDoom ids; none elsewhere.

    Ha & Schmidhuber's TakeCover experiment scaled down: sticky random episodes (ViZDoom's
    TakeCover has no time limit of its own: they are cut at ``DOOM_STEPS`` tics), a VAE with z=64, an
    MDN-RNN with 5 mixtures whose done head learns the deaths (dying ends the dream), and a linear
    controller from [z, h] to the 3 discrete actions trained by CMA-ES only in the dream at
    temperature 1.15 in dreams that end at the done head's P(done) each step
    (``termination="sampled"``: with the 0.5 threshold the dream almost never killed, so the
    controller learned nothing about fireballs; BENCHMARKS.md) and no real-env checks (the
    controller kept is CMA-ES's last mean). Two levers make the rare deaths weigh: the VAE's reconstruction weight on
    pixels unlike the batch's mean frame (``salient_weight``: fireballs are a few pixels) and the
    done loss weighted x100 against the latent NLL (``done_weight``). The memory
    model sees whole episodes (windows of 250 steps, 1,000 tics, longer than nearly every random episode,
    padded): windows shorter than an episode would show it the one death at the episode's end far less
    often than other steps.

    The doom preset acts every ``DOOM_SKIP`` tics (a fireball crosses the room in a quarter of the
    steps, and the same compute trains on 400 episodes instead of 100) and runs Ha & Schmidhuber's
    iterative procedure for 8 rounds: after each round's CMA-ES, 100 episodes of the controller with
    10% random actions are added, the memory model trains 15 more epochs on all episodes and CMA-ES
    continues 20 generations in the new dream. Random data alone leaves the dream wrong where the
    controller goes (standing still survived 734 tics in the dream and 142 in the game); the rounds
    correct it (seed 0: 282.6 tics survived after round 1, 382.6 after 3, 762.4 after 5, 796.1 after 8;
    over seeds 0-2 745.3 +- 31.4 after 5 rounds and 811.2 +- 10.7 after 8, against random's 291.7).
    doom-gpu (never run to the end: projected at 29 minutes on one H200) is the same recipe at 4x the data, a
    memory model twice as wide and 10 rounds of 200 episodes. Scored on 100 real episodes beside the random policy.
    BENCHMARKS.md, "VizDoom TakeCover (issue 20)".
    """
    if not env.startswith("Vizdoom"):
        return {}
    dream = DreamConfig(temperature=1.15, max_steps=1000, termination="sampled")
    steps = DOOM_STEPS // DOOM_SKIP
    return {
        "doom": Preset(
            CollectConfig(env, episodes=400, max_steps=steps, agent="brownian", frame_skip=DOOM_SKIP),
            VisionTrainConfig(z_dim=64, epochs=3, batch_size=64, lr=1e-3, salient_weight=10.0),
            MemoryTrainConfig(epochs=30, seq_len=250, batch_size=32, hidden_size=256, lr=1e-3, batches_per_epoch=20,
                              done_weight=100.0, patience=30),
            CMAConfig(generations=40, population=32, rollouts=8, dream=replace(dream, max_steps=steps), real_every=0,
                      select="dream"),
            eval_episodes=100, eval_max_steps=steps, rounds=8, round_episodes=100, round_memory_epochs=15,
            round_generations=20),
        "doom-gpu": Preset(
            CollectConfig(env, episodes=1600, max_steps=steps, agent="brownian", frame_skip=DOOM_SKIP),
            VisionTrainConfig(z_dim=64, epochs=10, batch_size=256, lr=1e-3, salient_weight=10.0),
            MemoryTrainConfig(epochs=40, seq_len=250, batch_size=64, hidden_size=512, lr=1e-3, batches_per_epoch=50,
                              done_weight=100.0, patience=40),
            CMAConfig(generations=100, population=64, rollouts=16, dream=replace(dream, max_steps=steps), real_every=0,
                      select="dream"),
            eval_episodes=100, eval_max_steps=steps, rounds=10, round_episodes=200, round_memory_epochs=15,
            round_generations=30),
    }


ROUNDS_PARTS = ("vision", "latents", "memory", "controller", "tb", "eval")
"""What the rounds of a preset with a refit keep in RUN/rounds/ (episodes and run.json stay shared)."""


def rounds_run(run: RunDir) -> RunDir:
    """A view of ``run`` whose models, latents, logs and scores live in ``RUN/rounds/`` (a refit's rounds).

    A run finished without a refit (its models in RUN/) has them moved there first, so adding a refit to a
    finished run resumes it."""
    view = copy.copy(run)
    rounds = run.root / "rounds"
    for part in ROUNDS_PARTS:
        setattr(view, part, rounds / part)
    if not rounds.exists() and run.vision.exists():
        print(f"refit: moving the rounds' models to {rounds}/")
        rounds.mkdir()
        for part in ROUNDS_PARTS:
            if getattr(run, part).exists():
                getattr(run, part).rename(getattr(view, part))
    return view


def scout_run(run: RunDir) -> RunDir:
    """A view of ``run`` whose controller lives in ``RUN/controller_scout`` (everything else shared)."""
    view = copy.copy(run)
    view.controller = run.root / "controller_scout"
    return view


def real_env_steps(run: RunDir, others: list[RunDir]) -> dict[str, int]:
    """Real env steps the training used: stored episodes (collection) and real-env checks (selection) of the
    controllers of ``run`` and its ``others`` views (a scout, the rounds of a refit)."""
    checks = 0
    for view in [run, *others]:
        path = view.controller / "history.json"
        real = json.loads(path.read_text()).get("real", []) if path.exists() else []
        checks += real[-1].get("env_steps", 0) if real else 0
    return {"episodes": stored_steps(run.episodes), "checks": checks}


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
    work = rounds_run(run) if p.refit_vision_epochs else run  # where the rounds keep their models
    scout = scout_run(work) if p.scout is not None and p.rounds > 1 else None

    def next_round(label: str, view: RunDir, collector: RunDir, episodes: int, memory: MemoryTrainConfig,
                   generations: int, prefix: str = "") -> None:
        """Collect up to ``episodes`` with ``collector``'s noisy controller, retrain ``view``'s memory model on
        all of them, continue its CMA-ES (each stage does nothing when a resumed run has it already)."""
        if len(list_episodes(run.episodes)) < episodes:
            print(f"{label}: collecting with the controller in {collector.controller}")
            spec, params, _ = load_controller(collector)
            timed(f"{prefix}collect", collect, view, replace(
                collect_config, episodes=episodes, agent="noisy-controller",
                agent_options={"params": params.tolist(), "spec": spec.to_dict()},
                max_steps=p.round_max_steps or collect_config.max_steps), progress=progress)
        timed(f"{prefix}memory", train_memory, view, memory, progress=progress)
        timed(f"{prefix}dream", train_cma, view, replace(cma_config, generations=generations), progress=progress)

    if work is not run and run.vision.exists():  # the refit starts only once every round is done
        print(f"refit: the rounds are done ({work.root / 'rounds'}); going on with the refit")
    else:
        timed("collect", collect, work, collect_config, progress=progress)
        timed("vision", train_vision, work, vision_config, progress=progress)
        timed("memory", train_memory, work, memory_config, progress=progress)
        if scout is not None:
            print(f"round 1/{p.rounds}: a scout controller ({scout.controller}) collects round 2's data")
            timed("dream", train_cma, scout, replace(p.scout, workers=workers, device=device, seed=seed),
                  progress=progress)
        else:
            timed("dream", train_cma, work, cma_config, progress=progress)
        for r in range(1, p.rounds):
            collector = scout if r == 1 and scout is not None else work
            extra = r - 1 if scout is not None else r  # with a scout, round 2 is the controller's first
            next_round(f"round {r + 1}/{p.rounds}", work, collector, collect_config.episodes + r * p.round_episodes,
                       replace(memory_config, epochs=memory_config.epochs + r * p.round_memory_epochs),
                       cma_config.generations + extra * p.round_generations)
    if work is not run:
        print(f"refit: a fresh VAE ({p.refit_vision_epochs} epochs), memory model and controller on all "
              f"{len(list_episodes(run.episodes))} episodes")
        vision_epochs = p.refit_vision_epochs
        timed("refit_vision", train_vision, run, replace(vision_config, epochs=vision_epochs, patience=vision_epochs),
              progress=progress)

        def refit_memory(k: int) -> MemoryTrainConfig:  # no early stopping: the epochs are the refit's budget
            epochs = p.refit_memory_epochs + k * p.round_memory_epochs
            return replace(memory_config, epochs=epochs, patience=epochs)

        timed("refit_memory", train_memory, run, refit_memory(0), progress=progress)
        timed("refit_dream", train_cma, run, cma_config, progress=progress)
        for k in range(1, p.refit_rounds + 1):
            next_round(f"refit round {k + 1}/{p.refit_rounds + 1}", run, run,
                       collect_config.episodes + (p.rounds - 1 + k) * p.round_episodes, refit_memory(k),
                       cma_config.generations + k * p.round_generations, prefix="refit_")
    scored = [("controller", run, "controller")]
    if work is not run:
        scored.append(("rounds_controller", work, "controller"))
    results = {}
    for name, view, agent in scored + [(b, run, b) for b in p.baselines]:  # all on the same episodes
        results[name] = timed(f"eval_{name}", evaluate, view, agent, episodes=p.eval_episodes, workers=workers,
                              seed=seed + 1, max_steps=p.eval_max_steps, progress=progress, video=name == "controller")
    others = [v for v in (scout, work) if v is not None and v is not run]
    summary = {"env": env, "preset": preset_name or "custom", "settings": asdict(p), "seconds": stages,
               "real_env_steps": real_env_steps(run, others),
               "scores": {a: {k: r[k] for k in ("mean", "std", "min", "max", "episodes")} for a, r in results.items()}}
    atomic_write_json(run.root / "pipeline.json", summary)
    return summary
