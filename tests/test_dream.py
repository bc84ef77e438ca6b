"""The dream as an environment and what trains in it: DreamEnv, the SB3 VecEnv, the controller, CMA-ES.

``trained_catch`` (also used by ``test_eval.py``) collects and trains one tiny Catch run per
session through the ``wm`` CLI; tests that change a run work on a ``shutil.copytree`` copy.
Where a test needs a dream whose rules are known, ``ActionMemory`` stands in for the memory
model: it implements the ``Memory`` interface and pays 1 per step for the highest Discrete action.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from tests.conftest import DEVICES
from worldmodels.cli import main
from worldmodels.core.errors import UserError
from worldmodels.dream.env import DreamEnv, dream_vec_env
from worldmodels.dream.evolution import evolve
from worldmodels.dream.imagine import BatchedDream, DreamConfig, rollout_population
from worldmodels.envs.make import make_raw_env
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.controller import ControllerSpec
from worldmodels.models.mdnrnn import MDNRNN, GaussianMixture, MDNRNNConfig
from worldmodels.models.memory import Prediction, State
from worldmodels.runs.artifacts import load_controller, load_explorer, save_controller, save_explorer
from worldmodels.runs.rundir import RunDir

CARRACING = ActionSpec("box", 3, (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # steer, gas, brake
TINY_TRAIN = ["--epochs", "1", "--hidden-size", "32", "--seq-len", "8", "--batch-size", "16"]
TINY_CMA = ["--population", "4", "--rollouts", "1", "--dream-steps", "5", "--real-every", "0"]
_BUILT: dict[str, Path] = {}


def build_trained_catch(tmp_path_factory) -> Path:
    """Once per session: 4 Catch episodes (1 ball), a 1-epoch VAE, an h=32 MDN-RNN, a 1-generation controller."""
    if "catch" not in _BUILT:
        root = tmp_path_factory.mktemp("trained-catch") / "run"
        for argv in (["collect", "worldmodels.envs.catch:Catch", "--episodes", "4", "--workers", "1",
                      "--env-kwargs", '{"balls": 1}'],
                     ["train", *TINY_TRAIN],
                     ["dream", "--generations", "1", *TINY_CMA]):
            assert main([*argv, "--run", str(root)]) == 0
        _BUILT["catch"] = root
    return _BUILT["catch"]


@pytest.fixture
def trained_catch(tmp_path_factory) -> Path:
    """The session's trained Catch run. Read-only: copy it (``copy_run``) to change it."""
    return build_trained_catch(tmp_path_factory)


def copy_run(root: Path, tmp_path: Path) -> RunDir:
    return RunDir(shutil.copytree(root, tmp_path / "run"))


def wm_error(capsys, argv: list[str]) -> str:
    """Run ``wm ARGV``, expecting a user error: returns its one stderr line."""
    capsys.readouterr()
    assert main(argv) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


class ActionMemory:
    """A ``Memory`` with known rules: ``h`` is the last action (one-hot if discrete), the reward is
    its last component, the next ``z`` is N(0, 1), and the dream terminates on action ``stop`` (else with
    probability ``p_done`` at every step)."""

    def __init__(self, z_dim: int, action_dim: int, stop: int | None = None, device: torch.device | str = "cpu",
                 p_done: float = 2e-9):
        self.z_dim, self.action_dim, self.hidden_size = z_dim, action_dim, action_dim
        self.stop, self.device, self.done_logit = stop, torch.device(device), float(np.log(p_done / (1 - p_done)))

    def initial_state(self, batch: int) -> State:
        return (torch.zeros(batch, self.action_dim, device=self.device),)

    def step(self, state: State, z: torch.Tensor, action: torch.Tensor) -> State:
        return (action.clone(),)

    def predict(self, state: State) -> Prediction:
        h = state[0]
        zeros = h.new_zeros(len(h), self.z_dim, 1)  # one standard-normal component per dimension
        done = h.new_full((len(h),), self.done_logit) if self.stop is None else 40 * h[:, self.stop] - 20
        return Prediction(GaussianMixture(zeros, zeros, zeros), h[:, -1], done)

    def sample(self, state: State, temperature: float = 1.0) -> torch.Tensor:
        return self.predict(state).next_z.sample(temperature)

    def features(self, state: State) -> torch.Tensor:
        return state[0]


def random_dream(action: ActionSpec, config: DreamConfig | None = None, seed: int = 0) -> BatchedDream:
    """A dream over an untrained MDN-RNN (z=8, h=16) starting from 5 random latents."""
    torch.manual_seed(seed)
    memory = MDNRNN(MDNRNNConfig(z_dim=8, action_dim=action.dim, hidden_size=16)).eval()
    start = (torch.randn(5, 8), torch.full((5, 8), -2.0))
    return BatchedDream(memory, start, action, config or DreamConfig(max_steps=20))


# --- DreamEnv and DreamVecEnv ---------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:.*Box observation space m")  # latents are unbounded
@pytest.mark.parametrize("env", ["worldmodels.envs.point:PointMass", "worldmodels.envs.catch:Catch"])
def test_dream_env_passes_the_gymnasium_and_sb3_checkers(env):
    action = ActionSpec.from_space(make_raw_env(env).action_space)
    dream_env = DreamEnv(random_dream(action))
    assert dream_env.action_space == action.space()
    assert dream_env.observation_space.shape == (8 + 16,)
    gym_check_env(dream_env, skip_render_check=True)
    sb3_check_env(dream_env, warn=False)


def test_dream_env_is_the_batched_dream_with_one_dream():
    action = ActionSpec.from_space(gym.spaces.Discrete(3))
    env, batched = DreamEnv(random_dream(action)), random_dream(action)
    obs, _ = env.reset(seed=7)
    batched.seed(7)
    np.testing.assert_array_equal(obs, batched.reset(1)[0].numpy())
    for a in [0, 2, 1, 1, 2]:
        obs, reward, terminated, truncated, _ = env.step(a)
        b_obs, b_reward, b_terminated, b_truncated = batched.step(torch.tensor([a]))
        np.testing.assert_array_equal(obs, b_obs[0].numpy())
        assert (reward, terminated, truncated) == (float(b_reward[0]), bool(b_terminated[0]), bool(b_truncated[0]))
    other, _ = env.reset(seed=8)
    assert not np.array_equal(other, env.reset(seed=7)[0])  # the seed matters


def test_dreams_leave_the_global_rng_alone():
    dream = random_dream(ActionSpec("discrete", 3))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    dream.reset(4)
    dream.step(torch.tensor([0, 1, 2, 0]))
    assert torch.equal(torch.rand(3), expected)


def test_vec_env_resets_finished_dreams_and_reports_their_last_observation():
    memory = ActionMemory(z_dim=4, action_dim=3, stop=1)  # action 1 ends a dream
    dream = BatchedDream(memory, (torch.zeros(2, 4), torch.zeros(2, 4)), ActionSpec("discrete", 3), DreamConfig())
    env = dream_vec_env(dream, 4)
    env.seed(0)
    first = env.reset()
    assert first.shape == (4, 4 + 3) and first.dtype == np.float32
    obs, reward, done, infos = env.step(np.array([0, 1, 2, 1]))
    np.testing.assert_array_equal(done, [False, True, False, True])
    np.testing.assert_array_equal(reward, [0, 0, 1, 0])  # reward 1 for action 2
    for i in (1, 3):  # finished: restarted (h = 0), the final observation saw action 1
        np.testing.assert_array_equal(infos[i]["terminal_observation"][4:], [0, 1, 0])
        assert infos[i]["TimeLimit.truncated"] is False
        np.testing.assert_array_equal(obs[i, 4:], [0, 0, 0])
    assert infos[0] == {} and infos[2] == {}
    np.testing.assert_array_equal(obs[[0, 2], 4:], [[1, 0, 0], [0, 0, 1]])  # still going


def test_vec_env_truncates_dreams_at_max_steps():
    dream = BatchedDream(ActionMemory(4, 2), (torch.zeros(1, 4), torch.zeros(1, 4)),
                         ActionSpec("box", 2, (-1.0, -1.0), (1.0, 1.0)), DreamConfig(max_steps=3))
    env = dream_vec_env(dream, 2)
    env.reset()
    for _ in range(2):
        assert not env.step(np.zeros((2, 2), np.float32))[2].any()
    _, _, done, infos = env.step(np.zeros((2, 2), np.float32))
    assert done.all() and all(info["TimeLimit.truncated"] for info in infos)
    assert all(info["terminal_observation"].shape == (6,) for info in infos)


# --- the controller -------------------------------------------------------------------------

def test_linear_controller_has_the_papers_867_parameters():
    spec = ControllerSpec.for_run(32, 256, CARRACING)
    assert (spec.in_dim, spec.out_dim, spec.n_params) == (288, 3, 288 * 3 + 3)
    assert spec.n_params == 867
    assert ControllerSpec.for_run(32, 256, CARRACING, hidden=40).n_params == 288 * 40 + 40 + 40 * 3 + 3


def test_box_actions_stay_in_bounds_and_reach_them():
    spec = ControllerSpec.for_run(32, 256, CARRACING)
    torch.manual_seed(0)
    actions = spec.act(10 * torch.randn(8, spec.n_params), torch.randn(8, 50, 288), CARRACING)
    assert actions.shape == (8, 50, 3)
    steer, pedals = actions[..., 0], actions[..., 1:]
    assert steer.min() >= -1 and steer.max() <= 1 and pedals.min() >= 0 and pedals.max() <= 1
    assert steer.min() < -0.99 and steer.max() > 0.99 and pedals.min() < 0.01 and pedals.max() > 0.99
    bias_only = torch.zeros(1, spec.n_params)
    bias_only[0, -3:] = torch.tensor([0.0, 100.0, -100.0])  # parameters are W (row-major), then b
    np.testing.assert_allclose(spec.act(bias_only, torch.randn(1, 2, 288), CARRACING)[0].numpy(),
                               [[0, 1, 0]] * 2, atol=1e-6)  # tanh(0) -> middle of [-1, 1]


def test_discrete_actions_are_argmax_indices():
    action = ActionSpec("discrete", 3)
    spec = ControllerSpec.for_run(8, 16, action)
    params, features = torch.randn(4, spec.n_params), torch.randn(4, 6, 24)
    actions = spec.act(params, features, action)
    assert actions.dtype == torch.int64 and actions.shape == (4, 6)
    assert torch.equal(actions, spec.logits(params, features).argmax(-1))
    assert set(actions.unique().tolist()) <= {0, 1, 2}


@pytest.mark.parametrize("hidden", [0, 16])
def test_population_evaluation_equals_one_candidate_at_a_time(hidden):
    spec = ControllerSpec.for_run(32, 256, CARRACING, hidden)
    torch.manual_seed(0)
    params, features = torch.randn(6, spec.n_params), torch.randn(6, 5, 288)
    together = spec.logits(params, features)
    for p in range(6):
        alone = spec.logits(params[p:p + 1], features[p:p + 1])
        torch.testing.assert_close(together[p:p + 1], alone, rtol=1e-5, atol=1e-5)  # up to float rounding
        w, b = params[p, :288 * 3].view(3, 288), params[p, 288 * 3:288 * 3 + 3]
        if not hidden:  # and it is the paper's W [z h] + b
            torch.testing.assert_close(alone[0], features[p] @ w.T + b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", [*DEVICES, "meta"])
def test_action_memory_keeps_to_its_device(device):
    """The stand-in keeps the ``Memory`` contract, every tensor on its device, as a real model does
    (one bound to the CPU broke ``wm dream`` on CUDA); ``meta`` checks that without a GPU."""
    memory = ActionMemory(z_dim=4, action_dim=3, stop=2, device=device)
    state = memory.step(memory.initial_state(5), torch.zeros(5, 4, device=device), torch.ones(5, 3, device=device))
    prediction = memory.predict(state)
    tensors = [*memory.initial_state(5), *state, prediction.reward, prediction.done_logit, prediction.next_z.mean,
               memory.sample(state), memory.features(state)]
    assert {t.device.type for t in tensors} == {torch.device(device).type}


@pytest.mark.parametrize("kind", ["mdn", "action"])
def test_every_tensor_a_dream_returns_is_on_its_device(kind, device):
    if kind == "mdn":
        memory = MDNRNN(MDNRNNConfig(z_dim=8, action_dim=3, hidden_size=16)).to(device).eval()
    else:
        memory = ActionMemory(z_dim=8, action_dim=3, device=device)
    dream = BatchedDream(memory, (torch.randn(5, 8), torch.full((5, 8), -2.0)), CARRACING, DreamConfig(max_steps=4),
                         device)  # start latents and actions arrive on the CPU
    dream.seed(0)
    out = [dream.reset(6), *dream.step(torch.rand(6, 3)), dream.z, *dream.state]
    returns, imagined = rollout_population(dream, lambda obs: torch.rand(*obs.shape[:2], 3), 3, 2)
    out += [returns, imagined.latents, imagined.rewards, imagined.continues]
    assert {t.device.type for t in out} == {device.type}


def test_dreams_that_end_stop_earning():
    memory = ActionMemory(z_dim=4, action_dim=3, stop=2)  # action 2 earns 1 and ends the dream
    dream = BatchedDream(memory, (torch.zeros(1, 4), torch.zeros(1, 4)), ActionSpec("discrete", 3),
                         DreamConfig(max_steps=10))
    returns, _ = rollout_population(dream, lambda f: torch.full(f.shape[:2], 2), population=3, rollouts=2)
    assert returns.shape == (3, 2) and torch.equal(returns, torch.ones(3, 2))


def test_sampled_termination_ends_dreams_at_the_predicted_hazard():
    """A done head that says P(done) = 0.1 at every step never passes the 0.5 threshold, but sampled
    termination ends the dreams at that rate; CMA-ES scores a dream by its expected return."""
    memory = ActionMemory(z_dim=4, action_dim=3, p_done=0.1)  # action 2 earns 1 per step
    start, action = (torch.zeros(1, 4), torch.zeros(1, 4)), ActionSpec("discrete", 3)
    always_2 = lambda f: torch.full(f.shape[:2], 2)  # noqa: E731
    by_threshold = BatchedDream(memory, start, action, DreamConfig(max_steps=50))
    assert torch.equal(rollout_population(by_threshold, always_2, 2, 2)[0], torch.full((2, 2), 50.0))
    sampled = BatchedDream(memory, start, action, DreamConfig(max_steps=50, termination="sampled"))
    expected = (1 - 0.9 ** 50) / 0.1  # sum over t < 50 of P(alive at t) = 0.9^t
    torch.testing.assert_close(rollout_population(sampled, always_2, 2, 2)[0], torch.full((2, 2), expected))
    sampled.seed(0)
    sampled.reset(4000)
    _, _, done, _ = sampled.step(torch.full((4000,), 2))
    assert abs(done.float().mean().item() - 0.1) < 0.02  # binomial std 0.005


def test_termination_mode_is_checked():
    with pytest.raises(UserError, match="--termination must be one of threshold, sampled"):
        DreamConfig(termination="never")


def test_controllers_are_saved_and_loaded_in_one_place(tmp_path):
    run = RunDir(tmp_path / "run")
    spec = ControllerSpec.for_run(8, 16, ActionSpec("discrete", 3), hidden=4)
    with pytest.raises(UserError, match="no controller .*run `wm dream"):
        load_controller(run)
    params = np.linspace(-1, 1, spec.n_params)
    save_controller(run, spec, params, {"generation": 3})
    save_explorer(run, spec, -params, {"round": 1, "noise": 0.2})
    loaded, weights, info = load_controller(run)
    assert loaded == spec and weights.dtype == np.float32 and info == {"generation": 3}
    np.testing.assert_allclose(weights, params, rtol=1e-6)
    loaded, weights, info = load_explorer(run)
    assert loaded == spec and info == {"round": 1, "noise": 0.2} and weights[0] == pytest.approx(1.0)


def test_agents_do_not_import_the_dream_trainers():
    code = ("import sys, worldmodels.agents.loaders, worldmodels.agents.cem, worldmodels.agents.curious; "
            "print(sorted(m for m in sys.modules if m in ('worldmodels.dream.sb3', 'worldmodels.dream.cma', "
            "'worldmodels.cli')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


# --- CMA-ES: one loop, resumable from data ----------------------------------------------------

def sphere(solutions: np.ndarray, generation: int) -> np.ndarray:
    """Fitness peaking at 0.5 in every coordinate."""
    return -np.square(solutions - 0.5).sum(1)


@pytest.mark.parametrize("population", [4, 8])  # below 6, pycma mirrors samples using the last population
def test_evolve_resumed_from_data_continues_bit_for_bit(tmp_path, population):
    straight, resumed = [], []
    evolve(np.zeros(12), 0.2, population, sphere, 6, seed=3, on_generation=straight.append)
    evolve(np.zeros(12), 0.2, population, sphere, 3, seed=3, state=tmp_path / "cma", on_generation=resumed.append)
    np.random.seed(99)  # whatever ran in between
    final = evolve(np.zeros(12), 0.2, population, sphere, 6, seed=3, state=tmp_path / "cma",
                   on_generation=resumed.append)
    assert [g.number for g in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(straight, resumed):
        assert np.array_equal(a.fitness, b.fitness) and a.sigma == b.sigma and np.array_equal(a.mean, b.mean)
    assert np.array_equal(final, straight[-1].mean)
    assert straight[-1].fitness.max() > straight[0].fitness.max() + 0.1, "it optimises"
    with np.load(tmp_path / "cma.npz", allow_pickle=False) as data:  # plain numbers, no objects
        assert data["mean"].shape == (12,) and data["sm.C"].shape == (12, 12)
    assert json.loads((tmp_path / "cma.json").read_text())["generation"] == 6


class Payload:
    """Unpickling this creates the directory ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_wm_dream_never_unpickles_a_planted_cma_state(trained_catch, tmp_path, capsys):
    armed = tmp_path / "armed"
    pickle.loads(pickle.dumps(Payload(armed)))
    assert armed.is_dir(), "the payload runs when unpickled"
    run = copy_run(trained_catch, tmp_path)
    marker = tmp_path / "pwned"
    (run.controller / "cma_state.pkl").write_bytes(pickle.dumps(Payload(marker)))
    capsys.readouterr()
    assert main(["dream", "--run", str(run.root), *TINY_CMA, "--generations", "2"]) == 0
    assert not marker.exists()
    assert "resuming CMA-ES after generation 1" in capsys.readouterr().out  # from cma_state.npz + .json


# --- wm dream -------------------------------------------------------------------------------

def test_cma_es_improves_the_dream_return(trained_catch, tmp_path, monkeypatch, device):
    """On Catch's action space with a dream that pays 1 per step for action 2 (max 20 per dream)."""
    import worldmodels.dream.cma
    from worldmodels.runs.artifacts import WorldModel, load_vision

    run = copy_run(trained_catch, tmp_path)
    monkeypatch.setattr(worldmodels.dream.cma, "load_world_model", lambda run, device: WorldModel(
        load_vision(run, device), ActionMemory(z_dim=32, action_dim=3, device=device)))
    assert main(["dream", "--run", str(run.root), "--no-resume", "--generations", "6", "--population", "16",
                 "--rollouts", "2", "--dream-steps", "20", "--real-every", "0", "--sigma0", "0.5",
                 "--device", device.type]) == 0
    fitness = [g["mean"] for g in json.loads((run.controller / "history.json").read_text())["generations"]]
    assert len(fitness) == 6
    assert fitness[0] < 8  # random actions: about 20 / 3
    assert fitness[-1] > fitness[0] + 4 and fitness[-1] == max(fitness), fitness


def test_a_negative_beta_makes_model_uncertainty_a_penalty(trained_catch, tmp_path):
    """MOPO-style pessimism: the same first generation scores lower in the dream by every candidate's ensemble
    disagreement (positive everywhere), so CMA-ES is steered away from what the model does not know."""
    fitness = {}
    for beta in ("0", "-1"):
        run = copy_run(trained_catch, tmp_path / f"beta{beta}")
        assert main(["dream", "--run", str(run.root), "--no-resume", *TINY_CMA, "--generations", "1",
                     "--intrinsic", "disagreement", "--beta", beta]) == 0
        fitness[beta] = json.loads((run.controller / "history.json").read_text())["generations"][0]
    for key in ("best", "mean", "worst"):
        assert fitness["-1"][key] < fitness["0"][key] - 1.0, (key, fitness)  # about 1 per dream step of 5


def test_wm_dream_resumes_where_it_stopped(trained_catch, tmp_path, capsys):
    run = copy_run(trained_catch, tmp_path)
    dream = ["dream", "--run", str(run.root), *TINY_CMA]
    assert main([*dream, "--no-resume", "--generations", "2"]) == 0
    first = json.loads((run.controller / "history.json").read_text())["generations"]
    capsys.readouterr()
    assert main([*dream, "--generations", "4"]) == 0
    assert "resuming CMA-ES after generation 2" in capsys.readouterr().out
    history = json.loads((run.controller / "history.json").read_text())
    assert [g["generation"] for g in history["generations"]] == [1, 2, 3, 4]
    assert history["generations"][:2] == first  # continued, not restarted
    assert json.loads((run.controller / "cma_state.json").read_text())["generation"] == 4  # the saved state went on
    before = {p.name: p.read_bytes() for p in run.controller.iterdir()}
    assert main([*dream, "--generations", "4"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in run.controller.iterdir()} == before

    straight = copy_run(trained_catch, tmp_path / "straight")
    assert main(["dream", "--run", str(straight.root), *TINY_CMA, "--no-resume", "--generations", "4"]) == 0
    uninterrupted = json.loads((straight.controller / "history.json").read_text())["generations"]
    keys = ("best", "mean", "worst", "sigma")
    assert [[g[k] for k in keys] for g in uninterrupted] == [[g[k] for k in keys] for g in history["generations"]]


def test_ppo_trains_on_the_dream_and_is_evaluated(trained_catch, tmp_path):
    run = copy_run(trained_catch, tmp_path)
    assert main(["dream", "--run", str(run.root), "--algo", "ppo", "--timesteps", "256", "--envs", "4",
                 "--dream-steps", "20"]) == 0
    info = json.loads((run.controller / "sb3_ppo.json").read_text())
    assert info["algo"] == "ppo" and info["timesteps"] == 256 and Path(info["path"]).exists()  # no 2048-step rollouts
    assert main(["eval", "--run", str(run.root), "--agent", "sb3", "--episodes", "2", "--workers", "1"]) == 0
    results = json.loads((run.eval / "results.json").read_text())
    assert results["agent"] == "sb3" and len(results["returns"]) == 2


def test_wm_dream_errors_are_one_line(trained_catch, tmp_path, capsys):
    run = copy_run(trained_catch, tmp_path)
    line = wm_error(capsys, ["dream", "--run", str(run.root), "--algo", "nope"])
    assert line.startswith("wm dream: error: unknown stable-baselines3 algorithm 'nope'") and "ppo" in line
    shutil.rmtree(run.memory)
    for algo in ("cma", "ppo"):
        line = wm_error(capsys, ["dream", "--run", str(run.root), "--algo", algo])
        assert line.startswith("wm dream: error: no model in") and "memory" in line
