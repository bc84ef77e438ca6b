"""The Python API: README's Python section runs as written; ``load_run``'s dream envs; the Gymnasium ids."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import worldmodels
from tests.test_dream import build_trained_catch
from worldmodels.cli import main
from worldmodels.core.errors import UserError
from worldmodels.runs.rundir import RunDir

README = Path(__file__).resolve().parents[1] / "README.md"


def python_section() -> list[str]:
    """The ```python blocks of README's "## Python" section, in order."""
    section = README.read_text().split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The session's tiny trained Catch run (vision, memory, controller). Read-only."""
    return build_trained_catch(tmp_path_factory)


def test_readme_python_examples_run(trained, tmp_path, monkeypatch, capsys):
    shutil.copytree(trained, tmp_path / "runs" / "catch")
    monkeypatch.chdir(tmp_path)
    blocks = python_section()
    assert len(blocks) == 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "ConvVAE MDNRNN" in out and "dream return" in out
    assert len(namespace["scores"]["returns"]) == 2
    assert namespace["model"].num_timesteps >= 64


def test_dream_env_observations(trained):
    run = worldmodels.load_run(trained)
    latent = run.dream_env(dream_steps=3)
    obs, _ = latent.reset(seed=1)
    assert obs.shape == (run.memory.z_dim + run.memory.hidden_size,) and obs.dtype == np.float32
    assert latent.observation_space.contains(obs)
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, _ = latent.step(latent.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    assert steps <= 3  # truncated after dream_steps at the latest
    pixels = gym.make("worldmodels/Dream-v0", run=str(trained), obs="pixels")
    frame, _ = pixels.reset(seed=1)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and pixels.observation_space.contains(frame)
    with pytest.raises(UserError, match="obs='rgb'"):
        run.dream_env(obs="rgb")


def test_custom_envs_are_registered_ids_wm_collect_takes(tmp_path):
    assert {"worldmodels/Dream-v0", "worldmodels/Catch-v0", "worldmodels/PointMass-v0",
            "worldmodels/Maze-v0"} <= set(gym.registry)
    root = tmp_path / "run"
    assert main(["collect", "worldmodels/Catch-v0", "--run", str(root), "--episodes", "1", "--workers", "1"]) == 0
    run = RunDir(root)
    assert run.read_meta()["env"]["spec"] == "worldmodels/Catch-v0"
    assert run.make_env().reset(seed=0)[0].shape == (64, 64, 3)  # re-made from run.json's id
