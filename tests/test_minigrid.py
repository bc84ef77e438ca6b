"""MiniGrid in pixels (``worldmodels.envs.minigrid_pixels``, the minigrid extra): full-grid RGB frames through
``make_env``, three actions, MiniGrid's sparse goal reward, the ``reached_goal`` task and a tiny zero-shot run."""

from __future__ import annotations

import json
import sys

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("minigrid", reason="minigrid not installed: pip install 'worldmodels[minigrid]'")

from worldmodels.cli import main  # noqa: E402
from worldmodels.core.errors import UserError  # noqa: E402
from worldmodels.curiosity.task import relabel  # noqa: E402
from worldmodels.envs.make import make_env  # noqa: E402
from worldmodels.envs.minigrid_pixels import MiniGridPixels, reached_goal  # noqa: E402
from worldmodels.runs.episodes import list_episodes, load_episode  # noqa: E402
from worldmodels.runs.rundir import RunDir  # noqa: E402
from worldmodels.training.memory import MemoryTrainConfig, train_memory  # noqa: E402
from worldmodels.training.vision import VisionTrainConfig, train_vision  # noqa: E402

SPEC = "worldmodels.envs.minigrid_pixels:MiniGridPixels"
TASK = "worldmodels.envs.minigrid_pixels:reached_goal"
SMALL = "MiniGrid-Empty-5x5-v0"
TO_GOAL = [2, 2, 1, 2, 2]  # Empty-5x5: from (1, 1) facing east, forward twice, turn right, forward twice -> (3, 3)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> RunDir:
    """8 random Empty-5x5 episodes of <= 30 steps collected by ``wm collect``, and a tiny world model on them."""
    run = RunDir(tmp_path_factory.mktemp("minigrid") / "run")
    assert main(["collect", SPEC, "--run", str(run.root), "--episodes", "8", "--max-steps", "30", "--workers", "1",
                 "--env-kwargs", json.dumps({"env_id": SMALL})]) == 0
    common = {"epochs": 1, "batch_size": 4, "device": "cpu"}
    train_vision(run, VisionTrainConfig(z_dim=8, **common), progress=False)
    train_memory(run, MemoryTrainConfig(hidden_size=16, seq_len=8, **common), progress=False)
    return run


@pytest.mark.parametrize("env_id", [SMALL, "MiniGrid-Empty-8x8-v0", "MiniGrid-FourRooms-v0"])
def test_frames_are_the_full_grid_in_64x64_pixels_with_three_actions(env_id):
    env = make_env(SPEC, env_id=env_id)
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and env.observation_space.shape == (64, 64, 3)
    assert env.action_space == gym.spaces.Discrete(3)
    raw = info["state"]  # the full-grid RGB frame before resizing, not MiniGrid's 7x7 symbolic view
    grid = env.unwrapped.grid
    assert raw.shape == (grid.height * env.unwrapped.tile_size, grid.width * env.unwrapped.tile_size, 3)
    assert min(raw.shape[:2]) >= 64
    next_obs, *_ = env.step(1)  # turning changes the agent's drawing
    assert not np.array_equal(obs, next_obs)
    env.close()


def test_a_raw_minigrid_id_learns_from_its_rendered_grid_not_its_symbolic_view():
    env = make_env(SMALL)  # the id alone: importing minigrid registers it; frames come from env.render()
    obs, info = env.reset(seed=0)
    assert info["state"]["image"].shape == (7, 7, 3)  # MiniGrid's symbolic view, too small to be a frame
    assert obs.shape == (64, 64, 3) and obs.std() > 10  # the rendered grid: walls, floor, agent, goal
    assert env.action_space == gym.spaces.Discrete(7)
    env.close()


def test_reaching_the_goal_pays_minigrids_reward_and_terminates():
    env = make_env(SPEC, env_id=SMALL)
    env.reset(seed=0)
    steps = [env.step(a) for a in TO_GOAL]
    rewards = [s[1] for s in steps]
    assert rewards[:-1] == [0.0] * (len(TO_GOAL) - 1) and rewards[-1] > 0
    assert [s[2] for s in steps] == [False] * (len(TO_GOAL) - 1) + [True]
    assert not any(s[3] for s in steps)
    with pytest.raises(ValueError, match="forward"):
        env.unwrapped.step(3)  # MiniGrid's pickup: not one of the three actions
    env.close()


def test_reached_goal_marks_the_steps_with_env_reward(grid_run):
    episode = {"reward": np.array([0.0, 0.0, 0.955, 0.0], np.float32)}
    rewards = reached_goal(episode)
    assert rewards.dtype == np.float32
    np.testing.assert_array_equal(rewards, [0, 0, 1, 0])
    relabelled = relabel(grid_run, reached_goal, TASK)
    assert list(relabelled) == list(list_episodes(grid_run.episodes))
    for i, path in list_episodes(grid_run.episodes).items():
        episode = load_episode(path)
        assert episode["obs"].shape[1:] == (64, 64, 3)
        np.testing.assert_array_equal(relabelled[i], (episode["reward"] > 0).astype(np.float32))
        assert relabelled[i].sum() == float(episode["terminated"][-1])  # the goal ends the episode


def test_wm_task_zero_shot_runs_on_collected_minigrid_data(grid_run, capsys):
    tiny = ["--reward-steps", "20", "--seq-len", "8", "--batch-size", "4", "--generations", "2", "--population", "4",
            "--rollouts", "2", "--dream-steps", "8", "--episodes", "2", "--max-steps", "20", "--device", "cpu"]
    assert main(["task", TASK, "--run", str(grid_run.root), *tiny]) == 0
    assert "task reached_goal: success" in capsys.readouterr().out
    result = json.loads((grid_run.root / "tasks" / "reached_goal" / "eval" / "task.json").read_text())
    assert len(result["returns"]) == 2 and result["real_env_steps_used"] == 0
    assert result["successes"] == [e > 0 for e in result["env_returns"]]  # the task is the env's own goal


def test_missing_minigrid_is_a_one_line_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "minigrid.wrappers", None)  # import fails as when not installed
    with pytest.raises(UserError, match=r"pip install 'worldmodels\[minigrid\]'"):
        MiniGridPixels(SMALL)
