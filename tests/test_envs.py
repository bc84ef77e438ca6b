"""Environments: make_env, the pixel pipeline, and both action-space kinds."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch

from worldmodels.core.errors import UserError
from worldmodels.envs import ActionSpec, PixelConfig, make_env, parse_kwargs, process_frame
from worldmodels.envs.point import PointMass


def assert_pixel_obs(obs: np.ndarray) -> None:
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3) and obs.flags.c_contiguous


def test_carracing_is_box_and_crops_its_dashboard():
    env = make_env("CarRacing-v3")
    assert ActionSpec.from_space(env.action_space) == ActionSpec("box", 3, (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    obs, info = env.reset(seed=0)
    obs, *_, info = env.step(np.array([0.0, 1.0, 0.0], np.float32))
    raw = info["state"]  # the env's own 96x96 observation
    assert raw.shape == (96, 96, 3)
    assert_pixel_obs(obs)
    # the bottom 12 rows (speed, ABS, steering dashboard) are dropped before an INTER_AREA resize
    np.testing.assert_array_equal(obs, cv2.resize(raw[:84], (64, 64), interpolation=cv2.INTER_AREA))
    assert not np.array_equal(obs, cv2.resize(raw, (64, 64), interpolation=cv2.INTER_AREA))
    env.close()


def test_carracing_discrete_variant_through_kwargs():
    env = make_env("CarRacing-v3", **parse_kwargs('{"continuous": false}'))
    assert ActionSpec.from_space(env.action_space) == ActionSpec("discrete", 5)
    env.close()


def test_catch_is_discrete_and_terminates_after_its_balls():
    env = make_env("worldmodels.envs.catch:Catch", balls=2)
    spec = ActionSpec.from_space(env.action_space)
    assert spec == ActionSpec("discrete", 3)
    obs, _ = env.reset(seed=1)
    assert_pixel_obs(obs)
    rewards, terminated = [], False
    while not terminated:
        obs, reward, terminated, truncated, _ = env.step(0)
        assert not truncated
        rewards.append(reward)
    assert len(rewards) == 2 * 15  # a ball falls 15 rows
    assert set(rewards) <= {-1.0, 0.0, 1.0} and sum(r != 0 for r in rewards) == 2


def test_point_mass_frames_come_from_render():
    env = make_env("worldmodels.envs.point:PointMass")
    assert ActionSpec.from_space(env.action_space).kind == "box"
    obs, info = env.reset(seed=0, options={"position": [0.25, 0.5], "goal": [0.8, 0.8]})
    assert_pixel_obs(obs)
    assert info["state"].shape == (4,)  # the vector observation is kept in info
    np.testing.assert_array_equal(obs, PointMass.draw([0.25, 0.5]))


def test_inter_area_resize_averages_pixels():
    checker = (np.indices((128, 128)).sum(0) % 2 * 255).astype(np.uint8)
    frame = np.repeat(checker[..., None], 3, axis=2)
    out = process_frame(frame, PixelConfig(size=64))
    assert out.shape == (64, 64, 3)
    assert np.all((out == 127) | (out == 128))  # a nearest-neighbour resize would give 0 or 255


def test_crop_is_top_bottom_left_right():
    frame = np.zeros((100, 80, 3), np.uint8)
    frame[10:74, 8:72] = np.arange(64, dtype=np.uint8)[None, :, None]
    out = process_frame(frame, PixelConfig(size=64, crop=(10, 74, 8, 72)))
    np.testing.assert_array_equal(out, frame[10:74, 8:72])  # already 64x64: no resize


def test_frame_skip_sums_rewards_and_repeats_the_action():
    action = np.array([0.5, -0.25], np.float32)
    skipped = make_env("worldmodels.envs.point:PointMass", pixels=PixelConfig(frame_skip=3))
    plain = make_env("worldmodels.envs.point:PointMass")
    skipped.reset(seed=3)
    plain.reset(seed=3)
    obs, reward, *_ = skipped.step(action)
    expected = sum(plain.step(action)[1] for _ in range(3))
    assert reward == pytest.approx(expected)
    np.testing.assert_array_equal(obs, plain.render())


def test_frame_skip_stops_at_the_end_of_an_episode():
    env = make_env("worldmodels.envs.catch:Catch", pixels=PixelConfig(frame_skip=100), balls=1)
    env.reset(seed=0)
    _, reward, terminated, *_ = env.step(0)
    assert terminated and reward in (-1.0, 1.0)


def test_max_steps_truncates():
    env = make_env("worldmodels.envs.catch:Catch", max_steps=5, balls=10)
    env.reset(seed=0)
    ends = [env.step(0)[2:4] for _ in range(5)]
    assert ends[-1] == (False, True) and all(e == (False, False) for e in ends[:-1])


def test_action_spec_storage_and_model_input():
    discrete, box = ActionSpec("discrete", 3), ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0))
    assert discrete.empty(4).dtype == np.int64 and discrete.empty(4).shape == (4,)
    assert box.empty(4).dtype == np.float32 and box.empty(4).shape == (4, 2)
    torch.testing.assert_close(discrete.to_model(torch.tensor([2, 0])), torch.tensor([[0., 0, 1], [1, 0, 0]]))
    assert box.to_model(torch.zeros(5, 2, dtype=torch.float64)).dtype == torch.float32
    assert ActionSpec.from_dict(box.to_dict()) == box
    assert isinstance(discrete.space(), gym.spaces.Discrete) and box.space().shape == (2,)


@pytest.mark.parametrize("space", [gym.spaces.MultiDiscrete([2, 3]), gym.spaces.Box(-1, 1, (2, 2)),
                                   gym.spaces.Box(-np.inf, np.inf, (2,)), gym.spaces.Discrete(3, start=1)])
def test_unsupported_action_spaces_are_user_errors(space):
    with pytest.raises(UserError, match="unsupported action space"):
        ActionSpec.from_space(space)


@pytest.mark.parametrize("spec, kwargs, message", [
    ("NoSuchEnv-v0", {}, "unknown environment"),
    ("worldmodels.envs.catch:Nope", {}, "no attribute"),
    ("no_such_module:Env", {}, "cannot import"),
    ("worldmodels.envs.catch:Catch", {"nope": 1}, "cannot create"),
    ("CarRacing-v3", {"nope": 1}, "cannot create"),
    ("CartPole-v1", {"render_mode": None}, "not an RGB image"),
])
def test_make_env_errors_name_the_problem(spec, kwargs, message):
    with pytest.raises(UserError, match=message):
        make_env(spec, **kwargs)


@pytest.mark.parametrize("text", ["{bad", "[1, 2]"])
def test_bad_env_kwargs_json(text):
    with pytest.raises(UserError, match="--env-kwargs"):
        parse_kwargs(text)


def test_module_colon_env_id_imports_the_module_then_makes_the_registered_id():
    env = make_env("gymnasium.envs.box2d:CarRacing-v3")  # gym.make's own "module:EnvId" form
    assert ActionSpec.from_space(env.action_space).dim == 3
    env.close()


def test_a_module_in_the_current_directory_is_found(tmp_path, monkeypatch):
    (tmp_path / "my_local_envs.py").write_text(
        "from worldmodels.envs.catch import Catch\n\nclass Local(Catch):\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    env = make_env("my_local_envs:Local", balls=1)
    assert_pixel_obs(env.reset(seed=0)[0])
    env.close()
    with pytest.raises(UserError, match=r"not installed, and no missing_mod\.py or missing_mod/ in the current"):
        make_env("missing_mod:Env")


def test_an_untrusted_spec_may_name_env_classes_but_no_other_function(tmp_path, monkeypatch):
    monkeypatch.delenv("WM_TRUST_RUN", raising=False)
    env = make_env("worldmodels.envs.catch:Catch", trusted=False, balls=1)  # a gymnasium.Env class: fine
    env.close()
    marker = tmp_path / "ran"
    with pytest.raises(UserError, match="not a gymnasium.Env class.*WM_TRUST_RUN=1"):
        make_env("os:system", trusted=False, command=f"touch {marker}")
    assert not marker.exists()


def test_a_planted_run_json_runs_no_code(tmp_path, capsys, monkeypatch):
    """run.json's env spec from someone else's run directory never calls an arbitrary function."""
    import json

    from worldmodels.cli import main

    monkeypatch.delenv("WM_TRUST_RUN", raising=False)
    run = tmp_path / "run"
    assert main(["collect", "worldmodels.envs.catch:Catch", "--run", str(run), "--episodes", "1", "--workers", "1",
                 "--env-kwargs", '{"balls": 1}']) == 0
    meta = json.loads((run / "run.json").read_text())
    marker = tmp_path / "payload-ran"
    meta["env"].update(spec="os:system", kwargs={"command": f"touch {marker}"})
    (run / "run.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["eval", "--run", str(run), "--agent", "random", "--episodes", "1", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WM_TRUST_RUN=1" in err[0], err
    assert not marker.exists()
