"""VizDoom TakeCover: the doom preset over pipeline seeds, and the dream's temperature against real survival.

    python benchmarks/doom.py [--env VizdoomTakeCover-v1] [--seeds 0 1 2] [--root runs] [--workers N]
                              [--preset doom] [--taus 0.1 0.5 1.0 1.15 1.3] [--tau-seed 0] [--dreams 100]
                              [--termination threshold|sampled] [--set FIELD=VALUE ...] [--tag NAME]
                              [--tau-generations N]

Runs (or resumes; a finished seed is only read back) ``wm run ENV --preset doom --seed S`` into
``ROOT/doom_sS`` for each seed and prints one row per seed: steps survived by the dream-trained
controller and by the random policy over the same 100 real episodes (mean +- std), episodes that
reached the 2,100-step cap, minutes per stage; then the mean over seeds, and whether each seed's
dream kills (``world_model_checks``: the done head at held-out deaths, the random policy's survival
in the dream). With ``--taus``, the
temperature table of Ha & Schmidhuber (their Table 2): on ``--tau-seed``'s data, vision and memory
models, a fresh controller per temperature tau (the preset's CMA-ES and seed, ``--tau-generations`` generations,
default its first round's, in ``ROOT/doom_sS/controller_tauT``; with one round and that budget the preset's own
tau is the pipeline's controller), its dream
score (mean survival over ``--dreams`` fresh dreams at that tau, capped as the real game) beside its
real score on the pipeline's 100 evaluation episodes. Writes ``ROOT/doom_seeds.json`` and
``ROOT/doom_temperatures.json`` (``_sS`` appended for a ``--tau-seed`` S other than 0); finished temperatures are
read back. ``--termination sampled`` trains
the table's controllers in dreams that end at the done head's P(done) each step (``RUN/controller_tauT_sampled``,
``ROOT/doom_temperatures_sampled.json``). ``--set`` changes preset fields as ``wm run --set`` does (a
variant of the preset, e.g. ``--set collect.frame_skip=4``); ``--tag`` names its runs ``ROOT/PRESETTAG_sS``
and its JSON files. Survival is in game tics throughout (with a frame skip of k an agent step lasts k
tics: the real scores sum TakeCover's +1 per tic, and the dream's sum the reward head's, which learns
those sums; a dream's length cap is its steps times k).
"""

from __future__ import annotations

import argparse
import copy
import json
from dataclasses import MISSING, fields, is_dataclass, replace
from pathlib import Path

import numpy as np
import torch
from common import machine

from worldmodels.core.device import pick_device
from worldmodels.core.settings import set_path
from worldmodels.dream.cma import dream_score, train_cma
from worldmodels.dream.imagine import BatchedDream, dream_starts, rollout_population
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.pipeline import presets, run_pipeline
from worldmodels.runs.artifacts import load_controller, load_world_model
from worldmodels.runs.episodes import list_episodes, load_episode
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.training.fit import split_episodes
from worldmodels.training.latents import load_latents


def variant(env: str, preset: str, sets: list[str]):
    """The preset named ``preset`` with ``--set`` style overrides (``FIELD=VALUE``) applied."""
    p = presets(env)[preset]
    for item in sets:
        path, _, value = item.partition("=")
        p = set_path(p, path.strip(), value.strip())
    return p


def same_settings(config, stored: dict) -> bool:
    """Whether the (nested) dataclass ``config`` is what a run recorded as ``stored`` (its pipeline.json's settings);
    a field added since the run counts as the same when ``config`` holds its default."""
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name not in stored:
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if value != default:
                return False
        elif is_dataclass(value):
            if not same_settings(value, stored[f.name]):
                return False
        elif json.loads(json.dumps(value)) != stored[f.name]:
            return False
    return True


def seed_result(env: str, preset: str, root: Path, seed: int, workers: int | None, dreams: int,
                sets: list[str] = (), tag: str = "") -> dict:
    """One seed's pipeline summary (run or read back) with the controller's and random's survival and
    the checks of its world model (``world_model_checks``)."""
    p = variant(env, preset, list(sets))
    run = RunDir(root / f"{preset}{tag}_s{seed}")
    path = run.root / "pipeline.json"
    summary = (json.loads(path.read_text()) if path.exists()
               else run_pipeline(env, run, p, workers, seed=seed, preset_name=preset + tag))
    if not same_settings(p, summary["settings"]):
        raise SystemExit(f"{run.root} holds a finished run of other settings (an earlier {preset} preset?): "
                         "give another --root, or a --tag")
    cap = summary["settings"]["eval_max_steps"]
    lengths = {a: json.loads((run.eval / f"{a}.json").read_text())["lengths"] for a in ("controller", "random")}
    return {"seed": seed, "controller": summary["scores"]["controller"], "random": summary["scores"]["random"],
            "capped": {a: int(np.sum(np.array(v) >= cap)) for a, v in lengths.items()}, "cap": cap,
            "frame_skip": run.env_spec()[2].frame_skip,  # the cap is in agent steps of this many tics
            "real_env_steps": summary["real_env_steps"], "seconds": summary["seconds"],
            "minutes": sum(summary["seconds"].values()) / 60,
            "checks": world_model_checks(run, p, seed, dreams), "round_returns": round_returns(run, p)}


def round_returns(run: RunDir, preset) -> list[float]:
    """Mean return (tics survived) of the episodes each round collected, in order: the random collection's, then
    each later round's, gathered by the previous round's controller with its random actions."""
    returns = [float(load_episode(path)["reward"].sum()) for _, path in sorted(list_episodes(run.episodes).items())]
    first, size = preset.collect.episodes, preset.round_episodes or 1
    blocks = [returns[:first]] + [returns[i:i + size] for i in range(first, len(returns), size)]
    return [float(np.mean(b)) for b in blocks if b]


@torch.no_grad()
def world_model_checks(run: RunDir, preset, seed: int, dreams: int) -> dict:
    """Does the dream kill? (read back from ``RUN/doom_checks.json`` once computed)

    ``done_head``: the memory model's P(done), teacher-forced on the latent means of its held-out
    episodes that end in a death: at the death step, over the 5 steps before, elsewhere, and how
    many deaths it calls (P > the dream's done threshold). ``random_in_dream``: steps the uniform
    random policy survives in ``dreams`` dreams at the preset's temperature and length: its dream return,
    in game tics as the reward head learns TakeCover's +1 per tic summed over the frame skip (the real
    game's random row is the comparison).
    """
    path = run.root / "doom_checks.json"
    if path.exists():
        return json.loads(path.read_text())
    memory = load_world_model(run, "cpu").memory
    config = preset.cma.dream
    _, val = split_episodes(list(list_episodes(run.latents)), preset.memory.val_fraction, seed)
    at, before, rest = [], [], []
    for e in load_latents(run, val, done_label=preset.memory.done_label):
        if not e["done"][-1]:
            continue
        z, action, state, p = torch.from_numpy(e["mu"][:-1]), torch.from_numpy(e["action"]), memory.initial_state(1), []
        for t in range(len(action)):
            state = memory.step(state, z[t:t + 1], action[t:t + 1])
            p.append(float(torch.sigmoid(memory.predict(state).done_logit)))
        at.append(p[-1])
        before.append(np.mean(p[-6:-1]))
        rest.append(np.mean(p[:-6]))
    dream = BatchedDream(memory, dream_starts(run.latents, config), run.action_spec(), config, "cpu")
    dream.seed(seed)
    g = torch.Generator().manual_seed(seed)
    skip = run.env_spec()[2].frame_skip
    survival, _ = rollout_population(dream, lambda obs: torch.randint(0, run.action_spec().dim, obs.shape[:2],
                                                                         generator=g), 1, dreams)
    def mean(xs: list) -> float:
        return float(np.mean(xs)) if xs else float("nan")  # nan: no held-out episode ended in a death

    checks = {"done_head": {"episodes": len(at), "at_death": mean(at), "five_before": mean(before),
                            "elsewhere": mean(rest), "called": int(np.sum(np.array(at) > config.done_threshold)),
                            "threshold": config.done_threshold},
              "random_in_dream": {"mean": float(survival.mean()), "std": float(survival.std()),
                                  "dreams": dreams, "temperature": config.temperature,
                                  "max_steps": config.max_steps * skip, "frame_skip": skip}}
    atomic_write_json(path, checks)
    return checks


def tau_view(run: RunDir, tau: float, termination: str = "threshold") -> RunDir:
    """``run`` with its controller in ``RUN/controller_tauT`` (``_sampled`` with sampled termination; data,
    vision and memory shared)."""
    view = copy.copy(run)
    view.controller = run.root / f"controller_tau{tau:g}{'' if termination == 'threshold' else '_' + termination}"
    return view


def tau_result(env: str, preset: str, root: Path, seed: int, tau: float, workers: int | None, dreams: int,
               termination: str = "threshold", sets: list[str] = (), tag: str = "",
               generations: int | None = None) -> dict:
    """Dream score and real score of the controller CMA-ES trains at temperature ``tau`` with the dream's
    ``termination`` for ``generations`` (default the preset's first-round CMA-ES) on the run's final world
    model (run or read back). With one round the preset's own tau is the pipeline's controller; with several,
    the pipeline's controller learnt across world models, so every tau gets a fresh one."""
    p = variant(env, preset, list(sets))
    run = RunDir(root / f"{preset}{tag}_s{seed}")
    cma = replace(p.cma, dream=replace(p.cma.dream, temperature=tau, termination=termination), workers=workers,
                  seed=seed, generations=generations or p.cma.generations)
    own = (tau == p.cma.dream.temperature and termination == p.cma.dream.termination and p.rounds == 1
           and cma.generations == p.cma.generations)
    view = run if own else tau_view(run, tau, termination)
    path = view.controller / "temperature.json"
    if path.exists():
        result = json.loads(path.read_text())
        if result.get("generations", p.cma.generations) != cma.generations:
            raise SystemExit(f"{view.controller} holds tau {tau:g}'s controller of {result['generations']} generations, "
                             f"not {cma.generations}: give that --tau-generations, or another --root/--tag")
        return result
    train_cma(view, cma)
    spec, params, _ = load_controller(view)
    device = pick_device(cma.device)
    memory = load_world_model(run, device).memory
    dream = BatchedDream(memory, dream_starts(run.latents, cma.dream), run.action_spec(), cma.dream, device)
    dream.seed(12_345)
    if view is run:  # the pipeline's controller, already scored on these episodes
        real = json.loads((run.eval / "controller.json").read_text())
    else:
        real = evaluate(run, "controller", episodes=p.eval_episodes, workers=workers, seed=seed + 1,
                        max_steps=p.eval_max_steps, write=False,
                        agent_options={"params": params.tolist(), "spec": spec.to_dict()})
    skip = run.env_spec()[2].frame_skip
    result = {"tau": tau, "termination": termination, "seed": seed, "generations": cma.generations,
              "dream": dream_score(dream, spec, params, run.action_spec(), dreams),
              "dreams": dreams, "dream_max_steps": cma.dream.max_steps * skip, "frame_skip": skip,
              "real": {k: real[k] for k in ("mean", "std", "min", "max", "episodes")}, "controller": str(view.controller)}
    atomic_write_json(path, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="VizdoomTakeCover-v1")
    parser.add_argument("--preset", default="doom")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", type=Path, default=Path("runs"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--taus", type=float, nargs="*", default=[], help="dream temperatures to tabulate")
    parser.add_argument("--tau-seed", type=int, default=0, help="the pipeline seed whose data the tau table uses")
    parser.add_argument("--dreams", type=int, default=100, help="dreams per dream score")
    parser.add_argument("--tau-generations", type=int, default=None,
                        help="CMA-ES generations of each tau's controller (default: the preset's first round's)")
    parser.add_argument("--termination", default="threshold", choices=["threshold", "sampled"],
                        help="the tau table's dream termination (sampled: at the done head's P(done) each step)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="sets",
                        help="override a preset field as `wm run --set` does (repeatable)")
    parser.add_argument("--tag", default="", help="a variant's name: runs in ROOT/PRESETTAG_sS")
    args = parser.parse_args()
    if args.sets and not args.tag:
        parser.error("--set needs a --tag, so the variant's runs do not mix with the preset's")
    rows = [seed_result(args.env, args.preset, args.root, s, args.workers, args.dreams, args.sets, args.tag)
            for s in args.seeds]
    print("| seed | controller (steps survived) | random | episodes at the cap (controller, random) | "
          "real env steps (episodes + checks) | minutes |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        c, rnd, steps = r["controller"], r["random"], r["real_env_steps"]
        print(f"| {r['seed']} | {c['mean']:.1f} +- {c['std']:.1f} | {rnd['mean']:.1f} +- {rnd['std']:.1f} | "
              f"{r['capped']['controller']}, {r['capped']['random']} of {c['episodes']} | "
              f"{steps['episodes']} + {steps['checks']} | {r['minutes']:.1f} |")
    print("\n| seed | P(done) at deaths (5 steps before; elsewhere) | deaths called | random policy in the dream |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        d, g = r["checks"]["done_head"], r["checks"]["random_in_dream"]
        print(f"| {r['seed']} | {d['at_death']:.2f} ({d['five_before']:.2f}; {d['elsewhere']:.3f}) | "
              f"{d['called']}/{d['episodes']} | {g['mean']:.0f} +- {g['std']:.0f} (tau {g['temperature']:g}, "
              f"<= {g['max_steps']} tics) |")
    if any(len(r["round_returns"]) > 1 for r in rows):
        print("\n| seed | mean tics of the episodes each round collected (random, then each controller's, with its "
              "random actions) |")
        print("|---:|---|")
        for r in rows:
            print(f"| {r['seed']} | {', '.join(f'{x:.0f}' for x in r['round_returns'])} |")
    means = np.array([r["controller"]["mean"] for r in rows])
    randoms = np.array([r["random"]["mean"] for r in rows])
    print(f"\ncontroller over {len(rows)} seeds ({rows[0]['controller']['episodes']} episodes of at most "
          f"{rows[0]['cap'] * rows[0]['frame_skip']} tics each): {means.mean():.1f} +- {means.std():.1f}; "
          f"random {randoms.mean():.1f}")
    atomic_write_json(args.root / f"{args.preset}{args.tag}_seeds.json", {
        "env": args.env, "preset": args.preset, "sets": args.sets, "rows": rows, "mean": float(means.mean()), "std": float(means.std()),
        "random": float(randoms.mean()), "machine": machine()})
    if not args.taus:
        return
    taus = [tau_result(args.env, args.preset, args.root, args.tau_seed, t, args.workers, args.dreams, args.termination,
                       args.sets, args.tag, args.tau_generations) for t in args.taus]
    print(f"\ntemperature (seed {args.tau_seed}: one data set and memory model, a controller trained per tau "
          f"for {taus[0].get('generations', '?')} generations; {args.termination} termination)")
    print("| tau | dream score | real score |")
    print("|---:|---:|---:|")
    for t in taus:
        print(f"| {t['tau']:g} | {t['dream']:.0f} | {t['real']['mean']:.0f} +- {t['real']['std']:.0f} |")
    suffix = ("" if args.termination == "threshold" else f"_{args.termination}") + \
        (f"_s{args.tau_seed}" if args.tau_seed else "")
    atomic_write_json(args.root / f"{args.preset}{args.tag}_temperatures{suffix}.json", {
        "env": args.env, "preset": args.preset, "seed": args.tau_seed, "termination": args.termination,
        "rows": taus, "machine": machine()})


if __name__ == "__main__":
    main()
