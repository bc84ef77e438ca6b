"""SB3 in the dream: sb3-contrib algorithms by name, --policy-kwargs / --algo-kwargs, episode returns
logged through VecMonitor, and a tqdm progress bar without rich."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.test_dream import build_trained_catch, copy_run, wm_error
from worldmodels.cli import main
from worldmodels.runs.artifacts import algo_class, load_sb3


@pytest.fixture
def run(tmp_path_factory, tmp_path):
    """A private copy of the session's tiny trained Catch run."""
    return copy_run(build_trained_catch(tmp_path_factory), tmp_path)


def tb_tags(root) -> set[str]:
    """Every scalar tag of the TensorBoard event files under ``root``."""
    tags = set()
    for events in root.rglob("events.out.tfevents.*"):
        tags |= set(EventAccumulator(str(events)).Reload().Tags()["scalars"])
    return tags


def test_contrib_algorithm_with_json_kwargs_logs_dream_returns(run, capsys):
    pytest.importorskip("sb3_contrib", reason="pip install 'worldmodels[contrib]'")
    assert algo_class("RecurrentPPO") is algo_class("recurrentppo")
    assert main(["dream", "--run", str(run.root), "--algo", "trpo", "--timesteps", "64", "--envs", "4",
                 "--dream-steps", "5", "--policy-kwargs", '{"net_arch": [8]}', "--algo-kwargs", '{"gamma": 0.9}']) == 0
    model = load_sb3(run, "trpo")
    assert type(model).__name__ == "TRPO" and model.gamma == 0.9
    assert model.policy_kwargs["net_arch"] == [8]
    assert "dream trpo: 100%" in capsys.readouterr().err  # tqdm, with or without rich
    assert "rollout/ep_rew_mean" in tb_tags(run.tb)  # dreams end within 5 steps; VecMonitor counts them


def test_bad_algo_kwargs_are_a_one_line_error(run, capsys):
    line = wm_error(capsys, ["dream", "--run", str(run.root), "--algo", "ppo", "--timesteps", "8", "--envs", "2",
                             "--algo-kwargs", '{"no_such_setting": 1}'])
    assert line.startswith("wm dream: error: PPO:") and "no_such_setting" in line and "--algo-kwargs" in line


def test_sb3_models_are_saved_as_data_and_resume(run, capsys):
    args = ["dream", "--run", str(run.root), "--algo", "ppo", "--envs", "2", "--dream-steps", "5"]
    assert main([*args, "--timesteps", "32"]) == 0
    assert sorted(p.name for p in run.controller.glob("sb3_*")) == ["sb3_ppo.json", "sb3_ppo.pt"]  # no pickled .zip
    meta = json.loads((run.controller / "sb3_ppo.json").read_text())
    assert (meta["algo"], meta["policy"], meta["timesteps"]) == ("ppo", "MlpPolicy", 32)
    obs = np.zeros((3, *meta["observation_shape"]), np.float32)
    saved = load_sb3(run, "ppo")
    reloaded = load_sb3(run, None)  # rebuilt from the JSON: the same weights, the same actions
    assert np.array_equal(saved.predict(obs, deterministic=True)[0], reloaded.predict(obs, deterministic=True)[0])
    capsys.readouterr()
    assert main([*args, "--timesteps", "64"]) == 0
    assert "resuming PPO at 32 timesteps" in capsys.readouterr().out
    assert load_sb3(run, "ppo").num_timesteps == 64
    line = wm_error(capsys, [*args, "--timesteps", "96", "--algo-kwargs", '{"gamma": 0.5}'])
    assert "other gamma" in line and "--no-resume" in line
