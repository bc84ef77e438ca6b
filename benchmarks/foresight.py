"""Visual foresight on PointMass: success rate over random start/goal pairs vs two model-free baselines.

Builds a world model in ``--run`` (default a temp dir; finished stages are kept and skipped):
``--episodes`` brownian episodes, ConvVAE (``--vision-epochs``, z=16), MDN-RNN (h=128). Then,
for ``--pairs`` start/goal pairs (uniform in [0.15, 0.85]^2), runs ``--steps`` real steps of
  - visual foresight: CEM MPC on the latent cost to the goal image (``PointMass.draw(goal)``),
  - random: uniform random actions,
  - zero-order hold: one uniform random action, held for the whole episode (no model at all).
Success: final ground-truth distance < ``--threshold``. Prints a Markdown table; saves
``benchmarks/out/foresight.json``.

    python benchmarks/foresight.py [--pairs 20 --episodes 100 --vision-epochs 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from worldmodels.agents.cem import planner_config
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.collect.driver import drive
from worldmodels.envs.point import PointMass
from worldmodels.planning.foresight import ForesightConfig, visual_foresight
from worldmodels.runs.artifacts import load_memory, load_vision
from worldmodels.runs.rundir import RunDir
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision


def build(run: RunDir, episodes: int, vision_epochs: int, memory_epochs: int, radius: int) -> float:
    """Collect and train (each stage skipped when complete); returns the seconds spent."""
    start = time.perf_counter()
    collect(run, CollectConfig(env="worldmodels.envs.point:PointMass", episodes=episodes, agent="brownian", workers=1,
                               env_kwargs={"radius": radius}), progress=False)
    train_vision(run, VisionTrainConfig(epochs=vision_epochs, z_dim=16, device="cpu"), progress=False)
    train_memory(run, MemoryTrainConfig(epochs=memory_epochs, hidden_size=128, seq_len=32, batch_size=32,
                                        batches_per_epoch=50, device="cpu"), progress=False)
    return time.perf_counter() - start


class UniformAgent:
    """Uniform random velocities in [-1, 1]^2, or (``hold``) the first one drawn, repeated."""

    def __init__(self, hold: bool) -> None:
        self.hold = hold

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, batch: int = 1) -> np.ndarray:
        return self.rng.uniform(-1, 1, 2)  # the held action

    def act(self, obs: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (held if self.hold else self.rng.uniform(-1, 1, 2))[None], held


def baseline(env, options: dict, seed: int, steps: int, hold: bool) -> float:
    """Final distance of uniform random actions (``hold``: one action repeated) after ``steps`` steps."""
    drive(env, UniformAgent(hold), seed, options=options, max_steps=steps)
    return env.unwrapped.distance()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run directory (default: a temporary one)")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--vision-epochs", type=int, default=3)
    parser.add_argument("--memory-epochs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--radius", type=int, default=4, help="dot radius in pixels (PointMass option)")
    args = parser.parse_args()
    run = RunDir(args.run or tempfile.mkdtemp(prefix="foresight-bench-"))
    train_seconds = build(run, args.episodes, args.vision_epochs, args.memory_epochs, args.radius)
    vision = load_vision(run)
    memory = load_memory(run, vision=vision)
    config = planner_config(args.horizon, args.candidates, args.iterations)
    env = run.make_env(max_steps=None)
    rng = np.random.default_rng(123)
    results = {"foresight": [], "random": [], "zero-order hold": []}
    start = time.perf_counter()
    for i in range(args.pairs):
        position, goal = rng.uniform(0.15, 0.85, (2, 2))
        options = {"position": position.tolist(), "goal": goal.tolist()}
        r = visual_foresight(vision, memory, run.action_spec(), env, PointMass.draw(goal, args.radius), config,
                             ForesightConfig(max_steps=args.steps, seed=i, reset_options=options, video=False))
        results["foresight"].append(r["final_distance"])
        results["random"].append(baseline(env, options, i, args.steps, hold=False))
        results["zero-order hold"].append(baseline(env, options, i, args.steps, hold=True))
    plan_seconds = time.perf_counter() - start
    print(f"PointMass visual foresight: {args.pairs} start/goal pairs, {args.steps} steps, success = final "
          f"distance < {args.threshold}; planner H={config.horizon} N={config.candidates} I={config.iterations} "
          f"K={config.elites}, latent cost summed over the horizon; world model built in {train_seconds:.0f} s "
          f"({args.episodes} brownian episodes, VAE {args.vision_epochs} epochs z=16, MDN-RNN h=128), "
          f"planning {plan_seconds:.0f} s")
    print("| policy | success | mean final distance |\n|---|---:|---:|")
    summary = {}
    for name, distances in results.items():
        d = np.array(distances)
        summary[name] = {"success": float((d < args.threshold).mean()), "mean_distance": float(d.mean()),
                         "distances": d.tolist()}
        print(f"| {name} | {summary[name]['success']:.0%} | {d.mean():.3f} |")
    out = Path(__file__).parent / "out" / "foresight.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "train_seconds": train_seconds, "plan_seconds": plan_seconds,
                               **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
