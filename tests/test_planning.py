"""Latent planning: CEM / iCEM / MPPI, latent returns of a memory model, and MPC."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from worldmodels.core.errors import UserError
from worldmodels.models.mdnrnn import MDNRNN, MDNRNNConfig
from worldmodels.models.memory import Memory, Prediction, State
from worldmodels.planning.mpc import MPCPlanner, latent_returns
from worldmodels.planning.optimizers import CEMConfig, CEMOptimizer, colored_noise

METHODS = ["cem", "icem", "mppi"]
SMALL = dict(horizon=5, candidates=300, elites=30, iterations=10)


def box(dim: int = 2, limit: float = 1.0) -> tuple[Tensor, Tensor]:
    return torch.full((dim,), -limit), torch.full((dim,), limit)


def quadratic(target: Tensor):
    """Objective with its maximum at the sequence ``target`` [H, A]: -squared distance."""
    return lambda actions: -(actions - target).square().sum((1, 2))


class PointMass:
    """A latent distribution with all its mass on ``mean``; ``sample`` adds Gaussian noise."""

    def __init__(self, mean: Tensor) -> None:
        self.mean = mean

    def sample(self, temperature: float = 1.0) -> Tensor:
        return self.mean + temperature * torch.randn_like(self.mean)

    def log_prob(self, z: Tensor) -> Tensor:
        return torch.where((z == self.mean).all(-1), 0.0, -math.inf)


class LinearMemory:
    """Fake memory model: z_{t+1} = z_t + a_t, reward r_t = -|z_{t+1}|_1, constant done logit.

    Its state is (z_{t+1},): what ``predict`` needs, and what a controller would see.
    """

    def __init__(self, z_dim: int = 2, done_logit: float = -100.0) -> None:
        self.z_dim = self.action_dim = self.hidden_size = z_dim
        self.done_logit = done_logit

    def initial_state(self, batch: int) -> State:
        return (torch.zeros(batch, self.z_dim),)

    def step(self, state: State, z: Tensor, action: Tensor) -> State:
        return (z + action,)

    def predict(self, state: State) -> Prediction:
        next_z = state[0]
        done_logit = torch.full(next_z.shape[:1], self.done_logit)
        return Prediction(PointMass(next_z), -next_z.abs().sum(-1), done_logit)

    def sample(self, state: State, temperature: float = 1.0) -> Tensor:
        return self.predict(state).next_z.sample(temperature)

    def features(self, state: State) -> Tensor:
        return state[0]

    def loss(
        self, z: Tensor, action: Tensor, reward: Tensor, done: Tensor, mask: Tensor
    ) -> dict[str, Tensor]:
        raise NotImplementedError("a fixed model: nothing to train")


# --- the optimizer -------------------------------------------------------------------------------


# Precision differs by method at the default settings: iCEM evaluates fewer, smoother (colored)
# sequences; MPPI weights all candidates with softmax(returns / 0.5), so candidates whose returns
# differ by less than the temperature count alike and the std stops shrinking there.
@pytest.mark.parametrize(("method", "tolerance"), [("cem", 0.03), ("icem", 0.1), ("mppi", 0.1)])
def test_finds_optimum_of_quadratic(method: str, tolerance: float, device) -> None:
    target = torch.linspace(-0.8, 0.8, 10, device=device).reshape(5, 2)
    optimizer = CEMOptimizer(CEMConfig(horizon=5, method=method), *box(), device=device)  # N=1000, K=100, I=10
    plan = optimizer.optimize(quadratic(target), generator=torch.Generator(device).manual_seed(0))
    assert plan.shape == (5, 2) and plan.device.type == device.type
    assert (plan - target).abs().max() < tolerance


@pytest.mark.parametrize("method", METHODS)
def test_target_outside_box_gives_plan_on_boundary(method: str) -> None:
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.5])
    target = torch.tensor([2.0, -3.0]).expand(5, 2)  # beyond high in dim 0, below low in dim 1
    seen = []

    def objective(actions: Tensor) -> Tensor:
        seen.append(((actions >= low) & (actions <= high)).all())
        return quadratic(target)(actions)

    optimizer = CEMOptimizer(CEMConfig(horizon=5, method=method), low, high)
    plan = optimizer.optimize(objective, generator=torch.Generator().manual_seed(0))
    assert all(seen), "every candidate lies in the box"
    assert ((plan >= low) & (plan <= high)).all()
    assert (plan[:, 0] > 0.9).all() and (plan[:, 1] < 0.1).all()


def test_planner_action_bounds_narrow_the_envs() -> None:
    """``action_low`` / ``action_high`` (``--action-low/--action-high``) keep every candidate inside a
    smaller box than the env's: CarRacing's gas cap for a planner."""
    low, high = torch.tensor([-1.0, 0.0, 0.0]), torch.ones(3)
    config = CEMConfig(horizon=4, candidates=100, elites=10, iterations=8, action_low=(-1.0, 0.1, -5.0),
                       action_high=(1.0, 0.3, 0.0))
    optimizer = CEMOptimizer(config, low, high)
    assert optimizer.low.tolist() == pytest.approx([-1.0, 0.1, 0.0]), "never below the env's own low"
    assert optimizer.high.tolist() == pytest.approx([1.0, 0.3, 0.0])
    seen = []
    plan = optimizer.optimize(lambda a: seen.append(a) or a.sum((1, 2)), generator=torch.Generator().manual_seed(0))
    candidates = torch.cat(seen)
    assert (candidates[..., 1] >= 0.1).all() and (candidates[..., 1] <= 0.3).all() and (candidates[..., 2] == 0).all()
    assert (plan[:, 1] > 0.25).all(), "gas is pushed to its cap, not to the env's 1"
    for bad, message in [(dict(action_high=(1.0, 0.3)), "need 3 values"), (dict(action_low=(0.0, 0.5, 0.0),
                         action_high=(1.0, 0.3, 0.0)), "empty")]:
        with pytest.raises(UserError, match=message):
            CEMOptimizer(CEMConfig(**bad), low, high)
    with pytest.raises(UserError, match="continuous"):
        CEMOptimizer(CEMConfig(action_low=(0.0,)), n_actions=3)


def test_objective_sees_whole_batch_once_per_iteration() -> None:
    sizes = []

    def objective(actions: Tensor) -> Tensor:
        sizes.append(actions.shape[0])
        return -actions.square().sum((1, 2))

    config = CEMConfig(horizon=4, candidates=300, elites=30, iterations=6, method="icem")
    CEMOptimizer(config, *box()).optimize(objective)
    # iCEM: the population shrinks by 1.25 each iteration (kept elites included), floor 2 * elites
    assert sizes == [300, 240, 192, 153, 122, 98]
    CEMOptimizer(CEMConfig(**{**asdict(config), "method": "cem"}), *box()).optimize(objective)
    assert sizes[6:] == [300] * 6


@pytest.mark.parametrize("method", METHODS)
def test_generator_makes_search_reproducible(method: str) -> None:
    optimizer = CEMOptimizer(CEMConfig(method=method, **SMALL), *box())
    objective = quadratic(torch.full((5, 2), 0.3))
    first = optimizer.optimize(objective, generator=torch.Generator().manual_seed(7))
    again = optimizer.optimize(objective, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, again)


def test_discrete_cem_finds_best_sequence() -> None:
    best = torch.tensor([0, 3, 1, 2, 2, 0])
    reward = F.one_hot(best, 4).float()  # +1 for each step that matches

    def objective(actions: Tensor) -> Tensor:  # actions: one-hot [N, 6, 4]
        return (actions * reward).sum((1, 2))

    config = CEMConfig(horizon=6, candidates=200, elites=20, iterations=6)
    probs = CEMOptimizer(config, n_actions=4).optimize(objective, generator=torch.Generator().manual_seed(0))
    assert probs.shape == (6, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(6))
    assert torch.equal(probs.argmax(-1), best)
    assert (probs >= config.min_prob - 1e-6).all(), "no action is ruled out for good"


def test_colored_noise_has_unit_variance_and_smoothness() -> None:
    generator = torch.Generator().manual_seed(0)
    for beta, low_corr, high_corr in [(0.0, -0.1, 0.1), (2.0, 0.6, 1.0)]:
        noise = colored_noise(4000, 16, 2, beta, generator)
        assert noise.shape == (4000, 16, 2)
        assert abs(noise.var().item() - 1) < 0.1
        lag1 = (noise[:, 1:] * noise[:, :-1]).mean().item()  # autocorrelation along time
        assert low_corr < lag1 < high_corr


def test_config_is_json_and_checked() -> None:
    config = CEMConfig(method="mppi", horizon=8)
    assert CEMConfig(**json.loads(json.dumps(asdict(config)))) == config
    with pytest.raises(UserError, match="method"):
        CEMConfig(method="random-shooting")
    with pytest.raises(UserError, match="elites"):
        CEMConfig(candidates=10, elites=20)


# --- latent returns ------------------------------------------------------------------------------


def test_latent_returns_match_analytic_return() -> None:
    memory = LinearMemory()
    assert isinstance(memory, Memory)
    z = torch.tensor([[1.0, -2.0]])
    actions = torch.stack([torch.tensor([0.25, 0.5]).expand(4, 2), torch.zeros(4, 2)])  # [2, 4, 2]
    # candidate 0: z = (1.25,-1.5), (1.5,-1), (1.75,-0.5), (2,0): rewards -2.75, -2.5, -2.25, -2
    # candidate 1 stays at (1, -2): reward -3 at every step
    returns = latent_returns(memory, memory.initial_state(1), z, actions)
    assert torch.allclose(returns, torch.tensor([-9.5, -12.0]))

    # discount 0.5 and P(done) = sigmoid(0) = 0.5 per step: step t counts 0.5^t * 0.5^t
    halting = LinearMemory(done_logit=0.0)
    returns = latent_returns(halting, halting.initial_state(1), z, actions, discount=0.5)
    weights = torch.tensor([1.0, 0.25, 0.0625, 0.015625])
    expected = torch.stack([weights @ torch.tensor([-2.75, -2.5, -2.25, -2.0]), -3 * weights.sum()])
    assert torch.allclose(returns, expected)


def test_latent_returns_bonus_terminal_value_and_sampling() -> None:
    memory = LinearMemory()
    z = torch.tensor([[1.0, -2.0]])
    actions = torch.tensor([0.25, 0.5]).expand(1, 4, 2)

    def progress(state: State, z: Tensor, action: Tensor, next_z: Tensor) -> Tensor:
        assert torch.equal(state[0], z), "the bonus sees the state before the step"
        return (next_z - z).sum(-1)  # 0.75 per step

    def value(state: State, z: Tensor) -> Tensor:
        return -10 * memory.features(state).abs().sum(-1)  # final z = (2, 0): -20

    state = (z,)  # the fake model's state holds the current latent
    returns = latent_returns(memory, state, z, actions, bonus=progress, terminal_value=value)
    assert torch.allclose(returns, torch.tensor([-9.5 + 4 * 0.75 - 20.0]))
    torch.manual_seed(0)
    noisy = latent_returns(memory, state, z, actions.expand(64, 4, 2), temperature=1.0)
    assert noisy.std() > 0.5, "temperature > 0 samples the next latent"
    with pytest.raises(ValueError, match="one state"):
        latent_returns(memory, state, z.expand(2, 2), actions)


# --- model-predictive control --------------------------------------------------------------------


def test_mpc_warm_start_is_previous_plan_shifted() -> None:
    config = CEMConfig(**SMALL)
    optimizer = CEMOptimizer(config, *box())
    planner = MPCPlanner(optimizer, generator=torch.Generator().manual_seed(1))
    objective = quadratic(torch.linspace(-0.8, 0.8, 10).reshape(5, 2))

    action = planner.act_with_objective(objective)
    # the same search by hand: from the zero plan, with the same random numbers
    plan = optimizer.optimize(objective, torch.zeros(5, 2), torch.Generator().manual_seed(1))
    assert torch.equal(action, plan[0])
    assert torch.equal(planner.plan[:-1], plan[1:])
    assert torch.equal(planner.plan[-1], torch.zeros(2)), "the new last step starts at zero mean"

    planner.reset()
    assert torch.equal(planner.plan, torch.zeros(5, 2))


def test_discrete_mpc_returns_index_and_fresh_uniform_last_step() -> None:
    optimizer = CEMOptimizer(CEMConfig(horizon=3, candidates=100, elites=10), n_actions=3)
    planner = MPCPlanner(optimizer, generator=torch.Generator().manual_seed(0))
    action = planner.act_with_objective(lambda actions: actions[:, :, 2].sum(1))  # action 2 always pays
    assert action == 2
    assert torch.equal(planner.plan.argmax(-1)[:2], torch.tensor([2, 2]))
    assert torch.allclose(planner.plan[-1], torch.full((3,), 1 / 3))


def test_mpc_drives_linear_model_to_zero() -> None:
    memory = LinearMemory()
    config = CEMConfig(horizon=4, candidates=200, elites=20, iterations=5)
    planner = MPCPlanner(CEMOptimizer(config, *box()), generator=torch.Generator().manual_seed(0))
    z = torch.tensor([[2.0, -1.5]])
    for _ in range(6):
        action = planner.act(memory, (z,), z)
        assert ((action >= -1) & (action <= 1)).all()
        z = z + action  # the "real" environment is the model itself
    assert z.abs().max() < 0.1


def test_mpc_decision_with_mdnrnn_is_in_bounds(device) -> None:
    """On CUDA this is the path that met cuDNN's "rnn: hx is not contiguous" (one state expanded to N)."""
    torch.manual_seed(0)
    memory = MDNRNN(MDNRNNConfig(z_dim=8, action_dim=3, hidden_size=32)).to(device).eval()
    low, high = torch.tensor([-1.0, 0.0, 0.0], device=device), torch.ones(3, device=device)  # steer, gas, brake
    config = CEMConfig(horizon=5, candidates=100, elites=10, iterations=3, method="icem", discount=0.99)
    value = lambda state, z: memory.features(state).sum(-1)  # noqa: E731
    planner = MPCPlanner(CEMOptimizer(config, low, high), temperature=1.0, terminal_value=value,
                         generator=torch.Generator(device).manual_seed(0))
    state, z = memory.initial_state(1), torch.randn(1, 8, device=device)
    for _ in range(2):
        action = planner.act(memory, state, z)
        assert action.shape == (3,) and ((action >= low) & (action <= high)).all()
        state = memory.step(state, z, action[None])
        z = memory.sample(state, 1.0)
