"""``wm play`` as a person sees it: frames/s and key-to-frame delay on the page, in headless Chromium.

    python benchmarks/play.py [--run DIR] [--seconds 10] [--presses 40] [--screenshot docs/play.png]

Starts ``wm play --run DIR --port 0 --done-threshold 1`` (the dream never ends, so every tick steps),
opens the page in headless Chromium (``worldmodels.play.browser``) and, for the dream alone and
then with the real env beside it: holds gas (or an action key) for ``--seconds`` and counts the
frames the page draws; then presses and releases a key ``--presses`` times, 150-350 ms apart, and
reads the page's key-to-frame delays (key event to the first drawn frame stepped with that key).
Without ``--run``, a CarRacing run of the paper's sizes (ConvVAE z=32, MDN-RNN h=256, random
weights) is made in ``benchmarks/out/play-run`` from one collected 20-step episode. Browser and
server share the machine, as on a laptop. Prints a Markdown table; JSON to ``benchmarks/out/play.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import OUT, machine

from worldmodels.cli import main as wm
from worldmodels.models import MDNRNN, ConvVAE, MDNRNNConfig, VAEConfig
from worldmodels.play.browser import Chromium
from worldmodels.runs.artifacts import save_weights, write_config
from worldmodels.runs.rundir import RunDir


def carracing_run(root: Path) -> Path:
    """A CarRacing run with one stored episode and paper-sized models of random weights (made once)."""
    run = RunDir(root)
    if not (run.memory / "best.pt").exists():
        assert wm(["collect", "CarRacing-v3", "--run", str(root), "--episodes", "1", "--max-steps", "20",
                   "--workers", "1"]) == 0
        for directory, kind, model in ((run.vision, "vae", ConvVAE(VAEConfig(z_dim=32))),
                                       (run.memory, "mdn", MDNRNN(MDNRNNConfig(z_dim=32, action_dim=3)))):
            write_config(directory, kind, model.config)
            save_weights(directory / "best.pt", model)
    return root


async def measure(url: str, profile: Path, seconds: float, presses: int, screenshot: Path | None) -> list[dict]:
    rows = []
    async with Chromium(url, profile) as page:
        stats = "window.playStats"
        hello = await page.wait_for(f"{stats}.frames > 5 && {stats}.hello")
        keys = hello["controls"]["keys"]
        hold = "ArrowUp" if "ArrowUp" in keys else next(iter(keys))  # gas on CarRacing
        tap = "ArrowLeft" if "ArrowLeft" in keys else hold
        for real in (False, True):
            if real:
                await page.key("t")
                await page.wait_for(f"{stats}.header.real !== null")
            await page.key(hold, up=False)
            await asyncio.sleep(1)
            f0, t0 = await page.evaluate(f"{stats}.frames"), time.perf_counter()
            await asyncio.sleep(seconds)
            f1, t1 = await page.evaluate(f"{stats}.frames"), time.perf_counter()
            await page.key(hold, down=False)
            await page.evaluate(f"{stats}.latencies.length = 0")
            for _ in range(presses):
                await page.key(tap, up=False)
                await asyncio.sleep(random.uniform(0.15, 0.35))
                await page.key(tap, down=False)
                await asyncio.sleep(random.uniform(0.05, 0.15))
            latencies = np.array(await page.evaluate(f"{stats}.latencies"))
            rows.append({"panels": "dream + real env" if real else "dream", "fps": (f1 - f0) / (t1 - t0),
                         "seconds": t1 - t0, "presses": presses, "measured": len(latencies),
                         "latency_median_ms": float(np.median(latencies)),
                         "latency_p90_ms": float(np.percentile(latencies, 90)),
                         "latency_max_ms": float(latencies.max())})
        if screenshot is not None:  # two seconds into a fresh start, on the gas
            await page.key("r")
            await page.wait_for(f"{stats}.header.step < 5")
            await page.key(hold, up=False)
            await asyncio.sleep(2)
            await page.screenshot(screenshot, 1100, 700)
            await page.key(hold, down=False)
        assert not page.errors, page.errors
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a trained run (default: a random-weight CarRacing run)")
    parser.add_argument("--seconds", type=float, default=10.0, help="frames/s measured over this long")
    parser.add_argument("--presses", type=int, default=40, help="key presses for the delay")
    parser.add_argument("--fps", type=int, default=30, help="wm play --fps")
    parser.add_argument("--screenshot", type=Path, default=None, help="save a PNG of the page at the end")
    args = parser.parse_args()
    random.seed(0)
    run = args.run or carracing_run(OUT / "play-run")
    command = [sys.executable, "-c", "import sys; from worldmodels.cli import main; sys.exit(main())", "play",
               "--run", str(run), "--port", "0", "--done-threshold", "1", "--fps", str(args.fps)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
        with tempfile.TemporaryDirectory() as profile:
            rows = asyncio.run(measure(url, Path(profile), args.seconds, args.presses, args.screenshot))
    finally:
        server.terminate()
        server.wait(30)
    info = {"command": "python benchmarks/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "run": str(run),
            "target_fps": args.fps, "machine": machine(), "rows": rows}
    OUT.mkdir(exist_ok=True)
    (OUT / "play.json").write_text(json.dumps(info, indent=2))
    print(f"{info['command']}; {info['machine']}")
    print(f"| panels | frames/s (target {args.fps}) | key-to-frame median ms | p90 ms | max ms | presses measured |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['panels']} | {r['fps']:.1f} | {r['latency_median_ms']:.0f} | {r['latency_p90_ms']:.0f} | "
              f"{r['latency_max_ms']:.0f} | {r['measured']}/{r['presses']} |")


if __name__ == "__main__":
    main()
