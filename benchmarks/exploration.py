"""Exploration on the sparse-reward Maze: coverage and first goal, per intrinsic reward, at equal env steps.

    python benchmarks/exploration.py [--steps 20000] [--seeds 3] [--methods random,extrinsic,...]
                                     [--beta 1.0] [--envs 8] [--max-steps 100]
                                     [--ent-coef 0.03] [--z-dim 128] [--center | --no-center]

Every method but ``random`` is SB3 PPO (MlpPolicy) on ``curiosity_vec_env`` over ``--envs``
``worldmodels.envs.maze:Maze`` copies (7x7 rooms, 97 open squares, episodes truncated at ``--max-steps``),
observing the curiosity encoder's latent (``--z-dim`` fixed random features of the 16x16-pooled frame),
so all methods share one input; ``extrinsic`` is the same with ``beta = 0``. The intrinsic reward is
normalised as ``(r - mean) / std`` (``--center``; ``--no-center``: ``r / std``, as RND) and PPO's
entropy coefficient is ``--ent-coef``; ``--ent-coef 0.01 --z-dim 32 --no-center`` are the settings
of issue 6's first table. Coverage is the number
of distinct ground-truth positions (``info["position"]``) visited over the whole budget; "goal" is
the env step at which the goal was first reached. Prints a Markdown table, saves JSON to
``benchmarks/out/NAME.json`` and a coverage-vs-steps plot (drawn with OpenCV) to
``benchmarks/out/NAME_coverage.png`` (``--out NAME``, default ``exploration``). Goal: >= 2x random's coverage, and the goal reached
where random does not. The default size takes about 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from worldmodels.envs.maze import Maze

OUT = Path(__file__).resolve().parent / "out"
METHODS = ["random", "extrinsic", "surprise", "icm", "disagreement", "infogain"]
COLORS = {"random": (128, 128, 128), "extrinsic": (0, 0, 0), "surprise": (40, 40, 220), "icm": (220, 120, 0),
          "disagreement": (0, 160, 0), "infogain": (200, 0, 200)}  # BGR


def run_random(steps: int, envs: int, max_steps: int, seed: int, every: int) -> dict:
    rng = np.random.default_rng(seed)
    pool = [Maze(max_steps=max_steps) for _ in range(envs)]
    for i, env in enumerate(pool):
        env.reset(seed=seed * 1000 + i)
    seen, goal, curve = set(), None, []
    for t in range(0, steps, envs):
        for env in pool:
            _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
            seen.add(info["position"])
            if reward > 0 and goal is None:
                goal = t + envs
            if terminated or truncated:
                env.reset()
        if (t + envs) % every < envs:
            curve.append(len(seen))
    return {"coverage": len(seen), "goal": goal, "curve": curve}


def run_ppo(kind: str, seed: int, args: argparse.Namespace) -> dict:
    """One PPO run of ``args.steps`` env steps on intrinsic reward ``kind`` (beta 0 for ``extrinsic``)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    from worldmodels.curiosity.online import curiosity_vec_env

    envs, every = args.envs, args.every
    venv = DummyVecEnv([lambda: Maze(max_steps=args.max_steps) for _ in range(envs)])
    venv.seed(seed)
    venv = curiosity_vec_env(venv, "disagreement" if kind == "extrinsic" else kind,
                             beta=0.0 if kind == "extrinsic" else args.beta, latent_obs=True, seed=seed,
                             z_dim=args.z_dim, center=args.center)
    seen, goal, curve = set(), [None], []

    class Track(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                seen.add(info["position"])
                if info["reward_extrinsic"] > 0 and goal[0] is None:
                    goal[0] = self.num_timesteps
            if self.num_timesteps % every < envs:
                curve.append(len(seen))
            return True

    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=128, n_epochs=4, learning_rate=1e-3,
                ent_coef=args.ent_coef, seed=seed, device="cpu")
    model.learn(args.steps, callback=Track())
    return {"coverage": len(seen), "goal": goal[0], "curve": curve}


def plot(results: dict, steps: int, every: int, path: Path, total: int) -> None:
    """Mean coverage vs env steps per method, drawn with OpenCV (no matplotlib)."""
    w, h, left, bottom, top, right = 720, 480, 70, 50, 30, 160
    img = np.full((h, w, 3), 255, np.uint8)
    x0, x1, y0, y1 = left, w - right, h - bottom, top
    cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for frac in np.linspace(0, 1, 5):
        y = int(y0 + frac * (y1 - y0))
        cv2.line(img, (x0 - 4, y), (x0, y), (0, 0, 0), 1)
        cv2.putText(img, f"{frac * total:.0f}", (x0 - 40, y + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x = int(x0 + frac * (x1 - x0))
        cv2.line(img, (x, y0), (x, y0 + 4), (0, 0, 0), 1)
        cv2.putText(img, f"{frac * steps / 1000:.0f}k", (x - 10, y0 + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "env steps", ((x0 + x1) // 2 - 30, h - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"distinct positions visited (of {total}), mean over seeds", (x0, 20), font, 0.5,
                (0, 0, 0), 1, cv2.LINE_AA)
    for k, (method, runs) in enumerate(results.items()):
        n = min(len(r["curve"]) for r in runs)
        mean = np.mean([r["curve"][:n] for r in runs], axis=0)
        pts = np.array([(x0 + (i + 1) * every / steps * (x1 - x0), y0 + m / total * (y1 - y0))
                        for i, m in enumerate(mean)], np.int32)
        cv2.polylines(img, [pts], False, COLORS.get(method, (0, 0, 0)), 2, cv2.LINE_AA)
        cv2.putText(img, method, (x1 + 10, y1 + 20 + 22 * k), font, 0.5, COLORS.get(method, (0, 0, 0)), 1,
                    cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20_000, help="env steps per method and seed (default 20000)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per method (default 3)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--beta", type=float, default=1.0, help="intrinsic reward scale (default 1.0)")
    p.add_argument("--envs", type=int, default=8, help="parallel envs (default 8)")
    p.add_argument("--max-steps", type=int, default=100, help="episode length (default 100)")
    p.add_argument("--every", type=int, default=512, help="coverage curve resolution in env steps (default 512)")
    p.add_argument("--ent-coef", type=float, default=0.03, help="PPO entropy coefficient (default 0.03)")
    p.add_argument("--z-dim", type=int, default=128, help="random features of the pooled frame (default 128)")
    p.add_argument("--center", action=argparse.BooleanOptionalAction, default=True,
                   help="normalise the intrinsic reward as (r - mean) / std, else r / std (default: centre)")
    p.add_argument("--out", default="exploration", help="name of the JSON and PNG under benchmarks/out")
    args = p.parse_args()
    torch.set_num_threads(1)
    total = Maze().open_states
    results, seconds = {}, {}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        results[method] = []
        for seed in range(args.seeds):
            if method == "random":
                out = run_random(args.steps, args.envs, args.max_steps, seed, args.every)
            else:
                out = run_ppo(method, seed, args)
            results[method].append(out)
            print(f"{method} seed {seed}: coverage {out['coverage']}, goal at {out['goal']}", flush=True)
        seconds[method] = time.perf_counter() - t0
    random_cov = statistics.mean(r["coverage"] for r in results["random"]) if "random" in results else None
    print(f"\nMaze 7x7 ({total} open squares), {args.steps} env steps x {args.seeds} seeds, episodes of "
          f"{args.max_steps} steps\n")
    print("| method | coverage (mean +- std) | x random | goal reached | first goal (median step) | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for method, runs in results.items():
        cov = [r["coverage"] for r in runs]
        goals = [r["goal"] for r in runs if r["goal"] is not None]
        ratio = f"{statistics.mean(cov) / random_cov:.2f}" if random_cov else "-"
        first = f"{statistics.median(goals):.0f}" if goals else "-"
        print(f"| {method} | {statistics.mean(cov):.1f} +- {statistics.pstdev(cov):.1f} | {ratio} | "
              f"{len(goals)}/{len(runs)} | {first} | {seconds[method]:.0f} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.out}.json").write_text(json.dumps({"args": vars(args), "open_states": total,
                                                      "results": results, "seconds": seconds}, indent=1))
    plot(results, args.steps, args.every, OUT / f"{args.out}_coverage.png", total)
    print(f"\nsaved {OUT / args.out}.json and {OUT / args.out}_coverage.png")


if __name__ == "__main__":
    main()
