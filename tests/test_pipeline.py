"""``wm run``: the whole pipeline (collect -> train -> dream -> round 2 -> eval) on the smoke preset."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from worldmodels.cli import main
from worldmodels.pipeline import presets, run_pipeline
from worldmodels.runs.episodes import list_episodes
from worldmodels.runs.rundir import RunDir


def check_smoke_run(run: RunDir, env: str, out: str) -> dict:
    """What a finished smoke run holds: 4 + 2 episodes, models, 2 + 1 CMA-ES generations, scores, a video."""
    summary = json.loads((run.root / "pipeline.json").read_text())
    assert summary["env"] == env and summary["preset"] == "smoke"
    assert set(summary["seconds"]) == {"collect", "vision", "memory", "dream", "eval_controller", "eval_random"}
    assert set(summary["scores"]) == {"controller", "random"}
    for agent, score in summary["scores"].items():
        results = json.loads((run.eval / f"{agent}.json").read_text())
        assert score["episodes"] == len(results["returns"]) == 2
        assert score["mean"] == pytest.approx(np.mean(results["returns"]))
        assert f"{agent:12s} {score['mean']:8.1f}" in out
    assert len(list_episodes(run.episodes)) == 6
    assert len(list_episodes(run.latents)) == 6
    for stage in (run.vision, run.memory):
        assert (stage / "config.json").exists() and (stage / "best.pt").exists()
    history = json.loads((run.controller / "history.json").read_text())
    assert [g["generation"] for g in history["generations"]] == [1, 2, 3]
    assert len(history["real"]) == 3  # the smoke preset checks the mean in the real env every generation
    config = json.loads((run.controller / "config.json").read_text())
    with np.load(run.controller / "params.npz") as data:
        assert data["params"].shape == (config["spec"]["in_dim"] * config["spec"]["out_dim"]
                                        + config["spec"]["out_dim"],)
    assert (run.controller / "cma_state.json").exists() and (run.controller / "cma_state.npz").exists()
    assert (run.eval / "controller_best.mp4").stat().st_size > 0
    assert any(run.tb.iterdir())
    return summary


def test_smoke_pipeline_on_catch(tmp_path: Path, capsys):
    run = RunDir(tmp_path / "catch")
    assert main(["run", "worldmodels.envs.catch:Catch", "--run", str(run.root), "--preset", "smoke", "--workers", "1"]) == 0
    check_smoke_run(run, "worldmodels.envs.catch:Catch", capsys.readouterr().out)
    assert json.loads((run.root / "run.json").read_text())["env"]["action_space"]["kind"] == "discrete"


@pytest.mark.slow
def test_smoke_pipeline_on_carracing(tmp_path: Path, capsys):
    run = RunDir(tmp_path / "car")
    assert main(["run", "CarRacing-v3", "--run", str(run.root), "--preset", "smoke", "--workers", "1"]) == 0
    check_smoke_run(run, "CarRacing-v3", capsys.readouterr().out)
    config = json.loads((run.controller / "config.json").read_text())
    assert config["spec"]["out_dim"] == 3 and config["spec"]["in_dim"] == 32 + 64  # z=32, h=64 in smoke


def test_unknown_preset_is_a_one_line_error(tmp_path: Path, capsys):
    assert main(["run", "worldmodels.envs.catch:Catch", "--run", str(tmp_path / "run"), "--preset", "huge"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["wm run: error: unknown preset 'huge'; choose one of smoke, laptop, gpu, paper"]


def test_run_overrides_any_preset_field_and_shows_the_result(capsys):
    assert main(["run", "CarRacing-v3", "--run", "unused", "--preset", "laptop", "--set", "cma.generations=40",
                 "--set", "cma.dream.temperature=1.15", "--set", "memory.kind=vrnn", "--set", "rounds=3", "--show"]) == 0
    shown = dict(line.split(" = ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert shown["cma.generations"] == "40" and shown["cma.dream.temperature"] == "1.15"
    assert shown["memory.kind"] == "vrnn" and shown["rounds"] == "3" and shown["vision.epochs"] == "4"


@pytest.mark.parametrize(("override", "message"), [
    ("cma.nope=3", "no setting 'cma.nope'; settings here:"),
    ("cma.generations=many", "cma.generations='many': not a valid int"),
    ("cma.generations=0", "--generations must be at least 1"),
    ("cma=3", "cma is a group of settings"),
    ("rounds", "expected FIELD=VALUE"),
])
def test_bad_overrides_are_one_line_errors(tmp_path, capsys, override, message):
    assert main(["run", "CarRacing-v3", "--run", str(tmp_path / "r"), "--set", override, "--show"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r").exists()


def test_a_scout_round_collects_for_a_fresh_controller(tmp_path):
    """Round 1's scout (RUN/controller_scout) collects round 2's episodes; the controller trains afresh."""
    smoke = presets("worldmodels/Catch-v0")["smoke"]
    preset = replace(smoke, scout=replace(smoke.cma, generations=1), rounds=2, round_generations=0)
    run = RunDir(tmp_path / "run")
    summary = run_pipeline("worldmodels/Catch-v0", run, preset, workers=1, progress=False)
    scout = json.loads((run.root / "controller_scout" / "history.json").read_text())
    controller = json.loads((run.controller / "history.json").read_text())
    assert len(scout["generations"]) == 1 and len(controller["generations"]) == smoke.cma.generations
    assert controller["memory"] != scout["memory"]  # the controller trained on the memory retrained with round 2's data
    collections = json.loads(run.meta_path.read_text())["collections"]
    assert [c["agent"] for c in collections] == ["brownian", "noisy-controller"]
    assert len(list_episodes(run.episodes)) == smoke.collect.episodes + smoke.round_episodes
    assert set(summary["scores"]) == {"controller", "random"}


def test_a_run_cut_in_round_two_resumes_past_its_retrained_memory(tmp_path):
    """Cut during round 2's CMA-ES: round 2's episodes and retrained memory are there, the scout that
    collected them was trained on the old memory; re-running goes on without reloading the scout."""
    smoke = presets("worldmodels/Catch-v0")["smoke"]
    preset = replace(smoke, scout=replace(smoke.cma, generations=1), rounds=2, round_generations=0)
    run = RunDir(tmp_path / "run")
    run_pipeline("worldmodels/Catch-v0", run, preset, workers=1, progress=False)
    shutil.rmtree(run.controller)  # what a cut in round 2's CMA-ES leaves: no round-2 controller, no pipeline.json
    (run.root / "pipeline.json").unlink()
    summary = run_pipeline("worldmodels/Catch-v0", run, preset, workers=1, progress=False)
    assert len(list_episodes(run.episodes)) == smoke.collect.episodes + smoke.round_episodes  # nothing re-collected
    assert len(json.loads((run.controller / "history.json").read_text())["generations"]) == smoke.cma.generations
    assert set(summary["scores"]) == {"controller", "random"}


def test_a_refit_trains_fresh_models_on_all_episodes_beside_the_rounds(tmp_path, capsys):
    """``refit_vision_epochs``: the rounds keep their models in RUN/rounds/ (round 2 collects with them, in the
    workers too); then a fresh VAE, memory model and controller on all episodes become the run's, both controllers
    scored on the same episodes. Adding a refit to a run finished without one resumes it."""
    smoke = presets("worldmodels/Catch-v0")["smoke"]
    run = RunDir(tmp_path / "run")
    plain = run_pipeline("worldmodels/Catch-v0", run, smoke, workers=2, progress=False)
    old_vae = (run.vision / "best.pt").read_bytes()
    episodes = list_episodes(run.episodes)

    refit = replace(smoke, refit_vision_epochs=2, refit_memory_epochs=1)
    summary = run_pipeline("worldmodels/Catch-v0", run, refit, workers=2, progress=False)
    rounds = run.root / "rounds"
    assert "moving the rounds' models" in capsys.readouterr().out
    assert (rounds / "vision" / "best.pt").read_bytes() == old_vae and list_episodes(run.episodes) == episodes
    assert json.loads((run.vision / "summary.json").read_text())["epochs"] == 2  # a fresh VAE, not the old one's
    assert json.loads((run.memory / "summary.json").read_text())["vision"] != \
        json.loads((rounds / "memory" / "summary.json").read_text())["vision"]
    assert len(json.loads((run.controller / "history.json").read_text())["generations"]) == smoke.cma.generations
    assert set(summary["scores"]) == {"controller", "rounds_controller", "random"}
    assert summary["scores"]["rounds_controller"] == plain["scores"]["controller"]  # same controller, same episodes
    assert json.loads((rounds / "eval" / "controller.json").read_text())["checkpoint"] == str(rounds / "controller")
    assert {"refit_vision", "refit_memory", "refit_dream"} <= set(summary["seconds"])


def test_a_fresh_run_with_a_refit_and_its_rounds(tmp_path):
    """The rounds collect with the rounds' models (RUN/rounds/); ``refit_rounds`` then go on with the refitted
    controller collecting, the refitted memory model retrained and its CMA-ES continued."""
    smoke = presets("worldmodels/Catch-v0")["smoke"]
    run = RunDir(tmp_path / "run")
    preset = replace(smoke, refit_vision_epochs=1, refit_memory_epochs=1, refit_rounds=1)
    summary = run_pipeline("worldmodels/Catch-v0", run, preset, workers=2, progress=False)
    collections = json.loads(run.meta_path.read_text())["collections"]
    assert [c["agent"] for c in collections] == ["brownian", "noisy-controller", "noisy-controller"]
    assert len(list_episodes(run.root / "rounds" / "latents")) == 6 and len(list_episodes(run.latents)) == 8
    assert json.loads((run.memory / "summary.json").read_text())["epochs"] == 1 + smoke.round_memory_epochs
    generations = json.loads((run.controller / "history.json").read_text())["generations"]
    assert len(generations) == smoke.cma.generations + smoke.round_generations
    assert summary["scores"]["controller"]["episodes"] == summary["scores"]["rounds_controller"]["episodes"] == 2
    assert {"refit_collect", "refit_memory", "refit_dream"} <= set(summary["seconds"])

    (run.root / "pipeline.json").unlink()  # resumed: nothing is collected or trained again
    again = run_pipeline("worldmodels/Catch-v0", run, preset, workers=2, progress=False)
    assert len(json.loads(run.meta_path.read_text())["collections"]) == 3
    assert again["scores"]["controller"] == summary["scores"]["controller"]
    assert "refit_collect" not in again["seconds"]
