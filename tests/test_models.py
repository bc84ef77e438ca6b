"""The vision (ConvVAE) and memory (MDN-RNN, VRNN) models: sizes, maths, learning, interface."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from tests.conftest import DEVICES
from worldmodels.models import (
    MDNRNN,
    MEMORY_CONFIGS,
    MEMORY_MODELS,
    VRNN,
    AncestralGaussian,
    ConvVAE,
    GaussianMixture,
    MDNRNNConfig,
    Memory,
    VAEConfig,
    frames_to_uint8,
    repeat_state,
)


def square_frames(n: int, seed: int = 0) -> torch.Tensor:
    """[n, 64, 64, 3] uint8: a coloured square on a coloured background per frame."""
    g = np.random.default_rng(seed)
    frames = np.empty((n, 64, 64, 3), dtype=np.uint8)
    for i in range(n):
        frames[i] = g.integers(0, 256, 3)
        x, y = g.integers(0, 48, 2)
        frames[i, y : y + 16, x : x + 16] = g.integers(0, 256, 3)
    return torch.from_numpy(frames)


def tiny_memory(kind: str, **overrides) -> Memory:
    config = MEMORY_CONFIGS[kind](z_dim=8, action_dim=4, hidden_size=32, **overrides)
    return MEMORY_MODELS[kind](config)


def sequence_batch(batch: int = 4, steps: int = 6, z_dim: int = 8, action_dim: int = 4):
    """Random (z [B, T+1, Z], one-hot action [B, T, A], reward, done, mask [B, T])."""
    z = torch.randn(batch, steps + 1, z_dim)
    action = F.one_hot(torch.randint(0, action_dim, (batch, steps)), action_dim).float()
    reward = torch.randn(batch, steps)
    done = (torch.rand(batch, steps) < 0.2).float()
    return z, action, reward, done, torch.ones(batch, steps)


# ---------------------------------------------------------------------------------------------- vision


def test_vae_has_the_papers_parameter_count():
    assert sum(p.numel() for p in ConvVAE(VAEConfig()).parameters()) == 4_348_547


def test_vae_shapes_ranges_and_free_bits():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(z_dim=16, kl_tolerance=0.5))
    frames = square_frames(5)
    mu, logvar = vae.encode(frames)
    assert mu.shape == logvar.shape == (5, 16)
    recon = vae.decode(mu)
    assert recon.shape == (5, 3, 64, 64) and recon.min() >= 0 and recon.max() <= 1

    images = frames_to_uint8(recon)
    assert images.dtype == np.uint8 and images.shape == (5, 64, 64, 3)
    # the HWC <-> CHW conversions invert each other
    as_float = frames.permute(0, 3, 1, 2).float() / 255
    np.testing.assert_array_equal(frames_to_uint8(as_float), frames.numpy())

    torch.manual_seed(1)
    losses = vae.loss(frames)
    torch.manual_seed(1)
    recon, mu, logvar = vae(frames)
    expected_recon = (recon - as_float).pow(2).sum(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(losses["recon"], expected_recon)
    # an untrained encoder is close to the prior, so the free-bits floor (0.5 * 16 nats) applies
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    assert (kl < 8).all() and losses["kl"].item() == pytest.approx(8.0)
    torch.testing.assert_close(losses["loss"], losses["recon"] + losses["kl"])


def test_vae_learns_to_reconstruct():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig())
    frames = square_frames(32)
    optimizer = torch.optim.Adam(vae.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        losses = vae.loss(frames)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["recon"].item())
    assert all(math.isfinite(x) for x in history)
    # from ~1000 (a grey guess) to ~800: background and square colours are being encoded
    assert np.mean(history[-3:]) < 0.85 * history[0]


# ---------------------------------------------------------------------------------------------- MDN-RNN


def test_mdnrnn_parameter_count():
    model = MDNRNN(MDNRNNConfig(z_dim=32, action_dim=3, hidden_size=256, mixtures=5))
    lstm_and_mdn = sum(p.numel() for p in [*model.lstm.parameters(), *model.mdn.parameters()])
    assert lstm_and_mdn == 423_392
    # the paper's TensorFlow LSTM has a single bias vector: 4H = 1,024 fewer parameters
    assert lstm_and_mdn - model.lstm.bias_hh_l0.numel() == 422_368


def test_mdnrnn_cell_features_show_the_controller_c_beside_h():
    """Ha's VizDoom controller reads [z, h, c]: ``cell_features`` widens ``features`` only, not the LSTM."""
    torch.manual_seed(0)
    plain = MDNRNN(MDNRNNConfig(z_dim=6, action_dim=2, hidden_size=16))
    cell = MDNRNN(MDNRNNConfig(z_dim=6, action_dim=2, hidden_size=16, cell_features=True))
    cell.load_state_dict(plain.state_dict())  # the same parameters: the flag adds none
    z, action = torch.randn(3, 6), torch.randn(3, 2)
    h, c = cell.step(cell.initial_state(3), z, action)
    assert plain.hidden_size == 16 and cell.hidden_size == 32 and h.shape == (3, 16)
    torch.testing.assert_close(cell.features((h, c)), torch.cat([h, c], dim=1))
    torch.testing.assert_close(plain.features((h, c)), h)
    torch.testing.assert_close(cell.predict((h, c)).done_logit, plain.predict((h, c)).done_logit)


def reference_mixture(mix: GaussianMixture) -> D.Distribution:
    """The same mixture written with torch.distributions: K Gaussians per dim, dims independent."""
    components = D.Normal(mix.mu, mix.log_std.exp())
    return D.Independent(D.MixtureSameFamily(D.Categorical(logits=mix.logits), components), 1)


@pytest.mark.parametrize("batch, steps", [(3, 5), (1, 1), (1, 4), (4, 1)])
def test_mdn_nll_matches_torch_distributions(batch, steps):
    torch.manual_seed(0)
    config = MDNRNNConfig(z_dim=6, action_dim=2, hidden_size=16, mixtures=3)
    model = MDNRNN(config)
    z, action, reward, done, mask = sequence_batch(batch, steps, z_dim=6, action_dim=2)

    # roll the model step by step: the sequence loss and `step` share one LSTM
    state, log_probs = model.initial_state(batch), []
    for t in range(steps):
        state = model.step(state, z[:, t], action[:, t])
        mix = model.predict(state).next_z
        reference = reference_mixture(mix).log_prob(z[:, t + 1])
        torch.testing.assert_close(mix.log_prob(z[:, t + 1]), reference)
        log_probs.append(reference)

    losses = model.loss(z, action, reward, done, mask)
    torch.testing.assert_close(losses["nll"], -torch.stack(log_probs).mean())
    torch.testing.assert_close(losses["nll_per_dim"], losses["nll"] / 6)


def test_mixture_log_prob_is_stable_far_from_every_component():
    mix = GaussianMixture(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.full((2, 3, 4), -5.0))
    log_prob = mix.log_prob(torch.full((2, 3), 1e3))
    assert torch.isfinite(log_prob).all() and (log_prob < -1e6).all()


def test_temperature_concentrates_samples_on_the_dominant_component():
    torch.manual_seed(0)
    n = 20_000
    logits = torch.tensor([0.5, 0.0, 1.0]).expand(n, 1, 3)
    mu = torch.tensor([-2.0, 0.0, 3.0]).expand(n, 1, 3)
    mix = GaussianMixture(logits, mu, torch.full((n, 1, 3), math.log(0.5)))
    variances = []
    for tau in [1.0, 0.3, 0.1, 0.01]:
        samples = mix.sample(tau)[:, 0]
        expected_mean = (torch.softmax(logits[0, 0] / tau, -1) * mu[0, 0]).sum()
        assert samples.mean().item() == pytest.approx(expected_mean.item(), abs=0.06)
        variances.append(samples.var().item())
    assert variances == sorted(variances, reverse=True)
    assert mix.sample(0.01).mean().item() == pytest.approx(3.0, abs=0.01)  # the dominant mean
    assert variances[-1] < 0.01
    torch.testing.assert_close(mix.mean[0], (torch.softmax(logits[0], -1) * mu[0]).sum(-1))


def test_mdnrnn_learns_a_repeated_sequence():
    torch.manual_seed(0)
    model = tiny_memory("mdn")
    z, action, reward, done, mask = sequence_batch(batch=1, steps=20)
    z, action, reward, done, mask = (x.expand(8, *x.shape[1:]) for x in (z, action, reward, done, mask))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(60):
        losses = model.loss(z, action, reward, done, mask)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["nll"].item())
    # a standard normal latent starts near 8 * 1.42 nats; a memorised sequence goes far below
    assert history[-1] < history[0] - 10


# ---------------------------------------------------------------------------------------------- VRNN


def test_ancestral_log_prob_and_sampling_match_a_linear_gaussian():
    """z ~ N(0, 1), x | z ~ N(z, 1) has the exact marginal x ~ N(0, 2)."""
    torch.manual_seed(0)
    n = 20_000
    dist = AncestralGaussian(torch.zeros(n, 1), torch.ones(n, 1), lambda z: (z, torch.ones_like(z)), samples=256)
    x = torch.tensor([[0.0], [1.0], [-2.5]])
    few = AncestralGaussian(torch.zeros(3, 1), torch.ones(3, 1), lambda z: (z, torch.ones_like(z)), samples=4096)
    exact = D.Normal(0.0, math.sqrt(2.0)).log_prob(x[:, 0])
    torch.testing.assert_close(few.log_prob(x), exact, atol=0.05, rtol=0)
    for tau in [1.0, 0.25]:
        assert dist.sample(tau).var().item() == pytest.approx(2.0 * tau, rel=0.05)
    assert dist.mean.abs().max().item() == 0.0


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_vrnn_elbo_improves_and_stays_finite(scale):
    torch.manual_seed(0)
    model = tiny_memory("vrnn", latent_dim=4, feature_dim=32)
    z, action, reward, done, mask = sequence_batch(batch=8, steps=10)
    z = z * scale
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(60):
        losses = model.loss(z, action, reward, done, mask)
        assert all(torch.isfinite(v) for v in losses.values())
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["elbo"].item())
    assert np.mean(history[-5:]) > history[0] + 0.1 * abs(history[0])
    torch.testing.assert_close(losses["elbo"], -(losses["nll"] + losses["kl"]))


def test_vae_save_load_round_trip(tmp_path):
    vae = ConvVAE(VAEConfig(z_dim=8))
    torch.save(vae.state_dict(), tmp_path / "vision.pt")
    loaded = ConvVAE(VAEConfig(**asdict(vae.config)))
    loaded.load_state_dict(torch.load(tmp_path / "vision.pt", weights_only=True))
    frames = square_frames(2)
    for a, b in zip(vae.encode(frames), loaded.encode(frames)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["mdn", "vrnn"])
def test_memory_interface_and_dream_rollout(kind):
    """The Memory protocol as DreamEnv uses it: discrete actions fed one-hot, samples fed back."""
    torch.manual_seed(0)
    model = tiny_memory(kind)
    assert isinstance(model, Memory) and isinstance(model, MDNRNN if kind == "mdn" else VRNN)
    assert (model.z_dim, model.action_dim, model.hidden_size) == (8, 4, 32)

    batch = 16
    state = model.initial_state(batch)
    z = torch.randn(batch, 8)  # the first frame's latent, from the VAE
    with torch.no_grad():
        for _ in range(20):
            action = F.one_hot(torch.randint(0, 4, (batch,)), 4).float()
            state = model.step(state, z, action)
            prediction = model.predict(state)
            assert prediction.reward.shape == prediction.done_logit.shape == (batch,)
            assert prediction.next_z.mean.shape == (batch, 8)
            assert prediction.next_z.log_prob(z).shape == (batch,)
            z = model.sample(state, temperature=1.15)
            assert z.shape == (batch, 8) and torch.isfinite(z).all()
        assert model.features(state).shape == (batch, 32)
        # CEM-style planning: repeat each state to roll out several candidate futures
        candidates = repeat_state(state, 3)
        assert all(s.shape[0] == 3 * batch for s in candidates)
        assert model.sample(candidates, temperature=0.5).shape == (3 * batch, 8)


# ---------------------------------------------------------------------------------------------- devices


def _tensors(args) -> list[torch.Tensor]:
    """The tensors in a (nested) tuple of arguments."""
    out = []
    for a in args:
        out.extend(_tensors(a) if isinstance(a, tuple) else [a] if isinstance(a, torch.Tensor) else [])
    return out


@pytest.mark.parametrize("kind", ["mdn", "vrnn"])
def test_step_hands_the_recurrent_cell_contiguous_states(kind, device):
    """A planner expands one state to N candidates, a strided view; cuDNN refuses such an hx
    ("rnn: hx is not contiguous") where the CPU kernel accepts it, so the CPU run checks the layout."""
    model = tiny_memory(kind).to(device)
    cell = model.lstm if kind == "mdn" else model.rnn
    seen = []
    cell.register_forward_pre_hook(lambda module, args: seen.extend(t.is_contiguous() for t in _tensors(args)))
    state = tuple(s.expand(5, *s.shape[1:]) for s in model.initial_state(1))
    z = torch.randn(1, 8, device=device).expand(5, -1)
    action = F.one_hot(torch.arange(5, device=device) % 4, 4).float()
    assert not all(s.is_contiguous() for s in state)
    with torch.no_grad():
        torch.manual_seed(0)
        expanded = model.step(state, z, action)
        torch.manual_seed(0)
        copied = model.step(tuple(s.contiguous() for s in state), z.contiguous(), action)
    assert seen and all(seen), seen
    for a, b in zip(expanded, copied):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", [*DEVICES, "meta"])
@pytest.mark.parametrize("kind", ["mdn", "vrnn"])
def test_every_tensor_a_memory_returns_is_on_its_device(kind, device):
    """``meta`` stands in for an accelerator on a CPU-only machine: a tensor made without the
    model's device (``torch.zeros(...)``) lands on the CPU and shows up here."""
    device = torch.device(device)
    model = tiny_memory(kind).to(device)
    z, action, reward, done, mask = (t.to(device) for t in sequence_batch(batch=3, steps=4))
    state = model.step(model.initial_state(3), z[:, 0], action[:, 0])
    prediction = model.predict(state)
    out = [*model.initial_state(3), *state, model.features(state), model.sample(state, 0.5), prediction.reward,
           prediction.done_logit, prediction.next_z.mean, prediction.next_z.sample(1.0),
           prediction.next_z.log_prob(z[:, 1]), *model.loss(z, action, reward, done, mask).values()]
    assert {t.device.type for t in out} == {device.type}
