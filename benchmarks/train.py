"""Training throughput: ``wm train``'s data path vs the same training on pre-made tensors on the device.

    python benchmarks/train.py [--run RUN] [--episodes 16] [--batch-size 64] [--frames 640] [--seq-len 64]
                               [--memory-batch-size 32] [--hidden-size 256] [--repeats 5] [--devices cpu cuda]
                               [--channels-last] [--frames-on-device] [--skip-memory]

Both sides run ``worldmodels.training.fit.fit`` (Adam, autocast on CUDA, the progress bookkeeping), so
the ratio isolates the data path. Vision: the real path is ``frame_batches`` (uint8 frames in
memory, a random permutation, each batch moved to the device and converted inside the ConvVAE);
the bound feeds float frames already on the device. On CUDA, ``fit`` trains under bf16 autocast;
``--channels-last`` puts the ConvVAE in channels-last layout (the HWC frames, permuted, already
are), and ``--frames-on-device`` keeps the uint8 frames on the device (a 64x64 frame is 12 KB,
so 100k frames take 1.2 GB), so a batch is a gather there instead of a host copy. Memory (MDN-RNN): the real path is
``sequence_batches`` (``SequenceBatcher`` windows re-sampled from (mu, logvar) each batch, moved
to the device); the bound cycles batches sampled beforehand and already on the device. Latents
come from an untrained ConvVAE (the data path does not care). The rate is ``fit``'s own
(frames/s or steps/s of the training loop), the best of ``--repeats`` one-epoch fits per side
(the one least disturbed by other processes; all are saved), the sides interleaved. Without ``--run``, a Catch run
(8 balls, ~120 steps an episode) is collected to ``benchmarks/out/catch-run``. Prints a Markdown
table; saves JSON to ``benchmarks/out/train.json``. ratio = real / bound; goal >= 0.9.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import tempfile
from pathlib import Path

import torch
from common import OUT, machine

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.models import MDNRNN, ConvVAE, MDNRNNConfig, VAEConfig
from worldmodels.runs.episodes import list_episodes, load_episode, load_frames
from worldmodels.runs.rundir import RunDir
from worldmodels.training.fit import fit
from worldmodels.training.memory import sequence_batches
from worldmodels.training.sequences import SequenceBatcher
from worldmodels.training.vision import frame_batches


class NullWriter:
    """Stands in for TensorBoard's SummaryWriter."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def flush(self) -> None:
        pass


def one_epoch(model: torch.nn.Module, device: torch.device, batches, count: int, units, unit: str,
              grad_clip: float | None = None) -> float:
    """``fit`` for one epoch in a scratch directory (validating on its first batch); returns its rate (``unit``/s)."""
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        summary = fit("bench", model, Path(tmp), epochs=1, patience=1, lr=1e-4, device=device, writer=NullWriter(),
                      train_batches=lambda _: batches(), batches_per_epoch=count, val_batches=lambda: itertools.islice(batches(), 1),
                      units=units, unit=unit, grad_clip=grad_clip, progress=False)
    return summary["history"][0]["rate"]


def compare(name: str, model, device: torch.device, real, bound, count: int, units, unit: str, repeats: int,
            grad_clip: float | None = None) -> dict:
    """Best rates of the real data path and the pre-made bound, interleaved, after a warm-up."""
    one_epoch(model, device, bound, count, units, unit, grad_clip)
    rates = {"real": [], "bound": []}
    for _ in range(repeats):
        for side, batches in (("real", real), ("bound", bound)):
            rates[side].append(one_epoch(model, device, batches, count, units, unit, grad_clip))
    real_rate, bound_rate = max(rates["real"]), max(rates["bound"])
    return {"model": name, "device": str(device), "unit": unit, "batches_per_epoch": count,
            "real": real_rate, "bound": bound_rate, "ratio": real_rate / bound_rate, "all_rates": rates}


def bench_vision(frames: torch.Tensor, device: torch.device, batch_size: int, repeats: int,
                 channels_last: bool = False, frames_on_device: bool = False) -> dict:
    model = ConvVAE(VAEConfig()).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    count = math.ceil(len(frames) / batch_size)
    premade = frames.to(device).float()  # the same frames, already floats on the device
    rng = torch.Generator().manual_seed(0)
    if frames_on_device:
        frames = frames.to(device)

    def bound():
        for i in range(0, len(premade), batch_size):
            yield {"frames": premade[i:i + batch_size]}

    options = [o for o, on in (("bf16", device.type == "cuda"), ("channels-last", channels_last),
                               ("frames on device", frames_on_device)) if on]
    name = f"ConvVAE ({', '.join(options)})" if options else "ConvVAE"
    result = compare(name, model, device, lambda: frame_batches(frames, batch_size, rng), bound, count,
                     lambda b: len(b["frames"]), "frames", repeats)
    return result | {"batch_size": batch_size, "frames": len(frames), "channels_last": channels_last,
                     "frames_on_device": frames_on_device, "autocast": "bf16" if device.type == "cuda" else None}


def bench_memory(episodes: list[dict], device: torch.device, batch_size: int, seq_len: int, hidden_size: int,
                 batches: int, repeats: int) -> dict:
    data = SequenceBatcher(episodes, seq_len, seed=0)
    z_dim, action_dim = episodes[0]["mu"].shape[1], episodes[0]["action"].shape[1]
    model = MDNRNN(MDNRNNConfig(z_dim=z_dim, action_dim=action_dim, hidden_size=hidden_size)).to(device)
    premade = [{k: v.to(device) for k, v in b.items()} for b in sequence_batches(data, batch_size, 8)]

    def bound():
        yield from itertools.islice(itertools.cycle(premade), batches)

    result = compare("MDN-RNN", model, device, lambda: sequence_batches(data, batch_size, batches), bound, batches,
                     lambda b: int(b["mask"].sum()), "steps", repeats, grad_clip=1.0)
    return result | {"batch_size": batch_size, "seq_len": seq_len, "hidden_size": hidden_size, "steps": data.steps}


@torch.no_grad()
def latent_episodes(run: RunDir) -> list[dict]:
    """The run's episodes as ``SequenceBatcher`` input, encoded by an untrained ConvVAE."""
    vae, action_spec, out = ConvVAE(VAEConfig()).eval(), run.action_spec(), []
    for path in list_episodes(run.episodes).values():
        episode = load_episode(path, action_spec)
        mu, logvar = vae.encode(torch.from_numpy(episode["obs"]))
        out.append({"mu": mu.numpy(), "logvar": logvar.numpy(), "reward": episode["reward"],
                    "done": episode["terminated"].astype("float32"),
                    "action": action_spec.to_model(torch.from_numpy(episode["action"])).numpy()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=None, help="a collected run (default: collect Catch to benchmarks/out)")
    parser.add_argument("--episodes", type=int, default=16, help="episodes to collect without --run")
    parser.add_argument("--batch-size", type=int, default=64, help="VAE batch (wm train's default 64)")
    parser.add_argument("--frames", type=int, default=640, help="frames in a timed VAE epoch")
    parser.add_argument("--memory-batch-size", type=int, default=32, help="memory batch (default 32)")
    parser.add_argument("--seq-len", type=int, default=64, help="memory window (default 64)")
    parser.add_argument("--hidden-size", type=int, default=256, help="MDN-RNN size (default 256)")
    parser.add_argument("--memory-batches", type=int, default=20, help="memory batches in a timed epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per side (the best counts)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--channels-last", action="store_true", help="ConvVAE in channels-last memory layout")
    parser.add_argument("--frames-on-device", action="store_true", help="data path: uint8 frames kept on the device")
    parser.add_argument("--skip-memory", action="store_true", help="time the ConvVAE only")
    args = parser.parse_args()

    if args.run is None:
        run = RunDir(OUT / "catch-run")
        collect(run, CollectConfig(env="worldmodels.envs.catch:Catch", episodes=args.episodes, workers=1,
                                   env_kwargs={"balls": 8}), progress=False)
    else:
        run = RunDir(args.run)
    frames = torch.from_numpy(load_frames(list(list_episodes(run.episodes).values()))[:args.frames])
    episodes = [] if args.skip_memory else latent_episodes(run)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for name in devices:
        device = torch.device(name)
        results.append(bench_vision(frames, device, args.batch_size, args.repeats, args.channels_last,
                                    args.frames_on_device))
        if not args.skip_memory:
            results.append(bench_memory(episodes, device, args.memory_batch_size, args.seq_len, args.hidden_size,
                                        args.memory_batches, args.repeats))

    print("| device | model | batch | wm train data path | pre-made on device | ratio |")
    print("|---|---|---|---|---|---|")
    for r in results:
        batch = f"{r['batch_size']} frames" if r["unit"] == "frames" else f"{r['batch_size']} x {r['seq_len']} steps"
        print(f"| {r['device']} | {r['model']} | {batch} | {r['real']:,.0f} {r['unit']}/s | "
              f"{r['bound']:,.0f} {r['unit']}/s | {r['ratio']:.2f} |")
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "args": vars(args), "run": str(run.root), "frames": len(frames),
              "results": results}
    (OUT / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {OUT / 'train.json'}")


if __name__ == "__main__":
    main()
