"""Projected wall clock of a ``wm run`` preset on this machine, from each stage's throughput at the preset's sizes.

    python benchmarks/projection.py [--preset paper [gpu laptop ...]] [--env CarRacing-v3] [--workers W]
                                    [--device auto|cpu|cuda] [--budget 20] [--controller-steps 300] [--seed 0]

Issue 13: the ``paper`` preset keeps Ha & Schmidhuber's sizes; this measures what each stage costs at those
sizes for a short, bounded slice (about ``--budget`` seconds of timed work per slice) and scales it to the
whole preset as ``run_pipeline`` runs it (the scout, later rounds' collection, memory epochs and generations,
real-env checks and the baselines' evaluation included). Models are freshly initialised at the preset's sizes:
speed does not depend on training.

- real env: ``collect`` of W episodes (one per worker, ``--workers``, default all cores) of the preset's
  ``max_steps`` with its agent, into a scratch run; then ``evaluate`` of a linear controller over fresh models
  saved in that run (W episodes of ``--controller-steps``). A call of E episodes of M steps on W workers is
  projected as ``start + ceil(E / min(W, E)) x M / r``: ``start`` is an ``evaluate`` call's seconds with 1-step
  episodes (spawning the workers, building env and agent), ``r`` one worker's steps/s while all W run. The
  collect agent's rate also stands for model-free baselines' evaluation; the controller's for the noisy
  controller's collection, CMA-ES's real-env checks and the final evaluation. Episodes are taken to run their
  full length (CarRacing's do unless the car leaves the playfield).
- vision: Adam updates of the ConvVAE at the preset's batch and z on ``--device`` through ``fit``'s steps
  (``frame_batches``, bf16 autocast on CUDA), after 2 warm-up updates; plus the forward passes of validation
  (batches of 256) and of encoding every frame to latents (batches of 512).
- memory: Adam updates of the preset's memory model (kind, hidden size, batch) on windows that
  ``SequenceBatcher`` re-samples from random latents, with gradient clipping as in ``fit``. When one update
  at the preset's ``seq_len`` would not fit the slice (the paper's 100 x 999 steps on a slow CPU), the window is
  cut to fit and the time scaled by ``seq_len`` / window (an LSTM's work is linear in the window). Updates
  per epoch: ``batches_per_epoch``, else training steps / (seq_len x batch), as ``fit_memory`` counts them.
- dream: one CMA-ES generation's ``population_fitness`` (one ``BatchedDream``, the library's batched path)
  at the preset's population x rollouts with a linear controller, termination off so every dream runs
  ``max_steps`` (an upper bound: trained models end some dreams early); timed on a cut generation of as many
  steps as fit the slice and scaled to ``max_steps``. Not counted: CMA-ES's own update, the dream scores and
  TensorBoard dreams logged at each check (milliseconds to about a second per check).
- eval: the controller (videos not counted) and each baseline, ``eval_episodes`` of ``eval_max_steps``.

Held-out splits (``split_episodes``) are computed as the stages compute them; early stopping is taken never to
trigger. Prints one Markdown table (stage, work, measured rate, projected seconds and hours, total) and
saves JSON to ``benchmarks/out/projection-PRESET.json`` with the machine, torch, device, commit and the load
average before and after. On a machine other processes load, run it with ``OMP_NUM_THREADS=1``: with 2 threads
on 2 busy cores torch's updates stall on each other (a batch-64 ConvVAE update took 1.43 s with 2 threads and
0.18 s with 1 on the loaded 2-core CPU of BENCHMARKS.md), so the slices would time the contention, not the stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from common import OUT, machine

from worldmodels.collect.collector import collect
from worldmodels.core.device import pick_device
from worldmodels.core.executor import default_workers
from worldmodels.dream.cma import CMAConfig, population_fitness
from worldmodels.dream.imagine import BatchedDream
from worldmodels.envs.spaces import ActionSpec
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.models import MEMORY_MODELS, ConvVAE, VAEConfig
from worldmodels.models.controller import ControllerSpec
from worldmodels.pipeline import Preset, presets
from worldmodels.runs.artifacts import save_controller, save_weights, write_config
from worldmodels.runs.episodes import stored_steps
from worldmodels.runs.rundir import RunDir
from worldmodels.training.fit import split_episodes
from worldmodels.training.memory import memory_model_config, sequence_batches
from worldmodels.training.sequences import SequenceBatcher
from worldmodels.training.vision import frame_batches

VAL_BATCH = 256
"""Frames per validation batch of the vision stage (``fit_vision``)."""
ENCODE_BATCH = 512
"""Frames per forward pass when every episode is encoded to latents (``encode_latents``)."""


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a timer sees it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], device: torch.device, budget: float, warmup: int = 1,
                     most: int = 36) -> tuple[float, int]:
    """(mean seconds of one ``fn()``, calls timed): ``warmup`` untimed calls, then timed calls until ``budget``
    seconds are spent or ``most`` calls are made (at least one)."""
    for _ in range(warmup):
        fn()
        sync(device)
    times, start = [], time.perf_counter()
    while not times or (len(times) < most and time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.fmean(times), len(times)


def autocast(device: torch.device):
    """The autocast ``fit`` trains under: bf16 on CUDA, off elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def update(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, device: torch.device,
           grad_clip: float | None) -> None:
    """One training step as ``fit`` takes it: batch to the device, loss under autocast, backward, clip, Adam."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    with autocast(device):
        loss = model.loss(**batch)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


@torch.no_grad()
def forward(model: torch.nn.Module, batch: dict, device: torch.device) -> None:
    """One validation batch as ``validate`` runs it."""
    with autocast(device):
        model.loss(**{k: v.to(device) for k, v in batch.items()})


@dataclass
class RealEnv:
    """One agent in the real env: a call's fixed cost and one worker's rate while all workers run."""

    start: float
    """seconds of a call with 1-step episodes: spawning the workers, building env and agent"""
    rate: float
    """env steps/s of one worker while all ``workers`` run episodes"""
    workers: int
    """worker processes of a call (at most one per episode)"""

    def seconds(self, episodes: int, steps: int) -> float:
        """Projected seconds of one call of ``episodes`` episodes of ``steps`` steps."""
        return self.start + math.ceil(episodes / min(self.workers, episodes)) * steps / self.rate

    def describe(self) -> str:
        return f"{self.rate:,.0f} steps/s per worker x {self.workers} (+{self.start:.1f} s start-up per call)"


def eval_seconds(run: RunDir, agent: str, workers: int, steps: int, options: dict | None = None) -> tuple[float, int]:
    """(wall-clock seconds, env steps) of ``evaluate`` of ``agent`` on ``workers`` episodes of ``steps`` steps."""
    t0 = time.perf_counter()
    result = evaluate(run, agent, episodes=workers, workers=workers, seed=1, max_steps=steps, progress=False,
                      write=False, agent_options=options)
    return time.perf_counter() - t0, sum(result["lengths"])


def measure_collect(run: RunDir, p: Preset, workers: int, seed: int) -> RealEnv:
    """``collect`` of one episode per worker with the preset's agent, at its ``max_steps``, start-up apart."""
    t0 = time.perf_counter()
    collect(run, replace(p.collect, episodes=workers, workers=workers, seed=seed), progress=False)
    wall = time.perf_counter() - t0
    start, _ = eval_seconds(run, p.collect.agent, workers, 1)
    return RealEnv(start, stored_steps(run.episodes) / workers / max(wall - start, 1e-9), workers)


def save_fresh_models(run: RunDir, p: Preset, seed: int) -> ControllerSpec:
    """Freshly initialised vision and memory models of the preset's sizes, and a random linear controller
    of its CMA-ES, saved in ``run`` as the stages save them; returns the controller's spec."""
    torch.manual_seed(seed)
    action = run.action_spec()
    vae_config = VAEConfig(z_dim=p.vision.z_dim, kl_tolerance=p.vision.kl_tolerance,
                           salient_weight=p.vision.salient_weight)
    memory_config = memory_model_config(p.memory.kind, p.vision.z_dim, action.dim, p.memory.hidden_size,
                                        p.memory.reward_weight)
    for directory, kind, config, model in ((run.vision, "vae", vae_config, ConvVAE(vae_config)),
                                           (run.memory, p.memory.kind, memory_config,
                                            MEMORY_MODELS[p.memory.kind](memory_config))):
        directory.mkdir(parents=True, exist_ok=True)
        write_config(directory, kind, config)
        save_weights(directory / "best.pt", model)
    spec = controller_spec(p.cma, p.vision.z_dim, p.memory.hidden_size, action)
    save_controller(run, spec, p.cma.sigma0 * np.random.default_rng(seed).standard_normal(spec.n_params),
                    {"generation": 0, "selected_by": "projection"})
    return spec


def controller_spec(cma: CMAConfig, z_dim: int, hidden_size: int, action: ActionSpec) -> ControllerSpec:
    return ControllerSpec.for_run(z_dim, hidden_size, action, cma.hidden, cma.action_low, cma.action_high)


def measure_controller(run: RunDir, workers: int, steps: int) -> RealEnv:
    """``evaluate`` of the run's controller (vision + memory + controller per step, on the CPU as the
    pipeline's checks and evaluation run it) on one episode of ``steps`` steps per worker, start-up apart."""
    start, _ = eval_seconds(run, "controller", workers, 1)
    wall, env_steps = eval_seconds(run, "controller", workers, steps)
    return RealEnv(start, env_steps / workers / max(wall - start, 1e-9), workers)


def measure_vision(p: Preset, device: torch.device, budget: float, seed: int) -> dict:
    """Seconds of one ConvVAE update at the preset's batch, of a validation batch and of an encoding pass."""
    torch.manual_seed(seed)
    model = ConvVAE(VAEConfig(z_dim=p.vision.z_dim, kl_tolerance=p.vision.kl_tolerance,
                              salient_weight=p.vision.salient_weight)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.vision.lr)
    pool = torch.randint(0, 256, (max(4 * p.vision.batch_size, ENCODE_BATCH), 64, 64, 3), dtype=torch.uint8)
    rng = torch.Generator().manual_seed(seed)
    batches = iter(())

    def step() -> None:
        nonlocal batches
        batch = next(batches, None)
        if batch is None or len(batch["frames"]) < p.vision.batch_size:
            batches = frame_batches(pool, p.vision.batch_size, rng)
            batch = next(batches)
        update(model, optimizer, batch, device, None)

    seconds, count = seconds_per_call(step, device, budget, warmup=2)
    model.eval()
    val, _ = seconds_per_call(lambda: forward(model, {"frames": pool[:VAL_BATCH]}, device), device, budget / 4,
                              warmup=0, most=3)
    with torch.no_grad():
        encode, _ = seconds_per_call(lambda: model.encode(pool[:ENCODE_BATCH].to(device)), device, budget / 4,
                                     warmup=0, most=3)
    return {"update_seconds": seconds, "updates_timed": count, "frames_per_second": p.vision.batch_size / seconds,
            "val_batch_seconds": val, "encode_frames_per_second": ENCODE_BATCH / encode}


def measure_memory(p: Preset, action: ActionSpec, device: torch.device, budget: float, seed: int) -> dict:
    """Seconds of one memory-model update (and of one validation batch) at the preset's batch and ``seq_len``,
    scaled from a shorter window when a full one would not fit ``budget`` / 4 (see the module docstring)."""
    torch.manual_seed(seed)
    m = p.memory
    model = MEMORY_MODELS[m.kind](memory_model_config(m.kind, p.vision.z_dim, action.dim, m.hidden_size,
                                                      m.reward_weight)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=m.lr)
    rng = np.random.default_rng(seed)
    length = max(m.seq_len, p.collect.max_steps)
    episodes = [{"mu": rng.standard_normal((length + 1, p.vision.z_dim), dtype=np.float32),
                 "logvar": np.full((length + 1, p.vision.z_dim), -2.0, np.float32),
                 "action": rng.uniform(-1, 1, (length, action.dim)).astype(np.float32),
                 "reward": rng.standard_normal(length, dtype=np.float32),
                 "done": np.zeros(length, np.float32)} for _ in range(4)]

    def step(window: int) -> Callable[[], None]:
        data = SequenceBatcher(episodes, window, seed=seed)
        return lambda: update(model, optimizer, next(sequence_batches(data, m.batch_size, 1)), device, m.grad_clip)

    probe = min(m.seq_len, 64)
    probe_seconds, _ = seconds_per_call(step(probe), device, 0, warmup=1, most=1)
    window = min(m.seq_len, max(probe, int(probe * budget / 4 / probe_seconds)))
    seconds, count = seconds_per_call(step(window), device, budget, warmup=1, most=36)
    model.eval()
    batch = next(sequence_batches(SequenceBatcher(episodes, window, seed=seed + 1), m.batch_size, 1))
    val, _ = seconds_per_call(lambda: forward(model, batch, device), device, 0, warmup=0, most=1)
    scale = m.seq_len / window
    return {"window": window, "updates_timed": count, "window_update_seconds": seconds,
            "probe_window": probe, "probe_update_seconds": probe_seconds, "update_seconds": seconds * scale,
            "val_batch_seconds": val * scale, "steps_per_second": m.batch_size * window / seconds}


def measure_generation(p: Preset, cma: CMAConfig, action: ActionSpec, device: torch.device, budget: float,
                       seed: int) -> dict:
    """Seconds of one CMA-ES generation's dream fitness (``population_fitness``) at ``cma``'s sizes, timed on
    a generation cut to the steps that fit ``budget`` / 2 and scaled to ``cma.dream.max_steps``."""
    torch.manual_seed(seed)
    m = p.memory
    memory = MEMORY_MODELS[m.kind](memory_model_config(m.kind, p.vision.z_dim, action.dim, m.hidden_size,
                                                       m.reward_weight)).to(device).eval()
    spec = controller_spec(cma, p.vision.z_dim, m.hidden_size, action)
    params = cma.sigma0 * torch.randn(cma.population, spec.n_params)
    starts = (torch.randn(64, p.vision.z_dim), torch.full((64, p.vision.z_dim), -2.0))

    def generation(steps: int) -> Callable[[], None]:
        config = replace(cma.dream, max_steps=steps, done_threshold=1.0)  # P(done) > 1 never: full-length dreams
        shard = BatchedDream(memory, starts, action, config, device)
        return lambda: population_fitness([shard], spec, params, action, cma.rollouts, seed)

    probe = min(cma.dream.max_steps, 5)
    probe_seconds, _ = seconds_per_call(generation(probe), device, 0, warmup=1, most=1)
    steps = min(cma.dream.max_steps, max(probe, int(probe * budget / 2 / probe_seconds)))
    seconds, count = seconds_per_call(generation(steps), device, budget / 2, warmup=0, most=5)
    dreams = cma.population * cma.rollouts
    return {"population": cma.population, "rollouts": cma.rollouts, "max_steps": cma.dream.max_steps,
            "steps_timed": steps, "generations_timed": count, "timed_seconds": seconds,
            "generation_seconds": seconds * cma.dream.max_steps / steps,
            "dream_steps_per_second": dreams * steps / seconds}


def checks_in(first: int, last: int, every: int) -> int:
    """Real-env checks ``train_cma`` makes running generations ``first`` + 1 .. ``last``: every ``every``-th and the last."""
    if not every or last <= first:
        return 0
    return sum(1 for g in range(first + 1, last + 1) if g % every == 0 or g == last)


def split_sizes(episodes: int, p: Preset) -> tuple[int, int]:
    """(training, held-out) episodes of the memory and vision stages' split of ``episodes`` episodes."""
    train, val = split_episodes(list(range(episodes)), p.vision.val_fraction, p.vision.seed)
    return len(train), len(val)


def windows_per_episode(length: int, seq_len: int) -> int:
    """Validation windows ``SequenceBatcher.iterate`` takes from one episode of ``length`` steps."""
    last = max(length - seq_len, 0)
    return len(range(0, last + 1, seq_len)) + (1 if last % seq_len else 0)


def project(p: Preset, m: dict) -> list[dict]:
    """Rows (stage, work, rate, seconds) of the whole preset as ``run_pipeline`` runs it, from measurements ``m``."""
    rows = []
    collect_env, controller_env = m["collect_env"], m["controller_env"]
    episodes, steps = p.collect.episodes, p.collect.max_steps

    def add(stage: str, work: str, rate: str, seconds: float) -> None:
        rows.append({"stage": stage, "work": work, "rate": rate, "seconds": seconds})

    # collect: the first collection, then each later round's noisy-controller episodes
    add("collect", f"{episodes:,} episodes x {steps:,} steps ({p.collect.agent})", collect_env.describe(),
        collect_env.seconds(episodes, steps))
    round_steps = p.round_max_steps or steps
    for r in range(1, p.rounds):
        add("collect", f"round {r + 1}: {p.round_episodes:,} episodes x {round_steps:,} steps (noisy-controller)",
            controller_env.describe(), controller_env.seconds(p.round_episodes, round_steps))

    # vision: epochs over the training frames with validation, then every frame encoded
    v = m["vision"]
    train, val = split_sizes(episodes, p)
    frames = steps + 1  # an episode stores max_steps + 1 frames
    epoch = (math.ceil(train * frames / p.vision.batch_size) * v["update_seconds"]
             + math.ceil(val * frames / VAL_BATCH) * v["val_batch_seconds"])
    add("vision", f"{p.vision.epochs} epochs x {train * frames:,} frames (+ validation, encoding)",
        f"{v['frames_per_second']:,.0f} frames/s (batch {p.vision.batch_size}, z={p.vision.z_dim})",
        p.vision.epochs * epoch + episodes * frames / v["encode_frames_per_second"])

    # memory: epochs per round on all the data so far; later rounds resume and encode their new episodes
    mem, cfg = m["memory"], p.memory
    seconds, updates = 0.0, 0
    for r in range(p.rounds):
        later = r * p.round_episodes  # the split is a hash: both kinds of episode fall in it alike
        train, val = split_sizes(episodes + later, p)
        count = episodes + later
        train_steps = int(train / count * (episodes * steps + later * round_steps))
        per_epoch = cfg.batches_per_epoch or max(1, train_steps // (cfg.batch_size * cfg.seq_len))
        epochs = cfg.epochs if r == 0 else p.round_memory_epochs
        windows = episodes * windows_per_episode(steps, cfg.seq_len) + later * windows_per_episode(round_steps,
                                                                                                   cfg.seq_len)
        val_batches = math.ceil(val / count * windows / cfg.batch_size)
        seconds += epochs * (per_epoch * mem["update_seconds"] + val_batches * mem["val_batch_seconds"])
        seconds += (p.round_episodes * (round_steps + 1) / v["encode_frames_per_second"]) if r else 0.0
        updates += epochs * per_epoch
    add("memory", f"{updates:,} updates of {cfg.batch_size} x {cfg.seq_len} steps (+ validation)",
        f"{mem['update_seconds']:.3g} s/update ({cfg.kind}, h={cfg.hidden_size}"
        + (f"; timed on {mem['window']}-step windows" if mem["window"] < cfg.seq_len else "") + ")", seconds)

    # dream: the scout (round 1) or CMA-ES, then each later round's CMA-ES, each with its real-env checks
    calls = []
    if p.scout is not None and p.rounds > 1:
        calls.append(("scout", p.scout, 0, p.scout.generations))
    else:
        calls.append(("cma", p.cma, 0, p.cma.generations))
    done = calls[0][3] if calls[0][0] == "cma" else 0
    for r in range(1, p.rounds):
        extra = r - 1 if p.scout is not None else r
        total = p.cma.generations + extra * p.round_generations
        calls.append(("cma", p.cma, done, total))
        done = total
    for name, cma, first, last in calls:
        g = m["dream"][name]
        label = f"dream ({name})" if p.scout is not None and p.rounds > 1 else "dream"
        add(label, f"{last - first:,} generations x {cma.population} x {cma.rollouts} dreams x "
            f"{cma.dream.max_steps:,} steps", f"{g['generation_seconds']:.3g} s/generation "
            f"({g['dream_steps_per_second']:,.0f} dream steps/s)", (last - first) * g["generation_seconds"])
        checks = checks_in(first, last, cma.real_every)
        if checks:  # each check: every candidate's episodes on one pool of workers
            check_steps, episodes = cma.real_max_steps or steps, cma.real_episodes * cma.select_candidates
            add(f"{label}: real-env checks", f"{checks} checks x {cma.select_candidates} candidates x "
                f"{cma.real_episodes} episodes x {check_steps:,} steps (controller)", controller_env.describe(),
                checks * controller_env.seconds(episodes, check_steps))

    # eval: the controller, then each baseline, on the same tracks
    eval_steps = p.eval_max_steps or steps
    for agent in ["controller", *p.baselines]:
        env = controller_env if agent == "controller" else collect_env
        add(f"eval {agent}", f"{p.eval_episodes:,} episodes x {eval_steps:,} steps", env.describe(),
            env.seconds(p.eval_episodes, eval_steps))
    return rows


def stage_of(row: dict) -> str:
    """The ``run_pipeline`` stage a row's time is counted in (``pipeline.json``'s ``seconds``)."""
    stage = row["stage"]
    return "dream" if stage.startswith("dream") else stage.replace(" ", "_")


def table(rows: list[dict]) -> str:
    total = sum(r["seconds"] for r in rows)
    lines = ["| stage | work | measured rate | projected s | projected hours |", "|---|---|---|---:|---:|"]
    lines += [f"| {r['stage']} | {r['work']} | {r['rate']} | {r['seconds']:,.0f} | {r['seconds'] / 3600:,.2f} |"
              for r in rows]
    lines.append(f"| **total** | | | **{total:,.0f}** | **{total / 3600:,.2f}** |")
    return "\n".join(lines)


def run_preset(name: str, env: str, workers: int, device: torch.device, budget: float, controller_steps: int,
               seed: int) -> dict:
    """Measure every stage of preset ``name`` on ``env``, print the table, save and return the JSON record."""
    p = presets(env)[name]
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="projection-") as tmp:
        run = RunDir(tmp)
        print(f"{name}: real env, {workers} workers ...", flush=True)
        collect_env = measure_collect(run, p, workers, seed)
        save_fresh_models(run, p, seed)
        controller_env = measure_controller(run, workers, controller_steps)
        action = run.action_spec()
    print(f"{name}: vision, memory, dream on {device} ...", flush=True)
    measured = {"collect_env": collect_env, "controller_env": controller_env,
                "vision": measure_vision(p, device, budget, seed),
                "memory": measure_memory(p, action, device, budget, seed),
                "dream": {"cma": measure_generation(p, p.cma, action, device, budget, seed)}}
    if p.scout is not None and p.rounds > 1:
        measured["dream"]["scout"] = measure_generation(p, p.scout, action, device, budget, seed)
    rows = project(p, measured)
    stages: dict[str, float] = {}
    for row in rows:
        stages[stage_of(row)] = stages.get(stage_of(row), 0.0) + row["seconds"]
    load_after = os.getloadavg()
    print(f"\n## {name} preset on {env}: projected wall clock ({workers} workers, {device})\n")
    print(table(rows))
    print(f"\nmeasured in {time.perf_counter() - started:.0f} s; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    info = machine()
    record = {"preset": name, "env": env, "workers": workers, "device": str(device), "torch": torch.__version__,
              "commit": info["commit"], "machine": info, "budget_seconds": budget,
              "controller_steps": controller_steps, "load_average_before": load_before,
              "load_average_after": load_after, "measure_seconds": time.perf_counter() - started,
              "measured": {k: asdict(v) if isinstance(v, RealEnv) else v for k, v in measured.items()},
              "rows": rows, "stages": stages, "total_seconds": sum(stages.values()), "settings": asdict(p)}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"projection-{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {path}")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", nargs="+", default=["paper"], help="preset(s) of wm run (default: paper)")
    parser.add_argument("--env", default="CarRacing-v3", help="Gymnasium id (default CarRacing-v3)")
    parser.add_argument("--workers", type=int, default=None, help="real-env worker processes (default: all cores)")
    parser.add_argument("--device", default="auto", help="where the models train and dream: auto, cpu, cuda")
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timed work per slice (default 20)")
    parser.add_argument("--controller-steps", type=int, default=300,
                        help="steps per worker of the controller's real-env measurement (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the episodes and the fresh models")
    args = parser.parse_args()
    table_of = presets(args.env)
    unknown = [n for n in args.preset if n not in table_of]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(table_of)}")
    device = pick_device(args.device)
    for name in args.preset:
        run_preset(name, args.env, args.workers or default_workers(), device, args.budget, args.controller_steps,
                   args.seed)


if __name__ == "__main__":
    main()
