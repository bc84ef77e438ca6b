"""Reacher2Link: the 2-link arm goal env: its ground-truth pose distance, its frames, its registered id."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import worldmodels  # noqa: F401  (registers the worldmodels/... ids)
from worldmodels.envs.make import make_env
from worldmodels.envs.pixels import PixelConfig, process_frame
from worldmodels.envs.reacher import Reacher2Link, joints, pose_distance, wrap

REACHER = "worldmodels/Reacher2Link-v0"


def test_pose_distance_is_the_wrapped_joint_angle_distance_in_0_1() -> None:
    assert pose_distance([0.3, -1.0], [0.3, -1.0]) == 0.0
    assert pose_distance([0.0, 0.0], [np.pi, np.pi]) == pytest.approx(1.0)  # the farthest pose
    assert pose_distance([3.1, 0.0], [-3.1, 0.0]) == pytest.approx((2 * np.pi - 6.2) / (np.pi * np.sqrt(2)))
    assert pose_distance([0.5, 0.0], [0.0, 0.0]) == pytest.approx(pose_distance([0.0, 0.5], [0.0, 0.0]))
    rng = np.random.default_rng(0)
    distances = [pose_distance(*rng.uniform(-10, 10, (2, 2))) for _ in range(200)]
    assert 0 <= min(distances) and max(distances) <= 1


def test_the_same_tip_with_the_elbow_bent_the_other_way_is_not_the_goal() -> None:
    up = np.array([0.4, 0.9])
    tip = joints(up)[-1]
    direction = np.arctan2(*(tip - 0.5)[::-1])  # the arm mirrored about the shoulder-tip line
    down = wrap([2 * direction - up[0], -up[1]])
    np.testing.assert_allclose(joints(down)[-1], tip, atol=1e-9)
    assert pose_distance(up, down) > 0.2


def test_actions_turn_the_joints_by_speed_and_the_reward_is_minus_the_distance() -> None:
    env = Reacher2Link(speed=0.2)
    _, info = env.reset(seed=0, options={"angles": [0.0, 3.0], "goal": [1.0, -3.0]})
    assert info["distance"] == pytest.approx(pose_distance([0.0, 3.0], [1.0, -3.0]))
    obs, reward, terminated, truncated, info = env.step(np.array([2.0, 1.0]))  # clipped to [1, 1]
    np.testing.assert_allclose(env.angles, wrap([0.2, 3.2]))
    assert reward == -info["distance"] == -env.distance() and not terminated and not truncated
    assert obs.shape == (8,) and env.observation_space.contains(obs)


def test_frames_show_the_pose_at_the_envs_own_size_and_64x64_after_the_pipeline() -> None:
    raw = Reacher2Link.draw([0.3, 1.2])
    assert raw.shape == (96, 96, 3) and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, Reacher2Link.draw([0.3 + 2 * np.pi, 1.2 - 2 * np.pi]))
    assert not np.array_equal(raw, Reacher2Link.draw([0.3, 1.5]))  # the elbow moved
    colours = {tuple(c) for c in raw.reshape(-1, 3)}
    assert {(255, 80, 40), (60, 180, 255)} <= colours  # both links, each in its colour
    env = make_env(REACHER, size=80)
    obs, info = env.reset(seed=1, options={"angles": [0.3, 1.2]})
    assert obs.shape == (64, 64, 3) and info["state"].shape == (8,)
    np.testing.assert_array_equal(obs, process_frame(Reacher2Link.draw([0.3, 1.2], 80), PixelConfig()))


def test_registered_id_and_random_resets() -> None:
    assert REACHER in gym.registry
    env = gym.make(REACHER)
    env.reset(seed=3)
    first = env.unwrapped.angles.copy(), env.unwrapped.goal.copy()
    env.reset(seed=3)
    np.testing.assert_array_equal(env.unwrapped.angles, first[0])
    env.reset(seed=4)
    assert not np.array_equal(env.unwrapped.goal, first[1])
    assert env.render().shape == (96, 96, 3)
