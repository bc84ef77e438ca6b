"""Visual foresight on the goal envs: success rate over random start/goal pairs vs two model-free baselines.

For each env of ``--envs`` (PointMass: a dot; Reacher2Link: a 2-link arm pose), builds a world model
in ``--run``/ENV (default a temp dir; finished stages are kept and skipped): ``--episodes`` episodes
of ``--agent`` (brownian, or random: independent actions, which the memory model must then learn to
use), ConvVAE (``--vision-epochs``, ``--z-dim``, ``--kl-tolerance``, ``--kl-weight``,
``--salient-weight``), MDN-RNN (h=128, ``--memory-epochs``). Then, for ``--pairs`` start/goal pairs (uniform: PointMass positions in
[0.15, 0.85]^2, arm angles in [-pi, pi)^2), runs ``--steps`` real steps of
  - visual foresight: CEM MPC on the ``--cost`` to the goal image, which is the env's render of the
    goal state at its own size (``wm goal-image``) put through the run's pixel pipeline,
  - random: uniform random actions,
  - zero-order hold: one uniform random action, held for the whole episode (no model at all).
Success: final ground-truth distance (the env's ``distance()``) < ``--threshold``. Prints a Markdown
table per env; saves ``benchmarks/out/foresight.json``.

    python benchmarks/foresight.py [--envs PointMass Reacher2Link --pairs 20 --episodes 100]
    python benchmarks/foresight.py --agent random --vision-epochs 10 --salient-weight 20 --horizon 16  # issue 18
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from worldmodels.agents.cem import planner_config
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.collect.driver import drive
from worldmodels.planning.foresight import (
    COST_ON,
    COSTS,
    ForesightConfig,
    predicted_latents,
    visual_foresight,
)
from worldmodels.planning.goals import GoalImageConfig, goal_frame, render_goal
from worldmodels.runs.artifacts import load_memory, load_vision
from worldmodels.runs.rundir import RunDir
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision


@dataclass
class GoalEnv:
    """A goal env: its spec, the reset option that sets its state, the range start and goal states are drawn from."""

    spec: str
    state: str
    low: float
    high: float
    kwargs: dict = field(default_factory=dict)


GOAL_ENVS = {
    "PointMass": GoalEnv("worldmodels.envs.point:PointMass", "position", 0.15, 0.85),
    "Reacher2Link": GoalEnv("worldmodels.envs.reacher:Reacher2Link", "angles", -np.pi, np.pi),
}


def build(run: RunDir, env: GoalEnv, args) -> float:
    """Collect and train (each stage skipped when complete); returns the seconds spent."""
    start = time.perf_counter()
    collect(run, CollectConfig(env=env.spec, episodes=args.episodes, agent=args.agent, workers=1,
                               env_kwargs=env.kwargs), progress=False)
    train_vision(run, VisionTrainConfig(epochs=args.vision_epochs, z_dim=args.z_dim, kl_tolerance=args.kl_tolerance,
                                        salient_weight=args.salient_weight, kl_weight=args.kl_weight,
                                        device="cpu"), progress=False)
    train_memory(run, MemoryTrainConfig(epochs=args.memory_epochs, hidden_size=128, seq_len=32, batch_size=32,
                                        batches_per_epoch=50, device="cpu"), progress=False)
    return time.perf_counter() - start


class UniformAgent:
    """Uniform random actions in [-1, 1]^2, or (``hold``) the first one drawn, repeated."""

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


@torch.no_grad()
def prediction_error(run: RunDir, vision, memory, goal_env: GoalEnv, steps: int = 6, starts: int = 20,
                     sequences: int = 8) -> tuple[float, float]:
    """How well the memory model predicts what actions do: the mean squared latent error (latent units^2) of its
    ``steps``-step predictions (from a fresh state, like a first decision; ``sequences`` uniform random action
    sequences from each of ``starts`` random states) against the real frames' VAE means, and the same error of
    predicting no motion (the start's latent throughout)."""
    env, rng = run.make_env(max_steps=None), np.random.default_rng(7)
    model, still = [], []
    for _ in range(starts):
        options = {goal_env.state: rng.uniform(goal_env.low, goal_env.high, 2).tolist()}
        actions = rng.uniform(-1, 1, (sequences, steps, 2)).astype(np.float32)
        real = []
        for sequence in actions:
            start, _ = env.reset(seed=0, options=options)
            real.append(vision.encode(torch.as_tensor(np.stack([env.step(a)[0] for a in sequence])))[0])
        z = vision.encode(torch.as_tensor(start[None]))[0]
        real = torch.stack(real)  # [sequences, steps, Z]
        predicted = predicted_latents(memory, memory.initial_state(1), z, torch.as_tensor(actions))
        model.append((predicted - real).square().sum(-1).mean().item())
        still.append((z - real).square().sum(-1).mean().item())
    env.close()
    return float(np.mean(model)), float(np.mean(still))


def benchmark(name: str, run: RunDir, args) -> dict:
    """Build the world model of goal env ``name`` in ``run``, then the three policies on ``args.pairs`` pairs."""
    goal_env = replace(GOAL_ENVS[name], kwargs={"radius": args.radius}) if name == "PointMass" else GOAL_ENVS[name]
    train_seconds = build(run, goal_env, args)
    vision = load_vision(run)
    memory = load_memory(run, vision=vision)
    planner = planner_config(args.horizon, args.candidates, args.iterations)
    env, pixels = run.make_env(max_steps=None), run.env_spec()[2]
    rng = np.random.default_rng(123)
    results = {"foresight": [], "random": [], "zero-order hold": []}
    start = time.perf_counter()
    for i in range(args.pairs):
        state, goal = rng.uniform(goal_env.low, goal_env.high, (2, 2))
        options = {goal_env.state: state.tolist(), "goal": goal.tolist()}
        render = render_goal(goal_env.spec, GoalImageConfig(env_kwargs=goal_env.kwargs,
                                                            reset_options={goal_env.state: goal.tolist()}))
        goal_image = goal_frame(render, pixels, render.shape[:2], "goal")
        config = ForesightConfig(cost=args.cost, cost_on=args.cost_on, max_steps=args.steps, seed=i,
                                 reset_options=options, video=False)
        r = visual_foresight(vision, memory, run.action_spec(), env, goal_image, planner, config)
        results["foresight"].append(r["final_distance"])
        results["random"].append(baseline(env, options, i, args.steps, hold=False))
        results["zero-order hold"].append(baseline(env, options, i, args.steps, hold=True))
    plan_seconds = time.perf_counter() - start
    error, still = prediction_error(run, vision, memory, goal_env)
    print(f"\n{name} visual foresight: {args.pairs} start/goal pairs, {args.steps} steps, success = final "
          f"distance < {args.threshold}; planner H={planner.horizon} N={planner.candidates} I={planner.iterations} "
          f"K={planner.elites}, {args.cost} cost ({args.cost_on}); world model built in {train_seconds:.0f} s "
          f"({args.episodes} {args.agent} episodes, VAE {args.vision_epochs} epochs z={args.z_dim} kl_tolerance "
          f"{args.kl_tolerance} salient_weight {args.salient_weight} kl_weight {args.kl_weight}, MDN-RNN h=128), "
          f"planning {plan_seconds:.0f} s; memory model's 6-step prediction error {error:.2f} (latent units^2; "
          f"predicting no motion: {still:.2f})")
    print("| policy | success | mean final distance |\n|---|---:|---:|")
    summary = {"train_seconds": train_seconds, "plan_seconds": plan_seconds, "prediction_error": error,
               "no_motion_error": still}
    for policy, distances in results.items():
        d = np.array(distances)
        summary[policy] = {"success": float((d < args.threshold).mean()), "mean_distance": float(d.mean()),
                           "distances": d.tolist()}
        print(f"| {policy} | {summary[policy]['success']:.0%} | {d.mean():.3f} |")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", choices=list(GOAL_ENVS), default=list(GOAL_ENVS))
    parser.add_argument("--run", default=None, help="parent of the runs, one per env (default: a temporary one)")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--agent", choices=["brownian", "random"], default="brownian",
                        help="collection policy: brownian (smooth actions) or random (uniform, independent per step)")
    parser.add_argument("--vision-epochs", type=int, default=3)
    parser.add_argument("--memory-epochs", type=int, default=12)
    parser.add_argument("--z-dim", type=int, default=16)
    parser.add_argument("--kl-tolerance", type=float, default=0.5)
    parser.add_argument("--salient-weight", type=float, default=0.0, help="VAE reconstruction weight (0: plain)")
    parser.add_argument("--kl-weight", type=float, default=1.0, help="VAE beta (1: plain)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument("--cost", choices=COSTS, default="latent")
    parser.add_argument("--cost-on", choices=COST_ON, default="sum")
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--radius", type=int, default=4, help="PointMass dot radius in pixels (its default: 4)")
    args = parser.parse_args()
    root = Path(args.run or tempfile.mkdtemp(prefix="foresight-bench-"))
    summary = {name: benchmark(name, RunDir(root / name), args) for name in args.envs}
    out = Path(__file__).parent / "out" / "foresight.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
