"""Neural network models: the ConvVAE vision model and the memory models (MDN-RNN, VRNN, RSSM, SRNN, SVG)."""

from worldmodels.models.mdnrnn import MDNRNN, GaussianMixture, MDNRNNConfig
from worldmodels.models.memory import (
    LatentDistribution,
    Memory,
    Prediction,
    State,
    repeat_state,
    select_state,
)
from worldmodels.models.rssm import RSSM, RSSMConfig
from worldmodels.models.srnn import SRNN, SRNNConfig
from worldmodels.models.svg import SVG, SVGConfig
from worldmodels.models.vision import ConvVAE, VAEConfig, frames_to_uint8
from worldmodels.models.vrnn import VRNN, AncestralGaussian, VRNNConfig

MEMORY_MODELS = {"mdn": MDNRNN, "vrnn": VRNN, "rssm": RSSM, "srnn": SRNN, "svg": SVG}
MEMORY_CONFIGS = {"mdn": MDNRNNConfig, "vrnn": VRNNConfig, "rssm": RSSMConfig, "srnn": SRNNConfig, "svg": SVGConfig}

__all__ = [
    "MDNRNN",
    "MEMORY_CONFIGS",
    "MEMORY_MODELS",
    "RSSM",
    "SRNN",
    "SVG",
    "VRNN",
    "AncestralGaussian",
    "ConvVAE",
    "GaussianMixture",
    "LatentDistribution",
    "MDNRNNConfig",
    "Memory",
    "Prediction",
    "RSSMConfig",
    "SRNNConfig",
    "SVGConfig",
    "State",
    "VAEConfig",
    "VRNNConfig",
    "frames_to_uint8",
    "repeat_state",
    "select_state",
]
