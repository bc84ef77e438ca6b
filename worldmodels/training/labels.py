"""Frame labels for memory training: what the dream's done and reward heads learn beyond the env's signals.

``terminated`` (the default) is the env's own termination. A frame labeller adds a done signal the
env does not give, computed from the stored frames alone (the env and its scores are unchanged):
``carracing-off-track`` marks CarRacing steps whose next frame shows the car on grass, so dreams
end where the controller leaves the track, as Doom dreams end where the agent dies. ``doom_hits``
marks the steps where a ViZDoom agent is hit (``hit_penalties``: a cost the reward head learns, so
the dream punishes each fireball that lands, not only the death a few hits later).
"""

from __future__ import annotations

import numpy as np

from worldmodels.core.errors import UserError


def carracing_off_track(frames: np.ndarray, skip_first: int = 50, green: float = 0.6) -> np.ndarray:
    """``[T, 64, 64, 3]`` uint8 CarRacing frames (dashboard cropped) -> bool ``[T]``, true off track.

    Off track: more than ``green`` of the 10 x 10 pixels around the car (rows 49-58, columns 27-36,
    where CarRacing draws it once zoomed in) are grass green (G above R and B by more than 40). The
    first ``skip_first`` frames (CarRacing zooms in over its first 50 steps) are never off track.
    """
    patch = frames[:, 49:59, 27:37].astype(np.int16)
    r, g, b = patch[..., 0], patch[..., 1], patch[..., 2]
    off = ((g > r + 40) & (g > b + 40)).mean(axis=(1, 2)) > green
    off[:skip_first] = False
    return off


def doom_hits(frames: np.ndarray, jump: float = 8.0) -> np.ndarray:
    """``[T, H, W, 3]`` uint8 ViZDoom frames -> bool ``[T]``, true where the frame shows a hit.

    A hit turns the whole screen red for a few tics (Doom's damage flash): the frame's mean red minus its
    mean green and blue rises by more than ``jump`` (0-255 scale) over the frame before (walking moves it
    by under 2 a step). Checked against the game's health on 60 sticky random TakeCover episodes at
    frame skip 4 (``benchmarks/doom_hits.py``): 30 of the 39 hits that did not kill found, 4 false alarms.
    The first frame is never a hit.
    """
    pixels = frames.astype(np.float32)
    red = pixels[..., 0].mean(axis=(1, 2)) - pixels[..., 1:].mean(axis=(1, 2, 3))
    return np.r_[False, np.diff(red) > jump]


def hit_penalties(cost: float, frames: np.ndarray) -> np.ndarray:
    """float32 ``[T]``: ``cost`` at each step whose next frame shows a hit (``frames`` ``[T+1, H, W, 3]``), else 0."""
    return (cost * doom_hits(frames)[1:]).astype(np.float32)


FRAME_LABELS = {"carracing-off-track": carracing_off_track}
DONE_LABELS = ("terminated", *FRAME_LABELS)


def done_labels(kind: str, terminated: np.ndarray, frames: np.ndarray | None) -> np.ndarray:
    """The done target ``[T]`` float32 of one episode: the env's ``terminated`` ``[T]``, or'ed for a
    frame labeller with the label of each step's next frame (``frames`` ``[T+1, H, W, 3]``)."""
    if kind not in DONE_LABELS:
        raise UserError(f"unknown done label {kind!r}; choose one of {', '.join(DONE_LABELS)}")
    done = np.asarray(terminated, bool)
    if kind in FRAME_LABELS:
        done = done | FRAME_LABELS[kind](frames)[1:]
    return done.astype(np.float32)
