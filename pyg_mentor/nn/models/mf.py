from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_mentor.nn.functional import bpr_loss, embedding_norm_loss
from pyg_mentor.nn.models.base import Recommender, global_index, node_rows, register_model
from pyg_mentor.typing import ITEM, USER


@register_model(
    'mf_bpr',
    grid={'reg_weight': [2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]},
)
class MFBPR(Recommender):
    r"""Matrix factorisation trained with BPR (Rendle et al., UAI 2009), as
    MMRec's ``BPR`` model.

    .. math::
        \hat{y}_{ui} = \mathbf{e}_u^{\top} \mathbf{e}_i, \qquad
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}} + \lambda \frac{1}{B}
        \left(\lVert \mathbf{E}_U \rVert_F + \lVert \mathbf{E}_{I^+} \rVert_F
        + \lVert \mathbf{E}_{I^-} \rVert_F\right)

    over the batch embeddings (MMRec's ``EmbLoss``), with Xavier-normal
    initialisation. The graph is not used: :meth:`forward` takes it only for
    the common interface (on a sampled subgraph, the rows of its nodes).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-5`)
    """

    supports_sampling = True
    supports_distributed = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int = 64,
        reg_weight: float = 1e-5,
    ):
        super().__init__(num_users, num_items)
        self.embedding_dim = embedding_dim
        self.reg_weight = reg_weight
        self.user_emb = torch.nn.Embedding(num_users, embedding_dim)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.user_emb.weight)
        torch.nn.init.xavier_normal_(self.item_emb.weight)

    def forward(self, data: HeteroData | None = None) -> tuple[Tensor, Tensor]:
        if data is None:
            return self.user_emb.weight, self.item_emb.weight
        return (
            node_rows(self.user_emb.weight, data, USER),
            node_rows(self.item_emb.weight, data, ITEM),
        )

    def loss(self, data: HeteroData | None, batch: Tensor) -> dict[str, Tensor]:
        users, pos, neg = batch
        if data is not None:  # Local ids on a sampled subgraph.
            users = global_index(users, data, USER)
            pos, neg = global_index(pos, data, ITEM), global_index(neg, data, ITEM)
        u, p, n = self.user_emb(users), self.item_emb(pos), self.item_emb(neg)
        bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        reg = self.reg_weight * embedding_norm_loss(u, p, n)
        return {'loss': bpr + reg, 'bpr': bpr, 'reg': reg}

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
            f'embedding_dim={self.embedding_dim}, reg_weight={self.reg_weight})'
        )
