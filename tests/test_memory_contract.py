"""The ``Memory`` contract, checked for every model in ``MEMORY_MODELS`` (a new model gets these for free).

Shapes of every method, determinism of the predicted mean, temperature, learning on a tiny fixed
sequence, padding, contiguous states on the model's device (cpu, and cuda where available), the
consumers (CEM planner, foresight, curiosity, the dream's imagination) on an untrained model, and
end to end ``wm train memory --memory KIND`` then ``wm dream`` (CMA-ES and PPO) on a tiny Catch run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from worldmodels.agents.cem import CEMAgent, planner_config
from worldmodels.cli import main
from worldmodels.curiosity.rewards import Disagreement, Surprise
from worldmodels.dream.imagine import filter_states, imagine, sample_latent
from worldmodels.envs.make import make_env
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models import (
    MEMORY_CONFIGS,
    MEMORY_MODELS,
    ConvVAE,
    Memory,
    VAEConfig,
    repeat_state,
    select_state,
)
from worldmodels.models.rssm import RSSMConfig
from worldmodels.models.srnn import reverse_real
from worldmodels.planning.foresight import predicted_latents
from worldmodels.runs.rundir import RunDir
from worldmodels.training.memory import MemoryTrainConfig, memory_model_config

KINDS = list(MEMORY_MODELS)
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
Z, A, H = 8, 4, 32


def tiny(kind: str, device: str = "cpu") -> Memory:
    torch.manual_seed(0)
    return MEMORY_MODELS[kind](memory_model_config(kind, Z, A, H)).to(device)


def fixed_sequence(batch: int = 4, steps: int = 8, device: str = "cpu"):
    """(z [B, T+1, Z], one-hot action [B, T, A], reward, done, mask [B, T]), every row the same sequence."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, steps + 1, Z, generator=g)
    action = F.one_hot(torch.randint(0, A, (1, steps), generator=g), A).float()
    reward = torch.randn(1, steps, generator=g)
    done = torch.zeros(1, steps)
    done[0, -1] = 1.0
    return tuple(x.expand(batch, *x.shape[1:]).contiguous().to(device)
                 for x in (z, action, reward, done, torch.ones(1, steps)))


def all_tensors(*values):
    """Every tensor in ``values`` (tensors, tuples of them, dicts of them)."""
    for v in values:
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, dict):
            yield from all_tensors(*v.values())
        else:
            yield from all_tensors(*v)


def test_every_model_is_a_flag_choice_and_builds_from_the_generic_config():
    choices = next(f for f in MemoryTrainConfig.__dataclass_fields__.values() if f.name == "kind").metadata["choices"]
    assert choices == KINDS and {"mdn", "vrnn", "rssm", "srnn", "svg"} <= set(KINDS)
    assert set(MEMORY_CONFIGS) == set(KINDS)
    for kind in KINDS:
        model = MEMORY_MODELS[kind](memory_model_config(kind, Z, A, H, reward_weight=0.5))
        assert isinstance(model, Memory) and model.config.reward_weight == 0.5
        assert (model.z_dim, model.action_dim, model.hidden_size) == (Z, A, H)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_devices_and_contiguous_states(kind, device):
    model, batch = tiny(kind, device), 5
    state = model.initial_state(batch)
    z, action = torch.randn(batch, Z, device=device), F.one_hot(torch.arange(batch) % A, A).float().to(device)
    shapes = [s.shape for s in state]
    for _ in range(3):
        state = model.step(state, z, action)
        assert isinstance(state, tuple) and [s.shape for s in state] == shapes
        assert all(s.shape[0] == batch and s.is_contiguous() for s in state)
        prediction = model.predict(state)
        assert prediction.next_z.mean.shape == (batch, Z)
        assert prediction.next_z.sample(1.0).shape == model.sample(state, 0.5).shape == (batch, Z)
        assert prediction.next_z.log_prob(z).shape == prediction.reward.shape == prediction.done_logit.shape == (batch,)
        assert model.features(state).shape == (batch, H)
        z = model.sample(state, 1.0)
    losses = model.loss(*fixed_sequence(device=device))
    assert "loss" in losses and all(v.shape == () and torch.isfinite(v) for v in losses.values())
    returned = [model.initial_state(2), state, prediction.next_z.mean, prediction.next_z.sample(1.0),
                prediction.next_z.log_prob(z), prediction.reward, prediction.done_logit, model.features(state), losses]
    assert {t.device.type for t in all_tensors(*returned)} == {torch.device(device).type}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_expanded_states_step_like_contiguous_ones(kind, device):
    """Foresight and the planners hand ``step`` states expanded from batch 1 (stride 0)."""
    model = tiny(kind, device)
    one = model.step(model.initial_state(1), torch.randn(1, Z, device=device), torch.eye(A, device=device)[:1])
    expanded = tuple(s.expand(6, *s.shape[1:]) for s in one)
    z, action = torch.randn(6, Z, device=device), torch.eye(A, device=device)[torch.arange(6) % A]
    torch.manual_seed(1)
    a = model.step(expanded, z, action)
    torch.manual_seed(1)
    b = model.step(tuple(s.contiguous() for s in expanded), z, action)
    for x, y in zip(a, b):
        assert x.is_contiguous()
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("kind", KINDS)
def test_predicted_mean_is_deterministic_and_temperature_scales_samples(kind):
    model = tiny(kind)
    state = model.step(model.initial_state(256), torch.randn(1, Z).expand(256, Z), torch.eye(A)[:1].expand(256, A))
    state = tuple(s[:1].expand_as(s).contiguous() for s in state)  # 256 copies of one state
    means = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        prediction = model.predict(state)
        means.append((prediction.next_z.mean, prediction.reward, prediction.done_logit))
    for x, y in zip(*means):
        assert torch.equal(x, y)
    distribution = model.predict(state).next_z
    assert torch.equal(sample_latent(distribution, 0.0), distribution.mean)  # the dream's temperature 0
    try:
        torch.testing.assert_close(model.sample(state, 0.0), distribution.mean)
    except ValueError:
        pass  # a mixture has no temperature-0 draw: refusing is allowed, returning anything else is not
    torch.manual_seed(2)
    hot = model.sample(state, 1.0)
    torch.manual_seed(2)
    assert torch.equal(model.sample(state, 1.0), hot)
    assert not torch.equal(model.sample(state, 1.0), hot)
    cold = model.sample(state, 1e-4)
    assert hot.var(0).sum() > 0 and cold.var(0).sum() < 0.01 * hot.var(0).sum()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_loss_falls_on_a_tiny_fixed_sequence(kind, device):
    model = tiny(kind, device)
    batch = fixed_sequence(device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(120):
        loss = model.loss(*batch)["loss"]
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    # a standard-normal latent costs about Z * 1.42 = 11 nats a frame at the start; memorising the
    # sequence takes off several nats whatever the CPU or GPU (measured: 15-30 nats)
    assert np.mean(history[-10:]) < history[0] - 5, (history[0], history[-10:])


@pytest.mark.parametrize("kind", KINDS)
def test_padded_steps_do_not_change_the_loss(kind):
    model = tiny(kind)
    z, action, reward, done, mask = fixed_sequence(batch=3, steps=4)
    padded = [torch.cat([z, 1e3 * torch.randn(3, 2, Z)], 1), torch.cat([action, torch.randn(3, 2, A)], 1),
              torch.cat([reward, 50 * torch.randn(3, 2)], 1), torch.cat([done, torch.ones(3, 2)], 1),
              torch.cat([mask, torch.zeros(3, 2)], 1)]
    torch.manual_seed(1)  # sampling models draw the same noise for the real steps
    short = model.loss(z, action, reward, done, mask)
    torch.manual_seed(1)
    long = model.loss(*padded)
    for name in short:
        torch.testing.assert_close(long[name], short[name])


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_and_state_helpers(kind, tmp_path):
    model = tiny(kind)
    torch.save(model.state_dict(), tmp_path / "memory.pt")
    config = MEMORY_CONFIGS[kind](**json.loads(json.dumps(asdict(model.config))))
    loaded = MEMORY_MODELS[kind](config)
    loaded.load_state_dict(torch.load(tmp_path / "memory.pt", weights_only=True))
    z, action = torch.randn(3, Z), torch.eye(A)[:3]
    outputs = []
    for m in (model, loaded):
        torch.manual_seed(0)
        state = m.step(m.initial_state(3), z, action)
        prediction = m.predict(state)
        outputs.append((m.features(state), prediction.next_z.mean, prediction.reward, prediction.done_logit))
    for a, b in zip(*outputs):
        assert torch.equal(a, b)
    repeated = repeat_state(state, 2)
    torch.testing.assert_close(loaded.features(repeated)[::2], loaded.features(state))
    torch.testing.assert_close(loaded.predict(select_state(repeated, torch.tensor([5]))).next_z.mean,
                               loaded.predict(state).next_z.mean[2:])


@pytest.mark.parametrize("kind", KINDS)
def test_consumers_use_the_interface_only(kind):
    """The CEM agent, foresight, curiosity and imagination run unchanged on every memory model."""
    torch.manual_seed(0)
    memory = MEMORY_MODELS[kind](memory_model_config(kind, 8, 3, H)).eval()
    vision = ConvVAE(VAEConfig(z_dim=8)).eval()
    agent = CEMAgent(vision, memory, ActionSpec("discrete", 3), planner_config(horizon=3, candidates=16,
                                                                               iterations=2, elites=4))
    env = make_env("worldmodels.envs.catch:Catch", max_steps=6, balls=1)
    obs = np.stack([env.reset(seed=s)[0] for s in (1, 2)])
    actions, state = agent.act(obs, agent.reset(2))
    assert actions.shape == (2,) and state.memory[0].shape[0] == 2

    z = torch.randn(1, 8)
    plans = torch.eye(3)[torch.randint(0, 3, (5, 4))]
    with torch.no_grad():
        assert predicted_latents(memory, memory.initial_state(1), z, plans).shape == (5, 4, 8)
        imagined = imagine(memory, memory.initial_state(1), z, plans, temperature=1.0)
        assert imagined.latents.shape == (5, 4, 8) and imagined.rewards.shape == (5, 4)
        states = filter_states(memory, torch.randn(2, 4, 8), plans[:2])
    batch = {"state": tuple(s[:, 1] for s in states), "z": torch.randn(2, 8), "action": plans[:2, 1],
             "next_z": torch.randn(2, 8)}
    for model in (Surprise(memory), Disagreement(8, 3, memory)):
        assert model.intrinsic_reward(batch["state"], batch["z"], batch["action"], batch["next_z"]).shape == (2,)
        assert all(np.isfinite(v) for v in model.update(batch).values())


@pytest.fixture(scope="module")
def catch_with_vision(tmp_path_factory) -> RunDir:
    """4 Catch episodes (1 ball) and a 1-epoch VAE. Read-only: copy it."""
    root = tmp_path_factory.mktemp("contract") / "run"
    for argv in (["collect", "worldmodels.envs.catch:Catch", "--episodes", "4", "--workers", "1",
                  "--env-kwargs", '{"balls": 1}'],
                 ["train", "vision", "--epochs", "1", "--batch-size", "16"]):
        assert main([*argv, "--run", str(root)]) == 0
    return RunDir(root)


@pytest.mark.parametrize("kind", KINDS)
def test_wm_train_memory_then_wm_dream(kind, catch_with_vision, tmp_path):
    run = RunDir(shutil.copytree(catch_with_vision.root, tmp_path / "run"))
    root = str(run.root)
    assert main(["train", "memory", "--memory", kind, "--epochs", "1", "--hidden-size", str(H), "--seq-len", "8",
                 "--batch-size", "8", "--run", root]) == 0
    assert json.loads((run.memory / "config.json").read_text())["kind"] == kind
    assert main(["dream", "--run", root, "--generations", "1", "--population", "4", "--rollouts", "1",
                 "--dream-steps", "5", "--real-every", "0"]) == 0
    assert json.loads((run.controller / "history.json").read_text())["generations"]
    assert main(["dream", "--run", root, "--algo", "ppo", "--timesteps", "64", "--envs", "2",
                 "--dream-steps", "5"]) == 0


# ---------------------------------------------------------------------------------------------- model specifics


def test_rssm_latent_overshooting_adds_the_clamped_multi_step_kl():
    batch = fixed_sequence(batch=2, steps=6)
    plain = tiny("rssm")
    overshooting = MEMORY_MODELS["rssm"](RSSMConfig(z_dim=Z, action_dim=A, hidden_size=H, overshooting=3,
                                                    overshooting_scale=0.5))
    overshooting.load_state_dict(plain.state_dict())
    torch.manual_seed(3)  # the posterior path draws first: the same noise in both
    base = plain.loss(*batch)
    torch.manual_seed(3)
    extended = overshooting.loss(*batch)
    assert "overshooting" not in base and torch.isfinite(extended["overshooting"]) and extended["overshooting"] > 0
    torch.testing.assert_close(extended["loss"] - base["loss"], 0.5 * extended["overshooting"].clamp(min=3.0))
    extended["overshooting"].backward()
    assert overshooting.prior.net[0].weight.grad.abs().sum() > 0  # the multi-step priors learn from it


def test_srnn_backward_pass_covers_only_the_real_frames():
    x = torch.arange(12.0).view(2, 6, 1)
    reversed_ = reverse_real(x, torch.tensor([4, 6]))
    assert reversed_[:, :, 0].tolist() == [[3, 2, 1, 0, 4, 5], [11, 10, 9, 8, 7, 6]]
    assert torch.equal(reverse_real(reversed_, torch.tensor([4, 6])), x)
