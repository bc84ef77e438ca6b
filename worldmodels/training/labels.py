"""Done labels for memory training: what the dream's done head learns to predict.

``terminated`` (the default) is the env's own termination. A frame labeller adds a done signal the
env does not give, computed from the stored frames alone (the env and its scores are unchanged):
``carracing-off-track`` marks CarRacing steps whose next frame shows the car on grass, so dreams
end where the controller leaves the track, as Doom dreams end where the agent dies.
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
