"""``wm explore``: curiosity-driven iterative training (Ha & Schmidhuber's rounds, Plan2Explore).

Each round (resumable; ``RUN/explore/history.json`` records the finished ones):

1. train the world model on all data so far (ConvVAE, then the memory model; both resume and
   get more epochs each round, so they are fine-tuned on the new episodes);
2. fit the intrinsic-reward model (disagreement by default) on every real transition;
3. ``explorer="cma"``: optimise the explorer, a controller ``[z, h] -> action``, with CMA-ES inside the
   dream on the intrinsic reward it collects (plus ``extrinsic`` x the dream reward), warm-started from the
   previous round's explorer; saved to ``RUN/explore/params.npz`` (the ``curious`` agent). On Discrete
   actions it samples from ``softmax(tanh(logits) / action_temperature)``, in the dream and in the env,
   so it cannot settle on a few moves (a greedy linear explorer covered 3-9 squares a round on a 3x3 Maze).
   ``explorer="mpc"``: no controller; every real step is planned in the dream (``planning_explorer``);
4. collect ``episodes`` new real episodes with it (plus exploration noise, cma) into ``RUN/episodes``,
   recording the env's ground-truth state (``info["position"]``, else ``env.unwrapped.position``)
   per step in ``RUN/explore/positions/`` so coverage (distinct states) can be counted; the mpc explorer
   refits the intrinsic reward on all transitions after each episode.

Coverage per round and in total, the entropy of the round's actions, the memory model's validation
loss and the dream's intrinsic returns go to the history and to TensorBoard's ``RUN/tb/explore`` (``explore/*`` against the round;
the collected episodes' ``charts/episodic_return`` against the run's real env steps).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodels.agents import load_agent
from worldmodels.agents.cem import CEMAgent
from worldmodels.agents.curious import explorer_act
from worldmodels.collect.driver import Callback, EpisodeRecorder, Step, drive, episode_seed
from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least, require_positive
from worldmodels.curiosity.rewards import KINDS, Batch, Intrinsic, make_intrinsic
from worldmodels.curiosity.transitions import fit_intrinsic, run_transitions
from worldmodels.dream.evolution import Generation, evolve
from worldmodels.dream.imagine import (
    BatchedDream,
    DreamConfig,
    Shaping,
    dream_starts,
    filter_states,
    imagine,
    rollout_population,
)
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models import MEMORY_MODELS
from worldmodels.models.controller import ControllerSpec
from worldmodels.planning.optimizers import CEMConfig
from worldmodels.runs.artifacts import (
    explorer_dir,
    load_explorer,
    load_world_model,
    read_config,
    save_explorer,
)
from worldmodels.runs.episodes import episode_path, list_episodes, save_episode, stored_steps
from worldmodels.runs.rundir import RunDir, atomic_save_npz, atomic_write_json
from worldmodels.runs.tensorboard import log_episodes, stage_writer
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision

EXPLORERS = ("mpc", "cma")


@dataclass
class ExploreConfig:
    """Curiosity-driven rounds: retrain the world model, fit an intrinsic reward, optimise the explorer
    in the dream, collect with it."""

    rounds: int = 3
    """rounds in all (a resumed run continues up to this count)"""
    episodes: int = 16
    """real episodes the explorer collects per round"""
    intrinsic: str = field(default="disagreement", metadata={"choices": list(KINDS)})
    """intrinsic reward the explorer maximises: surprise | icm | disagreement | infogain"""
    explorer: str = field(default="mpc", metadata={"choices": list(EXPLORERS)})
    """mpc: plan every real step in the dream for the intrinsic reward (CEM), refitting the reward model after each
    episode; cma: a controller optimised by CMA-ES in the dream once per round (the ``curious`` agent)"""
    plan_horizon: int = 10
    """mpc: dream steps each plan looks ahead"""
    plan_candidates: int = 128
    """mpc: action sequences CEM samples per iteration"""
    plan_iterations: int = 3
    """mpc: CEM refits per real step"""
    online_steps: int = 50
    """mpc: updates of the intrinsic-reward model on all transitions so far after each collected episode, so
    what the explorer has just seen stops paying (infogain absorbs the episode once; surprise is not refitted)"""
    refit_every: int = 0
    """mpc: also refit (``online_steps`` updates) every this many real steps within an episode, so what it has
    just seen stops paying before the episode ends (0: after each episode only. On the 3x3 Maze, 10 covered more
    squares a round with small models, 12.8 against 11.3, but at these model sizes it reached the far corner on 2
    of 3 seeds against 3 of 3 without: BENCHMARKS.md)"""
    vision_epochs: int = 60
    """VAE epochs in round 1 (plus round_vision_epochs per later round): a few base episodes need many (on a
    3x3 Maze's 8 episodes, 6 epochs left every square's latent within 0.02 of the others, 60 put them 3-4
    apart); lower it for large data"""
    memory_epochs: int = 30
    """memory-model epochs in round 1 (plus round_memory_epochs per later round)"""
    round_vision_epochs: int = 5
    """extra VAE epochs per later round"""
    salient_weight: float | None = field(default=None, metadata={"none": "the run's VAE's, else 10"})
    """the VAE's extra reconstruction weight on pixels unlike the batch's mean frame (``VisionTrainConfig``):
    keeps a small agent's sprite, which the plain loss blurs into the mean frame; a run already trained keeps
    its VAE's unless this is given"""
    round_memory_epochs: int = 10
    """extra memory-model epochs per later round"""
    memory: str = field(default="mdn", metadata={"choices": list(MEMORY_MODELS)})
    """memory model kind"""
    z_dim: int = 32
    """VAE latent size"""
    hidden_size: int = 256
    """memory model recurrent size, in units"""
    seq_len: int = 32
    """memory training window, in steps"""
    batch_size: int = 32
    """memory training batch, in sequences"""
    curiosity_steps: int = 500
    """updates of the intrinsic-reward model per round"""
    generations: int = 10
    """CMA-ES generations per round"""
    population: int = 16
    """CMA-ES candidates per generation"""
    rollouts: int = 4
    """dreams per candidate; its fitness is their mean return"""
    sigma0: float = 0.1
    """initial CMA-ES step size, in controller-parameter units"""
    dream: DreamConfig = field(default_factory=lambda: DreamConfig(max_steps=100))
    """how the explorer's dreams run: temperature, done threshold, length in steps (100 by default)"""
    extrinsic: float = 0.0
    """weight of the dream's predicted (extrinsic) reward in the explorer's fitness (0: pure exploration)"""
    action_temperature: float = 2.0
    """softmax temperature of the explorer's Discrete actions, sampled in the dream and while collecting
    (0: argmax, a deterministic explorer; Box actions ignore it)"""
    novelty: float = 0.0
    """weight of an episodic novelty bonus in the dream: each step's distance from its next latent to the nearest
    latent the same dream already visited (latent units), so covering new ground within a dream pays"""
    noise: float = 0.1
    """exploration noise while collecting: Gaussian std x action range (Box), random-action probability (Discrete)"""
    seed: int = 0
    """seeds training, CMA-ES, the dreams and collection"""
    device: str = "auto"
    """torch device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N"""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "rounds", "episodes", "vision_epochs", "memory_epochs", "z_dim", "hidden_size",
                         "seq_len", "batch_size", "curiosity_steps", "generations", "rollouts", "plan_horizon",
                         "plan_candidates", "plan_iterations")
        require_at_least(self, 0, "round_vision_epochs", "round_memory_epochs", "extrinsic", "noise", "salient_weight",
                         "action_temperature", "novelty", "online_steps", "refit_every")
        if self.explorer not in EXPLORERS:
            raise UserError(f"unknown explorer {self.explorer!r}; choose one of {', '.join(EXPLORERS)}")
        require_at_least(self, 2, "population")
        require_positive(self, "sigma0")


def salient_weight(run: RunDir, config: ExploreConfig) -> float:
    """``config.salient_weight``; if None, that of the run's VAE (0 if saved without one), or 10 for a fresh run."""
    if config.salient_weight is not None:
        return config.salient_weight
    if not (run.vision / "config.json").exists():
        return 10.0
    return read_config(run.vision)[1].salient_weight


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


class EpisodicNovelty:
    """Per dream, the distance ``[N]`` from each step's next latent to the nearest latent that dream visited
    before (its start included); ``reset`` before each batch of dreams."""

    def __init__(self) -> None:
        self.visited: torch.Tensor | None = None  # [N, t, Z]

    def reset(self) -> None:
        self.visited = None

    def __call__(self, z: torch.Tensor, next_z: torch.Tensor) -> torch.Tensor:
        if self.visited is None:
            self.visited = z[:, None]
        distance = (self.visited - next_z[:, None]).norm(dim=-1).min(1).values
        self.visited = torch.cat([self.visited, next_z[:, None]], 1)
        return distance


def optimise_explorer(run: RunDir, config: ExploreConfig, vision, memory, model, device, round_: int,
                      progress: bool = True) -> dict:
    """CMA-ES on the explorer in the dream, on ``model``'s intrinsic reward (+ ``extrinsic`` x the dream's),
    warm-started from the last round's explorer; saves it with the round (``save_explorer``)."""
    action = run.action_spec()
    spec = ControllerSpec.for_run(memory.z_dim, memory.hidden_size, action)
    start = np.zeros(spec.n_params)
    if (explorer_dir(run) / "config.json").exists():
        saved, params, _ = load_explorer(run)
        if saved == spec:
            start = params.astype(np.float64)

    novelty = EpisodicNovelty()

    def curiosity(state, z, model_action, next_z):
        reward = model.intrinsic_reward(state, z, model_action, next_z if model.needs_next else None)
        return reward + config.novelty * novelty(z, next_z) if config.novelty else reward

    dream = BatchedDream(memory, dream_starts(run.latents, config.dream), action, config.dream, device, vision,
                         Shaping(config.extrinsic, bonus=curiosity))

    def fitness(solutions: np.ndarray, gen: int) -> np.ndarray:
        params = torch.as_tensor(solutions, dtype=torch.float32, device=device)
        dream.seed(config.seed * 100_003 + round_ * 1_000 + gen)
        novelty.reset()
        returns, _ = rollout_population(
            dream, lambda f: explorer_act(spec, params, f, action, config.action_temperature, dream.sampler),
            config.population, config.rollouts)
        return returns.mean(1).cpu().numpy()

    record = {}
    bar = tqdm(total=config.generations, desc=f"explore {round_ + 1}: dream cma", unit="gen", disable=not progress,
               leave=False)

    def on_generation(g: Generation) -> None:
        record.update(dream_intrinsic_best=float(g.fitness.max()), dream_intrinsic_mean=float(g.fitness.mean()))
        bar.update()
        bar.set_postfix(best=f"{record['dream_intrinsic_best']:.2f}")

    mean = evolve(start, config.sigma0, config.population, fitness, config.generations, config.seed + round_,
                  on_generation=on_generation)
    bar.close()
    save_explorer(run, spec, mean, {"intrinsic": config.intrinsic, "round": round_ + 1, "noise": config.noise,
                                    "action_temperature": config.action_temperature,
                                    "novelty": config.novelty, **record})
    return record


class Refit(Callback):
    """Every ``every`` steps, hands ``absorb(episode so far, start)`` the steps since the last call; ``flush`` the
    rest at the episode's end. ``recorder`` must see each step first."""

    def __init__(self, recorder: EpisodeRecorder, absorb, every: int = 0):
        self.recorder, self.absorb, self.every = recorder, absorb, every

    def on_reset(self, obs: np.ndarray, info: dict) -> None:
        self.steps, self.absorbed = 0, 0

    def on_step(self, step: Step) -> None:
        self.steps += 1
        if self.every and self.steps % self.every == 0:
            self.flush(self.recorder.episode())

    def flush(self, episode: dict[str, np.ndarray]) -> None:
        if self.steps > self.absorbed:
            self.absorb(episode, self.absorbed)
            self.absorbed = self.steps


def collect_round(run: RunDir, indices: list[int], seed: int, directory, agent, progress: bool = True,
                  after_episode=None, refit_every: int = 0) -> None:
    """Collect episodes ``indices`` with ``agent``; ground-truth states to ``positions/``; each new episode's
    arrays go to ``after_episode(episode, start)`` (if given) before the next one starts, and with ``refit_every``
    also every that many steps within it (the steps ``start:`` not yet given)."""
    existing = list_episodes(run.episodes)
    todo = [i for i in indices if i not in existing]
    if not todo:
        return
    env = run.make_env()
    recorder, truth = EpisodeRecorder(), GroundTruth(env)
    refit = Refit(recorder, after_episode, refit_every) if after_episode is not None else None
    for i in tqdm(todo, desc="explore: collect", unit="ep", disable=not progress, leave=False):
        drive(env, agent, episode_seed(seed, i), [recorder, truth] + ([refit] if refit else []))
        if truth.positions[0] is not None:
            atomic_save_npz(directory / "positions" / f"episode_{i:06d}.npz", position=np.asarray(truth.positions))
        episode = recorder.episode()
        save_episode(episode_path(run.episodes, i), **episode)
        if refit is not None:
            refit.flush(episode)
    env.close()
    meta = run.read_meta()
    meta["collections"].append({"agent": "curious", "seed": seed, "episodes": todo,
                                "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    run.write_meta(meta)


def planning_explorer(run: RunDir, config: ExploreConfig, vision, memory, model: Intrinsic, data: Batch,
                      device) -> tuple[CEMAgent, object]:
    """(agent, after_episode) of the ``mpc`` explorer: every real step, CEM searches ``plan_horizon``-step action
    sequences for the most intrinsic reward (plus ``extrinsic`` x the predicted reward) the dream promises
    from the current memory state (mean latents, each step weighted by P(not done before it)) and executes
    the first action; ``after_episode`` adds the episode's transitions to ``data`` and refits ``model`` on all
    of them (``online_steps`` updates), so squares the explorer has just seen stop paying."""
    action = run.action_spec()
    model.eval()

    def bonus(state, z, model_action, next_z):
        return model.intrinsic_reward(state, z, model_action, next_z if model.needs_next else None)

    def objective(state, z):
        shaping = Shaping(config.extrinsic, bonus=bonus)
        return lambda actions: imagine(memory, state, z, actions, shaping=shaping).expected_reward()

    plan = CEMConfig(horizon=config.plan_horizon, candidates=config.plan_candidates,
                     iterations=config.plan_iterations, elites=max(1, config.plan_candidates // 10))
    agent = CEMAgent(vision, memory, action, plan, device, objective=objective)

    @torch.no_grad()
    def after_episode(episode: dict[str, np.ndarray], start: int = 0) -> None:
        """Absorb the transitions ``start:`` of ``episode`` (the whole episode, or the part recorded so far)."""
        z = vision.encode(torch.as_tensor(episode["obs"], device=device))[0]
        actions = action.to_model(torch.as_tensor(episode["action"], device=device))
        states = tuple(s[0, :-1][start:] for s in filter_states(memory, z[None, :-1], actions[None]))
        new = {"state": states, "z": z[:-1][start:], "action": actions[start:], "next_z": z[1:][start:]}
        for key in ("z", "action", "next_z"):
            data[key] = torch.cat([data[key], new[key]])
        data["state"] = tuple(torch.cat(pair) for pair in zip(data["state"], states))
        if config.intrinsic == "surprise":
            return
        with torch.enable_grad():
            fit_intrinsic(model, new if model.single_pass else data, steps=config.online_steps,
                          seed=config.seed + len(data["z"]))

    return agent, after_episode


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


def action_entropy(actions: np.ndarray, action: ActionSpec) -> float | None:
    """Entropy (nats; log A at most) of the histogram of Discrete ``actions`` [N] indices; None for Box actions."""
    if not action.discrete:
        return None
    p = np.bincount(actions.astype(np.int64), minlength=action.dim) / len(actions)
    return float(-(p[p > 0] * np.log(p[p > 0])).sum())


def explore(run: RunDir, config: ExploreConfig, progress: bool = True) -> dict:
    """Run (or resume) ``config.rounds`` rounds; returns the history (also ``RUN/explore/history.json``)."""
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
    writer = stage_writer(run, "explore", config)
    base = history["base_episodes"]
    for r in range(done, config.rounds):
        t0 = time.perf_counter()
        print(f"explore: round {r + 1}/{config.rounds}")
        common = {"device": config.device, "seed": config.seed, "patience": 10**6}
        vision_summary = train_vision(run, VisionTrainConfig(
            epochs=config.vision_epochs + r * config.round_vision_epochs, z_dim=config.z_dim,
            salient_weight=salient_weight(run, config), **common),
            progress=progress)
        memory_summary = train_memory(run, MemoryTrainConfig(
            kind=config.memory, epochs=config.memory_epochs + r * config.round_memory_epochs,
            batch_size=config.batch_size, seq_len=config.seq_len, hidden_size=config.hidden_size, **common),
            progress=progress)
        vision, memory = load_world_model(run, device)
        model = make_intrinsic(config.intrinsic, memory, device, action=run.action_spec())
        data = run_transitions(run, memory, device)
        losses = {} if config.intrinsic == "surprise" else fit_intrinsic(
            model, data, steps=config.curiosity_steps, seed=config.seed + r)
        indices = list(range(base + r * config.episodes, base + (r + 1) * config.episodes))
        if config.explorer == "mpc":
            dream = {}
            agent, after_episode = planning_explorer(run, config, vision, memory, model, data, device)
            collect_round(run, indices, config.seed, directory, agent, progress, after_episode, config.refit_every)
        else:
            saved = load_explorer(run)[2] if (directory / "config.json").exists() else {}
            if saved.get("round") == r + 1:
                dream = {k: v for k, v in saved.items() if k.startswith("dream_")}
            else:
                dream = optimise_explorer(run, config, vision, memory, model, device, r, progress)
            collect_round(run, indices, config.seed, directory, load_agent("curious", run, str(device)), progress)
        seen, recorded = coverage(directory, indices)
        total, _ = coverage(directory, list(range(base, base + (r + 1) * config.episodes)))
        returns, lengths, actions = [], [], []
        for i in indices:
            with np.load(run.episodes / f"episode_{i:06d}.npz") as data:
                returns.append(float(data["reward"].sum()))
                lengths.append(len(data["reward"]))
                actions.append(data["action"])
        entry = {"round": r + 1, "episodes": indices, "coverage_round": len(seen) if recorded else None,
                 "coverage_total": len(total) if recorded else None, "return_mean": float(np.mean(returns)),
                 "return_max": float(np.max(returns)),
                 "action_entropy": action_entropy(np.concatenate(actions), run.action_spec()),
                 "vision_val_loss": vision_summary["best_val_loss"],
                 "memory_val_loss": memory_summary["best_val_loss"], "curiosity": losses, **dream,
                 "seconds": time.perf_counter() - t0}
        history["rounds"].append(entry)
        atomic_write_json(history_path, history)
        for key in ("coverage_round", "coverage_total", "return_mean", "action_entropy", "memory_val_loss",
                    "vision_val_loss", "dream_intrinsic_best", "dream_intrinsic_mean"):
            if entry.get(key) is not None:
                writer.add_scalar(f"explore/{key}", entry[key], r + 1)
        for key, value in losses.items():
            writer.add_scalar(f"explore/curiosity_{key}", value, r + 1)
        log_episodes(writer, returns, lengths, stored_steps(run.episodes) - sum(lengths))  # the round's are last
        writer.flush()
        entropy = "" if entry["action_entropy"] is None else f", action entropy {entry['action_entropy']:.2f} nats"
        print(f"explore: round {r + 1}: coverage {entry['coverage_round']} states (total {entry['coverage_total']}), "
              f"return mean {entry['return_mean']:.2f}{entropy}, memory val loss {entry['memory_val_loss']:.3f}")
    writer.close()
    return history
