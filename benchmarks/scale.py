"""Collection throughput against worker count, through each executor backend.

    python benchmarks/scale.py [--env CarRacing-v3] [--episodes 4] [--max-steps 300] [--workers 1 2]
                               [--backends local ray] [--ray-address ADDR]

Each measurement is ``worldmodels.collect.collect`` on a fresh run directory, timed from the call
to the summary (worker or actor start-up, the env, the pixel pipeline, compression and writes
all count). ``--episodes`` is per worker (weak scaling: W workers collect W x episodes), so every
measurement lasts about as long. Scaling efficiency is ``steps/s / (W x steps/s with 1 worker)``
on the same backend; 1.0 is perfect. Ray is started once (``num_cpus`` = cores), or attached
at ``--ray-address``, before any timing: a cluster outlives runs. Prints a Markdown table and
saves JSON to ``benchmarks/out/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import OUT, machine

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.core.executor import default_workers, import_ray
from worldmodels.runs.rundir import RunDir


def measure(env: str, backend: str, workers: int, episodes: int, max_steps: int, address: str | None) -> dict:
    """Steps per second of ``collect`` with ``workers`` workers on ``backend``, end to end."""
    with tempfile.TemporaryDirectory() as tmp:
        config = CollectConfig(env=env, episodes=workers * episodes, max_steps=max_steps, workers=workers,
                               backend=backend, ray_address=address)
        start = time.perf_counter()
        summary = collect(RunDir(Path(tmp) / "run"), config, progress=False)
        seconds = time.perf_counter() - start
    steps = summary["frames"] - summary["episodes"]
    return {"backend": backend, "workers": workers, "episodes": summary["episodes"], "steps": steps,
            "seconds": seconds, "steps_per_second": steps / seconds}


def table(rows: list[dict]) -> str:
    lines = ["| backend | W | episodes | steps | seconds | steps/s | efficiency |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['workers']} | {r['episodes']} | {r['steps']} | {r['seconds']:.1f} | "
                     f"{r['steps_per_second']:.1f} | {r['efficiency']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CarRacing-v3")
    parser.add_argument("--episodes", type=int, default=4, help="episodes per worker (default 4)")
    parser.add_argument("--max-steps", type=int, default=300, help="steps per episode (default 300)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="worker counts (default: 1, 2, 4, ... and the number of cores)")
    parser.add_argument("--backends", nargs="+", choices=["local", "ray"], default=["local", "ray"])
    parser.add_argument("--ray-address", default=None, help="attach to this Ray cluster (default: start one here)")
    args = parser.parse_args(argv)
    cores = default_workers()
    workers = args.workers or sorted({1, cores, *(2 ** i for i in range(cores.bit_length()) if 2 ** i <= cores)})
    if "ray" in args.backends:
        ray = import_ray()
        ray.init(address=args.ray_address, num_cpus=None if args.ray_address else cores, include_dashboard=False,
                 logging_level="WARNING")

    load = [os.getloadavg()[0]]
    rows = []
    for backend in args.backends:
        for w in workers:
            row = measure(args.env, backend, w, args.episodes, args.max_steps, args.ray_address)
            base = next((r for r in rows if r["backend"] == backend and r["workers"] == 1), row)
            row["efficiency"] = row["steps_per_second"] / (w * base["steps_per_second"] / base["workers"])
            rows.append(row)
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    load.append(os.getloadavg()[0])

    result = {"benchmark": "scale", "env": args.env, "max_steps": args.max_steps, "episodes_per_worker": args.episodes,
              "machine": machine(), "load_average": {"start": load[0], "end": load[1]}, "rows": rows}
    print(table(rows))
    print(f"load average (1 min): {load[0]:.1f} at the start, {load[1]:.1f} at the end")
    OUT.mkdir(exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {OUT / 'scale.json'}")
    return result


if __name__ == "__main__":
    main()
