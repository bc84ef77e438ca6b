"""Model-predictive control in latent space: ``latent_returns`` (the PlaNet objective, the return a
memory model predicts for each candidate action sequence, imagined by ``worldmodels.dream.imagine``)
and ``MPCPlanner`` (re-plan every step with a shifted warm start).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from worldmodels.dream.imagine import Bonus, Shaping, imagine
from worldmodels.models.memory import Memory, State
from worldmodels.planning.optimizers import CEMOptimizer, Objective

TerminalValue = Callable[[State, Tensor], Tensor]
"""``value(memory state (batch N), z [N, Z]) -> [N]`` of the state a plan ends in, in units of reward."""


def latent_returns(
    memory: Memory,
    state: State,
    z: Tensor,
    actions: Tensor,
    discount: float = 1.0,
    temperature: float = 0.0,
    bonus: Bonus | None = None,
    terminal_value: TerminalValue | None = None,
) -> Tensor:
    """[N] predicted discounted return of each action sequence ``actions`` [N, H, A].

    Starts every candidate from ``state`` (batch 1) and ``z`` [1, Z]. Step t's reward (plus
    ``bonus``) counts with weight discount^t times the predicted probability that the episode has
    not terminated before it; ``terminal_value`` of the final features and z is added with
    discount^H and the survival probability after step H. ``temperature`` 0 follows the mean
    next latent, > 0 samples it (global torch RNG).
    """
    if z.shape[0] != 1:
        raise ValueError(f"latent_returns plans from one state: z must be [1, Z], got {list(z.shape)}")
    imagined = imagine(memory, state, z, actions, temperature=temperature, shaping=Shaping(bonus=bonus))
    horizon = imagined.rewards.shape[1]
    weights = discount ** torch.arange(horizon + 1, device=imagined.rewards.device, dtype=imagined.rewards.dtype)
    survival = imagined.survival() * weights  # [N, H+1]
    returns = (survival[:, :horizon] * imagined.rewards).sum(1)
    if terminal_value is not None:
        returns = returns + survival[:, horizon] * terminal_value(imagined.state, imagined.latents[:, -1])
    return returns


class MPCPlanner:
    """Model-predictive control: re-plan every step, execute the first action, warm-start the next.

    ``act`` plans in a memory model's latent space with ``latent_returns``; ``act_with_objective``
    takes any batched objective (e.g. visual foresight's goal-image cost, negated).
    """

    def __init__(
        self,
        optimizer: CEMOptimizer,
        temperature: float = 0.0,
        bonus: Bonus | None = None,
        terminal_value: TerminalValue | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        self.optimizer = optimizer
        self.temperature = temperature
        self.bonus = bonus
        self.terminal_value = terminal_value
        self.generator = generator
        self.plan = optimizer.initial_plan()  # warm start [H, A] or [H, n]

    def reset(self) -> None:
        """Forget the warm start (call at the start of each episode)."""
        self.plan = self.optimizer.initial_plan()

    def act(self, memory: Memory, state: State, z: Tensor) -> Tensor | int:
        """Action [A] (or index, discrete) from memory ``state`` (batch 1) and latent ``z`` [1, Z]."""

        def objective(actions: Tensor) -> Tensor:
            return latent_returns(
                memory,
                state,
                z,
                actions,
                self.optimizer.config.discount,
                self.temperature,
                self.bonus,
                self.terminal_value,
            )

        return self.act_with_objective(objective)

    def act_with_objective(self, objective: Objective) -> Tensor | int:
        """Optimise ``objective`` from the warm start, keep the shifted plan, return its first action."""
        plan = self.optimizer.optimize(objective, init_mean=self.plan, generator=self.generator)
        self.plan = self.optimizer.shift(plan)
        return self.optimizer.first_action(plan)
