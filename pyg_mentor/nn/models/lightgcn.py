from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv
from torch_geometric.typing import EdgeType

from pyg_mentor.nn.conv.bipartite_light_conv import BipartiteLightConv
from pyg_mentor.nn.functional import bpr_loss, embedding_norm_loss
from pyg_mentor.nn.models.base import (
    Recommender,
    check_num_neighbors,
    node_rows,
    register_model,
)
from pyg_mentor.typing import ITEM, RATED_BY, RATES, USER


def light_conv(normalize: bool = True, cached: bool = True) -> HeteroConv:
    r"""One LightGCN layer on the user-item :obj:`HeteroData`: a
    :class:`~torch_geometric.nn.conv.HeteroConv` of two
    :class:`~pyg_mentor.nn.conv.BipartiteLightConv` (user :math:`\to` item,
    item :math:`\to` user), i.e. one product with
    :math:`\mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` (with
    :obj:`normalize=False`: with the given edge weights)."""
    return HeteroConv(
        {
            RATES: BipartiteLightConv(normalize, cached),
            RATED_BY: BipartiteLightConv(normalize, cached),
        },
        aggr='sum',
    )


class UserItemConv(torch.nn.Module):
    r"""One LightGCN layer on the user-item edges of a :obj:`HeteroData`, both
    ways (:func:`light_conv`), that normalises as the graph requires:

    * edges without weights (the full training graph, an augmented view) are
      normalised with the degrees of the given edges, and the normalised
      adjacency is cached for the graph (:obj:`normalize=True, cached=True`);
    * edges that carry :obj:`edge_weight` (a sampled subgraph, whose weights
      :class:`~pyg_mentor.transforms.BipartiteNorm` computed on the full
      graph) propagate with those weights as given, so that the border nodes
      of a subgraph, which have only part of their edges in it, are weighted
      by their full-graph degrees (:obj:`normalize=False`; cached too, so
      that the layers and encoders of one batch share the subgraph's
      adjacency, rebuilt for the next batch's subgraph).
    """

    def __init__(self):
        super().__init__()
        self.normalized = light_conv()
        self.weighted = light_conv(normalize=False)

    def reset_parameters(self):
        self.normalized.reset_parameters()
        self.weighted.reset_parameters()

    def forward(
        self, x_dict: dict[str, Tensor], edge_index_dict: dict, edge_weight_dict: dict | None = None
    ) -> dict[str, Tensor]:
        if edge_weight_dict is None:
            return self.normalized(x_dict, edge_index_dict)
        return self.weighted(x_dict, edge_index_dict, edge_weight_dict=edge_weight_dict)


def user_item_edges(data: HeteroData) -> dict[tuple[str, str, str], Tensor]:
    r"""The user-item edges of :obj:`data` both ways, as the
    :obj:`edge_index_dict` of :func:`light_conv` (a clear error if missing)."""
    for edge_type in (RATES, RATED_BY):
        if edge_type not in data.edge_types:
            raise ValueError(
                f'The graph has no {edge_type} edges (edge types: '
                f'{data.edge_types}); see pyg_mentor.typing for the layout'
            )
    return {RATES: data[RATES].edge_index, RATED_BY: data[RATED_BY].edge_index}


def user_item_weights(data: HeteroData) -> dict[tuple[str, str, str], Tensor] | None:
    r"""The propagation weights :obj:`edge_weight` of the user-item edges of
    :obj:`data` both ways (a sampled subgraph's full-graph weights, see
    :class:`UserItemConv`), or :obj:`None` if the edges carry none."""
    weights = {t: data[t].get('edge_weight') for t in (RATES, RATED_BY) if t in data.edge_types}
    if all(w is None for w in weights.values()):
        return None
    if any(w is None for w in weights.values()) or len(weights) != 2:
        raise ValueError(
            'The user-item edges carry edge_weight in one direction '
            'only; give both directions the same weights (BipartiteNorm)'
        )
    return weights


def propagate_mean(
    conv: torch.nn.Module,
    user: Tensor,
    item: Tensor,
    edge_index_dict: dict,
    num_layers: int,
    edge_weight_dict: dict | None = None,
) -> tuple[Tensor, Tensor]:
    r"""LightGCN's layer mean
    :math:`\frac{1}{L+1}\sum_{l=0}^{L}\hat{\mathbf{A}}^l\mathbf{E}` of the user
    and item embeddings :math:`\mathbf{E} = [\mathbf{E}_U; \mathbf{E}_I]`
    (with :class:`UserItemConv`: on a full graph or a sampled subgraph)."""
    x = {USER: user, ITEM: item}
    user_out, item_out = [user], [item]
    for _ in range(num_layers):
        x = (
            conv(x, edge_index_dict)
            if edge_weight_dict is None
            else conv(x, edge_index_dict, edge_weight_dict)
        )
        user_out.append(x[USER])
        item_out.append(x[ITEM])
    return torch.stack(user_out).mean(0), torch.stack(item_out).mean(0)


@register_model(
    'lightgcn',
    grid={
        'num_layers': [1, 2, 3, 4],
        'reg_weight': [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
    },
)
class LightGCN(Recommender):
    r"""LightGCN (He et al., SIGIR 2020) on the user-item :obj:`HeteroData`,
    as MMRec's ``LightGCN``.

    Every layer is a :class:`~torch_geometric.nn.conv.HeteroConv` of two
    :class:`~pyg_mentor.nn.conv.BipartiteLightConv` (user :math:`\to` item and
    item :math:`\to` user), i.e. one product with
    :math:`\hat{\mathbf{A}} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}` of
    the symmetric graph, and the output is the mean of the layers:

    .. math::
        \mathbf{E}^{(l+1)} = \hat{\mathbf{A}} \mathbf{E}^{(l)}, \qquad
        \mathbf{E} = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{E}^{(l)}, \qquad
        \hat{y}_{ui} = \mathbf{e}_u^{\top} \mathbf{e}_i

    Loss: BPR plus :math:`\lambda` times MMRec's ``EmbLoss`` of the batch's
    layer-0 embeddings; Xavier-uniform initialisation.

    The graph is the :obj:`data` argument of :meth:`forward` / :meth:`loss`
    (its :obj:`('user', 'rates', 'item')` and :obj:`('item', 'rated_by',
    'user')` edges): the full graph, or a subgraph sampled around a batch
    (:attr:`supports_sampling`; the :obj:`L`-hop neighbourhood of the batch's
    users and items, :meth:`sampled_neighbors`).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        num_layers (int, optional): Propagation layers :math:`L`.
            (default: :obj:`2`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)
    """

    supports_sampling = True
    supports_distributed = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        num_layers: int = 2,
        reg_weight: float = 1e-4,
    ):
        super().__init__(num_users, num_items)
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.reg_weight = reg_weight
        self.user_emb = torch.nn.Parameter(torch.empty(num_users, embedding_dim))
        self.item_emb = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        # One parameter-free layer, applied `num_layers` times; its normalised
        # adjacencies are cached for the graph they were built on.
        self.conv = UserItemConv()
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)
        self.conv.reset_parameters()

    def sampled_neighbors(self, num_neighbors: Sequence[int]) -> dict[EdgeType, list[int]]:
        r"""The :obj:`L`-hop user-item neighbourhood, :obj:`num_neighbors[l]`
        per node and direction at hop :obj:`l`."""
        counts = check_num_neighbors('LightGCN', num_neighbors, self.num_layers)
        return {RATES: counts, RATED_BY: list(counts)}

    def _propagate(self, data: HeteroData) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # The layer-0 embeddings of the graph's nodes and the layer means.
        user = node_rows(self.user_emb, data, USER)
        item = node_rows(self.item_emb, data, ITEM)
        return (
            user,
            item,
            *propagate_mean(
                self.conv,
                user,
                item,
                user_item_edges(data),
                self.num_layers,
                user_item_weights(data),
            ),
        )

    def forward(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        return self._propagate(data)[2:]

    def loss(self, data: HeteroData, batch: Tensor) -> dict[str, Tensor]:
        users, pos, neg = batch
        user, item, user_out, item_out = self._propagate(data)
        u = user_out[users]
        bpr = bpr_loss((u * item_out[pos]).sum(-1), (u * item_out[neg]).sum(-1))
        reg = self.reg_weight * embedding_norm_loss(user[users], item[pos], item[neg])
        return {'loss': bpr + reg, 'bpr': bpr, 'reg': reg}

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
            f'embedding_dim={self.embedding_dim}, '
            f'num_layers={self.num_layers}, reg_weight={self.reg_weight})'
        )
