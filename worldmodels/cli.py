"""The ``wm`` command line: one subcommand per pipeline stage, all sharing a run directory."""

from __future__ import annotations

import argparse
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


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train the world model: vision (ConvVAE), then memory (MDN-RNN or VRNN)",
                       description="Train the vision model on RUN/episodes, encode every episode to latents, "
                                   "then train the memory model on latent sequences. Resumes by default.")
    p.add_argument("stage", nargs="?", choices=["vision", "memory"], default=None,
                   help="train only this stage (default: vision, then memory)")
    p.add_argument("--run", required=True, help="run directory holding collected episodes")
    p.add_argument("--epochs", type=int, default=None, help="epochs for each stage trained (default 10 vision, 20 memory)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 64 frames / 32 sequences)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    p.add_argument("--memory", choices=["mdn", "vrnn"], default="mdn", help="memory model kind (default mdn)")
    p.add_argument("--z-dim", type=int, default=32, help="VAE latent size (default 32)")
    p.add_argument("--hidden-size", type=int, default=256, help="memory model recurrent size (default 256)")
    p.add_argument("--seq-len", type=int, default=64, help="memory training window in steps (default 64)")
    p.add_argument("--patience", type=int, default=5, help="early stopping: epochs without improvement (default 5)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batches")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an interrupted or shorter training (default); --no-resume starts over")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    from worldmodels.rundir import RunDir
    from worldmodels.train import MemoryTrainConfig, VisionTrainConfig, train_memory, train_vision

    run = RunDir(args.run)
    run.read_meta()
    common = {"device": args.device, "seed": args.seed, "patience": args.patience}
    given = {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}.items()
             if v is not None}
    if args.stage in (None, "vision"):
        s = train_vision(run, VisionTrainConfig(z_dim=args.z_dim, **common, **given), resume=args.resume)
        print(f"vision: {s['epochs']} epochs, best validation loss {s['best_val_loss']:.2f} -> {run.vision}")
    if args.stage in (None, "memory"):
        config = MemoryTrainConfig(kind=args.memory, hidden_size=args.hidden_size, seq_len=args.seq_len,
                                   **common, **given)
        s = train_memory(run, config, resume=args.resume)
        print(f"memory: {s['epochs']} epochs, best validation loss {s['best_val_loss']:.3f} -> {run.memory}")
    print(f"TensorBoard: tensorboard --logdir {run.tb}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wm", description="worldmodels: learn a world model from pixels and act inside it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    add_collect(sub)
    add_train(sub)
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
