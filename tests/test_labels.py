"""Frame labels: the env's termination or a label read off the stored frames (CarRacing off track), and the
cost of each hit a ViZDoom frame shows (its damage flash)."""

from __future__ import annotations

import numpy as np
import pytest

from worldmodels.core.errors import UserError
from worldmodels.training.labels import carracing_off_track, done_labels, doom_hits, hit_penalties


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


def test_a_hit_is_the_screen_turning_red_and_costs_the_step_that_led_to_it():
    room = np.full((6, 64, 64, 3), 80, np.uint8)
    room[1, ..., 0] += 5  # walking past a redder wall: not a hit
    room[3, ..., 0] += 40  # the damage flash
    room[4, ..., 0] += 30  # fading: redder than the room, less than the flash
    np.testing.assert_array_equal(doom_hits(room), [False, False, False, True, False, False])
    cost = hit_penalties(25.0, room)  # rewards [T] for frames [T+1]: step 2 led to the flash
    assert cost.dtype == np.float32 and list(cost) == [0, 0, 25, 0, 0]
