r"""The small interface every recommender of the package implements, and the
model registry the trainer and the CLI use."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.typing import EdgeType

from pyg_mentor.nn.conv.bipartite_light_conv import BipartiteLightConv
from pyg_mentor.typing import ITEM, SIMILAR, USER, feature_key, modalities

ScoreFn = Callable[[Tensor], Tensor]


class Recommender(torch.nn.Module):
    r"""Base class of the recommenders.

    A model holds parameters only; the graph it runs on is an argument, as in
    PyG's :class:`~torch_geometric.nn.models.LightGCN`: every method takes the
    :class:`~torch_geometric.data.HeteroData` in the layout of
    :mod:`pyg_mentor.typing` (user-item edges both ways, item features
    ``data['item'].x_<modality>``, the fused item graph
    ``data['item', 'similar', 'item']`` for models that use one). The same
    model object therefore runs on the full training graph, on an augmented
    view of it (:mod:`pyg_mentor.transforms`) or on another graph with the
    same users and items.

    What the :class:`~pyg_mentor.train.Trainer` needs is small:

    * :meth:`loss` — the training loss of a batch :obj:`[3, B]` of
      (user, positive item, negative item) rows on a graph, as a dict whose
      :obj:`'loss'` entry is optimised and whose other entries are logged;
    * :meth:`configure_optimizers` — the optimisers the trainer owns (one Adam
      by default);
    * :meth:`train_step` — one optimisation step on a batch (by default:
      zero_grad, :meth:`loss`, backward, step); models with more than one
      update per batch override it;
    * :meth:`on_epoch_start` — the graph an epoch trains on (by default the
      training graph itself; e.g. FREEDOM's pruned view);
    * :meth:`scorer` — a function scoring all items for a set of users, built
      once per evaluation (in eval mode, without gradients).

    Dot-product models only implement :meth:`forward` (the final user and item
    embeddings) and :meth:`loss`; :meth:`scorer` and :meth:`recommend` follow.

    **Sampled subgraphs.** A model with :attr:`supports_sampling` also
    trains on the subgraph sampled around a batch
    (:class:`~pyg_mentor.loader.BPRNeighborLoader`,
    ``TrainConfig.sampler='neighbor'``). Such a subgraph holds, as PyG's
    loaders make them, the global ids of its nodes in
    ``data['user'].n_id`` / ``data['item'].n_id`` (a full graph has none),
    the item features of its items, and the user-item edges with the
    full graph's normalised weights as :obj:`edge_weight`
    (:class:`~pyg_mentor.transforms.BipartiteNorm`, rescaled where
    neighbours were left out); the batch given to
    :meth:`loss` then holds local ids. Models index their ID tables with
    :func:`node_rows`, and :meth:`sampled_neighbors` names the receptive
    field to sample, so that with all neighbours the computation for the
    batch's nodes equals the full-graph one.

    **Several processes.** A model with :attr:`supports_distributed` also
    trains on several processes (:mod:`pyg_mentor.distributed`): each holds a
    slice of every batch, and its :meth:`loss` is the global batch's when the
    terms that reduce over the batch's rows use the batch reductions of
    :mod:`pyg_mentor.nn.functional` and every other term is the same on every
    process (see :meth:`check_distributed`).
    """

    #: Whether the model needs item features (``data['item'].x_<modality>``).
    multimodal: bool = False
    #: Whether the model needs the fused item graph
    #: ``data['item', 'similar', 'item']`` (built by
    #: :func:`~pyg_mentor.datasets.load.prepare_data`).
    needs_item_graph: bool = False
    #: Whether the model trains on sampled subgraphs
    #: (``TrainConfig.sampler='neighbor'``, see :meth:`check_sampling`).
    supports_sampling: bool = False
    #: Whether the model trains on several processes exactly
    #: (:mod:`pyg_mentor.distributed`, see :meth:`check_distributed`).
    supports_distributed: bool = False

    def __init__(self, num_users: int, num_items: int):
        super().__init__()
        for name, value in (('num_users', num_users), ('num_items', num_items)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')
        self.num_users = num_users
        self.num_items = num_items

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> Recommender:
        r"""Builds the model for a dataset in the layout of
        :mod:`pyg_mentor.typing` (sizes and feature widths are read from it;
        the graph is not kept)."""
        return cls(data[USER].num_nodes, data[ITEM].num_nodes, **kwargs)

    def forward(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        r"""The final user :obj:`[U, d]` and item :obj:`[I, d]` embeddings on
        the graph of :obj:`data`."""
        raise NotImplementedError

    def loss(self, data: HeteroData, batch: Tensor) -> dict[str, Tensor]:
        r"""The loss terms of a batch :obj:`[3, B]` on the graph of
        :obj:`data`; :obj:`'loss'` is their sum."""
        raise NotImplementedError

    def configure_optimizers(
        self, lr: float, weight_decay: float = 0.0
    ) -> list[torch.optim.Optimizer]:
        r"""The optimisers of the model, owned (stepped, checkpointed) by the
        trainer; the first one optimises the recommendation loss. By default
        one :class:`torch.optim.Adam` over :meth:`parameters`.

        Args:
            lr (float): The learning rate (:obj:`TrainConfig.lr`).
            weight_decay (float): Adam's (coupled) weight decay
                (:obj:`TrainConfig.weight_decay`).
        """
        return [torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)]

    def train_step(
        self, data: HeteroData, batch: Tensor, optimizers: Sequence[torch.optim.Optimizer]
    ) -> dict[str, Tensor]:
        r"""One optimisation step on a batch; the trainer calls it once per
        batch and stops on a non-finite :obj:`'loss'` entry.

        By default: zero the gradients, :meth:`loss`, and, if the loss is
        finite, backward and :obj:`optimizers[0].step()`. Models with more
        than one update per batch (e.g. :class:`~pyg_mentor.nn.models.MMSSL`'s
        discriminator step) override it.

        Args:
            data (HeteroData): The graph of the epoch (see
                :meth:`on_epoch_start`).
            batch (torch.Tensor): :obj:`[3, B]` (user, positive, negative) rows.
            optimizers (Sequence[torch.optim.Optimizer]): The optimisers of
                :meth:`configure_optimizers`.

        Returns:
            dict[str, torch.Tensor]: The loss terms, as :meth:`loss`.
        """
        optimizer = optimizers[0]
        optimizer.zero_grad(set_to_none=True)
        terms = self.loss(data, batch)
        if torch.isfinite(terms['loss']):
            terms['loss'].backward()
            optimizer.step()
        return terms

    def check_sampling(self) -> None:
        r"""Raises a :class:`ValueError` saying why this model, with its
        options, cannot train on sampled subgraphs; called by the trainer
        before training with ``sampler='neighbor'``. By default it refuses
        unless :attr:`supports_sampling`."""
        if not self.supports_sampling:
            raise ValueError(
                f'{type(self).__name__} does not support sampled '
                "training (sampler='neighbor'); train it full-graph"
            )

    def check_distributed(self) -> None:
        r"""Raises a :class:`ValueError` saying why this model, with its
        options, cannot train on several processes
        (:mod:`pyg_mentor.distributed`); called by the trainer before
        multi-process training.

        A model can if each of its loss terms either reduces over the batch's
        rows with the batch reductions of :mod:`pyg_mentor.nn.functional`
        (:func:`~pyg_mentor.nn.functional.bpr_loss`,
        :func:`~pyg_mentor.nn.functional.batch_mean`, ...) or does not depend
        on the batch (the same on every process, random draws included), and
        if :meth:`train_step` steps its optimisers once per batch whatever the
        shard; then :attr:`supports_distributed`. By default it refuses
        unless :attr:`supports_distributed`."""
        if not self.supports_distributed:
            raise ValueError(
                f'{type(self).__name__} does not support multi-process training '
                '(--nproc / torchrun): its loss is not written with the batch '
                'reductions that make the shards of a batch add up to the whole; '
                'train it in one process'
            )

    def sampled_neighbors(self, num_neighbors: Sequence[int]) -> dict[EdgeType, list[int]]:
        r"""The neighbours to sample around a batch's users and items, per
        edge type and hop (a :class:`~torch_geometric.sampler.NumNeighbors`
        mapping), from the user's counts per user-item layer
        (``TrainConfig.num_neighbors``, :obj:`-1` = all). It spans the
        model's receptive field: with :obj:`-1` everywhere, the subgraph holds
        every edge the batch's representations depend on. By default no
        edges (models whose representations do not use the graph, e.g.
        MF-BPR); a clear error if :obj:`num_neighbors` does not fit the model.
        """
        return {}

    def on_epoch_start(
        self, data: HeteroData, epoch: int, generator: torch.Generator
    ) -> HeteroData:
        r"""Called by the trainer before every training epoch with the
        training graph; returns the graph the epoch trains on (e.g. a view
        drawn by a transform from :obj:`generator`). By default :obj:`data`
        itself."""
        return data

    @torch.no_grad()
    def scorer(self, data: HeteroData) -> ScoreFn:
        r"""Scores :obj:`[len(users), I]` of all items for given users, with the
        embeddings computed once on :obj:`data` for the whole evaluation."""
        user_emb, item_emb = self(data)
        return lambda users: user_emb[users] @ item_emb.t()

    @torch.no_grad()
    def recommend(
        self,
        data: HeteroData,
        users: Tensor,
        k: int,
        exclude_index: Tensor | None = None,
        return_scores: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        r"""The top-:obj:`k` items of every user in :obj:`users`.

        Items are ranked by ``(-score, item id)``, the evaluator's tie rule
        (:func:`~pyg_mentor.evaluation.topk_items`). An item of
        :obj:`exclude_index` is never recommended to its user, wherever and
        however often the user appears in :obj:`users`: a repeated id gets
        the same row each time. A user with fewer than :obj:`k` items left to
        recommend (e.g. :obj:`k` at least the number of items minus the
        user's training items) gets a shorter list, padded with :obj:`-1`
        (and score :obj:`NaN`); excluded items never fill a slot.

        Args:
            data (HeteroData): The graph to score on (e.g. the training graph).
            users (torch.Tensor): User ids :obj:`[N]` in
                :obj:`[0, num_users)`; repeats allowed.
            k (int): Number of recommendations, :obj:`>= 1` (may exceed the
                number of items).
            exclude_index (torch.Tensor, optional): (user id, item) pairs
                :obj:`[2, M]` never recommended, e.g. the training pairs.
            return_scores (bool, optional): Also return the scores.

        Returns:
            torch.Tensor: Item ids :obj:`[N, k]`, best first, :obj:`-1` in
            empty slots; with :obj:`return_scores`, also their scores
            :obj:`[N, k]` (:obj:`NaN` in empty slots).
        """
        from pyg_mentor.evaluation import auto_batch_size, topk_items

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"'k' must be a positive integer, got {k!r}")
        users = torch.as_tensor(users, dtype=torch.long).view(-1)
        if users.numel() and (int(users.min()) < 0 or int(users.max()) >= self.num_users):
            bad = users[(users < 0) | (users >= self.num_users)].unique().tolist()
            raise ValueError(f'user ids must be in [0, {self.num_users}), got {bad}')
        # Each distinct user is scored and masked once; repeats share its row.
        # Users are scored in chunks sized from the available memory (as the
        # evaluator's, see auto_batch_size): never all users x all items.
        unique, inverse = users.unique(return_inverse=True)
        was_training = self.training
        self.eval()
        scorer = self.scorer(data)
        self.train(was_training)
        # The excluded pairs of the requested users, as (row of `unique`,
        # item) sorted by row, mapped once: a chunk takes its slice `ptr`.
        pairs_all, ptr = None, None
        if exclude_index is not None and exclude_index.numel() > 0:
            row = torch.full((self.num_users,), -1, dtype=torch.long)
            row[unique] = torch.arange(unique.numel())
            exclude_index = exclude_index.cpu()
            rows = row[exclude_index[0]]
            keep = rows >= 0
            pairs_all = torch.stack([rows[keep], exclude_index[1, keep]])
            pairs_all = pairs_all[:, pairs_all[0].argsort(stable=True)]
            ptr = torch.searchsorted(pairs_all[0], torch.arange(unique.numel() + 1)).tolist()
        tops, values = [], []
        start, size = 0, 1  # the first user alone: the scores' device and dtype
        while start < unique.numel():
            end = min(start + size, unique.numel())
            scores = scorer(unique[start:end])
            if start == 0:
                size = auto_batch_size(scores.size(1), scores.element_size(), device=scores.device)
            pairs = None
            if pairs_all is not None:
                assert ptr is not None
                chunk = pairs_all[:, ptr[start] : ptr[end]]
                pairs = torch.stack([chunk[0] - start, chunk[1]]).to(scores.device)
            top = topk_items(scores, k, pairs)  # empty slots hold `num_items`
            empty = top == scores.size(1)
            top_scores = scores.gather(1, top.clamp(max=scores.size(1) - 1))
            values.append(top_scores.masked_fill(empty, float('nan')))
            tops.append(top.masked_fill(empty, -1))
            start = end
        if not tops:  # no user
            tops, values = [torch.empty(0, k, dtype=torch.long)], [torch.empty(0, k)]
        top, top_scores = torch.cat(tops), torch.cat(values)
        inverse = inverse.to(top.device)
        if return_scores:
            return top[inverse], top_scores[inverse]
        return top[inverse]

    def _apply(self, fn, recurse=True):
        # Cached sparse adjacencies do not follow `.to()`: rebuild them lazily.
        for module in self.modules():
            if isinstance(module, BipartiteLightConv):
                module.reset_parameters()
        return super()._apply(fn, recurse)


@dataclass
class ModelSpec:
    r"""A registered model: its class, the training options (and data options)
    it sets apart from the package's defaults (MMRec's model yaml), and the
    hyper-parameter grid searched by MMRec / the release. The defaults of the
    model's own hyper-parameters are its constructor's signature
    (:attr:`model_defaults`), written nowhere else."""

    cls: type[Recommender]
    defaults: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    doc: str = ''

    @property
    def model_defaults(self) -> dict[str, Any]:
        r"""The model's hyper-parameters and their defaults, from the
        signature of its constructor."""
        params = inspect.signature(self.cls.__init__).parameters
        return {
            name: p.default
            for name, p in params.items()
            if p.default is not inspect.Parameter.empty
        }


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    defaults: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
) -> Callable[[type[Recommender]], type[Recommender]]:
    r"""Class decorator that makes a model available to the trainer and CLI.

    Args:
        name (str): The model's name (``--model NAME``).
        defaults (dict, optional): Training options
            (:class:`~pyg_mentor.config.TrainConfig`) and data options
            (:class:`~pyg_mentor.config.DataConfig`) the model sets apart from
            the package's defaults, e.g. MENTOR's ``lr=1e-4``. Not the model's
            own hyper-parameters: their defaults are its signature.
        grid (dict, optional): The hyper-parameter grid of MMRec / the release.
    """
    from pyg_mentor.config import DATA_FIELDS, TRAIN_FIELDS

    bad = sorted(set(defaults or {}) - TRAIN_FIELDS - DATA_FIELDS)
    if bad:
        raise ValueError(
            f"Model '{name}': defaults may only set training or data "
            f'options, not {bad} (a model default is its signature)'
        )

    def wrap(cls: type[Recommender]) -> type[Recommender]:
        if name in MODELS:
            raise ValueError(f"Model '{name}' is registered twice")
        summary = ' '.join((cls.__doc__ or '').strip().split('\n\n')[0].split())
        MODELS[name] = ModelSpec(cls, dict(defaults or {}), dict(grid or {}), summary)
        return cls

    return wrap


def get_model_spec(name: str) -> ModelSpec:
    r"""The registered model :obj:`name`, or a clear error listing the others."""
    import pyg_mentor.nn.models  # noqa: F401  (registers the built-in models)

    if name not in MODELS:
        raise KeyError(f"Unknown model '{name}'; available: {sorted(MODELS)}")
    return MODELS[name]


# Sampled subgraphs ########################################################


def node_ids(data: HeteroData, node_type: str) -> Tensor | None:
    r"""The global ids :obj:`data[node_type].n_id` of the nodes of a sampled
    subgraph (PyG's loaders' convention), or :obj:`None` for a full graph."""
    return data[node_type].get('n_id')


def node_rows(table: Tensor, data: HeteroData, node_type: str) -> Tensor:
    r"""The rows of a per-node table (an ID embedding :obj:`[N, d]`) for the
    nodes of :obj:`data`: the table itself on a full graph, its
    :obj:`n_id` rows on a sampled subgraph."""
    n_id = node_ids(data, node_type)
    return table if n_id is None else table[n_id]


def global_index(index: Tensor, data: HeteroData, node_type: str) -> Tensor:
    r"""Node ids of :obj:`data` (local on a sampled subgraph) as global ids."""
    n_id = node_ids(data, node_type)
    return index if n_id is None else n_id[index]


def check_num_neighbors(owner: str, num_neighbors: Sequence[int], num_layers: int) -> list[int]:
    r""":obj:`num_neighbors` as a list, or a clear error if it has not one
    entry per user-item layer."""
    num_neighbors = list(num_neighbors)
    if len(num_neighbors) != num_layers:
        raise ValueError(
            f'num_neighbors must have one entry per user-item layer of '
            f'{owner} (num_layers={num_layers}), got {num_neighbors}'
        )
    return num_neighbors


# Multimodal models: item features #########################################


def check_feature_dims(owner: str, feature_dims: Mapping[str, int]) -> list[str]:
    r"""The sorted modality names of :obj:`feature_dims`; a clear error if
    there is none or a width is not a positive integer."""
    if not feature_dims:
        raise ValueError(f'{owner} needs at least one modality of item features')
    for name, dim in feature_dims.items():
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(
                f"The width of modality '{name}' must be a positive integer, got {dim!r}"
            )
    return sorted(feature_dims)


def feature_dims(owner: str, data: HeteroData) -> dict[str, int]:
    r"""The width of every modality's item features in :obj:`data`, or a
    clear error saying how to get some."""
    names = modalities(data)
    if not names:
        raise ValueError(
            f'{owner} needs item features (data["item"].x_<modality>) and the '
            'dataset has none; real features of Baby/Sports/Clothing are not '
            'available offline: add <modality>_feat.npy files (pyg-mentor '
            'features), or use --surrogate-features interactions '
            '(pyg_mentor.datasets.surrogate)'
        )
    return {m: int(data[ITEM][feature_key(m)].size(1)) for m in names}


def check_features(owner: str, features: Mapping[str, Tensor], num_items: int) -> list[str]:
    r"""The sorted modality names of :obj:`features`; a clear error if there
    is none or a matrix is not :obj:`[num_items, d]`."""
    if not features:
        raise ValueError(f'{owner} needs at least one modality of item features')
    for name, x in features.items():
        if x.dim() != 2 or x.size(0) != num_items:
            raise ValueError(f"Features of '{name}' must be [{num_items}, d], got {list(x.shape)}")
    return sorted(features)


def data_features(owner: str, data: HeteroData) -> dict[str, Tensor]:
    r"""The item features of every modality of :obj:`data`, or a clear error
    saying how to get some."""
    feature_dims(owner, data)  # The error if there are none.
    return {m: data[ITEM][feature_key(m)] for m in modalities(data)}


def item_features(
    owner: str, data: HeteroData, feature_dims: Mapping[str, int], num_items: int
) -> dict[str, Tensor]:
    r"""The item features of :obj:`data` the model was built for
    (:obj:`feature_dims`), each checked to be :obj:`[num_items, d_m]`
    (on a sampled subgraph: one row per item of the subgraph)."""
    n_id = node_ids(data, ITEM)
    if n_id is not None:
        num_items = n_id.numel()
    out = {}
    for name, dim in feature_dims.items():
        key = feature_key(name)
        if key not in data[ITEM]:
            raise ValueError(
                f"{owner} was built with modality '{name}' but "
                f'data["item"].{key} is missing (modalities: '
                f'{modalities(data)})'
            )
        x = data[ITEM][key]
        if x.dim() != 2 or x.size(0) != num_items or x.size(1) != dim:
            raise ValueError(
                f"Features of '{name}' must be [{num_items}, {dim}], got {list(x.shape)}"
            )
        out[name] = x
    return out


def item_graph(owner: str, data: HeteroData) -> tuple[Tensor, Tensor]:
    r"""The fused item graph ``(edge_index, edge_weight)`` of :obj:`data`, or a
    clear error saying how to build it."""
    if SIMILAR not in data.edge_types:
        raise ValueError(
            f"{owner} needs the fused item graph data['item', 'similar', 'item']; "
            'build it with pyg_mentor.datasets.load.prepare_data(data, '
            'item_graph=True) (ModalityKNNGraph + FuseItemGraphs)'
        )
    store = data[SIMILAR]
    return store.edge_index, store.edge_weight
