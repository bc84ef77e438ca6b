"""SB3 in the dream: sb3-contrib algorithms by name, --policy-kwargs / --algo-kwargs, episode returns
logged through VecMonitor, and a tqdm progress bar without rich."""

from __future__ import annotations

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
