"""Visual foresight: goal costs, MPC toward a goal image, ``wm foresight`` end to end, clear errors.

Planning quality uses the learned memory model and ``DotVision`` of ``test_cem_agent`` (see there).
"""

from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests import test_cem_agent
from tests.test_cem_agent import BOX2, POINT, DotVision, planner_config
from worldmodels.cli import build_parser, main
from worldmodels.core.errors import UserError
from worldmodels.envs.make import make_env
from worldmodels.envs.point import PointMass
from worldmodels.evaluation.video import CAPTION_HEIGHT
from worldmodels.planning.foresight import ForesightConfig, GoalCost, predicted_latents, visual_foresight
from worldmodels.runs.rundir import RunDir

PLANNER = planner_config(horizon=6, candidates=100, iterations=3, elites=10)
point_models = test_cem_agent.point_models  # session fixtures, shared with the CEM agent tests
tiny_point_run = test_cem_agent.tiny_point_run


def foresight_cli(*argv: str) -> None:
    """``wm foresight ARGV``, letting a ``UserError`` through (``main`` would turn it into exit code 2)."""
    args = build_parser().parse_args(["foresight", *argv])
    args.func(args)


def test_goal_costs_rank_latents() -> None:
    vision = DotVision()
    goal = PointMass.draw([0.7, 0.3])
    near, far = torch.tensor([0.68, 0.31]), torch.tensor([0.2, 0.8])
    latents = torch.stack([torch.stack([far, near]), torch.stack([near, far])])  # [2, H=2, 2]
    final = GoalCost(vision, goal, "latent", "final")(latents)
    assert final[0] < 0.01 < 0.4 < final[1], "final: only the last step counts"
    summed = GoalCost(vision, goal, "latent", "sum")(latents)
    assert torch.allclose(summed[0], summed[1]) and summed[0] > final[0]
    pixel = GoalCost(vision, goal, "pixel", "final")(latents)
    assert pixel[0] < 0.2 * pixel[1]
    with pytest.raises(UserError, match="cost must be"):
        GoalCost(vision, goal, "l2")


def test_predicted_latents_follow_the_model(point_models, device) -> None:
    memory = copy.deepcopy(point_models["mdn"]).to(device)
    state, z = memory.initial_state(1), torch.tensor([[0.3, 0.3]], device=device)
    with torch.no_grad():
        right = predicted_latents(memory, state, z, torch.tensor([1.0, 0.0], device=device).expand(1, 5, 2))[0]
    assert right.shape == (5, 2) and right.device.type == device.type
    dx, dy = (right[-1] - z[0]).cpu()  # truly (0.4, 0): five steps of 0.08 to the right
    assert dx > 0.15 and abs(dy) < dx / 2, right


def test_foresight_gets_closer_than_random(point_models) -> None:
    vision, memory = point_models["vision"], point_models["mdn"]
    env = make_env(POINT, max_steps=50)
    planned, random = [], []
    rng = np.random.default_rng(0)
    for i in range(3):
        start, goal = rng.uniform(0.15, 0.85, (2, 2))
        options = {"position": start.tolist(), "goal": goal.tolist()}
        config = ForesightConfig(max_steps=12, seed=i, reset_options=options, video=i == 0)
        r = visual_foresight(vision, memory, BOX2, env, PointMass.draw(goal), PLANNER, config)
        planned.append(r["final_distance"])
        env.reset(seed=i, options=options)
        for _ in range(12):
            env.step(rng.uniform(-1, 1, 2))
        random.append(env.unwrapped.distance())
        if i == 0:
            assert r["frames"].shape == (13, 64, 64 * (PLANNER.horizon + 2), 3)
            assert r["final_latent_distance"] < r["initial_latent_distance"]
            assert len(r["latent_distances"]) == len(r["captions"]) == 13
            assert r["captions"][12] == (f"step 12  latent distance to goal {r['final_latent_distance']:.3f}  "
                                         f"distance {r['final_distance']:.3f}")
    assert np.mean(planned) < 0.5 * np.mean(random), (planned, random)
    assert max(planned) < 0.15, planned


def test_wm_foresight_end_to_end(tiny_point_run, tmp_path, capsys) -> None:
    goal = tmp_path / "goal.png"
    cv2.imwrite(str(goal), cv2.cvtColor(PointMass.draw([0.6, 0.4]), cv2.COLOR_RGB2BGR))
    video = RunDir(tiny_point_run).eval / "foresight.mp4"
    planner = ["--horizon", "3", "--candidates", "20", "--iterations", "2", "--elites", "4"]
    foresight_cli("--run", str(tiny_point_run), "--goal", str(goal), *planner, "--max-steps", "3",
                  "--reset-options", '{"position": [0.3, 0.3], "goal": [0.6, 0.4]}', "--device", "cpu")
    out = capsys.readouterr().out
    assert "latent distance" in out and "ground-truth distance 0.316 ->" in out
    assert video.stat().st_size > 0
    capture = cv2.VideoCapture(str(video))
    assert capture.get(cv2.CAP_PROP_FRAME_WIDTH) == 2 * 64 * 5 and capture.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    assert capture.get(cv2.CAP_PROP_FRAME_HEIGHT) == 2 * 64 + 2 * CAPTION_HEIGHT  # a header above, a caption below
    summary = json.loads((RunDir(tiny_point_run).eval / "foresight.json").read_text())
    assert summary["steps"] == 3 and summary["initial_distance"] == pytest.approx(0.316, abs=1e-3)
    board = EventAccumulator(str(RunDir(tiny_point_run).tb / "foresight")).Reload()
    assert [e.step for e in board.Scalars("foresight/latent_distance")] == [0, 1, 2, 3]
    assert board.Scalars("foresight/distance")[0].value == pytest.approx(0.316, abs=1e-3)
    assert "|cost|latent|" in board.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    foresight_cli("--run", str(tiny_point_run), "--goal-episode", "1", "--goal-step", "10", *planner,
                  "--cost", "pixel", "--cost-on", "sum", "--max-steps", "2", "--no-video", "--device", "cpu")
    assert "2 steps" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--goal", "missing.png"], "goal image .*missing.png not found"),
        (["--goal", "{small}"], r"small.png is 48x32; give the env's render \(64x64, or scaled\), or a 64x64 frame"),
        (["--goal", "{text}"], "not an image file"),
        (["--goal-episode", "9", "--goal-step", "0"], r"no episode 9 .*episodes: 0\.\.3"),
        (["--goal-episode", "0", "--goal-step", "11"], r"frames 0\.\.10; --goal-step 11 is out of range"),
        (["--goal-episode", "0"], "needs --goal-step"),
    ],
)
def test_wm_foresight_user_errors(tiny_point_run, tmp_path, argv, message) -> None:
    small, text = tmp_path / "small.png", tmp_path / "text.png"
    cv2.imwrite(str(small), np.zeros((32, 48, 3), np.uint8))  # neither the render's shape nor a frame's
    text.write_text("not a png")
    argv = [a.replace("{small}", str(small)).replace("{text}", str(text)) for a in argv]
    with pytest.raises(UserError, match=message):
        foresight_cli("--run", str(tiny_point_run), *argv)


@pytest.mark.parametrize(("options", "message"), [("{bad", "not valid JSON"), ("[1]", "must be a JSON object")])
def test_wm_foresight_bad_reset_options_is_a_one_line_error(tiny_point_run, capsys, options, message) -> None:
    code = main(["foresight", "--run", str(tiny_point_run), "--goal-episode", "0", "--goal-step", "1",
                 "--reset-options", options])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--reset-options" in err[0] and message in err[0], err


def test_wm_foresight_needs_a_run(tmp_path) -> None:
    with pytest.raises(UserError, match="not a run directory"):
        foresight_cli("--run", str(tmp_path / "nothing"), "--goal-episode", "0", "--goal-step", "0")
