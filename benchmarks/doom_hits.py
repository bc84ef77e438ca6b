"""How well ``labels.doom_hits`` finds hits in stored TakeCover frames, against the game's own health.

    python benchmarks/doom_hits.py [--episodes 60] [--jumps 4 6 8 10 12] [--seed 0]

Plays sticky random episodes (the doom preset's pixel pipeline and frame skip; a new action with probability
0.2 each step) and records each agent step's frame and the player's health (TakeCover's only game variable).
A step is hit when the health drops; the killing hit is left out (the done head learns deaths). Prints, per
flash threshold ``jump``, the hits the frames show (found), the ones they miss and the false alarms.
"""

from __future__ import annotations

import argparse

import numpy as np
from common import machine

from worldmodels.envs.make import make_env
from worldmodels.envs.pixels import PixelConfig
from worldmodels.pipeline import DOOM_SKIP, DOOM_STEPS
from worldmodels.training.labels import doom_hits

ENV = "VizdoomTakeCover-v1"


def sticky_episode(env, rng: np.random.Generator, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Frames ``[T+1, 64, 64, 3]``, health ``[T+1]`` and whether the episode ended in death."""
    obs, info = env.reset(seed=seed)
    frames, health, action = [obs], [info["state"]["gamevariables"][0]], 0
    while True:
        if rng.random() < 0.2:
            action = int(rng.integers(env.action_space.n))
        obs, _, terminated, truncated, info = env.step(action)
        frames.append(obs)
        health.append(info["state"]["gamevariables"][0])
        if terminated or truncated:
            return np.stack(frames), np.array(health), terminated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--jumps", type=float, nargs="+", default=[4, 6, 8, 10, 12])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = make_env(ENV, pixels=PixelConfig.for_env(ENV, frame_skip=DOOM_SKIP), max_steps=DOOM_STEPS // DOOM_SKIP)
    rng = np.random.default_rng(args.seed)
    episodes = [sticky_episode(env, rng, args.seed * 10_000 + i) for i in range(args.episodes)]
    env.close()
    steps = sum(len(h) - 1 for _, h, _ in episodes)
    print(f"{machine()}\n{args.episodes} episodes, {steps} agent steps (frame skip {DOOM_SKIP})\n")
    print("| jump | hits found | missed | false alarms |\n|---:|---:|---:|---:|")
    for jump in args.jumps:
        found = missed = false = 0
        for frames, health, died in episodes:
            hit, flagged = np.diff(health) < 0, doom_hits(frames, jump)[1:]
            if died:  # the killing hit: the done head's
                hit, flagged = hit[:-1], flagged[:-1]
            found += int((hit & flagged).sum())
            missed += int((hit & ~flagged).sum())
            false += int((~hit & flagged).sum())
        print(f"| {jump:g} | {found} | {missed} | {false} |")


if __name__ == "__main__":
    main()
