"""worldmodels: model-based RL from pixels (World Models, PlaNet-style planning, curiosity).

``load_run(path)`` opens a trained run (models, agents, dream env, evaluation); importing the package
registers the Gymnasium ids ``worldmodels/Dream-v0``, ``worldmodels/Catch-v0``, ``worldmodels/PointMass-v0``
and ``worldmodels/Maze-v0``.
"""

__version__ = "0.1.0"

from worldmodels.api import Run, load_run, register_envs  # noqa: E402  (after __version__, which the CLI reads)

register_envs()

__all__ = ["Run", "__version__", "load_run"]
