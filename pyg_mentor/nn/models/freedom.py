from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

from pyg_mentor.nn.conv import ItemGraphConv
from pyg_mentor.nn.functional import bpr_loss
from pyg_mentor.nn.models.base import (
    Recommender,
    check_feature_dims,
    check_num_neighbors,
    feature_dims,
    item_features,
    item_graph,
    node_rows,
    register_model,
)
from pyg_mentor.nn.models.lightgcn import (
    UserItemConv,
    propagate_mean,
    user_item_edges,
    user_item_weights,
)
from pyg_mentor.transforms import DegreeSensitivePruning
from pyg_mentor.typing import ITEM, RATED_BY, RATES, SIMILAR, USER
from pyg_mentor.utils.augment import _check_probability


# MMRec's FREEDOM.yaml gives the grid only; the single-run dropout and
# reg_weight are our pick within it (untuned).
@register_model(
    'freedom',
    defaults={'lr': 1e-3},
    grid={'dropout': [0.8, 0.9], 'reg_weight': [0.0, 1e-5, 1e-4, 1e-3]},
)
class FREEDOM(Recommender):
    r"""FREEDOM: freezing and denoising graph structures for multimodal
    recommendation (Zhou and Shen, ACM MM 2023), as MMRec's ``FREEDOM``.

    **Frozen item graph.** One FAISS cosine :math:`k`-NN graph per modality
    from the raw features (self included, :math:`\mathbf{S}_m =
    \mathbf{D}^{-1/2}\mathbf{A}_m\mathbf{D}^{-1/2}`, see
    :func:`~pyg_mentor.utils.knn_item_graph`), fused as
    :math:`\mathbf{S} = w\,\mathbf{S}_{image} + (1 - w)\,\mathbf{S}_{text}`
    (:math:`w` = :obj:`mm_image_weight`; uniform weights for other modality
    sets), built once and never updated.

    **Denoised user-item graph.** Before every training epoch
    (:meth:`on_epoch_start`, MMRec's ``pre_epoch_processing``), the
    :class:`~pyg_mentor.transforms.DegreeSensitivePruning` transform keeps
    :math:`\lfloor (1 - p)|\mathcal{E}|\rfloor` training pairs, sampled with
    probabilities :math:`\propto 1/\sqrt{d_u d_i}`; propagating on that view
    re-normalises it on its own degrees, giving :math:`\hat{\mathbf{A}}_p`.
    The epoch trains on the view; evaluation scores on the full training graph
    :math:`\hat{\mathbf{A}}` (the graph is the :obj:`data` argument of
    :meth:`forward`, :meth:`loss` and :meth:`scorer`). With sampled
    training, every batch's subgraph is sampled from the epoch's view, its
    user-item edges weighted by the view's degrees (:meth:`sampled_neighbors`).

    **Representations and scores.**

    .. math::
        \mathbf{E}^{(l+1)} = \hat{\mathbf{A}}_p \mathbf{E}^{(l)}, \quad
        [\mathbf{H}_U; \mathbf{H}_I] = \frac{1}{L+1}\sum_{l=0}^{L}
        \mathbf{E}^{(l)}, \quad
        \tilde{\mathbf{h}}_i = \mathbf{h}_i +
        (\mathbf{S}^{L_m}\mathbf{E}^{(0)}_I)_i, \quad
        \hat{y}_{ui} = \mathbf{h}_u^{\top}\tilde{\mathbf{h}}_i

    with :math:`\mathbf{E}^{(0)} = [\mathbf{E}_U; \mathbf{E}_I]` the ID
    embeddings (Xavier-uniform), :math:`L` = :obj:`num_layers` and
    :math:`L_m` = :obj:`num_mm_layers`.

    **Loss.** BPR on the scores plus, per modality :math:`m`, BPR of the
    propagated users against the projected features
    :math:`\mathbf{f}^m_i = \mathbf{W}_m \mathbf{x}^m_i + \mathbf{b}_m`:

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}}(\mathbf{h}_u,
        \tilde{\mathbf{h}}_{i^+}, \tilde{\mathbf{h}}_{i^-}) + \lambda
        \sum_{m} \mathcal{L}_{\mathrm{BPR}}(\mathbf{h}_u, \mathbf{f}^m_{i^+},
        \mathbf{f}^m_{i^-}).

    The raw features :math:`\mathbf{x}^m` are fixed inputs, as in the paper.
    MMRec's code trains copies of them
    (``nn.Embedding.from_pretrained(freeze=False)``; Adam then updates every
    row every step, ~3x the epoch time on Baby's 4096-d image features):
    :obj:`train_features=True` reproduces that. Either way the item graph is
    the one built from the initial features.
    Projections are :math:`d_m \to d` (MMRec's ``feat_embed_dim`` must equal
    the embedding size for the dot product, so it is not a separate option).
    MMRec's unused options ``lambda_coeff``, ``weight_size``,
    ``degree_ratio`` and ``cf_model`` are not reproduced.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        feature_dims (Mapping[str, int]): The width :math:`d_m` of every
            modality's item features :obj:`data['item'].x_<m>` (at least one).
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): User-item layers :math:`L` (MMRec's
            ``n_ui_layers``). (default: :obj:`2`)
        num_mm_layers (int, optional): Item-graph layers :math:`L_m`.
            (default: :obj:`1`)
        dropout (float, optional): Pruned fraction :math:`p` of the user-item
            edges; :obj:`0` trains on the full graph. (default: :obj:`0.8`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)
        train_features (bool, optional): Train copies of the raw features,
            as MMRec's code does (initialised from the data by
            :meth:`from_data` or :meth:`init_features`). (default: :obj:`False`)
    """

    multimodal = True
    needs_item_graph = True
    supports_sampling = True
    supports_distributed = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        num_layers: int = 2,
        num_mm_layers: int = 1,
        dropout: float = 0.8,
        reg_weight: float = 1e-4,
        train_features: bool = False,
    ):
        super().__init__(num_users, num_items)
        self.modalities = check_feature_dims('FREEDOM', feature_dims)
        self.feature_dims = {m: feature_dims[m] for m in self.modalities}
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.num_mm_layers = num_mm_layers
        self.dropout = _check_probability(dropout, 'dropout')
        self.reg_weight = reg_weight
        self.train_features = train_features

        self.user_emb = torch.nn.Parameter(torch.empty(num_users, embedding_dim))
        self.item_emb = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        if train_features:  # Trained copies of the raw features (checkpointed).
            for m in self.modalities:
                self.register_parameter(
                    f'feat_{m}', torch.nn.Parameter(torch.zeros(num_items, feature_dims[m]))
                )
        self.projections = torch.nn.ModuleDict(
            {m: torch.nn.Linear(feature_dims[m], embedding_dim) for m in self.modalities}
        )
        # Parameter-free layers; each caches the normalised adjacency of the
        # graph it last propagated on (the epoch's pruned view, the full graph).
        self.conv = UserItemConv()
        self.item_conv = ItemGraphConv(cached=True)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> FREEDOM:
        r"""Builds FREEDOM for a dataset: the widths of its item features (and,
        with :obj:`train_features`, copies of them)."""
        model = cls(
            data[USER].num_nodes, data[ITEM].num_nodes, feature_dims('FREEDOM', data), **kwargs
        )
        if model.train_features:
            model.init_features(data)
        return model

    @torch.no_grad()
    def init_features(self, data: HeteroData) -> None:
        r"""Copies the item features of :obj:`data` into the trained copies
        (:obj:`train_features=True` only)."""
        if not self.train_features:
            raise ValueError('init_features needs train_features=True')
        features = item_features('FREEDOM', data, self.feature_dims, self.num_items)
        for m in self.modalities:
            getattr(self, f'feat_{m}').copy_(features[m])

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)
        for projection in self.projections.values():
            projection.reset_parameters()
        self.conv.reset_parameters()
        self.item_conv.reset_parameters()

    def on_epoch_start(
        self, data: HeteroData, epoch: int, generator: torch.Generator
    ) -> HeteroData:
        r"""The epoch's degree-sensitive pruned view of the training graph
        (:class:`~pyg_mentor.transforms.DegreeSensitivePruning`), drawn from
        :obj:`generator`; the graph itself if :obj:`dropout` is 0."""
        if self.dropout == 0:
            return data
        return DegreeSensitivePruning(self.dropout, generator=generator)(data)

    def sampled_neighbors(self, num_neighbors: Sequence[int]) -> dict[EdgeType, list[int]]:
        r"""The :obj:`L`-hop user-item neighbourhood (:obj:`num_neighbors[l]`
        per node and direction at hop :obj:`l`) and the :math:`L_m`-hop
        item-graph neighbourhood of the batch's items, all of it (at most
        :math:`k` per modality and item; its weights are normalised on the
        whole graph, a sample would change them). The item graph propagates
        the ID embeddings, not the user-item output, so the two
        neighbourhoods are sampled side by side over
        :math:`\max(L, L_m)` hops."""
        counts = check_num_neighbors('FREEDOM', num_neighbors, self.num_layers)
        hops = max(self.num_layers, self.num_mm_layers)
        counts += [0] * (hops - len(counts))
        return {
            RATES: counts,
            RATED_BY: list(counts),
            SIMILAR: [-1] * self.num_mm_layers + [0] * (hops - self.num_mm_layers),
        }

    def forward(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        r"""User :obj:`[U, d]` and item :obj:`[I, d]` representations on the
        user-item graph of :obj:`data` and its item graph."""
        item_emb = node_rows(self.item_emb, data, ITEM)
        user, item = propagate_mean(
            self.conv,
            node_rows(self.user_emb, data, USER),
            item_emb,
            user_item_edges(data),
            self.num_layers,
            user_item_weights(data),
        )
        graph_index, graph_weight = item_graph('FREEDOM', data)
        h = item_emb
        for _ in range(self.num_mm_layers):
            h = self.item_conv(h, graph_index, graph_weight)
        return user, item + h

    def _features(self, data: HeteroData) -> dict[str, Tensor]:
        if self.train_features:
            return {m: node_rows(getattr(self, f'feat_{m}'), data, ITEM) for m in self.modalities}
        return item_features('FREEDOM', data, self.feature_dims, self.num_items)

    def loss(self, data: HeteroData, batch: Tensor) -> dict[str, Tensor]:
        users, pos, neg = batch
        user, item = self(data)
        u = user[users]
        bpr = bpr_loss((u * item[pos]).sum(-1), (u * item[neg]).sum(-1))
        out = {'bpr': bpr}
        total = bpr
        if self.reg_weight != 0:
            features = self._features(data)
            items, inverse = torch.cat([pos, neg]).unique(return_inverse=True)
            for m in self.modalities:
                f = self.projections[m](features[m][items].to(self.item_emb.dtype))
                p, n = f[inverse[: pos.numel()]], f[inverse[pos.numel() :]]
                term = self.reg_weight * bpr_loss((u * p).sum(-1), (u * n).sum(-1))
                out[f'bpr_{m}'] = term
                total = total + term
        return {'loss': total, **out}

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
            f'modalities={self.modalities}, embedding_dim={self.embedding_dim}, '
            f'num_layers={self.num_layers}, dropout={self.dropout}, '
            f'reg_weight={self.reg_weight})'
        )
