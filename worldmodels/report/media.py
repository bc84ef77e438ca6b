"""Pictures for the report: video filmstrips as labelled grids, VAE reconstructions, and the dream
(the memory model's open-loop prediction from the first frame, fed the real actions) beside the real episode.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from worldmodels.dream.imagine import imagine
from worldmodels.runs.artifacts import load_memory, load_vision
from worldmodels.runs.episodes import list_episodes, load_episode
from worldmodels.runs.rundir import RunDir

FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_HEIGHT = 18
"""Pixels of the label band above each filmstrip tile and beside each row of a strip."""


def save_png(path: Path, rgb: np.ndarray) -> Path:
    """Write RGB ``[H, W, 3]`` uint8 as a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def labelled(tile: np.ndarray, label: str) -> np.ndarray:
    """``tile`` [H, W, 3] below a white band [LABEL_HEIGHT, W, 3] holding ``label``."""
    band = np.full((LABEL_HEIGHT, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(band, label, (4, LABEL_HEIGHT - 5), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def grid(tiles: list[np.ndarray], columns: int, gap: int = 6) -> np.ndarray:
    """Equal-sized RGB tiles in rows of ``columns`` on white, ``gap`` pixels apart."""
    h, w, _ = tiles[0].shape
    rows = -(-len(tiles) // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return out


def filmstrip(video: Path, out: Path, frames: int = 8, width: int = 1040, height: int = 140) -> Path | None:
    """``frames`` evenly spaced frames of a video as a grid at most ``width`` pixels wide, each tile
    about ``height`` pixels tall (never upscaled) and labelled with its frame number; None if unreadable."""
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    tiles = []
    for index in np.unique(np.linspace(0, max(total - 1, 0), frames).astype(int)):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if ok:
            scale = min(1.0, height / frame.shape[0], width / frame.shape[1])
            small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            tiles.append(labelled(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), f"frame {index} of {total}"))
    cap.release()
    if not tiles:
        return None
    return save_png(out, grid(tiles, max(1, (width + 6) // (tiles[0].shape[1] + 6))))


def rows_image(rows: dict[str, np.ndarray], steps: list[int], scale: int = 2) -> np.ndarray:
    """Named rows of frames ``[N, 64, 64, 3]`` (one per step in ``steps``), upscaled ``scale`` x, with the
    row names on the left and ``t=`` above each column."""
    side = 64 * scale
    name_width = 8 * max(len(n) for n in rows) + 10
    header = np.full((LABEL_HEIGHT, name_width + len(steps) * (side + 2), 3), 255, np.uint8)
    for j, t in enumerate(steps):
        cv2.putText(header, f"t={t}", (name_width + j * (side + 2) + 4, LABEL_HEIGHT - 5), FONT, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    lines = [header]
    for name, frames in rows.items():
        line = np.full((side + 2, header.shape[1], 3), 255, np.uint8)
        cv2.putText(line, name, (4, side // 2 + 5), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for j, frame in enumerate(frames):
            x = name_width + j * (side + 2)
            line[1:side + 1, x:x + side] = cv2.resize(frame, (side, side), interpolation=cv2.INTER_NEAREST)
        lines.append(line)
    return np.concatenate(lines, axis=0)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """Decoded frames [N, 3, 64, 64] in [0, 1] -> [N, 64, 64, 3] uint8."""
    return (images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().byte().numpy()


@torch.no_grad()
def world_model_strips(run: RunDir, out: Path, columns: int = 10) -> dict[str, Path]:
    """PNGs of the first stored episode: ``reconstruction`` (real frames over the VAE's reconstruction at
    ``columns`` evenly spaced steps) and ``dream`` (real frames 1..K over the memory model's open-loop
    mean prediction from frame 0 fed the episode's actions: ``imagine`` at temperature 0, decoded). Empty
    without trained models."""
    episodes = list_episodes(run.episodes)
    if not episodes or not (run.vision / "best.pt").exists():
        return {}
    episode = load_episode(episodes[min(episodes)])
    frames = episode["obs"]
    vision = load_vision(run)
    memory = load_memory(run, "cpu", vision) if (run.memory / "best.pt").exists() else None
    steps = np.unique(np.linspace(0, len(frames) - 1, columns).astype(int)).tolist()
    mu = vision.encode(torch.from_numpy(frames))[0]
    made = {"reconstruction": save_png(out / "reconstruction.png", rows_image(
        {"real": frames[steps], "VAE": _to_uint8(vision.decode(mu[steps]))}, steps))}
    if memory is not None:
        horizon = min(columns, len(frames) - 1)
        actions = run.action_spec().to_model(torch.from_numpy(episode["action"][:horizon]))
        dreamed = imagine(memory, memory.initial_state(1), mu[:1], actions[None]).latents[0]  # [horizon, Z]
        made["dream"] = save_png(out / "dream.png", rows_image(
            {"real": frames[1:horizon + 1], "dream": _to_uint8(vision.decode(dreamed))},
            list(range(1, horizon + 1))))
    return made
