from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv

from pyg_mentor.nn.conv import BipartiteLightConv, ItemGraphConv
from pyg_mentor.nn.functional import bpr_loss
from pyg_mentor.nn.models.base import Recommender, check_features, data_features, register_model
from pyg_mentor.nn.models.mentor import SIMILAR, build_item_graph
from pyg_mentor.typing import ITEM, RATED_BY, RATES, USER
from pyg_mentor.utils.augment import _check_probability, degree_sensitive_pruning


def _light_conv() -> HeteroConv:
    return HeteroConv({RATES: BipartiteLightConv(cached=True),
                       RATED_BY: BipartiteLightConv(cached=True)}, aggr='sum')


# MMRec's FREEDOM.yaml gives the grid only; the single-run dropout and
# reg_weight are our pick within it (untuned).
@register_model(
    'freedom',
    defaults={
        'embedding_dim': 64, 'num_layers': 2, 'num_mm_layers': 1, 'knn_k': 10,
        'mm_image_weight': 0.1, 'dropout': 0.8, 'reg_weight': 1e-4, 'lr': 1e-3,
    },
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
    (:meth:`on_epoch_start`, MMRec's ``pre_epoch_processing``),
    :math:`\lfloor (1 - p)|\mathcal{E}|\rfloor` training pairs are sampled with
    probabilities :math:`\propto 1/\sqrt{d_u d_i}` (see
    :func:`~pyg_mentor.utils.augment.degree_sensitive_pruning`) and
    re-normalised on their own degrees, giving :math:`\hat{\mathbf{A}}_p`.
    Evaluation (:obj:`model.eval()`) uses the full training graph
    :math:`\hat{\mathbf{A}}` instead.

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
        edge_index (torch.Tensor): Training pairs :obj:`[2, E]` (user, item).
        features (Mapping[str, torch.Tensor]): Item features per modality.
        item_graph (tuple[torch.Tensor, torch.Tensor]): The frozen item graph
            (edge_index, edge_weight), sources in row 0.
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): User-item layers :math:`L` (MMRec's
            ``n_ui_layers``). (default: :obj:`2`)
        num_mm_layers (int, optional): Item-graph layers :math:`L_m`.
            (default: :obj:`1`)
        knn_k (int, optional): Neighbours of the item graph, used by
            :meth:`from_data`. (default: :obj:`10`)
        mm_image_weight (float, optional): Image weight :math:`w` of the item
            graph, used by :meth:`from_data`. (default: :obj:`0.1`)
        dropout (float, optional): Pruned fraction :math:`p` of the user-item
            edges; :obj:`0` trains on the full graph. (default: :obj:`0.8`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)
        train_features (bool, optional): Train copies of the raw features,
            as MMRec's code does. (default: :obj:`False`)
    """

    multimodal = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        edge_index: Tensor,
        features: Mapping[str, Tensor],
        item_graph: tuple[Tensor, Tensor],
        embedding_dim: int = 64,
        num_layers: int = 2,
        num_mm_layers: int = 1,
        knn_k: int = 10,
        mm_image_weight: float = 0.1,
        dropout: float = 0.8,
        reg_weight: float = 1e-4,
        train_features: bool = False,
    ):
        super().__init__(num_users, num_items)
        self.modalities = check_features('FREEDOM', features, num_items)
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.num_mm_layers = num_mm_layers
        self.knn_k = knn_k
        self.mm_image_weight = mm_image_weight
        self.dropout = _check_probability(dropout, 'dropout')
        self.reg_weight = reg_weight
        self.train_features = train_features

        self.register_buffer('edge_index', edge_index, persistent=False)
        self.register_buffer('pruned_edge_index', None, persistent=False)
        self.register_buffer('item_graph_index', item_graph[0], persistent=False)
        self.register_buffer('item_graph_weight', item_graph[1].float(),
                             persistent=False)

        self.user_emb = torch.nn.Parameter(torch.empty(num_users, embedding_dim))
        self.item_emb = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        for m in self.modalities:  # Trained copies are checkpointed, fixed inputs not.
            x = features[m].detach().float()
            if train_features:
                self.register_parameter(f'feat_{m}', torch.nn.Parameter(x.clone()))
            else:
                self.register_buffer(f'feat_{m}', x, persistent=False)
        self.projections = torch.nn.ModuleDict({
            m: torch.nn.Linear(features[m].size(1), embedding_dim)
            for m in self.modalities
        })
        # Parameter-free layers. `conv` caches the normalised full graph;
        # `pruned_conv` caches the pruned graph of the current epoch and is
        # reset whenever it is resampled.
        self.conv = _light_conv()
        self.pruned_conv = _light_conv()
        self.item_conv = ItemGraphConv(cached=True)
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> FREEDOM:
        r"""Builds FREEDOM from a dataset: item features of every modality in
        :obj:`data`, and the frozen item graph (taken from
        :obj:`data['item', 'similar', 'item']` if present, otherwise built with
        FAISS as MENTOR's, from :obj:`knn_k` and :obj:`mm_image_weight`)."""
        features = data_features('FREEDOM', data)
        if SIMILAR in data.edge_types:
            graph = data[SIMILAR]
            item_graph = (graph.edge_index, graph.edge_weight)
        else:
            item_graph = build_item_graph(features, kwargs.get('knn_k', 10),
                                          kwargs.get('mm_image_weight', 0.1))
        return cls(data[USER].num_nodes, data[ITEM].num_nodes,
                   data[RATES].edge_index, features, item_graph, **kwargs)

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)
        for projection in self.projections.values():
            projection.reset_parameters()
        self.conv.reset_parameters()
        self.pruned_conv.reset_parameters()
        self.item_conv.reset_parameters()

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        self.resample_graph(generator)

    def resample_graph(self, generator: torch.Generator | None = None) -> None:
        r"""Draws a new degree-sensitive pruned user-item graph for training
        (from :obj:`generator`, or the global random number generator)."""
        edge_index = self.edge_index
        if generator is not None and generator.device != edge_index.device:
            edge_index = edge_index.to(generator.device)
        kept, _ = degree_sensitive_pruning(edge_index, self.dropout, self.num_users,
                                           self.num_items, generator=generator)
        self.pruned_edge_index = kept.to(self.edge_index.device)
        self.pruned_conv.reset_parameters()

    def _propagate(self, conv: HeteroConv, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        edge_index_dict = {RATES: edge_index, RATED_BY: edge_index.flip(0)}
        x = {USER: self.user_emb, ITEM: self.item_emb}
        user_out, item_out = [self.user_emb], [self.item_emb]
        for _ in range(self.num_layers):
            x = conv(x, edge_index_dict)
            user_out.append(x[USER])
            item_out.append(x[ITEM])
        return torch.stack(user_out).mean(0), torch.stack(item_out).mean(0)

    def forward(self) -> tuple[Tensor, Tensor]:
        r"""User :obj:`[U, d]` and item :obj:`[I, d]` representations: over
        the pruned graph in training mode (drawn on first use if
        :meth:`on_epoch_start` has not run), over the full graph in eval
        mode."""
        if self.training and self.dropout > 0:
            if self.pruned_edge_index is None:
                self.resample_graph()
            user, item = self._propagate(self.pruned_conv, self.pruned_edge_index)
        else:
            user, item = self._propagate(self.conv, self.edge_index)
        h = self.item_emb
        for _ in range(self.num_mm_layers):
            h = self.item_conv(h, self.item_graph_index, self.item_graph_weight)
        return user, item + h

    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        users, pos, neg = batch
        user, item = self()
        u = user[users]
        bpr = bpr_loss((u * item[pos]).sum(-1), (u * item[neg]).sum(-1))
        out = {'bpr': bpr}
        total = bpr
        if self.reg_weight != 0:
            items, inverse = torch.cat([pos, neg]).unique(return_inverse=True)
            for m in self.modalities:
                f = self.projections[m](getattr(self, f'feat_{m}')[items])
                p, n = f[inverse[:pos.numel()]], f[inverse[pos.numel():]]
                term = self.reg_weight * bpr_loss((u * p).sum(-1), (u * n).sum(-1))
                out[f'bpr_{m}'] = term
                total = total + term
        return {'loss': total, **out}

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
                f'modalities={self.modalities}, embedding_dim={self.embedding_dim}, '
                f'num_layers={self.num_layers}, dropout={self.dropout}, '
                f'reg_weight={self.reg_weight})')
