"""Latent planning: CEM / iCEM / MPPI over action sequences, and model-predictive control.

``CEMOptimizer`` searches action sequences [H, A] that maximise any batched objective;
``latent_returns`` is the PlaNet objective, the return a memory model predicts for each
candidate; ``MPCPlanner`` re-plans at every step with a shifted warm start. Everything stays on
the device of the action bounds; the objective is called once per iteration on the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from worldmodels.core.errors import UserError

Objective = Callable[[Tensor], Tensor]
"""Candidates [N, H, A] (float; one-hot for discrete actions) -> returns [N], higher is better."""


METHODS = ("cem", "icem", "mppi")


@dataclass
class CEMConfig:
    """Settings of the sampling-based planner; plain values, saved as JSON."""

    horizon: int = 12
    """Planning horizon H, in agent steps."""
    candidates: int = 1000
    """Action sequences N sampled per iteration (iCEM: at the first iteration)."""
    iterations: int = 10
    """Refits of the sampling distribution per decision."""
    elites: int = 100
    """Best sequences K that refit the distribution (cem, icem); without it, at most a tenth of the candidates."""
    method: str = field(default="cem", metadata={"choices": list(METHODS)})
    """Optimiser: cem, icem (Pinneri et al. 2020, colored noise) or mppi."""
    discount: float = 1.0
    """Per-step discount of predicted rewards."""
    init_std: float = 1.0
    """Std of the Gaussian at the first iteration, in action units."""
    min_std: float = 0.05
    """Floor on the std, so re-planning keeps exploring."""
    min_prob: float = 0.01
    """Discrete actions: floor on each action's probability, for the same reason."""
    alpha: float = 0.0
    """Smoothing of refits: new = alpha * old + (1 - alpha) * refit."""
    noise_beta: float = 2.0
    """icem, continuous actions: colored noise with power spectrum 1/f^beta along time (0: white)."""
    keep_elites: float = 0.3
    """icem: fraction of elites carried into the next iteration."""
    population_decay: float = 1.25
    """icem: candidates divided by this each iteration, floor 2 x elites."""
    mppi_temperature: float = 0.5
    """mppi: weights softmax(returns / temperature) over all candidates."""
    action_low: tuple[float, ...] | None = field(default=None, metadata={"none": "the env's", "metavar": "A,B,..."})
    """Continuous actions: lower bounds of the planned actions, within the env's (one per action dim)."""
    action_high: tuple[float, ...] | None = field(default=None, metadata={"none": "the env's", "metavar": "A,B,..."})
    """Continuous actions: upper bounds of the planned actions (CarRacing: 1,0.3,0 caps gas, no brake)."""

    def __post_init__(self) -> None:
        checks = [
            (self.method not in METHODS, f"method must be one of {METHODS}, got {self.method!r}"),
            (min(self.horizon, self.iterations, self.elites) < 1, "horizon, iterations, elites must be >= 1"),
            (self.elites > self.candidates, "elites must be <= candidates"),
            (not 0 <= self.alpha < 1, "alpha must lie in [0, 1)"),
            (not 0 <= self.keep_elites <= 1, "keep_elites must lie in [0, 1]"),
            (self.population_decay < 1, "population_decay must be >= 1"),
            (min(self.mppi_temperature, self.init_std) <= 0, "mppi_temperature, init_std must be > 0"),
            (min(self.min_std, self.min_prob) < 0, "min_std, min_prob must be >= 0"),
        ]
        problems = [message for bad, message in checks if bad]
        if problems:
            raise UserError("invalid planner config: " + "; ".join(problems))


def colored_noise(
    n: int,
    horizon: int,
    dim: int,
    beta: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """[n, horizon, dim] standard-normal noise, power spectrum 1/f^beta along the time axis.

    Each entry has unit variance; ``beta`` 0 is white noise, 2 is smooth (Brownian-like) noise.
    """
    freqs = torch.fft.rfftfreq(horizon, device=device)
    freqs[0] = 1.0 / horizon  # the DC bin gets the power of the lowest frequency
    scale = freqs.pow(-beta / 2)
    mid = torch.ones_like(scale)  # 1 for complex bins, 0 for the real-only DC (and Nyquist) bins
    mid[0] = 0.0
    if horizon % 2 == 0:
        mid[-1] = 0.0
    parts = torch.randn((n, dim, freqs.numel(), 2), generator=generator, device=device) * scale[:, None]
    spectrum = torch.complex(parts[..., 0] * (2 - mid).sqrt(), parts[..., 1] * mid)
    sigma = (2 * ((1 + mid) * scale.square()).sum()).sqrt() / horizon  # std of the raw irfft output
    return (torch.fft.irfft(spectrum, n=horizon) / sigma).transpose(1, 2)


class CEMOptimizer:
    """Cross-entropy method (or iCEM, MPPI) over action sequences.

    Continuous: ``low``, ``high`` [A] bound a Gaussian plan (mean, std [H, A]); candidates are
    clipped to the box. Discrete: ``n_actions`` = n, independent categoricals per step
    (probabilities [H, n]); candidates are one-hot [N, H, n]. ``optimize`` returns the final
    mean [H, A] or probability table [H, n].
    """

    def __init__(
        self,
        config: CEMConfig,
        low: Tensor | None = None,
        high: Tensor | None = None,
        n_actions: int | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if (low is None) != (high is None) or (low is None) == (n_actions is None):
            raise ValueError("give either low and high (continuous) or n_actions (discrete)")
        self.config = config
        self.discrete = n_actions is not None
        if low is not None and high is not None:
            self.low = torch.as_tensor(low, dtype=torch.float32, device=device)
            self.high = torch.as_tensor(high, dtype=torch.float32, device=self.low.device)
            self.device = self.low.device
            self.action_dim = self.low.numel()
            self.low = self.narrowed(config.action_low, self.low, torch.maximum)
            self.high = self.narrowed(config.action_high, self.high, torch.minimum)
            if bool((self.low > self.high).any()):
                raise UserError(f"planner action bounds are empty: low {self.low.tolist()} > high {self.high.tolist()}")
        else:
            if config.action_low is not None or config.action_high is not None:
                raise UserError("planner action bounds are for continuous (Box) actions; this env's are discrete")
            self.device = torch.device(device or "cpu")
            self.action_dim = int(n_actions)

    def narrowed(self, bounds: tuple[float, ...] | None, env: Tensor, pick) -> Tensor:
        """The env's bounds ``env`` [A] narrowed by the config's ``bounds`` (``pick``: maximum for low)."""
        if bounds is None:
            return env
        if len(bounds) != self.action_dim:
            raise UserError(f"planner action bounds {list(bounds)} need {self.action_dim} values, one per action dim")
        return pick(env, torch.as_tensor(bounds, dtype=env.dtype, device=env.device))

    def initial_plan(self, steps: int | None = None) -> Tensor:
        """[steps or H, A] zero mean (clipped to the box), or [steps or H, n] uniform probabilities."""
        shape = (steps or self.config.horizon, self.action_dim)
        if self.discrete:
            return torch.full(shape, 1.0 / self.action_dim, device=self.device)
        return torch.zeros(shape, device=self.device).clamp_(self.low, self.high)

    def shift(self, plan: Tensor) -> Tensor:
        """The warm start for the next step: ``plan`` [H, A] one step on, a fresh last step."""
        return torch.cat([plan[1:], self.initial_plan(1)])

    def first_action(self, plan: Tensor) -> Tensor | int:
        """The action to execute now: ``plan[0]`` [A], or the most probable index for discrete."""
        return int(plan[0].argmax()) if self.discrete else plan[0].clone()

    @torch.no_grad()
    def optimize(
        self, objective: Objective, init_mean: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Maximise ``objective``; returns the plan [H, A] (in the box) or probabilities [H, n].

        ``init_mean`` is a warm start of the same shape (e.g. the previous plan, shifted);
        ``generator`` (on the device) makes the search reproducible.
        """
        c = self.config
        mean = self.initial_plan() if init_mean is None else init_mean.to(self.device, torch.float32)
        std = torch.full_like(mean, c.init_std)
        kept = mean.new_empty((0, *mean.shape))
        n_keep = int(c.keep_elites * c.elites) if c.method == "icem" else 0
        for i in range(c.iterations):
            samples = torch.cat([kept, self._sample(mean, std, self._population(i) - len(kept), generator)])
            returns = objective(samples).float()
            returns = torch.where(returns.isnan(), -math.inf, returns)
            elites = returns.topk(c.elites).indices
            weights = self._weights(returns, elites)
            refit = torch.einsum("n,nha->ha", weights, samples)
            if self.discrete:
                floor = min(c.min_prob, 1.0 / self.action_dim)
                refit = refit * (1 - floor * self.action_dim) + floor  # each action keeps >= floor
            else:
                # spread around the mean sampled from (as CMA-ES): stays wide while the mean moves
                spread = torch.einsum("n,nha->ha", weights, (samples - mean).square()).sqrt()
                std = torch.lerp(spread.clamp_min(c.min_std), std, c.alpha)
            mean = torch.lerp(refit, mean, c.alpha)
            kept = samples[elites[:n_keep]]
        return mean if self.discrete else torch.minimum(torch.maximum(mean, self.low), self.high)

    def _population(self, iteration: int) -> int:
        """Candidates at ``iteration``: N, or for iCEM N / decay^i with a floor of 2K (at most N)."""
        c = self.config
        if c.method != "icem":
            return c.candidates
        return max(int(c.candidates / c.population_decay**iteration), min(c.candidates, 2 * c.elites))

    def _sample(self, mean: Tensor, std: Tensor, n: int, generator: torch.Generator | None) -> Tensor:
        """[n, H, A] candidates: clipped Gaussian (colored for iCEM) or one-hot categorical draws."""
        if self.discrete:
            index = torch.multinomial(mean, n, replacement=True, generator=generator)  # [H, n]
            return F.one_hot(index.T, self.action_dim).float()
        horizon, dim = mean.shape
        if self.config.method == "icem":
            noise = colored_noise(n, horizon, dim, self.config.noise_beta, generator, self.device)
        else:
            noise = torch.randn((n, horizon, dim), generator=generator, device=self.device)
        return torch.clamp(mean + std * noise, self.low, self.high)

    def _weights(self, returns: Tensor, elites: Tensor) -> Tensor:
        """[N] refit weights summing to 1: uniform over the elites, or MPPI's softmax of returns."""
        if self.config.method == "mppi":
            return torch.softmax(returns / self.config.mppi_temperature, dim=0)
        return torch.zeros_like(returns).index_fill_(0, elites, 1.0 / len(elites))
