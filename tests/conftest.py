"""Shared fixtures: small collected runs, built once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.runs.rundir import RunDir

CATCH_EPISODES = 4


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
