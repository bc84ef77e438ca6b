"""`wm play`: driving inside a run's dream. The session (keys from the action space, the dream and the
real env beside it, the agent at the wheel, recordings) on every memory model and on CarRacing, the
one-line errors, `wm dream --record`, and the page itself in headless Chromium over the DevTools
Protocol (skipped, with its reason, where no browser or no aiohttp is installed)."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.test_dream import TINY_CMA, build_trained_catch, copy_run, wm_error
from worldmodels.cli import main
from worldmodels.dream.imagine import DreamConfig
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models import MEMORY_MODELS, ConvVAE, VAEConfig
from worldmodels.play.browser import Chromium, find_browser
from worldmodels.play.server import web
from worldmodels.play.session import CAR, PlayConfig, Session, controls
from worldmodels.report.page import write_report
from worldmodels.runs.artifacts import save_weights, write_config
from worldmodels.runs.episodes import load_episode
from worldmodels.runs.rundir import RunDir
from worldmodels.training.memory import memory_model_config

STILL = PlayConfig(dream=DreamConfig(temperature=0.0, done_threshold=1.0))  # deterministic; never ends


@pytest.fixture
def trained_catch(tmp_path_factory):
    """The session's tiny trained Catch run (tests.test_dream); read-only, so tests play on copies."""
    return build_trained_catch(tmp_path_factory)


def test_keys_follow_the_action_space():
    car = controls(CAR)
    assert car["keys"]["ArrowLeft"] == [0, -1.0] and car["keys"]["w"] == [1, 1.0] and car["keys"]["s"] == [2, 0.8]
    assert car["rest"] == [0.0, 0.0, 0.0] and not car["sliders"]
    catch = controls(ActionSpec("discrete", 3), ["NOOP", "LEFT", "RIGHT"])
    assert catch["keys"] == {"1": 0, "2": 1, "3": 2, "ArrowLeft": 1, "a": 1, "ArrowRight": 2, "d": 2}
    assert catch["idle"] == 0 and "2 / ← / A: action 1 (LEFT)" in catch["help"]
    maze = controls(ActionSpec("discrete", 4), ["UP", "DOWN", "LEFT", "RIGHT"])
    assert maze["keys"]["ArrowUp"] == 0 and maze["idle"] is None  # no NOOP: the dream waits for a key
    point = controls(ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0)))
    assert point["sliders"] == [0, 1] and point["keys"] == {} and point["rest"] == [0.0, 0.0]


def test_a_key_changes_the_dream_and_the_real_env_runs_beside_it(trained_catch, tmp_path):
    run = copy_run(trained_catch, tmp_path)
    session = Session(run, STILL, seed=0)
    frames = {}
    for key in (1, 2):  # LEFT, RIGHT from the same start
        session.reset(episode=0)
        session.set_action(key)
        assert session.step()
        frames[key] = session.dream_frame.copy()
        assert session.readouts()["step"] == 1 and session.readouts()["action"] == key
    assert not np.array_equal(frames[1], frames[2])

    session.set_real(True)
    assert np.array_equal(session.real_frame, load_episode(run.episodes / "episode_000000.npz")["obs"][0])
    session.set_action(2)
    session.step()
    real = session.readouts()["real"]
    assert real["distance"] >= 0 and session.panels().shape == (64, 128, 3)

    session.paused = True
    assert not session.step() and session.readouts()["step"] == 1
    session.paused = False
    session.set_driver("controller")
    session.step()
    assert session.readouts()["driver"] == "controller" and session.readouts()["step"] == 2
    session.set_driver(None)

    session.record(True)
    for _ in range(3):
        session.step()
    name = session.record(False)
    assert (run.root / "play" / name).stat().st_size > 0 and session.readouts()["saved"] == name


@pytest.mark.parametrize("kind", sorted(MEMORY_MODELS))
def test_every_memory_model_plays(trained_catch, tmp_path, kind):
    run = copy_run(trained_catch, tmp_path)
    memory = MEMORY_MODELS[kind](memory_model_config(kind, 32, 3, 16))
    write_config(run.memory, kind, memory.config)
    save_weights(run.memory / "best.pt", memory)
    session = Session(run, PlayConfig(dream=DreamConfig(done_threshold=1.0)), seed=1)
    session.set_real(True)
    session.set_driver("random")
    for _ in range(3):
        assert session.step()
    assert session.readouts()["step"] == 3 and 0 <= session.readouts()["p_done"] <= 1


def test_carracing_run_plays_with_steer_gas_and_brake(tmp_path):
    root = tmp_path / "car"
    assert main(["collect", "CarRacing-v3", "--run", str(root), "--episodes", "1", "--max-steps", "3",
                 "--workers", "1"]) == 0
    run = RunDir(root)
    vision = ConvVAE(VAEConfig(z_dim=8))
    write_config(run.vision, "vae", vision.config)
    save_weights(run.vision / "best.pt", vision)
    memory = MEMORY_MODELS["mdn"](memory_model_config("mdn", 8, 3, 16))
    write_config(run.memory, "mdn", memory.config)
    save_weights(run.memory / "best.pt", memory)
    session = Session(run, PlayConfig(dream=DreamConfig(done_threshold=1.0), real=True), seed=0)
    assert session.controls["keys"]["ArrowUp"] == [1, 1.0]
    assert np.array_equal(session.real_frame, load_episode(run.episodes / "episode_000000.npz")["obs"][0])
    session.set_action([-1.0, 1.0, 0.0])  # steer left, full gas
    assert session.step() and session.readouts()["action"] == [-1.0, 1.0, 0.0]
    session.set_action([5.0, 0.0, 0.8])  # clipped to the bounds
    assert session.step() and session.readouts()["action"] == pytest.approx([1.0, 0.0, 0.8])


def test_one_line_errors_for_a_run_without_models_and_a_port_in_use(trained_catch, tmp_path, capsys):
    run = copy_run(trained_catch, tmp_path)
    (run.memory / "config.json").unlink()
    assert "no model in" in wm_error(capsys, ["play", "--run", str(run.root)])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = wm_error(capsys, ["play", "--run", str(trained_catch), "--port", str(port)])
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line


def test_dream_record_writes_videos_the_report_embeds(trained_catch, tmp_path):
    run = copy_run(trained_catch, tmp_path)
    assert main(["dream", "--run", str(run.root), "--generations", "1", *TINY_CMA, "--record", "2"]) == 0
    videos = [run.eval / f"dream_controller_{i}.mp4" for i in range(2)]
    assert all(v.stat().st_size > 0 for v in videos)
    page = write_report(run).read_text()
    assert 'src="media/dream_controller_0.mp4"' in page and "dream beside" in page


async def drive_the_page(url: str, profile) -> dict:
    """The page as a person uses it: keys, reset, the real env beside, the agent at the wheel, a recording."""
    async with Chromium(url, profile) as page:
        stats = "window.playStats"
        await page.wait_for(f"{stats}.frames > 5")
        canvas = "Array.from(document.getElementById('dream').getContext('2d').getImageData(0, 0, 64, 64).data)"
        before = await page.evaluate(canvas)
        await page.key("ArrowRight", up=False)
        await page.wait_for(f"{stats}.header.action === 2 && {stats}.latencies.length === 1")
        await page.key("ArrowRight", down=False)
        await page.wait_for(f"{stats}.header.action === 0")
        assert await page.evaluate(canvas) != before
        assert await page.evaluate("document.getElementById('action').textContent") == "0.00"

        await page.wait_for(f"{stats}.header.step > 20")
        await page.key("r")
        await page.wait_for(f"{stats}.header.step < 10")

        await page.key("t")
        await page.wait_for(f"{stats}.header.real !== null")
        distance = await page.wait_for("document.getElementById('distance').textContent")
        assert distance != "-" and not await page.evaluate("document.getElementById('realfig').classList.contains('hidden')")

        await page.key("c")
        await page.wait_for(f"{stats}.header.driver === 'controller'")
        await page.key("c")
        await page.wait_for(f"{stats}.header.driver === null")

        await page.key("v")
        await page.wait_for(f"{stats}.header.recording > 10")
        await page.key("v")
        await page.wait_for("document.getElementById('video').readyState >= 2", timeout=60)
        played = await page.evaluate("(async () => { const v = document.getElementById('video'); await v.play(); "
                                     "await new Promise(r => setTimeout(r, 300)); "
                                     "return {time: v.currentTime, width: v.videoWidth, error: v.error}; })()")
        return {"errors": page.errors, "played": played, "fps": await page.evaluate(f"{stats}.fps")}


@pytest.mark.skipif(web is None, reason="aiohttp not installed: pip install 'worldmodels[play]'")
@pytest.mark.skipif(find_browser() is None, reason="no headless browser installed (apt-get install chromium)")
def test_the_page_in_headless_chromium(trained_catch, tmp_path):
    command = [sys.executable, "-c", "import sys; from worldmodels.cli import main; sys.exit(main())", "play",
               "--run", str(copy_run(trained_catch, tmp_path).root), "--port", "0", "--temperature", "0", "--done-threshold", "1"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line + server.stderr.read()
        result = asyncio.run(drive_the_page(url.group(0), tmp_path / "profile"))
    finally:
        server.terminate()
        server.wait(30)
    assert result["errors"] == []
    assert result["played"]["error"] is None and result["played"]["width"] == 512 and result["played"]["time"] > 0
