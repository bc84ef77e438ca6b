"""The ``wm`` command line: one subcommand per pipeline stage, all sharing a run directory."""

from __future__ import annotations

import argparse
import json
import sys

from worldmodels.errors import UserError


def _crop(text: str) -> tuple[int, int, int, int]:
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("crop is TOP,BOTTOM,LEFT,RIGHT in raw-frame pixels")
    return tuple(parts)


def add_collect(sub) -> None:
    p = sub.add_parser("collect", help="roll out a policy in an env and store episodes",
                       description="Collect episodes into RUN/episodes (one compressed .npz each). "
                                   "Re-running completes an interrupted collection.")
    p.add_argument("env", help="Gymnasium id (CarRacing-v3) or package.module:Callable returning a gymnasium.Env")
    p.add_argument("--run", required=True, help="run directory (created if missing)")
    p.add_argument("--episodes", type=int, default=16, help="total episodes the run should hold (default 16)")
    p.add_argument("--max-steps", type=int, default=None, help="truncate episodes after T agent steps")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: number of cores)")
    p.add_argument("--policy", default="random",
                   help="agent that acts: random, brownian, or any trained agent of the run (default random)")
    p.add_argument("--seed", type=int, default=0, help="episode i is seeded from (seed, i) (default 0)")
    p.add_argument("--env-kwargs", default=None, help="JSON object of env constructor kwargs, e.g. '{\"continuous\": false}'")
    p.add_argument("--frame-skip", type=int, default=None, help="env steps per agent action (default 1)")
    p.add_argument("--crop", type=_crop, default=None,
                   help="TOP,BOTTOM,LEFT,RIGHT crop of raw frames (default: CarRacing drops its dashboard)")
    p.set_defaults(func=cmd_collect)


def cmd_collect(args) -> None:
    from envs.make import parse_kwargs
    from worldmodels.collect import CollectConfig, collect
    from worldmodels.rundir import RunDir

    config = CollectConfig(env=args.env, episodes=args.episodes, max_steps=args.max_steps, workers=args.workers,
                           policy=args.policy, seed=args.seed, env_kwargs=parse_kwargs(args.env_kwargs),
                           frame_skip=args.frame_skip, crop=args.crop)
    s = collect(RunDir(args.run), config)
    print(f"collect: {s['episodes']} episodes ({s['collected']} new), {s['frames']} frames, "
          f"return mean {s['return_mean']:.2f} min {s['return_min']:.2f} max {s['return_max']:.2f}, "
          f"{s['steps_per_second']:.0f} env steps/s, {s['disk_mb']:.1f} MiB on disk -> {args.run}/episodes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wm", description="worldmodels: learn a world model from pixels and act inside it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    add_collect(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"wm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nwm {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
