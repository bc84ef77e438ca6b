"""CarRacing-v3 benchmark: the full pipeline per preset, every agent on the same tracks.

    python benchmarks/carracing.py --preset smoke|laptop|gpu|paper [--out DIR]

Agents, all scored on the same seeded tracks (``wm eval`` seeds): the controller trained in the
dream over the MDN-RNN and over the VRNN (same episodes and VAE), CMA-ES on the same controller
in the *real* env (the paper's CarRacing protocol, at the preset's budget), CEM-MPC in the
MDN-RNN, the random policy, and stable-baselines3 PPO on pixels trained for as many real env
steps as the world-model pipeline used. Resumable (every stage is); writes ``results.json``,
``results.md`` and the run's HTML report with its plots into ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from worldmodels.collect.driver import drive, episode_seed
from worldmodels.dream.cma import train_cma
from worldmodels.dream.evolution import Generation, evolve
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.models.controller import ControllerSpec
from worldmodels.pipeline import presets, run_pipeline
from worldmodels.report.page import LITERATURE, write_report
from worldmodels.runs.artifacts import load_memory, load_vision, save_controller
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.training.memory import train_memory

ENV = "CarRacing-v3"
# Planner and model-free sizes per preset (CEM runs as MPC in the real env: one plan per step).
CEM = {"smoke": dict(horizon=4, candidates=32, iterations=2, elites=4, episodes=1),
       "laptop": dict(horizon=12, candidates=200, iterations=4, elites=20, episodes=3),
       "gpu": dict(horizon=12, candidates=1000, iterations=10, elites=100, episodes=10),
       "paper": dict(horizon=12, candidates=1000, iterations=10, elites=100, episodes=20)}
REAL_CMA = {"smoke": dict(generations=1, population=4), "laptop": dict(generations=4, population=8),
            "gpu": dict(generations=100, population=32), "paper": dict(generations=300, population=64)}


def timed(table: dict, name: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    table[name] = table.get(name, 0.0) + time.perf_counter() - t0
    return out


def env_steps(run: RunDir) -> int:
    """Real env steps in the run's episodes (what the world model learned from)."""
    total = 0
    for path in run.episodes.glob("episode_*.npz"):
        with np.load(path) as data:
            total += len(data["reward"])
    return total


def shared_run(mdn: RunDir, root: Path, stages: tuple[str, ...]) -> RunDir:
    """A run sharing the MDN run's episodes (linked) and copies of its ``stages`` (e.g. vision, latents)."""
    run = RunDir(root)
    if not run.exists():
        root.mkdir(parents=True)
        shutil.copy(mdn.meta_path, run.meta_path)
        run.episodes.symlink_to(mdn.episodes.resolve(), target_is_directory=True)
        for stage in stages:
            shutil.copytree(mdn.root / stage, run.root / stage)
    return run


def train_cma_in_real_env(run: RunDir, preset: str, max_steps: int) -> dict:
    """CMA-ES whose fitness is the real return (Ha & Schmidhuber's CarRacing protocol).

    Each candidate is one ``evaluate`` call on one fixed track set; small budgets only.
    """
    size = REAL_CMA[preset]
    memory = load_memory(run, "cpu", load_vision(run, "cpu"))
    spec = ControllerSpec.for_run(memory.z_dim, memory.hidden_size, run.action_spec())
    steps, history = 0, []

    def fitness(solutions: np.ndarray, generation: int) -> np.ndarray:
        nonlocal steps
        scores = []
        for params in solutions:
            r = evaluate(run, "controller", episodes=2, workers=1, seed=20_000, max_steps=max_steps,
                         progress=False, write=False, agent_options={"params": params.tolist(), "spec": spec.to_dict()})
            scores.append(r["mean"])
            steps += sum(r["lengths"])
        return np.array(scores)

    def on_generation(g: Generation) -> None:
        history.append({"generation": g.number, "best": float(g.fitness.max()), "mean": float(g.fitness.mean())})
        print(f"real-env CMA-ES generation {g.number}: best {g.fitness.max():.1f} mean {g.fitness.mean():.1f}")

    mean = evolve(np.zeros(spec.n_params), 0.1, size["population"], fitness, size["generations"], seed=0,
                  on_generation=on_generation)
    save_controller(run, spec, mean, {"selected_by": "real-env CMA-ES"})
    return {"history": history, "env_steps": steps}


class PixelPPO:
    """A PPO pixel policy as an agent (``act(obs [1, 64, 64, 3])``) for ``drive``."""

    def __init__(self, model):
        self.model = model

    def seed(self, seed: int) -> None:
        self.model.set_random_seed(seed)

    def reset(self, batch: int = 1):
        return None

    def act(self, obs, state):
        return self.model.predict(obs, deterministic=True)[0], state


def ppo_on_pixels(run: RunDir, steps: int, episodes: int, seed: int, max_steps: int | None, out: Path) -> dict:
    """SB3 PPO (CnnPolicy) trained for ``steps`` real steps on the run's pixel env, then scored."""
    from stable_baselines3 import PPO

    path = out / "ppo_pixels.zip"
    if path.exists():
        model = PPO.load(str(path), device="cpu")
    else:
        env = run.make_env()
        n_steps = max(64, min(2048, steps // 4))
        model = PPO("CnnPolicy", env, n_steps=n_steps, batch_size=64, seed=0, device="cpu", verbose=0)
        model.learn(steps)
        model.save(str(path))
    env = run.make_env(max_steps=max_steps)
    agent = PixelPPO(model)
    returns = [drive(env, agent, episode_seed(seed, i)).total_reward for i in range(episodes)]
    r = np.array(returns)
    return {"agent": "ppo-pixels", "returns": returns, "mean": float(r.mean()), "std": float(r.std()),
            "min": float(r.min()), "max": float(r.max()), "episodes": episodes}


def markdown(rows: list[dict]) -> str:
    lines = ["| agent | source | mean | std | episodes | real env steps | wall-clock (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['agent']} | {r['source']} | {r['mean']:.1f} | {r['std']:.1f} | {r['episodes']} | "
                     f"{r.get('env_steps', '')} | {r.get('seconds', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smoke", choices=["smoke", "laptop", "gpu", "paper"])
    parser.add_argument("--out", default=None, help="output directory (default benchmarks/out/carracing-PRESET)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--skip", default="", help="comma-separated: vrnn,real-cma,cem,ppo")
    args = parser.parse_args()
    out = Path(args.out or f"benchmarks/out/carracing-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    p = presets(ENV)[args.preset]
    seed, eval_steps = 1, p.eval_max_steps  # run_pipeline scores on seed + 1 = 1 with seed 0
    seconds: dict[str, float] = {}

    mdn = RunDir(out / "mdn")
    summary = timed(seconds, "pipeline (mdn)", run_pipeline, ENV, mdn, args.preset, workers=args.workers, seed=0)
    used = env_steps(mdn)
    history = json.loads((mdn.controller / "history.json").read_text())
    check_steps = sum(p.cma.real_episodes * (p.cma.real_max_steps or 1000) for _ in history["real"])
    rows = [{"agent": f"dream controller, MDN-RNN ({a})" if a == "controller" else a, "source": "measured",
             **summary["scores"][a], "env_steps": used + check_steps if a == "controller" else "",
             "seconds": round(sum(summary["seconds"].values()))} for a in summary["scores"]]

    def score(name: str, run: RunDir, agent: str, steps, label_seconds: str, **options):
        r = timed(seconds, label_seconds, evaluate, run, agent, episodes=options.pop("episodes", p.eval_episodes),
                  workers=args.workers, seed=seed, max_steps=eval_steps, progress=False, agent_options=options)
        rows.append({"agent": name, "source": "measured", **{k: r[k] for k in ("mean", "std", "episodes")},
                     "env_steps": steps, "seconds": round(seconds[label_seconds])})

    if "vrnn" not in skip:
        vrnn = shared_run(mdn, out / "vrnn", ("vision", "latents"))  # same VAE, a VRNN memory
        timed(seconds, "vrnn", train_memory, vrnn, replace(p.memory, kind="vrnn"), progress=False)
        timed(seconds, "vrnn", train_cma, vrnn, replace(p.cma, workers=args.workers), progress=False)
        score("dream controller, VRNN", vrnn, "controller", used, "vrnn")
    if "cem" not in skip:
        c = dict(CEM[args.preset])
        score(f"CEM-MPC in the MDN-RNN (H={c['horizon']}, N={c['candidates']}, I={c['iterations']})", mdn,
              "cem", used, "cem", **c)
    if "real-cma" not in skip:
        real = shared_run(mdn, out / "real-cma", ("vision", "memory", "latents"))  # same V and M
        trained = timed(seconds, "real-env CMA-ES", train_cma_in_real_env, real, args.preset,
                        p.cma.real_max_steps or eval_steps)
        score("controller by CMA-ES in the real env (paper protocol)", real, "controller",
              used + trained["env_steps"], "real-env CMA-ES")
    if "ppo" not in skip:
        r = timed(seconds, "ppo", ppo_on_pixels, mdn, used, p.eval_episodes, seed, eval_steps, out)
        rows.append({"agent": "PPO on pixels (same real steps as the pipeline)", "source": "measured",
                     **{k: r[k] for k in ("mean", "std", "episodes")}, "env_steps": used,
                     "seconds": round(seconds["ppo"])})
    rows += [{"agent": f"{name} [{ref}]", "source": "literature (CarRacing-v0)", "mean": float(m), "std": float(s),
              "episodes": 100} for name, m, s, ref in LITERATURE]
    table = markdown(rows)
    atomic_write_json(out / "results.json", {"preset": args.preset, "eval_max_steps": eval_steps, "rows": rows,
                                             "seconds": seconds, "pipeline_seconds": summary["seconds"]})
    (out / "results.md").write_text(table + "\n")
    report = write_report(mdn, out / "report.html")
    print(table)
    print(f"\nresults: {out / 'results.json'}, {out / 'results.md'}, report: {report}")


if __name__ == "__main__":
    main()
