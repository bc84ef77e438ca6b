"""Model-predictive control in latent space: ``latent_returns`` (the PlaNet objective, the return a
memory model predicts for each candidate action sequence) and ``MPCPlanner`` (re-plan every step
with a shifted warm start).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from worldmodels.models.memory import Memory, State
from worldmodels.planning.optimizers import CEMOptimizer, Objective

Bonus = Callable[[State, Tensor, Tensor, Tensor], Tensor]


TerminalValue = Callable[[Tensor, Tensor], Tensor]


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

    Starts every candidate from ``state`` (batch 1) and ``z`` [1, Z], expanded to N without
    copies. Step t's reward (plus ``bonus``) counts with weight discount^t times the predicted
    probability that the episode has not terminated before it; ``terminal_value`` of the final
    features and z is added with discount^H and the survival probability after step H.
    ``temperature`` 0 follows the mean next latent, > 0 samples it (global torch RNG).
    """
    n, horizon, _ = actions.shape
    if z.shape[0] != 1:
        raise ValueError(f"latent_returns plans from one state: z must be [1, Z], got {list(z.shape)}")
    state = tuple(s.expand(n, *s.shape[1:]) for s in state)
    z = z.expand(n, -1)
    returns = actions.new_zeros(n)
    alive = actions.new_ones(n)  # P(not terminated yet)
    weight = 1.0  # discount^t
    for t in range(horizon):
        action = actions[:, t]
        next_state = memory.step(state, z, action)
        prediction = memory.predict(next_state)
        next_z = prediction.next_z.mean if temperature == 0 else prediction.next_z.sample(temperature)
        reward = prediction.reward if bonus is None else prediction.reward + bonus(state, z, action, next_z)
        returns += weight * alive * reward
        alive = alive * torch.sigmoid(-prediction.done_logit)
        weight *= discount
        state, z = next_state, next_z
    if terminal_value is not None:
        returns += weight * alive * terminal_value(memory.features(state), z)
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
