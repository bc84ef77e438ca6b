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
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodels.core.errors import UserError
from worldmodels.core.settings import require_at_least, require_fraction, require_positive
from worldmodels.runs.artifacts import (
    load_state,
    read_config,
    save_weights,
    write_config,
)
from worldmodels.runs.rundir import atomic_torch_save, atomic_write_json
from worldmodels.training import distributed


@dataclass
class FitConfig:
    """What both training stages share; each stage's config adds its model's own settings."""

    epochs: int = 10
    """Passes over the training frames (vision) or epochs of sequence batches (memory)."""
    batch_size: int = 64
    """Frames (vision) or sequences (memory) per batch."""
    lr: float = 1e-3
    """Adam learning rate."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation (a hash of (seed, episode), stable as episodes are added)."""
    patience: int = 5
    """Early stopping: epochs without a better validation loss before training stops."""
    seed: int = 0
    """Seed of the held-out split, the initialisation and the batch order."""
    device: str = "auto"
    """auto (cuda, then mps, then cpu), cpu, cuda, cuda:N."""

    def __post_init__(self) -> None:
        require_at_least(self, 1, "epochs", "batch_size", "patience")
        require_positive(self, "lr")
        require_fraction(self, "val_fraction")


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

    ``writer`` (TensorBoard) gets, against the optimizer step, ``losses/train_K`` every 10 batches and
    ``losses/val_K``, ``charts/UNIT_per_s``, ``charts/learning_rate`` every epoch (K: each loss term).

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
        for group in optimizer.param_groups:  # the lr asked for now, not the one saved
            if group["lr"] != lr:
                print(f"{name}: learning rate {group['lr']:g} -> {lr:g}")
                group["lr"] = lr
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
                check_finite(name, values["loss"], epoch, state["step"])
                bar.set_postfix(loss=f"{values['loss']:.3f}", **{f"{unit}_s": f"{rate:.0f}"})
                for k, v in values.items():
                    writer.add_scalar(f"losses/train_{k}", v, state["step"])
        rate = seen / (time.perf_counter() - t0)
        train = {k: float(v) / max(count, 1) for k, v in totals.items()}
        val = distributed.broadcast(validate(model, val_batches(), device, amp))
        check_finite(name, train.get("loss", 0.0) + val["loss"], epoch, state["step"])
        writer.add_scalar(f"charts/{unit}_per_s", rate, state["step"])
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], state["step"])
        for k, v in val.items():
            writer.add_scalar(f"losses/val_{k}", v, state["step"])
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


def check_finite(name: str, loss: float, epoch: int, step: int) -> None:
    """Stop training with a ``UserError`` when ``loss`` is NaN or infinite; nothing of it is saved."""
    if not math.isfinite(loss):
        raise UserError(f"{name}: the loss became {loss} in epoch {epoch + 1} (step {step}); training stopped and "
                        "the last good checkpoint is kept (try a lower --lr)")


@torch.no_grad()
def validate(model, batches: Iterable[dict], device: torch.device, amp) -> dict[str, float]:
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


@contextmanager
def staged(directory: Path, resume: bool) -> Iterator[Path]:
    """The directory a training writes to: ``directory`` itself when resuming, else a staging
    directory beside it that replaces it only when the block ends without an error, so a failed
    retrain never loses the model it was meant to replace (only rank 0 touches the files)."""
    target = directory if resume else directory.with_name(f".{directory.name}.new")
    try:
        yield target
    except BaseException:
        if target != directory and distributed.is_main():
            shutil.rmtree(target, ignore_errors=True)
        raise
    distributed.on_main(promote, target, directory)


def prepare_stage(target: Path, kind: str, config) -> None:
    """Ready ``target`` (from ``staged``) for a model ``kind`` with ``config``.

    Clears what killed commands left: a staging directory of an earlier fresh start, temporary
    files of interrupted writes. An existing stage must hold the same kind of model and config.
    """
    if target.name.endswith(".new") and target.exists():
        shutil.rmtree(target)
    for tmp in target.glob(".*.tmp-*") if target.exists() else ():
        tmp.unlink()
    if (target / "config.json").exists():
        existing_kind, existing = read_config(target)
        if existing_kind != kind or asdict(existing) != asdict(config):
            raise UserError(f"{target} holds a different model ({existing_kind}: {asdict(existing)}); "
                            f"pass --no-resume to replace it with {kind}: {asdict(config)}")
    else:
        write_config(target, kind, config)


def promote(target: Path, directory: Path) -> None:
    """Put a finished staging directory ``target`` in place of ``directory`` (no-op when they are one)."""
    if target == directory:
        return
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if directory.exists():
        os.replace(directory, old)
    os.replace(target, directory)
    shutil.rmtree(old, ignore_errors=True)
