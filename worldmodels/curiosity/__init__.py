"""Curiosity: intrinsic rewards from the world model, online wrappers, and `wm explore`."""
