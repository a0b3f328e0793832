r"""The weighted fusion of per-modality item graphs, as a transform."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from pyg_mentor.typing import ITEM, feature_key, modalities, similar_edge_type
from pyg_mentor.utils.knn import fuse_item_graphs


class FuseItemGraphs(BaseTransform):
    r"""Fuses the per-modality item graphs
    :obj:`('item', 'similar_<m>', 'item')` (e.g. added by
    :class:`~pyg_mentor.transforms.ModalityKNNGraph`) into the single item
    graph :obj:`('item', relation, 'item')`:

    .. math::
        \mathbf{S} = \sum_{m} w_m \mathbf{S}_m,

    stored as :obj:`edge_index` and :obj:`edge_weight`, with the weights of an
    edge present in several graphs summed (see
    :func:`~pyg_mentor.utils.knn.fuse_item_graphs`). A missing
    :obj:`edge_weight` counts as all ones. Modality graphs without a weight
    are left out of the fusion (and kept in the data).

    Args:
        weights (Mapping[str, float]): The weight :math:`w_m` of each
            modality :math:`m`.
        relation (str, optional): The relation name of the fused edge type.
            (default: :obj:`"similar"`)

    Example:
        MENTOR fuses its image and text graphs with weights 0.1 and 0.9:

        >>> import torch_geometric.transforms as T
        >>> transform = T.Compose([
        ...     ModalityKNNGraph(k=10),
        ...     FuseItemGraphs({'image': 0.1, 'text': 0.9}),
        ... ])
        >>> data = transform(data)
        >>> data['item', 'similar', 'item']
        {
          edge_index=[2, ...],
          edge_weight=[...],
        }
    """

    def __init__(self, weights: Mapping[str, float], relation: str = 'similar') -> None:
        if len(weights) == 0:
            raise ValueError("'weights' is empty; give the weight of at least one modality")
        self.weights = {name: float(w) for name, w in weights.items()}
        bad = {name: w for name, w in self.weights.items() if not math.isfinite(w)}
        if bad:
            raise ValueError(f'Weights must be finite (got {bad})')
        self.relation = relation

    def forward(self, data: HeteroData) -> HeteroData:
        if not isinstance(data, HeteroData):
            raise TypeError(
                f"'{self.__class__.__name__}' expects a HeteroData "
                f'object (got {type(data).__name__})'
            )
        graphs = {}
        for name in self.weights:
            edge_type = similar_edge_type(name)
            if edge_type not in data.edge_types:
                present = [et for et in data.edge_types if et[0] == ITEM and et[2] == ITEM]
                raise ValueError(
                    f"A weight is given for modality '{name}' but the data has "
                    f'no edge type {edge_type} (item-item edge types present: '
                    f"{present}); apply 'ModalityKNNGraph' first"
                )
            store = data[edge_type]
            edge_index = store.edge_index
            edge_weight = store.get('edge_weight')
            if edge_weight is None:
                edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
            graphs[name] = (edge_index, edge_weight)

        edge_index, edge_weight = fuse_item_graphs(graphs, self.weights, _num_items(data))
        store = data[ITEM, self.relation, ITEM]
        store.edge_index = edge_index
        store.edge_weight = edge_weight
        return data

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(weights={self.weights}, relation={self.relation!r})'


def _num_items(data: HeteroData) -> int:
    store = data[ITEM]
    if 'num_nodes' in store:
        return int(store.num_nodes)
    names = modalities(data)
    if names:
        return store[feature_key(names[0])].size(0)
    raise ValueError(f"Cannot tell the number of items: set data['{ITEM}'].num_nodes")
