"""``wm train`` end to end on a small Catch run: learning, resume, checkpoints, latents, split, TensorBoard."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from worldmodels.cli import main
from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.core.errors import UserError
from worldmodels.dream.cma import CMAConfig, train_cma
from worldmodels.dream.imagine import DreamConfig
from worldmodels.evaluation.evaluate import evaluate
from worldmodels.models import MEMORY_MODELS, ConvVAE, VAEConfig
from worldmodels.runs.artifacts import (
    build,
    load_controller,
    load_memory,
    load_vision,
    read_config,
    save_weights,
    write_config,
)
from worldmodels.runs.episodes import list_episodes, load_frames
from worldmodels.runs.rundir import RunDir
from worldmodels.training.fit import split_episodes
from worldmodels.training.latents import encode_latents, load_latents
from worldmodels.training.memory import MemoryTrainConfig, train_memory
from worldmodels.training.sequences import SequenceBatcher
from worldmodels.training.vision import VisionTrainConfig, train_vision

EPISODES = 12
# Mechanics, not capacity: a small memory model on short windows.
MEMORY_FLAGS = ["--hidden-size", "32", "--seq-len", "12", "--batch-size", "16"]


@pytest.fixture(scope="session")
def catch_run(tmp_path_factory) -> Path:
    """A collected Catch run (12 random-policy episodes), never modified: copy it with ``copy_run``."""
    root = tmp_path_factory.mktemp("catch") / "run"
    collect(RunDir(root), CollectConfig(env="worldmodels.envs.catch:Catch", episodes=EPISODES, workers=1), progress=False)
    return root


_TRAINED: dict[str, Path] = {}


def train_on(device: str, catch_run: Path, tmp_path_factory) -> Path:
    """``catch_run`` with a ConvVAE (3 epochs) and an MDN-RNN (3 epochs x 12 batches) trained on
    ``device``; built once per device and session, read-only."""
    if device not in _TRAINED:
        root = copy_run(catch_run, tmp_path_factory.mktemp(f"trained-{device}") / "run")
        run = RunDir(root)
        train_vision(run, VisionTrainConfig(epochs=3, batch_size=32, device=device), progress=False)
        train_memory(run, MemoryTrainConfig(epochs=3, hidden_size=32, seq_len=12, batch_size=16, batches_per_epoch=12,
                                            device=device), progress=False)
        _TRAINED[device] = root
    return _TRAINED[device]


@pytest.fixture
def trained_run(catch_run, tmp_path_factory) -> Path:
    """The run trained on the CPU (``train_on``); read-only."""
    return train_on("cpu", catch_run, tmp_path_factory)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def summary(stage: Path) -> dict:
    return json.loads((stage / "summary.json").read_text())


def mtimes(directory: Path, pattern: str = "*") -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(Path(directory).glob(pattern))}


def wm(*args: str | Path) -> int:
    return main(["train", *map(str, args)])


# ------------------------------------------------------------------------------------- learning


def test_vae_reconstruction_and_memory_nll_fall(catch_run, tmp_path_factory, device):
    """Each stage measured against baselines computed here on its held-out data, so the margins do
    not hang on one machine's rounding (CPU vs CUDA bf16 land within a few percent of each other)."""
    run = RunDir(train_on(device.type, catch_run, tmp_path_factory))
    vision, memory = summary(run.vision)["history"], summary(run.memory)["history"]
    assert len(vision) == 3 and len(memory) == 3
    split = json.loads((run.vision / "split.json").read_text())
    episodes = list_episodes(run.episodes)
    val = torch.from_numpy(load_frames([episodes[i] for i in split["val"]]))
    mean_frame = torch.from_numpy(load_frames([episodes[i] for i in split["train"]])).float().mean(0) / 255
    torch.manual_seed(0)
    with torch.no_grad():
        untrained_recon = ConvVAE(VAEConfig()).loss(val)["recon"].item()  # about 3,000: a grey guess
    mean_frame_recon = (val.float() / 255 - mean_frame).pow(2).sum((1, 2, 3)).mean().item()  # about 125
    # Within three epochs the VAE learns Catch's black background: from the grey guess to the
    # level of the mean training frame (the ball and paddle are a few pixels and come later).
    assert vision[-1]["train_loss"] < 0.5 * vision[0]["train_loss"]
    assert vision[0]["val"]["recon"] < 0.1 * untrained_recon
    assert vision[-1]["val"]["recon"] < min(vision[0]["val"]["recon"], 1.05 * mean_frame_recon)

    # The memory model against its own untrained initialisation, on the same held-out windows.
    _, val_ids = split_episodes(list(list_episodes(run.latents)), 0.1, seed=0)
    windows = [{k: torch.from_numpy(v) for k, v in b.items()}
               for b in SequenceBatcher(load_latents(run, val_ids), 12, seed=1).iterate(16)]
    trained = load_memory(run)
    torch.manual_seed(0)
    untrained = MEMORY_MODELS["mdn"](trained.config).eval()
    with torch.no_grad():
        nll = {name: np.mean([m.loss(**w)["nll"].item() for w in windows])
               for name, m in (("trained", trained), ("untrained", untrained))}
    assert nll["trained"] < 0.9 * nll["untrained"], nll  # about 40 against 48 nats
    assert memory[-1]["val"]["nll"] < memory[0]["val"]["nll"] and memory[-1]["train_loss"] < memory[0]["train_loss"]


def test_vrnn_trains_without_nan(trained_run, tmp_path, capsys):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    flags = [*MEMORY_FLAGS, "--batch-size", "4"]  # 10 batches an epoch
    assert wm("memory", "--run", run.root, "--memory", "vrnn", "--no-resume", "--epochs", "3", *flags) == 0
    s = summary(run.memory)
    assert read_config(run.memory)[0] == "vrnn" and s["epochs"] == 3 and s["steps"] > 0 and s["steps"] % 3 == 0
    values = [h["train_loss"] for h in s["history"]] + [v for h in s["history"] for v in h["val"].values()]
    assert all(math.isfinite(v) for v in values)
    assert {"nll", "kl", "reward", "done"} <= set(s["history"][0]["val"])
    memory = load_memory(run, vision=load_vision(run))
    assert type(memory).__name__ == "VRNN"


# ---------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("stage", ["vision", "memory"])
def test_checkpoints_load_weights_only_and_config_round_trips(trained_run, tmp_path, stage):
    directory = Path(trained_run) / stage
    best = torch.load(directory / "best.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in best.values())
    last = torch.load(directory / "last.pt", weights_only=True)
    assert last["epoch"] == 3 and len(last["history"]) == 3 and {"model", "optimizer"} <= set(last)
    kind, config = read_config(directory)
    assert json.loads((directory / "config.json").read_text()) == {"kind": kind, "config": asdict(config)}
    write_config(tmp_path, kind, config)
    assert read_config(tmp_path) == (kind, config)
    model = build(directory)
    assert not model.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in best.items())


# --------------------------------------------------------------------------------------- resume


def test_resume_continues_then_does_nothing(catch_run, tmp_path, capsys):
    run = RunDir(copy_run(catch_run, tmp_path / "run"))
    flags = ["vision", "--run", run.root, "--batch-size", "64"]
    assert wm(*flags, "--epochs", "2") == 0
    steps_per_epoch = summary(run.vision)["steps"] // 2
    capsys.readouterr()
    assert wm(*flags, "--epochs", "4") == 0
    assert "resuming after epoch 2" in capsys.readouterr().out
    s = summary(run.vision)
    assert s["epochs"] == 4 and s["steps"] == 4 * steps_per_epoch
    assert [h["epoch"] for h in s["history"]] == [1, 2, 3, 4]
    assert torch.load(run.vision / "last.pt", weights_only=True)["step"] == 4 * steps_per_epoch

    before = mtimes(run.vision) | mtimes(run.latents)
    assert wm(*flags, "--epochs", "4") == 0
    assert "already trained" in capsys.readouterr().out
    assert mtimes(run.vision) | mtimes(run.latents) == before


def test_no_resume_starts_over(trained_run, tmp_path):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    assert wm("memory", "--run", run.root, "--no-resume", "--epochs", "1", *MEMORY_FLAGS) == 0
    s = summary(run.memory)
    assert s["epochs"] == 1 and len(s["history"]) == 1
    assert torch.load(run.memory / "last.pt", weights_only=True)["step"] == s["steps"] < 36


def test_memory_trains_afresh_after_the_vision_model_changes(trained_run, tmp_path, capsys):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    old = summary(run.memory)
    assert wm("vision", "--run", run.root, "--no-resume", "--epochs", "1", "--batch-size", "64") == 0
    capsys.readouterr()
    assert wm("memory", "--run", run.root, "--epochs", "3", *MEMORY_FLAGS) == 0  # resumable, but not on new latents
    assert "vision model changed" in capsys.readouterr().out
    s = summary(run.memory)
    assert s["vision"] != old["vision"] and [h["epoch"] for h in s["history"]] == [1, 2, 3]
    assert s["history"] != old["history"]  # three new epochs, not the old ones resumed past


# ----------------------------------------------------------------------------- mismatches


def test_memory_of_another_action_space_is_refused(trained_run, tmp_path, capsys):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    meta = run.read_meta()
    meta["env"]["action_space"]["dim"] = 5  # as if memory/ came from a run with Discrete(5)
    run.write_meta(meta)
    with pytest.raises(UserError, match="actions of size 3.*size 5"):
        load_memory(run)
    before = mtimes(run.memory)
    assert wm("memory", "--run", run.root, *MEMORY_FLAGS) == 2
    err = capsys.readouterr().err
    assert "different model" in err and "--no-resume" in err and "Traceback" not in err
    assert mtimes(run.memory) == before


def test_memory_of_another_kind_is_refused(trained_run, tmp_path, capsys):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    before = mtimes(run.memory)
    assert wm("memory", "--run", run.root, "--memory", "vrnn", *MEMORY_FLAGS) == 2
    err = capsys.readouterr().err
    assert "mdn" in err and "vrnn" in err and "--no-resume" in err
    assert mtimes(run.memory) == before


def test_weights_of_another_z_size_are_refused(trained_run, tmp_path, capsys):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    save_weights(run.vision / "best.pt", ConvVAE(VAEConfig(z_dim=16)))
    with pytest.raises(UserError, match="does not fit"):
        load_vision(run)
    assert wm("memory", "--run", run.root, *MEMORY_FLAGS) == 2
    assert "does not fit the model" in capsys.readouterr().err

    (run.vision / "best.pt").write_bytes(b"not a checkpoint")
    assert wm("memory", "--run", run.root, *MEMORY_FLAGS) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_memory_of_another_z_size_is_refused(trained_run, tmp_path):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    save_weights(run.vision / "best.pt", ConvVAE(VAEConfig(z_dim=16)))
    write_config(run.vision, "vae", VAEConfig(z_dim=16))
    with pytest.raises(UserError, match="z=32, the vision model z=16"):
        load_memory(run, vision=load_vision(run))
    train_memory(run, MemoryTrainConfig(epochs=1, hidden_size=32, seq_len=12), progress=False)  # afresh, on z=16
    assert load_memory(run, vision=load_vision(run)).z_dim == 16


def test_a_controller_on_the_cell_state_trains_in_the_dream_and_plays(trained_run, tmp_path, capsys):
    """``--cell-features``: the controller reads [z, h, c] (Ha's VizDoom controller), in the dream and the real env."""
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    assert wm("memory", "--run", run.root, *MEMORY_FLAGS, "--epochs", "1", "--cell-features", "--no-resume") == 0
    memory = load_memory(run, vision=load_vision(run))
    assert memory.hidden_size == 64 and memory.features(memory.initial_state(2)).shape == (2, 64)
    train_cma(run, CMAConfig(generations=1, population=4, rollouts=1, dream=DreamConfig(max_steps=8), real_every=0,
                             select="dream", workers=1), progress=False)
    spec, _, _ = load_controller(run)
    assert spec.in_dim == memory.z_dim + 2 * 32
    assert evaluate(run, "controller", episodes=1, workers=1, progress=False, write=False)["episodes"] == 1

    assert wm("memory", "--run", run.root, *MEMORY_FLAGS, "--memory", "vrnn", "--cell-features") == 2
    assert "--cell-features needs the MDN-RNN" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------- latents


def test_latents_written_once_and_reencoded_only_when_needed(trained_run, tmp_path):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    assert set(list_episodes(run.latents)) == set(range(EPISODES))
    with np.load(list_episodes(run.latents)[0]) as latent, np.load(list_episodes(run.episodes)[0]) as episode:
        assert latent["mu"].shape == (len(episode["obs"]), 32) == latent["logvar"].shape
    before = mtimes(run.latents, "episode_*")
    assert encode_latents(run, torch.device("cpu"), progress=False) == 0
    assert mtimes(run.latents, "episode_*") == before

    shutil.copy(run.episodes / "episode_000003.npz", run.episodes / f"episode_{EPISODES:06d}.npz")
    assert encode_latents(run, torch.device("cpu"), progress=False) == 1
    after = mtimes(run.latents, "episode_*")
    assert len(after) == EPISODES + 1 and {k: after[k] for k in before} == before

    save_weights(run.vision / "best.pt", ConvVAE(VAEConfig()))  # the vision model changed
    assert encode_latents(run, torch.device("cpu"), progress=False) == EPISODES + 1
    assert all(mtimes(run.latents, "episode_*")[k] != v for k, v in before.items())


# ------------------------------------------------------------------------------------------ split


def test_split_is_deterministic_and_disjoint(trained_run):
    indices = list(range(EPISODES))
    train, val = split_episodes(indices, 0.25, seed=0)
    assert (train, val) == split_episodes(indices, 0.25, seed=0)
    assert not set(train) & set(val) and sorted(train + val) == indices and 1 <= len(val) <= 6
    assert split_episodes(indices, 0.25, seed=1) != (train, val)
    grown_train, grown_val = split_episodes(list(range(2 * EPISODES)), 0.25, seed=0)
    assert set(train) <= set(grown_train) and set(val) <= set(grown_val)  # new episodes move no old one
    assert split_episodes([7], 0.5, seed=0) == ([7], [7])
    assert len(split_episodes([0, 1], 0.9, seed=0)[1]) == 1  # always something to train on
    saved = json.loads((RunDir(trained_run).vision / "split.json").read_text())
    assert (saved["train"], saved["val"]) == split_episodes(indices, 0.1, seed=0)


# ------------------------------------------------------------------------------------ TensorBoard


def test_tensorboard_gets_scalars_and_images(trained_run):
    """One TensorBoard run per stage (``RUN/tb/STAGE``): every loss term, the rate, the lr, an image."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for stage, unit, parts, image in [("vision", "frames", ["loss", "recon", "kl"], "vision/real_vs_reconstruction"),
                                      ("memory", "steps", ["loss", "nll", "reward", "done"], "memory/real_vs_dreamed")]:
        scalars, images = set(), set()
        files = sorted((RunDir(trained_run).tb / stage).glob("events.out.tfevents.*"))
        assert files, stage
        for path in files:
            events = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 0})
            events.Reload()
            scalars |= set(events.Tags()["scalars"])
            images |= set(events.Tags()["images"])
        want = {"charts/learning_rate", f"charts/{unit}_per_s"}
        want |= {f"losses/{split}_{k}" for split in ("train", "val") for k in parts}
        assert want <= scalars, want - scalars
        assert image in images


# ------------------------------------------------------------------------------- new data, rewards


def test_memory_retrains_on_newly_collected_episodes(trained_run, tmp_path, capsys):
    run = RunDir(copy_run(trained_run, tmp_path / "run"))
    before = summary(run.memory)
    assert wm("memory", "--run", run.root, *MEMORY_FLAGS, "--epochs", "3") == 0
    assert "nothing to do" in capsys.readouterr().out  # same episodes, same epochs
    collect(run, CollectConfig(env="worldmodels.envs.catch:Catch", episodes=EPISODES + 2, workers=1), progress=False)
    assert wm("memory", "--run", run.root, *MEMORY_FLAGS, "--epochs", "4") == 0
    out = capsys.readouterr().out
    assert "the training data changed" in out and "early stopping restarts" in out
    after = summary(run.memory)
    assert len(list_episodes(run.latents)) == EPISODES + 2  # the new episodes were encoded
    assert after["epochs"] == 4 and after["steps"] > before["steps"] and after["data"] != before["data"]


def test_reward_smoothing_spreads_spikes_and_keeps_the_return():
    from worldmodels.training.latents import smooth_rewards

    reward = np.array([0, 0, 0, 3, 0, 0, -1, 0], np.float32)
    smooth = smooth_rewards(reward, 3)
    np.testing.assert_allclose(smooth, [0, 1, 1, 1, -1 / 3, -1 / 3, -1 / 3, 0], atol=1e-6)
    assert smooth.sum() == pytest.approx(reward.sum())
    assert smooth_rewards(reward, 1) is reward


def test_windows_around_a_step_hold_that_step():
    """``sample_around`` oversamples chosen steps (a sparse reward): each window holds its step, wherever it lies."""
    lengths = [3, 20, 40]  # one episode shorter than the window
    episodes = [{"mu": np.zeros((n + 1, 2), np.float32), "logvar": np.zeros((n + 1, 2), np.float32),
                 "action": np.zeros((n, 1), np.float32), "reward": 1000.0 * i + np.arange(n, dtype=np.float32),
                 "done": np.zeros(n, np.float32)} for i, n in enumerate(lengths)]
    batcher = SequenceBatcher(episodes, seq_len=8, seed=0)
    for ep, t in [(0, 0), (0, 2), (1, 0), (1, 10), (1, 19), (2, 7), (2, 39)]:
        batch = batcher.sample_around(64, np.array([ep]), np.array([t]))
        assert batch["reward"].shape == (64, 8)
        assert ((batch["reward"] == 1000.0 * ep + t) & (batch["mask"] == 1)).any(axis=1).all()
        places = set(np.argmax(batch["reward"] == 1000.0 * ep + t, axis=1).tolist())
        if (ep, t) in [(1, 10), (2, 7)]:  # room on both sides: the step's place in the window varies
            assert len(places) > 4
        if (ep, t) in [(1, 0), (2, 39)]:  # the first and last steps of an episode fix the window
            assert places == ({0} if t == 0 else {7})
