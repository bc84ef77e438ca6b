"""Neural network models: the ConvVAE vision model and the MDN-RNN / VRNN memory models."""

from worldmodels.models.mdnrnn import MDNRNN, GaussianMixture, MDNRNNConfig
from worldmodels.models.memory import (
    LatentDistribution,
    Memory,
    Prediction,
    State,
    repeat_state,
    select_state,
)
from worldmodels.models.vision import ConvVAE, VAEConfig, frames_to_uint8
from worldmodels.models.vrnn import VRNN, AncestralGaussian, VRNNConfig

MEMORY_MODELS = {"mdn": MDNRNN, "vrnn": VRNN}
MEMORY_CONFIGS = {"mdn": MDNRNNConfig, "vrnn": VRNNConfig}

__all__ = [
    "MDNRNN",
    "MEMORY_CONFIGS",
    "MEMORY_MODELS",
    "VRNN",
    "AncestralGaussian",
    "ConvVAE",
    "GaussianMixture",
    "LatentDistribution",
    "MDNRNNConfig",
    "Memory",
    "Prediction",
    "State",
    "VAEConfig",
    "VRNNConfig",
    "frames_to_uint8",
    "repeat_state",
    "select_state",
]
