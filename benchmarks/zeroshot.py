"""Zero-shot tasks after exploration on a small Maze (or MiniGrid): curious data vs random data of the same real steps.

    python benchmarks/zeroshot.py [--env maze] [--seeds 2] [--cells 3] [--max-steps 60] [--intrinsic disagreement]
                                  [--base-episodes 8] [--rounds 3] [--episodes 8] [--vision-epochs 60]
                                  [--round-vision-epochs 5] [--salient-weight 10] [--memory-epochs 30]
                                  [--explorer mpc] [--noise 0.3] [--generations 20] [--set KEY=VALUE ...]
                                  [--first-seed 0] [--result NAME] [--out DIR]

Per seed, two runs of ``worldmodels.envs.maze:Maze`` (``--cells`` rooms a side, episodes of ``--max-steps``), or
with ``--env minigrid:ID`` (e.g. ``minigrid:MiniGrid-Empty-8x8-v0``) of
``worldmodels.envs.minigrid_pixels:MiniGridPixels`` (the full grid in pixels, 3 actions; needs the minigrid extra):

- **explore**: ``--base-episodes`` random episodes, then ``wm explore`` (``--rounds`` x ``--episodes`` episodes
  collected by the curious explorer, ``--intrinsic`` reward, no extrinsic reward);
- **random**: random-policy episodes until it holds at least as many real steps as the explore run.

Both world models then get the same final training (the epochs the explorer's next round would give), and
``wm task worldmodels.envs.maze:reach_far_corner`` (MiniGrid: ``worldmodels.envs.minigrid_pixels:reached_goal``,
MiniGrid's own goal reward, which the explorer never saw) runs on each: relabel, retrain only the reward head,
CMA-ES in the dream, no new real steps, then the controller is scored on the task in the real env. The
table gives per seed and data: real steps, distinct squares in the data (read off the frames; MiniGrid:
distinct stored frames, i.e. agent squares x headings), steps in the far corner in the data (MiniGrid: steps
that reach the goal), the reward head's loss before -> after, the dream fitness, and the real env's success
rate and task return, and (Maze) the distinct squares the task's controller visits in those real episodes
(mean over them: 1 is standing still). Prints Markdown, saves ``benchmarks/out/zeroshot.json`` (MiniGrid: ``zeroshot_minigrid.json``;
``--result`` names another).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import OUT, machine

from worldmodels.agents import load_agent
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.collect.driver import EpisodeRecorder, drive, episode_seed
from worldmodels.core.settings import set_path
from worldmodels.curiosity.explore import ExploreConfig, explore
from worldmodels.curiosity.task import TaskConfig, task_run, zero_shot
from worldmodels.dream.imagine import DreamConfig
from worldmodels.envs.maze import agent_cells
from worldmodels.runs.episodes import list_episodes, load_episode, stored_steps
from worldmodels.runs.rundir import RunDir
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision

TASK = "worldmodels.envs.maze:reach_far_corner"
MINIGRID = "worldmodels.envs.minigrid_pixels:MiniGridPixels"
MINIGRID_TASK = "worldmodels.envs.minigrid_pixels:reached_goal"


def setting(args) -> dict:
    """What ``--env`` selects: env spec and kwargs, task reward, a label, and the data's state/goal-step counts."""
    if args.env == "maze":
        return {"env": "worldmodels.envs.maze:Maze", "env_kwargs": {"cells": args.cells}, "task": TASK,
                "label": f"Maze {args.cells}x{args.cells} rooms", "states": "squares seen",
                "goal": "corner steps in data", "out": "zeroshot.json"}
    kind, _, env_id = args.env.partition(":")
    if kind != "minigrid" or not env_id:
        raise SystemExit(f"--env: expected maze or minigrid:ID (e.g. minigrid:MiniGrid-Empty-8x8-v0), got {args.env}")
    return {"env": MINIGRID, "env_kwargs": {"env_id": env_id}, "task": MINIGRID_TASK, "label": env_id,
            "states": "distinct frames", "goal": "goal steps in data", "out": "zeroshot_minigrid.json"}


def data_stats(run: RunDir, maze: bool) -> dict:
    """Real steps, distinct states and goal steps over the run's stored episodes. Maze: grid squares read off the
    frames, steps ending in the far corner; MiniGrid: distinct frames (hashes of the 64x64 obs: agent square and
    heading), steps with env reward > 0 (reaching the goal)."""
    seen, corner = set(), 0
    for path in list_episodes(run.episodes).values():
        episode = load_episode(path)
        if maze:
            seen.update(map(tuple, agent_cells(episode["obs"]).tolist()))
        else:
            seen.update(hashlib.sha1(frame.tobytes()).hexdigest() for frame in episode["obs"])
        corner += int((episode["reward"] > 0).sum())  # the Maze's reward: 1 on reaching the far corner
    return {"steps": stored_steps(run.episodes), "squares": len(seen), "corner_steps": corner}


def controller_squares(run: RunDir, name: str, episodes: int, seed: int) -> float:
    """Distinct Maze squares the task's controller visits, mean over the task's scoring episodes (same seeds)."""
    view = task_run(run, name)
    env, agent, visited = view.make_env(), load_agent("controller", view, "cpu"), []
    for i in range(episodes):
        recorder = EpisodeRecorder()
        drive(env, agent, episode_seed(10_000 + seed, i), [recorder])
        visited.append(len(set(map(tuple, agent_cells(recorder.episode()["obs"]).tolist()))))
    env.close()
    return float(np.mean(visited))


def pipeline(root: Path, data: str, seed: int, args, steps: int = 0) -> dict:
    """One run (``data``: explore, or random of at least ``steps`` real steps), its final world model, then the
    zero-shot task on it."""
    run = RunDir(root / f"{data}_{seed}")
    chosen = setting(args)
    env = {"env": chosen["env"], "max_steps": args.max_steps, "workers": 1, "seed": seed,
           "env_kwargs": chosen["env_kwargs"]}
    t0 = time.perf_counter()
    explore_config = ExploreConfig(
        rounds=args.rounds, episodes=args.episodes, intrinsic=args.intrinsic, vision_epochs=args.vision_epochs,
        memory_epochs=args.memory_epochs, round_vision_epochs=args.round_vision_epochs,
        round_memory_epochs=args.memory_epochs // 3, salient_weight=args.salient_weight, z_dim=16, hidden_size=64,
        seq_len=16, batch_size=16,
        curiosity_steps=200, generations=12, population=16, rollouts=4, dream=DreamConfig(max_steps=args.max_steps),
        explorer=args.explorer, noise=args.noise, seed=seed, device="cpu")
    for pair in args.set:  # FIELD=VALUE, parsed by the field's type as `wm run --set` does
        key, _, value = pair.partition("=")
        explore_config = set_path(explore_config, key, value)
    if data == "explore":
        collect(run, CollectConfig(episodes=args.base_episodes, **env), progress=False)
        explore(run, explore_config, progress=False)
    else:
        episodes = -(-steps // args.max_steps)
        collect(run, CollectConfig(episodes=episodes, **env), progress=False)
        while stored_steps(run.episodes) < steps:  # some random episodes ended early, at the goal
            episodes += 1
            collect(run, CollectConfig(episodes=episodes, **env), progress=False)
    common = {"device": "cpu", "seed": seed, "patience": 10**6}
    c = explore_config
    train_vision(run, VisionTrainConfig(epochs=c.vision_epochs + c.rounds * c.round_vision_epochs, z_dim=c.z_dim,
                                        salient_weight=c.salient_weight, **common), progress=False)
    train_memory(run, MemoryTrainConfig(epochs=c.memory_epochs + c.rounds * c.round_memory_epochs,
                                        batch_size=c.batch_size, seq_len=c.seq_len, hidden_size=c.hidden_size,
                                        **common), progress=False)
    collected = time.perf_counter() - t0
    task = TaskConfig(reward_steps=500, batch_size=16, seq_len=16, generations=args.generations, population=16,
                      rollouts=8, dream=DreamConfig(max_steps=args.max_steps), episodes=4, seed=seed, device="cpu")
    result = zero_shot(run, chosen["task"], task, progress=False)
    head = json.loads((run.root / "tasks" / result["name"] / "memory" / "summary.json").read_text())
    moves = controller_squares(run, result["name"], task.episodes, seed) if args.env == "maze" else None
    return {"data": data, "seed": seed, **data_stats(run, args.env == "maze"), "head_loss_before": head["loss_before"],
            "head_loss_after": head["loss_after"], "dream_fitness": result["dream_fitness_mean"],
            "success_rate": result["success_rate"], "task_return": result["mean"], "lengths": result["lengths"],
            "controller_squares": moves,
            "seconds_data_and_model": collected, "seconds_task": time.perf_counter() - t0 - collected}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="maze",
                   help="maze (worldmodels.envs.maze:Maze, default) or minigrid:ID, e.g. minigrid:MiniGrid-Empty-8x8-v0 "
                        "(worldmodels.envs.minigrid_pixels:MiniGridPixels; task reached_goal)")
    p.add_argument("--seeds", type=int, default=2, help="seeds (default 2)")
    p.add_argument("--cells", type=int, default=3, help="Maze rooms a side (default 3)")
    p.add_argument("--max-steps", type=int, default=60, help="real episode length (default 60)")
    p.add_argument("--intrinsic", default="disagreement", help="wm explore's intrinsic reward (default disagreement)")
    p.add_argument("--base-episodes", type=int, default=8, help="random episodes before exploring (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="wm explore rounds (default 3)")
    p.add_argument("--episodes", type=int, default=8, help="episodes the explorer collects per round (default 8)")
    p.add_argument("--vision-epochs", type=int, default=60,
                   help="VAE epochs of the first round (default 60: at 6 the VAE of a few hundred frames had taken "
                        "~90 updates and encoded every square alike)")
    p.add_argument("--round-vision-epochs", type=int, default=5, help="VAE epochs per later round (default 5)")
    p.add_argument("--salient-weight", type=float, default=10.0,
                   help="the VAE's weight on pixels unlike the mean frame, e.g. the agent (default 10)")
    p.add_argument("--memory-epochs", type=int, default=30,
                   help="MDN-RNN epochs of the first round (a third as many more per round; default 30)")
    p.add_argument("--explorer", default="mpc", choices=["mpc", "cma"], help="wm explore's explorer (default mpc)")
    p.add_argument("--noise", type=float, default=0.3, help="the cma explorer's random-action probability (default 0.3)")
    p.add_argument("--generations", type=int, default=20, help="CMA-ES generations of the task (default 20)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="ExploreConfig overrides, e.g. refit_every=10")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0: seeds 0..N-1)")
    p.add_argument("--result", default=None,
                   help="JSON file under benchmarks/out/ (default zeroshot.json, MiniGrid zeroshot_minigrid.json)")
    p.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    args = p.parse_args()
    chosen = setting(args)
    result = args.result or chosen["out"]
    torch.set_num_threads(1)
    root = Path(args.out or tempfile.mkdtemp(prefix="zeroshot_"))
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows.append(pipeline(root, "explore", seed, args))
        rows.append(pipeline(root, "random", seed, args, steps=rows[-1]["steps"]))
        for row in rows[-2:]:
            print(json.dumps(row), flush=True)
    print(f"\n{chosen['label']}, episodes of {args.max_steps} steps, task {chosen['task']}; explore: "
          f"{args.base_episodes} random + {args.rounds} x {args.episodes} {args.intrinsic} episodes ({args.explorer}"
          f"{', ' + ' '.join(args.set) if args.set else ''})\n")
    print(f"| seed | data | real steps | {chosen['states']} | {chosen['goal']} | head loss before -> after | "
          "dream fitness | real success | real task return | controller's squares | seconds |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['data']} | {r['steps']} | {r['squares']} | {r['corner_steps']} | "
              f"{r['head_loss_before']:.4f} -> {r['head_loss_after']:.4f} | {r['dream_fitness']:.3f} | "
              f"{r['success_rate']:.2f} | {r['task_return']:.2f} | "
              f"{'-' if r['controller_squares'] is None else format(r['controller_squares'], '.1f')} | "
              f"{r['seconds_data_and_model'] + r['seconds_task']:.0f} |")
    for data in ("explore", "random"):
        ours = [r for r in rows if r["data"] == data]
        print(f"{data}: success {np.mean([r['success_rate'] for r in ours]):.2f} mean over {len(ours)} seeds")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / result).write_text(json.dumps({"args": vars(args), "rows": rows, "machine": machine()}, indent=1))
    print(f"\nsaved {OUT / result}; runs in {root}")


if __name__ == "__main__":
    main()
