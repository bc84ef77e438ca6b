"""Time of one CEM decision in the latent space of an MDN-RNN (z=32, h=256, random weights).

Planner: H=12, N=1000, I=10, K=100 by default (``worldmodels.planning``, batched on the device).
Peer: mbrl-lib's ``mbrl.planning.CEMOptimizer`` on the same objective when ``mbrl`` imports;
a straightforward reference CEM (numpy sampling and refit each iteration, one torch model call
per iteration) in any case (``--no-reference`` skips it), so the run still gives a ratio. Each
device's rows are timed after a warm-up, with the device synchronised around each decision.
Prints a Markdown table; saves ``benchmarks/out/planning.json``.

    python benchmarks/planning.py [--repeats 5] [--devices cpu cuda] [--horizon 12] [--candidates 1000]
                                  [--iterations 10] [--elites 100] [--no-reference]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from worldmodels.models import MDNRNN, MDNRNNConfig
from worldmodels.planning.mpc import latent_returns
from worldmodels.planning.optimizers import CEMConfig, CEMOptimizer

LOW, HIGH = torch.tensor([-1.0, 0.0, 0.0]), torch.ones(3)  # CarRacing: steer, gas, brake


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def reference_cem(memory, state, z, rng: np.random.Generator, config: CEMConfig) -> np.ndarray:
    """Naive CEM: numpy Gaussian per iteration, candidates copied to torch, states repeated, numpy refit."""
    low, high = LOW.numpy(), HIGH.numpy()
    H, N, K = config.horizon, config.candidates, config.elites
    mean, std = np.zeros((H, 3)), np.ones((H, 3))
    for _ in range(config.iterations):
        samples = np.clip(rng.normal(mean, std, (N, H, 3)), low, high).astype(np.float32)
        actions = torch.from_numpy(samples).to(z.device)
        s = tuple(t.repeat(N, 1) for t in state)
        zt, returns = z.repeat(N, 1), torch.zeros(N, device=z.device)
        for t in range(H):
            s = memory.step(s, zt, actions[:, t])
            prediction = memory.predict(s)
            zt, returns = prediction.next_z.mean, returns + prediction.reward
        elites = samples[np.argsort(-returns.cpu().numpy())[:K]]
        mean, std = elites.mean(0), elites.std(0)
    return mean


def mbrl_cem(memory, state, z, config: CEMConfig):
    """mbrl-lib's CEMOptimizer on the same objective, or None when mbrl does not import."""
    try:
        from mbrl.planning import CEMOptimizer as MbrlCEM
    except Exception:  # not installed, or broken against this torch
        return None
    H, N = config.horizon, config.candidates
    optimizer = MbrlCEM(num_iterations=config.iterations, elite_ratio=config.elites / N, population_size=N,
                        lower_bound=[LOW.tolist()] * H, upper_bound=[HIGH.tolist()] * H, alpha=0.0, device=z.device)

    def objective(actions):
        return latent_returns(memory, state, z, actions)

    return lambda: optimizer.optimize(objective, x0=torch.zeros(H, 3, device=z.device))


def measure(device: torch.device, repeats: int, config: CEMConfig, reference: bool) -> list[dict]:
    torch.manual_seed(0)
    memory = MDNRNN(MDNRNNConfig(z_dim=32, action_dim=3, hidden_size=256)).to(device).eval()
    state, z = memory.initial_state(1), torch.randn(1, 32, device=device)
    optimizer = CEMOptimizer(config, LOW.to(device), HIGH.to(device))
    generator = torch.Generator(device).manual_seed(0)
    rng = np.random.default_rng(0)
    rows = []
    with torch.no_grad():
        ours = timed(lambda: optimizer.optimize(lambda a: latent_returns(memory, state, z, a), generator=generator),
                     repeats, device)
        rows.append({"device": device.type, "planner": "worldmodels CEMOptimizer", "ms": 1000 * ours})
        peer = mbrl_cem(memory, state, z, config)
        if peer is not None:
            rows.append({"device": device.type, "planner": "mbrl-lib CEMOptimizer", "ms": 1000 * timed(peer, repeats, device)})
        if reference:
            rows.append({"device": device.type, "planner": "reference CEM (numpy refit)",
                         "ms": 1000 * timed(lambda: reference_cem(memory, state, z, rng, config), repeats, device)})
    for row in rows:
        row["ratio"] = row["ms"] / rows[0]["ms"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when available")
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--candidates", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--elites", type=int, default=100)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference CEM (slow on a CPU)")
    args = parser.parse_args()
    config = CEMConfig(horizon=args.horizon, candidates=args.candidates, iterations=args.iterations,
                       elites=args.elites)
    devices = [torch.device(d) for d in args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])]
    rows = [row for device in devices for row in measure(device, args.repeats, config, not args.no_reference)]
    try:
        import mbrl  # noqa: F401

        peer = "mbrl-lib imported"
    except Exception as e:
        peer = f"mbrl-lib not importable ({type(e).__name__}: {e}); compared with the reference CEM"
    print(f"one CEM decision: MDN-RNN z=32 h=256, H={config.horizon} N={config.candidates} "
          f"I={config.iterations} K={config.elites}; {peer}")
    if not torch.cuda.is_available():
        print("CUDA: not measured (no GPU)")
    print("| device | planner | ms / decision | x ours |\n|---|---|---:|---:|")
    for row in rows:
        print(f"| {row['device']} | {row['planner']} | {row['ms']:.0f} | {row['ratio']:.2f} |")
    out = Path(__file__).parent / "out" / "planning.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "peer": peer, "torch": torch.__version__, "horizon": config.horizon,
                               "candidates": config.candidates, "iterations": config.iterations,
                               "elites": config.elites}, indent=2) + "\n")


if __name__ == "__main__":
    main()
