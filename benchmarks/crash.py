"""Crash tests: ``kill -9`` each stage at random moments, resume it with the same command, check the run.

    python benchmarks/crash.py [--cases 3] [--stages collect vision memory dream explore] [--seed 0]

For each stage a tiny Catch run (Maze for ``wm explore``) is prepared up to that stage; a reference
copy runs the stage's command uninterrupted (its wall time bounds the kill moments). Each case
runs the command on a fresh copy, sends SIGKILL after a random delay, then re-runs the same
command to the end. Checked per case:

- **survived**: the resumed command exits 0; every stored file is valid (each ``.npz`` reads
  without pickles, each ``.pt`` with ``torch.load(weights_only=True)``, each ``.json`` parses), no
  temporary file is left, and no child of the killed process outlives it;
- **identical** where the stage is deterministic: collect's episode bytes, CMA-ES's controller
  parameters and fitness history (its state resumes bit for bit). Training resumes at epoch
  boundaries (an epoch cut short is redone with other batches), and explore retrains per round,
  so for those only completion (the epochs or rounds of the reference) and validity are compared.

Prints a Markdown table and saves JSON to ``benchmarks/out/crash.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import OUT, machine

CATCH = ["worldmodels.envs.catch:Catch", "--env-kwargs", '{"balls": 3}']
TINY = ["--hidden-size", "32", "--seq-len", "8", "--batch-size", "16"]
PREPARE = {  # what a stage's run holds before it starts
    "collect": [],
    "vision": [["collect", *CATCH, "--episodes", "8", "--workers", "1"]],
    "memory": [["collect", *CATCH, "--episodes", "8", "--workers", "1"],
               ["train", "vision", "--epochs", "1", "--batch-size", "32"]],
    "dream": [["collect", *CATCH, "--episodes", "8", "--workers", "1"],
              ["train", "--epochs", "1", *TINY]],
    "explore": [["collect", "worldmodels.envs.maze:Maze", "--episodes", "4", "--workers", "1", "--max-steps", "30"]],
}
COMMAND = {
    "collect": ["collect", *CATCH, "--episodes", "12", "--workers", "2"],
    "vision": ["train", "vision", "--epochs", "4", "--batch-size", "32"],
    "memory": ["train", "memory", "--epochs", "6", *TINY],
    "dream": ["dream", "--population", "6", "--rollouts", "2", "--dream-steps", "10", "--real-every", "0",
              "--generations", "12"],
    "explore": ["explore", "--rounds", "2", "--episodes", "2", "--vision-epochs", "1", "--memory-epochs", "1",
                "--round-vision-epochs", "0", "--round-memory-epochs", "1", "--z-dim", "8", "--hidden-size", "16",
                "--seq-len", "8", "--batch-size", "8", "--curiosity-steps", "20", "--generations", "2",
                "--population", "4", "--rollouts", "1", "--dream-steps", "10"],
}
DETERMINISTIC = {"collect", "dream"}


def wm(argv: list[str], run: Path, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-m", "worldmodels.cli", *argv, "--run", str(run)],
                            stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def finish(argv: list[str], run: Path) -> None:
    process = wm(argv, run)
    _, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wm {' '.join(argv)} failed ({process.returncode}): {err.decode()[-2000:]}")


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found, todo = set(), [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(kids - found)
            found |= kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def problems(run: Path) -> list[str]:
    """What is wrong with the stored files of ``run``: unreadable ones and temporary leftovers."""
    found = []
    for path in sorted(run.rglob("*")):
        if not path.is_file() or path.relative_to(run).parts[0] == "tb":
            continue
        name = str(path.relative_to(run))
        try:
            if ".tmp-" in path.name or path.parent.name.endswith((".new", ".old")):
                found.append(f"{name}: left over")
            elif path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    [data[k] for k in data.files]
            elif path.suffix == ".pt":
                torch.load(path, weights_only=True)
            elif path.suffix == ".json":
                json.loads(path.read_text())
        except Exception as e:  # noqa: BLE001 (any failure to read is the finding)
            found.append(f"{name}: {type(e).__name__}")
    return found


def result(stage: str, run: Path) -> object:
    """What an uninterrupted run must match: bytes or parameters where deterministic, else completion."""
    if stage == "collect":
        return {p.name: p.read_bytes() for p in sorted((run / "episodes").glob("*.npz"))}
    if stage == "dream":
        with np.load(run / "controller/params.npz") as data:
            params = data["params"].tobytes()
        history = json.loads((run / "controller/history.json").read_text())["generations"]
        return params, [(g["best"], g["mean"], g["sigma"]) for g in history]
    if stage in ("vision", "memory"):
        return json.loads((run / stage / "summary.json").read_text())["epochs"]
    return len(json.loads((run / "explore/history.json").read_text())["rounds"])


def crash_case(stage: str, base: Path, work: Path, delay: float, reference) -> dict:
    run = Path(shutil.copytree(base, work))
    process = wm(COMMAND[stage], run, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    children = descendants(process.pid)
    finished = process.poll() is not None
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(c) for c in children):
        time.sleep(0.1)
    orphans = sorted(c for c in children if alive(c))
    finish(COMMAND[stage], run)
    bad = problems(run)
    case = {"delay_s": round(delay, 2), "killed_after_end": finished, "children": len(children), "orphans": orphans,
            "problems": bad, "survived": not orphans and not bad,
            "identical": result(stage, run) == reference}
    shutil.rmtree(run)
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="kills per stage (default 3)")
    parser.add_argument("--stages", nargs="+", default=list(COMMAND), choices=list(COMMAND))
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="wm-crash-") as tmp:
        for stage in args.stages:
            base = Path(tmp) / stage / "base"
            base.mkdir(parents=True)
            for argv in PREPARE[stage]:
                finish(argv, base)
            reference_run = Path(shutil.copytree(base, Path(tmp) / stage / "reference"))
            start = time.perf_counter()
            finish(COMMAND[stage], reference_run)
            seconds = time.perf_counter() - start
            reference = result(stage, reference_run)
            cases = [crash_case(stage, base, Path(tmp) / stage / f"case{k}", rng.uniform(0.5, seconds), reference)
                     for k in range(args.cases)]
            rows[stage] = {"command": "wm " + " ".join(COMMAND[stage]), "uninterrupted_s": round(seconds, 1),
                           "cases": cases}
            print(f"{stage}: {sum(c['survived'] for c in cases)}/{len(cases)} survived, "
                  f"{sum(c['identical'] for c in cases)}/{len(cases)} identical "
                  f"(kills at {', '.join(str(c['delay_s']) for c in cases)} s of {seconds:.1f} s)", flush=True)
    print("\n| stage | cases tried | survived | identical | compared |")
    print("|---|---|---|---|---|")
    for stage, row in rows.items():
        cases = row["cases"]
        compared = "bytes / parameters" if stage in DETERMINISTIC else "completion + validity"
        print(f"| {stage} | {len(cases)} | {sum(c['survived'] for c in cases)} | "
              f"{sum(c['identical'] for c in cases)} | {compared} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "crash.json").write_text(json.dumps({"machine": machine(), "seed": args.seed, "stages": rows}, indent=2))


if __name__ == "__main__":
    main()
