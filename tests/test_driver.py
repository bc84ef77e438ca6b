"""The real-env driver: ``drive`` steps an agent through one seeded episode and calls callbacks.

Each test is a usage example: a callback that counts steps and keeps infos, reset options, a
step limit, the store's episode record, the agent's state before and after each step, decision
timing, and explore's ground-truth positions.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from worldmodels.agents.random import BrownianAgent, RandomAgent
from worldmodels.collect.driver import Callback, DecisionTimer, EpisodeRecorder, Frames, drive, run_episode
from worldmodels.curiosity.explore import GroundTruth
from worldmodels.envs.make import make_env
from worldmodels.envs.maze import MOVES
from worldmodels.envs.point import PointMass
from worldmodels.envs.spaces import ActionSpec

CATCH, POINT, MAZE = "worldmodels.envs.catch:Catch", "worldmodels.envs.point:PointMass", "worldmodels.envs.maze:Maze"
BOX2 = ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0))
DISCRETE3, DISCRETE4 = ActionSpec("discrete", 3), ActionSpec("discrete", 4)


class StepLog(Callback):
    """Counts steps and keeps every info (the reset's first)."""

    def on_reset(self, obs, info):
        self.steps, self.infos = [], [info]

    def on_step(self, step):
        self.steps.append(step)
        self.infos.append(step.info)


def test_a_callback_sees_the_reset_and_every_step_in_order():
    env, log = make_env(POINT, max_steps=12), StepLog()
    outcome = drive(env, RandomAgent(BOX2), seed=1, callbacks=[log])
    assert outcome.steps == len(log.steps) == 12 and outcome.truncated and not outcome.terminated
    assert [s.t for s in log.steps] == list(range(12))
    for before, after in zip(log.steps, log.steps[1:]):
        assert after.obs is before.next_obs  # each step starts where the last one ended
    assert outcome.obs is log.steps[-1].next_obs and outcome.info is log.infos[-1]
    assert [s.truncated for s in log.steps] == [False] * 11 + [True]
    rewards = np.array([s.reward for s in log.steps], np.float32)
    assert outcome.total_reward == float(rewards.sum()) < 0  # PointMass: minus the distance to the goal
    np.testing.assert_allclose(rewards, [-info["distance"] for info in log.infos[1:]], rtol=1e-6)


def test_reset_options_reach_the_env():
    env, log = make_env(POINT), StepLog()
    position, goal = [0.2, 0.3], [0.8, 0.6]
    drive(env, RandomAgent(BOX2), seed=0, callbacks=[log], options={"position": position, "goal": goal}, max_steps=1)
    assert log.infos[0]["distance"] == pytest.approx(np.hypot(0.6, 0.3))
    np.testing.assert_array_equal(log.steps[0].obs, PointMass.draw(position))


def test_max_steps_stops_the_episode_early():
    env, recorder = make_env(POINT), EpisodeRecorder()  # PointMass truncates after 50 steps itself
    outcome = drive(env, RandomAgent(BOX2), seed=2, callbacks=[recorder], max_steps=5)
    assert outcome.steps == 5 and not (outcome.terminated or outcome.truncated)
    episode = recorder.episode()
    assert episode["obs"].shape == (6, 64, 64, 3) and episode["action"].shape == (5, 2)


def test_the_recorder_builds_the_store_schema_and_seeds_repeat_episodes():
    env = make_env(CATCH, balls=2)
    episode = run_episode(env, RandomAgent(DISCRETE3), seed=4)
    steps = len(episode["reward"])
    assert episode["obs"].shape == (steps + 1, 64, 64, 3) and episode["obs"].dtype == np.uint8
    assert episode["action"].shape == (steps,) and episode["action"].dtype == np.int64
    assert episode["reward"].dtype == np.float32 and set(episode["reward"]) <= {-1.0, 0.0, 1.0}
    assert episode["terminated"].tolist() == [False] * (steps - 1) + [True] and not episode["truncated"].any()
    again = run_episode(env, RandomAgent(DISCRETE3), seed=4)
    for key in episode:
        np.testing.assert_array_equal(again[key], episode[key])
    assert not np.array_equal(run_episode(env, RandomAgent(DISCRETE3), seed=5)["action"], episode["action"])


def test_callbacks_share_one_episode_and_are_reset_between_episodes():
    env, frames, recorder = make_env(CATCH, balls=1), Frames(), EpisodeRecorder()
    for seed in (0, 1):
        outcome = drive(env, RandomAgent(DISCRETE3), seed, [frames, recorder])
        assert len(frames.frames()) == outcome.steps + 1
        np.testing.assert_array_equal(frames.frames(), recorder.episode()["obs"])


def test_steps_carry_the_agent_state_before_and_after_acting():
    env, log = make_env(POINT, max_steps=6), StepLog()
    drive(env, BrownianAgent(BOX2), seed=3, callbacks=[log])  # its state is its last action
    for before, after in zip(log.steps, log.steps[1:]):
        np.testing.assert_array_equal(before.next_state[0], before.action)
        assert after.state is before.next_state


class SlowAgent(RandomAgent):
    """A random agent that thinks for ``seconds`` before each action."""

    seconds = 0.01

    def act(self, obs, state):
        time.sleep(self.seconds)
        return super().act(obs, state)


def test_decision_timer_measures_the_agents_thinking():
    env, timer = make_env(POINT), DecisionTimer()
    drive(env, SlowAgent(BOX2), seed=0, callbacks=[timer], max_steps=4)
    assert timer.decisions == 4 and timer.per_decision >= SlowAgent.seconds  # sleep lasts at least that long
    assert timer.seconds == pytest.approx(4 * timer.per_decision)


def test_ground_truth_positions_follow_the_maze_moves():
    env = make_env(MAZE, max_steps=20, cells=3)
    truth, log = GroundTruth(env), StepLog()
    outcome = drive(env, RandomAgent(DISCRETE4), seed=0, callbacks=[truth, log])
    assert len(truth.positions) == outcome.steps + 1 and truth.positions[0] == env.unwrapped.start
    for k, step in enumerate(log.steps):
        target = tuple(np.add(truth.positions[k], MOVES[int(step.action)]))
        assert truth.positions[k + 1] in (target, truth.positions[k])  # moved, or stayed against a wall
        assert truth.positions[k + 1] == tuple(step.info["position"])
