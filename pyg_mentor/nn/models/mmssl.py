r"""MMSSL (Wei et al., WWW 2023) on the shared layers, with every defect of the
release fixed by default and reproducible behind a named option (see the MMSSL
section of ``docs/differences.md``). Its discriminator and the state of its
generated graphs are in :mod:`pyg_mentor.nn.models.mmssl_modules`."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce, cumsum

from pyg_mentor.nn.conv import BipartiteLightConv
from pyg_mentor.nn.functional import bpr_loss, grace_nce
from pyg_mentor.nn.models.base import (
    Recommender,
    check_feature_dims,
    feature_dims,
    item_features,
    register_model,
)
from pyg_mentor.nn.models.lightgcn import user_item_edges
from pyg_mentor.nn.models.mmssl_modules import Discriminator, GeneratedGraphs
from pyg_mentor.typing import ITEM, RATES, USER

#: The defects of the release that have an option (``release_<name>``), see
#: :class:`MMSSL`.
RELEASE_OPTIONS = ('graph_schedule', 'pairing', 'attention', 'discriminator', 'feature_layers')


@dataclass
class MMSSLOutput:
    r"""Everything one forward pass of :class:`MMSSL` computes."""

    user: Tensor  #: Final user embeddings :math:`\mathbf{u}^*` [U, d].
    item: Tensor  #: Final item embeddings :math:`\mathbf{i}^*` [I, d].
    feat_user: dict[str, Tensor]  #: :math:`\mathbf{H}_u^m` [U, d].
    feat_item: dict[str, Tensor]  #: :math:`\mathbf{H}_i^m` [I, d].
    gen_user: dict[str, Tensor]  #: :math:`\mathbf{P}_u^m` [U, d].
    gen_item: dict[str, Tensor]  #: :math:`\mathbf{P}_i^m` [I, d].


class NormalizedGraph(NamedTuple):
    r"""A user-item graph ready to propagate on (see :func:`graph_weights`)."""

    edge_index: Tensor  #: (user, item) pairs [2, E], coalesced.
    flipped: Tensor  #: The same pairs as (item, user) [2, E].
    w_ui: Tensor  #: Weights of the item-to-user messages [E].
    w_iu: Tensor  #: Weights of the user-to-item messages [E].
    rowptr: Tensor | None  #: CSR offsets over users [U + 1] (training graph).


def graph_weights(
    edge_index: Tensor, weight: Tensor, num_users: int, num_items: int, one_sided: bool
) -> tuple[Tensor, Tensor]:
    r"""Edge weights of a weighted user-item graph :math:`\mathbf{A}` for
    messages item :math:`\to` user and user :math:`\to` item.

    Symmetric: :math:`\hat{a}_{ui} = a_{ui} / \sqrt{d_u d_i}` both ways, with
    weighted degrees :math:`d`. One-sided (the release's ``csr_norm``):
    :math:`\mathbf{D}_u^{-1/2}\mathbf{A}` for item :math:`\to` user and
    :math:`\mathbf{D}_i^{-1/2}\mathbf{A}^{\top}` for user :math:`\to` item,
    with :math:`10^{-8}` added to the degrees.

    Returns:
        (torch.Tensor, torch.Tensor): Weights :obj:`[E]` of the item-to-user
        and of the user-to-item messages, in the order of :obj:`edge_index`.
    """
    user, item = edge_index
    deg_u = torch.zeros(num_users, dtype=weight.dtype, device=weight.device)
    deg_i = torch.zeros(num_items, dtype=weight.dtype, device=weight.device)
    deg_u.index_add_(0, user, weight)
    deg_i.index_add_(0, item, weight)
    if one_sided:
        return (weight * (deg_u[user] + 1e-8).rsqrt(), weight * (deg_i[item] + 1e-8).rsqrt())
    w = weight * deg_u[user].rsqrt() * deg_i[item].rsqrt()
    return w, w


@register_model(
    'mmssl',
    # Training options of the release (parser.py, the active "baby" block); the
    # model's own defaults are its signature's.
    defaults={
        'lr': 0.00055,
        'batch_size': 1024,
        'patience': 7,
        'ks': [10, 20, 50],
        'valid_metric': 'recall@20',
        'seed': 2022,
    },
)
class MMSSL(Recommender):
    r"""MMSSL: multi-modal self-supervised learning for recommendation
    (Wei et al., WWW 2023), as the release computes it, with its defects
    fixed by default (every difference is listed in ``docs/differences.md``).

    For every modality :math:`m` (a loop over the dataset's features):

    1. features :math:`\mathbf{F}_m = \mathrm{Drop}(\mathbf{X}_m\mathbf{W}_m +
       \mathbf{b}_m)`, propagated
       :math:`\mathbf{H}_u^m = \hat{\mathbf{A}}\mathbf{F}_m`,
       :math:`\mathbf{H}_i^m = \hat{\mathbf{A}}^{\top}\mathbf{H}_u^m`;
    2. ID embeddings over the *generated* modality-aware graph
       :math:`\mathbf{G}_m` (each user's top-:math:`k` items under
       :math:`\mathbf{H}_u^m \mathbf{H}_i^{m\top}`):
       :math:`\mathbf{P}_u^m = \hat{\mathbf{G}}_m \mathbf{E}_i`,
       :math:`\mathbf{P}_i^m = \hat{\mathbf{G}}_m^{\top} \mathbf{E}_u`;
    3. multi-head attention across modalities, per node :math:`n`:
       :math:`\mathbf{z}_n^{a} = \big\Vert_{h} \sum_b
       \mathrm{softmax}_b(\mathbf{q}^{h}_{a,n}\cdot\mathbf{k}^{h}_{b,n}
       / \sqrt{d_h})\,\mathbf{p}^{b}_n \; \mathbf{W}_{cat}`
       with :math:`\mathbf{q} = \mathbf{p}\mathbf{W}_q`,
       :math:`\mathbf{k} = \mathbf{p}\mathbf{W}_k`.

    Then :math:`\mathbf{u}^{(0)} = \mathbf{E}_u + \alpha\,\mathrm{norm}(
    \mathrm{mean}_m \mathbf{z}_u^m)` (likewise items), an alternating ID-GCN
    :math:`\mathbf{u}^{(l+1)} = \hat{\mathbf{A}}\mathbf{i}^{(l)}`,
    :math:`\mathbf{i}^{(l+1)} = \hat{\mathbf{A}}^{\top}\mathbf{u}^{(l+1)}`
    with a feature-wise softmax at the last layer, the layer mean, and
    :math:`\mathbf{u}^* = \mathrm{mean}_l \mathbf{u}^{(l)} + \beta \sum_m
    \mathrm{norm}(\mathbf{H}_u^m)`; scores :math:`\mathbf{u}^{*\top}_u
    \mathbf{i}^*_i`.

    Training (:meth:`train_step`): a discriminator :math:`D` step on its own
    Adam optimiser (WGAN-GP between the per-modality score rows
    :math:`\mathbf{Q}^m = \mathrm{rownorm}((1 - \mathbf{R}) \odot
    \mathbf{H}_u^m\mathbf{H}_i^{m\top})` and the Gumbel-softmax "real" rows
    driven by the fused scores), then the recommender step on

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}} + \mathcal{L}_{emb} +
        \mathcal{L}_{feat} + \lambda_{cl} \sum_m \mathrm{GRACE}(\mathbf{P}_u^m,
        \mathbf{u}^*) - \lambda_{G}\, \mathrm{mean}\, D([\mathbf{Q}^m]_m)

    on the release's AdamW, and the update of the generated graphs from the
    batch's :math:`\mathbf{Q}^m`. Both optimisers come from
    :meth:`configure_optimizers` and belong to the trainer.

    The graph is an argument (:obj:`data`, layout of :mod:`pyg_mentor.typing`):
    the training graph :math:`\mathbf{A}` is its user-item edges, the features
    :math:`\mathbf{X}_m` its item features. The generated graphs
    :math:`\mathbf{G}_m` are model state derived from the training graph and
    the model's scores (:attr:`generated`, a
    :class:`~pyg_mentor.nn.models.mmssl_modules.GeneratedGraphs` of buffers:
    :meth:`to` moves them, :meth:`state_dict` carries them); they are set up on
    the first call from its :obj:`data` (:meth:`reset_generated_graphs`).

    Fixed defects (each ``release_<name>`` option restores the release's
    behaviour; :obj:`release_compat=True` sets all of them):

    * ``graph_schedule``: the release rebuilds :math:`\mathbf{G}_m` from the
      pairs of the previous batches only, so with :math:`T = 1` it is empty
      from the third batch of every epoch on (and at test time), and uses
      :math:`k = \lfloor I \cdot r \rfloor`, 0 on Baby. Fixed: a per-user top-:math:`k`
      memory (:math:`k \ge 1`) refreshed for the batch users every batch and
      installed every :obj:`graph_period` batches; every user has :math:`k`
      edges from the start (:meth:`reset_generated_graphs`).
    * ``pairing``: for :math:`k > 1` the release pairs the tiled user list with
      the row-major top-:math:`k` matrix (scrambled pairs).
    * ``attention``: the release sets :math:`\mathbf{K} = \mathbf{Q}` and
      broadcasts the values on the query axis, so the attention returns its
      input and reduces to :math:`\mathbf{p}\,\mathbf{W}'` with
      :math:`\mathbf{W}'` the sum of :math:`\mathbf{W}_{cat}`'s row blocks.
    * ``discriminator``: ``LeakyReLU(True)`` has slope 1 (identity).
    * ``feature_layers``: the release's feature propagation loop restarts from
      :math:`\mathbf{F}_m` each iteration (more layers have no effect).

    Kept as released: the one-sided graph normalisation
    :math:`\hat{\mathbf{A}} = \mathbf{D}_u^{-1/2}\mathbf{A}` (item :math:`\to`
    user; :math:`\mathbf{D}_i^{-1/2}\mathbf{A}^{\top}` user :math:`\to` item) of
    the training and the generated graphs. It is not LightGCN's symmetric
    normalisation, but nothing says it is a mistake, and it scored higher on
    the planted data (``benchmarks/results/mmssl.md``);
    :obj:`symmetric_norm=True` uses :math:`\mathbf{D}_u^{-1/2}\mathbf{A}
    \mathbf{D}_i^{-1/2}` instead.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        feature_dims (Mapping[str, int]): The width :math:`d_m` of every
            modality's item features :obj:`data['item'].x_<m>` (at least one).
        embedding_dim (int): :math:`d` (64).
        num_layers (int): ID-GCN layers (2, ``len(weight_size)``).
        num_feature_layers (int): Feature propagation rounds (1, ``layers``).
        num_heads (int): Attention heads (4).
        dropout (float): Dropout of :math:`\mathbf{F}_m` (0.2).
        model_cat_rate (float): :math:`\beta` (0.55).
        id_cat_rate (float): :math:`\alpha` (0.36).
        emb_reg (float): Weight of :math:`\frac{1}{2B}(\lVert\mathbf{u}^*_B
            \rVert^2 + \lVert\mathbf{i}^*_P\rVert^2 + \lVert\mathbf{i}^*_N
            \rVert^2)` (``regs[0]``, 1e-5).
        feat_reg (float): Weight of :math:`\frac{1}{2I}\sum_m(\lVert
            \mathbf{H}_u^m\rVert_F^2 + \lVert\mathbf{H}_i^m\rVert_F^2)` (1e-5).
        cl_weight (float): :math:`\lambda_{cl}` (0.03).
        tau (float): Contrastive temperature (0.5).
        g_weight (float): :math:`\lambda_G` (``G_rate``, 1e-4).
        d_lr (float): Learning rate of the discriminator's Adam, betas
            (0.5, 0.9) (3e-4).
        d_dropout1, d_dropout2 (float): Discriminator dropouts (0.31, 0.5).
        gp_weight (float): Gradient-penalty weight (``gp_rate`` 1 times the
            hard-coded 0.3).
        real_data_tau (float): Temperature of the "real" rows (0.005).
        ui_pre_scale (float): Weight of the fused scores in the "real" rows
            (100).
        log_log_scale (float): Scale of the Gumbel noise (1e-5).
        graph_period (int): :math:`T`, batches between graph rebuilds (1).
        graph_topk_rate (float): :math:`r`, :math:`k = \lfloor I r \rfloor`
            (at least 1 unless ``release_graph_schedule``) (1e-4).
        decoupled_weight_decay (float): The weight decay of the recommender's
            :class:`torch.optim.AdamW`, :math:`\theta \leftarrow \theta(1 -
            \eta\lambda)` before each Adam update (the release's AdamW
            default, 0.01).
        contrastive_chunk_size (int, optional): Anchors per chunk of the
            contrastive loss (1024).
        symmetric_norm (bool): LightGCN's symmetric normalisation of the
            graphs instead of the release's one-sided one (:obj:`False`).
        release_compat (bool): Default of every ``release_*`` option.
        release_graph_schedule, release_pairing, release_attention,
        release_discriminator, release_feature_layers (bool, optional): One
            defect each (see above); :obj:`None` follows
            :obj:`release_compat`.
    """

    multimodal = True

    def __init__(
        self,
        num_users: int,
        num_items: int,
        feature_dims: Mapping[str, int],
        embedding_dim: int = 64,
        num_layers: int = 2,
        num_feature_layers: int = 1,
        num_heads: int = 4,
        dropout: float = 0.2,
        model_cat_rate: float = 0.55,
        id_cat_rate: float = 0.36,
        emb_reg: float = 1e-5,
        feat_reg: float = 1e-5,
        cl_weight: float = 0.03,
        tau: float = 0.5,
        g_weight: float = 1e-4,
        d_lr: float = 3e-4,
        d_dropout1: float = 0.31,
        d_dropout2: float = 0.5,
        gp_weight: float = 0.3,
        real_data_tau: float = 0.005,
        ui_pre_scale: float = 100.0,
        log_log_scale: float = 1e-5,
        graph_period: int = 1,
        graph_topk_rate: float = 1e-4,
        decoupled_weight_decay: float = 0.01,
        contrastive_chunk_size: int | None = 1024,
        symmetric_norm: bool = False,
        release_compat: bool = False,
        release_graph_schedule: bool | None = None,
        release_pairing: bool | None = None,
        release_attention: bool | None = None,
        release_discriminator: bool | None = None,
        release_feature_layers: bool | None = None,
    ):
        super().__init__(num_users, num_items)
        self.modalities = check_feature_dims('MMSSL', feature_dims)
        self.feature_dims = {m: feature_dims[m] for m in self.modalities}
        if embedding_dim % num_heads != 0:
            raise ValueError(
                f'embedding_dim ({embedding_dim}) must be divisible by num_heads ({num_heads})'
            )
        if graph_period < 1 or num_layers < 1 or num_feature_layers < 1:
            raise ValueError('graph_period, num_layers and num_feature_layers must be >= 1')
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.num_feature_layers = num_feature_layers
        self.num_heads = num_heads
        self.model_cat_rate = model_cat_rate
        self.id_cat_rate = id_cat_rate
        self.emb_reg = emb_reg
        self.feat_reg = feat_reg
        self.cl_weight = cl_weight
        self.tau = tau
        self.g_weight = g_weight
        self.d_lr = d_lr
        self.gp_weight = gp_weight
        self.real_data_tau = real_data_tau
        self.ui_pre_scale = ui_pre_scale
        self.log_log_scale = log_log_scale
        self.graph_period = graph_period
        self.graph_topk_rate = graph_topk_rate
        self.decoupled_weight_decay = decoupled_weight_decay
        self.contrastive_chunk_size = contrastive_chunk_size
        self.symmetric_norm = symmetric_norm
        flags = {
            'graph_schedule': release_graph_schedule,
            'pairing': release_pairing,
            'attention': release_attention,
            'discriminator': release_discriminator,
            'feature_layers': release_feature_layers,
        }
        #: The resolved ``release_<name>`` options.
        self.release = {k: release_compat if v is None else bool(v) for k, v in flags.items()}
        k = int(num_items * graph_topk_rate)

        self.user_emb = torch.nn.Parameter(torch.empty(num_users, embedding_dim))
        self.item_emb = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        self.proj = torch.nn.ModuleDict(
            {m: torch.nn.Linear(self.feature_dims[m], embedding_dim) for m in self.modalities}
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.w_q = torch.nn.Parameter(torch.empty(embedding_dim, embedding_dim))
        self.w_k = torch.nn.Parameter(torch.empty(embedding_dim, embedding_dim))
        self.w_cat = torch.nn.Parameter(torch.empty(num_heads * embedding_dim, embedding_dim))
        # Item -> user and user -> item propagation over the training graph and
        # over each modality's generated graph; each caches the adjacency of
        # the graph it last saw.
        self.conv_ui = BipartiteLightConv(normalize=False, cached=True)
        self.conv_iu = BipartiteLightConv(normalize=False, cached=True)
        self.gen_ui = torch.nn.ModuleDict(
            {m: BipartiteLightConv(normalize=False, cached=True) for m in self.modalities}
        )
        self.gen_iu = torch.nn.ModuleDict(
            {m: BipartiteLightConv(normalize=False, cached=True) for m in self.modalities}
        )
        slope = 1.0 if self.release['discriminator'] else 0.01
        self.discriminator = Discriminator(num_items, (d_dropout1, d_dropout2), slope)
        #: The generated graphs :math:`\mathbf{G}_m` (model state, buffers).
        self.generated = GeneratedGraphs(
            self.modalities,
            num_users,
            num_items,
            topk=k if self.release['graph_schedule'] else max(k, 1),
            period=graph_period,
            release_schedule=self.release['graph_schedule'],
            release_pairing=self.release['pairing'],
        )
        # Normalised graphs derived from `data` and from `generated`, cached
        # on the identity (and version) of the tensors they are derived from.
        self._derived: dict[str, tuple[tuple, NormalizedGraph]] = {}
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> MMSSL:
        return cls(
            data[USER].num_nodes, data[ITEM].num_nodes, feature_dims('MMSSL', data), **kwargs
        )

    @property
    def topk(self) -> int:
        r""":math:`k`, the items per user of the generated graphs."""
        return self.generated.topk

    def reset_parameters(self):
        r"""Re-initialises the parameters; the generated graphs are set up
        again from the :obj:`data` of the next call."""
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)
        for lin in self.proj.values():
            lin.reset_parameters()
            torch.nn.init.xavier_uniform_(lin.weight)
        for w in (self.w_q, self.w_k, self.w_cat):
            torch.nn.init.xavier_uniform_(w)
        self.discriminator.reset_parameters()
        for conv in (self.conv_ui, self.conv_iu, *self.gen_ui.values(), *self.gen_iu.values()):
            conv.reset_parameters()
        self.generated.reset()
        self._derived.clear()

    def _apply(self, fn, recurse=True):
        self._derived.clear()  # Rebuilt in the new dtype / on the new device.
        return super()._apply(fn, recurse)

    def check_distributed(self) -> None:
        r"""Refuses multi-process training: a step's discriminator, its
        contrastive term and the update of the generated graphs run over the
        batch's *distinct* users (scores over all items for each), which the
        processes' shards of a batch share and do not add up to, and the
        generated graphs are a state every step rewrites from those rows."""
        raise ValueError(
            'MMSSL does not support multi-process training (--nproc / torchrun): '
            'its discriminator, contrastive term and generated-graph update run over the '
            "batch's distinct users, which the shards of a batch share, so the shards "
            'would not add up to the step of one process; train it in one process'
        )

    def check_sampling(self) -> None:
        r"""MMSSL does not train on sampled subgraphs: its adversarial step
        compares every batch user's scores over *all* items (rows of
        :math:`\mathbf{R}` and :math:`\mathbf{H}_u^m\mathbf{H}_i^{m\top}`),
        and its generated graphs :math:`\mathbf{G}_m` are each user's top-k
        items of the whole catalogue, rebuilt from all-node representations;
        neither is a function of a neighbourhood."""
        raise ValueError(
            "MMSSL does not support sampled training (sampler='neighbor'): its "
            "discriminator compares each batch user's scores over all items and its "
            "generated graphs are every user's top-k items of the whole catalogue, so "
            'a step needs every item, not a neighbourhood; train it full-graph'
        )

    def configure_optimizers(
        self, lr: float, weight_decay: float = 0.0
    ) -> list[torch.optim.Optimizer]:
        r"""The recommender's :class:`torch.optim.AdamW` (the release's, with
        :obj:`decoupled_weight_decay`) over every parameter but the
        discriminator's, and the discriminator's
        :class:`torch.optim.Adam` (:obj:`d_lr`, betas :obj:`(0.5, 0.9)`, the
        release's ``optim_D``).

        Args:
            lr (float): The recommender's learning rate.
            weight_decay (float): A coupled (L2) weight decay of the
                recommender's optimiser instead of the decoupled one; only with
                :obj:`decoupled_weight_decay=0`. (default: :obj:`0.0`)
        """
        recommender = [
            p for name, p in self.named_parameters() if not name.startswith('discriminator.')
        ]
        if weight_decay > 0 and self.decoupled_weight_decay > 0:
            raise ValueError(
                f'MMSSL decays its weights as the release does (AdamW, '
                f'decoupled_weight_decay={self.decoupled_weight_decay}); a coupled '
                f'weight_decay ({weight_decay}) needs decoupled_weight_decay=0'
            )
        if weight_decay > 0:
            optimizer = torch.optim.Adam(recommender, lr=lr, weight_decay=weight_decay)
        else:
            optimizer = torch.optim.AdamW(
                recommender, lr=lr, weight_decay=self.decoupled_weight_decay
            )
        d_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.d_lr, betas=(0.5, 0.9)
        )
        return [optimizer, d_optimizer]

    # Graphs ###################################################################

    def _cached(
        self, name: str, sources: Sequence[Tensor], build: Callable[[], NormalizedGraph]
    ) -> NormalizedGraph:
        r""":obj:`build()`, reused while :obj:`sources` are the same tensor
        objects, unmodified, and the model's dtype is the same."""
        key = (*sources, *(t._version for t in sources), self.user_emb.dtype)
        hit = self._derived.get(name)
        if (
            hit is not None
            and len(hit[0]) == len(key)
            and all(a is b if isinstance(a, Tensor) else a == b for a, b in zip(hit[0], key))
        ):
            return hit[1]
        value = build()
        self._derived[name] = (key, value)
        return value

    def _normalize(
        self, edge_index: Tensor, weight: Tensor, rowptr: Tensor | None = None
    ) -> NormalizedGraph:
        w_ui, w_iu = graph_weights(
            edge_index,
            weight.to(self.user_emb.dtype),
            self.num_users,
            self.num_items,
            one_sided=not self.symmetric_norm,
        )
        return NormalizedGraph(edge_index, edge_index.flip(0), w_ui, w_iu, rowptr)

    def training_graph(self, data: HeteroData) -> NormalizedGraph:
        r"""The training graph :math:`\mathbf{R}` of :obj:`data` (its
        ``('user', 'rates', 'item')`` pairs, coalesced), normalised, with CSR
        offsets over users; cached while :obj:`data` holds the same
        :obj:`edge_index`."""
        edge_index = user_item_edges(data)[RATES]

        def build() -> NormalizedGraph:
            pairs = coalesce(edge_index, num_nodes=max(self.num_users, self.num_items))
            rowptr = cumsum(torch.bincount(pairs[0], minlength=self.num_users))
            ones = torch.ones(pairs.size(1), device=pairs.device, dtype=self.user_emb.dtype)
            return self._normalize(pairs, ones, rowptr)

        return self._cached('train', (edge_index,), build)

    def generated_graph(self, modality: str) -> NormalizedGraph:
        r"""The current generated graph of a modality, normalised (cached
        until it changes)."""
        edge_index, weight = self.generated.graph(modality)
        return self._cached(
            f'generated.{modality}',
            (edge_index, weight),
            lambda: self._normalize(edge_index, weight),
        )

    @torch.no_grad()
    def reset_generated_graphs(self, data: HeteroData) -> None:
        r"""Sets up the generated graphs from :obj:`data`: the release starts
        from the training graph; the fixed schedule from every user's
        top-:math:`k` items under every modality's scores
        (:meth:`refresh_graph`). The first call of :meth:`forward`,
        :meth:`loss` or :meth:`train_step` does it if it was not done."""
        if self.release['graph_schedule']:
            self.generated.start_from(self.training_graph(data).edge_index)
        else:
            self.refresh_graph(data)

    @torch.no_grad()
    def refresh_graph(self, data: HeteroData, chunk_size: int = 1024) -> None:
        r"""Recomputes every user's top-:math:`k` items under every modality's
        masked scores :math:`\mathbf{Q}^m` on :obj:`data` (in eval mode) and
        installs the graphs (fixed schedule only)."""
        if self.release['graph_schedule']:
            raise RuntimeError('refresh_graph() is not part of the release schedule')
        graph = self.training_graph(data)
        was_training = self.training
        self.eval()
        feat_user, feat_item = self._feature_branch(data, graph)
        self.train(was_training)
        users = torch.arange(self.num_users, device=self.user_emb.device)
        top = {}
        for m in self.modalities:
            tops = []
            for start in range(0, self.num_users, chunk_size):
                batch = users[start : start + chunk_size]
                scores = self.masked_scores(
                    feat_user[m][batch], feat_item[m], self.train_rows(graph, batch)
                )
                tops.append(self.generated.topk_items(scores))
            top[m] = torch.cat(tops)
        self.generated.refresh(top)

    def train_rows(self, graph: NormalizedGraph, users: Tensor) -> Tensor:
        r"""The dense training rows :math:`\mathbf{R}[\mathrm{users}]`
        :obj:`[B, I]` (0/1) of the :meth:`training_graph`."""
        rowptr = graph.rowptr
        count = rowptr[users + 1] - rowptr[users]
        row = torch.arange(users.numel(), device=users.device).repeat_interleave(count)
        start = cumsum(count)[:-1].repeat_interleave(count)
        pos = rowptr[users].repeat_interleave(count) + (
            torch.arange(row.numel(), device=users.device) - start
        )
        out = torch.zeros(
            users.numel(), self.num_items, device=users.device, dtype=self.user_emb.dtype
        )
        out[row, graph.edge_index[1, pos]] = 1.0
        return out

    @staticmethod
    def masked_scores(user: Tensor, item: Tensor, train_rows: Tensor) -> Tensor:
        r"""The release's ``u_sim``: :math:`\mathrm{rownorm}((1 - \mathbf{R}_B)
        \odot \mathbf{U}_B\mathbf{I}^{\top})` (training items become 0)."""
        return F.normalize((user @ item.t()) * (1 - train_rows), dim=1)

    def on_epoch_start(
        self, data: HeteroData, epoch: int, generator: torch.Generator
    ) -> HeteroData:
        r"""Restarts the release schedule's batch count; trains on
        :obj:`data` itself."""
        self.generated.start_epoch()
        return data

    # Forward ##################################################################

    def _propagate_ui(self, graph: NormalizedGraph, x_item: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{A}}\mathbf{x}`: items to users."""
        return self.conv_ui(
            (x_item, self.user_emb),
            graph.flipped,
            graph.w_ui,
            size=(self.num_items, self.num_users),
        )

    def _propagate_iu(self, graph: NormalizedGraph, x_user: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{A}}^{\top}\mathbf{x}`: users to items."""
        return self.conv_iu(
            (x_user, self.item_emb),
            graph.edge_index,
            graph.w_iu,
            size=(self.num_users, self.num_items),
        )

    def _propagate_generated(self, m: str) -> tuple[Tensor, Tensor]:
        graph = self.generated_graph(m)
        if graph.edge_index.numel() == 0:
            return (
                self.user_emb.new_zeros(self.num_users, self.embedding_dim),
                self.item_emb.new_zeros(self.num_items, self.embedding_dim),
            )
        p_u = self.gen_ui[m](
            (self.item_emb, self.user_emb),
            graph.flipped,
            graph.w_ui,
            size=(self.num_items, self.num_users),
        )
        p_i = self.gen_iu[m](
            (self.user_emb, self.item_emb),
            graph.edge_index,
            graph.w_iu,
            size=(self.num_users, self.num_items),
        )
        return p_u, p_i

    def _feature_branch(
        self,
        data: HeteroData,
        graph: NormalizedGraph,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        features = item_features('MMSSL', data, self.feature_dims, self.num_items)
        feat_user, feat_item = {}, {}
        for m in self.modalities:
            f = self.dropout(self.proj[m](features[m].to(self.user_emb.dtype)))
            h_item = f
            for _ in range(self.num_feature_layers):
                h_user = self._propagate_ui(graph, f if self.release['feature_layers'] else h_item)
                h_item = self._propagate_iu(graph, h_user)
            feat_user[m], feat_item[m] = h_user, h_item
        return feat_user, feat_item

    def attention(self, x: Tensor) -> Tensor:
        r"""Multi-head attention across modalities, per node.

        Args:
            x (torch.Tensor): :obj:`[M, N, d]`, one row block per modality.

        Returns:
            torch.Tensor: :obj:`[M, N, d]`.
        """
        num_mod, n, d = x.shape
        h = self.num_heads
        if self.release['attention']:
            # K = Q and V broadcast on the query axis: every head returns x.
            return torch.cat([x] * h, dim=-1) @ self.w_cat
        q = (x @ self.w_q).view(num_mod, n, h, d // h)
        k = (x @ self.w_k).view(num_mod, n, h, d // h)
        att = torch.einsum('anhc,bnhc->hnab', q, k) / math.sqrt(d // h)
        att = att.softmax(dim=-1)  # over the key modality b
        z = torch.einsum('hnab,bnd->anhd', att, x).reshape(num_mod, n, h * d)
        return z @ self.w_cat

    def embed(self, data: HeteroData) -> MMSSLOutput:
        r"""One forward pass on the graph of :obj:`data`; see
        :class:`MMSSLOutput`."""
        if not self.generated.initialized:
            self.reset_generated_graphs(data)
        graph = self.training_graph(data)
        feat_user, feat_item = self._feature_branch(data, graph)
        gen_user, gen_item = {}, {}
        for m in self.modalities:
            gen_user[m], gen_item[m] = self._propagate_generated(m)
        z_user = self.attention(torch.stack([gen_user[m] for m in self.modalities]))
        z_item = self.attention(torch.stack([gen_item[m] for m in self.modalities]))
        user = self.user_emb + self.id_cat_rate * F.normalize(z_user.mean(0), dim=1)
        item = self.item_emb + self.id_cat_rate * F.normalize(z_item.mean(0), dim=1)
        users, items = [user], [item]
        for layer in range(self.num_layers):
            last = layer == self.num_layers - 1
            user = self._propagate_ui(graph, item)
            user = user.softmax(dim=1) if last else user
            item = self._propagate_iu(graph, user)
            item = item.softmax(dim=1) if last else item
            users.append(user)
            items.append(item)
        user = torch.stack(users).mean(0)
        item = torch.stack(items).mean(0)
        for m in self.modalities:
            user = user + self.model_cat_rate * F.normalize(feat_user[m], dim=1)
            item = item + self.model_cat_rate * F.normalize(feat_item[m], dim=1)
        return MMSSLOutput(user, item, feat_user, feat_item, gen_user, gen_item)

    def forward(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        out = self.embed(data)
        return out.user, out.item

    # Losses ###################################################################

    def real_rows(self, train_rows: Tensor, fused_scores: Tensor) -> Tensor:
        r"""The discriminator's "real" rows: :math:`\mathrm{rownorm}(
        \mathrm{softmax}((\mathbf{R}_B + s\,\mathbf{g}) / \tau_r) +
        \gamma\,\mathbf{P})` with Gumbel noise :math:`\mathbf{g}` (global RNG)."""
        u = torch.rand_like(train_rows)
        gumbel = -torch.log(-torch.log(u + 1e-8) + 1e-8)
        r = ((train_rows + self.log_log_scale * gumbel) / self.real_data_tau).softmax(1)
        return F.normalize(r + self.ui_pre_scale * fused_scores, dim=1)

    def gradient_penalty(self, real: Tensor, fake: Tensor) -> Tensor:
        r""":math:`\mathrm{mean}_n(\lVert\nabla_{\hat{\mathbf{x}}}
        D(\hat{\mathbf{x}})_n\rVert_2 - 1)^2` at
        :math:`\hat{\mathbf{x}} = \alpha\,\mathbf{x}_{real} + (1 - \alpha)
        \mathbf{x}_{fake}`, one :math:`\alpha \sim U(0, 1)` per row."""
        alpha = torch.rand(real.size(0), 1, device=real.device, dtype=real.dtype)
        x = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
        out = self.discriminator(x)
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return (grad.norm(2, dim=1) - 1).square().mean()

    def discriminator_loss(self, data: HeteroData, users: Tensor) -> Tensor:
        r"""The discriminator's WGAN-GP loss for distinct batch users (one
        forward of the recommender on :obj:`data` without gradients, in the
        current mode)."""
        with torch.no_grad():
            out = self.embed(data)
            rows = self.train_rows(self.training_graph(data), users)
            fused = self.masked_scores(out.user[users], out.item, rows)
            fake = torch.cat(
                [
                    self.masked_scores(out.feat_user[m][users], out.feat_item[m], rows)
                    for m in self.modalities
                ]
            )
            real = self.real_rows(rows, fused).repeat(len(self.modalities), 1)
        d = self.discriminator
        return -d(real).mean() + d(fake).mean() + self.gp_weight * self.gradient_penalty(real, fake)

    def _generator_terms(
        self,
        data: HeteroData,
        batch: Tensor,
    ) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        users, pos, neg = batch
        out = self.embed(data)
        u, i_pos, i_neg = out.user[users], out.item[pos], out.item[neg]
        bpr = bpr_loss((u * i_pos).sum(-1), (u * i_neg).sum(-1))
        emb = (
            self.emb_reg
            * 0.5
            * (u.square().sum() + i_pos.square().sum() + i_neg.square().sum())
            / users.numel()
        )
        feat = (
            self.feat_reg
            * 0.5
            * sum(
                out.feat_user[m].square().sum() + out.feat_item[m].square().sum()
                for m in self.modalities
            )
            / self.num_items
        )
        distinct = users.unique()
        rows = self.train_rows(self.training_graph(data), distinct)
        gen = {
            m: self.masked_scores(out.feat_user[m][distinct], out.feat_item[m], rows)
            for m in self.modalities
        }
        adv = -self.discriminator(torch.cat(list(gen.values()))).mean()
        cl = sum(
            grace_nce(
                out.gen_user[m][distinct], out.user[distinct], self.tau, self.contrastive_chunk_size
            )
            for m in self.modalities
        )
        loss = bpr + emb + feat + self.cl_weight * cl + self.g_weight * adv
        terms = {'loss': loss, 'bpr': bpr, 'emb': emb, 'feat': feat, 'cl': cl, 'adv': adv}
        return terms, distinct, {m: s.detach() for m, s in gen.items()}

    def loss(self, data: HeteroData, batch: Tensor) -> dict[str, Tensor]:
        r"""The recommender (generator) loss of a batch :obj:`[3, B]` on
        :obj:`data`, without the discriminator step or the graph update (see
        :meth:`train_step`)."""
        return self._generator_terms(data, batch)[0]

    def train_step(
        self, data: HeteroData, batch: Tensor, optimizers: Sequence[torch.optim.Optimizer]
    ) -> dict[str, Tensor]:
        r"""The release's iteration: a discriminator step on
        :obj:`optimizers[1]`, the recommender step on :obj:`optimizers[0]`
        (the discriminator's gradients from the adversarial term are dropped)
        and the update of the generated graphs.

        Args:
            data (HeteroData): The training graph.
            batch (torch.Tensor): :obj:`[3, B]` (user, positive, negative) rows.
            optimizers (Sequence[torch.optim.Optimizer]): The recommender's and
                the discriminator's optimisers (:meth:`configure_optimizers`).
        """
        if len(optimizers) != 2:
            raise ValueError(
                'MMSSL.train_step needs the two optimisers of '
                f'configure_optimizers(), got {len(optimizers)}'
            )
        optimizer, d_optimizer = optimizers
        distinct = batch[0].unique()
        d_optimizer.zero_grad(set_to_none=True)
        d_loss = self.discriminator_loss(data, distinct)
        if not torch.isfinite(d_loss):
            return {'loss': d_loss.detach(), 'disc': d_loss.detach()}
        # Only the discriminator's weights: the gradient penalty's interpolated
        # input is a leaf that requires grad, whose own gradient is not used.
        d_loss.backward(inputs=[p for p in self.discriminator.parameters() if p.requires_grad])
        d_optimizer.step()

        optimizer.zero_grad(set_to_none=True)
        # The release drops the discriminator's gradients of the recommender
        # loss; freezing its weights here means autograd never computes them
        # (one I x I/4 weight-gradient GEMM per step saved).
        frozen = [p for p in self.discriminator.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            terms, distinct, gen = self._generator_terms(data, batch)
            terms['disc'] = d_loss.detach()
            if not torch.isfinite(terms['loss']):
                return terms
            terms['loss'].backward()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        optimizer.step()
        self.generated.update(distinct, gen)
        return {k: v.detach() for k, v in terms.items()}

    def __repr__(self) -> str:
        fixed = [k for k, v in self.release.items() if v]
        return (
            f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
            f'modalities={self.modalities}, embedding_dim={self.embedding_dim}, '
            f'topk={self.topk}, release={fixed}'
            f'{", symmetric_norm=True" if self.symmetric_norm else ""})'
        )
