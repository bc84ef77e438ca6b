"""TensorBoard: every stage of a tiny Catch run writes its own named run under ``RUN/tb`` with CleanRL's
tags and its settings as text, read back as TensorBoard reads them."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.test_dream import TINY_CMA, build_trained_catch, copy_run
from worldmodels.cli import main
from worldmodels.runs.tensorboard import config_table, frame_grid


def events(directory) -> EventAccumulator:
    """What TensorBoard shows of one run: every event file of ``directory``."""
    assert list(directory.glob("events.out.tfevents.*")), f"no event file in {directory}"
    return EventAccumulator(str(directory)).Reload()


def config_text(run: EventAccumulator) -> str:
    return run.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The session's tiny trained Catch run (collect, train, a CMA-ES generation), copied, then a CMA-ES run with
    real-env checks, 64 PPO steps in the dream and a controller evaluation on top."""
    run = copy_run(build_trained_catch(tmp_path_factory), tmp_path_factory.mktemp("tb"))
    root = str(run.root)
    for argv in (["dream", "--no-resume", *TINY_CMA[:-2], "--generations", "2", "--real-every", "1",
                  "--real-episodes", "2", "--workers", "1"],
                 ["dream", "--algo", "ppo", "--timesteps", "64", "--envs", "2", "--dream-steps", "5"],
                 ["eval", "--agent", "controller", "--episodes", "3", "--workers", "1"]):
        assert main([*argv, "--run", root]) == 0
    return run


def test_one_named_run_per_stage(run):
    assert sorted(p.name for p in run.tb.iterdir()) == [
        "collect", "dream", "dream_sb3_ppo", "eval_controller", "memory", "vision"]
    assert not list(run.tb.glob("events.*"))  # nothing left in the unnamed root run


def test_training_logs_losses_and_charts(run):
    for stage, unit in (("vision", "frames"), ("memory", "steps")):
        scalars = set(events(run.tb / stage).Tags()["scalars"])
        assert {"losses/train_loss", "losses/val_loss", f"charts/{unit}_per_s", "charts/learning_rate"} <= scalars
    assert "|seq_len|8|" in config_text(events(run.tb / "memory"))
    assert events(run.tb / "vision").Tags()["images"] == ["vision/real_vs_reconstruction"]


def test_episodic_returns_are_plotted_against_real_env_steps(run):
    collect = events(run.tb / "collect")
    lengths = [e.value for e in collect.Scalars("charts/episodic_length")]
    assert len(lengths) == 4 and sorted(e.step for e in collect.Scalars("charts/episodic_return")) == [
        sum(lengths[:i + 1]) for i in range(4)]  # x: the run's real env steps after each episode
    assert "|env|worldmodels.envs.catch:Catch|" in config_text(collect)

    evaluation = events(run.tb / "eval_controller")
    returns = evaluation.Scalars("charts/episodic_return")
    lengths = [e.value for e in evaluation.Scalars("charts/episodic_length")]
    assert [e.step for e in returns] == [sum(lengths[:i + 1]) for i in range(3)]
    assert "|agent|controller|" in config_text(evaluation)


def test_dream_logs_fitness_sigma_real_checks_and_a_grid_of_dreams(run):
    dream = events(run.tb / "dream")
    scalars = set(dream.Tags()["scalars"])
    assert {"dream/fitness_best", "dream/fitness_mean", "charts/sigma", "charts/dream_steps_per_s",
            "dream/real_return", "dream/dream_return", "charts/episodic_return"} <= scalars
    checks = dream.Scalars("charts/episodic_return")
    assert len(checks) == 4 and checks[-1].step > checks[1].step > 0  # 2 checks x 2 episodes, steps accumulate
    grid = dream.Images("dream/controller_dreams")[-1]
    assert grid.height == 4 * 66 - 2 and grid.width < 16 * 66  # 4 dreams, one row each, not one long strip
    assert "|population|4|" in config_text(dream) and "|dream.max_steps|5|" in config_text(dream)

    sb3 = events(run.tb / "dream_sb3_ppo")
    assert "rollout/ep_rew_mean" in sb3.Tags()["scalars"] and "|algo|ppo|" in config_text(sb3)


def test_frame_grid_lays_out_rows_of_frames_on_white():
    frames = torch.zeros(2, 3, 3, 4, 5)  # 2 rows of 3 black frames of 4x5 pixels
    grid = frame_grid(frames, gap=1)
    assert grid.shape == (3, 2 * 5 - 1, 3 * 6 - 1)
    assert grid[:, 4].eq(1).all() and grid[:, :, 5].eq(1).all() and grid[:, :4, :5].eq(0).all()


def test_config_table_flattens_nested_settings():
    assert config_table({"seed": 0, "dream": {"temperature": 1.0}}) == (
        "|setting|value|\n|-|-|\n|seed|0|\n|dream.temperature|1.0|")
