r"""LightGCN's symmetric normalisation of the user-item edges, stored as edge
weights (the user-item twin of PyG's :class:`~torch_geometric.transforms.GCNNorm`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform
from torch_geometric.typing import EdgeType

from pyg_mentor.typing import RATED_BY, RATES


class BipartiteNorm(BaseTransform):
    r"""Stores the symmetric LightGCN weight of every edge of the given
    (bipartite) edge types as :obj:`edge_weight`
    (see :func:`~pyg_mentor.nn.conv.bipartite_norm`):

    .. math::
        w_{j \to i} = \frac{1}{\sqrt{\deg_{\mathrm{src}}(j)}\,
        \sqrt{\deg_{\mathrm{dst}}(i)}}

    with the degrees counted in the graph the transform sees. An existing
    :obj:`edge_weight` is multiplied by it, so that
    :class:`~pyg_mentor.nn.conv.BipartiteLightConv` with
    :obj:`normalize=False` on the result equals
    :class:`~pyg_mentor.nn.conv.BipartiteLightConv` with :obj:`normalize=True`
    on the input.

    This is what makes propagation on a sampled subgraph exact: a node at the
    border of a subgraph has only part of its edges in it, so degrees counted
    there are wrong; weights computed on the full graph and carried into the
    subgraph with its edges (a sampler keeps every edge attribute) are not.
    :class:`~pyg_mentor.loader.BPRNeighborLoader` applies it to the graph it
    samples from.

    Returns a shallow copy of the data; the input is never modified.

    Args:
        edge_types (Sequence[tuple[str, str, str]], optional): The edge types
            to normalise; those missing from the data are skipped.
            (default: the user-item edges both ways)
    """

    def __init__(self, edge_types: Sequence[EdgeType] = (RATES, RATED_BY)) -> None:
        self.edge_types = [tuple(edge_type) for edge_type in edge_types]

    def forward(self, data: HeteroData) -> HeteroData:
        # Resolved at call time, as PyG's GCNNorm does with `gcn_norm`: the
        # models of `pyg_mentor.nn` import the transforms.
        from pyg_mentor.nn.conv.bipartite_light_conv import bipartite_norm

        data = copy.copy(data)
        for edge_type in self.edge_types:
            if edge_type not in data.edge_types:
                continue
            store = data[edge_type]
            num_src, num_dst = store.size()
            weight = bipartite_norm(store.edge_index, num_src, num_dst)
            if store.get('edge_weight') is not None:
                weight = store.edge_weight.to(weight.dtype) * weight
            store.edge_weight = weight
        return data

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(edge_types={self.edge_types})'
