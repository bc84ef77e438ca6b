"""What limits the doom preset's score: the controller's optimiser or the world model? Probes on finished runs.

    python benchmarks/doom_levers.py [--root runs] [--preset doom] [--tag r8] [--set rounds=8 ...] [--seeds 0]
                                     [--cma POPULATION ROLLOUTS GENERATIONS] [--memory HIDDEN EPOCHS]

On the final data, latents and vision model of each finished run ``ROOT/PRESETTAG_sS`` (``benchmarks/doom.py``
makes them; ``--set`` must repeat the overrides it was run with), a fresh controller is trained by CMA-ES only
in the dream and scored on the pipeline's own 100 evaluation episodes (seed S + 1), beside the pipeline's
controller on the same episodes:

- ``--cma P R G``: the run's own memory model, CMA-ES with population P x R dreams for G generations (the
  preset's other settings), in ``RUN/controller_cmaPxRgG``;
- ``--memory H E``: a fresh memory model of hidden size H trained E epochs (the preset's batches per epoch,
  windows and done weight; no early stopping) on all the run's episodes, then the preset's first-round CMA-ES,
  in ``ROOT/PRESETTAG_sS_memoryHeE`` (which links the run's episodes, latents and vision).

Finished probes are read back from their ``probe.json``. Prints one Markdown row per probe and seed; one torch
thread and one env worker, so two probes can share a 2-core machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch
from doom import variant

from worldmodels.dream.cma import train_cma
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.runs.artifacts import load_controller
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.training.memory import train_memory

ENV = "VizdoomTakeCover-v1"


def score(run: RunDir, view: RunDir, preset, seed: int) -> dict:
    """``view``'s controller on the pipeline's evaluation episodes of ``run`` (``view`` shares its env)."""
    spec, params, _ = load_controller(view)
    real = evaluate(view, "controller", episodes=preset.eval_episodes, workers=1, seed=seed + 1,
                    max_steps=preset.eval_max_steps, write=False, progress=False,
                    agent_options={"params": params.tolist(), "spec": spec.to_dict()})
    return {k: real[k] for k in ("mean", "std", "min", "max", "episodes")}


def cma_probe(run: RunDir, preset, seed: int, population: int, rollouts: int, generations: int) -> dict:
    view = copy.copy(run)
    view.controller = run.root / f"controller_cma{population}x{rollouts}g{generations}"
    path = view.controller / "probe.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    train_cma(view, replace(preset.cma, population=population, rollouts=rollouts, generations=generations, seed=seed,
                            workers=1), progress=False)
    result = {"probe": f"CMA-ES {population} x {rollouts} dreams, {generations} generations", "seed": seed,
              "cma_seconds": time.perf_counter() - t0, "real": score(run, view, preset, seed)}
    atomic_write_json(path, result)
    return result


def memory_probe(run: RunDir, preset, seed: int, hidden: int, epochs: int) -> dict:
    view = RunDir(run.root.parent / f"{run.root.name}_memory{hidden}e{epochs}")
    path = view.controller / "probe.json"
    if path.exists():
        return json.loads(path.read_text())
    view.root.mkdir(exist_ok=True)
    for part in ("episodes", "latents", "vision"):
        if not getattr(view, part).exists():
            getattr(view, part).symlink_to(getattr(run, part).resolve())
    shutil.copy(run.meta_path, view.meta_path)
    t0 = time.perf_counter()
    train_memory(view, replace(preset.memory, hidden_size=hidden, epochs=epochs, patience=epochs, seed=seed),
                 progress=False)
    t1 = time.perf_counter()
    train_cma(view, replace(preset.cma, seed=seed, workers=1), progress=False)
    summary = json.loads((view.memory / "summary.json").read_text())
    result = {"probe": f"memory h {hidden}, {epochs} epochs; CMA-ES {preset.cma.population} x {preset.cma.rollouts} "
                       f"dreams, {preset.cma.generations} generations", "seed": seed, "memory_seconds": t1 - t0,
              "cma_seconds": time.perf_counter() - t1, "memory_val_loss": summary.get("best_val_loss"),
              "real": score(run, view, preset, seed)}
    atomic_write_json(path, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs"))
    parser.add_argument("--preset", default="doom")
    parser.add_argument("--tag", default="", help="the runs' tag in benchmarks/doom.py (ROOT/PRESETTAG_sS)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="sets",
                        help="the overrides the runs were made with, e.g. rounds=8")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cma", type=int, nargs=3, metavar=("POPULATION", "ROLLOUTS", "GENERATIONS"))
    parser.add_argument("--memory", type=int, nargs=2, metavar=("HIDDEN", "EPOCHS"))
    args = parser.parse_args()
    if not args.cma and not args.memory:
        parser.error("give --cma P R G and/or --memory H E")
    torch.set_num_threads(1)
    preset = variant(ENV, args.preset, args.sets)
    print("| seed | probe | probe's controller (tics) | pipeline's controller | minutes |\n|---:|---|---:|---:|---:|")
    for seed in args.seeds:
        run = RunDir(args.root / f"{args.preset}{args.tag}_s{seed}")
        if not (run.eval / "controller.json").exists():
            raise SystemExit(f"{run.root} is not a finished run of benchmarks/doom.py (no eval/controller.json)")
        own = json.loads((run.eval / "controller.json").read_text())
        results = ([cma_probe(run, preset, seed, *args.cma)] if args.cma else []) + \
                  ([memory_probe(run, preset, seed, *args.memory)] if args.memory else [])
        for r in results:
            minutes = (r.get("memory_seconds", 0) + r["cma_seconds"]) / 60
            print(f"| {seed} | {r['probe']} | {r['real']['mean']:.1f} +- {r['real']['std']:.1f} | "
                  f"{own['mean']:.1f} +- {own['std']:.1f} | {minutes:.0f} |", flush=True)


if __name__ == "__main__":
    main()
