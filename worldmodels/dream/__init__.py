"""Stage 3, `wm dream`: the imagination kernel, dream envs, CMA-ES and SB3 trained inside the dream."""
