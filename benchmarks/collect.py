"""Collection throughput: the raw Gymnasium loop vs ``wm collect`` with W workers.

    python benchmarks/collect.py [--env CarRacing-v3] [--episodes 16] [--max-steps 300] [--workers 1 2]

The raw loop is what any collector has to do: ``reset``/``step`` of the env (whose observation
is its own rendered frame), the same random policy, one process. ``wm collect`` is timed as a
user sees it: ``worldmodels.collect.collect`` in this process on a fresh run directory, from the
call to the summary, so env checks, worker start-up, the pixel pipeline, compression and the
writes all count. ``--episodes`` is per worker (W workers collect W x episodes), so every
measurement lasts about as long. The ratio is ``collect rate / (W x raw rate)``; 1.0 is perfect.
Prints a Markdown table and saves JSON to ``benchmarks/out/collect.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
from common import OUT, machine

from worldmodels.agents.random import RandomAgent
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.collect.driver import episode_seed
from worldmodels.core.executor import default_workers
from worldmodels.envs.spaces import ActionSpec
from worldmodels.runs.rundir import RunDir


def raw_loop(env_id: str, episodes: int, max_steps: int, seed: int) -> dict:
    """Steps per second of a plain Gymnasium loop with a seeded random policy."""
    env = gym.make(env_id, max_episode_steps=max_steps)
    agent = RandomAgent(ActionSpec.from_space(env.action_space))
    steps, start = 0, time.perf_counter()
    for index in range(episodes):
        episode = episode_seed(seed, index)
        agent.seed(episode)
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            action, _ = agent.act(obs[None], None)
            obs, _, terminated, truncated, _ = env.step(action[0])
            steps += 1
            done = terminated or truncated
    seconds = time.perf_counter() - start
    env.close()
    return {"name": "raw Gymnasium loop", "workers": 1, "episodes": episodes, "steps": steps,
            "seconds": seconds, "steps_per_second": steps / seconds}


def wm_collect(env_id: str, episodes: int, max_steps: int, workers: int, seed: int) -> dict:
    """Steps per second of ``wm collect`` with ``workers`` processes, end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        config = CollectConfig(env=env_id, episodes=episodes, max_steps=max_steps, workers=workers, seed=seed)
        start = time.perf_counter()
        summary = collect(RunDir(Path(tmp) / "run"), config, progress=False)
        seconds = time.perf_counter() - start
    steps = summary["frames"] - summary["episodes"]
    return {"name": "wm collect", "workers": workers, "episodes": episodes, "steps": steps, "seconds": seconds,
            "steps_per_second": steps / seconds, "disk_mb": summary["disk_mb"]}


def table(rows: list[dict]) -> str:
    lines = ["| measurement | W | episodes | steps | seconds | steps/s | collect / (W x raw) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
        lines.append(f"| {r['name']} | {r['workers']} | {r['episodes']} | {r['steps']} | {r['seconds']:.1f} | "
                     f"{r['steps_per_second']:.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CarRacing-v3")
    parser.add_argument("--episodes", type=int, default=16, help="episodes per worker (default 16)")
    parser.add_argument("--max-steps", type=int, default=300, help="steps per episode (default 300)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts to measure (default: 1 and the number of cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    workers = args.workers or sorted({1, default_workers()})

    raw = raw_loop(args.env, args.episodes, args.max_steps, args.seed)
    rows = [raw]
    for w in workers:
        row = wm_collect(args.env, w * args.episodes, args.max_steps, w, args.seed)
        row["ratio"] = row["steps_per_second"] / (w * raw["steps_per_second"])
        rows.append(row)

    result = {"benchmark": "collect", "env": args.env, "max_steps": args.max_steps, "machine": machine(),
              "rows": rows}
    print(table(rows))
    OUT.mkdir(exist_ok=True)
    (OUT / "collect.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {OUT / 'collect.json'}")
    return result


if __name__ == "__main__":
    main()
