r"""Builds the user-item :class:`~torch_geometric.data.HeteroData` of
:mod:`pyg_mentor.typing` from plain tensors (your own graph, a test's tiny
graph)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_mentor.typing import ITEM, RATED_BY, RATES, SIMILAR, USER, feature_key


def user_item_data(
    num_users: int,
    num_items: int,
    edge_index: Tensor,
    features: Mapping[str, Tensor] | None = None,
    item_graph: tuple[Tensor, Tensor] | None = None,
) -> HeteroData:
    r"""The graph every model of the package takes: the (user, item) pairs as
    :obj:`('user', 'rates', 'item')` and, flipped, :obj:`('item', 'rated_by',
    'user')`; item features as :obj:`data['item'].x_<modality>`; an item graph
    as :obj:`('item', 'similar', 'item')`.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        edge_index (torch.Tensor): (user, item) pairs :obj:`[2, E]`.
        features (Mapping[str, torch.Tensor], optional): :obj:`{modality:
            [I, d_m]}` item features.
        item_graph (tuple[torch.Tensor, torch.Tensor], optional): The fused
            item graph ``(edge_index [2, E_s], edge_weight [E_s])``, sources in
            row 0.

    Example:
        >>> data = user_item_data(3, 4, torch.tensor([[0, 1, 2], [0, 0, 3]]))
        >>> LightGCN.from_data(data)(data)[1].shape
        torch.Size([4, 64])
    """
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f'edge_index must be [2, E], got {list(edge_index.shape)}')
    if edge_index.numel() and (
        edge_index[0].max() >= num_users or edge_index[1].max() >= num_items or edge_index.min() < 0
    ):
        raise ValueError(f'edge_index holds ids outside [0, {num_users}) x [0, {num_items})')
    data = HeteroData()
    data[USER].num_nodes = num_users
    data[ITEM].num_nodes = num_items
    data[RATES].edge_index = edge_index
    data[RATED_BY].edge_index = edge_index.flip(0)
    for name, x in (features or {}).items():
        data[ITEM][feature_key(name)] = x
    if item_graph is not None:
        data[SIMILAR].edge_index, data[SIMILAR].edge_weight = item_graph
    return data
