"""``wm explore``'s explorer against random at equal real steps on a fresh sparse Maze (issue 19).

Per seed: ``--base-episodes`` random episodes, then ``wm explore`` (``--rounds`` x ``--episodes`` episodes of the
curious explorer, no extrinsic reward), small models (z 16, MDN-RNN h 64; ``--models defaults``: ``wm explore``'s
own sizes) for a 2-core CPU; everything else
(the explorer, its settings, the VAE's and MDN-RNN's epochs) is ``ExploreConfig``'s defaults unless ``--set
key=value`` overrides it (``--set explorer=cma`` for the CMA-ES explorer).
A random walk then takes the same real steps in the same env, episode by episode. Distinct grid squares
(read off the stored frames; the random walk's from the env) per round and in total, and the real step of the
first visit to the far corner, for both; and how far apart the run's final VAE puts the squares (``separation``:
mean distance between the latent means of different squares, against the mean spread within one square). Results
to ``out/explore_rounds.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from common import OUT, machine

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.core.settings import set_path
from worldmodels.curiosity.explore import ExploreConfig, explore
from worldmodels.dream.imagine import DreamConfig
from worldmodels.envs.maze import Maze, agent_cells
from worldmodels.runs.artifacts import load_vision
from worldmodels.runs.episodes import list_episodes, load_episode
from worldmodels.runs.rundir import RunDir


def squares(episodes: list[dict]) -> tuple[set, int]:
    """(distinct grid squares, steps) over stored ``episodes`` (frames uint8 [T+1, 64, 64, 3])."""
    seen = set()
    for episode in episodes:
        seen.update(map(tuple, agent_cells(episode["obs"]).tolist()))
    return seen, sum(len(e["reward"]) for e in episodes)


@torch.no_grad()
def separation(run: RunDir, episodes: list[dict]) -> dict:
    """How the run's VAE tells squares apart: mean distance between the latent means (VAE ``mu``) of different
    squares, and the mean distance of a frame's latent from its own square's mean (latent units)."""
    vision = load_vision(run, "cpu")
    z = torch.cat([vision.encode(torch.as_tensor(e["obs"]))[0] for e in episodes]).numpy()
    cells = np.concatenate([agent_cells(e["obs"]) for e in episodes])
    keys = cells[:, 0] * 1000 + cells[:, 1]
    means = np.stack([z[keys == k].mean(0) for k in np.unique(keys)])
    within = np.mean([np.linalg.norm(z[keys == k] - m, axis=1).mean() for k, m in zip(np.unique(keys), means)])
    between = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(len(means), 1)].mean()
    return {"between_squares": float(between), "within_square": float(within)}


def first_goal(episodes: list[dict]) -> int | None:
    """Real step (counting from 1 over ``episodes`` in order) of the first reward, the far corner; None if never."""
    steps = 0
    for episode in episodes:
        hit = np.flatnonzero(episode["reward"] > 0)
        if hit.size:
            return steps + int(hit[0]) + 1
        steps += len(episode["reward"])
    return None


def random_walk(cells: int, max_steps: int, chunks: list[int], seed: int) -> dict:
    """Uniformly random actions over ``sum(chunks)`` real steps in episodes of ``max_steps``: distinct squares per
    chunk and in total, and the step of the first goal."""
    env, rng = Maze(cells=cells, max_steps=max_steps), np.random.default_rng(10_000 + seed)
    per_chunk, total, goal, step = [], set(), None, 0
    env.reset()
    for size in chunks:
        seen = {env.position}
        for _ in range(size):
            _, reward, terminated, truncated, info = env.step(int(rng.integers(4)))
            step += 1
            seen.add(info["position"])
            if reward > 0 and goal is None:
                goal = step
            if terminated or truncated:
                env.reset()
                seen.add(env.position)
        per_chunk.append(len(seen))
        total |= seen
    return {"squares_round": per_chunk[1:], "squares_total": len(total), "first_goal": goal}


def explorer_run(root: Path, seed: int, args, overrides: list[str]) -> dict:
    """Base random episodes, then ``wm explore``; squares per round and in total, first goal, seconds."""
    run = RunDir(root / f"explore_{seed}")
    env = {"env": "worldmodels.envs.maze:Maze", "max_steps": args.max_steps, "workers": 1, "seed": seed,
           "env_kwargs": {"cells": args.cells}}
    small = {"z_dim": 16, "hidden_size": 64, "seq_len": 16, "batch_size": 16, "curiosity_steps": 200, "generations": 12,
             "dream": DreamConfig(max_steps=args.max_steps)}
    config = ExploreConfig(rounds=args.rounds, episodes=args.episodes, seed=seed, device="cpu",
                           **(small if args.models == "small" else {}))
    for pair in overrides:  # FIELD=VALUE, parsed by the field's type as `wm run --set` does
        key, _, value = pair.partition("=")
        config = set_path(config, key, value)
    t0 = time.perf_counter()
    collect(run, CollectConfig(episodes=args.base_episodes, **env), progress=False)
    history = explore(run, config, progress=False)
    episodes = [load_episode(p) for _, p in sorted(list_episodes(run.episodes).items())]
    base, k = args.base_episodes, args.episodes
    rounds = [squares(episodes[base + r * k:base + (r + 1) * k]) for r in range(args.rounds)]
    return {"chunks": [squares(episodes[:base])[1]] + [steps for _, steps in rounds],
            "squares_round": [len(s) for s, _ in rounds], "squares_total": len(squares(episodes)[0]),
            "first_goal": first_goal(episodes), "action_entropy": [r["action_entropy"] for r in history["rounds"]],
            "separation": separation(run, episodes),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="how many seeds (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0: seeds 0..N-1)")
    p.add_argument("--cells", type=int, default=3, help="Maze rooms per side (default 3: 17 open squares)")
    p.add_argument("--max-steps", type=int, default=60, help="episode length in real steps (default 60)")
    p.add_argument("--base-episodes", type=int, default=8, help="random episodes before exploring (default 8)")
    p.add_argument("--rounds", type=int, default=4, help="wm explore rounds (default 4)")
    p.add_argument("--episodes", type=int, default=16, help="explorer episodes per round (default 16)")
    p.add_argument("--models", default="small", choices=["small", "defaults"],
                   help="small: z 16, MDN-RNN h 64 and a lighter curiosity/CMA-ES budget (default); defaults: "
                        "wm explore's own (ExploreConfig's defaults but rounds and episodes)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="ExploreConfig overrides")
    p.add_argument("--root", default="/tmp/explore2_bench", help="where the runs go (default /tmp/explore2_bench)")
    p.add_argument("--out", default="explore_rounds.json", help="results file under benchmarks/out/")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        explorer = explorer_run(Path(args.root), seed, args, args.set)
        rows.append({"seed": seed, "explorer": explorer,
                     "random": random_walk(args.cells, args.max_steps, explorer["chunks"], seed)})
        print(json.dumps(rows[-1]), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / args.out).write_text(json.dumps({"args": vars(args), "machine": machine(), "rows": rows}, indent=1))
    for name in ("explorer", "random"):
        totals = [r[name]["squares_total"] for r in rows]
        goals = [r[name]["first_goal"] for r in rows]
        print(f"{name}: squares {np.mean(totals):.1f} +- {np.std(totals):.1f}, goal {sum(g is not None for g in goals)}"
              f"/{len(rows)} at steps {goals}")


if __name__ == "__main__":
    main()
