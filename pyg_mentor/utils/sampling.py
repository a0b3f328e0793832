r"""MMRec's training batches: shuffled interactions with one uniform negative each.

MMRec (``TrainDataLoader``, protocol part B.2) iterates an epoch over the TRAIN
interactions, reshuffled every epoch, in consecutive slices of 2048, and draws for
every positive pair one negative item uniformly from the items that appear in the
training split, rejecting items in the user's training history. We do the same,
vectorised: a round of rejection sampling redraws only the rejected entries.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


class NegativeSampler:
    r"""Draws negatives uniformly from the training items, excluding each user's
    training items.

    Membership tests use the sorted keys :math:`u \cdot I + i` of the training
    pairs and :func:`torch.searchsorted`, so a batch costs
    :math:`O(B \log E)` per rejection round and no Python loop per sample.

    Args:
        edge_index (torch.Tensor): Training pairs :obj:`[2, E]` (user, item).
        num_items (int): Number of items :math:`I`.
        max_rounds (int, optional): Rejection rounds before giving up with an
            error. (default: :obj:`1000`)
        candidates (torch.Tensor, optional): The items negatives are drawn
            from (default: the items of :obj:`edge_index`, as MMRec).

    Raises:
        ValueError: If a user rated every candidate item (e.g. a data set with
            one item, or with one user): no negative can be drawn for them.
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_items: int,
        max_rounds: int = 1000,
        candidates: Tensor | None = None,
    ):
        self.num_items = num_items
        self.max_rounds = max_rounds
        self.keys = (edge_index[0] * num_items + edge_index[1]).unique()
        self.candidates = edge_index[1].unique() if candidates is None else candidates
        # A user with every candidate in their history has no negative at all.
        rated = (self.keys // num_items)[torch.isin(self.keys % num_items, self.candidates)]
        users, counts = rated.unique(return_counts=True)
        full = users[counts >= self.candidates.numel()]
        if full.numel() > 0:
            raise ValueError(
                f'No negative item can be sampled for {full.numel()} user(s) (e.g. '
                f'{full[:5].tolist()}): they rated all {self.candidates.numel()} item(s) '
                'negatives are drawn from; BPR training needs, for every user, an item '
                'outside their history (a data set with one item or one user has none)'
            )

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Whether each (user, item) pair is a training interaction."""
        keys = users * self.num_items + items
        pos = torch.searchsorted(self.keys, keys).clamp_(max=self.keys.numel() - 1)
        return self.keys[pos] == keys

    def sample(self, users: Tensor, generator: torch.Generator | None = None) -> Tensor:
        r"""One negative item for every entry of :obj:`users`."""
        neg = self.candidates[
            torch.randint(self.candidates.numel(), users.shape, generator=generator)
        ]
        todo = self.is_positive(users, neg).nonzero().view(-1)
        for _ in range(self.max_rounds):
            if todo.numel() == 0:
                return neg
            draw = torch.randint(self.candidates.numel(), todo.shape, generator=generator)
            neg[todo] = self.candidates[draw]
            todo = todo[self.is_positive(users[todo], neg[todo])]
        raise RuntimeError(
            f'No negative found after {self.max_rounds} rounds for users '
            f'{users[todo].unique()[:10].tolist()}: they rated (almost) every '
            f'training item'
        )


def train_batches(
    edge_index: Tensor,
    sampler: NegativeSampler,
    batch_size: int = 2048,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    r"""One epoch of MMRec training batches.

    Args:
        edge_index (torch.Tensor): Training pairs :obj:`[2, E]` (user, item).
        sampler (NegativeSampler): The negative sampler.
        batch_size (int, optional): Interactions per batch. (default: :obj:`2048`)
        generator (torch.Generator, optional): The random generator, so that an
            epoch is reproducible and resumable.

    Yields:
        torch.Tensor: :obj:`[3, B]` rows (users, positive items, negative items);
        the last batch may be smaller.
    """
    perm = torch.randperm(edge_index.size(1), generator=generator)
    for start in range(0, perm.numel(), batch_size):
        users, pos = edge_index[:, perm[start : start + batch_size]]
        yield torch.stack([users, pos, sampler.sample(users, generator)])


def user_batches(
    edge_index: Tensor,
    num_items: int,
    batch_size: int = 1024,
    generator: torch.Generator | None = None,
) -> Iterator[Tensor]:
    r"""One epoch of MMSSL's training batches (its ``Data.sample``, reference
    part A.7.0): :math:`\lfloor E / B \rfloor + 1` batches of :obj:`batch_size`
    *distinct* users drawn uniformly from the users with training pairs (all
    of them if fewer), each with one positive uniform over the user's training
    items and one negative uniform over **all** item ids, rejected while it is
    a training item of the user.

    Args:
        edge_index (torch.Tensor): Training pairs :obj:`[2, E]` (user, item).
        num_items (int): Number of items :math:`I`.
        batch_size (int, optional): Users per batch :math:`B`.
            (default: :obj:`1024`)
        generator (torch.Generator, optional): The random generator.

    Yields:
        torch.Tensor: :obj:`[3, B]` rows (users, positive items, negative items).
    """
    order = (edge_index[0] * num_items + edge_index[1]).argsort()
    user, item = edge_index[0, order], edge_index[1, order]
    users, count = user.unique_consecutive(return_counts=True)
    start = torch.cumsum(count, 0) - count
    sampler = NegativeSampler(
        edge_index, num_items, candidates=torch.arange(num_items, device=edge_index.device)
    )
    for _ in range(edge_index.size(1) // batch_size + 1):
        pick = torch.randperm(users.numel(), generator=generator)[:batch_size]
        offset = (torch.rand(pick.numel(), generator=generator) * count[pick]).long()
        pos = item[start[pick] + offset.clamp_(max=count[pick] - 1)]
        batch_users = users[pick]
        yield torch.stack([batch_users, pos, sampler.sample(batch_users, generator)])
