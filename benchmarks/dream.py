"""Dream throughput: the CMA-ES population in the batched dream vs steps of the real env.

    python benchmarks/dream.py [--population 64] [--rollouts 16] [--steps 100] [--env-steps 300] [--repeats 3]
                               [--device auto|cpu|cuda]

Dream: ``rollout_population`` of ``P`` linear controllers (867 parameters on CarRacing) acting in
``P x R`` dreams of an MDN-RNN (z=32, h=256, random weights) at tau=1, as one CMA-ES generation
evaluates them; termination is off, so every dream runs ``--steps`` steps. Real: the env made by
``envs.make_env`` (the pixel pipeline to 64x64 frames) stepped with random actions in one process,
resets included. Compute bound: ``memory.step`` + ``predict`` + ``sample`` alone on random tensors
at the same batch, with no controller and no bookkeeping. Dream and model run on ``--device``
(default: cuda where available); the dream row is one CMA-ES generation's evaluation, so at
``--steps 1000`` its seconds are a paper-size generation (64 x 16 dreams x 1,000 steps). Each
measurement is repeated (in turn, so all see the same machine load) and its fastest run kept.
Prints a Markdown table and saves JSON to ``benchmarks/out/dream.json``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import OUT, machine

from worldmodels.core.device import pick_device
from worldmodels.dream.imagine import BatchedDream, DreamConfig, rollout_population
from worldmodels.envs.make import make_env
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.controller import ControllerSpec
from worldmodels.models.mdnrnn import MDNRNN, MDNRNNConfig


def real_env(env_id: str, steps: int, seed: int) -> dict:
    """Steps per second of ``make_env(env_id)`` with uniformly random actions, one process."""
    env = make_env(env_id)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return {"name": f"real {env_id} (make_env, 64x64 pixels)", "batch": 1, "steps": steps, "seconds": seconds}


def sync(device: torch.device) -> None:
    """Wait for queued device work, so a timer sees it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory_model(action: ActionSpec, seed: int, device: torch.device) -> MDNRNN:
    torch.manual_seed(seed)
    return MDNRNN(MDNRNNConfig(z_dim=32, action_dim=action.dim, hidden_size=256)).to(device).eval()


def dream(action: ActionSpec, population: int, rollouts: int, steps: int, seed: int, device: torch.device) -> dict:
    """Steps per second of ``rollout_population``: the CMA-ES population evaluated in one batched dream."""
    memory = memory_model(action, seed, device)
    start_latents = (torch.randn(16, 32), torch.full((16, 32), -2.0))
    config = DreamConfig(temperature=1.0, done_threshold=1.0, max_steps=steps)  # P(done) > 1 never happens
    batched = BatchedDream(memory, start_latents, action, config, device)
    spec = ControllerSpec.for_run(memory.z_dim, memory.hidden_size, action)
    params = 0.1 * torch.randn(population, spec.n_params, device=device)
    policy = lambda features: spec.act(params, features, action)  # noqa: E731
    batched.seed(seed)
    rollout_population(batched, policy, population, rollouts)  # warm-up
    sync(device)
    start = time.perf_counter()
    returns, _ = rollout_population(batched, policy, population, rollouts)
    sync(device)
    seconds = time.perf_counter() - start
    assert returns.shape == (population, rollouts)
    n = population * rollouts * steps
    return {"name": f"dream: rollout_population, {population} x {rollouts} dreams, linear controller",
            "batch": population * rollouts, "steps": n, "seconds": seconds, "controller_params": spec.n_params}


@torch.no_grad()
def model_step(action: ActionSpec, batch: int, steps: int, seed: int, device: torch.device) -> dict:
    """Steps per second of the bare memory model: ``step`` + ``predict`` + ``sample`` on random tensors."""
    memory = memory_model(action, seed, device)
    z, a = torch.randn(batch, 32, device=device), torch.rand(batch, action.dim, device=device)

    def run(n: int) -> None:
        state = memory.initial_state(batch)
        for _ in range(n):
            state = memory.step(state, z, a)
            memory.predict(state).next_z.sample(1.0)

    run(5)  # warm-up
    sync(device)
    start = time.perf_counter()
    run(steps)
    sync(device)
    seconds = time.perf_counter() - start
    return {"name": "bare MDN-RNN step + predict + sample", "batch": batch, "steps": batch * steps,
            "seconds": seconds}


def table(rows: list[dict]) -> str:
    lines = ["| measurement | batch | steps | seconds | steps/s | vs real env | vs bare model |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    real, bare = rows[0]["steps_per_second"], rows[2]["steps_per_second"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['batch']} | {r['steps']} | {r['seconds']:.2f} | "
                     f"{r['steps_per_second']:,.0f} | {r['steps_per_second'] / real:,.0f}x | "
                     f"{r['steps_per_second'] / bare:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CarRacing-v3")
    parser.add_argument("--population", type=int, default=64, help="CMA-ES population (default 64)")
    parser.add_argument("--rollouts", type=int, default=16, help="dreams per candidate (default 16)")
    parser.add_argument("--steps", type=int, default=100, help="dream steps timed (default 100)")
    parser.add_argument("--env-steps", type=int, default=300, help="real env steps timed (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; the fastest is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="dream and model device (default: cuda where available)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    action = ActionSpec.from_space(make_env(args.env).action_space)
    measurements = [lambda: real_env(args.env, args.env_steps, args.seed),
                    lambda: dream(action, args.population, args.rollouts, args.steps, args.seed, device),
                    lambda: model_step(action, args.population * args.rollouts, args.steps, args.seed, device)]
    runs = [[measure() for measure in measurements] for _ in range(args.repeats)]
    rows = [min(column, key=lambda r: r["seconds"]) for column in zip(*runs)]
    for row, column in zip(rows, zip(*runs)):
        row["steps_per_second"] = row["steps"] / row["seconds"]
        row["all_seconds"] = [r["seconds"] for r in column]
    real = rows[0]
    result = {"benchmark": "dream", "env": args.env, "device": str(device), "repeats": args.repeats,
              "machine": machine(), "rows": rows, "generation_seconds": rows[1]["seconds"],
              "dream_vs_real": rows[1]["steps_per_second"] / real["steps_per_second"],
              "dream_vs_bare_model": rows[1]["steps_per_second"] / rows[2]["steps_per_second"]}
    print(table(rows))
    print(f"\ndream on {device} / real env: {result['dream_vs_real']:,.0f}x (goal >= 1,000x); "
          f"dream / bare model: {result['dream_vs_bare_model']:.2f}; one generation "
          f"({args.population} x {args.rollouts} dreams x {args.steps} steps): {rows[1]['seconds']:.2f} s")
    OUT.mkdir(exist_ok=True)
    (OUT / "dream.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {OUT / 'dream.json'}")
    return result


if __name__ == "__main__":
    main()
