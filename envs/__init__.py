"""How environments come in: ``make_env``, the pixel pipeline, action spaces, small custom envs."""

from worldmodels.envs.make import make_env, make_raw_env, parse_kwargs
from worldmodels.envs.pixels import PixelConfig, PixelObservation, process_frame
from worldmodels.envs.spaces import ActionSpec

__all__ = ["ActionSpec", "PixelConfig", "PixelObservation", "make_env", "make_raw_env", "parse_kwargs",
           "process_frame"]
