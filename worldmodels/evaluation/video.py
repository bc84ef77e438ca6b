"""Episode videos that browsers play: H.264 mp4 (yuv420p, faststart) through imageio-ffmpeg's ffmpeg,
each frame above a caption strip (agent, step, return) and below an optional header naming its panels.
Real frames beside the VAE's reconstruction.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import torch

from worldmodels.runs.artifacts import load_vision
from worldmodels.runs.rundir import RunDir

CAPTION_HEIGHT = 24
"""Pixels of the caption strip under each (upscaled) frame, and of the header strip above it."""


def ffmpeg_missing() -> str | None:
    """Why no mp4 can be written here (imageio-ffmpeg finds no ffmpeg binary), or None when one can."""
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        return str(e).splitlines()[0]
    return None


def write_videos(run: RunDir, agent: str, extremes: dict) -> dict[str, str]:
    """mp4 per extreme episode ``{name: (result, frames [T+1, 64, 64, 3], rewards [T])}``: the real frame,
    beside it the VAE's reconstruction when trained, captioned with agent, step and return so far.
    Where no ffmpeg exists (a wheel installed without its binary) it warns in one line and writes none:
    an evaluation's scores are not lost to its videos."""
    missing = ffmpeg_missing()
    if missing is not None:
        print(f"warning: no videos of {agent} ({missing})")
        return {}
    vision = load_vision(run, "cpu") if (run.vision / "best.pt").exists() else None
    out = {}
    for name, (_, frames, rewards) in extremes.items():
        panels = [frames]
        if vision is not None:
            with torch.no_grad():
                recon = [vision.decode(vision.encode(torch.from_numpy(frames[i:i + 256]))[0])
                         for i in range(0, len(frames), 256)]
            panels.append((torch.cat(recon).permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy())
        path = run.eval / f"{agent}_{name}.mp4"
        write_mp4(path, np.concatenate(panels, axis=2), captions=episode_captions(f"{agent} ({name})", rewards))
        out[name] = str(path)
    return out


def episode_captions(label: str, rewards: Sequence[float]) -> list[str]:
    """One caption per frame of an episode with ``rewards`` [T]: T+1 lines ``label  step t  return R``,
    R the return collected before frame t."""
    returns = np.concatenate([[0.0], np.cumsum(np.asarray(rewards, np.float64))])
    return [f"{label}  step {t}  return {r:.1f}" for t, r in enumerate(returns)]


def text_strip(width: int, labels: Sequence[tuple[int, str]]) -> np.ndarray:
    """A dark strip [CAPTION_HEIGHT, width, 3] uint8 holding each ``(x, text)`` of ``labels`` in white at pixel x."""
    strip = np.full((CAPTION_HEIGHT, width, 3), 32, np.uint8)
    for x, text in labels:
        cv2.putText(strip, text, (x + 6, CAPTION_HEIGHT - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return strip


def captioned(frame: np.ndarray, caption: str) -> np.ndarray:
    """``frame`` [H, W, 3] uint8 above a dark strip [CAPTION_HEIGHT, W, 3] holding ``caption`` in white."""
    return np.concatenate([frame, text_strip(frame.shape[1], [(0, caption)])], axis=0)


def write_mp4(path: Path, frames: np.ndarray, fps: int = 30, scale: int = 4,
              captions: Sequence[str] | None = None, header: Sequence[tuple[int, str]] | None = None) -> None:
    """RGB frames ``[T, H, W, 3]`` uint8 -> an H.264 mp4 that browsers play, written atomically.

    Frames are upscaled ``scale`` x (nearest neighbour), each above its caption when ``captions``
    (T strings) are given and below ``header`` (``(x, label)`` pairs, x in frame pixels before
    upscaling: the names of side-by-side panels), and padded to even sizes (yuv420p needs them).
    """
    path = Path(path)
    t, h, w, _ = frames.shape
    if captions is not None and len(captions) != t:
        raise ValueError(f"{len(captions)} captions for {t} frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.mp4")
    height = h * scale + CAPTION_HEIGHT * ((captions is not None) + (header is not None))
    top = None if header is None else text_strip(w * scale, [(x * scale, label) for x, label in header])
    size = (w * scale + w * scale % 2, height + height % 2)
    writer = imageio_ffmpeg.write_frames(str(tmp), size, fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=1, ffmpeg_log_level="error",
                                         output_params=["-movflags", "+faststart", "-crf", "20"])
    writer.send(None)  # start ffmpeg
    try:
        for i, frame in enumerate(frames):
            big = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
            if captions is not None:
                big = captioned(big, captions[i])
            if top is not None:
                big = np.concatenate([top, big], axis=0)
            padded = np.zeros((size[1], size[0], 3), np.uint8)
            padded[:big.shape[0], :big.shape[1]] = big
            writer.send(np.ascontiguousarray(padded))
    finally:
        writer.close()
    os.replace(tmp, path)
