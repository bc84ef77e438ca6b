"""VizDoom TakeCover: the doom preset over pipeline seeds, and the dream's temperature against real survival.

    python benchmarks/doom.py [--env VizdoomTakeCover-v1] [--seeds 0 1 2] [--root runs] [--workers N]
                              [--preset doom] [--taus 0.1 0.5 1.0 1.15 1.3] [--tau-seed 0] [--dreams 100]

Runs (or resumes; a finished seed is only read back) ``wm run ENV --preset doom --seed S`` into
``ROOT/doom_sS`` for each seed and prints one row per seed: steps survived by the dream-trained
controller and by the random policy over the same 100 real episodes (mean +- std), episodes that
reached the 2,100-step cap, minutes per stage; then the mean over seeds. With ``--taus``, the
temperature table of Ha & Schmidhuber (their Table 2): on ``--tau-seed``'s data, vision and memory
models, a fresh controller per temperature tau (the preset's CMA-ES, same budget and seed, in
``ROOT/doom_sS/controller_tauT``; the preset's own tau is the pipeline's controller), its dream
score (mean survival over ``--dreams`` fresh dreams at that tau, capped as the real game) beside its
real score on the pipeline's 100 evaluation episodes. Writes ``ROOT/doom_seeds.json`` and
``ROOT/doom_temperatures.json``; finished temperatures are read back.
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import machine

from worldmodels.core.device import pick_device
from worldmodels.dream.cma import dream_score, train_cma
from worldmodels.dream.imagine import BatchedDream, dream_starts
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.pipeline import presets, run_pipeline
from worldmodels.runs.artifacts import load_controller, load_world_model
from worldmodels.runs.rundir import RunDir, atomic_write_json


def seed_result(env: str, preset: str, root: Path, seed: int, workers: int | None) -> dict:
    """One seed's pipeline summary (run or read back) with the controller's and random's survival."""
    run = RunDir(root / f"{preset}_s{seed}")
    path = run.root / "pipeline.json"
    summary = json.loads(path.read_text()) if path.exists() else run_pipeline(env, run, preset, workers, seed=seed)
    cap = summary["settings"]["eval_max_steps"]
    lengths = {a: json.loads((run.eval / f"{a}.json").read_text())["lengths"] for a in ("controller", "random")}
    return {"seed": seed, "controller": summary["scores"]["controller"], "random": summary["scores"]["random"],
            "capped": {a: int(np.sum(np.array(v) >= cap)) for a, v in lengths.items()}, "cap": cap,
            "real_env_steps": summary["real_env_steps"], "seconds": summary["seconds"],
            "minutes": sum(summary["seconds"].values()) / 60}


def tau_view(run: RunDir, tau: float) -> RunDir:
    """``run`` with its controller in ``RUN/controller_tauT`` (data, vision and memory shared)."""
    view = copy.copy(run)
    view.controller = run.root / f"controller_tau{tau:g}"
    return view


def tau_result(env: str, preset: str, root: Path, seed: int, tau: float, workers: int | None, dreams: int) -> dict:
    """Dream score and real score of the controller CMA-ES trains at temperature ``tau`` (run or read back)."""
    p = presets(env)[preset]
    run = RunDir(root / f"{preset}_s{seed}")
    cma = replace(p.cma, dream=replace(p.cma.dream, temperature=tau), workers=workers, seed=seed)
    view = run if tau == p.cma.dream.temperature else tau_view(run, tau)
    path = view.controller / "temperature.json"
    if path.exists():
        return json.loads(path.read_text())
    train_cma(view, cma)
    spec, params, _ = load_controller(view)
    device = pick_device(cma.device)
    memory = load_world_model(run, device).memory
    dream = BatchedDream(memory, dream_starts(run.latents, cma.dream), run.action_spec(), cma.dream, device)
    dream.seed(12_345)
    if view is run:  # the pipeline's controller, already scored on these episodes
        real = json.loads((run.eval / "controller.json").read_text())
    else:
        real = evaluate(run, "controller", episodes=p.eval_episodes, workers=workers, seed=seed + 1,
                        max_steps=p.eval_max_steps, write=False,
                        agent_options={"params": params.tolist(), "spec": spec.to_dict()})
    result = {"tau": tau, "seed": seed, "dream": dream_score(dream, spec, params, run.action_spec(), dreams),
              "dreams": dreams, "dream_max_steps": cma.dream.max_steps,
              "real": {k: real[k] for k in ("mean", "std", "min", "max", "episodes")}, "controller": str(view.controller)}
    atomic_write_json(path, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="VizdoomTakeCover-v1")
    parser.add_argument("--preset", default="doom")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("runs"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--taus", type=float, nargs="*", default=[], help="dream temperatures to tabulate")
    parser.add_argument("--tau-seed", type=int, default=0, help="the pipeline seed whose data the tau table uses")
    parser.add_argument("--dreams", type=int, default=100, help="dreams per dream score")
    args = parser.parse_args()
    rows = [seed_result(args.env, args.preset, args.root, s, args.workers) for s in args.seeds]
    print("| seed | controller (steps survived) | random | episodes at the cap (controller, random) | "
          "real env steps (episodes + checks) | minutes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c, rnd, steps = r["controller"], r["random"], r["real_env_steps"]
        print(f"| {r['seed']} | {c['mean']:.1f} +- {c['std']:.1f} | {rnd['mean']:.1f} +- {rnd['std']:.1f} | "
              f"{r['capped']['controller']}, {r['capped']['random']} of {c['episodes']} | "
              f"{steps['episodes']} + {steps['checks']} | {r['minutes']:.1f} |")
    means = np.array([r["controller"]["mean"] for r in rows])
    randoms = np.array([r["random"]["mean"] for r in rows])
    print(f"\ncontroller over {len(rows)} seeds ({rows[0]['controller']['episodes']} episodes of at most "
          f"{rows[0]['cap']} steps each): {means.mean():.1f} +- {means.std():.1f}; random {randoms.mean():.1f}")
    atomic_write_json(args.root / f"{args.preset}_seeds.json", {
        "env": args.env, "preset": args.preset, "rows": rows, "mean": float(means.mean()), "std": float(means.std()),
        "random": float(randoms.mean()), "machine": machine()})
    if not args.taus:
        return
    taus = [tau_result(args.env, args.preset, args.root, args.tau_seed, t, args.workers, args.dreams) for t in args.taus]
    print(f"\ntemperature (seed {args.tau_seed}: one data set and memory model, a controller trained per tau)")
    print("| tau | dream score | real score |")
    print("|---:|---:|---:|")
    for t in taus:
        print(f"| {t['tau']:g} | {t['dream']:.0f} | {t['real']['mean']:.0f} +- {t['real']['std']:.0f} |")
    atomic_write_json(args.root / f"{args.preset}_temperatures.json", {
        "env": args.env, "preset": args.preset, "seed": args.tau_seed, "rows": taus, "machine": machine()})


if __name__ == "__main__":
    main()
