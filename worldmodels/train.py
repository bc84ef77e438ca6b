"""``wm train``: the vision model (ConvVAE) on frames, then the memory model on latent sequences.

Both stages share one loop (``fit``): a held-out split of episodes, validation each epoch, the
best checkpoint kept, early stopping, resume from ``last.pt``, TensorBoard, a progress bar.
After vision training every episode is encoded once to (mu, logvar) in ``RUN/latents``; memory
training re-samples ``z`` from them every batch, never re-running the VAE. Under ``torchrun``
(``WORLD_SIZE > 1``) the stages train data-parallel: see ``worldmodels.distributed``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodels import distributed
from worldmodels.checkpoint import (
    check_memory_fits,
    load_state,
    load_vision,
    read_config,
    save_weights,
    weights_id,
    write_config,
)
from worldmodels.data import SequenceBatcher, list_episodes, load_episode, load_frames
from worldmodels.device import pick_device
from worldmodels.errors import UserError
from worldmodels.models import MEMORY_CONFIGS, MEMORY_MODELS, ConvVAE, VAEConfig
from worldmodels.rundir import RunDir, atomic_save_npz, atomic_torch_save, atomic_write_json


@dataclass
class VisionTrainConfig:
    """ConvVAE training. lr 1e-3 learns at laptop scale (the paper's 1e-4 was set for 10M frames)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    z_dim: int = 32
    kl_tolerance: float = 0.5
    val_fraction: float = 0.1
    patience: int = 5  # epochs without a better validation loss before stopping
    seed: int = 0
    device: str = "auto"


@dataclass
class MemoryTrainConfig:
    """MDN-RNN / VRNN training on windows of ``seq_len`` steps re-sampled from (mu, logvar)."""

    kind: str = "mdn"  # "mdn" | "vrnn"
    epochs: int = 20
    batch_size: int = 32
    seq_len: int = 64
    lr: float = 1e-3
    hidden_size: int = 256
    batches_per_epoch: int | None = None  # default: one pass over the training steps
    reward_weight: float = 1.0  # weight of the reward loss against the latent NLL (tens of nats)
    reward_smoothing: int = 1  # train the reward head on rewards spread over this many steps (see smooth_rewards)
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    patience: int = 5
    seed: int = 0
    device: str = "auto"


def split_episodes(indices: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic held-out split: (train, val). With one episode, it is both.

    Each episode's side is decided by a hash of (seed, index) alone, so episodes added later
    (iterative collection) never move an episode from train to validation or back; when the
    hash holds out none (few episodes), the lowest-hash episode is held out.
    """
    if len(indices) < 2:
        return list(indices), list(indices)
    score = {i: np.random.default_rng([seed, i]).random() for i in indices}
    val = [i for i in indices if score[i] < val_fraction]
    if not val:
        val = [min(indices, key=score.get)]
    if len(val) == len(indices):
        val = val[:-1]
    return sorted(set(indices) - set(val)), sorted(val)


def image_grid(rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows of images ``[N, 3, H, W]`` -> one image ``[3, R*H, N*W]`` (for TensorBoard)."""
    return torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1).clamp(0, 1)


def frame_batches(frames: torch.Tensor, batch_size: int, generator: torch.Generator) -> Iterator[dict]:
    """One epoch of VAE batches: uint8 ``frames`` ``[N, 64, 64, 3]``, shuffled, ``batch_size`` at a time."""
    order = torch.randperm(len(frames), generator=generator)
    for i in range(0, len(order), batch_size):
        yield {"frames": frames[order[i:i + batch_size]]}


def sequence_batches(data: SequenceBatcher, batch_size: int, count: int) -> Iterator[dict]:
    """``count`` random memory batches from ``data`` as tensors (shapes in ``SequenceBatcher``)."""
    for _ in range(count):
        yield {k: torch.from_numpy(v) for k, v in data.sample(batch_size).items()}


def fit(name: str, model: torch.nn.Module, directory: Path, *, epochs: int, patience: int, lr: float,
        device: torch.device, writer, train_batches: Callable[[int], Iterable[dict]], batches_per_epoch: int,
        val_batches: Callable[[], Iterable[dict]], units: Callable[[dict], int], unit: str,
        grad_clip: float | None = None, log_media: Callable[[int], None] | None = None,
        progress: bool = True, data: list | None = None) -> dict:
    """Train ``model`` (which has ``loss(**batch) -> dict``) with Adam; resumable epoch by epoch.

    ``data`` identifies what is trained on (episode indices, ...): when a resumed stage finds other
    data (episodes collected since), it keeps its weights and optimizer but restarts early
    stopping, since the best validation loss so far was measured on another validation set.

    ``train_batches(epoch)`` yields about ``batches_per_epoch`` batches (the progress bar's total),
    lazily: the throughput logged (``unit``/s) covers loading and training, not validation.

    ``directory/last.pt`` holds model, optimizer and bookkeeping after every epoch;
    ``best.pt`` the weights with the lowest validation loss; ``summary.json`` is written when
    training ends (all epochs, or ``patience`` epochs without improvement).

    Distributed (``worldmodels.distributed``): every rank resumes from the same ``last.pt``,
    trains on its slice of each global batch with DDP, and gets rank 0's validation loss; only
    rank 0 writes files, and the others wait for it at the end.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    data = list(data or [])
    state = {"epoch": 0, "step": 0, "best_val": math.inf, "bad_epochs": 0, "history": [], "data": data}
    last = directory / "last.pt"
    if last.exists():
        saved = load_state(last, device)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {k: saved.get(k, state[k]) for k in state}
        print(f"{name}: resuming after epoch {state['epoch']} (step {state['step']})")
        if state["data"] != data and state["epoch"] < epochs:
            print(f"{name}: the training data changed (new episodes or vision model): early stopping restarts")
            state.update(best_val=math.inf, bad_epochs=0)
        state["data"] = data
    loss_fn = distributed.wrap(model, device)  # model.loss; with several ranks through DDP
    main = distributed.is_main()
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    start_time = time.perf_counter()
    stopped_early = False
    for epoch in range(state["epoch"], epochs):
        model.train()
        bar = tqdm(train_batches(epoch), total=batches_per_epoch, desc=f"{name} {epoch + 1}/{epochs}",
                   disable=not progress or not main, leave=False)
        t0, seen, count, totals = time.perf_counter(), 0, 0, {}
        for batch in bar:
            local = distributed.shard(batch)  # this rank's slice of the global batch
            if local is None:  # a tail batch smaller than the number of ranks
                continue
            seen += units(batch)
            batch = {k: v.to(device, non_blocking=True) for k, v in local.items()}
            with amp:
                losses = loss_fn(**batch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            state["step"] += 1
            count += 1
            for k, v in losses.items():  # summed on the device: no host sync per step
                totals[k] = totals.get(k, 0.0) + v.detach().float()
            if count % 10 == 0 or count == batches_per_epoch:  # read back (and log) every 10 batches
                rate = seen / (time.perf_counter() - t0)
                values = {k: float(v.detach()) for k, v in losses.items()}
                bar.set_postfix(loss=f"{values['loss']:.3f}", **{f"{unit}_s": f"{rate:.0f}"})
                for k, v in values.items():
                    writer.add_scalar(f"{name}/train_{k}", v, state["step"])
        rate = seen / (time.perf_counter() - t0)
        train = {k: float(v) / max(count, 1) for k, v in totals.items()}
        val = distributed.broadcast(evaluate(model, val_batches(), device, amp))
        writer.add_scalar(f"{name}/throughput_{unit}_per_s", rate, state["step"])
        writer.add_scalar(f"{name}/lr", optimizer.param_groups[0]["lr"], state["step"])
        for k, v in val.items():
            writer.add_scalar(f"{name}/val_{k}", v, state["step"])
        improved = val["loss"] < state["best_val"]
        if improved:
            state["best_val"], state["bad_epochs"] = val["loss"], 0
            if main:
                save_weights(directory / "best.pt", model)
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, "train_loss": train.get("loss", math.nan),
                                 "val": val, "rate": rate})
        if main:
            atomic_torch_save(last, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **state})
            if log_media is not None:
                model.eval()
                log_media(state["step"])
            writer.flush()
            tqdm.write(f"{name} epoch {epoch + 1}/{epochs}: train {train.get('loss', math.nan):.4f} "
                       f"val {val['loss']:.4f}{' *' if improved else ''} ({rate:.0f} {unit}/s)")
        if state["bad_epochs"] >= patience:
            stopped_early = True
            tqdm.write(f"{name}: no better validation loss for {patience} epochs, stopping early")
            break
    summary = {"epochs": state["epoch"], "requested_epochs": epochs, "steps": state["step"],
               "best_val_loss": state["best_val"], "stopped_early": stopped_early,
               "history": state["history"], "data": state["data"], "seconds": time.perf_counter() - start_time}
    distributed.on_main(atomic_write_json, directory / "summary.json", summary)
    return summary


@torch.no_grad()
def evaluate(model, batches: Iterable[dict], device: torch.device, amp) -> dict[str, float]:
    """Validation losses averaged over batches."""
    model.eval()
    totals, n = {}, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        with amp:
            losses = model.loss(**batch)
        for k, v in losses.items():
            totals[k] = totals.get(k, 0.0) + float(v.detach())
        n += 1
    return {k: v / max(n, 1) for k, v in totals.items()}


def already_done(directory: Path, epochs: int, data: list) -> dict | None:
    """The summary of a finished stage that needs no more epochs on the same data, else None."""
    path = directory / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if summary.get("data", []) != list(data):
        return None
    if summary["stopped_early"] or summary["epochs"] >= epochs:
        return summary
    return None


def prepare_stage(directory: Path, kind: str, config, resume: bool) -> None:
    """Start over (``resume=False``) or check an existing stage holds the same kind of model."""
    if not resume and directory.exists():
        shutil.rmtree(directory)
    if (directory / "config.json").exists():
        existing_kind, existing = read_config(directory)
        if existing_kind != kind or asdict(existing) != asdict(config):
            raise UserError(f"{directory} holds a different model ({existing_kind}: {asdict(existing)}); "
                            f"pass --no-resume to replace it with {kind}: {asdict(config)}")
    else:
        write_config(directory, kind, config)


def _writer(run: RunDir):
    if not distributed.is_main():
        return distributed.NullWriter()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run.tb))


def train_vision(run: RunDir, config: VisionTrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train the ConvVAE on the run's frames; then encode every episode to ``RUN/latents``."""
    distributed.init()
    device = pick_device(config.device)
    episodes = list_episodes(run.episodes)
    if not episodes:
        raise UserError(f"no episodes in {run.episodes}: run `wm collect ENV --run {run.root}` first")
    model_config = VAEConfig(z_dim=config.z_dim, kl_tolerance=config.kl_tolerance)
    distributed.on_main(prepare_stage, run.vision, "vae", model_config, resume)
    done = already_done(run.vision, config.epochs, list(episodes))
    if done is None:
        torch.manual_seed(config.seed)
        train_ids, val_ids = split_episodes(list(episodes), config.val_fraction, config.seed)
        distributed.on_main(atomic_write_json, run.vision / "split.json", {"train": train_ids, "val": val_ids})
        train_frames = torch.from_numpy(load_frames([episodes[i] for i in train_ids]))
        val_frames = torch.from_numpy(load_frames([episodes[i] for i in val_ids]))
        model = ConvVAE(model_config).to(device)
        rng = torch.Generator().manual_seed(config.seed)

        def val_batches():
            for i in range(0, len(val_frames), 256):
                yield {"frames": val_frames[i:i + 256]}

        sample = val_frames[torch.linspace(0, len(val_frames) - 1, 8).long()]
        writer = _writer(run)

        @torch.no_grad()
        def log_media(step: int):
            recon = model.decode(model.encode(sample.to(device))[0]).float().cpu()
            real = sample.permute(0, 3, 1, 2).float() / 255
            writer.add_image("vision/real_vs_reconstruction", image_grid([real, recon]), step)

        print(f"vision: ConvVAE z={config.z_dim} on {len(train_frames)} frames "
              f"({len(train_ids)} episodes, {len(val_frames)} held out) on {device}")
        done = fit("vision", model, run.vision, epochs=config.epochs, patience=config.patience, lr=config.lr,
                   device=device, writer=writer,
                   train_batches=lambda _: frame_batches(train_frames, config.batch_size, rng),
                   batches_per_epoch=math.ceil(len(train_frames) / config.batch_size), val_batches=val_batches,
                   units=lambda b: len(b["frames"]), unit="frames", log_media=log_media, progress=progress,
                   data=list(episodes))
        writer.close()
    else:
        print(f"vision: already trained ({done['epochs']} epochs, best val {done['best_val_loss']:.2f}); nothing to do")
    distributed.on_main(encode_latents, run, device, progress=progress)
    return done


@torch.no_grad()
def encode_latents(run: RunDir, device: torch.device, progress: bool = True) -> int:
    """Encode every episode without up-to-date latents; returns how many were encoded."""
    meta_path = run.latents / "meta.json"
    vision_id = weights_id(run.vision)
    current = json.loads(meta_path.read_text()).get("vision") if meta_path.exists() else None
    if current != vision_id:
        if run.latents.exists():
            shutil.rmtree(run.latents)  # the vision model changed (or is unknown): every latent is stale
        atomic_write_json(meta_path, {"vision": vision_id})
    done = list_episodes(run.latents)
    todo = {i: p for i, p in list_episodes(run.episodes).items() if i not in done}
    if not todo:
        return 0
    vae = load_vision(run, device)
    action_spec = run.action_spec()
    for path in tqdm(todo.values(), desc="encode latents", unit="ep", disable=not progress):
        episode = load_episode(path, action_spec)
        frames = torch.from_numpy(episode["obs"])
        mus, logvars = [], []
        for i in range(0, len(frames), 512):
            mu, logvar = vae.encode(frames[i:i + 512].to(device))
            mus.append(mu.float().cpu())
            logvars.append(logvar.float().cpu())
        atomic_save_npz(run.latents / path.name, mu=torch.cat(mus).numpy(), logvar=torch.cat(logvars).numpy(),
                        action=episode["action"], reward=episode["reward"], terminated=episode["terminated"])
    return len(todo)


def smooth_rewards(reward: np.ndarray, window: int) -> np.ndarray:
    """Spread each reward evenly over the ``window`` steps up to and including it: ``[T] -> [T]``.

    Sparse spikes (CarRacing's +3.x per new tile) are unpredictable to the step, so a reward head
    trained on them learns little more than their mean; spread out they become a function of
    where the agent is heading, learnable, and the episode's return is kept (all but up to
    ``window - 1`` steps of the first reward's spread).
    """
    if window <= 1:
        return reward
    return np.convolve(reward, np.ones(window, np.float32) / window)[window - 1:].astype(np.float32)


def load_latents(run: RunDir, indices: list[int], reward_smoothing: int = 1) -> list[dict[str, np.ndarray]]:
    """Latent episodes for memory training: mu/logvar ``[T+1, Z]``, model-side actions ``[T, A]``."""
    action_spec = run.action_spec()
    paths = list_episodes(run.latents)
    out = []
    for i in indices:
        with np.load(paths[i]) as data:
            action = torch.from_numpy(data["action"])
            out.append({"mu": data["mu"], "logvar": data["logvar"],
                        "reward": smooth_rewards(data["reward"], reward_smoothing),
                        "done": data["terminated"].astype(np.float32),
                        "action": action_spec.to_model(action).numpy()})
    return out


def memory_model_config(kind: str, z_dim: int, action_dim: int, hidden_size: int, reward_weight: float = 1.0):
    if kind not in MEMORY_MODELS:
        raise UserError(f"unknown memory model {kind!r}; choose one of {', '.join(MEMORY_MODELS)}")
    return MEMORY_CONFIGS[kind](z_dim=z_dim, action_dim=action_dim, hidden_size=hidden_size,
                                reward_weight=reward_weight)


def train_memory(run: RunDir, config: MemoryTrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Train the MDN-RNN or VRNN on the run's latent sequences."""
    distributed.init()
    device = pick_device(config.device)
    vae = load_vision(run, "cpu")
    distributed.on_main(encode_latents, run, device, progress=progress)
    action_spec = run.action_spec()
    model_config = memory_model_config(config.kind, vae.z_dim, action_spec.dim, config.hidden_size,
                                       config.reward_weight)
    distributed.on_main(prepare_stage, run.memory, config.kind, model_config, resume)
    data = [weights_id(run.vision), *list_episodes(run.latents)]  # retrain on new episodes or a new vision model
    done = already_done(run.memory, config.epochs, data)
    if done is not None:
        print(f"memory: already trained ({done['epochs']} epochs, best val {done['best_val_loss']:.2f}); nothing to do")
        return done
    torch.manual_seed(config.seed)
    train_ids, val_ids = split_episodes(list(list_episodes(run.latents)), config.val_fraction, config.seed)
    train_data = SequenceBatcher(load_latents(run, train_ids, config.reward_smoothing), config.seq_len, seed=config.seed)
    val_data = SequenceBatcher(load_latents(run, val_ids, config.reward_smoothing), config.seq_len, seed=config.seed + 1)
    model = MEMORY_MODELS[config.kind](model_config).to(device)
    check_memory_fits(model, run, vae)
    per_epoch = config.batches_per_epoch or max(1, train_data.steps // (config.batch_size * config.seq_len))

    def tensors(batch: dict) -> dict:
        return {k: torch.from_numpy(v) for k, v in batch.items()}

    def val_batches():
        for batch in val_data.iterate(config.batch_size):
            yield tensors(batch)

    writer = _writer(run)
    vae = vae.to(device)
    strip = val_data.window(np.array([0]), np.array([0]))

    @torch.no_grad()
    def log_media(step: int):
        writer.add_image("memory/real_vs_dreamed", dream_strip(model, vae, tensors(strip), device), step)

    print(f"memory: {config.kind.upper()} h={config.hidden_size} on {train_data.steps} steps "
          f"({len(train_ids)} episodes, {val_data.steps} held out), {per_epoch} batches/epoch on {device}")
    summary = fit("memory", model, run.memory, epochs=config.epochs, patience=config.patience, lr=config.lr,
                  device=device, writer=writer,
                  train_batches=lambda _: sequence_batches(train_data, config.batch_size, per_epoch),
                  batches_per_epoch=per_epoch, val_batches=val_batches, units=lambda b: int(b["mask"].sum()),
                  unit="steps", grad_clip=config.grad_clip, log_media=log_media, progress=progress,
                  data=data)
    writer.close()
    return summary


@torch.no_grad()
def dream_strip(memory, vae: ConvVAE, window: dict, device: torch.device, steps: int = 16) -> torch.Tensor:
    """Real frames (decoded latents) above frames dreamed open-loop from the first one, same actions."""
    z = window["z"][:1].to(device)
    action = window["action"][:1].to(device)
    steps = min(steps, action.shape[1])
    state = memory.initial_state(1)
    current, dreamed = z[:, 0], []
    for t in range(steps):
        state = memory.step(state, current, action[:, t])
        current = memory.sample(state, 1.0)
        dreamed.append(current)
    real = vae.decode(z[0, 1:steps + 1]).float().cpu()
    fake = vae.decode(torch.cat(dreamed)).float().cpu()
    return image_grid([real, fake])
