"""`wm report`: a self-contained HTML page from a run's results, checked in a real browser when one exists."""

import shutil
import subprocess

import numpy as np
import pytest

from worldmodels.cli import main
from worldmodels.evaluation.video import write_mp4
from worldmodels.report.page import LITERATURE, write_report
from worldmodels.runs.rundir import RunDir, atomic_write_json


def fake_results(root, env="CarRacing-v3"):
    """A run directory holding only results: what `wm run` leaves behind, without the training."""
    run = RunDir(root)
    run.root.mkdir(parents=True)
    run.write_meta({"env": {"spec": env, "kwargs": {}, "pixels": {"size": 64, "crop": None, "frame_skip": 1},
                            "action_space": {"kind": "box", "dim": 3, "low": [-1, 0, 0], "high": [1, 1, 1]},
                            "max_steps": None}, "collections": []})
    history = [{"epoch": e, "train_loss": 100.0 / e, "val": {"loss": 120.0 / e}} for e in (1, 2, 3)]
    for stage in (run.vision, run.memory):
        atomic_write_json(stage / "summary.json", {"history": history})
    atomic_write_json(run.controller / "history.json", {
        "generations": [{"generation": g, "best": float(g), "mean": g / 2} for g in range(1, 6)],
        "real": [{"generation": 5, "mean": 1.5, "std": 0.5}]})
    for agent, returns in (("controller", [12.5, 30.0, 7.25]), ("random", [-33.0, -20.0, -41.0])):
        r = np.array(returns)
        atomic_write_json(run.eval / f"{agent}.json", {"agent": agent, "returns": returns, "episodes": 3,
                                                       "mean": r.mean(), "std": r.std(), "min": r.min(), "max": r.max()})
    frames = np.zeros((20, 64, 128, 3), np.uint8)
    frames[:, 20:40, 10:30] = (255, 0, 0)
    write_mp4(run.eval / "controller_best.mp4", frames)
    atomic_write_json(run.root / "pipeline.json", {"preset": "smoke", "seconds": {"collect": 3.0, "dream": 5.0}})
    return run


def test_report_marks_literature_apart_from_measured(tmp_path):
    run = fake_results(tmp_path / "run")
    page = write_report(run).read_text()
    assert '<tr class="measured"><td>controller</td><td>16.6</td>' in page
    assert page.count('class="literature"') == len(LITERATURE)
    assert "906.0" in page and "World Models, full model" in page
    assert page.count("data:image/png;base64,") == 5  # 2 loss curves, CMA-ES, score histogram, 1 filmstrip
    assert "controller_best.mp4" in page


def test_report_on_custom_env_has_no_literature_rows(tmp_path):
    run = fake_results(tmp_path / "run", env="worldmodels.envs.catch:Catch")
    assert 'class="literature"' not in write_report(run).read_text()


def test_wm_report_cli(tmp_path, capsys):
    run = fake_results(tmp_path / "run")
    assert main(["report", "--run", str(run.root), "--out", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").exists()
    assert "page.html" in capsys.readouterr().out


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(BROWSER is None, reason="no headless browser installed (apt-get install chromium)")
def test_report_loads_in_a_headless_browser(tmp_path):
    run = fake_results(tmp_path / "run")
    page = write_report(run)
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert "<table>" in dom and "World Models, full model" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
                   capture_output=True, timeout=120)
    import cv2

    image = cv2.imread(str(shot))
    assert image is not None and image.shape[0] == 2000
    assert image.std() > 10  # text, tables and plots rendered, not a blank page
