"""Episode videos: real frames beside the VAE's reconstruction, written as mp4.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from worldmodels.runs.artifacts import load_vision
from worldmodels.runs.rundir import RunDir


def write_videos(run: RunDir, agent: str, extremes: dict) -> dict[str, str]:
    """mp4 per extreme episode: the real frame, and beside it the VAE's reconstruction when trained."""
    vision = load_vision(run, "cpu") if (run.vision / "best.pt").exists() else None
    out = {}
    for name, (_, frames) in extremes.items():
        panels = [frames]
        if vision is not None:
            with torch.no_grad():
                recon = [vision.decode(vision.encode(torch.from_numpy(frames[i:i + 256]))[0])
                         for i in range(0, len(frames), 256)]
            panels.append((torch.cat(recon).permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy())
        video = np.concatenate(panels, axis=2)
        path = run.eval / f"{agent}_{name}.mp4"
        write_mp4(path, video)
        out[name] = str(path)
    return out


def write_mp4(path, frames: np.ndarray, fps: int = 30, scale: int = 4) -> None:
    """RGB frames ``[T, H, W, 3]`` uint8 -> an mp4 (upscaled ``scale`` x, nearest neighbour)."""
    t, h, w, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w * scale, h * scale))
    for frame in frames:
        big = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
        writer.write(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    writer.release()
    os.replace(tmp, path)
