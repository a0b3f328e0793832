"""Recommenders; importing this package registers them for the trainer and CLI."""

from pyg_mentor.nn.models.base import (
    MODELS,
    Recommender,
    get_model_spec,
    register_model,
)
from pyg_mentor.nn.models.freedom import FREEDOM
from pyg_mentor.nn.models.lightgcn import LightGCN
from pyg_mentor.nn.models.mentor import MENTOR
from pyg_mentor.nn.models.mf import MFBPR
from pyg_mentor.nn.models.mmssl import MMSSL
from pyg_mentor.nn.models.vbpr import VBPR

__all__ = [
    'MODELS',
    'Recommender',
    'register_model',
    'get_model_spec',
    'MFBPR',
    'LightGCN',
    'MENTOR',
    'MMSSL',
    'VBPR',
    'FREEDOM',
]
