"""VizDoom TakeCover (issue 20): ids resolved like any other, dict observations, deaths as done labels."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from worldmodels.cli import main
from worldmodels.collect.driver import episode_seed
from worldmodels.envs import PixelConfig, make_env, process_frame
from worldmodels.pipeline import DOOM_SKIP, DOOM_STEPS, presets
from worldmodels.runs.episodes import list_episodes
from worldmodels.runs.rundir import RunDir
from worldmodels.training.latents import load_latents

TAKE_COVER = "VizdoomTakeCover-v1"


class DictScreen(gym.Env):
    """ViZDoom's observation layout: a dict of a 240x320 RGB ``screen`` and ``gamevariables``; no render mode."""

    observation_space = gym.spaces.Dict({"gamevariables": gym.spaces.Box(-1e9, 1e9, (1,), np.float32),
                                         "screen": gym.spaces.Box(0, 255, (240, 320, 3), np.uint8)})
    action_space = gym.spaces.Discrete(3)

    def _obs(self):
        screen = self.np_random.integers(0, 256, (240, 320, 3), dtype=np.uint8)
        return {"gamevariables": np.array([100.0], np.float32), "screen": screen}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        return self._obs(), 1.0, False, False, {}


def test_dict_observations_give_their_screen_to_the_pixel_pipeline():
    env = make_env("tests.test_doom:DictScreen")  # render_mode None: frames can only come from the dict
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs, process_frame(info["state"]["screen"], PixelConfig()))
    obs, _, _, _, info = env.step(0)
    np.testing.assert_array_equal(obs, process_frame(info["state"]["screen"], PixelConfig()))


def test_missing_vizdoom_is_a_one_line_error_naming_the_extra(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # import vizdoom fails, installed or not
    monkeypatch.setitem(sys.modules, "vizdoom.gymnasium_wrapper", None)
    monkeypatch.delitem(gym.registry, TAKE_COVER, raising=False)  # registered by an earlier import
    assert main(["collect", TAKE_COVER, "--run", str(tmp_path / "run"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"wm collect: error: {TAKE_COVER} needs vizdoom"), err
    assert err[0].endswith("pip install 'worldmodels[doom]'")


def test_doom_presets_dream_at_the_papers_temperature(capsys):
    table = presets(TAKE_COVER)
    assert "doom" not in presets("CarRacing-v3")
    for name in ("doom", "doom-gpu"):
        p = table[name]
        assert p.vision.z_dim == 64 and p.memory.kind == "mdn" and p.cma.dream.temperature == 1.15
        assert p.cma.dream.termination == "sampled"  # dreams die at the done head's rate
        assert p.cma.real_every == 0 and p.cma.select == "dream"  # the controller never sees the real game
        skip = p.collect.frame_skip or 1  # caps are in agent steps of `skip` tics; DOOM_STEPS is in tics
        assert p.collect.max_steps * skip == p.eval_max_steps * skip == DOOM_STEPS and p.eval_episodes == 100
        assert p.cma.dream.max_steps * skip <= DOOM_STEPS and p.baselines == ["random"]
    for name in ("doom", "doom-gpu"):
        p = table[name]
        assert p.collect.frame_skip == DOOM_SKIP == 4 and p.memory.seq_len * DOOM_SKIP == 1000
        # Ha & Schmidhuber's iterative procedure: the controller's own episodes (10% random actions) retrain
        # the memory model between rounds; the controller itself is still trained only in the dream
        assert p.rounds >= 8 and p.round_episodes >= 100 and p.scout is None
    gpu, doom = table["doom-gpu"], table["doom"]
    assert gpu.memory.hidden_size == 512 > doom.memory.hidden_size and gpu.collect.episodes == 4 * doom.collect.episodes
    assert main(["run", TAKE_COVER, "--run", "unused", "--preset", "doom", "--set", "cma.dream.temperature=1.3",
                 "--set", "cma.dream.done_threshold=0.4", "--show"]) == 0
    shown = dict(line.split(" = ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert shown["cma.dream.temperature"] == "1.3" and shown["cma.dream.done_threshold"] == "0.4"


def test_take_cover_end_to_end_with_deaths_as_done_labels(tmp_path: Path):
    pytest.importorskip("vizdoom", reason="vizdoom is not installed: pip install 'worldmodels[doom]'")
    run = RunDir(tmp_path / "doom")
    r = ["--run", str(run.root)]
    assert main(["collect", TAKE_COVER, *r, "--episodes", "2", "--workers", "1"]) == 0
    episodes = [dict(np.load(p)) for p in list_episodes(run.episodes).values()]
    for e in episodes:  # uniform random play dies long before 2,100 steps: each episode ends in a death
        assert e["obs"].shape[1:] == (64, 64, 3) and e["terminated"][-1] and not e["terminated"][:-1].any()
        assert (e["reward"] == 1.0).all()  # +1 per tic survived
    env = make_env(TAKE_COVER)
    obs, info = env.reset(seed=episode_seed(0, 0))
    env.close()
    np.testing.assert_array_equal(obs, process_frame(info["state"]["screen"], PixelConfig()))
    np.testing.assert_array_equal(obs, episodes[0]["obs"][0])
    assert main(["train", "vision", *r, "--epochs", "1", "--z-dim", "16"]) == 0
    assert main(["train", "memory", *r, "--epochs", "1", "--hidden-size", "32", "--seq-len", "64",
                 "--done-weight", "20"]) == 0
    assert json.loads((run.memory / "config.json").read_text())["config"]["done_weight"] == 20.0
    done = [e["done"] for e in load_latents(run, list(list_episodes(run.latents)))]
    assert [d.sum() for d in done] == [1.0, 1.0] and all(d[-1] == 1.0 for d in done)  # what the done head learns
    assert main(["dream", *r, "--generations", "1", "--population", "4", "--rollouts", "2", "--dream-steps", "30",
                 "--real-every", "0", "--temperature", "1.15"]) == 0
    assert main(["eval", *r, "--agent", "controller", "--episodes", "1", "--max-steps", "60", "--workers", "1"]) == 0
    result = json.loads((run.eval / "controller.json").read_text())
    assert result["lengths"][0] == result["returns"][0] > 0  # survival in steps is the score


def test_frame_skip_scores_game_tics_and_caps_episodes_in_agent_steps(tmp_path: Path):
    """With a frame skip of k an agent step lasts k tics: TakeCover's +1 per tic is summed, so returns stay
    tics survived (the paper's steps), and a cap of DOOM_STEPS tics is DOOM_STEPS / k agent steps; a run
    collected with a skip evaluates with it (run.json's pixels)."""
    pytest.importorskip("vizdoom", reason="vizdoom is not installed: pip install 'worldmodels[doom]'")
    env = make_env(TAKE_COVER, pixels=PixelConfig.for_env(TAKE_COVER, frame_skip=4), max_steps=5)
    env.reset(seed=0)
    rewards, truncated = [], False
    while not truncated:  # 20 tics: too short for the first fireball to kill
        _, reward, terminated, truncated, _ = env.step(1)
        assert not terminated
        rewards.append(reward)
    env.close()
    assert rewards == [4.0] * 5
    run = RunDir(tmp_path / "skip")
    assert main(["collect", TAKE_COVER, "--run", str(run.root), "--episodes", "1", "--workers", "1",
                 "--frame-skip", "4", "--max-steps", "3"]) == 0
    assert run.env_spec()[2].frame_skip == 4 and run.env_spec()[3] == 3
    with run.make_env() as env:  # what wm eval steps: the stored pixels, frame skip included
        env.reset(seed=0)
        assert env.step(2)[1] == 4.0
