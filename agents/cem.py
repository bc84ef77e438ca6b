"""The CEM / MPC agent: plans every step in the world model's latent space (PlaNet-style).

At each step it encodes the frame with the VAE (``z = mu``), searches action sequences
``[H, A]`` with CEM (or iCEM, MPPI) for the highest return the memory model predicts
(``latent_returns``: predicted rewards, optionally discounted, plus an optional ``bonus`` and
terminal value), executes the first action, advances the memory state with ``(z, a)`` and
keeps the shifted plan as the next step's warm start. It uses the ``Memory`` interface only,
so MDN-RNN and VRNN both work, with Box or Discrete actions. Batched episodes are planned one
after another, each with its own memory state and plan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from worldmodels.core.errors import UserError
from worldmodels.dream.imagine import imagine
from worldmodels.envs.spaces import ActionSpec
from worldmodels.models.memory import Memory, State, select_state
from worldmodels.planning.mpc import Bonus, MPCPlanner, TerminalValue
from worldmodels.planning.optimizers import CEMConfig, CEMOptimizer, Objective
from worldmodels.runs.artifacts import load_controller, load_sb3, load_world_model

ObjectiveFactory = Callable[[State, Tensor], Objective]
"""(memory state (batch 1), z [1, Z]) -> objective over candidates [N, H, A] -> [N], higher is better."""


class PlannerState(NamedTuple):
    """The agent's recurrent state: the memory model's state and the warm-start plans."""

    memory: State  # each tensor [B, ...]
    plans: Tensor  # [B, H, A] means (Box) or [B, H, n] probabilities (Discrete)


class CEMAgent:
    """MPC agent over a vision model (``encode``) and a memory model (``Memory``).

    ``objective`` replaces the default objective (``latent_returns`` with the planner's
    ``temperature``, ``bonus`` and ``terminal_value``): visual foresight plans to a goal image
    with it. ``seed`` makes the search reproducible (sampling memory models use the global RNG).
    """

    def __init__(
        self,
        vision,
        memory: Memory,
        action: ActionSpec,
        config: CEMConfig,
        device: torch.device | str = "cpu",
        temperature: float = 0.0,
        bonus: Bonus | None = None,
        terminal_value: TerminalValue | None = None,
        objective: ObjectiveFactory | None = None,
    ) -> None:
        self.vision, self.memory, self.action = vision, memory, action
        self.device = torch.device(device)
        if action.discrete:
            optimizer = CEMOptimizer(config, n_actions=action.dim, device=self.device)
        else:
            optimizer = CEMOptimizer(config, *action.bounds(self.device))
        generator = torch.Generator(self.device).manual_seed(0)
        self.planner = MPCPlanner(optimizer, temperature, bonus, terminal_value, generator)
        self.objective = objective

    def seed(self, seed: int) -> None:
        self.planner.generator.manual_seed(seed)
        torch.manual_seed(seed)

    @torch.no_grad()
    def reset(self, batch: int = 1) -> PlannerState:
        plans = self.planner.optimizer.initial_plan().expand(batch, -1, -1).clone()
        return PlannerState(self.memory.initial_state(batch), plans)

    @torch.no_grad()
    def latents(self, obs: np.ndarray) -> Tensor:
        """``z`` [B, Z]: VAE means of frames uint8 [B, 64, 64, 3], or the z part of dream observations [B, Z+H]."""
        obs = torch.as_tensor(obs, device=self.device)
        if obs.dtype == torch.uint8:
            return self.vision.encode(obs)[0]
        return obs[:, : self.memory.z_dim].float()

    @torch.no_grad()
    def act(self, obs: np.ndarray, state: PlannerState) -> tuple[np.ndarray, PlannerState]:
        """Actions (float32 [B, A] or int64 [B]) planned from frames ``obs`` [B, 64, 64, 3], and the next state."""
        z = self.latents(obs)
        actions, plans = [], []
        for b in range(len(z)):
            row, z_b = select_state(state.memory, torch.tensor([b], device=self.device)), z[b : b + 1]
            self.planner.plan = state.plans[b]
            if self.objective is None:
                actions.append(self.planner.act(self.memory, row, z_b))
            else:
                actions.append(self.planner.act_with_objective(self.objective(row, z_b)))
            plans.append(self.planner.plan)
        if self.action.discrete:
            action = torch.tensor(actions, dtype=torch.int64, device=self.device)
        else:
            action = torch.stack(actions)
        memory = self.memory.step(state.memory, z, self.action.to_model(action))
        return action.cpu().numpy(), PlannerState(memory, torch.stack(plans))

    def executed_plan(self, action: np.ndarray, plans: Tensor) -> Tensor:
        """The sequence just chosen, model-side [B, H, A]: the executed ``action`` then the rest of the plan.

        ``plans`` [B, H, A] are the warm starts ``act`` returned (the chosen plan shifted by one);
        discrete plans become one-hot of their most probable action per step.
        """
        first = self.action.to_model(torch.as_tensor(action, device=self.device))[:, None]
        rest = plans[:, :-1]
        if self.action.discrete:
            rest = F.one_hot(rest.argmax(-1), self.action.dim).float()
        return torch.cat([first, rest], dim=1)


def planner_config(
    horizon: int | None = None,
    candidates: int | None = None,
    iterations: int | None = None,
    elites: int | None = None,
    method: str | None = None,
    **fields_: float,
) -> CEMConfig:
    """A ``CEMConfig`` from the flags given (None: default); without ``elites``, at most a tenth of the candidates."""
    given = {"horizon": horizon, "candidates": candidates, "iterations": iterations, "method": method}
    given = {k: v for k, v in given.items() if v is not None}
    if elites is None and candidates is not None:
        elites = min(CEMConfig.elites, max(1, candidates // 10))
    if elites is not None:
        given["elites"] = elites
    return CEMConfig(**given, **fields_)


def sb3_value(run, algo: str, memory: Memory, device: torch.device | str = "cpu") -> TerminalValue:
    """Terminal value from the SB3 model trained in the dream (``wm dream --algo ALGO``).

    Its observations are ``[z, h]``: actor-critics (PPO, A2C) give V; off-policy critics (SAC,
    TD3, ...) give Q(obs, policy(obs)) of their first critic. In units of dream reward.
    """
    policy = load_sb3(run, algo, device).policy

    def value(state: State, z: Tensor) -> Tensor:
        obs = torch.cat([z, memory.features(state)], dim=1).to(policy.device)
        if hasattr(policy, "predict_values"):
            return policy.predict_values(obs)[:, 0].to(z.device)
        if hasattr(policy, "critic"):
            return policy.critic(obs, policy._predict(obs, deterministic=True))[0][:, 0].to(z.device)
        raise UserError(f"the {algo.upper()} model has no value function or critic to plan with")

    return value


def controller_value(run, memory: Memory, steps: int, device: torch.device | str = "cpu") -> TerminalValue:
    """Terminal value from the run's dream-trained controller (``wm dream``, CMA-ES): the return it is
    expected to earn in ``steps`` more dream steps from the state a plan ends in (each step's
    predicted reward weighted by P(no termination before it); mean next latents), in units of dream
    reward. All N plans' tails are one batched imagination."""
    spec, params, _ = load_controller(run)
    params = torch.as_tensor(params, device=device)[None]  # [1, n_params]
    action = run.action_spec()

    def policy(obs: Tensor) -> Tensor:  # [N, Z+H] -> model-side actions [N, A]
        return action.to_model(spec.act(params, obs[None], action)[0])

    def value(state: State, z: Tensor) -> Tensor:
        return imagine(memory, state, z, policy, horizon=steps).expected_reward()

    return value


def terminal_value(run, algo: str | None, memory: Memory, value_steps: int | None, device) -> TerminalValue | None:
    """The planner's terminal value: none, the CMA-ES controller's over ``value_steps`` dream steps
    (``algo="cma"``; default 50) or an SB3 model's."""
    if value_steps is not None and algo != "cma":
        raise UserError("--value-steps sets the controller's terminal value: give it with --algo cma")
    if algo is None:
        return None
    if algo == "cma":
        value_steps = 50 if value_steps is None else value_steps
        if value_steps < 1:
            raise UserError(f"value_steps must be >= 1, got {value_steps}")
        return controller_value(run, memory, value_steps, device)
    return sb3_value(run, algo, memory, device)


def cem(
    run,
    device: str = "cpu",
    horizon: int | None = None,
    candidates: int | None = None,
    iterations: int | None = None,
    elites: int | None = None,
    method: str | None = None,
    algo: str | None = None,
    value_steps: int | None = None,
    temperature: float = 0.0,
    bonus: Bonus | None = None,
    **options: float,
) -> CEMAgent:
    """Loader (``wm eval --agent cem``): the run's vision and memory models behind a CEM planner.

    ``options`` may set any other ``CEMConfig`` field (``discount``, ``init_std``, ...). ``algo``
    gives the plans a terminal value (none by default): ``"cma"``, the dream-trained controller's
    expected return over ``value_steps`` more dream steps; an SB3 algorithm, that model's value.
    """

    known = {f.name for f in fields(CEMConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"unknown cem agent options {unknown}; planner settings are {sorted(known)}")
    config = planner_config(horizon, candidates, iterations, elites, method, **options)
    vision, memory = load_world_model(run, device)
    value = terminal_value(run, algo, memory, value_steps, device)
    return CEMAgent(vision, memory, run.action_spec(), config, device, temperature, bonus, value)
