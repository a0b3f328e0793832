from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv

from pyg_mentor.nn import functional as PF
from pyg_mentor.nn.conv import BipartiteLightConv, ItemGraphConv
from pyg_mentor.nn.models.base import (
    Recommender,
    ScoreFn,
    check_features,
    data_features,
    register_model,
)
from pyg_mentor.nn.noise import EmbeddingNoise
from pyg_mentor.typing import ITEM, RATED_BY, RATES, USER

log = logging.getLogger(__name__)

ID_VIEW = 'id'
SIMILAR = (ITEM, 'similar', ITEM)


class ViewEncoder(torch.nn.Module):
    r"""One of MENTOR's encoders ("GCN blocks"): a user preference matrix, an
    MLP on the item input of the view, and LightGCN-style propagation with
    residual sums.

    .. math::
        \mathbf{X} = \mathrm{norm}\!\left(\begin{bmatrix}\mathbf{P} \\
        \mathrm{MLP}(\mathbf{F})\end{bmatrix}\right),\quad
        \mathbf{H}_1 = \hat{\mathbf{A}}\mathbf{X} (+\,\boldsymbol{\Delta}_1),\quad
        \mathbf{H}_2 = \hat{\mathbf{A}}\mathbf{H}_1 (+\,\boldsymbol{\Delta}_2),\quad
        \mathbf{Z} = \mathbf{X} + \mathbf{H}_1 + \mathbf{H}_2

    with :math:`\mathrm{MLP}(\mathbf{F}) = \mathbf{W}_2\,
    \mathrm{LeakyReLU}(\mathbf{W}_1 \mathbf{F})` (:math:`d_{in} \to 4d \to d`),
    row-wise L2 normalisation, and, for the noise views only, SimGCL noise
    :math:`\boldsymbol{\Delta} = \mathrm{sign}(\mathbf{H}) \odot
    \mathrm{norm}(\mathcal{U}[0, 1)) \cdot \epsilon` after every layer.

    Args:
        num_users (int): Number of users.
        in_channels (int): Width of the item input :math:`d_{in}`.
        hidden_channels (int): Embedding size :math:`d`.
        num_layers (int): Propagation layers. (default: :obj:`2`)
        noise_eps (float): :math:`\epsilon`; :obj:`0` for a main view.
    """

    def __init__(self, num_users: int, in_channels: int, hidden_channels: int,
                 num_layers: int = 2, noise_eps: float = 0.0):
        super().__init__()
        self.num_layers = num_layers
        self.noise = EmbeddingNoise(noise_eps) if noise_eps > 0 else None
        self.preference = torch.nn.Parameter(torch.empty(num_users, hidden_channels))
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(in_channels, 4 * hidden_channels),
            torch.nn.LeakyReLU(0.01),
            torch.nn.Linear(4 * hidden_channels, hidden_channels),
        )
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.preference)
        for layer in self.mlp:
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()

    def forward(self, item_input: Tensor, conv: HeteroConv,
                edge_index_dict: Mapping) -> tuple[Tensor, Tensor]:
        user = F.normalize(self.preference, dim=-1)
        item = F.normalize(self.mlp(item_input), dim=-1)
        x = {USER: user, ITEM: item}
        out = dict(x)
        for _ in range(self.num_layers):
            x = conv(x, edge_index_dict)
            if self.noise is not None:
                x = {k: self.noise(v) for k, v in x.items()}
            out = {k: out[k] + x[k] for k in out}
        return out[USER], out[ITEM]


@register_model(
    'mentor',
    defaults={
        'embedding_dim': 64, 'num_layers': 2, 'num_mm_layers': 1, 'knn_k': 10,
        'mm_image_weight': 0.1, 'reg_weight': 1e-3, 'dropout': 0.5,
        'mask_weight': 1.5, 'align_weight': 0.1, 'cl_weight': 1e-3,
        'temperature': 0.2, 'noise_eps': 0.1,
        # Training options of the release:
        'lr': 1e-4, 'valid_metric': 'recall@10',
    },
    grid={'cl_weight': [1e-4, 1e-3], 'temperature': [0.2, 0.4, 0.6]},
)
class MENTOR(Recommender):
    r"""MENTOR: multi-level self-supervised learning for multimodal
    recommendation (Xu et al., AAAI 2025), as released (see
    ``docs/mentor.md`` for every difference).

    Views: the ID view and, for every modality :math:`m`, a main view and two
    noise views, each a :class:`ViewEncoder` with its own parameters (seven
    encoders for image + text). With per-user modality weights
    :math:`\mathbf{W} \in \mathbb{R}^{U \times M}`, the fused user
    representation is :math:`[w_{u1} \mathbf{z}^{1}_u \| \dots \| w_{uM}
    \mathbf{z}^{M}_u]` and the fused item one :math:`[\mathbf{z}^{1}_i \|
    \dots \| \mathbf{z}^{M}_i]`; the guide (ID) and single-modality views repeat
    their embedding :math:`M` times. Every item representation is enhanced
    over the fused FAISS kNN item graph :math:`\mathbf{S} = \sum_m w_m
    \mathbf{S}_m`: :math:`\mathbf{R} \leftarrow \mathbf{R} +
    \mathbf{S}^{L}\mathbf{R}`. Scores are :math:`\langle \mathbf{r}_u,
    \mathbf{r}_i\rangle` of the fused representations.

    Loss (reference section 4):

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}(\log_2)} + \lambda_{reg}
        \mathcal{L}_{reg} + \lambda_{align} \mathcal{L}_{align} +
        \lambda_{mask} \mathcal{L}_{mask} + \lambda_{cl} \left(
        \mathrm{InfoNCE}(\mathbf{U}^{n1}, \mathbf{U}^{n2}) +
        \mathrm{InfoNCE}(\mathbf{I}^{n1}, \mathbf{I}^{n2}) \right)

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        edge_index (torch.Tensor): Training pairs :obj:`[2, E]`.
        features (Mapping[str, torch.Tensor]): Item features per modality.
        item_graph (tuple[torch.Tensor, torch.Tensor]): The fused item graph
            (edge_index, edge_weight), sources in row 0.
        embedding_dim (int): :math:`d` (64).
        num_layers (int): Propagation layers per encoder (2).
        num_mm_layers (int): Item-graph layers :math:`L` (1).
        knn_k (int), mm_image_weight (float): Item graph options, used by
            :meth:`from_data` (10, 0.1).
        reg_weight, dropout, mask_weight, align_weight, cl_weight,
        temperature, noise_eps (float): Loss options of the release.
        cl_scope (str): ``'all'`` (release: InfoNCE over all users and items,
            chunked) or ``'batch'`` (over the batch's unique users and items).
        cl_chunk_size (int or str, optional): Rows per InfoNCE chunk, ``'auto'``
            (see :func:`~pyg_mentor.nn.functional.info_nce`) or ``None`` (dense).
        feature_mask_grad (bool): Let the feature-mask loss train the model
            (default). ``False`` reproduces the release, which computes it
            under ``no_grad`` so it only adds a constant.
        eval_cached_embeddings (bool): Score with the embeddings of the last
            training forward, one optimiser step stale, as the release does.
            By default the forward is recomputed in eval mode.
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
        reg_weight: float = 1e-3,
        dropout: float = 0.5,
        mask_weight: float = 1.5,
        align_weight: float = 0.1,
        cl_weight: float = 1e-3,
        temperature: float = 0.2,
        noise_eps: float = 0.1,
        cl_scope: str = 'all',
        cl_chunk_size: int | Literal['auto'] | None = 'auto',
        feature_mask_grad: bool = True,
        eval_cached_embeddings: bool = False,
    ):
        super().__init__(num_users, num_items)
        self.modalities = check_features('MENTOR', features, num_items)
        if cl_scope not in ('all', 'batch'):
            raise ValueError(f"cl_scope must be 'all' or 'batch', got '{cl_scope}'")
        self.embedding_dim = embedding_dim
        self.num_mm_layers = num_mm_layers
        self.knn_k = knn_k
        self.mm_image_weight = mm_image_weight
        self.reg_weight = reg_weight
        self.dropout = dropout
        self.mask_weight = mask_weight
        self.align_weight = align_weight
        self.cl_weight = cl_weight
        self.temperature = temperature
        self.cl_scope = cl_scope
        self.cl_chunk_size = cl_chunk_size
        self.feature_mask_grad = feature_mask_grad
        self.eval_cached_embeddings = eval_cached_embeddings

        for name in self.modalities:
            self.register_buffer(f'feat_{name}', features[name].float(),
                                 persistent=False)
        self.register_buffer('edge_index', edge_index, persistent=False)
        self.register_buffer('item_graph_index', item_graph[0], persistent=False)
        self.register_buffer('item_graph_weight', item_graph[1].float(),
                             persistent=False)

        self.item_id = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        encoders = {ID_VIEW: ViewEncoder(num_users, embedding_dim, embedding_dim,
                                         num_layers)}
        for name in self.modalities:
            dim = features[name].size(1)
            encoders[name] = ViewEncoder(num_users, dim, embedding_dim, num_layers)
            for k in (1, 2):
                encoders[f'{name}_n{k}'] = ViewEncoder(
                    num_users, dim, embedding_dim, num_layers, noise_eps)
        self.encoders = torch.nn.ModuleDict(encoders)
        self.user_modality_weight = torch.nn.Parameter(
            torch.empty(num_users, len(self.modalities)))
        width = embedding_dim * len(self.modalities)
        self.mask_map = torch.nn.Linear(width, width)
        # Parameter-free layers shared by every encoder: normalisations are
        # computed once and cached.
        self.conv = HeteroConv({RATES: BipartiteLightConv(cached=True),
                                RATED_BY: BipartiteLightConv(cached=True)},
                               aggr='sum')
        self.item_conv = ItemGraphConv(cached=True)
        self._cached_scores: tuple[Tensor, Tensor] | None = None
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> MENTOR:
        r"""Builds MENTOR from a dataset: item features of every modality in
        :obj:`data`, and the fused FAISS kNN item graph (taken from
        :obj:`data['item', 'similar', 'item']` if present, otherwise built with
        :class:`~pyg_mentor.transforms.ModalityKNNGraph` and
        :class:`~pyg_mentor.transforms.FuseItemGraphs`)."""
        features = data_features('MENTOR', data)
        if SIMILAR in data.edge_types:
            graph = data[SIMILAR]
            item_graph = (graph.edge_index, graph.edge_weight)
        else:
            item_graph = build_item_graph(features, kwargs.get('knn_k', 10),
                                          kwargs.get('mm_image_weight', 0.1))
        return cls(data[USER].num_nodes, data[ITEM].num_nodes,
                   data[RATES].edge_index, features, item_graph, **kwargs)

    def reset_parameters(self):
        torch.nn.init.xavier_normal_(self.item_id)
        for encoder in self.encoders.values():
            encoder.reset_parameters()
        weight = torch.empty_like(self.user_modality_weight)
        torch.nn.init.xavier_normal_(weight)
        with torch.no_grad():
            self.user_modality_weight.copy_(weight.softmax(dim=-1))
        self.mask_map.reset_parameters()
        self.conv.reset_parameters()
        self.item_conv.reset_parameters()
        self._cached_scores = None

    # Forward ###################################################################

    def _item_input(self, view: str) -> Tensor:
        if view == ID_VIEW:
            return self.item_id
        return getattr(self, f"feat_{view.rsplit('_n', 1)[0]}")

    def encode(self, views: Sequence[str]) -> dict[str, tuple[Tensor, Tensor]]:
        r"""Runs the named encoders: ``{view: (user [U, d], item [I, d])}``."""
        edge_index_dict = {RATES: self.edge_index, RATED_BY: self.edge_index.flip(0)}
        return {v: self.encoders[v](self._item_input(v), self.conv, edge_index_dict)
                for v in views}

    def enhance(self, item: Tensor) -> Tensor:
        r""":math:`\mathbf{R} + \mathbf{S}^{L}\mathbf{R}` over the item graph."""
        h = item
        for _ in range(self.num_mm_layers):
            h = self.item_conv(h, self.item_graph_index, self.item_graph_weight)
        return item + h

    def _fuse(self, z: Mapping[str, tuple[Tensor, Tensor]],
              suffix: str = '') -> tuple[Tensor, Tensor]:
        users = [self.user_modality_weight[:, j:j + 1] * z[m + suffix][0]
                 for j, m in enumerate(self.modalities)]
        items = [z[m + suffix][1] for m in self.modalities]
        return torch.cat(users, dim=-1), self.enhance(torch.cat(items, dim=-1))

    def _repeat(self, user: Tensor, item: Tensor) -> tuple[Tensor, Tensor]:
        m = len(self.modalities)
        return user.repeat(1, m), self.enhance(item.repeat(1, m))

    def forward(self) -> tuple[Tensor, Tensor]:
        r"""The fused user :obj:`[U, Md]` and item :obj:`[I, Md]`
        representations that score (main encoders only)."""
        return self._fuse(self.encode(self.modalities))

    def representations(self) -> dict[str, tuple[Tensor, Tensor]]:
        r"""Every (user, item) representation of the training loss: ``fused``,
        ``guide``, one per modality, ``noise1`` and ``noise2``."""
        noise = [f'{m}_n{k}' for k in (1, 2) for m in self.modalities]
        z = self.encode([ID_VIEW, *self.modalities, *noise])
        out = {'fused': self._fuse(z), 'guide': self._repeat(*z[ID_VIEW])}
        for m in self.modalities:
            out[m] = self._repeat(*z[m])
        out['noise1'] = self._fuse(z, '_n1')
        out['noise2'] = self._fuse(z, '_n2')
        return out

    # Loss ######################################################################

    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        users, pos, neg = batch
        reps = self.representations()
        user, item = reps['fused']
        if self.eval_cached_embeddings:
            self._cached_scores = (user.detach(), item.detach())
        u = user[users]
        bpr = PF.bpr_loss((u * item[pos]).sum(-1), (u * item[neg]).sum(-1), base=2)

        reg = self.reg_weight * PF.reg_loss(
            *[self.encoders[m].preference[users] for m in self.modalities],
            self.user_modality_weight)

        full = {k: torch.cat(reps[k]) for k in ('guide', 'fused', *self.modalities)}
        align = self.align_weight * PF.align_loss(full)

        with torch.set_grad_enabled(self.feature_mask_grad and torch.is_grad_enabled()):
            mask = self.mask_weight * (
                PF.masked_cosine_loss(F.dropout(user, self.dropout, self.training),
                                      self.mask_map(user))
                + PF.masked_cosine_loss(F.dropout(item, self.dropout, self.training),
                                        self.mask_map(item)))

        (u1, i1), (u2, i2) = reps['noise1'], reps['noise2']
        if self.cl_scope == 'batch':
            bu, bi = users.unique(), torch.cat([pos, neg]).unique()
            u1, u2, i1, i2 = u1[bu], u2[bu], i1[bi], i2[bi]
        cl = self.cl_weight * (
            PF.info_nce(u1, u2, self.temperature, self.cl_chunk_size)
            + PF.info_nce(i1, i2, self.temperature, self.cl_chunk_size))

        total = bpr + reg + align + mask + cl
        return {'loss': total, 'bpr': bpr, 'reg': reg, 'align': align,
                'mask': mask, 'cl': cl}

    @torch.no_grad()
    def scorer(self) -> ScoreFn:
        if self.eval_cached_embeddings and self._cached_scores is not None:
            user, item = self._cached_scores
        else:
            user, item = self()
        return lambda users: user[users] @ item.t()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
                f'modalities={self.modalities}, embedding_dim={self.embedding_dim}, '
                f'cl_scope={self.cl_scope!r})')


def build_item_graph(features: Mapping[str, Tensor], k: int,
                     mm_image_weight: float) -> tuple[Tensor, Tensor]:
    r"""The release's fused item graph: per-modality FAISS top-:obj:`k` cosine
    graphs, weighted ``image: mm_image_weight, text: 1 - mm_image_weight`` for
    the release's two modalities, uniformly otherwise."""
    from pyg_mentor.utils.knn import fuse_item_graphs, knn_item_graph

    names = sorted(features)
    if set(names) == {'image', 'text'}:
        weights = {'image': mm_image_weight, 'text': 1.0 - mm_image_weight}
    else:
        weights = {m: 1.0 / len(names) for m in names}
    graphs = {m: knn_item_graph(features[m].float(), k) for m in names}
    num_items = next(iter(features.values())).size(0)
    return fuse_item_graphs(graphs, weights, num_items)

