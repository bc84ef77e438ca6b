"""README's command blocks run as written, top to bottom, with tiny sizes appended to each command
(argparse keeps a flag's last value), so a reordered or renamed command breaks this test."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from worldmodels.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TRAIN = ["--epochs", "1", "--hidden-size", "16", "--seq-len", "8", "--batch-size", "8"]
PLANNER = ["--horizon", "2", "--candidates", "8", "--iterations", "1", "--elites", "2"]
TINY = {
    "collect": ["--max-steps", "25", "--workers", "1"],
    "train": TRAIN,
    "eval": ["--episodes", "1", "--workers", "1", "--max-steps", "25"],
    "explore": ["--rounds", "1", "--episodes", "1", "--vision-epochs", "1", "--memory-epochs", "1", "--hidden-size",
                "16", "--seq-len", "8", "--batch-size", "4", "--curiosity-steps", "5", "--generations", "1",
                "--population", "4", "--rollouts", "1", "--dream-steps", "5"],
    "foresight": ["--max-steps", "2", *PLANNER],
    "report": [],
}
NOT_RUN = ("wm run", "wm play")  # the laptop-size pipeline itself; a server that runs until stopped


def readme_commands() -> list[list[str]]:
    """Every ``wm`` command of README's bash blocks made only of ``wm`` commands, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S):
        lines = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if lines and all(line.startswith("wm ") and not line.startswith(NOT_RUN) for line in lines):
            commands += [shlex.split(line, comments=True) for line in lines]
    return commands


def tiny(argv: list[str], collected: dict[str, int]) -> list[str]:
    """``argv`` with tiny sizes appended (a collection adds two episodes to its run each time)."""
    stage, run = argv[1], argv[argv.index("--run") + 1]
    extra = list(TINY.get(stage, []))
    if stage == "collect":
        collected[run] = collected.get(run, 0) + 2
        extra += ["--episodes", str(collected[run] + 1 if "--agent" in argv and "curious" in argv else collected[run])]
    elif stage == "dream":
        sb3 = "--algo" in argv and argv[argv.index("--algo") + 1] != "cma"
        extra += ["--timesteps", "32", "--envs", "2"] if sb3 else ["--generations", "1", "--population", "4",
                                                                 "--rollouts", "1", "--real-every", "0"]
        extra += ["--dream-steps", "5"]
    elif stage == "eval" and "cem" in argv:
        extra += PLANNER
    return argv[1:] + extra


def test_readme_blocks_run_top_to_bottom(tmp_path, monkeypatch):
    commands = readme_commands()
    stages = {c[1] for c in commands}
    assert {"collect", "train", "dream", "eval", "explore", "foresight", "report"} <= stages, stages
    monkeypatch.chdir(tmp_path)
    collected: dict[str, int] = {}
    for argv in commands:
        assert main(tiny(argv, collected)) == 0, " ".join(argv)
    assert (tmp_path / "runs" / "car" / "report" / "index.html").exists()


@pytest.mark.parametrize("line", ["pip install torch==2.13.0 && pip install -e '.[dev]' && wm run CarRacing-v3 "
                                  "--run runs/demo --preset laptop", "python -m pytest -q"])
def test_the_two_set_up_commands_are_the_first_blocks(line):
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert line in [b.strip() for b in blocks[:2]]
