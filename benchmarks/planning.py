"""Time of one CEM decision in the latent space of an MDN-RNN (z=32, h=256, random weights).

Planner: H=12, N=1000, I=10, K=100 (``worldmodels.planning``, batched on the device). Peer:
mbrl-lib's ``mbrl.planning.CEMOptimizer`` on the same objective when ``mbrl`` imports;
otherwise a straightforward reference CEM (numpy sampling and refit each iteration, one torch
model call per iteration), so the run still gives a ratio. Prints a Markdown table; saves
``benchmarks/out/planning.json``.

    python benchmarks/planning.py [--repeats 5]
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

H, N, ITERS, K = 12, 1000, 10, 100
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


def reference_cem(memory, state, z, rng: np.random.Generator) -> np.ndarray:
    """Naive CEM: numpy Gaussian per iteration, candidates copied to torch, states repeated, numpy refit."""
    low, high = LOW.numpy(), HIGH.numpy()
    mean, std = np.zeros((H, 3)), np.ones((H, 3))
    for _ in range(ITERS):
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


def mbrl_cem(memory, state, z):
    """mbrl-lib's CEMOptimizer on the same objective, or None when mbrl does not import."""
    try:
        from mbrl.planning import CEMOptimizer as MbrlCEM
    except Exception:  # not installed, or broken against this torch
        return None
    optimizer = MbrlCEM(num_iterations=ITERS, elite_ratio=K / N, population_size=N, lower_bound=[LOW.tolist()] * H,
                        upper_bound=[HIGH.tolist()] * H, alpha=0.0, device=z.device)

    def objective(actions):
        return latent_returns(memory, state, z, actions)

    return lambda: optimizer.optimize(objective, x0=torch.zeros(H, 3, device=z.device))


def measure(device: torch.device, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    memory = MDNRNN(MDNRNNConfig(z_dim=32, action_dim=3, hidden_size=256)).to(device).eval()
    state, z = memory.initial_state(1), torch.randn(1, 32, device=device)
    config = CEMConfig(horizon=H, candidates=N, iterations=ITERS, elites=K)
    optimizer = CEMOptimizer(config, LOW.to(device), HIGH.to(device))
    generator = torch.Generator(device).manual_seed(0)
    rng = np.random.default_rng(0)
    rows = []
    with torch.no_grad():
        ours = timed(lambda: optimizer.optimize(lambda a: latent_returns(memory, state, z, a), generator=generator),
                     repeats, device)
        rows.append({"device": device.type, "planner": "worldmodels CEMOptimizer", "ms": 1000 * ours})
        peer = mbrl_cem(memory, state, z)
        if peer is not None:
            rows.append({"device": device.type, "planner": "mbrl-lib CEMOptimizer", "ms": 1000 * timed(peer, repeats, device)})
        rows.append({"device": device.type, "planner": "reference CEM (numpy refit)",
                     "ms": 1000 * timed(lambda: reference_cem(memory, state, z, rng), repeats, device)})
    for row in rows:
        row["ratio"] = row["ms"] / rows[0]["ms"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = [row for device in devices for row in measure(device, args.repeats)]
    try:
        import mbrl  # noqa: F401

        peer = "mbrl-lib imported"
    except Exception as e:
        peer = f"mbrl-lib not importable ({type(e).__name__}: {e}); compared with the reference CEM"
    print(f"one CEM decision: MDN-RNN z=32 h=256, H={H} N={N} I={ITERS} K={K}; {peer}")
    if not torch.cuda.is_available():
        print("CUDA: not measured (no GPU)")
    print("| device | planner | ms / decision | x ours |\n|---|---|---:|---:|")
    for row in rows:
        print(f"| {row['device']} | {row['planner']} | {row['ms']:.0f} | {row['ratio']:.2f} |")
    out = Path(__file__).parent / "out" / "planning.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "peer": peer, "torch": torch.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()
