"""The one CMA-ES ask/tell loop (pycma) behind every controller search: in the dream (``wm dream``),
on curiosity (``wm explore``) and in the real env (benchmarks). Fitness is maximised.

Resumable from data, never from a pickle. After each generation ``STATE.npz`` holds every numeric
array and numpy scalar of pycma's strategy and of the pycma objects it holds (mean, covariance
and its eigendecomposition, evolution paths, step size, the last sorted population, ...) plus
numpy's global RNG keys, which pycma samples from; ``STATE.json`` holds the plain scalars (counts,
flags), which attributes share one array, and the generation. Resuming builds a fresh strategy
with the same settings and writes those numbers back onto its existing attributes, so the next
generation is the one an uninterrupted run asks for (bit for bit). Nothing read is executed: only
numbers are assigned, and a stray ``cma_state.pkl`` is never opened.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from worldmodels.core.errors import UserError
from worldmodels.runs.rundir import atomic_save_npz, atomic_write_json, read_arrays

FORMAT = 1
"""Version of the saved state's layout."""


class Generation(NamedTuple):
    """What one finished generation reports to ``on_generation``."""

    number: int
    """generations done, counting from 1"""
    fitness: np.ndarray
    """[P] fitness of the population just told (higher is better)"""
    mean: np.ndarray
    """[n] the strategy's mean after the update"""
    sigma: float
    """the step size after the update (parameter units)"""
    solutions: np.ndarray
    """[P, n] the candidates that ``fitness`` scored"""


def evolve(initial: np.ndarray, sigma0: float, population: int,
           fitness: Callable[[np.ndarray, int], np.ndarray], generations: int, seed: int,
           state: Path | None = None, on_generation: Callable[[Generation], None] | None = None) -> np.ndarray:
    """CMA-ES maximising ``fitness(solutions [P, n] float64, generation from 0) -> [P]``; returns the final mean [n].

    Starts at ``initial`` [n] with step size ``sigma0`` and ``population`` candidates per generation,
    pycma seeded with ``seed + 1`` (pycma reads 0 as "seed from the clock"). With ``state`` (a path
    without suffix) it resumes from ``STATE.npz`` / ``STATE.json`` when they exist and saves them
    after every generation, once ``on_generation`` has returned; it runs until ``generations`` are done.
    """
    es = strategy(initial, sigma0, population, seed)
    done = load_state(es, state) if state is not None else 0
    for generation in range(done, generations):
        solutions = es.ask()
        values = np.asarray(fitness(np.stack(solutions), generation), dtype=np.float64)
        es.tell(solutions, (-values).tolist())
        if on_generation is not None:
            on_generation(Generation(generation + 1, values, np.asarray(es.mean), float(es.sigma), np.stack(solutions)))
        if state is not None:
            save_state(es, state, generation + 1)
    return np.asarray(es.mean)


def strategy(initial: np.ndarray, sigma0: float, population: int, seed: int):
    """A fresh ``cma.CMAEvolutionStrategy`` (minimising, quiet); pycma seeded with ``seed + 1``."""
    warnings.filterwarnings("ignore", message="Could not import matplotlib")  # pycma's optional plotting
    import cma

    return cma.CMAEvolutionStrategy(np.asarray(initial, np.float64), sigma0,
                                    {"popsize": population, "seed": seed + 1, "verbose": -9})


def saved_generation(state: Path) -> int:
    """Generations done by the state saved at ``state`` (0 when there is none)."""
    path = Path(state).with_suffix(".json")
    return int(json.loads(path.read_text())["generation"]) if path.exists() else 0


def save_state(es, state: Path, generation: int) -> None:
    """Write ``es`` and numpy's global RNG to ``STATE.npz`` + ``STATE.json`` (atomically, each)."""
    saved = {"arrays": {}, "scalars": {}, "aliases": {}, "array_lists": [], "ranges": {}}
    _numbers(es, "", saved, {})
    arrays = saved.pop("arrays")
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    arrays["numpy_rng.keys"] = keys
    arrays["generation"] = np.asarray(generation)
    state = Path(state)
    atomic_save_npz(state.with_suffix(".npz"), **arrays)
    atomic_write_json(state.with_suffix(".json"), {
        "format": FORMAT, "generation": generation, "dimension": int(es.N), "population": int(es.popsize),
        "numpy_rng": [kind, int(position), int(has_gauss), float(cached_gaussian)], **saved})


def load_state(es, state: Path) -> int:
    """Restore ``es`` (fresh, same settings) and numpy's RNG from ``state``; returns the generations done (0: none saved)."""
    state = Path(state)
    if not state.with_suffix(".json").exists():
        return 0
    meta = json.loads(state.with_suffix(".json").read_text())
    if meta.get("format") != FORMAT or (meta["dimension"], meta["population"]) != (es.N, es.popsize):
        raise UserError(f"{state}.json holds a CMA-ES state of another size or format; pass --no-resume to start over")
    arrays = read_arrays(state.with_suffix(".npz"))
    if int(arrays.pop("generation")) != meta["generation"]:
        raise UserError(f"{state}.npz and {state}.json are from different generations; pass --no-resume")
    kind, position, has_gauss, cached_gaussian = meta["numpy_rng"]
    np.random.set_state((kind, arrays.pop("numpy_rng.keys"), position, has_gauss, cached_gaussian))
    for path, value in arrays.items():
        if path in meta["array_lists"]:
            value = list(value)
        _assign(es, path, value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value)
    for path, value in meta["scalars"].items():
        _assign(es, path, value)
    for path, (start, stop, step) in meta["ranges"].items():
        _assign(es, path, range(start, stop, step))
    for path, target in meta["aliases"].items():
        _assign(es, path, _resolve(es, target))
    if not hasattr(es, "timer"):  # the one object pycma creates lazily, at its first ask
        from cma.utilities.utils import ElapsedWCTime

        es.timer = ElapsedWCTime()
    return int(meta["generation"])


def _is_pycma(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "cma" and getattr(obj, "__dict__", None) is not None


def _numbers(obj, prefix: str, saved: dict, seen: dict) -> None:
    """Collect the numeric attributes of pycma object ``obj`` and of the pycma objects it holds into
    ``saved`` (``arrays``, ``scalars``, ``aliases``, ``array_lists``, ``ranges``), by dotted path."""
    seen[id(obj)] = prefix
    for name, value in vars(obj).items():
        path = prefix + name
        if _is_numeric_array(value):
            if id(value) in seen:  # one array under two names: keep them one
                saved["aliases"][path] = seen[id(value)]
            else:
                seen[id(value)] = path
                saved["arrays"][path] = value
        elif isinstance(value, np.generic) and value.dtype.kind in "biuf":
            saved["arrays"][path] = np.asarray(value)
        elif type(value) in (bool, int, float) or (
                type(value) is list and all(type(v) in (bool, int, float) for v in value)):
            saved["scalars"][path] = value
        elif type(value) is list and all(_is_numeric_array(v) and v.shape == value[0].shape for v in value):
            saved["arrays"][path] = np.stack(value)  # e.g. the selective mirrors of the next ask
            saved["array_lists"].append(path)
        elif type(value) is range:
            saved["ranges"][path] = [value.start, value.stop, value.step]
        elif _is_pycma(value) and id(value) not in seen:
            _numbers(value, path + ".", saved, seen)


def _is_numeric_array(value) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def _resolve(es, path: str):
    """The object at dotted ``path`` of ``es``, or None where the path does not exist."""
    obj = es
    for name in filter(None, path.split(".")):
        obj = getattr(obj, name, None)
    return obj


def _assign(es, path: str, value) -> None:
    """Set attribute ``path`` of ``es`` to ``value``, on pycma objects only; paths under objects pycma
    creates lazily (timers, stopping-criteria trackers) do not exist on a fresh strategy and are skipped."""
    parent_path, _, name = path.rpartition(".")
    parent = _resolve(es, parent_path)
    if _is_pycma(parent):
        setattr(parent, name, value)
