"""``wm train vision``: the ConvVAE on the run's frames; afterwards every episode is encoded to latents.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least
from worldmodels.models import ConvVAE, VAEConfig
from worldmodels.runs.episodes import check_episodes, list_episodes, load_frames
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.runs.tensorboard import frame_grid, stage_writer
from worldmodels.training import distributed
from worldmodels.training.fit import (
    FitConfig,
    already_done,
    fit,
    prepare_stage,
    split_episodes,
    staged,
)
from worldmodels.training.latents import encode_latents


@dataclass
class VisionTrainConfig(FitConfig):
    """ConvVAE training. lr 1e-3 learns at laptop scale (the paper's 1e-4 was set for 10M frames)."""

    z_dim: int = 32
    """Size of the VAE latent z."""
    kl_tolerance: float = 0.5
    """Free nats per latent dimension: the KL term is not pushed below z_dim x this (Ha & Schmidhuber)."""
    salient_weight: float = 0.0
    """Reconstruction weight 1 + this x (a pixel's difference from the batch's mean frame, in [0, 1]): keeps
    small objects the plain loss (0) blurs away, e.g. PointMass's 4-pixel dot."""
    kl_weight: float = 1.0
    """beta of a beta-VAE (Higgins et al. 2017): the KL term's weight; above 1 trades reconstruction for a
    smoother latent."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, 1, "z_dim")
        require_at_least(self, 0, "kl_tolerance", "salient_weight", "kl_weight")


def frame_batches(frames: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[dict]:
    """One epoch of VAE batches: uint8 ``frames`` ``[N, 64, 64, 3]``, shuffled, ``batch_size`` at a time."""
    order = torch.randperm(len(frames), generator=generator)
    for i in range(0, len(order), batch_size):
        yield {"frames": frames[order[i:i + batch_size]]}


def fit_vision(run: RunDir, config: VisionTrainConfig, model_config: VAEConfig, target: Path, device: torch.device,
               episodes: dict[int, Path], progress: bool) -> dict:
    """Train a ConvVAE on ``episodes`` into the stage directory ``target``; returns ``fit``'s summary."""
    torch.manual_seed(config.seed)
    train_ids, val_ids = split_episodes(list(episodes), config.val_fraction, config.seed)
    distributed.on_main(atomic_write_json, target / "split.json", {"train": train_ids, "val": val_ids})
    train_frames = torch.from_numpy(load_frames([episodes[i] for i in train_ids]))
    val_frames = torch.from_numpy(load_frames([episodes[i] for i in val_ids]))
    model = ConvVAE(model_config).to(device)
    rng = torch.Generator().manual_seed(config.seed)

    def val_batches():
        for i in range(0, len(val_frames), 256):
            yield {"frames": val_frames[i:i + 256]}

    sample = val_frames[torch.linspace(0, len(val_frames) - 1, 8).long()]
    writer = stage_writer(run, "vision", config, enabled=distributed.is_main())

    @torch.no_grad()
    def log_media(step: int):
        recon = model.decode(model.encode(sample.to(device))[0]).float().cpu()
        real = sample.permute(0, 3, 1, 2).float() / 255
        writer.add_image("vision/real_vs_reconstruction", frame_grid(torch.stack([real, recon])), step)

    print(f"vision: ConvVAE z={config.z_dim} on {len(train_frames)} frames "
          f"({len(train_ids)} episodes, {len(val_frames)} held out) on {device}")
    done = fit("vision", model, target, epochs=config.epochs, patience=config.patience, lr=config.lr,
               device=device, writer=writer,
               train_batches=lambda _: frame_batches(train_frames, config.batch_size, rng),
               batches_per_epoch=math.ceil(len(train_frames) / config.batch_size), val_batches=val_batches,
               units=lambda b: len(b["frames"]), unit="frames", log_media=log_media, progress=progress,
               data=list(episodes))
    writer.close()
    return done


def train_vision(run: RunDir, config: VisionTrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train the ConvVAE on the run's frames; then encode every episode to ``RUN/latents``."""
    device = pick_device(config.device)
    distributed.init(device)
    episodes = list_episodes(run.episodes)
    if not episodes:
        raise UserError(f"no episodes in {run.episodes}: run `wm collect ENV --run {run.root}` first")
    check_episodes(list(episodes.values()), run.action_spec())
    model_config = VAEConfig(z_dim=config.z_dim, kl_tolerance=config.kl_tolerance,
                             salient_weight=config.salient_weight, kl_weight=config.kl_weight)
    with staged(run.vision, resume) as target:
        distributed.on_main(prepare_stage, target, "vae", model_config)
        done = already_done(target, config.epochs, list(episodes))
        if done is None:
            done = fit_vision(run, config, model_config, target, device, episodes, progress)
        else:
            print(f"vision: already trained ({done['epochs']} epochs, best val {done['best_val_loss']:.2f}); "
                  "nothing to do")
    distributed.on_main(encode_latents, run, device, progress=progress)
    return done
