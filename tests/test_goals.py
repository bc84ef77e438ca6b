"""Goal images at any size: the run's own pixel pipeline makes of them the frame collection makes of the
same state; ``wm goal-image`` writes an env state's render; clear errors for images that fit nothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests import test_cem_agent
from worldmodels.cli import build_parser
from worldmodels.core.errors import UserError
from worldmodels.envs.make import make_env
from worldmodels.envs.pixels import PixelConfig, process_frame
from worldmodels.envs.point import PointMass
from worldmodels.envs.reacher import Reacher2Link
from worldmodels.planning.goals import GoalImageConfig, goal_frame, load_goal, read_image, render_goal
from worldmodels.runs.rundir import RunDir

tiny_point_run = test_cem_agent.tiny_point_run
REACHER = "worldmodels.envs.reacher:Reacher2Link"
CARRACING_CROP = PixelConfig(crop=(0, 84, 0, 96))


def cli(*argv: str) -> None:
    args = build_parser().parse_args(list(argv))
    args.func(args)


def scaled(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` enlarged ``factor`` times, each pixel a block (a photo-sized copy of the same picture)."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


@pytest.mark.parametrize("size", [96, 150, 64, 40])
def test_a_render_at_the_envs_own_size_gives_the_collected_frame(size) -> None:
    env = make_env(REACHER, size=size)
    angles = [0.7, -2.0]
    collected, _ = env.reset(seed=0, options={"angles": angles})
    render = render_goal(REACHER, GoalImageConfig(env_kwargs={"size": size}, reset_options={"angles": angles}))
    assert render.shape == (size, size, 3)
    np.testing.assert_array_equal(goal_frame(render, PixelConfig(), (size, size), "goal"), collected)


def test_a_cropped_pipeline_crops_a_render_and_resizes_a_crop_at_any_scale() -> None:
    raw = (np.random.default_rng(0).uniform(0, 255, (96, 96, 3))).astype(np.uint8)
    collected = process_frame(raw, CARRACING_CROP)  # what collection stores: dashboard cut, 64x64
    for image in (raw, scaled(raw, 2), raw[:84], scaled(raw[:84], 3)):
        frame = goal_frame(image, CARRACING_CROP, (96, 96), "goal")
        assert np.abs(frame.astype(int) - collected).max() <= 1, image.shape  # rounding of the area average
    np.testing.assert_array_equal(goal_frame(collected, CARRACING_CROP, (96, 96), "goal"), collected)


@pytest.mark.parametrize("shape", [(96, 60, 3), (50, 96, 3)])
def test_an_image_with_no_matching_shape_is_refused(shape) -> None:
    with pytest.raises(UserError, match=rf"goal is {shape[1]}x{shape[0]}; give the env's render \(96x96, or scaled\), "
                                        r"or a crop of it to rows 0:84 and columns 0:96, or a 64x64 frame"):
        goal_frame(np.zeros(shape, np.uint8), CARRACING_CROP, (96, 96), "goal")
    with pytest.raises(UserError, match="not an RGB image"):
        goal_frame(np.zeros((96, 96), np.uint8), CARRACING_CROP, (96, 96), "goal")


def test_wm_goal_image_writes_a_render_that_wm_foresight_takes_at_any_scale(tiny_point_run, tmp_path, capsys) -> None:
    run = RunDir(tiny_point_run)
    out = tmp_path / "goal.png"
    cli("goal-image", "--run", str(run.root), "--reset-options", '{"position": [0.6, 0.4]}', "--out", str(out))
    assert f"64x64 frame of worldmodels.envs.point:PointMass -> {out}" in capsys.readouterr().out
    np.testing.assert_array_equal(read_image(out), PointMass.draw([0.6, 0.4]))
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.cvtColor(scaled(PointMass.draw([0.6, 0.4]), 3), cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(load_goal(run, big), PointMass.draw([0.6, 0.4]))
    arm = tmp_path / "arm.png"
    cli("goal-image", REACHER, "--env-kwargs", '{"size": 120}', "--seed", "2", "--steps", "5", "--out", str(arm))
    env = Reacher2Link(size=120)
    env.reset(seed=2)
    env.action_space.seed(2)
    for _ in range(5):
        env.step(env.action_space.sample())
    np.testing.assert_array_equal(read_image(arm), env.render())


@pytest.mark.parametrize(("argv", "message"), [
    (["--out", "x.png"], "give ENV or --run RUN"),
    ([REACHER, "--run", "r", "--out", "x.png"], "give ENV or --run RUN"),
    (["--run", "{run}", "--env-kwargs", "{}", "--out", "x.png"], "--env-kwargs does not apply with --run"),
    ([REACHER, "--steps", "-1", "--out", "x.png"], "--steps must be at least 0"),
    ([REACHER, "--out", "{tmp}/goal.txt"], "use an image suffix"),
])
def test_wm_goal_image_errors(tiny_point_run, tmp_path, argv, message) -> None:
    argv = [a.replace("{run}", str(tiny_point_run)).replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(UserError, match=message):
        cli("goal-image", *argv)
