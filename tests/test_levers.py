"""The levers that let a dream-trained CarRacing controller drive whole tracks (BENCHMARKS.md, issue 13):
dreams that start from any stored frame, real-env checks of the best candidates, the done label."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests.test_dream import TINY_CMA, build_trained_catch, wm_error
from worldmodels.cli import main
from worldmodels.core.errors import UserError
from worldmodels.dream.cma import check_candidates
from worldmodels.dream.imagine import DreamConfig, dream_starts, initial_latents
from worldmodels.runs.episodes import list_episodes, load_episode, save_episode
from worldmodels.runs.rundir import RunDir
from worldmodels.training.latents import load_latents


def write_latents(directory, lengths, z=4):
    directory.mkdir(parents=True)
    for i, t in enumerate(lengths):
        mu = np.full((t + 1, z), i, np.float32) + np.arange(t + 1, dtype=np.float32)[:, None] / 100
        np.savez(directory / f"episode_{i:06d}.npz", mu=mu, logvar=np.zeros_like(mu))


def test_dreams_start_from_first_frames_or_from_any_frame(tmp_path):
    write_latents(tmp_path / "latents", [5, 3])
    mu, logvar = initial_latents(tmp_path / "latents")
    assert mu.shape == (2, 4) and torch.equal(mu[:, 0], torch.tensor([0.0, 1.0]))
    mu, logvar = dream_starts(tmp_path / "latents", DreamConfig(start="any"))
    assert mu.shape == (5 + 3, 4) and logvar.shape == mu.shape  # every frame but each episode's last
    mu, _ = dream_starts(tmp_path / "latents", DreamConfig(start="any", start_stride=2))
    assert mu.shape == (3 + 2, 4)
    with pytest.raises(UserError, match="--start-stride must be at least 1"):
        DreamConfig(start_stride=0)


def test_real_checks_score_the_mean_then_the_best_candidates():
    mean, solutions = np.zeros(2), np.arange(5, dtype=float)[:, None].repeat(2, 1)
    picked = check_candidates(mean, solutions, np.array([3.0, 9.0, 1.0, 7.0, 0.0]), 3)
    assert [float(p[0]) for p in picked] == [0.0, 1.0, 3.0]
    assert len(check_candidates(mean, solutions, np.zeros(5), 1)) == 1


def test_the_levers_from_the_command_line(tmp_path_factory, tmp_path):
    run = shutil.copytree(build_trained_catch(tmp_path_factory), tmp_path / "run")
    assert main(["train", "memory", "--run", str(run), "--epochs", "2", "--hidden-size", "32", "--seq-len", "8",
                 "--batch-size", "16", "--done-label", "carracing-off-track"]) == 0
    assert "done_label=carracing-off-track" in json.loads((run / "memory" / "summary.json").read_text())["data"]
    assert main(["dream", "--run", str(run), "--no-resume", "--generations", "2", *TINY_CMA[:-2], "--real-every", "1",
                 "--real-episodes", "1", "--select-candidates", "2", "--start", "any", "--start-stride", "2",
                 "--workers", "1"]) == 0
    history = json.loads((run / "controller" / "history.json").read_text())
    assert [(r["generation"], r["candidate"]) for r in history["real"]] == [(1, "mean"), (1, "top1"), (2, "mean"),
                                                                             (2, "top1")]
    assert not (run / "eval" / "results.json").exists()  # checks are not evaluations


def test_a_hit_cost_lowers_the_reward_the_memory_model_learns_where_a_frame_flashes_red(tmp_path_factory, tmp_path,
                                                                                       capsys):
    run = shutil.copytree(build_trained_catch(tmp_path_factory), tmp_path / "run")
    path = list_episodes(RunDir(run).episodes)[0]
    episode = load_episode(path)
    episode["obs"][3, ..., 0] = 255  # a damage flash in frame 3: step 2 led to it
    episode["obs"][3, ..., 1:] = 0
    save_episode(path, **episode)
    plain, = load_latents(RunDir(run), [0])
    costed, = load_latents(RunDir(run), [0], hit_cost=7.5)
    np.testing.assert_allclose(plain["reward"] - costed["reward"], np.eye(len(plain["reward"]))[2] * 7.5)
    assert main(["train", "memory", "--run", str(run), "--epochs", "1", "--hidden-size", "32", "--seq-len", "8",
                 "--batch-size", "16", "--hit-cost", "7.5"]) == 0
    assert "hit_cost=7.5" in json.loads((run / "memory" / "summary.json").read_text())["data"]
    assert "--hit-cost must be at least 0" in wm_error(capsys, ["train", "memory", "--run", str(run), "--hit-cost", "-1"])
