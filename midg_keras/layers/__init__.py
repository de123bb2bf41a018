"""Custom Keras 3 layers of MIDG (docs/design.md §4), one per module."""

from midg_keras.layers.club_estimator import ClubEstimator
from midg_keras.layers.cm_adapter import CMAdapter
from midg_keras.layers.cross_modal_attention import CrossModalAttention
from midg_keras.layers.domain_discriminator import DomainDiscriminator
from midg_keras.layers.gaussian_encoder import GaussianEncoder
from midg_keras.layers.gradient_reversal import GradientReversal
from midg_keras.layers.information_decoupling import InformationDecoupling
from midg_keras.layers.label_distribution_readout import LabelDistributionReadout
from midg_keras.layers.masked_attention_pooling import MaskedAttentionPooling
from midg_keras.layers.masked_mean_pooling import MaskedMeanPooling
from midg_keras.layers.mixture_of_invariant_experts import MixtureOfInvariantExperts
from midg_keras.layers.modality_encoder import ModalityEncoder
from midg_keras.layers.router import Router
from midg_keras.layers.simulated_shift import SimulatedShift
from midg_keras.layers.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "CMAdapter",
    "ClubEstimator",
    "CrossModalAttention",
    "DomainDiscriminator",
    "GaussianEncoder",
    "GradientReversal",
    "InformationDecoupling",
    "LabelDistributionReadout",
    "MaskedAttentionPooling",
    "MaskedMeanPooling",
    "MixtureOfInvariantExperts",
    "ModalityEncoder",
    "Router",
    "SimulatedShift",
    "TransformerEncoderBlock",
]
