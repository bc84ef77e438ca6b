"""Run independent work units (whole episodes) in worker processes, here or on a Ray cluster.

Two backends share one contract, ``map_unordered(fn, tasks)``: each worker runs
``initializer(*initargs)`` once (to build its env and agent), then work units; results stream
back to the caller unordered. ``LocalExecutor`` uses processes on this machine (``spawn``, so
workers never inherit a half-initialised torch or display); ``RayExecutor`` uses one Ray actor
per worker, anywhere in a cluster, and reruns the unit of a worker that dies. ``make_executor``
picks one by name (``--backend local|ray``).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from worldmodels.core.errors import UserError

BACKENDS = ("local", "ray")
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _limit_threads() -> None:
    """One thread per worker: W processes share the cores instead of oversubscribing them.

    torch, if a worker needs it, reads ``OMP_NUM_THREADS`` when imported; importing it here
    would cost every env-only worker a second of start-up.
    """
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:  # already imported with the __main__ module
        sys.modules["torch"].set_num_threads(1)


def _die_with_parent(parent: int | None) -> None:
    """Linux: the kernel kills this worker when the process that started it dies (even by kill -9),
    so a killed command leaves no workers, and multiprocessing's resource tracker exits too. A
    worker whose ``parent`` died while it started up (before the ``prctl``) exits at once."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if parent is not None and os.getppid() != parent:
            os._exit(1)


def _init(initializer, initargs, parent: int | None = None) -> None:
    _die_with_parent(parent)
    _limit_threads()
    initializer(*initargs)


class LocalExecutor:
    """``map_unordered(fn, tasks)`` over ``workers`` processes (in this process when 1)."""

    def __init__(self, workers: int, initializer: Callable, initargs: tuple = ()):
        self.workers = max(1, int(workers))
        self.initializer = initializer
        self.initargs = initargs

    def map_unordered(self, fn: Callable, tasks: Iterable) -> Iterator:
        tasks = list(tasks)
        if not tasks:
            return
        if self.workers == 1:
            self.initializer(*self.initargs)
            for task in tasks:
                yield fn(task)
            return
        workers = min(self.workers, len(tasks))
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init,
                                   initargs=(self.initializer, self.initargs, os.getpid()))
        try:
            pending = {pool.submit(fn, task) for task in tasks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class _RayWorker:
    """The body of a Ray actor: the initializer once, then work units."""

    def __init__(self, initializer: Callable, initargs: tuple):
        _init(initializer, initargs)

    def run(self, fn: Callable, task):
        return fn(task)


def import_ray():
    """The ``ray`` module, or a ``UserError`` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'worldmodels[ray]'") from None
    return ray


class RayExecutor:
    """``map_unordered(fn, tasks)`` over ``workers`` Ray actors (one CPU each), anywhere in a cluster.

    Uses the Ray already initialised in this process, else attaches to ``address`` (``"auto"``:
    the cluster ``ray start`` made on this node; ``None``: ``$RAY_ADDRESS``, else a new local
    one). Units go to idle actors; idle actors are released once no unit is queued. An actor
    that dies (crash, node lost) is replaced by a fresh one (which runs the initializer again)
    and its unit is rerun, at most ``retries`` times per unit, so units must be idempotent.
    """

    def __init__(self, workers: int, initializer: Callable, initargs: tuple = (), address: str | None = None,
                 retries: int = 3):
        self.workers = max(1, int(workers))
        self.initializer = initializer
        self.initargs = initargs
        self.address = address
        self.retries = retries

    def map_unordered(self, fn: Callable, tasks: Iterable) -> Iterator:
        tasks = list(tasks)
        if not tasks:
            return
        ray = import_ray()
        from ray.exceptions import RayActorError

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, logging_level="WARNING")
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)

        def spawn():
            return actor_class.remote(self.initializer, self.initargs)

        idle = [spawn() for _ in range(min(self.workers, cpus, len(tasks)))]
        queue = deque((task, 0) for task in tasks)
        running: dict = {}  # object ref -> (actor, task, attempt)
        try:
            while queue or running:
                while queue and idle:
                    actor = idle.pop()
                    task, attempt = queue.popleft()
                    running[actor.run.remote(fn, task)] = (actor, task, attempt)
                if not queue:  # nothing left to hand out: free the CPUs of idle actors
                    for actor in idle:
                        ray.kill(actor)
                    idle.clear()
                [ref], _ = ray.wait(list(running), num_returns=1)
                actor, task, attempt = running.pop(ref)
                try:
                    result = ray.get(ref)
                except RayActorError as e:
                    if e.actor_init_failed:
                        raise RuntimeError(f"a Ray worker failed to start: {e}") from None
                    if attempt >= self.retries:
                        raise
                    print(f"ray: a worker died ({type(e).__name__}); rerunning its unit on a new one",
                          file=sys.stderr)
                    ray.kill(actor)
                    queue.appendleft((task, attempt + 1))
                    idle.append(spawn())
                    continue
                idle.append(actor)
                yield result
        finally:
            for actor in idle + [actor for actor, _, _ in running.values()]:
                ray.kill(actor)


def make_executor(backend: str, workers: int, initializer: Callable, initargs: tuple = (),
                  address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor of ``backend`` (``"local"`` or ``"ray"``); ``address`` is the Ray cluster's."""
    if backend == "local":
        if address is not None:
            raise UserError("--ray-address needs --backend ray")
        return LocalExecutor(workers, initializer, initargs)
    if backend == "ray":
        import_ray()
        return RayExecutor(workers, initializer, initargs, address)
    raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
