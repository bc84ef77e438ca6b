"""The laptop preset over several pipeline seeds: the figure README and BENCHMARKS.md state.

    python benchmarks/laptop.py [--env CarRacing-v3] [--seeds 0 1 2] [--root runs] [--workers 2]
                                [--memory mdn|vrnn|rssm|srnn|svg]

Runs (or resumes; a finished seed is only read back) ``wm run ENV --preset laptop --seed S`` into
``ROOT/laptop_KIND_sS`` for each seed, KIND the preset's memory model (rssm) or ``--memory KIND``
(``--set memory.kind=KIND``), then prints one row per seed (the dream controller and the
random policy on the same 20 tracks of full 1,000-step episodes, tracks won, real env steps,
minutes per stage) and the mean +- std over seeds. Writes ``ROOT/laptop_KIND_seeds.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from worldmodels.pipeline import presets, run_pipeline
from worldmodels.runs.rundir import RunDir, atomic_write_json

ENV = "CarRacing-v3"


def run_name(seed: int, memory: str) -> str:
    """``laptop_KIND_sS``: pipeline seed ``seed`` of the laptop preset with memory model ``memory``."""
    return f"laptop_{memory}_s{seed}"


def seed_result(env: str, root: Path, seed: int, workers: int | None, memory: str) -> dict:
    """One seed's pipeline summary plus its per-track comparison with random."""
    run = RunDir(root / run_name(seed, memory))
    path = run.root / "pipeline.json"
    if path.exists():
        summary = json.loads(path.read_text())
    else:
        preset = presets(env)["laptop"]
        preset = replace(preset, memory=replace(preset.memory, kind=memory))
        summary = run_pipeline(env, run, preset, workers, seed=seed, preset_name="laptop")
    controller = json.loads((run.eval / "controller.json").read_text())
    random = json.loads((run.eval / "random.json").read_text())
    wins = int(np.sum(np.array(controller["returns"]) > np.array(random["returns"])))
    return {"seed": seed, "memory": memory, "controller": summary["scores"]["controller"], "random": summary["scores"]["random"],
            "wins": wins, "tracks": len(controller["returns"]), "max_steps": controller["max_steps"],
            "real_env_steps": summary.get("real_env_steps"), "seconds": summary["seconds"],
            "minutes": sum(summary["seconds"].values()) / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=ENV)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("runs"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--memory", default=presets(ENV)["laptop"].memory.kind,
                        help="the memory model (default: the preset's)")
    args = parser.parse_args()
    rows = [seed_result(args.env, args.root, s, args.workers, args.memory) for s in args.seeds]
    print("| seed | controller | random | tracks won | real env steps (episodes + checks) | minutes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        steps = r["real_env_steps"] or {}
        print(f"| {r['seed']} | {r['controller']['mean']:.1f} +- {r['controller']['std']:.1f} | "
              f"{r['random']['mean']:.1f} +- {r['random']['std']:.1f} | {r['wins']}/{r['tracks']} | "
              f"{steps.get('episodes', '?')} + {steps.get('checks', '?')} | {r['minutes']:.1f} |")
    means = np.array([r["controller"]["mean"] for r in rows])
    print(f"\ncontroller over {len(rows)} seeds ({rows[0]['tracks']} tracks of {rows[0]['max_steps']} steps each): "
          f"{means.mean():.1f} +- {means.std():.1f}; random {np.mean([r['random']['mean'] for r in rows]):.1f}")
    atomic_write_json(args.root / f"laptop_{args.memory}_seeds.json", {"env": args.env, "memory": args.memory, "rows": rows,
                                                         "mean": float(means.mean()), "std": float(means.std())})


if __name__ == "__main__":
    main()
