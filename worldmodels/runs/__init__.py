"""The run directory and what is stored in it: run.json, episodes, latents, checkpoints, controllers."""
