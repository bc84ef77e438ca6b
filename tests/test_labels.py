"""Done labels: the env's termination, or a label read off the stored frames (CarRacing off track)."""

from __future__ import annotations

import numpy as np
import pytest

from worldmodels.core.errors import UserError
from worldmodels.training.labels import carracing_off_track, done_labels


def test_off_track_marks_grass_around_the_car_after_the_zoom():
    road, grass = np.full((64, 64, 3), 105, np.uint8), np.zeros((64, 64, 3), np.uint8)
    grass[...] = (102, 204, 102)
    frames = np.stack([grass] * 60 + [road, grass])
    off = carracing_off_track(frames)
    assert not off[:50].any() and off[50:60].all() and not off[60] and off[61]
    done = done_labels("carracing-off-track", np.zeros(61, bool), frames)
    assert done.dtype == np.float32 and list(done[57:]) == [1, 1, 0, 1]  # step t is done by frame t+1


def test_terminated_is_the_envs_own_and_unknown_labels_are_user_errors():
    np.testing.assert_array_equal(done_labels("terminated", np.array([0, 1], bool), None), [0, 1])
    with pytest.raises(UserError, match="unknown done label 'crash'"):
        done_labels("crash", np.zeros(1, bool), None)
