"""``wm train memory``: the MDN-RNN or VRNN on windows of latent sequences, with reward and done heads.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from worldmodels.core.device import pick_device
from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least
from worldmodels.dream.imagine import imagine
from worldmodels.models import MEMORY_CONFIGS, MEMORY_MODELS, ConvVAE
from worldmodels.runs.artifacts import (
    check_memory_fits,
    load_state,
    load_vision,
    weights_id,
)
from worldmodels.runs.episodes import list_episodes
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
from worldmodels.training.labels import DONE_LABELS
from worldmodels.training.latents import encode_latents, load_latents
from worldmodels.training.sequences import SequenceBatcher


@dataclass
class MemoryTrainConfig(FitConfig):
    """MDN-RNN / VRNN / ... training on windows of ``seq_len`` steps re-sampled from (mu, logvar)."""

    epochs: int = 20
    batch_size: int = 32
    kind: str = field(default="mdn", metadata={"flag": "memory", "choices": list(MEMORY_MODELS)})
    """Memory model (see worldmodels.models.MEMORY_MODELS)."""
    seq_len: int = 64
    """Memory training window, in steps."""
    hidden_size: int = 256
    """Recurrent state size h of the memory model."""
    batches_per_epoch: int | None = field(default=None, metadata={"none": "one pass over the training steps"})
    """Memory batches per epoch."""
    reward_weight: float = 1.0
    """Weight of the reward loss against the latent NLL (which is tens of nats)."""
    done_weight: float = 1.0
    """Weight of the done loss (BCE, terminal steps weighted x10) against the latent NLL: deaths that end
    the dream (VizDoom) are one step per episode, and h learns to foresee them only if they weigh."""
    reward_smoothing: int = 1
    """Train the reward head on rewards spread over this many steps before each (1: none; see smooth_rewards)."""
    done_label: str = field(default="terminated", metadata={"choices": list(DONE_LABELS)})
    """What the done head learns: the env's termination, or a label read off the frames (carracing-off-track:
    dreams end where the car leaves the track)."""
    hit_cost: float = 0.0
    """Subtract this from the reward head's target at each step whose next frame shows a hit (ViZDoom's damage
    flash: ``labels.doom_hits``), so dreams punish every fireball that lands; 0: the env's reward alone."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this (0: no clipping)."""
    cell_features: bool = False
    """MDN-RNN only: the controller sees the LSTM's cell state c beside h, as Ha's VizDoom controller does."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, 1, "seq_len", "hidden_size", "batches_per_epoch", "reward_smoothing")
        require_at_least(self, 0, "reward_weight", "done_weight", "grad_clip", "hit_cost")
        if self.cell_features and self.kind != "mdn":
            raise UserError(f"--cell-features needs the MDN-RNN (an LSTM's cell state), not --memory {self.kind}")


def sequence_batches(data: SequenceBatcher, batch_size: int, count: int) -> Iterator[dict]:
    """``count`` random memory batches from ``data`` as tensors (shapes in ``SequenceBatcher``)."""
    for _ in range(count):
        yield {k: torch.from_numpy(v) for k, v in data.sample(batch_size).items()}


def memory_model_config(kind: str, z_dim: int, action_dim: int, hidden_size: int, reward_weight: float = 1.0,
                        done_weight: float = 1.0, cell_features: bool = False):
    if kind not in MEMORY_MODELS:
        raise UserError(f"unknown memory model {kind!r}; choose one of {', '.join(MEMORY_MODELS)}")
    extra = {"cell_features": True} if cell_features else {}  # the MDN-RNN's only (MemoryTrainConfig checks)
    return MEMORY_CONFIGS[kind](z_dim=z_dim, action_dim=action_dim, hidden_size=hidden_size,
                                reward_weight=reward_weight, done_weight=done_weight, **extra)


def fit_memory(run: RunDir, config: MemoryTrainConfig, model_config, target: Path, device: torch.device,
               vae: ConvVAE, data: list, progress: bool) -> dict:
    """Train a memory model on the run's latents into the stage directory ``target``; returns ``fit``'s summary."""
    torch.manual_seed(config.seed)
    train_ids, val_ids = split_episodes(list(list_episodes(run.latents)), config.val_fraction, config.seed)
    train_data = SequenceBatcher(load_latents(run, train_ids, config.reward_smoothing, config.done_label, config.hit_cost),
                                 config.seq_len, seed=config.seed)
    val_data = SequenceBatcher(load_latents(run, val_ids, config.reward_smoothing, config.done_label, config.hit_cost),
                               config.seq_len, seed=config.seed + 1)
    model = MEMORY_MODELS[config.kind](model_config).to(device)
    check_memory_fits(model, run, vae)
    per_epoch = config.batches_per_epoch or max(1, train_data.steps // (config.batch_size * config.seq_len))

    def tensors(batch: dict) -> dict:
        return {k: torch.from_numpy(v) for k, v in batch.items()}

    def val_batches():
        for batch in val_data.iterate(config.batch_size):
            yield tensors(batch)

    writer = stage_writer(run, "memory", config, enabled=distributed.is_main())
    vae = vae.to(device)
    strip = val_data.window(np.array([0]), np.array([0]))

    @torch.no_grad()
    def log_media(step: int):
        writer.add_image("memory/real_vs_dreamed", dream_strip(model, vae, tensors(strip), device), step)

    print(f"memory: {config.kind.upper()} h={config.hidden_size} on {train_data.steps} steps "
          f"({len(train_ids)} episodes, {val_data.steps} held out), {per_epoch} batches/epoch on {device}")
    summary = fit("memory", model, target, epochs=config.epochs, patience=config.patience, lr=config.lr,
                  device=device, writer=writer,
                  train_batches=lambda _: sequence_batches(train_data, config.batch_size, per_epoch),
                  batches_per_epoch=per_epoch, val_batches=val_batches, units=lambda b: int(b["mask"].sum()),
                  unit="steps", grad_clip=config.grad_clip, log_media=log_media, progress=progress,
                  data=data)
    writer.close()
    return summary


def trained_on_vision(directory: Path) -> str | None:
    """The id of the vision model whose latents the memory stage in ``directory`` was trained on
    (finished: ``summary.json``; interrupted: ``last.pt``'s data), None when it holds none."""
    if (directory / "summary.json").exists():
        return json.loads((directory / "summary.json").read_text()).get("vision")
    if (directory / "last.pt").exists():
        data = load_state(directory / "last.pt").get("data") or [None]
        return data[0]
    return None


def train_memory(run: RunDir, config: MemoryTrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train the MDN-RNN or VRNN on the run's latent sequences."""
    device = pick_device(config.device)
    distributed.init(device)
    vae = load_vision(run, "cpu")
    distributed.on_main(encode_latents, run, device, progress=progress)
    action_spec = run.action_spec()
    model_config = memory_model_config(config.kind, vae.z_dim, action_spec.dim, config.hidden_size,
                                       config.reward_weight, config.done_weight, config.cell_features)
    vision_id = weights_id(run.vision)
    # retrain on new episodes, a new vision model or other targets (smoothed rewards, done labels, hit costs)
    data = [vision_id, f"reward_smoothing={config.reward_smoothing}", f"done_label={config.done_label}",
            *([f"hit_cost={config.hit_cost}"] if config.hit_cost else []), *list_episodes(run.latents)]
    previous = trained_on_vision(run.memory) if resume else None
    if previous is not None and previous != vision_id:  # its weights read another latent space
        print("memory: the vision model changed since the memory model was trained: training afresh")
        resume = False
    with staged(run.memory, resume) as target:
        distributed.on_main(prepare_stage, target, config.kind, model_config)
        summary = already_done(target, config.epochs, data)
        if summary is not None:
            print(f"memory: already trained ({summary['epochs']} epochs, best val {summary['best_val_loss']:.2f}); "
                  "nothing to do")
        else:
            summary = fit_memory(run, config, model_config, target, device, vae, data, progress)
        summary = {**summary, "vision": vision_id}  # what load_world_model checks the vision model against
        distributed.on_main(atomic_write_json, target / "summary.json", summary)
        return summary



@torch.no_grad()
def dream_strip(memory, vae: ConvVAE, window: dict, device: torch.device, steps: int = 16) -> torch.Tensor:
    """Real frames (decoded latents) above frames dreamed open-loop from the first one, same actions."""
    z = window["z"][:1].to(device)
    action = window["action"][:1, :steps].to(device)
    dreamed = imagine(memory, memory.initial_state(1), z[:, 0], action, temperature=1.0).latents[0]
    real = vae.decode(z[0, 1:len(dreamed) + 1]).float().cpu()
    fake = vae.decode(dreamed).float().cpu()
    return frame_grid(torch.stack([real, fake]))
