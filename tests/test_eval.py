"""``wm eval``: the results.json schema, seeded reproducibility over any worker count, videos, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from tests.test_dream import build_trained_catch, copy_run, wm_error
from worldmodels.cli import main
from worldmodels.collect.driver import episode_seed
from worldmodels.evaluation.evaluate import evaluate, run_episodes
from worldmodels.evaluation.video import CAPTION_HEIGHT, episode_captions
from worldmodels.runs.rundir import RunDir


@pytest.fixture
def trained_catch(tmp_path_factory):
    """The session's trained Catch run (see ``test_dream.py``), with a controller. Read-only."""
    return build_trained_catch(tmp_path_factory)


def test_results_json_schema(trained_catch, tmp_path):
    run = copy_run(trained_catch, tmp_path)
    assert main(["eval", "--run", str(run.root), "--agent", "controller", "--episodes", "3", "--workers", "1",
                 "--seed", "5"]) == 0
    results = json.loads((run.eval / "results.json").read_text())
    assert results == json.loads((run.eval / "controller.json").read_text())
    assert results["agent"] == "controller" and results["checkpoint"] == str(run.controller)
    assert results["env"] == "worldmodels.envs.catch:Catch" and results["episodes"] == 3 and results["seed"] == 5
    returns = np.array(results["returns"])
    assert len(returns) == len(results["lengths"]) == 3
    assert results["mean"] == pytest.approx(returns.mean()) and results["std"] == pytest.approx(returns.std())
    assert (results["min"], results["max"]) == (returns.min(), returns.max())
    assert results["seeds"] == [episode_seed(5, i) for i in range(3)]
    assert all(length > 0 for length in results["lengths"])


@pytest.fixture(scope="module")
def point_run(tmp_path_factory) -> RunDir:
    """A collected PointMass run (Box actions, returns that vary continuously with every action)."""
    root = tmp_path_factory.mktemp("point") / "run"
    assert main(["collect", "worldmodels.envs.point:PointMass", "--run", str(root), "--episodes", "1", "--max-steps", "10",
                 "--workers", "1"]) == 0
    return RunDir(root)


def eval_returns(run: RunDir, agent: str, seed: int, workers: int) -> list[float]:
    return evaluate(run, agent, episodes=4, workers=workers, seed=seed, progress=False, write=False)["returns"]


def test_same_seed_same_returns_whatever_the_worker_count(point_run):
    once = eval_returns(point_run, "brownian", seed=3, workers=1)
    assert len(set(once)) == 4  # four different episodes
    assert eval_returns(point_run, "brownian", seed=3, workers=1) == once
    assert eval_returns(point_run, "brownian", seed=3, workers=2) == once
    assert eval_returns(point_run, "brownian", seed=4, workers=1) != once


def test_a_trained_controller_scores_the_same_in_workers(trained_catch):
    run = RunDir(trained_catch)
    assert eval_returns(run, "controller", seed=3, workers=2) == eval_returns(run, "controller", seed=3, workers=1)


def test_several_agents_on_one_pool_score_as_each_alone(point_run):
    """CMA-ES's real-env checks score the mean and the generation's best on one pool of workers."""
    candidates = [{"dt": dt} for dt in (1 / 50, 1 / 5, 1.0)]  # Brownian agents of different step sizes
    together, _ = run_episodes(point_run, "brownian", candidates, episodes=3, workers=2, seed=3,
                               max_steps=point_run.env_spec()[3], device="cpu", progress=False)
    for options, episodes in zip(candidates, together):
        alone = evaluate(point_run, "brownian", episodes=3, workers=1, seed=3, progress=False, write=False,
                         agent_options=options)
        assert [e["return"] for e in episodes] == alone["returns"]
        assert [e["seed"] for e in episodes] == alone["seeds"]  # the same tracks for every candidate
    assert len({tuple(e["return"] for e in episodes) for episodes in together}) == 3  # three different agents


def test_video_shows_real_frames_beside_the_reconstruction(trained_catch, tmp_path):
    run = copy_run(trained_catch, tmp_path)
    assert main(["eval", "--run", str(run.root), "--agent", "random", "--episodes", "2", "--workers", "1",
                 "--video"]) == 0
    results = json.loads((run.eval / "results.json").read_text())
    assert set(results["videos"]) == {"best", "worst"}
    for name in ("best", "worst"):
        path = run.eval / f"random_{name}.mp4"
        assert results["videos"][name] == str(path)
        video = cv2.VideoCapture(str(path))
        ok, frame = video.read()
        # real | VAE reconstruction, 4x upscaled, above a caption strip (agent, step, return)
        assert ok and frame.shape == (64 * 4 + CAPTION_HEIGHT, 2 * 64 * 4, 3)
        assert frame[64 * 4 + 4:].max() > 200  # white caption text on the dark strip
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) in {length + 1 for length in results["lengths"]}
        assert video.get(cv2.CAP_PROP_FOURCC) == cv2.VideoWriter_fourcc(*"h264")  # H.264: browsers play it
        video.release()


def test_eval_without_ffmpeg_keeps_its_scores_and_warns(trained_catch, tmp_path, monkeypatch, capsys):
    def no_ffmpeg():
        raise RuntimeError("No ffmpeg exe could be found. Install ffmpeg on your system.")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_ffmpeg)
    run = copy_run(trained_catch, tmp_path)
    assert main(["eval", "--run", str(run.root), "--agent", "random", "--episodes", "2", "--workers", "1",
                 "--video"]) == 0
    results = json.loads((run.eval / "random.json").read_text())
    assert len(results["returns"]) == 2 and "videos" not in results
    assert "warning: no videos of random (No ffmpeg exe could be found" in capsys.readouterr().out
    assert not list(run.eval.glob("*.mp4"))


def test_captions_count_steps_and_the_return_so_far():
    assert episode_captions("random (best)", [1.0, 0.0, -0.5]) == [
        "random (best)  step 0  return 0.0", "random (best)  step 1  return 1.0",
        "random (best)  step 2  return 1.0", "random (best)  step 3  return 0.5"]


def test_eval_errors_are_one_line(trained_catch, tmp_path, capsys):
    run = copy_run(trained_catch, tmp_path)
    line = wm_error(capsys, ["eval", "--run", str(run.root), "--agent", "nope", "--episodes", "2"])
    assert line.startswith("wm eval: error: unknown agent 'nope'") and "controller" in line
    shutil.rmtree(run.controller)
    line = wm_error(capsys, ["eval", "--run", str(run.root), "--agent", "controller", "--episodes", "2"])
    assert line.startswith("wm eval: error: no controller in")
    line = wm_error(capsys, ["eval", "--run", str(run.root), "--agent", "sb3", "--episodes", "2"])
    assert line.startswith("wm eval: error: no SB3 models in")


def test_the_real_command_exits_cleanly_without_a_controller(trained_catch, tmp_path):
    run = copy_run(trained_catch, tmp_path)
    shutil.rmtree(run.controller)
    result = subprocess.run([sys.executable, "-m", "worldmodels.cli", "eval", "--run", str(run.root),
                             "--agent", "controller", "--episodes", "2", "--workers", "2"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"wm eval: error: no controller in {run.controller}: run `wm dream --run {run.root}` first"]
