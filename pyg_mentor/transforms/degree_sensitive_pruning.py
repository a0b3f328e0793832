r"""FREEDOM's degree-sensitive pruning of user-item edges, as a transform."""
from __future__ import annotations

import copy

import torch
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform
from torch_geometric.typing import EdgeType

from pyg_mentor.transforms.drop_interactions import (
    _check_edge_type,
    _filter_edges,
    _reverse_mask,
)
from pyg_mentor.typing import RATED_BY, RATES
from pyg_mentor.utils.augment import _check_probability, degree_sensitive_pruning


class DegreeSensitivePruning(BaseTransform):
    r"""Prunes the user-item edges of a
    :class:`~torch_geometric.data.HeteroData` as FREEDOM does before every
    training epoch (see
    :func:`~pyg_mentor.utils.augment.degree_sensitive_pruning`): keeps
    :math:`\lfloor (1 - p) |\mathcal{E}| \rfloor` pairs, sampled without
    replacement with probabilities proportional to

    .. math::
        w_{ui} = \frac{1}{\sqrt{d_u}\sqrt{d_i}},

    the degrees counted in :obj:`edge_type`. The reverse :obj:`rev_edge_type`
    is kept in sync: it holds exactly the kept pairs, flipped. Per-edge
    attributes of both edge types are filtered the same way; attributes whose
    name contains :obj:`"index"` other than :obj:`edge_index` (e.g. the
    :obj:`valid_label_index` / :obj:`test_label_index` pairs) are left as they
    are, as is everything else (the rules of
    :class:`~pyg_mentor.transforms.DropInteractions`). The numbers of users
    and items are taken from the node stores when set.

    Returns a shallow copy of the data; the input is never modified. Draws
    from :obj:`generator`, or the global random number generator.

    Args:
        p (float): The drop rate, :math:`0 \le p < 1` (FREEDOM: 0.8 or 0.9).
        edge_type (tuple[str, str, str], optional): The user-item edge type.
            (default: :obj:`('user', 'rates', 'item')`)
        rev_edge_type (tuple[str, str, str], optional): Its reverse edge type,
            or :obj:`None`. (default: :obj:`('item', 'rated_by', 'user')`)
        generator (torch.Generator, optional): The random number generator.
            (default: :obj:`None`)

    Example:
        >>> view = DegreeSensitivePruning(0.8)(data)  # ~20% of the edges
    """

    def __init__(
        self,
        p: float,
        edge_type: EdgeType = RATES,
        rev_edge_type: EdgeType | None = RATED_BY,
        generator: torch.Generator | None = None,
    ) -> None:
        self.p = _check_probability(p)
        self.edge_type = _check_edge_type(edge_type, 'edge_type')
        self.rev_edge_type = (None if rev_edge_type is None else
                              _check_edge_type(rev_edge_type, 'rev_edge_type'))
        if self.rev_edge_type is not None and (
                self.rev_edge_type[0] != self.edge_type[2]
                or self.rev_edge_type[2] != self.edge_type[0]):
            raise ValueError(f"'rev_edge_type' {self.rev_edge_type} does not "
                             f"reverse 'edge_type' {self.edge_type}")
        self.generator = generator

    def forward(self, data: HeteroData) -> HeteroData:
        name = self.__class__.__name__
        if not isinstance(data, HeteroData):
            raise TypeError(f"'{name}' expects a HeteroData object "
                            f"(got {type(data).__name__})")
        if self.edge_type not in data.edge_types:
            raise ValueError(f"The data has no edge type {self.edge_type} "
                             f"(edge types present: {data.edge_types})")
        data = copy.copy(data)
        store = data[self.edge_type]
        if 'edge_index' not in store:
            raise ValueError(f"'{name}' needs 'edge_index' on edge type "
                             f"{self.edge_type}")
        edge_index = store.edge_index
        src, _, dst = self.edge_type
        _, mask = degree_sensitive_pruning(
            edge_index, self.p, _num_nodes(data, src), _num_nodes(data, dst),
            generator=self.generator)

        rev_mask = None
        if (self.rev_edge_type is not None
                and self.rev_edge_type in data.edge_types):
            rev_store = data[self.rev_edge_type]
            if 'edge_index' not in rev_store:
                raise ValueError(f"'{name}' needs 'edge_index' on edge type "
                                 f"{self.rev_edge_type}")
            rev_mask = _reverse_mask(edge_index, rev_store.edge_index, mask,
                                     self.edge_type, self.rev_edge_type)
        _filter_edges(store, mask)
        if rev_mask is not None:
            _filter_edges(data[self.rev_edge_type], rev_mask)
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(p={self.p}, '
                f'edge_type={self.edge_type}, '
                f'rev_edge_type={self.rev_edge_type})')


def _num_nodes(data: HeteroData, node_type: str) -> int | None:
    if node_type in data.node_types and 'num_nodes' in data[node_type]:
        return int(data[node_type].num_nodes)
    return None
