r"""Keeps a subset of the item modalities, as a transform."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from pyg_mentor.typing import ITEM, feature_key, modalities, select_modalities


class SelectModalities(BaseTransform):
    r"""Keeps the item features :obj:`data['item'].x_<m>` of the given
    modalities and removes the others (e.g. to train a multimodal model on
    text only, for a modality ablation). Everything else is left as it is.

    Returns a shallow copy of the data; the input is never modified.

    Args:
        modalities (Sequence[str]): The modalities to keep; each must have
            features in the data.

    Example:
        >>> data = SelectModalities(['text'])(data)
        >>> pyg_mentor.typing.modalities(data)
        ['text']
    """

    def __init__(self, modalities: Sequence[str]) -> None:
        if isinstance(modalities, str):
            modalities = [modalities]
        if not modalities:
            raise ValueError("'modalities' must name at least one modality")
        self.modalities = sorted(modalities)

    def forward(self, data: HeteroData) -> HeteroData:
        keep = set(select_modalities(data, self.modalities, self.__class__.__name__))
        data = copy.copy(data)
        store = data[ITEM]
        for name in modalities(data):
            if name not in keep:
                del store[feature_key(name)]
        return data

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.modalities})'
