"""Behaviour pinned across refactors: at smoke scale, the same seeds give the same episodes, losses
and controller as the code before the restructure (values in ``tests/data/pinned_smoke.json``,
produced by commit 7cc77da).

Episodes come from seeded envs and a seeded policy, so they must match bit for bit. Losses and
controller weights come from floating-point training, which differs in the last bits between
CPU makes and thread counts, so they are compared with margins far below what any change of
seeds, data order or defaults would move them (such a change moves them by tens of percent).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.dream.cma import CMAConfig, train_cma
from worldmodels.dream.imagine import DreamConfig
from worldmodels.runs.episodes import list_episodes
from worldmodels.runs.rundir import RunDir
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision

PINNED = json.loads((Path(__file__).parent / "data" / "pinned_smoke.json").read_text())


def episodes_sha1(run: RunDir) -> str:
    h = hashlib.sha1()
    for _, path in sorted(list_episodes(run.episodes).items()):
        with np.load(path) as data:
            for key in ("obs", "action", "reward", "terminated", "truncated"):
                h.update(np.ascontiguousarray(data[key]).tobytes())
    return h.hexdigest()


def test_smoke_stages_reproduce_the_pinned_results(tmp_path):
    torch.set_num_threads(1)
    run = RunDir(tmp_path / "run")
    collect(run, CollectConfig(env="worldmodels.envs.catch:Catch", episodes=4, workers=1, agent="brownian", seed=3,
                               env_kwargs={"balls": 2}), progress=False)
    assert episodes_sha1(run) == PINNED["episodes_sha1"]

    vision = train_vision(run, VisionTrainConfig(epochs=2, batch_size=16, z_dim=8, device="cpu", seed=1),
                          progress=False)
    assert [e["val"]["loss"] for e in vision["history"]] == pytest.approx(PINNED["vision_val_losses"], rel=0.02)
    memory = train_memory(run, MemoryTrainConfig(epochs=2, batch_size=4, seq_len=8, hidden_size=16, device="cpu",
                                                 seed=1), progress=False)
    assert [e["val"]["loss"] for e in memory["history"]] == pytest.approx(PINNED["memory_val_losses"], rel=0.02)

    history = train_cma(run, CMAConfig(generations=2, population=6, rollouts=2, dream=DreamConfig(max_steps=15),
                                       real_every=0, select="dream", device="cpu", seed=2), progress=False)
    fitness = [g["mean"] for g in history["generations"]]
    assert fitness == pytest.approx(PINNED["dream_fitness_mean"], rel=0.05, abs=0.01)
    with np.load(run.controller / "params.npz") as data:
        np.testing.assert_allclose(data["params"], PINNED["controller_params"], atol=0.02)
