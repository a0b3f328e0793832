"""pyg_mentor: MENTOR, MMSSL and their baselines for multimodal recommendation,
built from PyTorch Geometric layers, transforms and datasets.

The subpackages are imported on first use (``pyg_mentor.nn``, ``pyg_mentor.Evaluator``,
...), so that ``import pyg_mentor.config`` or the command line's ``--help`` do not pay
for importing torch and PyG.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = '0.1.0'

_SUBMODULES = ('datasets', 'nn', 'transforms', 'utils')
_ATTRIBUTES = {'Evaluator': 'pyg_mentor.evaluation', 'topk_metrics': 'pyg_mentor.evaluation'}

__all__ = ['datasets', 'nn', 'transforms', 'utils', 'Evaluator', 'topk_metrics', '__version__']

if TYPE_CHECKING:
    from pyg_mentor import datasets, nn, transforms, utils
    from pyg_mentor.evaluation import Evaluator, topk_metrics


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f'pyg_mentor.{name}')
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'pyg_mentor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
