"""Shared fixtures: small collected runs, built once per test session; thread counts and devices.

Every test process uses ``THREADS`` torch threads (the cores divided among pytest-xdist workers,
at most 4), and so do the processes it starts, so ``pytest -n N`` does not oversubscribe the
cores. Tests that touch tensors take the ``device`` fixture (or parametrize over ``DEVICES``): cpu
always, cuda where present; ``pytest -m cuda`` runs the CUDA cases alone. TF32 is off, so a
CUDA case checks the same float32 maths as the CPU one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.runs.rundir import RunDir

CATCH_EPISODES = 4


def _threads() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(4, cores // workers))


THREADS = _threads()
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(THREADS)  # inherited by DDP ranks and worker processes
torch.set_num_threads(THREADS)
with contextlib.suppress(RuntimeError):  # refused once inter-op work has started
    torch.set_num_interop_threads(THREADS)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "cuda: a test case that runs on the CUDA device (select with -m cuda)")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and str(params.params.get("device", "")).startswith("cuda"):
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny models (extra threads only add overhead on a shared CPU); a module
    opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``, set before its module fixtures train."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each available device in turn: cpu, then cuda where present."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def catch_run(tmp_path_factory) -> RunDir:
    """A run of 4 random Catch episodes (1 ball each, so ~15 steps). Read-only: copy it to modify."""
    run = RunDir(tmp_path_factory.mktemp("catch") / "run")
    collect(run, CollectConfig(env="worldmodels.envs.catch:Catch", episodes=CATCH_EPISODES, workers=1,
                               env_kwargs={"balls": 1}), progress=False)
    return run


@pytest.fixture
def catch_run_copy(catch_run, tmp_path) -> RunDir:
    """A private copy of ``catch_run`` that a test may change."""
    return RunDir(shutil.copytree(catch_run.root, Path(tmp_path) / "run"))
