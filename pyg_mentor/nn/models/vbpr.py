from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_mentor.nn.functional import bpr_loss, embedding_norm_loss
from pyg_mentor.nn.models.base import (
    Recommender,
    check_feature_dims,
    feature_dims,
    global_index,
    item_features,
    node_rows,
    register_model,
)
from pyg_mentor.typing import ITEM, USER


# MMRec's VBPR.yaml gives the grid only; the single-run reg_weight is our
# pick within it (untuned).
@register_model(
    'vbpr',
    defaults={'lr': 1e-3},
    grid={'reg_weight': [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
)
class VBPR(Recommender):
    r"""VBPR: visual Bayesian personalised ranking (He and McAuley, AAAI
    2016), as adapted by MMRec's ``VBPR`` to any item features.

    Items are the concatenation of a free ID embedding and a linear map of
    their (frozen) concatenated modality features; users have one embedding
    of twice the width:

    .. math::
        \mathbf{e}_i = \left[\mathbf{q}_i \,\|\, \mathbf{W}
        [\mathbf{x}^{1}_i \| \dots \| \mathbf{x}^{M}_i] + \mathbf{b}\right]
        \in \mathbb{R}^{2d}, \qquad
        \hat{y}_{ui} = \mathbf{p}_u^{\top} \mathbf{e}_i, \quad
        \mathbf{p}_u \in \mathbb{R}^{2d},

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}} + \lambda \frac{1}{B}
        \left(\lVert \mathbf{P}_{U} \rVert_F + \lVert \mathbf{E}_{I^+}
        \rVert_F + \lVert \mathbf{E}_{I^-} \rVert_F\right)

    over the batch rows (MMRec's ``EmbLoss``, norms not squared). As in
    MMRec: Xavier-uniform :math:`\mathbf{P}` and :math:`\mathbf{Q}`,
    Xavier-normal :math:`\mathbf{W}`, zero bias; no item or user bias terms
    (the original VBPR's :math:`\beta_i`, :math:`\beta'` are not in MMRec's
    version); features in modality-name order (MMRec: text then image; the
    order only permutes the columns of :math:`\mathbf{W}`). The loss maps only
    the batch's items, which gives MMRec's value and gradients without
    projecting all items every batch.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        feature_dims (Mapping[str, int]): The width :math:`d_m` of every
            modality's item features :obj:`data['item'].x_<m>` (at least one).
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-3`)
    """

    multimodal = True
    supports_sampling = True
    supports_distributed = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        reg_weight: float = 1e-3,
    ):
        super().__init__(num_users, num_items)
        self.modalities = check_feature_dims('VBPR', feature_dims)
        self.feature_dims = {m: feature_dims[m] for m in self.modalities}
        self.embedding_dim = embedding_dim
        self.reg_weight = reg_weight
        self.user_emb = torch.nn.Parameter(torch.empty(num_users, 2 * embedding_dim))
        self.item_emb = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        self.item_linear = torch.nn.Linear(sum(self.feature_dims.values()), embedding_dim)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> VBPR:
        return cls(data[USER].num_nodes, data[ITEM].num_nodes, feature_dims('VBPR', data), **kwargs)

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)
        torch.nn.init.xavier_normal_(self.item_linear.weight)
        torch.nn.init.zeros_(self.item_linear.bias)

    def item_embedding(self, data: HeteroData, items: Tensor | None = None) -> Tensor:
        r"""The item representations :math:`\mathbf{e}_i` :obj:`[N, 2d]` of
        :obj:`items` (all items of :obj:`data` if :obj:`None`; ids of
        :obj:`data`, local on a sampled subgraph), from the features of
        :obj:`data`."""
        features = item_features('VBPR', data, self.feature_dims, self.num_items)
        x = [features[m] for m in self.modalities]
        if items is None:
            return torch.cat(
                [
                    node_rows(self.item_emb, data, ITEM),
                    self.item_linear(torch.cat(x, -1).to(self.item_emb.dtype)),
                ],
                -1,
            )
        x = torch.cat([f[items] for f in x], -1).to(self.item_emb.dtype)
        return torch.cat([self.item_emb[global_index(items, data, ITEM)], self.item_linear(x)], -1)

    def forward(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        return node_rows(self.user_emb, data, USER), self.item_embedding(data)

    def loss(self, data: HeteroData, batch: Tensor) -> dict[str, Tensor]:
        users, pos, neg = batch
        items, inverse = torch.cat([pos, neg]).unique(return_inverse=True)
        item = self.item_embedding(data, items)
        u = self.user_emb[global_index(users, data, USER)]
        p, n = item[inverse[: pos.numel()]], item[inverse[pos.numel() :]]
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = self.reg_weight * embedding_norm_loss(u, p, n)
        return {'loss': bpr + reg, 'bpr': bpr, 'reg': reg}

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
            f'modalities={self.modalities}, embedding_dim={self.embedding_dim}, '
            f'reg_weight={self.reg_weight})'
        )
