"""``wm dream --algo cma``: CMA-ES on a controller, evaluated entirely inside the dream.

Every generation the whole population is one batched dream of ``P x R`` rollouts. The CMA-ES
state is saved each generation as data (``controller/cma_state.npz`` + ``.json``, see
``worldmodels.dream.evolution``; no pickle is ever read), so re-running resumes. Every
``real_every`` generations the mean solution is also scored in the real env, so the
dream-to-real gap is visible; with ``select="real"`` the controller kept is the one that scored
best there. With several CUDA devices visible, each generation's population is split across them
(one ``BatchedDream`` per device, each with its own copy of the memory model, run in parallel
threads); one device is the plain path.
"""

from __future__ import annotations

import copy
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least, require_positive
from worldmodels.curiosity.rewards import KINDS
from worldmodels.dream.env import intrinsic_bonus
from worldmodels.dream.evolution import Generation, evolve, saved_generation
from worldmodels.dream.imagine import (
    BatchedDream,
    DreamConfig,
    Shaping,
    dream_starts,
    rollout_population,
    terminated,
)
from worldmodels.evaluation.evaluate import run_episodes
from worldmodels.models.controller import ControllerSpec
from worldmodels.runs.artifacts import load_world_model, save_controller, weights_id
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.runs.tensorboard import frame_grid, log_episodes, stage_writer

STATE = "cma_state"
"""The CMA-ES state's name in ``RUN/controller``: ``cma_state.npz`` + ``cma_state.json``."""


@dataclass
class CMAConfig:
    """CMA-ES on a controller in the dream; the paper's settings are the defaults (population 64, 16 rollouts each, sigma0 0.1)."""

    generations: int = 100
    """CMA-ES generations in all (a resumed run continues up to this count)"""
    population: int = 64
    """candidate controllers per generation"""
    rollouts: int = 16
    """dreams per candidate; its fitness is their mean return (dream reward units)"""
    sigma0: float = 0.1
    """initial CMA-ES step size, in controller-parameter units"""
    hidden: int = field(default=0, metadata={"flag": "controller_hidden"})
    """controller hidden layer width in units (0: linear, as in the paper)"""
    dream: DreamConfig = field(default_factory=DreamConfig)
    """how the dreams run: temperature, done threshold, length in steps"""
    real_every: int = 10
    """score the mean solution in the real env every K generations (0: never)"""
    real_episodes: int = 4
    """real-env episodes per check"""
    real_max_steps: int | None = field(default=None, metadata={"flag": "max_steps", "none": "the run's max_steps"})
    """truncate real-env checks after this many steps"""
    select_candidates: int = 1
    """real-env checks score CMA-ES's mean and the generation's best N-1 candidates by dream fitness (each
    costs real_episodes episodes); with select "real" the best of all is kept"""
    action_low: tuple[float, ...] | None = field(default=None, metadata={"none": "the env's", "metavar": "A,B,..."})
    """the controller's own lower Box bounds, inside the env's"""
    action_high: tuple[float, ...] | None = field(default=None, metadata={"none": "the env's", "metavar": "A,B,..."})
    """the controller's own upper Box bounds, e.g. 1,0.3,0 for CarRacing: gas <= 0.3, no brake"""
    select: str = field(default="real", metadata={"choices": ["real", "dream"]})
    """which controller is kept: "real", the best in real-env checks; "dream", CMA-ES's last mean"""
    workers: int | None = None
    """worker processes (or ray actors) for real-env checks (None: one per CPU core, at most one per episode)"""
    backend: str = field(default="local", metadata={"choices": ["local", "ray"]})
    """where real-env checks run: "local" processes or "ray" actors"""
    ray_address: str | None = None
    """ray cluster address for backend "ray" (None: $RAY_ADDRESS, else a new local one)"""
    intrinsic: str | None = field(default=None, metadata={"choices": list(KINDS)})
    """curiosity bonus in the dream: surprise | icm | disagreement | infogain (None: dream reward only)"""
    beta: float = 1.0
    """weight of the intrinsic reward, which is normalised to unit running std; negative: a penalty, pessimism
    against model error (with disagreement: MOPO's reward minus the ensemble's uncertainty)"""
    seed: int = 0
    """seeds CMA-ES, the dreams and the real-env checks"""
    device: str = "auto"
    """torch device of the dreams: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N"""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "generations", "rollouts", "real_episodes", "real_max_steps", "workers",
                         "select_candidates")
        require_at_least(self, 2, "population")
        require_at_least(self, 0, "hidden", "real_every")
        require_positive(self, "sigma0")


def forget(run: RunDir) -> None:
    """Delete the saved CMA-ES optimisation and its controller (``wm dream --no-resume``)."""
    for name in (f"{STATE}.npz", f"{STATE}.json", "history.json", "params.npz", "config.json"):
        (run.controller / name).unlink(missing_ok=True)


def resumed_history(run: RunDir, config: CMAConfig, spec: ControllerSpec) -> dict:
    """The history of the saved optimisation (cut to the saved generation), or a fresh one."""
    done = saved_generation(run.controller / STATE)
    if not done:
        return {"config": asdict(config), "spec": spec.to_dict(), "generations": [], "real": [], "best_real": None}
    history = json.loads((run.controller / "history.json").read_text())
    if history["config"]["population"] != config.population or ControllerSpec(**history["spec"]) != spec:
        raise UserError(f"{run.controller} holds a CMA-ES run with another population or controller; "
                        "pass --no-resume to start over")
    history["generations"] = history["generations"][:done]  # written before the state: one may be ahead
    history["real"] = [r for r in history["real"] if r["generation"] <= done]
    return history


def train_cma(run: RunDir, config: CMAConfig, progress: bool = True) -> dict:
    """CMA-ES on the run's controller in its dream (resumes a saved optimisation); returns the history."""
    device = pick_device(config.device)
    vision, memory = load_world_model(run, device)
    action = run.action_spec()
    spec = ControllerSpec.for_run(memory.z_dim, memory.hidden_size, action, config.hidden, config.action_low,
                                  config.action_high)
    start = dream_starts(run.latents, config.dream)
    shaping = Shaping(bonus=intrinsic_bonus(run, memory, device, config.intrinsic, config.beta))
    dream = BatchedDream(memory, start, action, config.dream, device, vision, shaping)
    gpus = [] if shaping.bonus is not None else other_gpus(device)  # the curiosity model lives on one device
    shards = [dream] + [BatchedDream(copy.deepcopy(memory).to(d), start, action, config.dream, d)
                        for d in gpus][:config.population - 1]  # one per GPU when several
    run.controller.mkdir(parents=True, exist_ok=True)
    history = resumed_history(run, config, spec)
    memory_id = weights_id(run.memory)
    if history.get("memory") not in (None, memory_id) and history["best_real"] is not None:
        # Retrained memory (an iterative round): h means something new, so the kept controller's
        # real score no longer holds; the next check chooses afresh.
        print("dream: the memory model changed since the last real-env check; real-env selection restarts")
        history["best_real"] = None
    history["memory"] = memory_id
    start_gen = len(history["generations"])
    if start_gen >= config.generations:
        print(f"dream: CMA-ES already ran {start_gen} generations; nothing to do")
        return history
    if start_gen:
        print(f"dream: resuming CMA-ES after generation {start_gen}")
    writer = stage_writer(run, "dream", config)
    print(f"dream: CMA-ES on a {spec.n_params}-parameter controller, population {config.population} x "
          f"{config.rollouts} dreams of <= {config.dream.max_steps} steps at tau={config.dream.temperature} on {device}")
    bar = tqdm(desc="dream cma", unit="gen", disable=not progress, initial=start_gen, total=config.generations)
    started = {}

    def fitness(solutions: np.ndarray, gen: int) -> np.ndarray:
        started["time"] = time.perf_counter()
        params = torch.as_tensor(solutions, dtype=torch.float32)
        return population_fitness(shards, spec, params, action, config.rollouts, config.seed * 100_003 + gen)

    def on_generation(g: Generation) -> None:
        record = {"generation": g.number, "best": float(g.fitness.max()), "mean": float(g.fitness.mean()),
                  "worst": float(g.fitness.min()), "sigma": g.sigma, "seconds": time.perf_counter() - started["time"]}
        history["generations"].append(record)
        for key in ("best", "mean", "worst"):
            writer.add_scalar(f"dream/fitness_{key}", record[key], g.number)
        writer.add_scalar("charts/sigma", record["sigma"], g.number)
        writer.add_scalar("charts/dream_steps_per_s",
                          config.population * config.rollouts * config.dream.max_steps / record["seconds"], g.number)
        mean = g.mean.astype(np.float32)
        last = g.number == config.generations
        if config.real_every and (g.number % config.real_every == 0 or last):
            real_check(run, config, spec, check_candidates(mean, g.solutions, g.fitness, config.select_candidates),
                       dream, action, history, writer, g.number)
        if config.select == "dream" or not config.real_every:
            save_controller(run, spec, mean, {"generation": g.number, "selected_by": "dream"})
        if g.number % max(1, config.real_every or 10) == 0 or last:
            log_dream_frames(writer, dream, spec, mean, action, g.number)
        atomic_write_json(run.controller / "history.json", history)
        bar.update()
        bar.set_postfix(best=f"{record['best']:.1f}", mean=f"{record['mean']:.1f}", sigma=f"{record['sigma']:.3f}")

    try:
        evolve(np.zeros(spec.n_params), config.sigma0, config.population, fitness, config.generations, config.seed,
               run.controller / STATE, on_generation)
    finally:  # the bar ends before an error's line
        bar.close()
        writer.close()
    return history


def check_candidates(mean: np.ndarray, solutions: np.ndarray, fitness: np.ndarray, count: int) -> list[np.ndarray]:
    """What a real-env check scores: CMA-ES's ``mean`` [n], then the ``count - 1`` best of the generation's
    ``solutions`` [P, n] by dream ``fitness`` [P]."""
    best = np.argsort(-np.asarray(fitness))[:max(0, count - 1)]
    return [np.asarray(mean, np.float32)] + [np.asarray(solutions[i], np.float32) for i in best]


def real_check(run: RunDir, config: CMAConfig, spec: ControllerSpec, candidates: list[np.ndarray],
               dream: BatchedDream, action, history: dict, writer, generation: int) -> None:
    """Score controllers ``candidates`` (CMA-ES's mean, then the generation's best: ``check_candidates``) in
    the real env, all on one pool of workers; with ``select="real"``, keep the best yet as the controller.

    TensorBoard: each episode's ``charts/episodic_return`` against the real env steps of all checks so far
    (``env_steps`` in the history), and the mean's ``dream/real_return`` beside its ``dream/dream_return``
    against the generation."""
    # The same tracks at every check (and none of `wm eval`'s), so checks compare controllers.
    options = [{"params": params.tolist(), "spec": spec.to_dict()} for params in candidates]
    scored, _ = run_episodes(run, "controller", options, config.real_episodes, config.workers, 10_000 + config.seed,
                             config.real_max_steps, "cpu", config.backend, config.ray_address, progress=False)
    for rank, (params, episodes) in enumerate(zip(candidates, scored)):
        candidate = "mean" if rank == 0 else f"top{rank}"
        returns = np.array([e["return"] for e in episodes])
        before = history["real"][-1].get("env_steps", 0) if history["real"] else 0
        real = {"generation": generation, "candidate": candidate, "mean": float(returns.mean()),
                "std": float(returns.std()), "dream": dream_score(dream, spec, params, action, config.rollouts),
                "env_steps": log_episodes(writer, returns.tolist(), [e["length"] for e in episodes], before)}
        history["real"].append(real)
        if candidate == "mean":
            writer.add_scalar("dream/real_return", real["mean"], generation)
            writer.add_scalar("dream/dream_return", real["dream"], generation)
        tqdm.write(f"generation {generation} {candidate}: real env {real['mean']:.1f} +- {real['std']:.1f} "
                   f"(dream {real['dream']:.1f})")
        if history["best_real"] is None or real["mean"] > history["best_real"]["mean"]:
            history["best_real"] = real
            if config.select == "real":
                save_controller(run, spec, params, {"generation": generation, "selected_by": "real", "real": real})


def other_gpus(device: torch.device) -> list[torch.device]:
    """The visible CUDA devices besides ``device`` when it is one of several (else none)."""
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        return []
    primary = device.index if device.index is not None else torch.cuda.current_device()
    return [torch.device("cuda", i) for i in range(torch.cuda.device_count()) if i != primary]


def population_fitness(shards: list[BatchedDream], spec: ControllerSpec, params: torch.Tensor, action,
                       rollouts: int, seed: int) -> np.ndarray:
    """Mean dream return of each candidate (rows of ``params``), the population split over ``shards``."""

    def run(k: int, dream: BatchedDream, p: torch.Tensor) -> np.ndarray:
        dream.seed(seed + 1_000_003 * k)
        p = p.to(dream.device)
        returns, _ = rollout_population(dream, lambda f: spec.act(p, f, action), len(p), rollouts)
        return returns.mean(1).cpu().numpy()

    chunks = torch.tensor_split(params, len(shards))
    if len(shards) == 1:
        return run(0, shards[0], params)
    with ThreadPoolExecutor(len(shards)) as pool:  # CUDA work releases the GIL: the devices run together
        return np.concatenate(list(pool.map(run, range(len(shards)), shards, chunks)))


def dream_score(dream: BatchedDream, spec: ControllerSpec, params: np.ndarray, action, rollouts: int) -> float:
    """Mean dream return of one controller over ``rollouts`` dreams."""
    p = torch.as_tensor(params, dtype=torch.float32, device=dream.device)[None]
    returns, _ = rollout_population(dream, lambda f: spec.act(p, f, action), 1, rollouts)
    return float(returns.mean())


@torch.no_grad()
def log_dream_frames(writer, dream: BatchedDream, spec: ControllerSpec, params: np.ndarray, action, step: int,
                     dreams: int = 4, columns: int = 16) -> None:
    """``dream/controller_dreams`` in TensorBoard: ``dreams`` fresh dreams of one controller, decoded, as a grid
    of one row per dream and ``columns`` evenly spaced steps; steps after a dream terminated (sampled termination:
    more likely than not) stay white."""
    p = torch.as_tensor(params, dtype=torch.float32, device=dream.device)[None]
    _, imagined = rollout_population(dream, lambda f: spec.act(p, f, action), 1, dreams)
    steps = torch.linspace(0, imagined.latents.shape[1] - 1, columns).round().long().unique()
    frames = dream.vision.decode(imagined.latents[:, steps.to(dream.device)].flatten(0, 1)).float().cpu()
    frames = frames.view(dreams, len(steps), *frames.shape[1:])
    if dream.config.termination == "sampled":
        gone = (imagined.survival()[:, :-1] < 0.5).cpu()  # more likely than not terminated earlier
    else:
        ended = terminated(imagined.continues, dream.config.done_threshold).int().cpu()
        gone = (ended.cumsum(1) - ended) > 0  # terminated at an earlier step
    frames[gone[:, steps]] = 1.0
    writer.add_image("dream/controller_dreams", frame_grid(frames), step)
