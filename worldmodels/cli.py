"""The ``wm`` command line: one subcommand per pipeline stage, all sharing a run directory.

Each stage's flags are generated from its config dataclass (``worldmodels.core.settings``): a
setting's name, type, default and help are declared once, on the dataclass field. Only the
flags a user types override the defaults; a flag that does not apply to what was asked (an SB3
setting with CMA-ES, a planner setting for a non-planning agent) is a one-line error.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, fields
from pathlib import Path

from worldmodels import __version__
from worldmodels.agents import AGENTS
from worldmodels.agents.cem import planner_config
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.core.settings import add_flags, build, flags_of, given, reject_inapplicable, set_path
from worldmodels.curiosity.explore import add_parser as add_explore
from worldmodels.dream.imagine import DreamConfig
from worldmodels.evaluation.evaluate import EvalConfig, evaluate
from worldmodels.pipeline import presets, run_pipeline
from worldmodels.planning.foresight import ForesightConfig, load_goal, run_foresight
from worldmodels.planning.optimizers import CEMConfig
from worldmodels.report.page import write_report
from worldmodels.runs.rundir import RunDir
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``wm STAGE: error: ...``, exit code 2) instead of usage dumps."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_run_dir(p, what: str = "run directory") -> None:
    p.add_argument("--run", required=True, help=what)


def _add_backend(p, what: str) -> None:
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help=f"where {what} run: local processes (default) or Ray actors (pip install 'worldmodels[ray]'; "
                        "the run directory must be on storage every node shares)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to attach to: HOST:PORT, or auto for the one `ray start` made on this node "
                        "(default: $RAY_ADDRESS, else a new local one)")


def add_collect(sub) -> None:
    p = sub.add_parser("collect", help="roll out an agent in an env and store episodes",
                       description="Collect episodes into RUN/episodes (one compressed .npz each). "
                                   "Re-running completes an interrupted collection.")
    p.add_argument("env", help="Gymnasium id (CarRacing-v3) or package.module:Callable returning a gymnasium.Env")
    add_run_dir(p, "run directory (created if missing)")
    add_flags(p, CollectConfig)
    p.set_defaults(func=cmd_collect)


def cmd_collect(args) -> None:
    config = build(CollectConfig, given(args), CollectConfig(env=args.env))
    s = collect(RunDir(args.run), config)
    print(f"collect: {s['episodes']} episodes ({s['collected']} new), {s['frames']} frames, "
          f"return mean {s['return_mean']:.2f} min {s['return_min']:.2f} max {s['return_max']:.2f}, "
          f"{s['steps_per_second']:.0f} env steps/s, {s['disk_mb']:.1f} MiB on disk -> {args.run}/episodes")


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train the world model: vision (ConvVAE), then memory (MDN-RNN or VRNN)",
                       description="Train the vision model on RUN/episodes, encode every episode to latents, "
                                   "then train the memory model on latent sequences. Resumes by default; a flag "
                                   "both stages have (--epochs, --lr, ...) sets both.")
    p.add_argument("stage", nargs="?", choices=["vision", "memory"], default=None,
                   help="train only this stage (default: vision, then memory)")
    add_run_dir(p, "run directory holding collected episodes")
    add_flags(p, VisionTrainConfig, MemoryTrainConfig, labels=("vision", "memory"))
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue an interrupted or shorter training (default); --no-resume starts over")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    run = RunDir(args.run)
    run.read_meta()
    values = {k: v for k, v in given(args).items() if k not in ("run", "stage", "resume")}
    if args.stage == "vision":
        reject_inapplicable(values, flags_of(VisionTrainConfig), "to `wm train vision`")
    if args.stage == "memory":
        reject_inapplicable(values, flags_of(MemoryTrainConfig), "to `wm train memory`")
    if args.stage in (None, "vision"):
        s = train_vision(run, build(VisionTrainConfig, values), resume=args.resume)
        print(f"vision: {s['epochs']} epochs, best validation loss {s['best_val_loss']:.2f} -> {run.vision}")
    if args.stage in (None, "memory"):
        s = train_memory(run, build(MemoryTrainConfig, values), resume=args.resume)
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


def dream_config(args):
    """The ``DreamConfig`` of ``wm dream``'s --temperature, --done-threshold and --dream-steps."""
    return DreamConfig(args.temperature, args.done_threshold, args.dream_steps)


def cmd_dream(args) -> None:
    from worldmodels.runs.rundir import RunDir

    run = RunDir(args.run)
    run.read_meta()
    if args.algo == "cma":
        from worldmodels.dream.cma import CMAConfig, forget, train_cma

        if not args.resume:
            forget(run)
        config = CMAConfig(generations=args.generations, population=args.population, rollouts=args.rollouts,
                           sigma0=args.sigma0, hidden=args.hidden, dream=dream_config(args),
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
                                        dream=dream_config(args), intrinsic=args.intrinsic, beta=args.beta,
                                        seed=args.seed, device=args.device))
        print(f"dream: {info['algo'].upper()} trained for {info['timesteps']} dream steps -> {info['path']}")
    print(f"next: wm eval --run {run.root} --agent {'controller' if args.algo == 'cma' else 'sb3'}")


PLANNER_AGENTS = ("cem",)
SB3_OPTION_AGENTS = ("sb3", "cem")


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score an agent in the real env",
                       description="Run an agent in the real env (as recorded in run.json) for N seeded episodes "
                                   "on W workers; writes RUN/eval/results.json and RUN/eval/AGENT.json.")
    add_run_dir(p)
    add_flags(p, EvalConfig)
    p.add_argument("--algo", default=argparse.SUPPRESS,
                   help="--agent sb3: which saved SB3 model (default: the only one); --agent cem: plan with that "
                        "model's value as the terminal value (default: none)")
    add_flags(p.add_argument_group("planner (--agent cem)"), CEMConfig)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> None:
    run = RunDir(args.run)
    values = given(args)
    config = build(EvalConfig, values)
    if config.agent not in AGENTS:
        raise UserError(f"unknown agent {config.agent!r}; choose one of {', '.join(AGENTS)}")
    options = {k: v for k, v in values.items() if k not in flags_of(EvalConfig) | {"run"}}
    if config.agent not in PLANNER_AGENTS:
        reject_inapplicable({k: v for k, v in options.items() if k != "algo"}, set(),
                            f"to --agent {config.agent} (planner settings are for --agent cem)")
    if config.agent not in SB3_OPTION_AGENTS:
        reject_inapplicable(options, set(), f"to --agent {config.agent} (--algo is for --agent sb3 or cem)")
    s = evaluate(run, config.agent, episodes=config.episodes, workers=config.workers, seed=config.seed,
                 max_steps=config.max_steps, video=config.video, agent_options=options, device=config.device,
                 backend=config.backend, ray_address=config.ray_address)
    print(f"eval {config.agent}: {s['mean']:.1f} +- {s['std']:.1f} over {s['episodes']} episodes "
          f"(min {s['min']:.1f}, max {s['max']:.1f}) -> {run.eval / 'results.json'}")
    for name, path in s.get("videos", {}).items():
        print(f"  {name} episode video: {path}")


def add_run(sub) -> None:
    p = sub.add_parser("run", help="the whole pipeline on a preset: collect -> train -> dream -> eval",
                       description="Run every stage on a preset (smoke: about a minute; laptop: about 20 minutes "
                                   "on a 2-core CPU; gpu; paper). --set changes any preset field. Resumable: "
                                   "re-run the same command to continue.")
    p.add_argument("env", help="Gymnasium id or package.module:Callable (e.g. CarRacing-v3)")
    add_run_dir(p)
    p.add_argument("--preset", default="laptop", help="smoke | laptop | gpu | paper (default laptop)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                   help="override a preset field, e.g. --set cma.generations=40 --set memory.kind=vrnn "
                        "--set rounds=3 (repeatable; `wm run ENV --run DIR --show` lists the fields)")
    p.add_argument("--show", action="store_true", help="print the preset's settings (after --set) and exit")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage (default 0)")
    p.set_defaults(func=cmd_run)


def preset_with_overrides(env: str, name: str, overrides: list[str]):
    """Preset ``name`` for ``env`` with ``FIELD=VALUE`` overrides applied (a ``UserError`` if one is bad)."""
    table = presets(env)
    if name not in table:
        raise UserError(f"unknown preset {name!r}; choose one of {', '.join(table)}")
    preset = table[name]
    for item in overrides:
        path, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: expected FIELD=VALUE, e.g. cma.generations=40")
        preset = set_path(preset, path.strip(), value.strip())
    return preset


def cmd_run(args) -> None:
    preset = preset_with_overrides(args.env, args.preset, args.overrides)
    if args.show:
        for group in fields(preset):
            value = getattr(preset, group.name)
            items = asdict(value).items() if hasattr(value, "__dataclass_fields__") else [(None, value)]
            for key, v in items:
                print(f"{group.name}.{key} = {v}" if key else f"{group.name} = {v}")
        return
    run = RunDir(args.run)
    s = run_pipeline(args.env, run, preset, workers=args.workers, device=args.device, seed=args.seed,
                     preset_name=args.preset)
    print(f"\n{args.env}, preset {args.preset}: real-env scores over {next(iter(s['scores'].values()))['episodes']} episodes")
    for agent, score in s["scores"].items():
        print(f"  {agent:12s} {score['mean']:8.1f} +- {score['std']:.1f}")
    print("time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items()))
    print(f"results: {run.root}/pipeline.json, {run.eval}/  videos: {run.eval}/controller_best.mp4  "
          f"TensorBoard: tensorboard --logdir {run.tb}")


def add_foresight(sub) -> None:
    p = sub.add_parser("foresight", help="visual foresight: plan to reach a goal image with CEM in the world model",
                       description="Re-plan every step with CEM so that the predicted future matches a goal image "
                                   "(Finn & Levine 2017); act in the real env. Writes RUN/eval/foresight.json and "
                                   "a video: current frame | goal | predicted frames of the chosen plan.")
    add_run_dir(p, "run directory with trained vision and memory models")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--goal", default=None, help="goal image file (64x64 RGB, e.g. a PNG)")
    goal.add_argument("--goal-episode", type=int, default=None, help="goal: a frame of this stored episode")
    p.add_argument("--goal-step", type=int, default=None, help="with --goal-episode: which frame (0 = first)")
    add_flags(p, ForesightConfig)
    add_flags(p.add_argument_group("planner"), CEMConfig)
    p.set_defaults(func=cmd_foresight)


def cmd_foresight(args) -> None:
    run = RunDir(args.run)
    run.read_meta()
    if args.goal is None and args.goal_step is None:
        raise UserError("--goal-episode needs --goal-step T (the frame of that episode to reach)")
    values = given(args)
    config = build(ForesightConfig, values)
    planner = planner_config(**{k: v for k, v in values.items() if k in flags_of(CEMConfig)})
    goal = load_goal(run, args.goal, args.goal_episode, args.goal_step)
    s = run_foresight(run, goal, planner, config.cost, config.cost_on, config.max_steps, config.seed,
                      config.reset_options, config.video, str(pick_device(config.device)))
    truth = "" if s["final_distance"] is None else (
        f", ground-truth distance {s['initial_distance']:.3f} -> {s['final_distance']:.3f}")
    print(f"foresight: {s['steps']} steps, latent distance {s['initial_latent_distance']:.3f} -> "
          f"{s['final_latent_distance']:.3f}{truth}, {1000 * s['seconds_per_decision']:.0f} ms/decision")
    print(f"  video: {s['video']}  summary: {run.eval / 'foresight.json'}")


def add_report(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML page of a run's results",
                       description="Scores with their sources (published anchors on CarRacing only), per-episode "
                                   "scores, learning curves with rounds marked, reconstructions and dreams, the "
                                   "run's videos, config, seeds and versions.")
    add_run_dir(p)
    p.add_argument("--out", default=None,
                   help="output folder: index.html and media/, linked relatively; nothing is written elsewhere "
                        "(default RUN/report)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> None:
    print(f"report: {write_report(RunDir(args.run), args.out)}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="wm", description="worldmodels: learn a world model from pixels and act inside it.")
    parser.add_argument("--version", action="version", version=f"worldmodels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for add in (add_collect, add_train, add_dream, add_eval, add_run, add_report, add_explore, add_foresight):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``wm ARGV``; returns the exit code (0 done, 2 a user error, 130 interrupted).

    A command holds its run directory's lock while it works (one command per run at a time);
    a directory it created and left empty (a command that failed at once) is removed again.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad flag (already printed on one line)
        return int(e.code or 0)
    root = Path(args.run) if getattr(args, "run", None) else None
    created = root is not None and not root.exists()
    try:
        if root is None:
            args.func(args)
        else:
            root.mkdir(parents=True, exist_ok=True)
            with RunDir(root).lock(f"wm {args.command}"):
                args.func(args)
    except UserError as e:
        print(f"wm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nwm {args.command}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        if created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
