"""CarRacing-v3 on full 1,000-step episodes: the laptop preset against every reference, and its ablations.

    python benchmarks/carracing.py [--seeds 0 1 2] [--memories rssm mdn] [--root runs] [--workers 2]
                                   [--skip ppo,real-cma,cem,ablations] [--ppo-seconds 370]

Every agent is scored on the same full 1,000-step tracks: pipeline seed S on the 20 tracks of
``wm eval --seed S+1``. Rows of the main table:

- the dream-trained controller of ``wm run CarRacing-v3 --preset laptop --seed S`` with each memory model
  of ``--memories`` (``ROOT/laptop_KIND_sS``, the runs of ``benchmarks/laptop.py``: a finished run is read
  back, not rerun; default: the preset's RSSM) and the random policy;
- SB3 PPO from pixels (rl-zoo's CarRacing settings) trained with the compute of the pipeline's training
  wall clock on 2 cores: ``--ppo-seconds`` (default: README's first command's training stages, timed on
  a quiet 2-core machine) x ``--cores`` of CPU time, so other work on the machine cannot starve it;
- CMA-ES in the *real* env (Ha & Schmidhuber's protocol) on the seed run's V and M (the first of
  ``--memories``), given as many real steps as the pipeline's real-env checks (the same real steps in all);
- CEM-MPC in that run's memory model (one plan per step, cost per decision measured), without and with
  the dream-trained controller's expected return over ``CEM_VALUE_STEPS`` more dream steps as the
  terminal value of each plan, and in the controller's action box (``CEM_VARIANTS``);
- published full-episode results (CarRacing-v0), not measured here.

The ablation table turns each of the preset's levers off (and candidate levers on: temperature 1.15,
MOPO-style pessimism) in round 2 of one seed's run (same data, same VAE, same budget)
beside a rerun of the preset itself, since CMA-ES's path also depends on the thread count (the first of
``--memories``; ``ROOT/ablate_KIND_sS_I``). Resumable: finished parts are read back. Writes
``ROOT/carracing.json`` and ``ROOT/carracing.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from laptop import run_name, seed_result
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

from worldmodels.collect.driver import drive, episode_seed
from worldmodels.dream.cma import train_cma
from worldmodels.dream.evolution import Generation, evolve
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.models.controller import ControllerSpec
from worldmodels.pipeline import presets
from worldmodels.report.page import LITERATURE, LITERATURE_SETTING
from worldmodels.runs.artifacts import load_memory, load_vision, save_controller
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.training.memory import train_memory

ENV = "CarRacing-v3"
FULL = 1000  # steps of a full CarRacing episode
PRESET = presets(ENV)["laptop"]
# CEM-MPC in the memory model: horizon, candidates, iterations, elites; one plan per real step.
CEM = dict(horizon=12, candidates=200, iterations=4, elites=20)
CEM_TRACKS = 10
CEM_VALUE_STEPS = 20  # dream steps of the controller's terminal value (``--algo cma``)
# CEM-MPC variants: cache suffix -> (row label, agent options beyond CEM).
CEM_VARIANTS = {
    "": ("", {}),
    "_value": (f", + controller value over {CEM_VALUE_STEPS} steps", dict(algo="cma", value_steps=CEM_VALUE_STEPS)),
    "_capped": (", the controller's action bounds", dict(action_low=PRESET.cma.action_low,
                                                          action_high=PRESET.cma.action_high)),
}
# Round 2 of the laptop preset with one lever turned off: (memory overrides, CMA-ES overrides).
ABLATIONS = {
    "preset": ({}, {}),
    "full action range (no gas cap, brake allowed)": ({}, dict(action_low=None, action_high=None)),
    "dreams from first frames only": ({}, dict(dream=replace(PRESET.cma.dream, start="first"))),
    "no off-track done label": (dict(done_label="terminated"), {}),
    "checks of the mean only, on 250 steps": ({}, dict(select_candidates=1, real_max_steps=250)),
    "a lever not in the preset: dream temperature 1.15": ({}, dict(dream=replace(PRESET.cma.dream, temperature=1.15))),
    "a lever not in the preset: pessimism, ensemble disagreement penalty (beta -0.05)":
        ({}, dict(intrinsic="disagreement", beta=-0.05)),
    "a lever not in the preset: pessimism, ensemble disagreement penalty (beta -0.2)":
        ({}, dict(intrinsic="disagreement", beta=-0.2)),
}


def mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.1f} +- {v.std():.1f}"


def wins(returns, random_returns) -> int:
    """Tracks where the agent's return beats random's on the same track."""
    return int(np.sum(np.asarray(returns) > np.asarray(random_returns)))


def shared_run(base: RunDir, root: Path, stages: tuple[str, ...]) -> RunDir:
    """A run on ``base``'s episodes (linked) with copies of its ``stages`` (e.g. vision, latents)."""
    run = RunDir(root)
    if not run.exists():
        root.mkdir(parents=True)
        shutil.copy(base.meta_path, run.meta_path)
        run.episodes.symlink_to(base.episodes.resolve(), target_is_directory=True)
        for stage in stages:
            shutil.copytree(base.root / stage, run.root / stage)
    return run


def cached(path: Path, compute, *args) -> dict:
    """``path``'s JSON if a previous call finished, else ``compute(*args)`` saved there."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute(*args)
    atomic_write_json(path, result)
    return result


class StopAfter(BaseCallback):
    """Ends ``learn`` once the process has used ``cpu_seconds`` of CPU time (all its threads) since
    training began: the same compute whether or not other work shares the cores."""

    def __init__(self, cpu_seconds: float):
        super().__init__()
        self.cpu_seconds, self.start = cpu_seconds, 0.0

    def _on_training_start(self) -> None:
        self.start = time.process_time()

    def _on_step(self) -> bool:
        return time.process_time() - self.start < self.cpu_seconds


class StackedPPO:
    """A PPO policy trained on 2 stacked frames, as an agent for ``drive`` (``act(obs [1, 64, 64, 3])``)."""

    def __init__(self, model: PPO, stack: int):
        self.model, self.frames = model, deque(maxlen=stack)

    def seed(self, seed: int) -> None:
        self.model.set_random_seed(seed)

    def reset(self, batch: int = 1):
        self.frames.clear()
        return None

    def act(self, obs, state):
        while len(self.frames) < self.frames.maxlen - 1:  # VecFrameStack starts with zero frames
            self.frames.append(np.zeros_like(obs))
        self.frames.append(obs)
        return self.model.predict(np.concatenate(self.frames, axis=-1), deterministic=True)[0], state


def ppo_on_pixels(run: RunDir, cpu_seconds: float, seed: int, tracks: int, out: Path) -> dict:
    """SB3 PPO (CnnPolicy, rl-zoo's CarRacing hyperparameters) on the run's 64x64 pixel env on full
    episodes for ``cpu_seconds`` of CPU time, then scored on ``tracks`` full tracks of ``seed + 1``."""
    stack = 2
    env = VecNormalize(VecFrameStack(DummyVecEnv([lambda: run.make_env(max_steps=FULL)] * 8), stack),
                       norm_obs=False, norm_reward=True)
    model = PPO("CnnPolicy", env, n_steps=512, batch_size=128, n_epochs=10, gamma=0.99, gae_lambda=0.95,
                learning_rate=1e-4, clip_range=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, use_sde=True,
                sde_sample_freq=4, seed=seed, device="cpu", verbose=0,
                policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn=torch.nn.GELU,
                                   net_arch=dict(pi=[256], vf=[256])))
    t0, cpu0 = time.perf_counter(), time.process_time()
    model.learn(10**9, callback=StopAfter(cpu_seconds))
    train = {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0,
             "env_steps": int(model.num_timesteps)}
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "ppo.zip"))
    agent, eval_env = StackedPPO(model, stack), run.make_env(max_steps=FULL)
    returns = [drive(eval_env, agent, episode_seed(seed + 1, i)).total_reward for i in range(tracks)]
    return {"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns)), **train}


def cma_in_real_env(run: RunDir, budget: int, seed: int, population: int = 8) -> dict:
    """CMA-ES on the preset's controller (same features, same action bounds) whose fitness is one full
    real episode per candidate, a fresh track per generation, until ``budget`` real steps are spent.
    Ha & Schmidhuber's CarRacing protocol at the dream pipeline's real-step budget."""
    memory = load_memory(run, "cpu", load_vision(run, "cpu"))
    spec = ControllerSpec.for_run(memory.z_dim, memory.hidden_size, run.action_spec(),
                                  low=PRESET.cma.action_low, high=PRESET.cma.action_high)
    steps, history = 0, []

    def fitness(solutions: np.ndarray, generation: int) -> np.ndarray:
        nonlocal steps
        scores = []
        for params in solutions:
            r = evaluate(run, "controller", episodes=1, workers=1, seed=10_000 + generation, max_steps=FULL,
                         progress=False, write=False, agent_options={"params": params.tolist(), "spec": spec.to_dict()})
            scores.append(r["mean"])
            steps += sum(r["lengths"])
        return np.array(scores)

    def on_generation(g: Generation) -> None:
        history.append({"generation": g.number, "best": float(g.fitness.max()), "mean": float(g.fitness.mean()),
                        "env_steps": steps})
        print(f"real-env CMA-ES generation {g.number}: best {g.fitness.max():.1f}, {steps} real steps")

    generations = max(1, budget // (population * FULL))
    mean = evolve(np.zeros(spec.n_params), PRESET.cma.sigma0, population, fitness, generations, seed=seed,
                  on_generation=on_generation)
    save_controller(run, spec, mean, {"selected_by": "real-env CMA-ES"})
    return {"history": history, "env_steps": steps, "generations": generations}


def real_cma(base: RunDir, root: Path, budget: int, seed: int, workers: int | None) -> dict:
    """``cma_in_real_env`` on a copy of ``base``'s V and M, then its controller scored like the preset's."""
    run = shared_run(base, root, ("vision", "memory", "latents"))
    t0 = time.perf_counter()
    trained = cma_in_real_env(run, budget, seed)
    r = evaluate(run, "controller", episodes=PRESET.eval_episodes, workers=workers, seed=seed + 1, max_steps=FULL,
                 progress=False)
    return {**trained, "returns": r["returns"], "seconds": time.perf_counter() - t0}


def cem_mpc(base: RunDir, seed: int, workers: int | None, variant: str) -> dict:
    """CEM-MPC (``CEM`` and the options of ``CEM_VARIANTS[variant]``) in ``base``'s memory model on
    ``CEM_TRACKS`` full tracks of ``seed + 1``."""
    r = evaluate(base, "cem", episodes=CEM_TRACKS, workers=workers, seed=seed + 1, max_steps=FULL, progress=True,
                 write=False, agent_options={**CEM, **CEM_VARIANTS[variant][1]})
    parallel = min(workers or 2, CEM_TRACKS)
    return {"returns": r["returns"], "seconds": r["seconds"], "per_decision": r["seconds"] * parallel / sum(r["lengths"])}


def ablation(base: RunDir, root: Path, name: str, seed: int, workers: int | None, memory: str) -> dict:
    """Round 2 of ``base`` (its final data and VAE; memory model ``memory``) rerun with one lever off;
    scored like the preset."""
    memory_overrides, cma_overrides = ABLATIONS[name]
    run = shared_run(base, root, ("vision", "latents") if memory_overrides else ("vision", "latents", "memory"))
    epochs = PRESET.memory.epochs + PRESET.round_memory_epochs
    t0 = time.perf_counter()
    if memory_overrides:
        train_memory(run, replace(PRESET.memory, kind=memory, epochs=epochs, seed=seed, device="cpu",
                                  **memory_overrides),
                     progress=False)
    train_cma(run, replace(PRESET.cma, workers=workers, seed=seed, device="cpu", **cma_overrides), progress=False)
    seconds = time.perf_counter() - t0
    r = evaluate(run, "controller", episodes=PRESET.eval_episodes, workers=workers, seed=seed + 1, max_steps=FULL,
                 progress=False)
    checks = json.loads((run.controller / "history.json").read_text())["real"]
    return {"lever": name, "returns": r["returns"], "mean": r["mean"], "std": r["std"], "seconds": seconds,
            "check_steps": checks[-1].get("env_steps", 0) if checks else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--memories", nargs="+", default=[PRESET.memory.kind],
                        help="memory models of the dream controllers' rows; the first is the base of the references "
                             "and ablations (default: the preset's)")
    parser.add_argument("--root", type=Path, default=Path("runs"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma-separated: ppo,real-cma,cem,ablations")
    parser.add_argument("--ppo-seconds", type=float, default=370.0,
                        help="the wall clock PPO is matched to (default: README's first command's training stages, "
                             "collect + vision + memory + dream, timed on a quiet 2-core machine)")
    parser.add_argument("--cores", type=int, default=2, help="PPO's CPU time = ppo-seconds x cores")
    parser.add_argument("--reference-seeds", type=int, nargs="+", default=[0],
                        help="pipeline seeds that PPO, real-env CMA-ES and CEM-MPC are run for")
    parser.add_argument("--ablation-seed", type=int, default=0)
    parser.add_argument("--cached-only", action="store_true", help="print what finished; compute nothing new")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.workers or 2)
    root = args.root

    kind = args.memories[0]
    pipelines = {m: {s: seed_result(ENV, root, s, args.workers, m) for s in args.seeds} for m in args.memories}
    evals = {m: {s: {a: json.loads((root / run_name(s, m) / "eval" / f"{a}.json").read_text())
                     for a in ("controller", "random")} for s in args.seeds} for m in args.memories}
    random_returns = {s: evals[kind][s]["random"]["returns"] for s in args.seeds}
    rows = []

    def part(path: Path, compute, *compute_args) -> dict | None:
        return None if args.cached_only and not path.exists() else cached(path, compute, *compute_args)

    def row(agent: str, seed: int, returns, real_steps, seconds, note: str = "") -> None:
        rows.append({"agent": agent, "seed": seed, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
                     "tracks": len(returns), "wins": wins(returns, random_returns[seed][:len(returns)]),
                     "real_steps": real_steps, "seconds": seconds, "note": note})

    for m in args.memories:
        for s in args.seeds:
            steps = pipelines[m][s]["real_env_steps"]
            train_seconds = sum(v for k, v in pipelines[m][s]["seconds"].items() if not k.startswith("eval"))
            row(f"dream controller (laptop preset, {m.upper()})", s, evals[m][s]["controller"]["returns"],
                steps["episodes"] + steps["checks"], train_seconds)
    for s in args.seeds:
        row("random policy", s, random_returns[s], 0, 0)
    for s in args.reference_seeds:
        base = RunDir(root / run_name(s, kind))
        steps = pipelines[kind][s]["real_env_steps"]
        if "ppo" not in skip:
            r = part(root / f"ppo_pixels_s{s}.json", ppo_on_pixels, base, args.ppo_seconds * args.cores, s,
                     PRESET.eval_episodes, root / f"ppo_pixels_s{s}")
            r and row("SB3 PPO from pixels, equal compute", s, r["returns"], r["env_steps"], r["seconds"],
                f"{r['cpu_seconds']:.0f} CPU-s ({args.ppo_seconds:.0f} s x {args.cores} cores)")
        if "real-cma" not in skip:
            r = part(root / f"realcma_{kind}_s{s}.json", real_cma, base, root / f"realcma_{kind}_s{s}",
                     steps["checks"], s, args.workers)
            r and row(f"CMA-ES in the real env, equal real steps ({kind.upper()}'s V and M)", s, r["returns"], steps["episodes"] + r["env_steps"],
                r["seconds"], f"{r['generations']} generations x 8")
        if "cem" not in skip:
            for variant, (label, _) in CEM_VARIANTS.items():
                r = part(root / f"cem_{kind}_s{s}{variant}.json", cem_mpc, base, s, args.workers, variant)
                r and row(f"CEM-MPC in the {kind.upper()} (H={CEM['horizon']}, N={CEM['candidates']}, "
                          f"I={CEM['iterations']}{label})", s, r["returns"], steps["episodes"] + steps["checks"], 0,
                          f"{1000 * r['per_decision']:.0f} ms per decision")

    lines = ["| agent | seed | full-episode return | tracks won vs random | real env steps | training wall clock (s) | note |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['agent']} | {r['seed']} | {r['mean']:.1f} +- {r['std']:.1f} | {r['wins']}/{r['tracks']} | "
                     f"{r['real_steps']:,} | {r['seconds']:.0f} | {r['note']} |")
    for agent in dict.fromkeys(r["agent"] for r in rows):
        means = [r["mean"] for r in rows if r["agent"] == agent]
        if len(means) > 1:
            lines.append(f"| **{agent}, {len(means)} seeds** | | **{mean_std(means)}** | | | | std over seeds |")
    lines += [f"| {name} [{ref}] | | {m:.0f} +- {sd:.0f} | | | | literature: {LITERATURE_SETTING} |"
              for name, m, sd, ref in LITERATURE]
    table = "\n".join(lines)

    ablations = []
    if "ablations" not in skip:
        s, base = args.ablation_seed, RunDir(root / run_name(args.ablation_seed, kind))
        for i, name in enumerate(ABLATIONS):
            a = part(root / f"ablate_{kind}_s{s}_{i}.json", ablation, base, root / f"ablate_{kind}_s{s}_{i}", name, s,
                     args.workers, kind)
            ablations += [a] if a else []
        lines = [f"| round 2 of seed {s}'s run ({kind.upper()}) | full-episode return | tracks won vs random | real-env check steps | "
                 "memory + CMA-ES (s) |", "|---|---:|---:|---:|---:|"]
        for a in ablations:
            lines.append(f"| {a['lever']} | {a['mean']:.1f} +- {a['std']:.1f} | {wins(a['returns'], random_returns[s])}/"
                         f"{len(a['returns'])} | {a['check_steps']:,} | {a['seconds']:.0f} |")
        table += "\n\nAblations (each lever off, the rest of the preset on):\n\n" + "\n".join(lines)

    atomic_write_json(root / "carracing.json", {"seeds": args.seeds, "memories": args.memories, "max_steps": FULL, "rows": rows,
                                                "ablations": ablations, "ppo_seconds": args.ppo_seconds,
                                                "cores": args.cores})
    (root / "carracing.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
