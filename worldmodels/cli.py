"""The ``wm`` command line: one subcommand per pipeline stage, all sharing a run directory."""

from __future__ import annotations

import argparse
import sys

from worldmodels.core.errors import UserError


def _crop(text: str) -> tuple[int, int, int, int]:
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("crop is TOP,BOTTOM,LEFT,RIGHT in raw-frame pixels")
    return tuple(parts)


def _add_backend(p, what: str) -> None:
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help=f"where {what} run: local processes (default) or Ray actors (pip install 'worldmodels[ray]'; "
                        "the run directory must be on storage every node shares)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to attach to: HOST:PORT, or auto for the one `ray start` made on this node "
                        "(default: $RAY_ADDRESS, else a new local one)")


def add_planner_flags(p) -> None:
    """CEM settings shared by ``wm eval --agent cem`` and ``wm foresight`` (None: the planner's default)."""
    p.add_argument("--horizon", type=int, default=None, help="planning horizon (default 12)")
    p.add_argument("--candidates", type=int, default=None, help="action sequences per iteration (default 1000)")
    p.add_argument("--iterations", type=int, default=None, help="CEM iterations per decision (default 10)")
    p.add_argument("--elites", type=int, default=None, help="elite sequences refitted (default 100, at most candidates/10)")
    p.add_argument("--method", choices=["cem", "icem", "mppi"], default=None, help="optimiser (default cem)")


def add_collect(sub) -> None:
    p = sub.add_parser("collect", help="roll out a policy in an env and store episodes",
                       description="Collect episodes into RUN/episodes (one compressed .npz each). "
                                   "Re-running completes an interrupted collection.")
    p.add_argument("env", help="Gymnasium id (CarRacing-v3) or package.module:Callable returning a gymnasium.Env")
    p.add_argument("--run", required=True, help="run directory (created if missing)")
    p.add_argument("--episodes", type=int, default=16, help="total episodes the run should hold (default 16)")
    p.add_argument("--max-steps", type=int, default=None, help="truncate episodes after T agent steps")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: number of cores)")
    _add_backend(p, "the workers")
    p.add_argument("--policy", default="random",
                   help="agent that acts: random, brownian, or any trained agent of the run (default random)")
    p.add_argument("--seed", type=int, default=0, help="episode i is seeded from (seed, i) (default 0)")
    p.add_argument("--env-kwargs", default=None, help="JSON object of env constructor kwargs, e.g. '{\"continuous\": false}'")
    p.add_argument("--frame-skip", type=int, default=None, help="env steps per agent action (default 1)")
    p.add_argument("--crop", type=_crop, default=None,
                   help="TOP,BOTTOM,LEFT,RIGHT crop of raw frames (default: CarRacing drops its dashboard)")
    p.set_defaults(func=cmd_collect)


def cmd_collect(args) -> None:
    from worldmodels.collect.collector import CollectConfig, collect
    from worldmodels.envs.make import parse_kwargs
    from worldmodels.runs.rundir import RunDir

    config = CollectConfig(env=args.env, episodes=args.episodes, max_steps=args.max_steps, workers=args.workers,
                           policy=args.policy, seed=args.seed, env_kwargs=parse_kwargs(args.env_kwargs),
                           frame_skip=args.frame_skip, crop=args.crop, backend=args.backend,
                           ray_address=args.ray_address)
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
    p.add_argument("--reward-weight", type=float, default=1.0,
                   help="memory: weight of the reward loss against the latent NLL (default 1)")
    p.add_argument("--reward-smoothing", type=int, default=1,
                   help="memory: spread each reward over this many steps before it (default 1: none)")
    p.add_argument("--patience", type=int, default=5, help="early stopping: epochs without improvement (default 5)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batches")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an interrupted or shorter training (default); --no-resume starts over")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    from worldmodels.runs.rundir import RunDir
    from worldmodels.training.memory import MemoryTrainConfig, train_memory
    from worldmodels.training.vision import VisionTrainConfig, train_vision

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
                                   reward_weight=args.reward_weight, reward_smoothing=args.reward_smoothing,
                                   **common, **given)
        s = train_memory(run, config, resume=args.resume)
        print(f"memory: {s['epochs']} epochs, best validation loss {s['best_val_loss']:.3f} -> {run.memory}")
    print(f"TensorBoard: tensorboard --logdir {run.tb}")


def add_dream(sub) -> None:
    p = sub.add_parser("dream", help="optimise a controller inside the dream (CMA-ES or any SB3 algorithm)",
                       description="Train an agent entirely inside the learned world model. --algo cma (default) "
                                   "runs CMA-ES on a linear controller, the population evaluated as one batched "
                                   "dream; any other name trains that stable-baselines3 algorithm on batched dreams.")
    p.add_argument("--run", required=True, help="run directory with trained vision and memory models")
    p.add_argument("--algo", default="cma", help="cma (default), or a stable-baselines3 algorithm: ppo, a2c, sac, td3, ...")
    p.add_argument("--generations", type=int, default=100, help="CMA-ES generations (default 100)")
    p.add_argument("--population", type=int, default=64, help="CMA-ES population (default 64, the paper's)")
    p.add_argument("--rollouts", type=int, default=16, help="dreams per candidate (default 16, the paper's)")
    p.add_argument("--sigma0", type=float, default=0.1, help="CMA-ES initial step size (default 0.1)")
    p.add_argument("--hidden", type=int, default=0, help="controller hidden layer width (default 0: linear)")
    p.add_argument("--temperature", type=float, default=1.0, help="dream temperature tau (default 1.0)")
    p.add_argument("--done-threshold", type=float, default=0.5, help="P(done) that ends a dream (default 0.5)")
    p.add_argument("--dream-steps", type=int, default=1000, help="dream length limit in steps (default 1000)")
    p.add_argument("--real-every", type=int, default=10,
                   help="score CMA-ES's mean in the real env every K generations (default 10; 0: never)")
    p.add_argument("--real-episodes", type=int, default=4, help="real episodes per check (default 4)")
    p.add_argument("--real-max-steps", type=int, default=None, help="truncate real-env checks (default: the run's)")
    p.add_argument("--select", choices=["real", "dream"], default="real",
                   help="keep the controller that scored best in real checks (default) or CMA-ES's last mean")
    p.add_argument("--intrinsic", choices=["surprise", "icm", "disagreement", "infogain"], default=None,
                   help="add a curiosity reward inside the dream (default: extrinsic only)")
    p.add_argument("--beta", type=float, default=1.0, help="weight of the normalised intrinsic reward (default 1.0)")
    p.add_argument("--timesteps", type=int, default=100_000, help="SB3: dream timesteps in total (default 100000)")
    p.add_argument("--envs", type=int, default=16, help="SB3: parallel dreams (default 16)")
    p.add_argument("--workers", type=int, default=None, help="worker processes for real-env checks")
    _add_backend(p, "real-env checks")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue a saved optimisation (default); --no-resume starts over")
    p.set_defaults(func=cmd_dream)


def cmd_dream(args) -> None:
    from worldmodels.runs.rundir import RunDir

    run = RunDir(args.run)
    run.read_meta()
    if args.algo == "cma":
        from worldmodels.dream.cma import CMAConfig, train_cma

        if not args.resume:
            for name in ("cma_state.pkl", "history.json", "params.npz", "config.json"):
                (run.controller / name).unlink(missing_ok=True)
        config = CMAConfig(generations=args.generations, population=args.population, rollouts=args.rollouts,
                           sigma0=args.sigma0, hidden=args.hidden, temperature=args.temperature,
                           done_threshold=args.done_threshold, max_steps=args.dream_steps,
                           real_every=args.real_every, real_episodes=args.real_episodes,
                           real_max_steps=args.real_max_steps, select=args.select, workers=args.workers,
                           backend=args.backend, ray_address=args.ray_address, intrinsic=args.intrinsic,
                           beta=args.beta, seed=args.seed, device=args.device)
        history = train_cma(run, config)
        last = history["generations"][-1]
        line = f"dream: {last['generation']} generations, dream fitness best {last['best']:.1f} mean {last['mean']:.1f}"
        if history["best_real"]:
            best = history["best_real"]
            line += f"; best real-env check {best['mean']:.1f} +- {best['std']:.1f} (generation {best['generation']})"
        print(f"{line} -> {run.controller}")
    else:
        from worldmodels.dream.sb3 import SB3Config, sb3_path, train_sb3

        if not args.resume and sb3_path(run, args.algo).exists():
            sb3_path(run, args.algo).unlink()
        info = train_sb3(run, SB3Config(algo=args.algo, timesteps=args.timesteps, envs=args.envs,
                                        temperature=args.temperature, done_threshold=args.done_threshold,
                                        max_steps=args.dream_steps, intrinsic=args.intrinsic, beta=args.beta,
                                        seed=args.seed, device=args.device))
        print(f"dream: {info['algo'].upper()} trained for {info['timesteps']} dream steps -> {info['path']}")
    print(f"next: wm eval --run {run.root} --agent {'controller' if args.algo == 'cma' else 'sb3'}")


def add_eval(sub) -> None:
    from worldmodels.agents import AGENTS

    p = sub.add_parser("eval", help="score an agent in the real env",
                       description="Run an agent in the real env (as recorded in run.json) for N seeded episodes "
                                   "on W workers; writes RUN/eval/results.json.")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--agent", default="controller", help=f"one of {', '.join(AGENTS)} (default controller)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: number of cores)")
    _add_backend(p, "the workers")
    p.add_argument("--max-steps", type=int, default=None, help="truncate episodes (default: the run's setting)")
    p.add_argument("--video", action="store_true", help="write mp4s of the best and worst episode")
    p.add_argument("--seed", type=int, default=0, help="episode i is seeded from (seed, i) (default 0)")
    p.add_argument("--algo", default=None, help="for --agent sb3: which saved algorithm")
    add_planner_flags(p.add_argument_group("planner agents (--agent cem)"))
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> None:
    from worldmodels.evaluation.evaluate import evaluate
    from worldmodels.runs.rundir import RunDir

    run = RunDir(args.run)
    options = {k: getattr(args, k) for k in ("algo", "horizon", "candidates", "iterations", "elites", "method")
               if getattr(args, k) is not None}
    s = evaluate(run, args.agent, episodes=args.episodes, workers=args.workers, seed=args.seed,
                 max_steps=args.max_steps, video=args.video, agent_options=options, backend=args.backend,
                 ray_address=args.ray_address)
    print(f"eval {args.agent}: {s['mean']:.1f} +- {s['std']:.1f} over {s['episodes']} episodes "
          f"(min {s['min']:.1f}, max {s['max']:.1f}) -> {run.eval / 'results.json'}")
    for name, path in s.get("videos", {}).items():
        print(f"  {name} episode video: {path}")


def add_run(sub) -> None:
    p = sub.add_parser("run", help="the whole pipeline on a preset: collect -> train -> dream -> eval",
                       description="Run every stage on a preset (smoke: a minute; laptop: about 15 minutes on a "
                                   "2-core CPU; gpu; paper). Resumable: re-run the same command to continue.")
    p.add_argument("env", help="Gymnasium id or package.module:Callable (e.g. CarRacing-v3)")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--preset", default="laptop", help="smoke | laptop | gpu | paper (default laptop)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: number of cores)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> None:
    from worldmodels.pipeline import run_pipeline
    from worldmodels.runs.rundir import RunDir

    run = RunDir(args.run)
    s = run_pipeline(args.env, run, args.preset, workers=args.workers, device=args.device, seed=args.seed)
    print(f"\n{args.env}, preset {args.preset}: real-env scores over {next(iter(s['scores'].values()))['episodes']} episodes")
    for agent, score in s["scores"].items():
        print(f"  {agent:12s} {score['mean']:8.1f} +- {score['std']:.1f}")
    print("time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items()))
    print(f"results: {run.root}/pipeline.json, {run.eval}/  videos: {run.eval}/controller_best.mp4  "
          f"TensorBoard: tensorboard --logdir {run.tb}")


def add_report(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML page of a run's results",
                       description="Tables (measured scores beside published anchors), PNG plots of the "
                                   "training and CMA-ES curves and score distributions, and episode filmstrips.")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--out", default=None, help="output path (default RUN/report.html)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> None:
    from worldmodels.report.page import write_report
    from worldmodels.runs.rundir import RunDir

    print(f"report: {write_report(RunDir(args.run), args.out)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wm", description="worldmodels: learn a world model from pixels and act inside it.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    add_collect(sub)
    add_train(sub)
    add_dream(sub)
    add_eval(sub)
    add_run(sub)
    add_report(sub)
    from worldmodels.curiosity.explore import add_parser as add_explore
    from worldmodels.planning.foresight import add_parser as add_foresight

    add_explore(sub)
    add_foresight(sub)
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
