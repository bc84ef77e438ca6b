"""Latent planning: CEM / iCEM / MPPI optimizers, model-predictive control, visual foresight (`wm foresight`)."""
