r"""MMSSL (Wei et al., WWW 2023) on the shared layers, with every defect of the
release fixed by default and reproducible behind a named option (see the MMSSL
section of ``docs/differences.md``)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import coalesce, cumsum

from pyg_mentor.nn.conv import BipartiteLightConv
from pyg_mentor.nn.functional import bpr_loss, grace_nce
from pyg_mentor.nn.models.base import Recommender, check_features, data_features, register_model
from pyg_mentor.typing import ITEM, RATES, USER

#: The defects of the release that have an option (``release_<name>``), see
#: :class:`MMSSL`.
RELEASE_OPTIONS = ('graph_schedule', 'pairing', 'attention', 'discriminator',
                   'feature_layers')


class Discriminator(torch.nn.Module):
    r"""MMSSL's discriminator on user-item score rows :obj:`[N, I]`.

    .. math::
        D(\mathbf{x}) = 100 \cdot \sigma\big(\mathbf{W}_3\,
        \mathrm{Drop}_{p_2}(\mathrm{BN}(\phi(\mathbf{W}_2\,
        \mathrm{Drop}_{p_1}(\mathrm{BN}(\phi(\mathbf{W}_1 \mathbf{x}))))))\big)

    with widths :math:`I \to I/4 \to I/8 \to 1`, :math:`\phi` a LeakyReLU,
    Kaiming-normal weights and zero biases.

    Args:
        num_items (int): Input width :math:`I`.
        dropout (tuple[float, float]): :math:`(p_1, p_2)`.
            (default: :obj:`(0.31, 0.5)`)
        negative_slope (float): Slope of :math:`\phi`; the release's
            ``LeakyReLU(True)`` passes :obj:`True` as the slope, i.e. 1 (the
            identity). (default: :obj:`0.01`)
    """

    def __init__(self, num_items: int, dropout: tuple[float, float] = (0.31, 0.5),
                 negative_slope: float = 0.01):
        super().__init__()
        h1, h2 = max(num_items // 4, 1), max(num_items // 8, 1)
        self.negative_slope = negative_slope
        self.net = torch.nn.Sequential(
            torch.nn.Linear(num_items, h1),
            torch.nn.LeakyReLU(negative_slope),
            torch.nn.BatchNorm1d(h1),
            torch.nn.Dropout(dropout[0]),
            torch.nn.Linear(h1, h2),
            torch.nn.LeakyReLU(negative_slope),
            torch.nn.BatchNorm1d(h2),
            torch.nn.Dropout(dropout[1]),
            torch.nn.Linear(h2, 1),
        )
        self.reset_parameters()

    def reset_parameters(self):
        for layer in self.net:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.kaiming_normal_(layer.weight)
                torch.nn.init.zeros_(layer.bias)
            elif isinstance(layer, torch.nn.BatchNorm1d):
                layer.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return 100 * torch.sigmoid(self.net(x)).view(-1)


@dataclass
class MMSSLOutput:
    r"""Everything one forward pass of :class:`MMSSL` computes."""

    user: Tensor  #: Final user embeddings :math:`\mathbf{u}^*` [U, d].
    item: Tensor  #: Final item embeddings :math:`\mathbf{i}^*` [I, d].
    feat_user: dict[str, Tensor]  #: :math:`\mathbf{H}_u^m` [U, d].
    feat_item: dict[str, Tensor]  #: :math:`\mathbf{H}_i^m` [I, d].
    gen_user: dict[str, Tensor]  #: :math:`\mathbf{P}_u^m` [U, d].
    gen_item: dict[str, Tensor]  #: :math:`\mathbf{P}_i^m` [I, d].


def graph_weights(edge_index: Tensor, weight: Tensor, num_users: int,
                  num_items: int, one_sided: bool) -> tuple[Tensor, Tensor]:
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
        return (weight * (deg_u[user] + 1e-8).rsqrt(),
                weight * (deg_i[item] + 1e-8).rsqrt())
    w = weight * deg_u[user].rsqrt() * deg_i[item].rsqrt()
    return w, w


@register_model(
    'mmssl',
    defaults={
        'embedding_dim': 64, 'num_layers': 2, 'num_feature_layers': 1,
        'num_heads': 4, 'dropout': 0.2, 'model_cat_rate': 0.55,
        'id_cat_rate': 0.36, 'emb_reg': 1e-5, 'feat_reg': 1e-5,
        'cl_weight': 0.03, 'tau': 0.5, 'g_weight': 1e-4, 'd_lr': 3e-4,
        'd_dropout1': 0.31, 'd_dropout2': 0.5, 'gp_weight': 0.3, 'real_data_tau': 0.005,
        'ui_pre_scale': 100.0, 'log_log_scale': 1e-5, 'graph_period': 1,
        'graph_topk_rate': 1e-4, 'decoupled_weight_decay': 0.01,
        # Training options of the release (parser.py, the active "baby" block):
        'lr': 0.00055, 'batch_size': 1024, 'patience': 7, 'ks': [10, 20, 50],
        'valid_metric': 'recall@20', 'seed': 2022,
    },
)
class MMSSL(Recommender):
    r"""MMSSL: multi-modal self-supervised learning for recommendation
    (Wei et al., WWW 2023), as the release computes it
    (``shared/reference/MMSSL_AND_EVAL_PROTOCOL.md`` part A) with its defects
    fixed by default.

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

    Training (:meth:`train_step`): a discriminator :math:`D` step with its own
    Adam optimiser (WGAN-GP between the per-modality score rows
    :math:`\mathbf{Q}^m = \mathrm{rownorm}((1 - \mathbf{R}) \odot
    \mathbf{H}_u^m\mathbf{H}_i^{m\top})` and the Gumbel-softmax "real" rows
    driven by the fused scores), then the recommender step on

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}} + \mathcal{L}_{emb} +
        \mathcal{L}_{feat} + \lambda_{cl} \sum_m \mathrm{GRACE}(\mathbf{P}_u^m,
        \mathbf{u}^*) - \lambda_{G}\, \mathrm{mean}\, D([\mathbf{Q}^m]_m)

    and the update of the generated graphs from the batch's :math:`\mathbf{Q}^m`.

    Fixed defects (each ``release_<name>`` option restores the release's
    behaviour; :obj:`release_compat=True` sets all of them):

    * ``graph_schedule``: the release rebuilds :math:`\mathbf{G}_m` from the
      pairs of the previous batches only, so with :math:`T = 1` it is empty
      from the third batch of every epoch on (and at test time), and uses
      :math:`k = \lfloor I \cdot r \rfloor`, 0 on Baby. Fixed: a per-user top-:math:`k`
      memory (:math:`k \ge 1`) refreshed for the batch users every batch and
      installed every :obj:`graph_period` batches; every user has :math:`k`
      edges from the start (:meth:`refresh_graph`).
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
        edge_index (torch.Tensor): Training pairs :obj:`[2, E]` (user, item).
        features (Mapping[str, torch.Tensor]): Item features per modality.
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
        d_lr (float): Discriminator Adam learning rate, betas (0.5, 0.9)
            (3e-4).
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
        decoupled_weight_decay (float): AdamW-style decay
            :math:`\theta \leftarrow \theta(1 - \eta\lambda)` applied to the
            recommender's parameters before each optimiser step (the
            release's AdamW default, 0.01).
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
        edge_index: Tensor,
        features: Mapping[str, Tensor],
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
        self.modalities = check_features('MMSSL', features, num_items)
        if embedding_dim % num_heads != 0:
            raise ValueError(f'embedding_dim ({embedding_dim}) must be divisible by '
                             f'num_heads ({num_heads})')
        if graph_period < 1 or num_layers < 1 or num_feature_layers < 1:
            raise ValueError('graph_period, num_layers and num_feature_layers must '
                             'be >= 1')
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
        flags = {'graph_schedule': release_graph_schedule, 'pairing': release_pairing,
                 'attention': release_attention,
                 'discriminator': release_discriminator,
                 'feature_layers': release_feature_layers}
        #: The resolved ``release_<name>`` options.
        self.release = {k: release_compat if v is None else bool(v)
                        for k, v in flags.items()}
        k = int(num_items * graph_topk_rate)
        self.topk = k if self.release['graph_schedule'] else max(k, 1)

        # Training graph R: coalesced pairs, CSR over users for R[users] rows.
        edge_index = coalesce(edge_index, num_nodes=max(num_users, num_items))
        self.register_buffer('edge_index', edge_index, persistent=False)
        self.register_buffer(
            'rowptr', cumsum(torch.bincount(edge_index[0], minlength=num_users)),
            persistent=False)
        for name in self.modalities:
            self.register_buffer(f'feat_{name}', features[name].float(),
                                 persistent=False)

        self.user_emb = torch.nn.Parameter(torch.empty(num_users, embedding_dim))
        self.item_emb = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        self.proj = torch.nn.ModuleDict({
            m: torch.nn.Linear(features[m].size(1), embedding_dim)
            for m in self.modalities})
        self.dropout = torch.nn.Dropout(dropout)
        self.w_q = torch.nn.Parameter(torch.empty(embedding_dim, embedding_dim))
        self.w_k = torch.nn.Parameter(torch.empty(embedding_dim, embedding_dim))
        self.w_cat = torch.nn.Parameter(
            torch.empty(num_heads * embedding_dim, embedding_dim))
        # Item -> user and user -> item propagation over the training graph
        # (cached) and over each modality's generated graph (cache cleared
        # whenever the graph is rebuilt).
        self.conv_ui = BipartiteLightConv(normalize=False, cached=True)
        self.conv_iu = BipartiteLightConv(normalize=False, cached=True)
        self.gen_ui = torch.nn.ModuleDict({
            m: BipartiteLightConv(normalize=False, cached=True) for m in self.modalities})
        self.gen_iu = torch.nn.ModuleDict({
            m: BipartiteLightConv(normalize=False, cached=True) for m in self.modalities})
        slope = 1.0 if self.release['discriminator'] else 0.01
        self.discriminator = Discriminator(num_items, (d_dropout1, d_dropout2), slope)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=d_lr,
                                            betas=(0.5, 0.9))
        self.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> MMSSL:
        return cls(data[USER].num_nodes, data[ITEM].num_nodes,
                   data[RATES].edge_index, data_features('MMSSL', data), **kwargs)

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.user_emb)
        torch.nn.init.xavier_uniform_(self.item_emb)
        for lin in self.proj.values():
            lin.reset_parameters()
            torch.nn.init.xavier_uniform_(lin.weight)
        for w in (self.w_q, self.w_k, self.w_cat):
            torch.nn.init.xavier_uniform_(w)
        self.discriminator.reset_parameters()
        self.d_optimizer.state.clear()
        self.conv_ui.reset_parameters()
        self.conv_iu.reset_parameters()
        self._epoch_batch = 0  # release schedule: batch index in the epoch
        self._num_steps = 0  # fixed schedule: batches since the start
        self._pending: dict[str, list[Tensor]] = {m: [] for m in self.modalities}
        self._memory: dict[str, Tensor] = {}
        self._graphs: dict[str, tuple[Tensor, Tensor]] = {}
        if self.release['graph_schedule']:
            # The release starts from the training graph.
            ones = torch.ones(self.edge_index.size(1), device=self.edge_index.device)
            for m in self.modalities:
                self._install(m, self.edge_index, ones)
        else:
            self.refresh_graph()

    # Graphs ###################################################################

    def _weights(self, edge_index: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        return graph_weights(edge_index, weight, self.num_users, self.num_items,
                             one_sided=not self.symmetric_norm)

    def _base_weights(self) -> tuple[Tensor, Tensor]:
        ones = torch.ones(self.edge_index.size(1), device=self.edge_index.device,
                          dtype=self.user_emb.dtype)
        return self._weights(self.edge_index, ones)

    def _propagate_ui(self, x_item: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{A}}\mathbf{x}`: items to users."""
        w_ui, _ = self._base_weights() if self.conv_ui._cached_adj is None else (None, None)
        return self.conv_ui((x_item, self.user_emb), self.edge_index.flip(0), w_ui,
                            size=(self.num_items, self.num_users))

    def _propagate_iu(self, x_user: Tensor) -> Tensor:
        r""":math:`\hat{\mathbf{A}}^{\top}\mathbf{x}`: users to items."""
        _, w_iu = self._base_weights() if self.conv_iu._cached_adj is None else (None, None)
        return self.conv_iu((x_user, self.item_emb), self.edge_index, w_iu,
                            size=(self.num_users, self.num_items))

    def _install(self, m: str, edge_index: Tensor, weight: Tensor) -> None:
        r"""Makes (user, item) pairs with weights (duplicates summed) the
        generated graph of modality :obj:`m`."""
        if edge_index.numel() > 0:
            edge_index, weight = coalesce(edge_index, weight, reduce='sum',
                                          num_nodes=max(self.num_users, self.num_items))
        self._graphs[m] = (edge_index, weight)
        self.gen_ui[m].reset_parameters()
        self.gen_iu[m].reset_parameters()

    def generated_graph(self, modality: str) -> tuple[Tensor, Tensor]:
        r"""The current generated graph of a modality: coalesced (user, item)
        pairs :obj:`[2, E]` and their multiplicities :obj:`[E]`."""
        return self._graphs[modality]

    def _propagate_generated(self, m: str) -> tuple[Tensor, Tensor]:
        edge_index, weight = self._graphs[m]
        device = self.user_emb.device
        if edge_index.numel() == 0:
            return (self.user_emb.new_zeros(self.num_users, self.embedding_dim),
                    self.item_emb.new_zeros(self.num_items, self.embedding_dim))
        edge_index = edge_index.to(device)
        w_ui = w_iu = None
        if self.gen_ui[m]._cached_adj is None or self.gen_iu[m]._cached_adj is None:
            w_ui, w_iu = self._weights(edge_index, weight.to(self.user_emb))
        p_u = self.gen_ui[m]((self.item_emb, self.user_emb), edge_index.flip(0), w_ui,
                             size=(self.num_items, self.num_users))
        p_i = self.gen_iu[m]((self.user_emb, self.item_emb), edge_index, w_iu,
                             size=(self.num_users, self.num_items))
        return p_u, p_i

    def train_rows(self, users: Tensor) -> Tensor:
        r"""The dense training rows :math:`\mathbf{R}[\mathrm{users}]`
        :obj:`[B, I]` (0/1)."""
        rowptr = self.rowptr
        count = rowptr[users + 1] - rowptr[users]
        row = torch.arange(users.numel(), device=users.device).repeat_interleave(count)
        start = cumsum(count)[:-1].repeat_interleave(count)
        pos = rowptr[users].repeat_interleave(count) + (
            torch.arange(row.numel(), device=users.device) - start)
        out = torch.zeros(users.numel(), self.num_items, device=users.device,
                          dtype=self.user_emb.dtype)
        out[row, self.edge_index[1, pos]] = 1.0
        return out

    @staticmethod
    def masked_scores(user: Tensor, item: Tensor, train_rows: Tensor) -> Tensor:
        r"""The release's ``u_sim``: :math:`\mathrm{rownorm}((1 - \mathbf{R}_B)
        \odot \mathbf{U}_B\mathbf{I}^{\top})` (training items become 0)."""
        return F.normalize((user @ item.t()) * (1 - train_rows), dim=1)

    @torch.no_grad()
    def refresh_graph(self, chunk_size: int = 1024) -> None:
        r"""Recomputes every user's top-:math:`k` items under every modality's
        scores and installs the graphs (fixed schedule only)."""
        if self.release['graph_schedule']:
            raise RuntimeError('refresh_graph() is not part of the release schedule')
        was_training = self.training
        self.eval()
        feat_user, feat_item = self._feature_branch()
        self.train(was_training)
        users = torch.arange(self.num_users, device=self.user_emb.device)
        for m in self.modalities:
            tops = []
            for start in range(0, self.num_users, chunk_size):
                batch = users[start:start + chunk_size]
                scores = self.masked_scores(feat_user[m][batch], feat_item[m],
                                            self.train_rows(batch))
                tops.append(self._topk(scores))
            self._memory[m] = torch.cat(tops)
            self._install_memory(m)

    def _topk(self, scores: Tensor) -> Tensor:
        top = scores.topk(min(self.topk, self.num_items), dim=1).indices
        if self.release['pairing'] and top.size(1) > 1:
            # The release pairs tile(users, k) with the row-major top-k: pair j
            # is (users[j mod B], top.flatten()[j]), i.e. user b gets
            # top.flatten()[b + B c], c < k.
            top = top.flatten().view(top.size(1), top.size(0)).t()
        return top

    def _install_memory(self, m: str) -> None:
        top = self._memory[m]
        users = torch.arange(self.num_users, device=top.device)
        edge_index = torch.stack([users.repeat_interleave(top.size(1)), top.flatten()])
        self._install(m, edge_index, torch.ones(edge_index.size(1), device=top.device))

    @torch.no_grad()
    def update_graph(self, users: Tensor, scores: Mapping[str, Tensor]) -> None:
        r"""Updates the generated graphs after a training batch.

        Args:
            users (torch.Tensor): The batch's distinct users :obj:`[B]`.
            scores (Mapping[str, torch.Tensor]): Per modality, the masked
                feature-branch scores :math:`\mathbf{Q}^m` :obj:`[B, I]`.
        """
        if not self.release['graph_schedule']:
            for m in self.modalities:
                self._memory[m][users] = self._topk(scores[m])
            self._num_steps += 1
            if self._num_steps % self.graph_period == 0:
                for m in self.modalities:
                    self._install_memory(m)
            return
        # The release: accumulate on batches idx % T != 0 or idx == 0, else
        # rebuild from the accumulated pairs only (possibly none).
        idx = self._epoch_batch
        self._epoch_batch += 1
        for m in self.modalities:
            if idx % self.graph_period != 0 or idx == 0:
                if self.topk > 0:
                    top = self._topk(scores[m])
                    self._pending[m].append(torch.stack(
                        [users.repeat_interleave(top.size(1)), top.flatten()]))
            else:
                pairs = self._pending[m]
                edge_index = (torch.cat(pairs, dim=1) if pairs else
                              users.new_empty(2, 0))
                self._install(m, edge_index,
                              torch.ones(edge_index.size(1), device=users.device))
                self._pending[m] = []

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        self._epoch_batch = 0

    def get_extra_state(self) -> dict[str, Any]:
        return {
            'graphs': dict(self._graphs), 'memory': dict(self._memory),
            'pending': {m: list(v) for m, v in self._pending.items()},
            'epoch_batch': self._epoch_batch, 'num_steps': self._num_steps,
            'd_optimizer': self.d_optimizer.state_dict(),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._memory = dict(state['memory'])
        self._pending = {m: list(v) for m, v in state['pending'].items()}
        self._epoch_batch = state['epoch_batch']
        self._num_steps = state['num_steps']
        self.d_optimizer.load_state_dict(state['d_optimizer'])
        for m, (edge_index, weight) in state['graphs'].items():
            self._graphs[m] = (edge_index, weight)
            self.gen_ui[m].reset_parameters()
            self.gen_iu[m].reset_parameters()

    # Forward ##################################################################

    def _feature_branch(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        feat_user, feat_item = {}, {}
        for m in self.modalities:
            f = self.dropout(self.proj[m](getattr(self, f'feat_{m}')))
            h_item = f
            for _ in range(self.num_feature_layers):
                h_user = self._propagate_ui(f if self.release['feature_layers'] else h_item)
                h_item = self._propagate_iu(h_user)
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

    def embed(self) -> MMSSLOutput:
        r"""One forward pass; see :class:`MMSSLOutput`."""
        feat_user, feat_item = self._feature_branch()
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
            user = self._propagate_ui(item)
            user = user.softmax(dim=1) if last else user
            item = self._propagate_iu(user)
            item = item.softmax(dim=1) if last else item
            users.append(user)
            items.append(item)
        user = torch.stack(users).mean(0)
        item = torch.stack(items).mean(0)
        for m in self.modalities:
            user = user + self.model_cat_rate * F.normalize(feat_user[m], dim=1)
            item = item + self.model_cat_rate * F.normalize(feat_item[m], dim=1)
        return MMSSLOutput(user, item, feat_user, feat_item, gen_user, gen_item)

    def forward(self) -> tuple[Tensor, Tensor]:
        out = self.embed()
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
        grad, = torch.autograd.grad(out.sum(), x, create_graph=True)
        return (grad.norm(2, dim=1) - 1).square().mean()

    def discriminator_loss(self, users: Tensor) -> Tensor:
        r"""The discriminator's WGAN-GP loss for distinct batch users (one
        forward of the recommender without gradients, in the current mode)."""
        with torch.no_grad():
            out = self.embed()
            rows = self.train_rows(users)
            fused = self.masked_scores(out.user[users], out.item, rows)
            fake = torch.cat([self.masked_scores(out.feat_user[m][users],
                                                 out.feat_item[m], rows)
                              for m in self.modalities])
            real = self.real_rows(rows, fused).repeat(len(self.modalities), 1)
        d = self.discriminator
        return (-d(real).mean() + d(fake).mean()
                + self.gp_weight * self.gradient_penalty(real, fake))

    def _generator_terms(self, batch: Tensor) -> tuple[dict[str, Tensor], Tensor,
                                                        dict[str, Tensor]]:
        users, pos, neg = batch
        out = self.embed()
        u, i_pos, i_neg = out.user[users], out.item[pos], out.item[neg]
        bpr = bpr_loss((u * i_pos).sum(-1), (u * i_neg).sum(-1))
        emb = self.emb_reg * 0.5 * (u.square().sum() + i_pos.square().sum()
                                    + i_neg.square().sum()) / users.numel()
        feat = self.feat_reg * 0.5 * sum(
            out.feat_user[m].square().sum() + out.feat_item[m].square().sum()
            for m in self.modalities) / self.num_items
        distinct = users.unique()
        rows = self.train_rows(distinct)
        gen = {m: self.masked_scores(out.feat_user[m][distinct], out.feat_item[m], rows)
               for m in self.modalities}
        adv = -self.discriminator(torch.cat(list(gen.values()))).mean()
        cl = sum(grace_nce(out.gen_user[m][distinct], out.user[distinct], self.tau,
                           self.contrastive_chunk_size)
                 for m in self.modalities)
        loss = bpr + emb + feat + self.cl_weight * cl + self.g_weight * adv
        terms = {'loss': loss, 'bpr': bpr, 'emb': emb, 'feat': feat, 'cl': cl,
                 'adv': adv}
        return terms, distinct, {m: s.detach() for m, s in gen.items()}

    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        r"""The recommender (generator) loss of a batch :obj:`[3, B]`, without
        the discriminator step or the graph update (see :meth:`train_step`)."""
        return self._generator_terms(batch)[0]

    def train_step(self, batch: Tensor,
                   optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
        r"""The release's iteration: a discriminator step on its own Adam
        optimiser, the recommender step (with decoupled weight decay; the
        discriminator's gradients from the adversarial term are dropped) and
        the update of the generated graphs."""
        distinct = batch[0].unique()
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss = self.discriminator_loss(distinct)
        if not torch.isfinite(d_loss):
            return {'loss': d_loss.detach(), 'disc': d_loss.detach()}
        # Only the discriminator's weights: the gradient penalty's interpolated
        # input is a leaf that requires grad, whose own gradient is not used.
        d_loss.backward(inputs=[p for p in self.discriminator.parameters()
                                if p.requires_grad])
        self.d_optimizer.step()

        optimizer.zero_grad(set_to_none=True)
        # The release drops the discriminator's gradients of the recommender
        # loss; freezing its weights here means autograd never computes them
        # (one I x I/4 weight-gradient GEMM per step saved).
        frozen = [p for p in self.discriminator.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        try:
            terms, distinct, gen = self._generator_terms(batch)
            terms['disc'] = d_loss.detach()
            if not torch.isfinite(terms['loss']):
                return terms
            terms['loss'].backward()
        finally:
            for p in frozen:
                p.requires_grad_(True)
        if self.decoupled_weight_decay > 0:
            with torch.no_grad():
                for group in optimizer.param_groups:
                    for p in group['params']:
                        if p.grad is not None:
                            p.mul_(1 - group['lr'] * self.decoupled_weight_decay)
        optimizer.step()
        self.update_graph(distinct, gen)
        return {k: v.detach() for k, v in terms.items()}

    def __repr__(self) -> str:
        fixed = [k for k, v in self.release.items() if v]
        return (f'{self.__class__.__name__}({self.num_users}, {self.num_items}, '
                f'modalities={self.modalities}, embedding_dim={self.embedding_dim}, '
                f'topk={self.topk}, release={fixed}'
                f"{', symmetric_norm=True' if self.symmetric_norm else ''})")
