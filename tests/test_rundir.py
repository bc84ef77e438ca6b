"""The run directory: one command at a time (a lock naming its holder), stale locks taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from worldmodels.cli import main
from worldmodels.core.errors import UserError
from worldmodels.runs.rundir import LOCK_NAME, RunDir


def test_a_second_command_on_a_locked_run_fails_naming_the_holder(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.root.mkdir()
        (run.root / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "command": "wm train", "since": "now"}))
        code = main(["collect", "worldmodels.envs.catch:Catch", "--run", str(run.root), "--episodes", "1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"in use by `wm train` (PID {sleeper.pid}" in err[0], err
        assert sorted(p.name for p in run.root.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_left_by_a_killed_command_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    (run.root / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "command": "wm collect"}))
    assert main(["collect", "worldmodels.envs.catch:Catch", "--run", str(run.root), "--episodes", "1",
                 "--workers", "1", "--env-kwargs", '{"balls": 1}']) == 0
    assert not (run.root / LOCK_NAME).exists()  # released when the command ended


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    with run.lock("wm run"):
        with run.lock("wm collect"):  # a stage inside `wm run`
            holder = json.loads((run.root / LOCK_NAME).read_text())
            assert holder["pid"] == os.getpid() and holder["command"] == "wm run"
        assert (run.root / LOCK_NAME).exists()
        other = subprocess.run([sys.executable, "-c", "from worldmodels.runs.rundir import RunDir\n"
                                f"with RunDir({str(run.root)!r}).lock('wm eval'): pass"], capture_output=True, text=True)
        assert other.returncode != 0 and "in use by `wm run`" in other.stderr
    assert not (run.root / LOCK_NAME).exists()


def test_a_failing_command_on_a_new_directory_leaves_nothing(tmp_path):
    assert main(["collect", "NoSuchEnv-v0", "--run", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()
    with pytest.raises(UserError, match="not a run directory"):
        RunDir(tmp_path / "new").read_meta()
