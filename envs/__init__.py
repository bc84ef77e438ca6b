"""How environments come in: ``make_env``, the pixel pipeline, action spaces, small custom envs."""

from envs.make import make_env, make_raw_env, parse_kwargs
from envs.pixels import PixelConfig, PixelObservation, process_frame
from envs.spaces import ActionSpec

__all__ = ["ActionSpec", "PixelConfig", "PixelObservation", "make_env", "make_raw_env", "parse_kwargs",
           "process_frame"]
