"""The ``wm`` command line: one subcommand per pipeline stage, all sharing a run directory.

Each stage's flags are generated from its config dataclass (``worldmodels.core.settings``): a
setting's name, type, default and help are declared once, on the dataclass field. Only the
flags a user types override the defaults; a flag that does not apply to what was asked (an SB3
setting with CMA-ES, a planner setting for a non-planning agent) is a one-line error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worldmodels import __version__
from worldmodels.agents import AGENTS
from worldmodels.agents.cem import planner_config
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.core.errors import UserError
from worldmodels.core.settings import (
    add_flags,
    build,
    flags_of,
    given,
    reject_inapplicable,
    set_path,
    settings_of,
)
from worldmodels.curiosity.explore import ExploreConfig, explore
from worldmodels.curiosity.task import TaskConfig, zero_shot
from worldmodels.dream.cma import CMAConfig, forget, train_cma
from worldmodels.dream.imagine import DreamConfig
from worldmodels.dream.sb3 import SB3Config, train_sb3
from worldmodels.evaluation.evaluate import EvalConfig, evaluate
from worldmodels.pipeline import presets, run_pipeline
from worldmodels.planning.foresight import ForesightConfig, run_foresight
from worldmodels.planning.goals import GoalImageConfig, load_goal, render_goal, write_image
from worldmodels.planning.optimizers import CEMConfig
from worldmodels.play.record import record_dreams
from worldmodels.play.server import serve
from worldmodels.play.session import PlayConfig
from worldmodels.report.page import write_report
from worldmodels.runs.artifacts import forget_sb3
from worldmodels.runs.rundir import RunDir
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``wm STAGE: error: ...``, exit code 2) instead of usage dumps."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_run_dir(p, what: str = "run directory") -> None:
    p.add_argument("--run", required=True, help=what)


def add_collect(sub) -> None:
    p = sub.add_parser("collect", help="roll out an agent in an env and store episodes",
                       description="Collect episodes into RUN/episodes (one compressed .npz each). "
                                   "Re-running completes an interrupted collection.")
    p.add_argument("env", help="Gymnasium id (CarRacing-v3, worldmodels/Catch-v0), package.module:EnvId, or "
                   "package.module:Callable returning a gymnasium.Env (a module in the current directory is found)")
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
    p = sub.add_parser("train", help="train the world model: vision (ConvVAE), then memory (MDN-RNN, VRNN, RSSM, SRNN or SVG)",
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
                                   "dream, its mean checked in the real env; any other name trains that "
                                   "stable-baselines3 algorithm on batched dreams.")
    add_run_dir(p, "run directory with trained vision and memory models")
    p.add_argument("--algo", default="cma", help="cma (default), or a stable-baselines3 algorithm: ppo, a2c, sac, td3, ...")
    seen: set[str] = set()
    add_flags(p.add_argument_group("the dream"), DreamConfig, seen=seen)
    add_flags(p.add_argument_group("CMA-ES (--algo cma)"), CMAConfig, seen=seen)
    add_flags(p.add_argument_group("SB3 (--algo ppo, sac, ...)"), SB3Config, skip={"algo"}, seen=seen)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue a saved optimisation (default); --no-resume starts over")
    p.add_argument("--record", type=int, default=0, metavar="N",
                   help="then write N videos RUN/eval/dream_AGENT_i.mp4: the trained agent's real episode beside "
                        "its dream from the same first frame (default 0; `wm report` shows them)")
    p.set_defaults(func=cmd_dream)


def cmd_dream(args) -> None:
    run = RunDir(args.run)
    run.read_meta()
    values = {k: v for k, v in given(args).items() if k not in ("run", "algo", "resume", "record")}
    if args.record < 0:
        raise UserError(f"--record must be at least 0, got {args.record}")
    if args.algo == "cma":
        reject_inapplicable(values, flags_of(CMAConfig), "to --algo cma (it is an SB3 setting: --algo ppo, sac, ...)")
        config = build(CMAConfig, values)
        if not args.resume:
            forget(run)
        history = train_cma(run, config)
        last = history["generations"][-1]
        line = f"dream: {last['generation']} generations, dream fitness best {last['best']:.1f} mean {last['mean']:.1f}"
        if history["best_real"]:
            best = history["best_real"]
            line += f"; best real-env check {best['mean']:.1f} +- {best['std']:.1f} (generation {best['generation']})"
        print(f"{line} -> {run.controller}")
    else:
        reject_inapplicable(values, flags_of(SB3Config), f"to --algo {args.algo} (it is a CMA-ES setting)")
        config = build(SB3Config, {**values, "algo": args.algo})
        if not args.resume:
            forget_sb3(run, args.algo)
        info = train_sb3(run, config)
        print(f"dream: {info['algo'].upper()} trained for {info['timesteps']} dream steps -> {info['path']}")
    if args.record:
        agent, options = ("controller", {}) if args.algo == "cma" else ("sb3", {"algo": args.algo})
        real_steps = config.real_max_steps if args.algo == "cma" else None
        for path in record_dreams(run, agent, args.record, config.dream, config.seed, config.device, real_steps,
                                  options):
            print(f"  dream beside real: {path}")
    print(f"next: wm eval --run {run.root} --agent {'controller' if args.algo == 'cma' else 'sb3'}")


def add_explore(sub) -> None:
    p = sub.add_parser("explore", help="curiosity-driven rounds: collect, retrain, optimise the explorer in the dream",
                       description="Iterative exploration: each round retrains the world model on all data, "
                                   "fits an intrinsic reward, optimises a curious controller with CMA-ES in the "
                                   "dream and collects new episodes with it. Resumable by round.")
    add_run_dir(p, "run directory holding collected episodes (`wm collect` first)")
    add_flags(p, ExploreConfig)
    p.set_defaults(func=cmd_explore)


def cmd_explore(args) -> None:
    run = RunDir(args.run)
    history = explore(run, build(ExploreConfig, {k: v for k, v in given(args).items() if k != "run"}))
    last = history["rounds"][-1] if history["rounds"] else {}
    then = ("collect more with `wm collect ... --agent curious`" if history["config"].get("explorer", "cma") == "cma"
            else "collect more with more --rounds")
    print(f"explore: {len(history['rounds'])} rounds, last coverage {last.get('coverage_round')} states "
          f"(total {last.get('coverage_total')}) -> {run.root / 'explore'}; {then}")


def add_task(sub) -> None:
    p = sub.add_parser("task", help="solve a task zero-shot on an explored run: relabel, retrain the reward head, "
                                    "CMA-ES in the dream, score",
                       description="Plan2Explore's zero-shot step: relabel the run's stored episodes with a task "
                                   "reward, retrain only the memory model's reward head on them, train a controller "
                                   "with CMA-ES in that dream (no new real env steps), then score it on the task in "
                                   "the real env. Writes RUN/tasks/NAME (the run's own models stay); resumable.")
    p.add_argument("reward", help="task reward package.module:callable, fn(episode arrays, obs [T+1,64,64,3]) -> "
                   "rewards [T] (e.g. worldmodels.envs.maze:reach_far_corner; see worldmodels.curiosity.task)")
    add_run_dir(p, "run directory with trained vision and memory models (`wm explore` or `wm train` first)")
    add_flags(p, TaskConfig)
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue or reuse the task's saved steps (default); --no-resume starts the task over")
    p.set_defaults(func=cmd_task)


def cmd_task(args) -> None:
    run = RunDir(args.run)
    values = {k: v for k, v in given(args).items() if k not in ("run", "reward", "resume")}
    s = zero_shot(run, args.reward, build(TaskConfig, values), resume=args.resume)
    print(f"task {s['name']}: success {sum(s['successes'])}/{len(s['successes'])}, task return {s['mean']:.2f} "
          f"+- {s['std']:.2f} in the real env (0 real steps in training) -> {run.root / 'tasks' / s['name']}")


PLANNER_AGENTS = ("cem",)
SB3_OPTION_AGENTS = ("sb3", "cem")


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="score an agent in the real env",
                       description="Run an agent in the real env (as recorded in run.json) for N seeded episodes "
                                   "on W workers; writes RUN/eval/results.json and RUN/eval/AGENT.json.")
    add_run_dir(p)
    add_flags(p, EvalConfig)
    p.add_argument("--algo", default=argparse.SUPPRESS,
                   help="--agent sb3: which saved SB3 model (default: the only one); --agent cem: plans end with "
                        "a terminal value (default: none): cma, the dream-trained controller's expected return "
                        "over --value-steps more dream steps; an SB3 algorithm, that model's value")
    p.add_argument("--value-steps", type=int, default=argparse.SUPPRESS,
                   help="--agent cem --algo cma: dream steps of the controller's terminal value (default 50)")
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
    p.add_argument("--preset", default="laptop",
                   help="smoke | laptop | gpu | paper, and doom | doom-gpu on VizDoom ids (default laptop)")
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
        for path, value in settings_of(preset):
            print(f"{path} = {value}")
        return
    run = RunDir(args.run)
    s = run_pipeline(args.env, run, preset, workers=args.workers, device=args.device, seed=args.seed,
                     preset_name=args.preset)
    print(f"\n{args.env}, preset {args.preset}: real-env scores over {next(iter(s['scores'].values()))['episodes']} episodes")
    width = max(12, *map(len, s["scores"]))
    for agent, score in s["scores"].items():
        print(f"  {agent:{width}s} {score['mean']:8.1f} +- {score['std']:.1f}")
    print("time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items()))
    steps = s["real_env_steps"]
    print(f"real env steps used in training: {steps['episodes']} collected + {steps['checks']} in real-env checks")
    print(f"results: {run.root}/pipeline.json, {run.eval}/  videos: {run.eval}/controller_best.mp4  "
          f"TensorBoard: tensorboard --logdir {run.tb}")


def add_foresight(sub) -> None:
    p = sub.add_parser("foresight", help="visual foresight: plan to reach a goal image with CEM in the world model",
                       description="Re-plan every step with CEM so that the predicted future matches a goal image "
                                   "(Finn & Levine 2017); act in the real env. Writes RUN/eval/foresight.json and "
                                   "a video: current frame | goal | predicted frames of the chosen plan.")
    add_run_dir(p, "run directory with trained vision and memory models")
    goal = p.add_mutually_exclusive_group(required=True)
    goal.add_argument("--goal", default=None,
                      help="goal image file (e.g. a PNG): the env's render at its own size or scaled (wm goal-image "
                           "writes one), a crop of it like the run's, or a 64x64 frame; the run's crop and resize "
                           "are applied")
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
    s = run_foresight(run, goal, planner, config)
    truth = "" if s["final_distance"] is None else (
        f", ground-truth distance {s['initial_distance']:.3f} -> {s['final_distance']:.3f}")
    print(f"foresight: {s['steps']} steps, latent distance {s['initial_latent_distance']:.3f} -> "
          f"{s['final_latent_distance']:.3f}{truth}, {1000 * s['seconds_per_decision']:.0f} ms/decision")
    print(f"  video: {s['video']}  summary: {run.eval / 'foresight.json'}")


def add_goal_image(sub) -> None:
    p = sub.add_parser("goal-image", help="write the env's render of a chosen state: a goal image for wm foresight",
                       description="Reset the env (seed, reset options), take random steps, and write its frame at "
                                   "the env's own size (before any crop or resize); wm foresight --goal takes it.")
    p.add_argument("env", nargs="?", default=None, help="env spec as for wm collect (or --run)")
    p.add_argument("--run", default=None, help="use this run's env and env kwargs")
    p.add_argument("--out", required=True, help="image file to write (e.g. goal.png)")
    add_flags(p, GoalImageConfig)
    p.set_defaults(func=cmd_goal_image)


def cmd_goal_image(args) -> None:
    values = given(args)
    if (args.env is None) == (args.run is None):
        raise UserError("name the env: give ENV or --run RUN (one of them)")
    if args.run is None:
        spec, config = args.env, build(GoalImageConfig, values)
    else:
        if "env_kwargs" in values:
            raise UserError("--env-kwargs does not apply with --run: the run's env kwargs are used")
        spec, kwargs, _, _ = RunDir(args.run).env_spec()
        config = build(GoalImageConfig, values, GoalImageConfig(env_kwargs=kwargs))
    frame = render_goal(spec, config, trusted=args.run is None)
    write_image(args.out, frame)
    print(f"goal image: {frame.shape[1]}x{frame.shape[0]} frame of {spec} -> {args.out}")


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


def add_play(sub) -> None:
    p = sub.add_parser("play", help="drive inside the run's dream from a browser page",
                       description="Serve a local page on which you drive inside the dream: the decoded frame, "
                                   "keys from the action space, predicted reward, return and P(end), tau, reset "
                                   "from a stored start, pause, the real env beside the dream, the wheel handed "
                                   "to an agent and back, and recording to mp4 (RUN/play). Needs worldmodels[play].")
    add_run_dir(p, "run directory with trained vision and memory models")
    add_flags(p, PlayConfig)
    p.set_defaults(func=cmd_play)


def cmd_play(args) -> None:
    serve(RunDir(args.run), build(PlayConfig, {k: v for k, v in given(args).items() if k != "run"}))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="wm", description="worldmodels: learn a world model from pixels and act inside it.")
    parser.add_argument("--version", action="version", version=f"worldmodels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for add in (add_collect, add_train, add_dream, add_eval, add_run, add_report, add_explore, add_task, add_foresight,
                add_goal_image, add_play):
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
