"""`wm report`: an HTML page in a folder of its own from whatever a run holds, checked in a real browser
(console errors, broken images, videos that do not play) when one is installed."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from tests.test_dream import TINY_CMA, TINY_TRAIN
from worldmodels.cli import main
from worldmodels.evaluation.video import write_mp4
from worldmodels.report.media import save_png
from worldmodels.report.page import LITERATURE, LITERATURE_SETTING, round_marks, write_report
from worldmodels.runs.rundir import RunDir, atomic_write_json


def fake_results(root, env="CarRacing-v3"):
    """A run directory holding only results: what `wm run` leaves behind, without the training."""
    run = RunDir(root)
    run.root.mkdir(parents=True)
    run.write_meta({"env": {"spec": env, "kwargs": {}, "pixels": {"size": 64, "crop": None, "frame_skip": 1},
                            "action_space": {"kind": "box", "dim": 3, "low": [-1, 0, 0], "high": [1, 1, 1]},
                            "max_steps": None}, "collections": [{"agent": "random", "seed": 7, "episodes": [0]}],
                    "versions": {"python": "3.11", "torch": "2.13"}})
    history = [{"epoch": e, "train_loss": 100.0 / e, "val": {"loss": 120.0 / e}} for e in (1, 2, 3)]
    for stage in (run.vision, run.memory):
        atomic_write_json(stage / "summary.json", {"history": history})
    atomic_write_json(run.controller / "history.json", {
        "generations": [{"generation": g, "best": float(g), "mean": g / 2} for g in range(1, 6)],
        "real": [{"generation": 5, "mean": 1.5, "std": 0.5}]})
    for agent, returns in (("controller", [12.5, 30.0, 7.25]), ("random", [-33.0, -20.0, -41.0])):
        r = np.array(returns)
        atomic_write_json(run.eval / f"{agent}.json", {
            "agent": agent, "returns": returns, "lengths": [100, 120, 80], "seeds": [11, 12, 13], "episodes": 3,
            "seed": 1, "max_steps": 250, "mean": r.mean(), "std": r.std(), "min": r.min(), "max": r.max()})
    atomic_write_json(run.eval / "foresight.json", {"steps": 3, "cost": "latent", "initial_latent_distance": 2.0,
                                                    "final_latent_distance": 1.0, "planner": {"horizon": 4}})
    frames = np.zeros((20, 64, 128, 3), np.uint8)
    frames[:, 20:40, 10:30] = (255, 0, 0)
    write_mp4(run.eval / "controller_best.mp4", frames)
    atomic_write_json(run.root / "pipeline.json", {"preset": "smoke", "seconds": {"collect": 3.0, "dream": 5.0}})
    atomic_write_json(run.root / "compare" / "memories.json", {
        "title": "Memory models compared", "description": "same episodes, same VAE", "columns": ["model", "NLL"],
        "rows": [{"model": "mdn", "NLL": 23.4}, {"model": "rssm", "NLL": 22.625}], "images": ["openloop.png"]})
    save_png(run.root / "compare" / "openloop.png", frames[0])
    return run


def test_scores_show_length_and_source_and_literature_apart(tmp_path):
    run = fake_results(tmp_path / "run")
    page = write_report(run).read_text()
    assert ('<tr class="measured"><td>controller</td><td>16.6</td><td>9.7</td><td>7.2</td><td>30.0</td><td>3</td>'
            '<td>100.0</td><td>250</td><td>measured here: eval/controller.json, CarRacing-v3, seed 1</td>') in page
    assert page.count('class="literature"') == len(LITERATURE)
    assert f"published, Ha &amp; Schmidhuber 2018: {LITERATURE_SETTING}" in page and "906.0" in page
    assert "<td>13</td><td>7.2</td><td>80</td>" in page  # per-episode: seed, return, length
    assert "final_latent_distance" in page  # foresight.json has its own section, not a score row
    assert "&quot;seed&quot;: 7" in page and "&quot;torch&quot;: &quot;2.13&quot;" in page  # seeds and versions


def test_benchmark_comparisons_on_the_run_s_data_get_a_section(tmp_path):
    run = fake_results(tmp_path / "run")
    out = tmp_path / "page"
    page = write_report(run, out).read_text()
    assert "<h2>Memory models compared</h2><p>same episodes, same VAE</p>" in page
    assert "<tr><td>rssm</td><td>22.6</td></tr>" in page
    assert '<img alt="openloop" src="media/openloop.png">' in page and (out / "media" / "openloop.png").exists()


def test_zero_shot_tasks_get_a_row_each(tmp_path):
    run = fake_results(tmp_path / "run", env="worldmodels/Maze-v0")
    atomic_write_json(run.root / "tasks" / "reach_far_corner" / "eval" / "task.json", {
        "name": "reach_far_corner", "task": "worldmodels.envs.maze:reach_far_corner", "returns": [1.0, 0.0],
        "success_rate": 0.5, "mean": 0.5, "std": 0.5, "dream_fitness_best": 0.8, "real_env_steps_used": 0})
    page = write_report(run, tmp_path / "page").read_text()
    assert "<h2>Zero-shot tasks</h2>" in page
    assert ("<tr><td>reach_far_corner</td><td>worldmodels.envs.maze:reach_far_corner</td><td>2</td><td>0.50</td>"
            "<td>0.50 +- 0.50</td><td>0.80</td><td>0</td></tr>") in page


def test_report_on_custom_env_has_no_literature_rows(tmp_path):
    run = fake_results(tmp_path / "run", env="worldmodels.envs.catch:Catch")
    assert 'class="literature"' not in write_report(run).read_text()


def test_pipeline_and_explore_rounds_are_marked(tmp_path):
    run = fake_results(tmp_path / "run")
    atomic_write_json(run.root / "pipeline.json", {"settings": {
        "rounds": 3, "memory": {"epochs": 4}, "round_memory_epochs": 2, "cma": {"generations": 10},
        "round_generations": 5}})
    atomic_write_json(run.root / "explore" / "history.json", {
        "config": {"vision_epochs": 2, "round_vision_epochs": 1, "memory_epochs": 3, "round_memory_epochs": 1},
        "rounds": [{"round": 1, "return_mean": 0.0}, {"round": 2, "return_mean": 1.0}]})
    marks = round_marks(run)
    assert marks["cma"] == {10.5: "round 2", 15.5: "round 3"}
    assert marks["memory"] == {4.5: "round 2", 6.5: "round 3", 3.5: "explore 2"}
    assert marks["vision"] == {2.5: "explore 2"}


def test_wm_report_writes_only_under_out_with_relative_links(tmp_path, capsys):
    run = fake_results(tmp_path / "run")
    before = sorted(p for p in run.root.rglob("*"))
    out = tmp_path / "site"
    assert main(["report", "--run", str(run.root), "--out", str(out)]) == 0
    assert str(out / "index.html") in capsys.readouterr().out
    assert sorted(p for p in run.root.rglob("*") if p.name != ".lock") == before
    page = (out / "index.html").read_text()
    links = re.findall(r'src="([^"]+)"', page)
    assert links and '<video controls muted preload="metadata" src="media/controller_best.mp4">' in page
    for link in links:
        assert not link.startswith(("/", "file:", "data:")) and (out / link).is_file(), link


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
MEDIA_CHECK = """<script>
const failed = [];
addEventListener("error", e => failed.push(e.target.src || e.target.currentSrc || String(e.message)), true);
addEventListener("load", () => Promise.all([...document.querySelectorAll("video")].map(v => v.readyState >= 2 ||
  new Promise(done => { v.onloadeddata = v.onerror = done; v.preload = "auto"; v.load(); }))).then(() => {
  const pre = Object.assign(document.createElement("pre"), {id: "media-check"});
  pre.textContent = JSON.stringify({failed,
    images: [...document.images].filter(i => !i.naturalWidth).map(i => i.src), imageCount: document.images.length,
    videos: [...document.querySelectorAll("video")].filter(v => v.error || !v.videoWidth).map(v => v.currentSrc),
    videoCount: document.querySelectorAll("video").length});
  document.body.append(pre); }));
</script>"""


def check_in_browser(page, tmp_path) -> dict:
    """Open ``page`` in headless Chromium: its console messages must be clean; returns what failed to load
    (``images``, ``videos``, ``failed``) and how many images and videos it holds."""
    probe = page.with_name("probe.html")  # beside the page: the same relative links
    probe.write_text(page.read_text().replace("<head>", "<head>" + MEDIA_CHECK, 1))
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update", "--enable-logging=stderr", "--v=0",
             "--virtual-time-budget=15000", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    probe.unlink()
    assert not [line for line in done.stderr.splitlines() if ":CONSOLE" in line], done.stderr
    found = re.search(r'<pre id="media-check">(.*?)</pre>', done.stdout)
    assert found, done.stdout[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.skipif(BROWSER is None, reason="no headless browser installed (apt-get install chromium)")
def test_fake_run_report_loads_in_a_headless_browser(tmp_path):
    checked = check_in_browser(write_report(fake_results(tmp_path / "run")), tmp_path)
    assert checked["failed"] == checked["images"] == checked["videos"] == []
    assert checked["imageCount"] == 6 and checked["videoCount"] == 1  # 2 losses, CMA-ES, histogram, compare, filmstrip


@pytest.mark.slow
def test_report_after_every_stage_of_a_tiny_catch_run(tmp_path):
    """collect, train, dream, eval with video, foresight, explore on one Catch run; then the report."""
    root = str(tmp_path / "run")
    for argv in (["collect", "worldmodels.envs.catch:Catch", "--episodes", "4", "--workers", "1",
                  "--env-kwargs", '{"balls": 1}'],
                 ["train", *TINY_TRAIN],
                 ["dream", "--generations", "2", *TINY_CMA],
                 ["eval", "--agent", "controller", "--episodes", "2", "--workers", "1", "--video"],
                 ["eval", "--agent", "random", "--episodes", "2", "--workers", "1"],
                 ["foresight", "--goal-episode", "0", "--goal-step", "3", "--max-steps", "2", "--horizon", "2",
                  "--candidates", "8", "--iterations", "1", "--elites", "2", "--device", "cpu"],
                 ["explore", "--rounds", "1", "--episodes", "1", "--vision-epochs", "1", "--memory-epochs", "1",
                  "--hidden-size", "32", "--seq-len", "8", "--batch-size", "16", "--curiosity-steps", "5",
                  "--explorer", "cma", "--generations", "1", "--population", "4", "--rollouts", "1",
                  "--dream-steps", "4", "--device", "cpu"],
                 ["report"]):
        assert main([*argv, "--run", root]) == 0, argv
    page = tmp_path / "run" / "report" / "index.html"
    html = page.read_text()
    assert "controller" in html and "Visual foresight" in html and 'class="literature"' not in html
    for name in ("reconstruction.png", "dream.png", "controller_best.mp4", "foresight.mp4", "explore.png"):
        assert f'src="media/{name}"' in html, name
    if BROWSER is not None:
        checked = check_in_browser(page, tmp_path)
        assert checked["failed"] == checked["images"] == checked["videos"] == []
        assert checked["videoCount"] == 3  # controller best and worst, foresight
