"""Things that act: exploration policies, dream-trained controllers, planners, SB3 bridges.

Agents are found by name in ``AGENTS``: each entry is ``"module:function"``, a loader
``load(run: RunDir, device: str, **options) -> Agent``. Adding an agent is one small module
and one line here; ``wm collect --agent NAME`` and ``wm eval --agent NAME`` both use it.
"""

from __future__ import annotations

import importlib

from worldmodels.agents.base import Agent
from worldmodels.core.errors import UserError

AGENTS: dict[str, str] = {
    "random": "worldmodels.agents.loaders:random",
    "brownian": "worldmodels.agents.loaders:brownian",
    "controller": "worldmodels.agents.loaders:controller",
    "noisy-controller": "worldmodels.agents.loaders:noisy_controller",
    "sb3": "worldmodels.agents.loaders:sb3",
    "curious": "worldmodels.agents.curious:curious",
    "cem": "worldmodels.agents.cem:cem",
}


def load_agent(name: str, run, device: str = "cpu", **options) -> Agent:
    """Build agent ``name`` for run directory ``run`` (a ``RunDir``)."""
    if name not in AGENTS:
        raise UserError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")
    module, _, function = AGENTS[name].partition(":")
    return getattr(importlib.import_module(module), function)(run, device, **options)


__all__ = ["AGENTS", "Agent", "load_agent"]
