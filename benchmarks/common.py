"""What every benchmark records beside its figures: the machine, the commit, the date."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"  # JSON results (gitignored)


def _command(*args: str) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, cwd=OUT.parent).stdout
    except OSError:
        return ""


def machine() -> dict:
    """CPU model and cores, torch and GPU when torch is loaded, git commit, date."""
    model = next((line.split(":", 1)[1].strip() for line in _command("lscpu").splitlines()
                  if line.startswith("Model name:")), "")
    info = {"cpu": model, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "commit": _command("git", "rev-parse", "--short", "HEAD").strip(), "date": time.strftime("%Y-%m-%d")}
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        info.update(torch=torch.__version__, threads=torch.get_num_threads(),
                    gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    return info
