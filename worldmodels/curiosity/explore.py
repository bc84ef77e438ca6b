"""``wm explore``: curiosity-driven iterative training (Ha & Schmidhuber's rounds, Plan2Explore).

Each round (resumable; ``RUN/explore/history.json`` records the finished ones):

1. train the world model on all data so far (ConvVAE, then the memory model; both resume and
   get more epochs each round, so they are fine-tuned on the new episodes);
2. fit the intrinsic-reward model (disagreement by default) on every real transition;
3. optimise the explorer, a controller ``[z, h] -> action``, with CMA-ES inside the dream on the
   intrinsic reward it collects (plus ``extrinsic`` x the dream reward), warm-started from the
   previous round's explorer; saved to ``RUN/explore/params.npz`` (the ``curious`` agent);
4. collect ``episodes`` new real episodes with it (plus exploration noise) into ``RUN/episodes``,
   recording the env's ground-truth state (``info["position"]``, else ``env.unwrapped.position``)
   per step in ``RUN/explore/positions/`` so coverage (distinct states) can be counted.

Coverage per round and in total, the memory model's validation loss and the dream's intrinsic
returns go to TensorBoard (``explore/*``) and to the history.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from worldmodels.agents import load_agent
from worldmodels.collect.driver import Callback, EpisodeRecorder, Step, drive, episode_seed
from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.curiosity.rewards import KINDS, make_intrinsic
from worldmodels.curiosity.transitions import fit_intrinsic, run_transitions
from worldmodels.runs.artifacts import load_world_model
from worldmodels.runs.episodes import episode_path, list_episodes, save_episode
from worldmodels.runs.rundir import RunDir, atomic_save_npz, atomic_write_json
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision


@dataclass
class ExploreConfig:
    rounds: int = 3
    episodes: int = 16  # real episodes collected by the explorer per round
    intrinsic: str = "disagreement"
    vision_epochs: int = 3  # epochs in round 1, plus round_vision_epochs per later round
    memory_epochs: int = 10
    round_vision_epochs: int = 1
    round_memory_epochs: int = 5
    memory: str = "mdn"
    z_dim: int = 32
    hidden_size: int = 256
    seq_len: int = 32
    batch_size: int = 32
    curiosity_steps: int = 500  # updates of the intrinsic-reward model per round
    generations: int = 10  # CMA-ES generations per round
    population: int = 16
    rollouts: int = 4
    sigma0: float = 0.1
    dream_steps: int = 100
    temperature: float = 1.0
    extrinsic: float = 0.0  # weight of the dream's (extrinsic) reward in the explorer's fitness
    noise: float = 0.1  # exploration noise while the explorer collects
    seed: int = 0
    device: str = "auto"


def ground_truth(env, info: dict) -> tuple | None:
    """The env's ground-truth state as a hashable tuple: ``info["position"]``, else ``env.unwrapped.position``."""
    value = info.get("position", getattr(env.unwrapped, "position", None))
    return None if value is None else tuple(np.asarray(value).ravel().tolist())


class GroundTruth(Callback):
    """``positions``: the ``ground_truth`` of ``env`` at reset and after every step ([T+1] tuples, or Nones)."""

    def __init__(self, env) -> None:
        self.env = env

    def on_reset(self, obs: np.ndarray, info: dict) -> None:
        self.positions = [ground_truth(self.env, info)]

    def on_step(self, step: Step) -> None:
        self.positions.append(ground_truth(self.env, step.info))


@torch.no_grad()
def dream_returns(dream, act, model, population: int, rollouts: int, extrinsic: float) -> Tensor:
    """Intrinsic (+ ``extrinsic`` x dream reward) return ``[P, R]`` of ``act(features [P, R, F])`` in ``P x R`` dreams."""
    n = population * rollouts
    obs = dream.reset(n)
    total = torch.zeros(n, device=dream.device)
    alive = torch.ones(n, dtype=torch.bool, device=dream.device)
    for _ in range(dream.config.max_steps):
        state, z = dream.state, dream.z
        action = act(obs.view(population, rollouts, -1))
        action = action.reshape(n, *action.shape[2:])
        obs, reward, terminated, truncated = dream.step(action)
        next_z = dream.z if model.needs_next else None
        r = model.intrinsic_reward(state, z, dream.action.to_model(action.to(dream.device)), next_z)
        total += (r + extrinsic * reward) * alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    return total.view(population, rollouts)


def optimise_explorer(run: RunDir, config: ExploreConfig, vision, memory, model, device, round_: int,
                      directory) -> dict:
    """CMA-ES on the explorer in the dream; saves ``params.npz`` and ``config.json`` (with the round)."""
    import warnings

    warnings.filterwarnings("ignore", message="Could not import matplotlib")
    import cma

    from worldmodels.dream.imagine import BatchedDream, DreamConfig, initial_latents
    from worldmodels.models.controller import ControllerSpec

    action = run.action_spec()
    spec = ControllerSpec.for_run(memory.z_dim, memory.hidden_size, action)
    start = np.zeros(spec.n_params)
    config_path = directory / "config.json"
    if config_path.exists() and json.loads(config_path.read_text())["spec"] == spec.to_dict():
        with np.load(directory / "params.npz") as data:
            start = data["params"].astype(np.float64)
    dream = BatchedDream(memory, initial_latents(run.latents), action,
                         DreamConfig(config.temperature, 0.5, config.dream_steps), device, vision)
    es = cma.CMAEvolutionStrategy(start, config.sigma0, {"popsize": config.population,
                                                         "seed": config.seed + round_ + 1, "verbose": -9})
    record = {}
    for gen in range(config.generations):
        solutions = es.ask()
        params = torch.as_tensor(np.stack(solutions), dtype=torch.float32, device=device)
        dream.seed(config.seed * 100_003 + round_ * 1_000 + gen)
        returns = dream_returns(dream, lambda f, p=params: spec.act(p, f, action), model, config.population,
                                config.rollouts, config.extrinsic)
        fitness = returns.mean(1).cpu().numpy()
        es.tell(solutions, (-fitness).tolist())
        record = {"dream_intrinsic_best": float(fitness.max()), "dream_intrinsic_mean": float(fitness.mean())}
    atomic_save_npz(directory / "params.npz", params=np.asarray(es.mean, np.float32))
    atomic_write_json(config_path, {"kind": "linear", "spec": spec.to_dict(), "intrinsic": config.intrinsic,
                                    "round": round_ + 1, "noise": config.noise, **record})
    return record


def collect_round(run: RunDir, indices: list[int], seed: int, directory, device) -> None:
    """Collect episodes ``indices`` with the ``curious`` agent; ground-truth states to ``positions/``."""
    existing = list_episodes(run.episodes)
    todo = [i for i in indices if i not in existing]
    if not todo:
        return
    env = run.make_env()
    agent = load_agent("curious", run, str(device))
    recorder, truth = EpisodeRecorder(), GroundTruth(env)
    for i in todo:
        drive(env, agent, episode_seed(seed, i), [recorder, truth])
        if truth.positions[0] is not None:
            atomic_save_npz(directory / "positions" / f"episode_{i:06d}.npz", position=np.asarray(truth.positions))
        save_episode(episode_path(run.episodes, i), **recorder.episode())
    env.close()
    meta = run.read_meta()
    meta["collections"].append({"policy": "curious", "seed": seed, "episodes": todo,
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    run.write_meta(meta)


def coverage(directory, indices: list[int]) -> tuple[set, int]:
    """(distinct ground-truth states, episodes with records) over episodes ``indices``."""
    seen, found = set(), 0
    for i in indices:
        path = directory / "positions" / f"episode_{i:06d}.npz"
        if path.exists():
            with np.load(path) as data:
                seen.update(map(tuple, data["position"].tolist()))
            found += 1
    return seen, found


def explore(run: RunDir, config: ExploreConfig, progress: bool = True) -> dict:
    """Run (or resume) ``config.rounds`` rounds; returns the history (also ``RUN/explore/history.json``)."""
    from torch.utils.tensorboard import SummaryWriter

    if config.intrinsic not in KINDS:
        raise UserError(f"unknown intrinsic reward {config.intrinsic!r}; choose one of {', '.join(KINDS)}")
    run.read_meta()
    episodes = list_episodes(run.episodes)
    if not episodes:
        raise UserError(f"no episodes in {run.episodes}: collect some first (`wm collect ENV --run {run.root}`)")
    directory = run.root / "explore"
    history_path = directory / "history.json"
    if history_path.exists():
        history = json.loads(history_path.read_text())
    else:
        history = {"config": asdict(config), "base_episodes": max(episodes) + 1, "rounds": []}
    done = len(history["rounds"])
    if done >= config.rounds:
        print(f"explore: {done} rounds already done; nothing to do")
        return history
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    writer = SummaryWriter(str(run.tb))
    base = history["base_episodes"]
    for r in range(done, config.rounds):
        t0 = time.perf_counter()
        print(f"explore: round {r + 1}/{config.rounds}")
        common = {"device": config.device, "seed": config.seed, "patience": 10**6}
        vision_summary = train_vision(run, VisionTrainConfig(
            epochs=config.vision_epochs + r * config.round_vision_epochs, z_dim=config.z_dim, **common),
            progress=progress)
        memory_summary = train_memory(run, MemoryTrainConfig(
            kind=config.memory, epochs=config.memory_epochs + r * config.round_memory_epochs,
            batch_size=config.batch_size, seq_len=config.seq_len, hidden_size=config.hidden_size, **common),
            progress=progress)
        vision, memory = load_world_model(run, device)
        model = make_intrinsic(config.intrinsic, memory, device, action=run.action_spec())
        losses = {} if config.intrinsic == "surprise" else fit_intrinsic(
            model, run_transitions(run, memory, device), steps=config.curiosity_steps, seed=config.seed + r)
        saved = directory / "config.json"
        if saved.exists() and json.loads(saved.read_text()).get("round") == r + 1:
            dream = {k: v for k, v in json.loads(saved.read_text()).items() if k.startswith("dream_")}
        else:
            dream = optimise_explorer(run, config, vision, memory, model, device, r, directory)
        indices = list(range(base + r * config.episodes, base + (r + 1) * config.episodes))
        collect_round(run, indices, config.seed, directory, device)
        seen, recorded = coverage(directory, indices)
        total, _ = coverage(directory, list(range(base, base + (r + 1) * config.episodes)))
        returns = []
        for i in indices:
            with np.load(run.episodes / f"episode_{i:06d}.npz") as data:
                returns.append(float(data["reward"].sum()))
        entry = {"round": r + 1, "episodes": indices, "coverage_round": len(seen) if recorded else None,
                 "coverage_total": len(total) if recorded else None, "return_mean": float(np.mean(returns)),
                 "return_max": float(np.max(returns)), "vision_val_loss": vision_summary["best_val_loss"],
                 "memory_val_loss": memory_summary["best_val_loss"], "curiosity": losses, **dream,
                 "seconds": time.perf_counter() - t0}
        history["rounds"].append(entry)
        atomic_write_json(history_path, history)
        for key in ("coverage_round", "coverage_total", "return_mean", "memory_val_loss", "vision_val_loss",
                    "dream_intrinsic_best", "dream_intrinsic_mean"):
            if entry.get(key) is not None:
                writer.add_scalar(f"explore/{key}", entry[key], r + 1)
        for key, value in losses.items():
            writer.add_scalar(f"explore/curiosity_{key}", value, r + 1)
        writer.flush()
        print(f"explore: round {r + 1}: coverage {entry['coverage_round']} states (total {entry['coverage_total']}), "
              f"return mean {entry['return_mean']:.2f}, memory val loss {entry['memory_val_loss']:.3f}")
    writer.close()
    return history


def add_parser(sub) -> None:
    d = ExploreConfig()
    p = sub.add_parser("explore", help="curiosity-driven rounds: collect, retrain, optimise the explorer in the dream",
                       description="Iterative exploration: each round retrains the world model on all data, "
                                   "fits an intrinsic reward, optimises a curious controller with CMA-ES in the "
                                   "dream and collects new episodes with it. Resumable by round.")
    p.add_argument("--run", required=True, help="run directory holding collected episodes (`wm collect` first)")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"total rounds (default {d.rounds})")
    p.add_argument("--episodes", type=int, default=d.episodes, help=f"episodes collected per round (default {d.episodes})")
    p.add_argument("--intrinsic", choices=["surprise", "icm", "disagreement", "infogain"], default=d.intrinsic,
                   help=f"intrinsic reward the explorer maximises (default {d.intrinsic})")
    p.add_argument("--extrinsic", type=float, default=d.extrinsic,
                   help="weight of the dream reward in the explorer's fitness (default 0: pure exploration)")
    p.add_argument("--generations", type=int, default=d.generations, help=f"CMA-ES generations per round (default {d.generations})")
    p.add_argument("--population", type=int, default=d.population, help=f"CMA-ES population (default {d.population})")
    p.add_argument("--rollouts", type=int, default=d.rollouts, help=f"dreams per candidate (default {d.rollouts})")
    p.add_argument("--sigma0", type=float, default=d.sigma0, help=f"CMA-ES initial step size (default {d.sigma0})")
    p.add_argument("--dream-steps", type=int, default=d.dream_steps, help=f"dream length (default {d.dream_steps})")
    p.add_argument("--temperature", type=float, default=d.temperature, help="dream temperature tau (default 1.0)")
    p.add_argument("--noise", type=float, default=d.noise, help=f"exploration noise while collecting (default {d.noise})")
    p.add_argument("--vision-epochs", type=int, default=d.vision_epochs, help=f"VAE epochs in round 1 (default {d.vision_epochs})")
    p.add_argument("--memory-epochs", type=int, default=d.memory_epochs, help=f"memory epochs in round 1 (default {d.memory_epochs})")
    p.add_argument("--round-vision-epochs", type=int, default=d.round_vision_epochs, help="extra VAE epochs per round")
    p.add_argument("--round-memory-epochs", type=int, default=d.round_memory_epochs, help="extra memory epochs per round")
    p.add_argument("--memory", choices=["mdn", "vrnn"], default=d.memory, help="memory model kind (default mdn)")
    p.add_argument("--z-dim", type=int, default=d.z_dim, help=f"VAE latent size (default {d.z_dim})")
    p.add_argument("--hidden-size", type=int, default=d.hidden_size, help=f"memory recurrent size (default {d.hidden_size})")
    p.add_argument("--seq-len", type=int, default=d.seq_len, help=f"memory training window (default {d.seq_len})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"memory batch size (default {d.batch_size})")
    p.add_argument("--curiosity-steps", type=int, default=d.curiosity_steps,
                   help=f"updates of the intrinsic-reward model per round (default {d.curiosity_steps})")
    p.add_argument("--device", default=d.device, help="auto (cuda, then mps, then cpu), cpu, cuda")
    p.add_argument("--seed", type=int, default=d.seed)
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> None:
    keys = [k for k in asdict(ExploreConfig()) if hasattr(args, k)]
    config = ExploreConfig(**{k: getattr(args, k) for k in keys})
    run = RunDir(args.run)
    history = explore(run, config)
    last = history["rounds"][-1] if history["rounds"] else {}
    print(f"explore: {len(history['rounds'])} rounds, last coverage {last.get('coverage_round')} states "
          f"(total {last.get('coverage_total')}) -> {run.root / 'explore'}; "
          f"collect more with `wm collect ... --policy curious`")
