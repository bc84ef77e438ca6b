"""Zero-shot tasks after exploration (``wm task``): a task reward read off the stored frames relabels a run,
only the reward head is retrained, a controller is trained in the dream and scored on the task for real."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldmodels.agents.random import RandomAgent
from worldmodels.cli import main
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.collect.driver import EpisodeRecorder, drive
from worldmodels.curiosity.explore import GroundTruth
from worldmodels.curiosity.task import fit_reward_head, relabel, reward_head
from worldmodels.envs.maze import Maze, agent_cells, reach_far_corner, reach_room
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models import RSSM, RSSMConfig
from worldmodels.runs.artifacts import load_memory, weights_id
from worldmodels.runs.episodes import list_episodes, load_episode
from worldmodels.runs.rundir import RunDir
from worldmodels.training.latents import load_latents
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.vision import VisionTrainConfig, train_vision

TASK = "worldmodels.envs.maze:reach_far_corner"
TINY = ["--reward-steps", "30", "--seq-len", "8", "--batch-size", "4", "--generations", "2", "--population", "4",
        "--rollouts", "2", "--dream-steps", "8", "--episodes", "2", "--device", "cpu"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def maze_run(tmp_path_factory) -> RunDir:
    """6 random episodes of a 2x2-room Maze (some reach the far corner) and a tiny world model trained on them."""
    run = RunDir(tmp_path_factory.mktemp("maze") / "run")
    collect(run, CollectConfig(env="worldmodels.envs.maze:Maze", episodes=6, max_steps=30, workers=1,
                               env_kwargs={"cells": 2}), progress=False)
    common = {"epochs": 1, "batch_size": 4, "device": "cpu"}
    train_vision(run, VisionTrainConfig(z_dim=8, **common), progress=False)
    train_memory(run, MemoryTrainConfig(hidden_size=16, seq_len=8, **common), progress=False)
    return run


@pytest.mark.parametrize("cells", [2, 3, 7])
def test_maze_tasks_read_the_agents_room_off_the_frames(cells):
    env = Maze(cells=cells, loops=2, max_steps=400)
    recorder, truth = EpisodeRecorder(), GroundTruth(env)
    drive(env, RandomAgent(ActionSpec("discrete", 4)), seed=cells, callbacks=[recorder, truth])
    episode = recorder.episode()
    np.testing.assert_array_equal(agent_cells(episode["obs"]), truth.positions)  # info["position"] per frame
    rewards = reach_far_corner(episode)
    assert rewards.shape == episode["reward"].shape and rewards.dtype == np.float32
    np.testing.assert_array_equal(rewards, episode["reward"])  # the far corner is the Maze's own goal
    back_home = reach_room(0, 0)(episode)  # 1 on each step that ends in the start room
    np.testing.assert_array_equal(back_home, [float(p == (1, 1)) for p in truth.positions[1:]])
    assert back_home.sum() > 0


def test_relabel_gives_the_task_reward_of_every_stored_step(maze_run):
    rewards = relabel(maze_run, reach_far_corner, TASK)
    assert list(rewards) == list(list_episodes(maze_run.episodes))
    for i, path in list_episodes(maze_run.episodes).items():
        stored = load_episode(path)["reward"]
        assert rewards[i].shape == stored.shape
        np.testing.assert_array_equal(rewards[i], stored)
    assert sum(r.sum() for r in rewards.values()) > 0  # some random episodes reached the corner
    flipped = relabel(maze_run, lambda e: 1.0 - reach_far_corner(e), "tests:not_the_corner")
    assert all(np.array_equal(flipped[i], 1.0 - rewards[i]) for i in rewards)


def test_reward_head_retraining_changes_only_the_head_and_lowers_its_loss(maze_run):
    memory = load_memory(maze_run)
    before = {k: v.clone() for k, v in memory.state_dict().items()}
    rewards = relabel(maze_run, reach_far_corner, TASK)
    episodes = load_latents(maze_run, list(rewards))
    for i, episode in zip(rewards, episodes):
        episode["reward"] = rewards[i]
    losses = fit_reward_head(memory, episodes, steps=150, lr=1e-2, batch_size=4, seq_len=8, seed=0, device="cpu")
    assert losses["loss_after"] < 0.8 * losses["loss_before"]
    changed = {k for k, v in memory.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"reward_head.weight", "reward_head.bias"}
    rssm = RSSM(RSSMConfig(z_dim=8, action_dim=4, hidden_size=16))
    assert reward_head(rssm) is rssm.heads.reward  # the heads of RSSM, SRNN and SVG


def rewarded_predictions(memory, episodes) -> tuple[float, float]:
    """The reward head's mean prediction, teacher-forced on latent means, at rewarded steps and elsewhere."""
    at, rest = [], []
    with torch.no_grad():
        for e in episodes:
            state, z, action = memory.initial_state(1), torch.from_numpy(e["mu"]), torch.from_numpy(e["action"])
            for t in range(len(action)):
                state = memory.step(state, z[t:t + 1], action[t:t + 1])
                (at if e["reward"][t] else rest).append(float(memory.predict(state).reward))
    return float(np.mean(at)), float(np.mean(rest))


def test_a_rare_task_reward_is_learnt_from_windows_that_hold_it(maze_run):
    """A goal on 1% of the stored steps: uniform windows teach the head to predict ~0 everywhere; drawing half of
    each batch around rewarded steps (``wm task``'s default) makes it predict the reward where it is given."""
    rewards = relabel(maze_run, reach_far_corner, TASK)
    episodes = load_latents(maze_run, list(rewards))
    for i, episode in zip(rewards, episodes):
        episode["reward"] = rewards[i]
    assert 0 < sum(int(r.sum()) for r in rewards.values()) <= 0.05 * sum(len(r) for r in rewards.values())
    predictions = {}
    for fraction in (0.0, 0.5):
        memory = load_memory(maze_run)
        fit_reward_head(memory, episodes, steps=300, lr=1e-2, batch_size=8, seq_len=8, seed=0, device="cpu",
                        rewarded_fraction=fraction)
        predictions[fraction] = rewarded_predictions(memory, episodes)
    (uniform_at, _), (focused_at, focused_rest) = predictions[0.0], predictions[0.5]
    assert focused_at > uniform_at + 0.15, predictions  # about 0.31 against 0.03
    assert focused_at > focused_rest + 0.15, predictions  # the head tells the goal from the rest (0.04)


def test_wm_task_solves_from_stored_data_only_and_resumes(maze_run, capsys):
    episodes_before = list_episodes(maze_run.episodes)
    memory_before = weights_id(maze_run.memory)
    assert main(["task", TASK, "--run", str(maze_run.root), *TINY]) == 0
    out = capsys.readouterr().out
    assert "task reach_far_corner: success" in out
    task = maze_run.root / "tasks" / "reach_far_corner"
    result = json.loads((task / "eval" / "task.json").read_text())
    assert len(result["returns"]) == len(result["successes"]) == len(result["env_returns"]) == 2
    assert result["successes"] == [r > 0 for r in result["returns"]]
    assert result["returns"] == result["env_returns"]  # this task is the Maze's own reward
    assert result["real_env_steps_used"] == 0 and list_episodes(maze_run.episodes) == episodes_before
    relabelled = json.loads((task / "task.json").read_text())
    assert relabelled["reward"] == TASK and relabelled["successes"] > 0
    # the run's own memory model is untouched; the task's differs from it in the reward head only
    assert weights_id(maze_run.memory) == memory_before
    ours, theirs = load_memory(maze_run).state_dict(), torch.load(task / "memory" / "best.pt", weights_only=True)
    assert {k for k in ours if not torch.equal(ours[k], theirs[k])} == {"reward_head.weight", "reward_head.bias"}
    assert (task / "controller" / "params.npz").exists() and (task / "tb" / "reward_head").is_dir()
    stamps = {p: p.stat().st_mtime_ns for p in task.rglob("*") if p.is_file()}
    assert main(["task", TASK, "--run", str(maze_run.root), *TINY]) == 0  # resumed: every step already done
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def one_reward_too_many(episode):
    return np.zeros(len(episode["obs"]))


@pytest.mark.parametrize("spec,message", [
    ("worldmodels.envs.maze", "expected 'package.module:callable'"),
    ("no_such_module_zs:f", "cannot import module 'no_such_module_zs'"),
    ("worldmodels.envs.maze:no_such_task", "module 'worldmodels.envs.maze' has no attribute 'no_such_task'"),
    ("worldmodels.envs.maze:SIZE", "'SIZE' is not callable"),
    ("tests.test_zeroshot:one_reward_too_many", "steps; expected ("),
])
def test_bad_task_rewards_are_one_line_errors(catch_run_copy, spec, message, capsys):
    assert main(["task", spec, "--run", str(catch_run_copy.root), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("wm task: error: ") and "task reward" in err and message in err and "\n" not in err
    assert not (catch_run_copy.root / "tasks").exists()
