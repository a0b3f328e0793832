r"""FREEDOM's degree-sensitive pruning of user-item edges, as a transform."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

from pyg_mentor.transforms.drop_interactions import UserItemEdgeFilter
from pyg_mentor.typing import RATED_BY, RATES
from pyg_mentor.utils.augment import degree_sensitive_pruning


class DegreeSensitivePruning(UserItemEdgeFilter):
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
        generator (torch.Generator, optional): The random number generator;
            the draws are made on its device. (default: :obj:`None`)

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
        super().__init__(p, edge_type, rev_edge_type)
        self.generator = generator

    def edge_mask(self, data: HeteroData, edge_index: Tensor) -> Tensor:
        src, _, dst = self.edge_type
        device = edge_index.device
        if self.generator is not None and self.generator.device != device:
            # Draw where the generator lives (e.g. the trainer's CPU generator
            # for a graph on the GPU), so that the draws stay reproducible.
            edge_index = edge_index.to(self.generator.device)
        return degree_sensitive_pruning(
            edge_index,
            self.p,
            _num_nodes(data, src),
            _num_nodes(data, dst),
            generator=self.generator,
        )[1].to(device)


def _num_nodes(data: HeteroData, node_type: str) -> int | None:
    if node_type in data.node_types and 'num_nodes' in data[node_type]:
        return int(data[node_type].num_nodes)
    return None
