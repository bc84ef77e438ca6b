"""Run independent work units (whole episodes) in worker processes.

``LocalExecutor`` uses processes on this machine (``spawn``, so workers never inherit a
half-initialised torch or display). Each worker runs ``initializer(*initargs)`` once (to build
its env and agent), then work units; results stream back unordered.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait


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


def _init(initializer, initargs) -> None:
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
                                   initargs=(self.initializer, self.initargs))
        try:
            pending = {pool.submit(fn, task) for task in tasks}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
