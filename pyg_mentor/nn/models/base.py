r"""The small interface every recommender of the package implements, and the
model registry the trainer and the CLI use."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_mentor.nn.conv.bipartite_light_conv import BipartiteLightConv
from pyg_mentor.typing import ITEM, feature_key, modalities

ScoreFn = Callable[[Tensor], Tensor]


class Recommender(torch.nn.Module):
    r"""Base class of the recommenders.

    What the :class:`~pyg_mentor.train.Trainer` needs is small:

    * :meth:`loss` — the training loss of a batch :obj:`[3, B]` of
      (user, positive item, negative item) rows, as a dict whose :obj:`'loss'`
      entry is optimised and whose other entries are logged;
    * :meth:`train_step` — one optimisation step on a batch (by default:
      zero_grad, :meth:`loss`, backward, step); models with more than one
      update per batch override it;
    * :meth:`scorer` — a function scoring all items for a set of users, built
      once per evaluation (in eval mode, without gradients).

    Dot-product models only implement :meth:`forward` (the final user and item
    embeddings) and :meth:`loss`; :meth:`scorer` and :meth:`recommend` follow.
    """

    #: Whether the model needs item features (``data['item'].x_<modality>``).
    multimodal: bool = False

    def __init__(self, num_users: int, num_items: int):
        super().__init__()
        self.num_users = num_users
        self.num_items = num_items

    @classmethod
    def from_data(cls, data: HeteroData, **kwargs: Any) -> Recommender:
        r"""Builds the model for a dataset in the layout of
        :mod:`pyg_mentor.typing`."""
        raise NotImplementedError

    def forward(self) -> tuple[Tensor, Tensor]:
        r"""The final user :obj:`[U, d]` and item :obj:`[I, d]` embeddings."""
        raise NotImplementedError

    def loss(self, batch: Tensor) -> dict[str, Tensor]:
        r"""The loss terms of a batch :obj:`[3, B]`; :obj:`'loss'` is their sum."""
        raise NotImplementedError

    def train_step(self, batch: Tensor,
                   optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
        r"""One optimisation step on a batch; the trainer calls it once per
        batch and stops on a non-finite :obj:`'loss'` entry.

        By default: zero the gradients, :meth:`loss`, and, if the loss is
        finite, backward and :obj:`optimizer.step()`. Models with more than one
        update per batch (e.g. :class:`~pyg_mentor.nn.models.MMSSL`'s
        discriminator step) override it and own their extra optimisers (whose
        state they keep in their :meth:`state_dict`, so that resuming is
        exact).

        Args:
            batch (torch.Tensor): :obj:`[3, B]` (user, positive, negative) rows.
            optimizer (torch.optim.Optimizer): The trainer's optimiser of
                :meth:`parameters`.

        Returns:
            dict[str, torch.Tensor]: The loss terms, as :meth:`loss`.
        """
        optimizer.zero_grad(set_to_none=True)
        terms = self.loss(batch)
        if torch.isfinite(terms['loss']):
            terms['loss'].backward()
            optimizer.step()
        return terms

    def on_epoch_start(self, epoch: int, generator: torch.Generator) -> None:
        r"""Called by the trainer before every training epoch (e.g. to resample
        a pruned graph). Does nothing by default."""

    @torch.no_grad()
    def scorer(self) -> ScoreFn:
        r"""Scores :obj:`[len(users), I]` of all items for given users, with the
        embeddings computed once for the whole evaluation."""
        user_emb, item_emb = self()
        return lambda users: user_emb[users] @ item_emb.t()

    @torch.no_grad()
    def recommend(
        self,
        users: Tensor,
        k: int,
        exclude_index: Tensor | None = None,
    ) -> Tensor:
        r"""The top-:obj:`k` items of every user in :obj:`users`.

        Args:
            users (torch.Tensor): User ids :obj:`[N]`.
            k (int): Number of recommendations.
            exclude_index (torch.Tensor, optional): (user id, item) pairs
                :obj:`[2, M]` never recommended, e.g. the training pairs.

        Returns:
            torch.Tensor: Item ids :obj:`[N, k]`, best first.
        """
        was_training = self.training
        self.eval()
        scores = self.scorer()(users)
        self.train(was_training)
        if exclude_index is not None:
            pos = torch.full((self.num_users,), -1, dtype=torch.long)
            pos[users] = torch.arange(users.numel())
            rows = pos[exclude_index[0]]
            keep = rows >= 0
            scores[rows[keep], exclude_index[1, keep]] = float('-inf')
        return scores.topk(k, dim=1).indices

    def _apply(self, fn, recurse=True):
        # Cached sparse adjacencies do not follow `.to()`: rebuild them lazily.
        for module in self.modules():
            if isinstance(module, BipartiteLightConv):
                module.reset_parameters()
        return super()._apply(fn, recurse)


@dataclass
class ModelSpec:
    r"""A registered model: its class, the defaults of its hyper-parameters and
    of the training options it overrides (MMRec's model yaml), and the
    hyper-parameter grid searched by MMRec / the release."""

    cls: type[Recommender]
    defaults: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    doc: str = ''


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    defaults: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
) -> Callable[[type[Recommender]], type[Recommender]]:
    r"""Class decorator that makes a model available to the trainer and CLI."""

    def wrap(cls: type[Recommender]) -> type[Recommender]:
        if name in MODELS:
            raise ValueError(f"Model '{name}' is registered twice")
        summary = ' '.join((cls.__doc__ or '').strip().split('\n\n')[0].split())
        MODELS[name] = ModelSpec(cls, dict(defaults or {}), dict(grid or {}),
                                 summary)
        return cls

    return wrap


def get_model_spec(name: str) -> ModelSpec:
    r"""The registered model :obj:`name`, or a clear error listing the others."""
    import pyg_mentor.nn.models  # noqa: F401  (registers the built-in models)

    if name not in MODELS:
        raise KeyError(f"Unknown model '{name}'; available: {sorted(MODELS)}")
    return MODELS[name]


# Multimodal models: item features #########################################

def check_features(owner: str, features: Mapping[str, Tensor], num_items: int) -> list[str]:
    r"""The sorted modality names of :obj:`features`; a clear error if there
    is none or a matrix is not :obj:`[num_items, d]`."""
    if not features:
        raise ValueError(f'{owner} needs at least one modality of item features')
    for name, x in features.items():
        if x.dim() != 2 or x.size(0) != num_items:
            raise ValueError(f"Features of '{name}' must be [{num_items}, d], "
                             f'got {list(x.shape)}')
    return sorted(features)


def data_features(owner: str, data: HeteroData) -> dict[str, Tensor]:
    r"""The item features of every modality of :obj:`data`, or a clear error
    saying how to get some."""
    names = modalities(data)
    if not names:
        raise ValueError(
            f'{owner} needs item features (data["item"].x_<modality>) and the '
            'dataset has none; real features of Baby/Sports/Clothing are not '
            'available offline: add <modality>_feat.npy files, or use '
            '--surrogate-features interactions (pyg_mentor.datasets.surrogate)')
    return {m: data[ITEM][feature_key(m)] for m in names}
