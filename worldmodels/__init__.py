"""worldmodels: model-based RL from pixels (World Models, PlaNet-style planning, curiosity)."""

__version__ = "0.1.0"
