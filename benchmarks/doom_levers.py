"""What limits the doom preset's score: the controller's optimiser or the world model? Probes on finished runs.

    python benchmarks/doom_levers.py [--root runs] [--preset doom] [--tag r8] [--set rounds=8 ...] [--seeds 0]
                                     [--cma POPULATION ROLLOUTS GENERATIONS] [--memory HIDDEN EPOCHS [--hit-cost C]]
                                     [--pool SEED ... --pool-epochs EPOCHS] [--vision EPOCHS]
                                     [--cell [SUFFIX]]

On the final data, latents and vision model of each finished run ``ROOT/PRESETTAG_sS`` (``benchmarks/doom.py``
makes them; ``--set`` must repeat the overrides it was run with), a fresh controller is trained by CMA-ES only
in the dream and scored on the pipeline's own 100 evaluation episodes (seed S + 1), beside the pipeline's
controller on the same episodes:

- ``--cma P R G``: the run's own memory model, CMA-ES with population P x R dreams for G generations (the
  preset's other settings), in ``RUN/controller_cmaPxRgG``;
- ``--memory H E``: a fresh memory model of hidden size H trained E epochs (the preset's batches per epoch,
  windows and done weight; no early stopping) on all the run's episodes, then the preset's first-round CMA-ES,
  in ``ROOT/PRESETTAG_sS_memoryHeE`` (which links the run's episodes, latents and vision); with ``--hit-cost C``
  its reward head learns the reward less C at each hit the frames show (``MemoryTrainConfig.hit_cost``), in
  ``ROOT/PRESETTAG_sS_memoryHeE_hitsC``: the same probe without it is the control.
- ``--pool S2 S3 ...`` (with ``--pool-epochs E``): more data of the same kind: the episodes of runs S, S2, ... (each
  seed's random and controller episodes) in one run ``ROOT/PRESETTAG_sS_poolS2S3eE``, encoded by run S's VAE, a fresh
  memory model of the preset's size trained E epochs on all of them, then the preset's first-round CMA-ES; beside
  it, ``--memory`` at the preset's hidden size and E epochs on run S's episodes alone is the control.
- ``--vision E``: a fresh VAE of the preset's size trained E epochs on all the run's episodes (the preset's VAE saw
  only the first round's random ones), every episode re-encoded, then a fresh memory model of the preset's size for
  60 epochs and the preset's first-round CMA-ES, in ``ROOT/PRESETTAG_sS_visionE`` (which links the run's episodes);
  ``--memory`` at the preset's hidden size and 60 epochs is the control. Where a probe with fewer VAE epochs exists,
  its VAE trains on to E epochs (the vision stage resumes from its last epoch) instead of starting over.
- ``--cell [SUFFIX]``: the controller sees the LSTM's cell state c beside z and h, as Ha's VizDoom controller does
  (``MemoryTrainConfig.cell_features``): the memory model of ``ROOT/PRESETTAG_sS`` + SUFFIX (e.g. ``_vision3``, a
  probe above; default the run itself) unchanged but for that flag, then the preset's first-round CMA-ES, in
  ``ROOT/PRESETTAG_sS``SUFFIX``_cell``; that run's controller trained the same way on z and h is the control.

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
from worldmodels.runs.episodes import episode_path, list_episodes
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.training.latents import encode_latents
from worldmodels.training.memory import train_memory
from worldmodels.training.vision import train_vision

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


def probe_view(source: RunDir, name: str, linked: tuple[str, ...]) -> tuple[RunDir, dict | None]:
    """The probe's run ``ROOT/NAME`` beside ``source``, its ``linked`` parts linked to ``source``'s and its run.json
    copied; with the probe's result when it has finished already (its ``probe.json``)."""
    view = RunDir(source.root.parent / name)
    path = view.controller / "probe.json"
    if path.exists():
        return view, json.loads(path.read_text())
    view.root.mkdir(exist_ok=True)
    for part in linked:
        if not getattr(view, part).exists():
            getattr(view, part).symlink_to(getattr(source, part).resolve())
    shutil.copy(source.meta_path, view.meta_path)
    return view, None


def memory_probe(run: RunDir, preset, seed: int, hidden: int, epochs: int, hit_cost: float = 0.0) -> dict:
    hits = f"_hits{hit_cost:g}" if hit_cost else ""
    view, done = probe_view(run, f"{run.root.name}_memory{hidden}e{epochs}{hits}", ("episodes", "latents", "vision"))
    if done:
        return done
    t0 = time.perf_counter()
    train_memory(view, replace(preset.memory, hidden_size=hidden, epochs=epochs, patience=epochs, seed=seed,
                               hit_cost=hit_cost), progress=False)
    t1 = time.perf_counter()
    train_cma(view, replace(preset.cma, seed=seed, workers=1), progress=False)
    summary = json.loads((view.memory / "summary.json").read_text())
    result = {"probe": f"memory h {hidden}, {epochs} epochs{f', hit cost {hit_cost:g}' if hit_cost else ''}; CMA-ES {preset.cma.population} x {preset.cma.rollouts} "
                       f"dreams, {preset.cma.generations} generations", "seed": seed, "memory_seconds": t1 - t0,
              "cma_seconds": time.perf_counter() - t1, "memory_val_loss": summary.get("best_val_loss"),
              "real": score(run, view, preset, seed)}
    atomic_write_json(view.controller / "probe.json", result)
    return result


def pool_probe(run: RunDir, pool: list[int], preset, seed: int, epochs: int) -> dict:
    others = [RunDir(str(run.root).removesuffix(f"_s{seed}") + f"_s{other}") for other in pool]
    view = RunDir(run.root.parent / f"{run.root.name}_pool{''.join(map(str, pool))}e{epochs}")
    path = view.controller / "probe.json"
    if path.exists():
        return json.loads(path.read_text())
    for part in ("episodes", "latents"):
        getattr(view, part).mkdir(parents=True, exist_ok=True)
    if not view.vision.exists():
        view.vision.symlink_to(run.vision.resolve())
    shutil.copy(run.meta_path, view.meta_path)
    shutil.copy(run.latents / "meta.json", view.latents / "meta.json")  # run S's latents are up to date: linked
    index = 0
    for source in [run] + others:
        for _, episode in sorted(list_episodes(source.episodes).items()):
            target = episode_path(view.episodes, index)
            if not target.exists():
                target.symlink_to(episode.resolve())
            latent = episode_path(source.latents, int(episode.stem.split("_")[1]))
            if source is run and latent.exists() and not episode_path(view.latents, index).exists():
                episode_path(view.latents, index).symlink_to(latent.resolve())
            index += 1
    t0 = time.perf_counter()
    encode_latents(view, torch.device("cpu"), progress=False)
    train_memory(view, replace(preset.memory, epochs=epochs, patience=epochs, seed=seed), progress=False)
    t1 = time.perf_counter()
    train_cma(view, replace(preset.cma, seed=seed, workers=1), progress=False)
    seeds, c = ", ".join(map(str, [seed, *pool])), preset.cma
    result = {"probe": f"{index} episodes (seeds {seeds}); memory h {preset.memory.hidden_size}, {epochs} epochs; "
                       f"CMA-ES {c.population} x {c.rollouts} dreams, {c.generations} generations", "seed": seed,
              "episodes": index, "memory_seconds": t1 - t0, "cma_seconds": time.perf_counter() - t1,
              "real": score(run, view, preset, seed)}
    atomic_write_json(path, result)
    return result


def vision_probe(run: RunDir, preset, seed: int, epochs: int, memory_epochs: int = 60) -> dict:
    view, done = probe_view(run, f"{run.root.name}_vision{epochs}", ("episodes",))
    if done:
        return done
    shorter = [e for e in range(epochs - 1, 0, -1) if (run.root.parent / f"{run.root.name}_vision{e}/vision").exists()]
    if shorter and not view.vision.exists():  # the VAE of a shorter probe trains on to E epochs (the stage resumes)
        shutil.copytree(run.root.parent / f"{run.root.name}_vision{shorter[0]}/vision", view.vision)
    t0 = time.perf_counter()
    train_vision(view, replace(preset.vision, epochs=epochs, patience=epochs, seed=seed), progress=False)
    train_memory(view, replace(preset.memory, epochs=memory_epochs, patience=memory_epochs, seed=seed), progress=False)
    t1 = time.perf_counter()
    train_cma(view, replace(preset.cma, seed=seed, workers=1), progress=False)
    c = preset.cma
    result = {"probe": f"VAE {epochs} epochs on all {len(list_episodes(view.episodes))} episodes; memory h "
                       f"{preset.memory.hidden_size}, {memory_epochs} epochs; CMA-ES {c.population} x {c.rollouts} "
                       f"dreams, {c.generations} generations", "seed": seed,
              "models_seconds": t1 - t0, "cma_seconds": time.perf_counter() - t1, "real": score(run, view, preset, seed)}
    atomic_write_json(view.controller / "probe.json", result)
    return result


def cell_probe(run: RunDir, preset, seed: int, suffix: str) -> dict:
    base = RunDir(run.root.parent / f"{run.root.name}{suffix}")
    view, done = probe_view(base, f"{base.root.name}_cell", ("episodes", "latents", "vision"))
    if done:
        return done
    shutil.copytree(base.memory, view.memory, dirs_exist_ok=True)
    config = json.loads((view.memory / "config.json").read_text())
    config["config"]["cell_features"] = True  # the same LSTM: only what features(state) returns changes
    atomic_write_json(view.memory / "config.json", config)
    t0 = time.perf_counter()
    train_cma(view, replace(preset.cma, seed=seed, workers=1), progress=False)
    c = preset.cma
    result = {"probe": f"controller on [z, h, c] in the memory model of {base.root.name}; CMA-ES {c.population} x "
                       f"{c.rollouts} dreams, {c.generations} generations", "seed": seed,
              "cma_seconds": time.perf_counter() - t0, "real": score(run, view, preset, seed)}
    atomic_write_json(view.controller / "probe.json", result)
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
    parser.add_argument("--hit-cost", type=float, default=0.0,
                        help="--memory's reward head learns this cost at each hit the frames show (default 0)")
    parser.add_argument("--pool", type=int, nargs="+", metavar="SEED", help="other seeds whose episodes join")
    parser.add_argument("--pool-epochs", type=int, default=60, help="the pooled memory model's epochs (default 60)")
    parser.add_argument("--vision", type=int, metavar="EPOCHS", help="a fresh VAE's epochs on all the run's episodes")
    parser.add_argument("--cell", nargs="?", const="", metavar="SUFFIX",
                        help="a controller on [z, h, c] in the memory model of the run + SUFFIX (e.g. _vision3)")
    args = parser.parse_args()
    if not (args.cma or args.memory or args.pool or args.vision or args.cell is not None):
        parser.error("give --cma P R G, --memory H E, --pool SEED ..., --vision E and/or --cell [SUFFIX]")
    torch.set_num_threads(1)
    preset = variant(ENV, args.preset, args.sets)
    print("| seed | probe | probe's controller (tics) | pipeline's controller | minutes |\n|---:|---|---:|---:|---:|")
    for seed in args.seeds:
        run = RunDir(args.root / f"{args.preset}{args.tag}_s{seed}")
        if not (run.eval / "controller.json").exists():
            raise SystemExit(f"{run.root} is not a finished run of benchmarks/doom.py (no eval/controller.json)")
        own = json.loads((run.eval / "controller.json").read_text())
        results = ([cma_probe(run, preset, seed, *args.cma)] if args.cma else []) + \
                  ([memory_probe(run, preset, seed, *args.memory, args.hit_cost)] if args.memory else []) + \
                  ([pool_probe(run, args.pool, preset, seed, args.pool_epochs)] if args.pool else []) + \
                  ([vision_probe(run, preset, seed, args.vision)] if args.vision else []) + \
                  ([cell_probe(run, preset, seed, args.cell)] if args.cell is not None else [])
        for r in results:
            minutes = (r.get("memory_seconds", 0) + r.get("models_seconds", 0) + r["cma_seconds"]) / 60
            print(f"| {seed} | {r['probe']} | {r['real']['mean']:.1f} +- {r['real']['std']:.1f} | "
                  f"{own['mean']:.1f} +- {own['std']:.1f} | {minutes:.0f} |", flush=True)


if __name__ == "__main__":
    main()
