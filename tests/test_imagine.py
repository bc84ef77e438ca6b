"""The imagination kernel: ``imagine`` (open or closed loop, mean or seeded samples, shaped rewards,
early stop) and ``filter_states`` (teacher forcing), on any ``Memory`` and any device."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from tests.test_dream import ActionMemory
from tests.test_planning import LinearMemory
from worldmodels.dream.imagine import Shaping, filter_states, imagine
from worldmodels.models.mdnrnn import MDNRNN, MDNRNNConfig
from worldmodels.models.memory import State

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def mdnrnn(device: str = "cpu") -> MDNRNN:
    torch.manual_seed(0)
    return MDNRNN(MDNRNNConfig(z_dim=4, action_dim=2, hidden_size=8)).to(device).eval()


class ContiguityCheck:
    """Wraps a memory model and records whether every state tensor handed to ``step`` was contiguous
    (cuDNN's LSTM refuses a strided hx: "rnn: hx is not contiguous")."""

    def __init__(self, memory) -> None:
        self.memory, self.seen = memory, []
        self.z_dim, self.action_dim, self.hidden_size = memory.z_dim, memory.action_dim, memory.hidden_size

    def step(self, state: State, z: Tensor, action: Tensor) -> State:
        self.seen += [s.is_contiguous() for s in state]
        return self.memory.step(state, z, action)

    def __getattr__(self, name: str):
        return getattr(self.memory, name)


def test_states_handed_to_the_memory_are_contiguous() -> None:
    memory = ContiguityCheck(mdnrnn())
    start, z = memory.initial_state(1), torch.randn(1, 4)  # one start, copied to 5 candidates
    imagine(memory, start, z, torch.rand(5, 3, 2))
    imagine(memory, start, z.expand(5, 4), lambda obs: obs[:, :2], horizon=3)
    filter_states(memory, torch.randn(5, 3, 4), torch.rand(5, 3, 2), state=start)
    assert len(memory.seen) == 2 * 3 * 3 and all(memory.seen)


@pytest.mark.parametrize("device", DEVICES)
def test_every_output_is_on_the_memory_models_device(device: str) -> None:
    memory = mdnrnn(device)
    generator = torch.Generator(device).manual_seed(0)
    start, z = memory.initial_state(1), torch.randn(1, 4)  # the latent arrives on the CPU
    for actions in (torch.rand(3, 5, 2), lambda obs: torch.tanh(obs[:, :2]).cpu()):
        out = imagine(memory, start, z.expand(3, 4), actions, horizon=5, temperature=1.0, generator=generator,
                      shaping=Shaping(0.5, bonus=lambda s, z, a, nz: nz.sum(1)), done_threshold=0.5)
        tensors = [out.latents, out.rewards, out.continues, *out.state, out.survival(), out.total_reward(0.5)]
        assert {t.device.type for t in tensors} == {torch.device(device).type}
    states = filter_states(memory, torch.randn(2, 5, 4), torch.rand(2, 5, 2))
    assert [s.device.type for s in states] == [torch.device(device).type] * 2


def test_open_loop_and_closed_loop_imagine_alike() -> None:
    memory, actions = mdnrnn(), torch.rand(3, 6, 2)
    start, z = memory.initial_state(1), torch.randn(1, 4)
    steps = iter(range(6))
    replay = lambda obs: actions[:, next(steps)]  # noqa: E731  a policy that replays the plan
    open_loop = imagine(memory, start, z, actions)
    closed_loop = imagine(memory, start, z.expand(3, 4), replay, horizon=6)
    assert open_loop.latents.shape == (3, 6, 4) and open_loop.rewards.shape == open_loop.continues.shape == (3, 6)
    for a, b in zip(open_loop, closed_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_temperature_zero_follows_the_mean_and_samples_are_seeded() -> None:
    memory = mdnrnn()
    start, z, actions = memory.initial_state(1), torch.randn(1, 4), torch.rand(8, 4, 2)

    def run(temperature: float, seed: int) -> Tensor:
        return imagine(memory, start, z, actions, temperature=temperature,
                       generator=torch.Generator().manual_seed(seed)).latents

    with torch.no_grad():
        state = memory.step(tuple(s.expand(8, -1) for s in start), z.expand(8, 4), actions[:, 0])
        torch.testing.assert_close(run(0.0, 0)[:, 0], memory.predict(state).next_z.mean)
        assert torch.equal(run(0.0, 1), run(0.0, 2)), "the mean path ignores the generator"
        torch.manual_seed(0)
        expected = torch.rand(3)
        torch.manual_seed(0)
        first, again, other = run(1.0, 7), run(1.0, 7), run(1.0, 8)
        assert torch.equal(torch.rand(3), expected), "sampling from a generator leaves the global RNG alone"
    assert torch.equal(first, again) and (first - other).abs().mean() > 0.1
    assert first.std(0).mean() > 0.1, "candidates draw different latents"


def test_shaping_weighs_the_reward_adds_the_bonus_subtracts_the_penalty() -> None:
    memory = LinearMemory()  # z_{t+1} = z_t + a_t, reward -|z_{t+1}|_1
    z, actions = torch.tensor([[1.0, -2.0]]), torch.tensor([0.25, 0.5]).expand(1, 4, 2)
    plain = imagine(memory, (z,), z, actions).rewards
    torch.testing.assert_close(plain, torch.tensor([[-2.75, -2.5, -2.25, -2.0]]))

    def progress(state: State, z: Tensor, action: Tensor, next_z: Tensor) -> Tensor:
        assert torch.equal(state[0], z), "hooks see the state before the step"
        return (next_z - z).sum(1)  # 0.75 per step

    shaped = imagine(memory, (z,), z, actions, shaping=Shaping(0.5, bonus=progress,
                                                               penalty=lambda s, z, a, nz: a.abs().sum(1))).rewards
    torch.testing.assert_close(shaped, 0.5 * plain + 0.75 - 0.75)


def test_done_threshold_ends_each_dream_at_its_termination_and_stops_when_all_have() -> None:
    memory = ActionMemory(z_dim=2, action_dim=3, stop=2)  # pays the last action component; action 2 ends it
    stop_at = torch.tensor([1, 3, 2])  # dream i takes action 2 on step stop_at[i] (and after), action 0 before
    steps = iter(range(10))

    def act(obs: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(torch.where(next(steps) >= stop_at, 2, 0), 3).float()

    out = imagine(memory, memory.initial_state(3), torch.zeros(3, 2), act, horizon=10, done_threshold=0.5)
    assert out.rewards.shape == (3, 4), "imagination ends once the last dream (step 3) has terminated"
    assert torch.equal(out.total_reward(0.5), torch.ones(3)), "the terminating step pays, later ones do not"
    assert torch.equal(imagine(memory, memory.initial_state(3), torch.zeros(3, 2), torch.zeros(3, 10, 3)).rewards,
                       torch.zeros(3, 10)), "without a threshold every step is imagined"


def test_filter_states_steps_over_real_latents() -> None:
    memory = mdnrnn()
    latents, actions = torch.randn(2, 5, 4), torch.rand(2, 5, 2)
    states = filter_states(memory, latents, actions)
    assert [s.shape for s in states] == [(2, 6, 8)] * 2
    state = memory.initial_state(2)
    with torch.no_grad():
        for t in range(5):
            assert all(torch.equal(s[:, t], manual) for s, manual in zip(states, state)), f"state before step {t}"
            state = memory.step(state, latents[:, t], actions[:, t])
    assert all(torch.equal(s[:, 5], manual) for s, manual in zip(states, state))
