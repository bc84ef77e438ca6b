"""A failed command loses nothing: bad values are refused before anything is written, a retrain
that diverges or is cut short keeps the model it was meant to replace."""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_dream import TINY_CMA, TINY_TRAIN, build_trained_catch
from worldmodels.cli import main
from worldmodels.runs.artifacts import algo_class


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under ``root`` (but the top-level folders in ``skip``) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in skip}


def one_line_error(capsys, argv: list[str], progress: bool = False) -> str:
    """``wm ARGV``'s error line (exit code 2, no traceback); with ``progress``, progress bars may precede it."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (progress or len(err) == 1) and err[-1].startswith(f"wm {argv[0]}: error: "), err
    assert not any("Traceback" in line for line in err)
    return err[-1]


@pytest.fixture
def run(tmp_path_factory, tmp_path) -> Path:
    return Path(shutil.copytree(build_trained_catch(tmp_path_factory), tmp_path / "run"))


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "vision", "--no-resume", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["train", "memory", "--no-resume", "--lr", "0"], "--lr must be a positive number, got 0.0"),
    (["train", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["train", "memory", "--val-fraction", "1.5"], "--val-fraction must lie strictly between 0 and 1"),
    (["train", "vision", "--hidden-size", "8"], "--hidden-size does not apply to `wm train vision`"),
    (["eval", "--episodes", "0"], "--episodes must be at least 1, got 0"),
    (["eval", "--agent", "controller", "--horizon", "5"], "--horizon does not apply to --agent controller"),
    (["eval", "--agent", "random", "--algo", "ppo"], "--algo does not apply to --agent random"),
    (["eval", "--agent", "nope"], "unknown agent 'nope'"),
    (["collect", "worldmodels.envs.catch:Catch", "--max-steps", "-5"], "--max-steps must be at least 1, got -5"),
    (["collect", "worldmodels.envs.catch:Catch", "--env-kwargs", '{"balls": "abc"}'], "cannot create"),
    (["train", "--device", "tpu"], "tpu"),
    (["dream", "--population", "1"], "--population must be at least 2, got 1"),
    (["task", "worldmodels.envs.maze:reach_far_corner", "--rewarded-fraction", "1.5"],
     "--rewarded-fraction must lie in [0, 1], got 1.5"),
    (["dream", "--generations", "0"], "--generations must be at least 1, got 0"),
    (["dream", "--rollouts", "0"], "--rollouts must be at least 1, got 0"),
    (["foresight", "--goal", "no-such-goal.png"], "goal image no-such-goal.png not found"),
    (["foresight", "--goal-episode", "0"], "--goal-episode needs --goal-step"),
])
def test_bad_values_are_one_line_errors_that_change_nothing(run, capsys, argv, message):
    before = snapshot(run)
    err = one_line_error(capsys, [argv[0], "--run", str(run), *argv[1:]])
    assert message in err
    assert snapshot(run) == before


def truncate(*paths: Path) -> None:
    """Cut files short, as a full disk or a copy cut short would."""
    for path in paths:
        path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize(("damage", "argv", "message"), [
    (lambda run: truncate(run / "episodes/episode_000001.npz", run / "episodes/episode_000002.npz"), ["train"],
     "2 corrupt episodes: "),
    (lambda run: truncate(run / "latents/episode_000001.npz"), ["dream", *TINY_CMA],
     "latents/episode_000001.npz: unreadable (BadZipFile"),
    (lambda run: shutil.rmtree(run / "episodes"), ["explore"], "no episodes in"),
    (lambda run: (run / "run.json").unlink(), ["report"], "is not a run directory (no run.json)"),
])
def test_damaged_runs_are_one_line_errors_that_change_nothing(run, capsys, damage, argv, message):
    damage(run)
    before = snapshot(run)
    err = one_line_error(capsys, [argv[0], "--run", str(run), *argv[1:]])
    assert message in err
    assert snapshot(run) == before


def test_every_corrupt_episode_is_named(run, capsys):
    truncate(run / "episodes/episode_000001.npz", run / "episodes/episode_000003.npz")
    err = one_line_error(capsys, ["train", "vision", "--run", str(run), "--no-resume", "--epochs", "1"])
    assert "episode_000001.npz: unreadable" in err and "episode_000003.npz: unreadable" in err
    assert "wm collect" in err


def test_a_corrupt_latent_file_is_re_encoded_from_its_episode(run, capsys):
    latent = run / "latents/episode_000001.npz"
    with np.load(latent) as data:
        mu = data["mu"]
    truncate(latent)
    capsys.readouterr()
    assert main(["train", "memory", "--run", str(run), *TINY_TRAIN]) == 0
    assert "re-encoding a corrupt latent file" in capsys.readouterr().err
    with np.load(latent) as data:
        np.testing.assert_allclose(data["mu"], mu, atol=1e-5)


@pytest.mark.parametrize("stage", ["vision", "memory"])
def test_a_retrain_that_diverges_keeps_the_trained_model(run, capsys, stage):
    before = snapshot(run, skip=("tb",))
    tiny = TINY_TRAIN if stage == "memory" else ["--epochs", "1", "--batch-size", "16"]
    err = one_line_error(capsys, ["train", stage, "--run", str(run), "--no-resume", "--lr", "1e30", *tiny], progress=True)
    assert "the loss became" in err and "the last good checkpoint is kept" in err
    assert snapshot(run, skip=("tb",)) == before  # no staging left behind, the old model untouched


def test_a_resumed_training_that_diverges_saves_nothing_of_it(run, capsys):
    before = snapshot(run, skip=("tb",))
    err = one_line_error(capsys, ["train", "memory", "--run", str(run), "--epochs", "3", "--lr", "1e30",
                                  *[a for a in TINY_TRAIN if a not in ("--epochs", "1")]], progress=True)
    assert "the loss became" in err
    assert snapshot(run, skip=("tb",)) == before


def test_a_fresh_start_replaces_the_model_only_when_it_finished(run, capsys):
    old = (run / "memory" / "best.pt").read_bytes()
    staging = run / ".memory.new"
    staging.mkdir()
    (staging / "junk").write_text("left by a killed retrain")
    (run / "memory" / ".last.pt.tmp-999999").write_bytes(b"half written")
    assert main(["train", "memory", "--run", str(run), "--no-resume", *TINY_TRAIN, "--seed", "5"]) == 0
    assert (run / "memory" / "best.pt").read_bytes() != old
    assert not staging.exists() and not any(p.name.startswith(".") for p in (run / "memory").iterdir())
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_the_learning_rate_asked_for_applies_on_resume(run, capsys):
    capsys.readouterr()
    args = [a for a in TINY_TRAIN if a not in ("--epochs", "1")]
    assert main(["train", "memory", "--run", str(run), "--epochs", "2", "--lr", "3e-4", *args]) == 0
    assert "learning rate 0.001 -> 0.0003" in capsys.readouterr().out


def children_of(pid: int) -> set[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    kids = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split() if (task / "children").exists() else []
        kids.update(int(k) for k in text)
    return kids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker clean-up on parent death uses prctl")
def test_kill_9_of_collect_leaves_no_workers_and_resumes(tmp_path):
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "worldmodels.cli", "collect", "worldmodels.envs.catch:Catch", "--run", str(run),
            "--episodes", "40", "--workers", "2", "--env-kwargs", '{"balls": 30}']
    parent = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((run / "episodes").glob("episode_*.npz")):
        time.sleep(0.2)
    workers = children_of(parent.pid)
    assert workers, "the collection started no worker processes"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.2)
    assert not any(alive(w) for w in workers)
    assert main(["collect", "worldmodels.envs.catch:Catch", "--run", str(run), "--episodes", "40", "--workers", "2",
                 "--env-kwargs", '{"balls": 30}']) == 0
    reference = tmp_path / "reference"
    assert main(["collect", "worldmodels.envs.catch:Catch", "--run", str(reference), "--episodes", "40",
                 "--workers", "1", "--env-kwargs", '{"balls": 30}']) == 0
    assert snapshot(run / "episodes") == snapshot(reference / "episodes")  # the same data as an uninterrupted run


class Payload:
    """A pickle that runs ``touch MARKER`` when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def old_sb3_zip(path: Path, payload: Payload) -> None:
    """An SB3 ``.zip`` as ``PPO.save`` writes it, its ``_last_obs`` a pickled payload."""
    data = {"_last_obs": {":type:": "<class 'numpy.ndarray'>",
                          ":serialized:": base64.b64encode(pickle.dumps(payload)).decode()}}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data", json.dumps(data))
        z.writestr("_stable_baselines3_version", "2.9.2")


def plant_torch(path: Path, payload: Payload) -> None:
    torch.save({"model": payload}, path)


def plant_npz(path: Path, payload: Payload) -> None:
    with open(path, "wb") as f:
        np.savez(f, params=np.array([payload], dtype=object), mu=np.array([payload], dtype=object))


@pytest.mark.parametrize(("plant", "argv"), [
    (lambda run, p: old_sb3_zip(run / "controller/sb3_ppo.zip", p), ["eval", "--agent", "sb3", "--episodes", "1"]),
    (lambda run, p: old_sb3_zip(run / "controller/sb3_ppo.zip", p), ["dream", "--algo", "ppo", "--timesteps", "8"]),
    (lambda run, p: plant_torch(run / "memory/best.pt", p), ["dream", *TINY_CMA]),
    (lambda run, p: plant_torch(run / "memory/last.pt", p), ["train", "memory", "--epochs", "2"]),
    (lambda run, p: plant_npz(run / "controller/params.npz", p), ["eval", "--agent", "controller", "--episodes", "1"]),
    (lambda run, p: plant_npz(run / "latents/episode_000000.npz", p), ["dream", *TINY_CMA]),
    (lambda run, p: plant_npz(run / "controller/cma_state.npz", p), ["dream", *TINY_CMA, "--generations", "2"]),
])
def test_planted_pickles_never_run(run, tmp_path, capsys, plant, argv):
    marker = tmp_path / "pwned"
    plant(run, Payload(marker))
    err = one_line_error(capsys, [argv[0], "--run", str(run), *argv[1:]], progress=True)
    assert not marker.exists(), f"the payload ran: {err}"
    assert "pickle" in err or "unreadable" in err or "cannot read checkpoint" in err


def test_the_planted_sb3_zip_would_run_under_sb3s_own_load(tmp_path):
    """The payload of ``old_sb3_zip`` is real: ``PPO.load`` runs it (hence SB3 models are saved as data)."""
    marker = tmp_path / "pwned"
    old_sb3_zip(tmp_path / "sb3_ppo.zip", Payload(marker))
    with pytest.raises(Exception):  # noqa: B017 (whatever fails after the payload ran)
        algo_class("ppo").load(tmp_path / "sb3_ppo.zip")
    assert marker.exists()


def test_a_memory_trained_on_another_vision_model_is_refused(run, capsys):
    assert main(["train", "vision", "--run", str(run), "--no-resume", "--epochs", "1", "--seed", "3"]) == 0
    err = one_line_error(capsys, ["dream", "--run", str(run), *TINY_CMA])
    assert "memory model" in err and "another vision model" in err and "wm train memory" in err
    assert main(["train", "memory", "--run", str(run), "--no-resume", *TINY_TRAIN]) == 0
    assert main(["dream", "--run", str(run), "--no-resume", *TINY_CMA, "--generations", "1"]) == 0


def test_a_controller_trained_in_another_memory_model_is_refused(run, capsys):
    assert main(["dream", "--run", str(run), "--algo", "ppo", "--timesteps", "16", "--envs", "2",
                 "--dream-steps", "5"]) == 0
    assert main(["train", "memory", "--run", str(run), "--no-resume", *TINY_TRAIN, "--seed", "5"]) == 0
    for agent in ("controller", "sb3"):
        err = one_line_error(capsys, ["eval", "--run", str(run), "--agent", agent, "--episodes", "1"])
        assert "trained in the dream of another memory model" in err and "--no-resume" in err


def test_the_next_command_removes_writes_a_kill_cut_short(run):
    cut_short = run / "controller" / ".params.npz.tmp-999999"
    cut_short.write_bytes(b"half written")
    assert main(["dream", "--run", str(run), *TINY_CMA, "--generations", "1"]) == 0  # done already: nothing to do
    assert not cut_short.exists()
