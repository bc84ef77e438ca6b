"""Curiosity: intrinsic rewards learn, normalisation, the wrappers, ``wm explore`` and the curious agent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from worldmodels.agents.curious import explorer_act
from worldmodels.agents.random import RandomAgent
from worldmodels.cli import main
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.collect.driver import EpisodeRecorder, drive
from worldmodels.curiosity.explore import EpisodicNovelty, ExploreConfig, Refit, planning_explorer
from worldmodels.curiosity.normalize import RewardMixer, RunningNorm
from worldmodels.curiosity.online import CuriosityWrapper, curiosity_vec_env
from worldmodels.curiosity.rewards import ICM, Disagreement, InfoGain, make_intrinsic
from worldmodels.curiosity.transitions import run_transitions
from worldmodels.envs.make import make_env
from worldmodels.envs.maze import Maze
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models import MDNRNN, VRNN, MDNRNNConfig, VRNNConfig
from worldmodels.models.controller import ControllerSpec
from worldmodels.runs.artifacts import load_explorer, load_world_model
from worldmodels.runs.episodes import load_episode
from worldmodels.runs.rundir import RunDir

Z, A = 8, 3


pytestmark = pytest.mark.usefixtures("one_thread")
ACTION = ActionSpec("discrete", A)


def transitions(n: int, seed: int, shift: float = 0.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, Z, generator=g) + shift
    action = torch.nn.functional.one_hot(torch.randint(A, (n,), generator=g), A).float()
    return {"z": z, "action": action, "next_z": 0.5 * z + action.sum(-1, keepdim=True)}


def memory_models():
    torch.manual_seed(0)
    return {"mdn": MDNRNN(MDNRNNConfig(z_dim=Z, action_dim=A, hidden_size=16, mixtures=2)),
            "vrnn": VRNN(VRNNConfig(z_dim=Z, action_dim=A, hidden_size=16, latent_dim=4, feature_dim=16))}


@pytest.mark.parametrize("kind,memory", [("surprise", "mdn"), ("surprise", "vrnn"), ("surprise", None), ("icm", None),
                                         ("disagreement", "mdn"), ("disagreement", None), ("infogain", "vrnn")])
def test_reward_falls_as_the_model_learns_a_repeated_transition(kind, memory, device):
    torch.manual_seed(0)
    mem = memory_models()[memory].to(device) if memory else None
    size = {"hidden": 32} if kind in ("icm", "disagreement") or (kind, memory) == ("surprise", None) else {}
    model = make_intrinsic(kind, mem, device, z_dim=Z, action=ACTION, **size)
    one = transitions(1, seed=1, shift=3.0)  # far from anything seen
    batch = {k: v.expand(32, -1).clone().to(device) for k, v in one.items()}
    state = mem.initial_state(32) if mem is not None else None
    batch["state"] = state
    other = {k: v.to(device) for k, v in transitions(32, seed=2, shift=-3.0).items()}  # never trained on

    def rewards():
        learnt = model.intrinsic_reward(state, batch["z"], batch["action"], batch["next_z"]).mean()
        return learnt, model.intrinsic_reward(state, other["z"], other["action"], other["next_z"]).mean()

    before, novel_before = rewards()
    for _ in range(1 if model.single_pass else 150):
        model.update(batch)
    after, novel_after = rewards()
    if kind == "surprise":  # nats: can be negative
        assert after < before - 2.0
    else:
        assert after < 0.5 * before
    # Learning is specific: the unseen transitions' reward falls by less.
    assert before - after > novel_before - novel_after


def test_infogain_posterior_moves_with_the_module_and_is_recomputed_on_load():
    model = InfoGain(Z, A, use_hidden=False)
    buffers = dict(model.named_buffers())
    assert buffers["covariance"] is model.covariance and buffers["weights"] is model.weights  # `.to(device)` moves them
    assert {"covariance", "weights"}.isdisjoint(model.state_dict())  # derived, so not saved
    batch = transitions(16, seed=1, shift=0.0)
    model.update({**batch, "state": None})
    restored = InfoGain(Z, A, use_hidden=False)
    restored.load_state_dict(model.state_dict())
    torch.testing.assert_close(restored.covariance, model.covariance)
    torch.testing.assert_close(restored.weights, model.weights)


def test_icm_features_learn_from_the_forward_loss_as_in_pathak():
    torch.manual_seed(0)
    batch = {**transitions(64, seed=0), "state": None}
    forward_only = ICM(Z, A, discrete=True, features=8, hidden=16, forward_weight=1.0)
    before = [p.detach().clone() for p in forward_only.phi.parameters()]
    forward_only.update(batch)
    assert all(not torch.equal(b, p) for b, p in zip(before, forward_only.phi.parameters()))


def test_disagreement_is_zero_for_identical_members():
    model = Disagreement(Z, A, members=4)
    with torch.no_grad():
        for layer in model.net:
            if hasattr(layer, "weight"):
                layer.weight.copy_(layer.weight[:1].expand_as(layer.weight))
                layer.bias.copy_(layer.bias[:1].expand_as(layer.bias))
    batch = transitions(16, seed=0)
    r = model.intrinsic_reward(None, batch["z"], batch["action"])
    assert r.shape == (16,) and torch.allclose(r, torch.zeros(16))


def test_running_norm_matches_numpy_over_the_stream():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 2)) for n in (1, 5, 17, 1, 40)]
    norm = RunningNorm((2,))
    for c in chunks:
        norm.update(torch.as_tensor(c))
    stream = np.concatenate(chunks)
    assert norm.count == len(stream)
    np.testing.assert_allclose(norm.mean, stream.mean(0), rtol=1e-10)
    np.testing.assert_allclose(norm.var, stream.var(0), rtol=1e-10)
    x = torch.ones(2, dtype=torch.float64)
    np.testing.assert_allclose(norm.normalize(x).numpy(), 1 / np.sqrt(stream.var(0) + 1e-8))


def test_centred_mixer_leaves_only_the_contrast_of_a_reward_with_an_offset():
    g = torch.Generator().manual_seed(0)
    stream = [40.0 + torch.randn(64, generator=g) * 2.0 / (1 + i) for i in range(50)]  # nats: offset, shrinking spread
    centred, plain = RewardMixer(beta=0.5, center=True), RewardMixer(beta=0.5)
    out = torch.cat([centred.intrinsic(r) for r in stream])
    assert abs(out.mean()) < 0.05 and out.abs().max() < 4 * 0.5  # mean 0, within a few beta
    assert torch.cat([plain.intrinsic(r) for r in stream]).mean() > 5  # uncentred: the offset dominates


@pytest.mark.parametrize("kind", ["surprise", "icm", "disagreement", "infogain"])
def test_each_rewards_normalised_scale_stays_bounded(kind):
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = curiosity_vec_env(DummyVecEnv([lambda: Maze(cells=3, max_steps=30)] * 4), kind, beta=2.0, center=True,
                             update_every=32, warmup=32, z_dim=16)
    venv.reset()
    rng = np.random.default_rng(0)
    scaled = np.array([[i["reward_intrinsic"] for i in venv.step(rng.integers(4, size=4))[3]] for _ in range(150)])
    late = scaled[20:]  # after the warm-up
    assert np.isfinite(late).all() and abs(late.mean()) < 1.0 and 0.2 < late.std() < 6.0
    assert np.abs(late).max() < 40.0


@pytest.mark.parametrize("kind", ["disagreement", "surprise"])
def test_wrapper_passes_check_env_and_trains_ppo(kind):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = CuriosityWrapper(Maze(cells=3, max_steps=30), kind, beta=0.5, update_every=32)
    check_env(env, skip_render_check=True)
    sb3_check_env(CuriosityWrapper(Maze(cells=3, max_steps=30), kind), warn=True)
    model = PPO("MlpPolicy", CuriosityWrapper(Maze(cells=3, max_steps=30), kind, latent_obs=True), n_steps=64,
                batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    env.reset(seed=0)
    infos = [env.step(env.action_space.sample())[-1] for _ in range(100)]
    assert all({"reward_extrinsic", "reward_intrinsic", "reward_intrinsic_raw"} <= set(i) for i in infos)
    assert any(i["reward_intrinsic"] > 0 for i in infos[70:])  # after the warm-up


def test_vec_env_wrapper_with_ppo():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = curiosity_vec_env(DummyVecEnv([lambda: Maze(cells=3, max_steps=20)] * 2), "icm", update_every=16)
    PPO("CnnPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu").learn(256)
    assert venv.curiosity.steps >= 256 and venv.curiosity.losses


# ------------------------------------------------------------------------------- wm explore


EXPLORE = ["--rounds", "2", "--episodes", "2", "--vision-epochs", "1", "--memory-epochs", "1",
           "--round-vision-epochs", "0", "--round-memory-epochs", "1", "--hidden-size", "16", "--seq-len", "8",
           "--batch-size", "4", "--curiosity-steps", "20", "--generations", "2", "--population", "4",
           "--rollouts", "2", "--dream-steps", "8", "--device", "cpu"]


def wm_explore(*args: str) -> None:
    assert main(["explore", *args]) == 0


@pytest.mark.parametrize("temperature, floor", [(1.0, 0.85), (2.0, 1.2)])
def test_explorer_keeps_entropy_above_a_floor_however_large_its_weights(temperature, floor):
    """CMA-ES may scale the weights up without bound; the tanh-squashed logits keep every state's action
    distribution spread (at temperature 0, the argmax explorer, entropy is 0: the floor is the sampling's)."""
    action, spec = ActionSpec("discrete", 4), ControllerSpec(in_dim=6, out_dim=4)
    params = 1000 * torch.randn(1, spec.n_params, generator=torch.Generator().manual_seed(0))
    features = torch.randn(1, 5, 6, generator=torch.Generator().manual_seed(1)).repeat_interleave(4000, 1)
    for tau, low in ((temperature, floor), (0.0, None)):
        actions = explorer_act(spec, params, features, action, tau, torch.Generator().manual_seed(2))[0]
        for state in actions.view(5, 4000):
            p = torch.bincount(state, minlength=4) / 4000.0
            entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
            assert entropy > low if low is not None else entropy == 0


def test_episodic_novelty_pays_new_latents_only_within_the_same_dream():
    novelty, start = EpisodicNovelty(), torch.zeros(2, 3)
    step = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])  # dream 0 moves 5 away, dream 1 stays
    assert novelty(start, step).tolist() == [5.0, 0.0]
    back = torch.zeros(2, 3)  # dream 0 returns to its start: nothing new
    assert novelty(step, back).tolist() == [0.0, 0.0]
    novelty.reset()  # a new batch of dreams remembers nothing
    assert novelty(back, step).tolist() == [5.0, 0.0]


def test_wm_explore_end_to_end_resumes_and_curious_collects(tmp_path):
    run = RunDir(tmp_path / "run")
    collect(run, CollectConfig(env="worldmodels.envs.maze:Maze", episodes=3, max_steps=15, workers=1,
                               env_kwargs={"cells": 3}), progress=False)
    wm_explore("--run", str(run.root), *EXPLORE, "--explorer", "cma", "--action-temperature", "3", "--noise", "0",
               "--novelty", "0.5")
    history = json.loads((run.root / "explore" / "history.json").read_text())
    assert [r["round"] for r in history["rounds"]] == [1, 2]
    saved = load_explorer(run)[2]  # the collecting explorer's settings
    assert (saved["action_temperature"], saved["noise"], saved["novelty"]) == (3.0, 0.0, 0.5)
    for r in history["rounds"]:
        assert 1 <= r["coverage_round"] <= r["coverage_total"] <= Maze(cells=3).open_states
        assert 0.8 < r["action_entropy"] <= np.log(4) + 1e-9  # sampled at temperature 3 with no noise: spread
        assert np.isfinite(r["memory_val_loss"]) and "dream_intrinsic_mean" in r
    assert sorted(int(p.stem.split("_")[1]) for p in run.episodes.glob("*.npz")) == list(range(7))
    board = EventAccumulator(str(run.tb / "explore")).Reload()  # TensorBoard's run "explore"
    assert {"explore/coverage_total", "explore/memory_val_loss"} <= set(board.Tags()["scalars"])
    returns = board.Scalars("charts/episodic_return")
    assert len(returns) == 4 and returns[0].step > 3  # 2 rounds x 2 episodes, after the 3 collected before
    stamp = (run.root / "explore" / "history.json").stat().st_mtime_ns
    wm_explore("--run", str(run.root), *EXPLORE, "--explorer", "cma")  # resumable: nothing more to do
    assert (run.root / "explore" / "history.json").stat().st_mtime_ns == stamp
    assert main(["collect", "worldmodels.envs.maze:Maze", "--run", str(run.root), "--episodes", "9", "--max-steps", "15",
                 "--workers", "1", "--agent", "curious", "--env-kwargs", '{"cells": 3}']) == 0
    assert len(list(run.episodes.glob("*.npz"))) == 9
    assert json.loads(run.meta_path.read_text())["collections"][-1]["agent"] == "curious"


class PaysForAction:
    """An intrinsic reward of 1 for taking action ``k`` and 0 otherwise: what a planner should then choose."""

    needs_next, single_pass = False, False

    def __init__(self, k: int) -> None:
        self.k = k

    def eval(self):
        return self

    def intrinsic_reward(self, state, z, action, next_z=None):
        return action[:, self.k]


def test_wm_explore_plans_for_curiosity_and_refits_after_each_episode(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    collect(run, CollectConfig(env="worldmodels.envs.maze:Maze", episodes=3, max_steps=15, workers=1,
                               env_kwargs={"cells": 3}), progress=False)
    wm_explore("--run", str(run.root), *EXPLORE, "--plan-horizon", "3", "--plan-candidates", "16",
               "--plan-iterations", "2", "--online-steps", "5", "--explorer", "mpc")
    history = json.loads((run.root / "explore" / "history.json").read_text())
    assert [r["round"] for r in history["rounds"]] == [1, 2] and history["config"]["explorer"] == "mpc"
    assert all(1 <= r["coverage_round"] <= r["coverage_total"] for r in history["rounds"])
    assert sorted(int(p.stem.split("_")[1]) for p in run.episodes.glob("*.npz")) == list(range(7))
    assert not (run.root / "explore" / "params.npz").exists()  # no controller: it plans
    curious = ["collect", "worldmodels.envs.maze:Maze", "--run", str(run.root), "--episodes", "9", "--max-steps", "15",
               "--workers", "1", "--agent", "curious", "--env-kwargs", '{"cells": 3}']
    assert main(curious) == 2 and "--explorer cma" in capsys.readouterr().err  # nothing to collect with
    assert len(list(run.episodes.glob("*.npz"))) == 7
    assert json.loads((run.vision / "config.json").read_text())["config"]["salient_weight"] == 10.0  # a fresh run's VAE

    vision, memory = load_world_model(run, "cpu")
    config = ExploreConfig(plan_horizon=3, plan_candidates=32, plan_iterations=2, online_steps=30, device="cpu")
    data = run_transitions(run, memory, "cpu")
    frame = load_episode(run.episodes / "episode_000000.npz")["obs"][:1]
    for k in range(4):  # the planner takes the action its reward pays for
        agent, _ = planning_explorer(run, config, vision, memory, PaysForAction(k), data, "cpu")
        assert agent.act(frame, agent.reset(1))[0].tolist() == [k]

    model = make_intrinsic("disagreement", memory, "cpu", action=run.action_spec(), hidden=32)
    _, after_episode = planning_explorer(run, config, vision, memory, model, data, "cpu")
    episode = load_episode(run.episodes / "episode_000006.npz")
    batch = {**data, "state": tuple(data["state"])}
    steps = len(episode["reward"])
    before = len(data["z"])
    reward = lambda: model.intrinsic_reward(batch["state"], batch["z"], batch["action"])[-steps:].mean()  # noqa: E731
    after_episode(episode)
    batch = {**data, "state": tuple(data["state"])}
    first = reward()
    assert len(data["z"]) == before + steps  # the episode's transitions joined the data
    after_episode(episode)  # seen again: refitted, it pays less
    assert reward() < 0.5 * first

    size = len(data["z"])
    after_episode(episode, start=steps - 4)  # the part of an episode not absorbed yet: its last 4 transitions
    assert len(data["z"]) == size + 4 and torch.equal(data["next_z"][-4:], data["next_z"][size - 4:size])


def test_refit_hands_each_step_to_the_model_once_every_n_steps_and_the_rest_at_the_end():
    env = make_env("worldmodels.envs.maze:Maze", max_steps=10, cells=2)
    calls = []
    recorder = EpisodeRecorder()
    refit = Refit(recorder, lambda episode, start: calls.append((start, len(episode["action"]))), every=4)
    drive(env, RandomAgent(ActionSpec.from_space(env.action_space)), 0, [recorder, refit])
    refit.flush(recorder.episode())
    refit.flush(recorder.episode())  # nothing new: no call
    assert calls == [(0, 4), (4, 8), (8, 10)]  # (first step not yet absorbed, steps recorded so far)
