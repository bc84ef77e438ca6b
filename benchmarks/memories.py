"""Memory models compared: every model in ``MEMORY_MODELS`` on the same run, the same VAE, the same wall-clock budget.

    python benchmarks/memories.py [--env worldmodels.envs.catch:Catch] [--budget 60] [--episodes 12]
                                  [--hidden-size 64] [--models mdn,vrnn,rssm,srnn,svg] [--out DIR]
    python benchmarks/memories.py --run runs/laptop_mdn_s0 --hidden-size 256 --done-label carracing-off-track \
                                  --reward-smoothing 10 --transfer-root runs      # CarRacing at laptop size

Collects ``--episodes`` random-policy episodes and trains one ConvVAE (``--vae-epochs``) into
``OUT/run`` (reused when it is there; ``--run RUN`` uses that finished run's episodes, VAE and latents
instead), holds out ``--val-fraction`` of the episodes, then trains
each memory model for ``--budget`` seconds of wall clock (Adam 1e-3, grad clip 1, batches of
``--batch-size`` windows of ``--seq-len`` steps re-sampled from (mu, logvar), as ``wm train memory``)
and measures on the held-out episodes, with z the VAE means:

- ``nll``: one-step latent NLL, -ln p(z_{t+1} | z_<=t, a_<=t) (nats per step, summed over latent
  dims), teacher-forced; latent-variable models use a Monte-Carlo estimate (``--log-prob-samples``
  prior draws, biased high for few draws);
- open loop from every ``--stride``-th step: the memory's mean (temperature 0) fed back for k steps
  with the real actions (``imagine``); latent MSE (mean over dims) and decoded-frame MSE against the
  real frame (pixels in [0, 1]; the VAE's own reconstruction error is the floor) at k = 1, 10, 50;
- reward MSE and done log loss, teacher-forced, beside the constant predictor fit on the training
  episodes (skill = 1 - model / constant: above 0 beats the constant);
- training steps/s (latent transitions per second of training) and dream steps/s (``imagine``:
  ``--dreams`` dreams of 50 steps at temperature 1 with random actions, the best of 3).

Rewards and dones are the targets ``wm train memory`` gives the model (``--reward-smoothing``,
``--done-label``). With ``--transfer-root ROOT`` a second table adds each model's dream-to-real
transfer: the laptop preset's dream controller with that memory model (``benchmarks/laptop.py
--memory KIND``: ``ROOT/laptop_KIND_sS``) on full 1,000-step CarRacing episodes,
per seed and over the seeds found.

Writes ``OUT/results.json``, ``OUT/results.md`` (the tables) and ``OUT/openloop.png`` (real frames
above each model's open-loop frames from the start of a held-out episode), OUT defaulting to
``benchmarks/out/memories-ENV``; and the table with the figure into the run it used
(``RUN/compare/memories.json``, ``RUN/compare/memories_openloop.png``), where ``wm report`` shows them.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import OUT, machine
from laptop import run_name
from PIL import Image, ImageDraw

from worldmodels.collect.collector import CollectConfig, collect
from worldmodels.dream.imagine import filter_states, imagine
from worldmodels.models import MEMORY_MODELS
from worldmodels.runs.artifacts import load_vision
from worldmodels.runs.episodes import list_episodes, load_episode
from worldmodels.runs.rundir import RunDir, atomic_write_json
from worldmodels.training.fit import split_episodes
from worldmodels.training.latents import encode_latents, load_latents
from worldmodels.training.memory import memory_model_config, sequence_batches
from worldmodels.training.sequences import SequenceBatcher
from worldmodels.training.vision import VisionTrainConfig, train_vision

HORIZONS = (1, 10, 50)


def prepare_run(run: RunDir, args) -> None:
    """Collect and train the VAE once; later calls reuse them."""
    if not run.episodes.exists() or not list_episodes(run.episodes):
        kwargs = json.loads(args.env_kwargs) if args.env_kwargs else ({"balls": 8} if "catch" in args.env.lower() else {})
        collect(run, CollectConfig(env=args.env, episodes=args.episodes, workers=1, env_kwargs=kwargs), progress=False)
    if not (run.vision / "config.json").exists():
        train_vision(run, VisionTrainConfig(epochs=args.vae_epochs, salient_weight=args.salient_weight, device="cpu"),
                     progress=False)
    encode_latents(run, torch.device("cpu"), progress=False)


def train_for(model, data: SequenceBatcher, budget: float, batch_size: int) -> dict:
    """Train ``model`` until ``budget`` seconds have passed; returns updates, steps and rates."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warm = next(sequence_batches(data, batch_size, 1))  # first calls allocate and pick kernels: not timed
    model.loss(warm["z"], warm["action"], warm["reward"], warm["done"], warm["mask"])["loss"].backward()
    optimizer.zero_grad()
    updates = steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < budget:
        batch = next(sequence_batches(data, batch_size, 1))
        loss = model.loss(batch["z"], batch["action"], batch["reward"], batch["done"], batch["mask"])["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        updates += 1
        steps += int(batch["mask"].sum())
    seconds = time.perf_counter() - start
    return {"updates": updates, "train_steps": steps, "seconds": seconds, "train_steps_per_s": steps / seconds,
            "final_loss": loss.item()}


@torch.no_grad()
def evaluate(model, vae, episodes: list[dict], frames: list[np.ndarray], constants: dict, stride: int) -> dict:
    """Held-out metrics of one model (see the module docstring)."""
    nll, reward_se, done_ll, const_se, const_ll = [], [], [], [], []
    latent_se = {k: [] for k in HORIZONS}
    pixel_se = {k: [] for k in HORIZONS}
    p = constants["done_rate"]
    for e, obs in zip(episodes, frames):
        z, action = torch.from_numpy(e["mu"]), torch.from_numpy(e["action"])
        reward, done = torch.from_numpy(e["reward"]), torch.from_numpy(e["done"])
        states = filter_states(model, z[None, :-1], action[None])  # [1, T+1, ...]: state before step t
        after = tuple(s[0, 1:] for s in states)  # [T, ...]: after step t
        prediction = model.predict(after)
        nll.append(-prediction.next_z.log_prob(z[1:]))
        reward_se.append((prediction.reward - reward).pow(2))
        done_ll.append(F.binary_cross_entropy_with_logits(prediction.done_logit, done, reduction="none"))
        const_se.append((constants["reward_mean"] - reward).pow(2))
        const_ll.append(-(done * math.log(p) + (1 - done) * math.log(1 - p)))
        length = len(action)
        for k in HORIZONS:
            starts = torch.arange(0, length - k + 1, stride)
            if len(starts) == 0:
                continue
            state = tuple(s[0, starts] for s in states)
            plans = torch.stack([action[t:t + k] for t in starts.tolist()])
            predicted = imagine(model, state, z[starts], plans, temperature=0.0).latents[:, -1]
            truth = z[starts + k]
            latent_se[k].append((predicted - truth).pow(2).mean(-1))
            real = torch.from_numpy(obs[(starts + k).numpy()]).permute(0, 3, 1, 2).float() / 255
            pixel_se[k].append((vae.decode(predicted).float() - real).pow(2).mean((1, 2, 3)))

    def mean(parts: list) -> float | None:
        return torch.cat(parts).mean().item() if parts else None

    out = {"nll": mean(nll), "reward_mse": mean(reward_se), "reward_mse_constant": mean(const_se),
           "done_logloss": mean(done_ll), "done_logloss_constant": mean(const_ll)}
    out["reward_skill"] = skill(out["reward_mse"], out["reward_mse_constant"])
    out["done_skill"] = skill(out["done_logloss"], out["done_logloss_constant"])
    for k in HORIZONS:
        out[f"latent_mse_{k}"], out[f"frame_mse_{k}"] = mean(latent_se[k]), mean(pixel_se[k])
        out[f"starts_{k}"] = sum(len(x) for x in latent_se[k])
    return out


@torch.no_grad()
def dream_rate(model, starts: torch.Tensor, dreams: int, horizon: int = 50) -> float:
    """Dream transitions per second of ``imagine`` at temperature 1 with random actions (best of 3)."""
    z = starts[torch.randint(len(starts), (dreams,))]
    plans = F.one_hot(torch.randint(model.action_dim, (dreams, horizon)), model.action_dim).float()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        imagine(model, model.initial_state(dreams), z, plans, temperature=1.0)
        best = min(best, time.perf_counter() - start)
    return dreams * horizon / best


@torch.no_grad()
def openloop_strip(models: dict, vae, episode: dict, obs: np.ndarray, path: Path, steps: int = 50,
                   every: int = 5) -> None:
    """PNG: real frames k = 1, every, 2*every .. steps after the first, above each model's mean rollout."""
    steps = min(steps, len(episode["action"]))
    ks = [1, *range(every, steps + 1, every)]
    z0, action = torch.from_numpy(episode["mu"][:1]), torch.from_numpy(episode["action"][None, :steps])
    rows = {"real": obs[ks]}
    for name, model in models.items():
        latents = imagine(model, model.initial_state(1), z0, action, temperature=0.0).latents[0]
        rows[name] = (vae.decode(latents[[k - 1 for k in ks]]).float().clamp(0, 1).permute(0, 2, 3, 1) * 255).byte().numpy()
    label, size = 60, obs.shape[1]
    image = Image.new("RGB", (label + len(ks) * size, len(rows) * size + 14), "white")
    draw = ImageDraw.Draw(image)
    for j, k in enumerate(ks):
        draw.text((label + j * size + 2, 1), f"k={k}", fill="black")
    for i, (name, frames) in enumerate(rows.items()):
        draw.text((2, 14 + i * size + size // 2 - 5), name, fill="black")
        for j, frame in enumerate(frames):
            image.paste(Image.fromarray(frame), (label + j * size, 14 + i * size))
    image.save(path)


@torch.no_grad()
def reconstruction_floor(vae, episodes: list[dict], frames: list[np.ndarray]) -> float:
    """Frame MSE of the VAE decoding its own means: what a perfect latent prediction would score."""
    errors = [(vae.decode(torch.from_numpy(e["mu"])).float() - torch.from_numpy(f).permute(0, 3, 1, 2).float() / 255)
              .pow(2).mean((1, 2, 3)) for e, f in zip(episodes, frames)]
    return torch.cat(errors).mean().item()


def fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:.0f}"


def skill(error: float, constant: float) -> float | None:
    """1 - model / constant predictor's error; None where the constant is exact (VizDoom's reward is +1 every step)."""
    return None if constant == 0 else 1 - error / constant


def fmt_skill(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2f}"


def transfer_table(root: Path, kinds: list[str]) -> tuple[str, dict]:
    """Markdown and data: each model's laptop-preset dream controller on full episodes, every seed found."""
    lines = ["| model | seeds | dream controller per seed (full 1,000-step episodes, 20 tracks) | mean +- std over seeds "
             "| tracks won vs random |", "|---|---:|---|---:|---:|"]
    data = {}
    for kind in kinds:
        scores, won, tracks = {}, 0, 0
        for seed in range(10):
            eval_dir = root / run_name(seed, kind) / "eval"
            if not (eval_dir / "controller.json").exists() or not (root / run_name(seed, kind) / "pipeline.json").exists():
                continue
            controller = json.loads((eval_dir / "controller.json").read_text())
            random = json.loads((eval_dir / "random.json").read_text())
            scores[seed] = controller["mean"]
            won += int(np.sum(np.array(controller["returns"]) > np.array(random["returns"])))
            tracks += len(controller["returns"])
        if scores:
            v = np.array(list(scores.values()))
            data[kind] = {"scores": scores, "mean": float(v.mean()), "std": float(v.std()), "won": won, "tracks": tracks}
            per_seed = ", ".join(f"s{s}: {m:.1f}" for s, m in scores.items())
            lines.append(f"| {kind} | {len(scores)} | {per_seed} | {v.mean():.1f} +- {v.std():.1f} | {won}/{tracks} |")
    return "\n".join(lines), data


def write_comparison(run: RunDir, results: dict, transfer: dict, openloop: Path, args) -> None:
    """The table for ``wm report`` (``RUN/compare/memories.json``, format of ``report.page.comparisons_section``)."""
    rows = []
    for name, r in results.items():
        t = transfer.get(name)
        rows.append({"model": name, "params": f"{r['params']:,}", "updates": r["updates"],
                     "train steps/s": round(r["train_steps_per_s"]), "held-out NLL": r["nll"],
                     **{f"latent MSE k={k}": fmt(r[f"latent_mse_{k}"]) for k in HORIZONS},
                     **{f"frame MSE k={k}": fmt(r[f"frame_mse_{k}"]) for k in HORIZONS},
                     "reward skill": fmt_skill(r["reward_skill"]), "done skill": fmt_skill(r["done_skill"]),
                     "dream steps/s": round(r["dream_steps_per_s"]),
                     "dream controller (real)": f"{t['mean']:.1f} +- {t['std']:.1f} ({len(t['scores'])} seeds)" if t else "-"})
    compare = run.root / "compare"
    compare.mkdir(exist_ok=True)
    shutil.copyfile(openloop, compare / "memories_openloop.png")
    atomic_write_json(compare / "memories.json", {
        "title": "Memory models compared on this run's data (benchmarks/memories.py)",
        "description": f"Every memory model trained {args.budget:.0f} s on the same episodes and VAE (hidden size "
                       f"{args.hidden_size}); held-out metrics; skill = 1 - model / constant predictor; dream "
                       "controller: the laptop preset with that memory model, full episodes, mean +- std over seeds.",
        "columns": list(rows[0]), "rows": rows, "images": ["memories_openloop.png"]})


def table(results: dict) -> str:
    head = ("| model | params | updates | train steps/s | held-out NLL (nats/step) | latent MSE k=1 / 10 / 50 "
            "| frame MSE k=1 / 10 / 50 | reward MSE (const) | reward skill | done log loss (const) | done skill "
            "| dream steps/s |")
    lines = [head, "|" + "---|" * 12]
    for name, r in results.items():
        latent = " / ".join(fmt(r[f"latent_mse_{k}"]) for k in HORIZONS)
        frame = " / ".join(fmt(r[f"frame_mse_{k}"]) for k in HORIZONS)
        lines.append(f"| {name} | {r['params']:,} | {r['updates']} | {r['train_steps_per_s']:.0f} | {r['nll']:.2f} "
                     f"| {latent} | {frame} | {fmt(r['reward_mse'])} ({fmt(r['reward_mse_constant'])}) "
                     f"| {fmt_skill(r['reward_skill'])} | {fmt(r['done_logloss'])} ({fmt(r['done_logloss_constant'])}) "
                     f"| {fmt_skill(r['done_skill'])} | {r['dream_steps_per_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="worldmodels.envs.catch:Catch", help="CarRacing-v3 or worldmodels.envs.catch:Catch")
    parser.add_argument("--env-kwargs", default="", help='JSON (default for Catch: {"balls": 8}, ~120 steps an episode)')
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--vae-epochs", type=int, default=2)
    parser.add_argument("--salient-weight", type=float, default=0.0,
                        help="the VAE's reconstruction weight on pixels unlike the mean frame (Catch's ball: 20)")
    parser.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds of training per memory model")
    parser.add_argument("--models", default=",".join(MEMORY_MODELS))
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--stride", type=int, default=5, help="open-loop starts every this many steps")
    parser.add_argument("--log-prob-samples", type=int, default=64)
    parser.add_argument("--dreams", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", type=Path, default=None, help="a finished run whose episodes, VAE and latents to use")
    parser.add_argument("--reward-smoothing", type=int, default=0)
    parser.add_argument("--done-label", default="terminated", help="terminated or carracing-off-track")
    parser.add_argument("--transfer-root", type=Path, default=None,
                        help="where benchmarks/laptop.py --memory KIND put its runs (adds the transfer table)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--transfer-only", action="store_true",
                        help="keep OUT/results.json's models and refresh only the transfer table (new seeds)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads; 1 where other jobs share the cores (an oversubscribed thread pool "
                             "slowed SRNN's training 80x here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.run is not None:
        run = RunDir(args.run)
        args.env = run.env_spec()[0]
    else:
        run = None
    out = args.out or OUT / f"memories-{str(args.env).split(':')[-1].lower()}"
    out.mkdir(parents=True, exist_ok=True)
    if run is None:
        run = RunDir(out / "run")
        prepare_run(run, args)
    if args.transfer_only:
        write_results(run, out, json.loads((out / "results.json").read_text()), args)
        return
    vae = load_vision(run).eval()
    indices = list(list_episodes(run.latents))
    train_ids, val_ids = split_episodes(indices, args.val_fraction, args.seed)
    train, held_out = (load_latents(run, ids, args.reward_smoothing, args.done_label) for ids in (train_ids, val_ids))
    action_spec, paths = run.action_spec(), list_episodes(run.episodes)
    frames = [load_episode(paths[i], action_spec)["obs"] for i in val_ids]
    rewards, dones = np.concatenate([e["reward"] for e in train]), np.concatenate([e["done"] for e in train])
    constants = {"reward_mean": float(rewards.mean()), "done_rate": float(np.clip(dones.mean(), 1e-4, 1 - 1e-4))}
    starts = torch.from_numpy(np.stack([e["mu"][0] for e in train]))
    print(f"{args.env}: {len(train_ids)} training episodes ({len(rewards)} steps), {len(val_ids)} held out "
          f"({sum(len(e['reward']) for e in held_out)} steps); {args.budget:.0f} s per model")
    results, models = {}, {}
    for kind in args.models.split(","):
        torch.manual_seed(args.seed)
        config = memory_model_config(kind, vae.z_dim, action_spec.dim, args.hidden_size)
        if hasattr(config, "log_prob_samples"):
            config.log_prob_samples = args.log_prob_samples
        model = MEMORY_MODELS[kind](config)
        data = SequenceBatcher(train, args.seq_len, seed=args.seed)
        r = {"params": sum(p.numel() for p in model.parameters()),
             **train_for(model.train(), data, args.budget, args.batch_size)}
        model.eval()
        torch.manual_seed(args.seed)
        r |= evaluate(model, vae, held_out, frames, constants, args.stride)
        r["dream_steps_per_s"] = dream_rate(model, starts, args.dreams)
        results[kind], models[kind] = r, model
        print(f"{kind}: {r['updates']} updates, held-out NLL {r['nll']:.2f}, latent MSE k=1 {fmt(r['latent_mse_1'])}",
              flush=True)
    floor = reconstruction_floor(vae, held_out, frames)
    openloop_strip(models, vae, held_out[0], frames[0], out / "openloop.png")
    info = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "constants": constants,
            "vae_frame_mse_floor": floor, "results": results}
    write_results(run, out, info, args)


def write_results(run: RunDir, out: Path, info: dict, args) -> None:
    """The tables (``OUT/results.md``, ``OUT/results.json``, ``RUN/compare/memories.json``) from ``info``, with the
    transfer table read afresh from ``--transfer-root``."""
    results, constants = info["results"], info["constants"]
    md = table(results)
    md += (f"\n\nVAE reconstruction floor of the frame MSE: {fmt(info['vae_frame_mse_floor'])}; constant predictors: "
           f"reward {constants['reward_mean']:.3f}, P(done) {constants['done_rate']:.4f}; open-loop starts "
           + ", ".join(f"k={k}: {results[next(iter(results))][f'starts_{k}']}" for k in HORIZONS) + ".")
    if args.transfer_root is not None:
        transfer, info["transfer"] = transfer_table(args.transfer_root, list(results))
        md += "\n\nDream-to-real transfer (the laptop preset with each memory model):\n\n" + transfer
    (out / "results.json").write_text(json.dumps(info, indent=2))
    write_comparison(run, results, info.get("transfer", {}), out / "openloop.png", args)
    (out / "results.md").write_text(md + "\n")
    print(md)
    print(f"-> {out}/results.json, results.md, openloop.png")


if __name__ == "__main__":
    main()
