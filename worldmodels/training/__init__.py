"""Stage 2, `wm train`: one fit loop; the vision model (ConvVAE), latents, the memory model."""
