r"""Random interaction dropping (graph-view augmentation), as a transform."""

from __future__ import annotations

import copy

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.data.storage import EdgeStorage
from torch_geometric.transforms import BaseTransform
from torch_geometric.typing import EdgeType

from pyg_mentor.typing import RATED_BY, RATES
from pyg_mentor.utils.augment import _check_probability, drop_interactions


class UserItemEdgeFilter(BaseTransform):
    r"""Base of the transforms that keep a subset of the user-item edges of a
    :class:`~torch_geometric.data.HeteroData` (:class:`DropInteractions`,
    :class:`~pyg_mentor.transforms.DegreeSensitivePruning`): subclasses give
    the mask of kept edges in :meth:`edge_mask`; this class checks the input,
    keeps the reverse edge type in sync, filters the per-edge attributes of
    both and returns a shallow copy (the rules are those of
    :class:`DropInteractions`).

    Args:
        p (float): The drop rate, :math:`0 \le p < 1`.
        edge_type (tuple[str, str, str], optional): The user-item edge type.
            (default: :obj:`('user', 'rates', 'item')`)
        rev_edge_type (tuple[str, str, str], optional): Its reverse edge type,
            or :obj:`None`. (default: :obj:`('item', 'rated_by', 'user')`)
    """

    def __init__(
        self,
        p: float,
        edge_type: EdgeType = RATES,
        rev_edge_type: EdgeType | None = RATED_BY,
    ) -> None:
        self.p = _check_probability(p)
        self.edge_type = _check_edge_type(edge_type, 'edge_type')
        self.rev_edge_type = (
            None if rev_edge_type is None else _check_edge_type(rev_edge_type, 'rev_edge_type')
        )
        if self.rev_edge_type is not None and (
            self.rev_edge_type[0] != self.edge_type[2] or self.rev_edge_type[2] != self.edge_type[0]
        ):
            raise ValueError(
                f"'rev_edge_type' {self.rev_edge_type} does not "
                f"reverse 'edge_type' {self.edge_type}"
            )

    def edge_mask(self, data: HeteroData, edge_index: Tensor) -> Tensor:
        r"""The boolean mask of the edges of :obj:`edge_type` to keep."""
        raise NotImplementedError

    def forward(self, data: HeteroData) -> HeteroData:
        name = self.__class__.__name__
        if not isinstance(data, HeteroData):
            raise TypeError(f"'{name}' expects a HeteroData object (got {type(data).__name__})")
        if self.edge_type not in data.edge_types:
            raise ValueError(
                f'The data has no edge type {self.edge_type} '
                f'(edge types present: {data.edge_types})'
            )
        # BaseTransform.__call__ copies too; copying here keeps a direct
        # `forward` call from modifying its input. Shallow copies are cheap.
        data = copy.copy(data)

        store = data[self.edge_type]
        edge_index = _edge_index(store, name)
        mask = self.edge_mask(data, edge_index)

        rev_store, rev_mask = None, None
        if self.rev_edge_type is not None and self.rev_edge_type in data.edge_types:
            rev_store = data[self.rev_edge_type]
            rev_mask = _reverse_mask(
                edge_index, _edge_index(rev_store, name), mask, self.edge_type, self.rev_edge_type
            )

        _filter_edges(store, mask)
        if rev_store is not None and rev_mask is not None:
            _filter_edges(rev_store, rev_mask)
        return data

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(p={self.p}, '
            f'edge_type={self.edge_type}, '
            f'rev_edge_type={self.rev_edge_type})'
        )


class DropInteractions(UserItemEdgeFilter):
    r"""Randomly drops user-item interactions of a
    :class:`~torch_geometric.data.HeteroData`, each independently with
    probability :math:`p` (see
    :func:`~pyg_mentor.utils.augment.drop_interactions`):

    .. math::
        \mathcal{E}' = \{ (u, i) \in \mathcal{E} : m_{ui} = 1 \},
        \qquad m_{ui} \sim \mathrm{Bernoulli}(1 - p),

    on :obj:`edge_type`, and keeps its reverse :obj:`rev_edge_type` in sync:
    the reverse holds exactly the kept pairs, flipped. Per-edge attributes of
    both edge types (tensors with one row per edge, e.g. :obj:`edge_weight`)
    are filtered the same way; attributes whose name contains
    :obj:`"index"` other than :obj:`edge_index` (e.g. the
    :obj:`valid_label_index` / :obj:`test_label_index` pairs) are not per-edge
    and are left as they are, as is everything else in the data.

    The reverse must hold the same pairs as :obj:`edge_type`, flipped; usually
    in the same order (then both get the same mask), otherwise each reverse
    edge is matched to its forward pair. If :obj:`rev_edge_type` is
    :obj:`None` or not in the data, only :obj:`edge_type` is changed.

    Returns a shallow copy of the data (:func:`copy.copy`); the input is never
    modified. Draws from the global random number generator (seed it with
    :func:`torch.manual_seed`).

    Args:
        p (float): The drop probability, :math:`0 \le p < 1`.
        edge_type (tuple[str, str, str], optional): The user-item edge type.
            (default: :obj:`('user', 'rates', 'item')`)
        rev_edge_type (tuple[str, str, str], optional): Its reverse edge type.
            (default: :obj:`('item', 'rated_by', 'user')`)

    Example:
        >>> import torch_geometric.transforms as T
        >>> transform = T.Compose([DropInteractions(0.2), MaskFeatures(0.5)])
        >>> view = transform(data)  # data itself is unchanged
    """

    def edge_mask(self, data: HeteroData, edge_index: Tensor) -> Tensor:
        return drop_interactions(edge_index, self.p)[1]


def _check_edge_type(edge_type: EdgeType, name: str) -> EdgeType:
    if (
        not isinstance(edge_type, (tuple, list))
        or len(edge_type) != 3
        or not all(isinstance(part, str) for part in edge_type)
    ):
        raise ValueError(
            f"'{name}' must be a (src, relation, dst) tuple of strings (got {edge_type!r})"
        )
    return (edge_type[0], edge_type[1], edge_type[2])


def _edge_index(store: EdgeStorage, name: str) -> Tensor:
    for key in ('adj', 'adj_t'):
        if key in store:
            raise ValueError(
                f"Edge type {store._key} holds '{key}', which "
                f"'{name}' cannot keep in sync; store "
                f"the connectivity as 'edge_index'"
            )
    if 'edge_index' not in store:
        raise ValueError(f"Edge type {store._key} has no 'edge_index'")
    return store.edge_index


def _reverse_mask(
    edge_index: Tensor,
    rev_edge_index: Tensor,
    mask: Tensor,
    edge_type: EdgeType,
    rev_edge_type: EdgeType,
) -> Tensor:
    r"""The mask of the reverse edges that keeps exactly the flipped pairs
    kept by :obj:`mask`."""
    if rev_edge_index.size(1) == edge_index.size(1):
        if torch.equal(rev_edge_index, edge_index.flip(0)):
            return mask  # The layout's usual case: same order.
        # Another order: match the k-th occurrence of each pair in the
        # forward edges with its k-th occurrence in the reverse edges.
        n = int(torch.cat([edge_index[1], rev_edge_index[0]]).max()) + 1
        key, perm = torch.sort(edge_index[0] * n + edge_index[1], stable=True)
        rev_key, rev_perm = torch.sort(rev_edge_index[1] * n + rev_edge_index[0], stable=True)
        if torch.equal(key, rev_key):
            rev_mask = torch.empty_like(mask)
            rev_mask[rev_perm] = mask[perm]
            return rev_mask
    raise ValueError(
        f'The edges of {rev_edge_type} are not those of '
        f'{edge_type} flipped, so they cannot be kept in sync '
        f"(pass 'rev_edge_type=None' to drop only {edge_type})"
    )


def _filter_edges(store: EdgeStorage, mask: Tensor) -> None:
    r"""Keeps the edges of :obj:`store` where :obj:`mask` is :obj:`True`:
    :obj:`edge_index` along its columns and every per-edge attribute along
    its first dimension."""
    num_edges = store.edge_index.size(1)
    for key, value in list(store.items()):
        if key == 'edge_index':
            store[key] = value[:, mask]
        elif (
            isinstance(value, Tensor)
            and value.dim() > 0
            and value.size(0) == num_edges
            and 'index' not in key
        ):
            store[key] = value[mask]
