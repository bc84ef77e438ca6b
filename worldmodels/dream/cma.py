"""``wm dream --algo cma``: CMA-ES on a controller, evaluated entirely inside the dream.

Every generation the whole population is one batched dream of ``P x R`` rollouts. The CMA-ES
state is saved each generation (``controller/cma_state.pkl``, a pickle of pycma's optimizer and its RNG; model
weights stay weights-only), so re-running resumes. Every ``real_every`` generations the mean
solution is also scored in the real env, so the dream-to-real gap is visible; with
``select="real"`` the controller kept is the one that scored best there. With several CUDA
devices visible, each generation's population is split across them (one ``BatchedDream`` per
device, each with its own copy of the memory model, run in parallel threads); one device is
the plain path.
"""

from __future__ import annotations

import copy
import json
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.dream.env import intrinsic_bonus
from worldmodels.dream.imagine import BatchedDream, DreamConfig, initial_latents, rollout_population
from worldmodels.models.controller import ControllerSpec
from worldmodels.runs.artifacts import load_world_model, weights_id
from worldmodels.runs.rundir import RunDir, atomic_save_npz, atomic_write_bytes, atomic_write_json


@dataclass
class CMAConfig:
    """The paper's settings are the defaults: population 64, 16 rollouts each, sigma0 0.1."""

    generations: int = 100
    population: int = 64
    rollouts: int = 16
    sigma0: float = 0.1
    hidden: int = 0  # controller hidden layer width (0: linear, as in the paper)
    temperature: float = 1.0
    done_threshold: float = 0.5
    max_steps: int = 1000  # dream length
    real_every: int = 10  # score the mean solution in the real env every K generations (0: never)
    real_episodes: int = 4
    real_max_steps: int | None = None  # truncate real-env checks (None: the run's max_steps)
    select: str = "real"  # "real": keep the controller that scored best in real checks; "dream": CMA's mean
    workers: int | None = None
    backend: str = "local"  # where real-env checks run: "local" processes or "ray" actors
    ray_address: str | None = None
    intrinsic: str | None = None  # curiosity bonus in the dream: surprise | icm | disagreement | infogain
    beta: float = 1.0  # weight of the (normalised) intrinsic reward
    seed: int = 0
    device: str = "auto"


def save_controller(run: RunDir, spec: ControllerSpec, params: np.ndarray, info: dict) -> None:
    run.controller.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(run.controller / "params.npz", params=np.asarray(params, np.float32))
    atomic_write_json(run.controller / "config.json", {"kind": "linear" if not spec.hidden else "mlp",
                                                       "spec": spec.to_dict(), **info})


def train_cma(run: RunDir, config: CMAConfig, progress: bool = True) -> dict:
    import warnings

    warnings.filterwarnings("ignore", message="Could not import matplotlib")  # pycma's optional plotting
    import cma

    from worldmodels.evaluation.evaluate import evaluate

    device = pick_device(config.device)
    vision, memory = load_world_model(run, device)
    action = run.action_spec()
    spec = ControllerSpec.for_run(memory.z_dim, memory.hidden_size, action, config.hidden)
    dream_config = DreamConfig(config.temperature, config.done_threshold, config.max_steps)
    start = initial_latents(run.latents)
    bonus = intrinsic_bonus(run, memory, device, config.intrinsic, config.beta)
    dream = BatchedDream(memory, start, action, dream_config, device, vision, bonus=bonus)
    gpus = [] if bonus is not None else other_gpus(device)  # the curiosity model lives on one device
    shards = [dream] + [BatchedDream(copy.deepcopy(memory).to(d), start, action, dream_config, d)
                        for d in gpus][:config.population - 1]  # one per GPU when several
    state_path = run.controller / "cma_state.pkl"
    history_path = run.controller / "history.json"
    run.controller.mkdir(parents=True, exist_ok=True)
    if state_path.exists():
        saved = json.loads(history_path.read_text())
        if saved["config"]["population"] != config.population or saved["spec"] != spec.to_dict():
            raise UserError(f"{run.controller} holds a CMA-ES run with another population or controller; "
                            "pass --no-resume to start over")
        # Our own file, written below: the optimizer and numpy's global RNG, which pycma samples from.
        es, rng_state = pickle.loads(state_path.read_bytes())
        np.random.set_state(rng_state)
        history = saved
    else:
        es = cma.CMAEvolutionStrategy(np.zeros(spec.n_params), config.sigma0,
                                      {"popsize": config.population, "seed": config.seed + 1, "verbose": -9})
        history = {"config": asdict(config), "spec": spec.to_dict(), "generations": [], "real": [],
                   "best_real": None}
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
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run.tb))
    print(f"dream: CMA-ES on a {spec.n_params}-parameter controller, population {config.population} x "
          f"{config.rollouts} dreams of <= {config.max_steps} steps at tau={config.temperature} on {device}")
    bar = tqdm(range(start_gen, config.generations), desc="dream cma", unit="gen", disable=not progress,
               initial=start_gen, total=config.generations)
    for gen in bar:
        t0 = time.perf_counter()
        solutions = es.ask()
        params = torch.as_tensor(np.stack(solutions), dtype=torch.float32)
        fitness = population_fitness(shards, spec, params, action, config.rollouts, config.seed * 100_003 + gen)
        es.tell(solutions, (-fitness).tolist())
        record = {"generation": gen + 1, "best": float(fitness.max()), "mean": float(fitness.mean()),
                  "worst": float(fitness.min()), "sigma": float(es.sigma), "seconds": time.perf_counter() - t0}
        history["generations"].append(record)
        for key in ("best", "mean", "worst"):
            writer.add_scalar(f"dream/fitness_{key}", record[key], gen + 1)
        writer.add_scalar("dream/sigma", record["sigma"], gen + 1)
        writer.add_scalar("dream/dream_steps_per_s",
                          config.population * config.rollouts * config.max_steps / record["seconds"], gen + 1)
        mean = np.asarray(es.mean, np.float32)
        last = gen + 1 == config.generations
        if config.real_every and ((gen + 1) % config.real_every == 0 or last):
            # The same tracks at every check (and none of `wm eval`'s), so checks compare controllers.
            result = evaluate(run, "controller", episodes=config.real_episodes, workers=config.workers,
                              seed=10_000 + config.seed, max_steps=config.real_max_steps, progress=False,
                              backend=config.backend, ray_address=config.ray_address,
                              agent_options={"params": mean.tolist(), "spec": spec.to_dict()})
            real = {"generation": gen + 1, "mean": result["mean"], "std": result["std"],
                    "dream": float(dream_score(dream, spec, mean, action, config, device))}
            history["real"].append(real)
            writer.add_scalar("dream/real_score", real["mean"], gen + 1)
            tqdm.write(f"generation {gen + 1}: real env {real['mean']:.1f} +- {real['std']:.1f} "
                       f"(dream {real['dream']:.1f})")
            if history["best_real"] is None or real["mean"] > history["best_real"]["mean"]:
                history["best_real"] = real
                if config.select == "real":
                    save_controller(run, spec, mean, {"generation": gen + 1, "selected_by": "real", "real": real})
        if config.select == "dream" or not config.real_every:
            save_controller(run, spec, mean, {"generation": gen + 1, "selected_by": "dream"})
        if (gen + 1) % max(1, config.real_every or 10) == 0 or last:
            log_dream_video(writer, dream, spec, mean, action, gen + 1)
        atomic_write_bytes(state_path, pickle.dumps((es, np.random.get_state())))
        atomic_write_json(history_path, history)
        bar.set_postfix(best=f"{record['best']:.1f}", mean=f"{record['mean']:.1f}", sigma=f"{record['sigma']:.3f}")
    writer.close()
    return history


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


def dream_score(dream: BatchedDream, spec: ControllerSpec, params: np.ndarray, action, config: CMAConfig,
                device) -> float:
    """Mean dream return of one controller over ``config.rollouts`` dreams."""
    p = torch.as_tensor(params, dtype=torch.float32, device=device)[None]
    returns, _ = rollout_population(dream, lambda f: spec.act(p, f, action), 1, config.rollouts)
    return float(returns.mean())


def log_dream_video(writer, dream: BatchedDream, spec: ControllerSpec, params: np.ndarray, action, step: int,
                    frames: int = 32) -> None:
    """A strip of decoded dream frames of one controller (every few steps) in TensorBoard."""
    p = torch.as_tensor(params, dtype=torch.float32, device=dream.device)[None]
    _, decoded = rollout_population(dream, lambda f: spec.act(p, f, action), 1, 1, record=0)
    stride = max(1, len(decoded) // frames)
    strip = torch.cat([d[0] for d in decoded[::stride][:frames]], dim=2)
    writer.add_image("dream/best_controller_frames", strip.clamp(0, 1), step)
