"""``wm collect``: the episode schema, determinism, resume after a kill, corrupt files, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from tests.conftest import CATCH_EPISODES
from worldmodels.cli import main
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.envs.spaces import ActionSpec
from worldmodels.runs.episodes import EPISODE_KEYS, episode_path, list_episodes, load_episode
from worldmodels.runs.rundir import RunDir

CATCH = "worldmodels.envs.catch:Catch"
WM = [sys.executable, "-m", "worldmodels.cli"]  # the `wm` command


class MultiDiscreteEnv(gym.Env):
    """An env whose action space ``wm collect`` does not support."""

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.MultiDiscrete([2, 2])


def wm_collect(capsys, *args: str) -> tuple[int, str, str]:
    """``wm collect ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main(["collect", *args])
    out, err = capsys.readouterr()
    return code, out, err


def load_run(run: RunDir) -> list[dict[str, np.ndarray]]:
    """Every episode of ``run``, validated against its action space."""
    return [load_episode(path, run.action_spec()) for path in list_episodes(run.episodes).values()]


def assert_same_episodes(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in EPISODE_KEYS:
            assert x[key].dtype == y[key].dtype
            np.testing.assert_array_equal(x[key], y[key])


# ---------------------------------------------------------------------------------------------- schema


def test_discrete_episodes_schema(catch_run):
    assert catch_run.action_spec() == ActionSpec("discrete", 3)
    episodes = load_run(catch_run)
    assert len(episodes) == CATCH_EPISODES
    for e in episodes:
        T = len(e["reward"])
        assert T == 15  # one ball falls 15 rows
        assert e["obs"].dtype == np.uint8 and e["obs"].shape == (T + 1, 64, 64, 3)
        assert e["action"].dtype == np.int64 and e["action"].shape == (T,)
        assert set(e["action"]) <= {0, 1, 2}
        assert e["reward"].dtype == np.float32 and e["reward"].shape == (T,)
        assert e["terminated"].dtype == bool and e["truncated"].dtype == bool
        assert e["terminated"].tolist() == [False] * (T - 1) + [True] and not e["truncated"].any()
    # episode i is seeded from (seed, i): different episodes, different data
    assert not np.array_equal(episodes[0]["obs"], episodes[1]["obs"])


def test_box_episodes_schema(tmp_path):
    run = RunDir(tmp_path / "run")
    collect(run, CollectConfig(env="worldmodels.envs.point:PointMass", episodes=2, max_steps=10, workers=1), progress=False)
    assert run.action_spec() == ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0))
    for e in load_run(run):
        assert e["obs"].dtype == np.uint8 and e["obs"].shape == (11, 64, 64, 3)
        assert e["action"].dtype == np.float32 and e["action"].shape == (10, 2)
        assert np.all(np.abs(e["action"]) <= 1)
        assert e["reward"].dtype == np.float32 and np.all(e["reward"] < 0)  # minus the distance to the goal
        assert e["truncated"].tolist() == [False] * 9 + [True] and not e["terminated"].any()


def test_carracing_episodes(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    code, out, _ = wm_collect(capsys, "CarRacing-v3", "--run", str(run.root), "--episodes", "1",
                              "--max-steps", "20")
    assert code == 0 and "1 episodes (1 new), 21 frames" in out
    env = run.read_meta()["env"]
    assert env["pixels"] == {"size": 64, "crop": [0, 84, 0, 96], "frame_skip": 1}
    assert env["action_space"]["kind"] == "box" and env["action_space"]["dim"] == 3
    (e,) = load_run(run)
    assert e["obs"].shape == (21, 64, 64, 3) and e["action"].shape == (20, 3) and e["truncated"][-1]


# ---------------------------------------------------------------------------------------------- determinism, resume


def test_same_data_whatever_the_worker_count(tmp_path, capsys):
    runs = [RunDir(tmp_path / f"w{workers}") for workers in (1, 2)]
    for run, workers in zip(runs, (1, 2)):
        args = [CATCH, "--run", str(run.root), "--episodes", "4", "--env-kwargs", '{"balls": 2}', "--seed", "7"]
        assert wm_collect(capsys, *args, "--workers", str(workers))[0] == 0
    assert_same_episodes(load_run(runs[0]), load_run(runs[1]))


def test_complete_run_is_left_alone_and_can_grow(catch_run, catch_run_copy, capsys):
    run = catch_run_copy
    args = [CATCH, "--run", str(run.root), "--env-kwargs", '{"balls": 1}', "--workers", "1"]
    before = {p.name: p.stat().st_mtime_ns for p in run.episodes.iterdir()}
    code, out, _ = wm_collect(capsys, *args, "--episodes", str(CATCH_EPISODES))
    assert code == 0 and f"{CATCH_EPISODES} episodes (0 new)" in out
    assert {p.name: p.stat().st_mtime_ns for p in run.episodes.iterdir()} == before

    code, out, _ = wm_collect(capsys, *args, "--episodes", str(CATCH_EPISODES + 2))
    assert code == 0 and f"{CATCH_EPISODES + 2} episodes (2 new)" in out
    assert_same_episodes(load_run(run)[:CATCH_EPISODES], load_run(catch_run))


def test_resume_after_kill(tmp_path):
    run = RunDir(tmp_path / "run")
    command = [*WM, "collect", CATCH, "--run", str(run.root), "--episodes", "20", "--workers", "1",
               "--env-kwargs", '{"balls": 60}']
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list_episodes(run.episodes)) < 3:
        assert process.poll() is None, "the collection ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.kill()  # SIGKILL: no cleanup of any kind
    process.wait()
    done = len(list_episodes(run.episodes))
    assert 3 <= done < 20
    # what a kill in the middle of a write leaves behind: a hidden temporary file
    (run.episodes / f".{episode_path(run.episodes, 19).name}.tmp-99999").write_bytes(b"half an episode")

    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert f"20 episodes ({20 - done} new)" in result.stdout
    assert len(load_run(run)) == 20  # each one complete and of the schema
    assert sorted(os.listdir(run.episodes)) == [f"episode_{i:06d}.npz" for i in range(20)]


def test_corrupt_episodes_are_reported_and_recollected(catch_run, catch_run_copy, capsys):
    run = catch_run_copy
    truncated, garbage = episode_path(run.episodes, 1), episode_path(run.episodes, 2)
    truncated.write_bytes(truncated.read_bytes()[:500])
    garbage.write_bytes(b"not an npz file" * 10)

    code, out, err = wm_collect(capsys, CATCH, "--run", str(run.root), "--episodes", str(CATCH_EPISODES),
                                "--env-kwargs", '{"balls": 1}', "--workers", "1")
    assert code == 0 and f"{CATCH_EPISODES} episodes (2 new)" in out
    reports = [line for line in (out + err).splitlines() if "corrupt episode" in line]
    assert len(reports) == 2 and truncated.name in "".join(reports) and garbage.name in "".join(reports)
    assert_same_episodes(load_run(run), load_run(catch_run))  # seeds are per index: the same data again


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("args, message", [
    (["NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
    (["worldmodels.envs.catch:NoSuchEnv"], "has no attribute 'NoSuchEnv'"),
    (["no_such_module:Env"], "cannot import module 'no_such_module'"),
    ([CATCH, "--env-kwargs", "{balls: 3"], "--env-kwargs: not valid JSON"),
    ([CATCH, "--env-kwargs", '{"bals": 3}'], "cannot create"),
    (["tests.test_collect:MultiDiscreteEnv"], "unsupported action space MultiDiscrete"),
    (["CartPole-v1", "--env-kwargs", '{"render_mode": null}'], "not an RGB image"),
    ([CATCH, "--episodes", "0"], "--episodes must be at least 1"),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, capsys, args, message):
    code, out, err = wm_collect(capsys, *args, "--run", str(tmp_path / "run"))
    assert code != 0
    assert err.startswith("wm collect: error: ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing written, not even the directory


def test_a_different_env_on_an_existing_run_is_refused(catch_run_copy, capsys):
    run = catch_run_copy
    before = {p.name: p.read_bytes() for p in run.episodes.iterdir()}
    for args in (["worldmodels.envs.point:PointMass"], [CATCH, "--env-kwargs", '{"balls": 2}'], [CATCH, "--frame-skip", "2"]):
        code, _, err = wm_collect(capsys, *args, "--run", str(run.root), "--episodes", "8")
        assert code != 0 and err.startswith("wm collect: error: ") and "different env" in err
        assert len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in run.episodes.iterdir()} == before  # nothing lost


def test_the_real_command_exits_cleanly_on_user_errors(tmp_path):
    result = subprocess.run([*WM, "collect", "NoSuchEnv-v0", "--run", str(tmp_path / "run")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("wm collect: error: unknown environment") and "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------- help


def test_help_lists_stages_and_flags():
    top = subprocess.run([*WM, "--help"], capture_output=True, text=True, check=True).stdout
    assert "collect" in top and "train" in top
    text = subprocess.run([*WM, "collect", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--run", "--episodes", "--max-steps", "--workers", "--agent", "--seed", "--env-kwargs",
                 "--frame-skip", "--crop"):
        assert flag in text
