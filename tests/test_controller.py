"""The controller: a whole population acts in one batched op, within its own Box bounds if it has them."""

from __future__ import annotations

import json

import pytest
import torch

from worldmodels.core.errors import UserError
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.controller import ControllerSpec

CARRACING = ActionSpec("box", 3, (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # steer, gas, brake
CATCH = ActionSpec("discrete", 3)


def test_a_population_acts_in_one_call_within_the_env_bounds():
    spec = ControllerSpec.for_run(32, 256, CARRACING)
    assert spec.n_params == 288 * 3 + 3  # the paper's 867
    actions = spec.act(10 * torch.randn(5, spec.n_params), torch.randn(5, 7, 288), CARRACING)
    assert actions.shape == (5, 7, 3)
    assert actions[..., 0].min() >= -1 and actions[..., 1:].min() >= 0 and actions.max() <= 1
    indices = ControllerSpec.for_run(4, 8, CATCH).act(torch.randn(2, 39), torch.randn(2, 3, 12), CATCH)
    assert indices.shape == (2, 3) and indices.dtype == torch.int64


def test_own_bounds_constrain_box_actions_and_survive_json():
    spec = ControllerSpec.for_run(32, 256, CARRACING, low=(-1, 0, 0), high=(1, 0.3, 0))  # gas <= 0.3, no brake
    assert spec.n_params == 867  # bounds change the mapping, not the parameters
    actions = spec.act(10 * torch.randn(4, spec.n_params), torch.randn(4, 50, 288), CARRACING)
    assert actions[..., 1].max() <= 0.3 + 1e-6 and actions[..., 1].max() > 0.25  # capped, still reached
    assert torch.all(actions[..., 2] == 0)
    assert ControllerSpec(**json.loads(json.dumps(spec.to_dict()))) == spec
    assert ControllerSpec.for_run(32, 256, CARRACING, high=(2, 2, 2)).high == (1.0, 1.0, 1.0)  # clipped to the env's
    assert ControllerSpec(in_dim=288, out_dim=3).low is None  # config.json files written before bounds existed
    assert ControllerSpec.for_run(4, 8, CATCH, high=(1, 1, 1)).high is None  # discrete actions have no bounds


def test_bounds_that_do_not_fit_the_action_space_are_user_errors():
    with pytest.raises(UserError, match="do not fit the action space"):
        ControllerSpec.for_run(32, 256, CARRACING, low=(0.5, 0, 0), high=(0, 1, 1))
    with pytest.raises(UserError, match="do not fit the action space"):
        ControllerSpec.for_run(32, 256, CARRACING, high=(1, 1))
