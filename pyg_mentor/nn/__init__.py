"""Layers (``conv``), models (``models``), losses (``functional``) and
:class:`EmbeddingNoise` / :class:`FeatureMask`."""

from pyg_mentor.nn import conv, functional, models
from pyg_mentor.nn.noise import EmbeddingNoise, FeatureMask

__all__ = ['conv', 'functional', 'models', 'EmbeddingNoise', 'FeatureMask']
