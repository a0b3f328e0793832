from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

from pyg_mentor.nn import functional as PF
from pyg_mentor.nn.conv import ItemGraphConv
from pyg_mentor.nn.models.base import (
    Recommender,
    ScoreFn,
    check_feature_dims,
    check_num_neighbors,
    feature_dims,
    global_index,
    item_features,
    item_graph,
    node_ids,
    node_rows,
    register_model,
)
from pyg_mentor.nn.models.lightgcn import UserItemConv, user_item_edges, user_item_weights
from pyg_mentor.nn.noise import EmbeddingNoise, FeatureMask
from pyg_mentor.typing import ITEM, RATED_BY, RATES, SIMILAR, USER

log = logging.getLogger(__name__)

ID_VIEW = 'id'


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

    def __init__(
        self,
        num_users: int,
        in_channels: int,
        hidden_channels: int,
        num_layers: int = 2,
        noise_eps: float = 0.0,
    ):
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

    def forward(
        self,
        item_input: Tensor,
        conv: torch.nn.Module,
        edge_index_dict: Mapping,
        edge_weight_dict: Mapping | None = None,
        user_index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""The user and item outputs on the given user-item edges (and
        weights, see :class:`~pyg_mentor.nn.models.lightgcn.UserItemConv`);
        :obj:`user_index`: the users' rows of the preference matrix (a
        sampled subgraph's :obj:`n_id`), all users if :obj:`None`."""
        preference = self.preference if user_index is None else self.preference[user_index]
        user = F.normalize(preference, dim=-1)
        item = F.normalize(self.mlp(item_input), dim=-1)
        x = {USER: user, ITEM: item}
        out = dict(x)
        for _ in range(self.num_layers):
            x = (
                conv(x, edge_index_dict)
                if edge_weight_dict is None
                else conv(x, edge_index_dict, edge_weight_dict)
            )
            if self.noise is not None:
                x = {k: self.noise(v) for k, v in x.items()}
            out = {k: out[k] + x[k] for k in out}
        return out[USER], out[ITEM]


@register_model(
    'mentor',
    # The release's valid metric; lr 1e-3 instead of its 1e-4, chosen on valid
    # (benchmarks/results/mentor_lfm2k.md; `--set lr=1e-4` for the release's).
    defaults={'lr': 1e-3, 'valid_metric': 'recall@10'},
    grid={'cl_weight': [1e-4, 1e-3], 'temperature': [0.2, 0.4, 0.6]},
)
class MENTOR(Recommender):
    r"""MENTOR: multi-level self-supervised learning for multimodal
    recommendation (Xu et al., AAAI 2025), as released (every difference is
    listed in ``docs/differences.md``).

    The graph is the :obj:`data` argument of :meth:`forward`, :meth:`loss`
    and :meth:`scorer`: the user-item edges, the item features
    :obj:`data['item'].x_<m>` and the fused item graph
    :obj:`data['item', 'similar', 'item']` (see
    :func:`~pyg_mentor.datasets.load.prepare_data`).

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
        feature_dims (Mapping[str, int]): The width :math:`d_m` of every
            modality's item features :obj:`data['item'].x_<m>` (at least one).
        embedding_dim (int): :math:`d` (64).
        num_layers (int): Propagation layers per encoder (2).
        num_mm_layers (int): Item-graph layers :math:`L` (1).
        reg_weight, dropout, mask_weight, align_weight, cl_weight,
        temperature, noise_eps (float): Loss options of the release.
        cl_scope (str): ``'all'`` (release: InfoNCE over all users and items,
            chunked) or ``'batch'`` (over the batch's unique users and items;
            the scope of sampled training, see :meth:`loss`).
        cl_chunk_size (int or str, optional): Rows per InfoNCE chunk, ``'auto'``
            (see :func:`~pyg_mentor.nn.functional.info_nce`) or ``None`` (dense).
        feature_mask_grad (bool): Let the feature-mask loss train the model.
            By default it does not, as in the release (computed under
            ``no_grad``, it only adds a constant to the logged loss): with a
            gradient, the term dominates the gradient at the start (50x BPR's
            norm) and then pulls against the ranking loss (cosine -0.9 with
            the BPR gradient), and validation is worse at every weight tried
            (``benchmarks/results/mentor_lfm2k.md``).
        eval_cached_embeddings (bool): Score with the embeddings of the last
            training forward, one optimiser step stale, as the release does.
            By default the forward is recomputed in eval mode.
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
        reg_weight: float = 1e-3,
        dropout: float = 0.5,
        mask_weight: float = 1.5,
        align_weight: float = 0.1,
        cl_weight: float = 1e-3,
        temperature: float = 0.2,
        noise_eps: float = 0.1,
        cl_scope: str = 'all',
        cl_chunk_size: int | Literal['auto'] | None = 'auto',
        feature_mask_grad: bool = False,
        eval_cached_embeddings: bool = False,
    ):
        super().__init__(num_users, num_items)
        self.modalities = check_feature_dims('MENTOR', feature_dims)
        self.feature_dims = {m: feature_dims[m] for m in self.modalities}
        if cl_scope not in ('all', 'batch'):
            raise ValueError(f"cl_scope must be 'all' or 'batch', got '{cl_scope}'")
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.num_mm_layers = num_mm_layers
        self.reg_weight = reg_weight
        self.mask_weight = mask_weight
        self.align_weight = align_weight
        self.cl_weight = cl_weight
        self.temperature = temperature
        self.cl_scope = cl_scope
        self.cl_chunk_size = cl_chunk_size
        self.feature_mask_grad = feature_mask_grad
        self.eval_cached_embeddings = eval_cached_embeddings

        self.item_id = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        encoders = {ID_VIEW: ViewEncoder(num_users, embedding_dim, embedding_dim, num_layers)}
        for name in self.modalities:
            dim = feature_dims[name]
            encoders[name] = ViewEncoder(num_users, dim, embedding_dim, num_layers)
            for k in (1, 2):
                encoders[f'{name}_n{k}'] = ViewEncoder(
                    num_users, dim, embedding_dim, num_layers, noise_eps
                )
        self.encoders = torch.nn.ModuleDict(encoders)
        self.user_modality_weight = torch.nn.Parameter(torch.empty(num_users, len(self.modalities)))
        width = embedding_dim * len(self.modalities)
        self.feature_mask = FeatureMask(dropout)
        self.mask_map = torch.nn.Linear(width, width)
        # Parameter-free layers shared by every encoder; each caches the
        # normalised adjacency of the graph it propagates on.
        self.conv = UserItemConv()
        self.item_conv = ItemGraphConv(cached=True)
        self._cached_scores: tuple[Tensor, Tensor] | None = None
        self.reset_parameters()

    @property
    def dropout(self) -> float:
        r"""The feature-mask probability :math:`p`."""
        return self.feature_mask.p

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> MENTOR:
        r"""Builds MENTOR for a dataset: the widths of its item features."""
        return cls(
            data[USER].num_nodes, data[ITEM].num_nodes, feature_dims('MENTOR', data), **kwargs
        )

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

    def encode(self, data: HeteroData, views: Sequence[str]) -> dict[str, tuple[Tensor, Tensor]]:
        r"""Runs the named encoders on :obj:`data`: ``{view: (user [U, d],
        item [I, d])}``."""
        edge_index_dict, edge_weight_dict = user_item_edges(data), user_item_weights(data)
        features = item_features('MENTOR', data, self.feature_dims, self.num_items)
        user_index = node_ids(data, USER)
        out = {}
        for v in views:
            x = (
                node_rows(self.item_id, data, ITEM)
                if v == ID_VIEW
                else features[v.rsplit('_n', 1)[0]].to(self.item_id.dtype)
            )
            out[v] = self.encoders[v](x, self.conv, edge_index_dict, edge_weight_dict, user_index)
        return out

    def enhance(self, data: HeteroData, item: Tensor) -> Tensor:
        r""":math:`\mathbf{R} + \mathbf{S}^{L}\mathbf{R}` over the item graph of
        :obj:`data`."""
        graph_index, graph_weight = item_graph('MENTOR', data)
        h = item
        for _ in range(self.num_mm_layers):
            h = self.item_conv(h, graph_index, graph_weight)
        return item + h

    def _fuse(
        self, data: HeteroData, z: Mapping[str, tuple[Tensor, Tensor]], suffix: str = ''
    ) -> tuple[Tensor, Tensor]:
        weight = node_rows(self.user_modality_weight, data, USER)
        users = [weight[:, j : j + 1] * z[m + suffix][0] for j, m in enumerate(self.modalities)]
        items = [z[m + suffix][1] for m in self.modalities]
        return torch.cat(users, dim=-1), self.enhance(data, torch.cat(items, dim=-1))

    def _repeat(self, data: HeteroData, user: Tensor, item: Tensor) -> tuple[Tensor, Tensor]:
        # S^L [x, .., x] = [S^L x, .., S^L x]: enhance once, then repeat.
        m = len(self.modalities)
        return user.repeat(1, m), self.enhance(data, item).repeat(1, m)

    def forward(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        r"""The fused user :obj:`[U, Md]` and item :obj:`[I, Md]`
        representations that score (main encoders only) on :obj:`data`."""
        return self._fuse(data, self.encode(data, self.modalities))

    def representations(self, data: HeteroData) -> dict[str, tuple[Tensor, Tensor]]:
        r"""Every (user, item) representation of the training loss: ``fused``,
        ``guide``, one per modality, ``noise1`` and ``noise2``."""
        noise = [f'{m}_n{k}' for k in (1, 2) for m in self.modalities]
        z = self.encode(data, [ID_VIEW, *self.modalities, *noise])
        out = {'fused': self._fuse(data, z), 'guide': self._repeat(data, *z[ID_VIEW])}
        for m in self.modalities:
            out[m] = self._repeat(data, *z[m])
        out['noise1'] = self._fuse(data, z, '_n1')
        out['noise2'] = self._fuse(data, z, '_n2')
        return out

    # Loss ######################################################################

    def loss(self, data: HeteroData, batch: Tensor) -> dict[str, Tensor]:
        r"""The loss terms of a batch on :obj:`data`.

        On a sampled subgraph (:meth:`sampled_neighbors`), the terms the
        release computes over all users and items (the alignment's global
        means and variances, the feature-mask loss) are computed over the
        batch's users and items, the only nodes of the subgraph whose
        representations are those of the full graph (the others lack part of
        their neighbourhood), as :obj:`cl_scope='batch'` does for InfoNCE.
        """
        users, pos, neg = batch
        reps = self.representations(data)
        user, item = reps['fused']
        if self.eval_cached_embeddings:
            self._cached_scores = (user.detach(), item.detach())
        u = user[users]
        bpr = PF.bpr_loss((u * item[pos]).sum(-1), (u * item[neg]).sum(-1), base=2)

        reg = self.reg_weight * PF.reg_loss(
            *[
                self.encoders[m].preference[global_index(users, data, USER)]
                for m in self.modalities
            ],
            shared=[self.user_modality_weight],
        )

        sampled = node_ids(data, USER) is not None
        if sampled or self.cl_scope == 'batch':
            bu, bi = users.unique(), torch.cat([pos, neg]).unique()

        def nodes(user: Tensor, item: Tensor) -> tuple[Tensor, Tensor]:
            # All users and items, or the batch's on a sampled subgraph.
            return (user[bu], item[bi]) if sampled else (user, item)

        full = {k: nodes(*reps[k]) for k in ('guide', 'fused', *self.modalities)}
        align = self.align_weight * PF.align_loss(full)  # users and items together

        with torch.set_grad_enabled(self.feature_mask_grad and torch.is_grad_enabled()):
            mask_user, mask_item = nodes(user, item)
            mask = self.mask_weight * (
                PF.masked_cosine_loss(self.feature_mask(mask_user), self.mask_map(mask_user))
                + PF.masked_cosine_loss(self.feature_mask(mask_item), self.mask_map(mask_item))
            )

        (u1, i1), (u2, i2) = reps['noise1'], reps['noise2']
        if self.cl_scope == 'batch':
            u1, u2, i1, i2 = u1[bu], u2[bu], i1[bi], i2[bi]
        cl = self.cl_weight * (
            PF.info_nce(u1, u2, self.temperature, self.cl_chunk_size)
            + PF.info_nce(i1, i2, self.temperature, self.cl_chunk_size)
        )

        total = bpr + reg + align + mask + cl
        return {'loss': total, 'bpr': bpr, 'reg': reg, 'align': align, 'mask': mask, 'cl': cl}

    def check_sampling(self) -> None:
        r"""Refuses the options that sampled training cannot honour:
        :obj:`cl_scope='all'` (InfoNCE over every user and item needs them
        all in every step; :obj:`cl_scope='batch'` is the sampled form) and
        :obj:`eval_cached_embeddings` (a batch's forward covers its subgraph
        only)."""
        super().check_sampling()
        if self.cl_scope == 'all':
            raise ValueError(
                "MENTOR with cl_scope='all' cannot train on sampled "
                'subgraphs: its InfoNCE contrasts every user and item in '
                "every step; use cl_scope='batch' (InfoNCE over the "
                "batch's users and items) with sampler='neighbor'"
            )
        if self.eval_cached_embeddings:
            raise ValueError(
                'MENTOR with eval_cached_embeddings=True cannot train on '
                'sampled subgraphs: a training forward covers the '
                'subgraph of a batch only, not every user and item'
            )

    def check_distributed(self) -> None:
        r"""Refuses :obj:`cl_scope='batch'`: its InfoNCE, alignment and mask
        terms run over the batch's *distinct* users and items, which the
        processes' shards of a batch share and do not add up to. With
        :obj:`cl_scope='all'` (the release's) those terms run over every user
        and item, the same on every process, and BPR and the regulariser are
        batch reductions: multi-process training is exact."""
        super().check_distributed()
        if self.cl_scope == 'batch':
            raise ValueError(
                "MENTOR with cl_scope='batch' cannot train on several processes "
                "exactly: its InfoNCE, alignment and mask terms run over the batch's "
                'distinct users and items, which the shards of a batch share; use '
                "cl_scope='all' (the release's, full-graph) or train in one process"
            )

    def sampled_neighbors(self, num_neighbors: Sequence[int]) -> dict[EdgeType, list[int]]:
        r"""The item-graph neighbourhood of the batch's items (:math:`L_m`
        hops, all of it: at most :math:`k` per modality and item, with
        weights normalised on the whole graph), followed by the :math:`L`-hop
        user-item neighbourhood of every node reached: MENTOR enhances the
        *propagated* item representations over the item graph, so an item
        graph neighbour needs its own user-item neighbourhood,
        :math:`L + L_m` hops in all. The user-item counts are
        :obj:`num_neighbors[l]` at hop :obj:`l`, the last one for the
        :math:`L_m` extra hops."""
        counts = check_num_neighbors('MENTOR', num_neighbors, self.num_layers)
        counts += counts[-1:] * self.num_mm_layers
        return {
            RATES: counts,
            RATED_BY: list(counts),
            SIMILAR: [-1] * self.num_mm_layers + [0] * self.num_layers,
        }

    @torch.no_grad()
    def scorer(self, data: HeteroData) -> ScoreFn:
        if self.eval_cached_embeddings and self._cached_scores is not None:
            user, item = self._cached_scores
        else:
            user, item = self(data)
        return lambda users: user[users] @ item.t()

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
            f'modalities={self.modalities}, embedding_dim={self.embedding_dim}, '
            f'cl_scope={self.cl_scope!r})'
        )
