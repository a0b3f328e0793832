r"""Full-ranking top-:math:`K` evaluation with MMRec's protocol.

Every evaluated user ranks **all** items except their training items; the
top-:math:`K` list is compared with the user's held-out (valid or test) items
:math:`P_u`. With :math:`\mathrm{rel}_{u,i} \in \{0, 1\}` the relevance of the
item at rank :math:`i` and :math:`U_e` the users that have at least one label,

.. math::
    \mathrm{Recall@K} = \frac{1}{|U_e|} \sum_{u \in U_e}
        \frac{\sum_{i \le K} \mathrm{rel}_{u,i}}{|P_u|}

    \mathrm{Precision@K} = \frac{1}{|U_e|} \sum_{u \in U_e}
        \frac{\sum_{i \le K} \mathrm{rel}_{u,i}}{K}

    \mathrm{NDCG@K} = \frac{1}{|U_e|} \sum_{u \in U_e}
        \frac{\sum_{i \le K} \mathrm{rel}_{u,i} / \log_2(i + 1)}
             {\sum_{i \le \min(|P_u|, K)} 1 / \log_2(i + 1)}

    \mathrm{MAP@K} = \frac{1}{|U_e|} \sum_{u \in U_e}
        \frac{\sum_{i \le K} \mathrm{Prec}_u@i \cdot \mathrm{rel}_{u,i}}
             {\min(|P_u|, K)}, \qquad
    \mathrm{Prec}_u@i = \frac{1}{i} \sum_{j \le i} \mathrm{rel}_{u,j}

These are the formulas of MMRec's ``TopKEvaluator`` (and of MENTOR, which uses
it unchanged). The arithmetic is delegated to :mod:`torch_geometric.metrics`
(:class:`~torch_geometric.metrics.LinkPredRecall`, ``LinkPredPrecision``,
``LinkPredNDCG``, ``LinkPredMAP`` in one
:class:`~torch_geometric.metrics.LinkPredMetricCollection`), which implements
exactly these definitions; this module only produces the ranked lists.

Ranking rules (where MMRec leaves behaviour unspecified, we define it):

* **Ties**: items are ordered by ``(-score, item id)``, i.e. among equal scores
  the *lower item id ranks first*. MMRec's :meth:`torch.topk` leaves tie order
  unspecified; ours is deterministic and independent of the batch size.
* **Excluded items** (the user's training items) are never ranked, even if a
  row has fewer than :math:`K` admissible items and even if the item is also a
  label. An item with score :math:`-\infty` is never ranked either (that is how
  exclusion is implemented). A slot with no rankable item is *empty*: it is
  never a hit, but it still counts in the :math:`K` of Precision@K.
  (MMRec masks with :math:`-10^{10}`, so a masked item could still fill a slot
  of a row with fewer than :math:`K` admissible items.)
* **Labels**: duplicated ``(row, item)`` label pairs are removed
  (:func:`~torch_geometric.utils.coalesce`), so :math:`|P_u|` counts distinct
  items. (MMRec counts duplicates in :math:`|P_u|`; its datasets have none,
  so the numbers agree.) A label that is also excluded stays in :math:`P_u`
  (it lowers the attainable recall, as in MMRec) but can never be a hit.
* ``NaN`` scores raise a :class:`ValueError`.

Example:
    >>> evaluator = Evaluator(data, 'test')  # users, labels, masks: once
    >>> results = {'test': evaluator.evaluate_embeddings(user_emb, item_emb)}
    >>> # or evaluator.evaluate(lambda users: model.scores(users))
    >>> print(format_metrics_table(results, ks=(10, 20)))
    | split | recall@10 | recall@20 | ndcg@10 | ndcg@20 |
    |---|---:|---:|---:|---:|
    | test | 0.0627 | 0.0992 | 0.0330 | 0.0424 |
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.metrics import (
    LinkPredMAP,
    LinkPredMetricCollection,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)
from torch_geometric.utils import coalesce, cumsum

from pyg_mentor.typing import ITEM, RATES, USER, label_key

__all__ = [
    'DEFAULT_KS',
    'METRICS',
    'topk_items',
    'topk_metrics',
    'mmssl_metrics',
    'PROTOCOLS',
    'MetricSums',
    'Evaluator',
    'available_memory',
    'auto_batch_size',
    'round_metrics',
    'format_metrics_table',
]

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50)
METRICS: tuple[str, ...] = ('recall', 'ndcg', 'precision', 'map')
#: Evaluation protocols: MMRec's (default) and MMSSL's release
#: (:func:`mmssl_metrics`).
PROTOCOLS: tuple[str, ...] = ('mmrec', 'mmssl')
MMSSL_METRICS: tuple[str, ...] = ('recall', 'ndcg', 'precision', 'hit_ratio')

_METRIC_CLASSES = {
    'recall': LinkPredRecall,
    'ndcg': LinkPredNDCG,
    'precision': LinkPredPrecision,
    'map': LinkPredMAP,
}


# ---------------------------------------------------------------------------
# Ranking
# ---------------------------------------------------------------------------
#: Bytes per score of :func:`_fix_boundary_ties` besides the copy of the
#: scores: the tie mask (bool), its running count (int64) and two masks.
_TIE_BYTES_PER_SCORE = 11


def _fix_boundary_ties(scores: Tensor, vals: Tensor, idx: Tensor, k: int) -> Tensor:
    r"""Re-selects the top-``k`` of rows whose ``k``-th score ties with an
    unselected item: the lowest item ids among the tied items win.

    ``scores`` [r, n_items] holds only the affected rows, ``vals``/``idx``
    [r, k] their (sorted) top-``k``. Items strictly above the threshold are
    all selected already; only the tied slots are refilled.
    """
    threshold = vals[:, k - 1 : k]
    above = vals > threshold  # [r, k]; sorted, so a prefix of each row
    need = k - above.sum(dim=1, keepdim=True)  # tied slots to fill, >= 1
    tied = scores == threshold  # [r, n_items]
    take = tied & (tied.cumsum(dim=1) <= need)  # the `need` lowest tied ids
    tied_ids = take.nonzero()[:, 1]  # row-major: ascending ids per row
    return idx.masked_scatter(~above, tied_ids)


def _sort_inner_ties(vals: Tensor, idx: Tensor) -> Tensor:
    r"""Orders equal scores inside each top-``k`` list by ascending item id."""
    idx, perm = idx.sort(dim=1)
    vals = vals.gather(1, perm)
    perm = vals.sort(dim=1, descending=True, stable=True)[1]
    return idx.gather(1, perm)


def _masked_topk(scores: Tensor, k: int) -> Tensor:
    r"""Top-``k`` item ids of every row of already-masked ``scores``, ordered
    by ``(-score, item id)``; slots without a finite-or-``+inf`` score are
    filled with ``scores.size(1)`` (an id no item has)."""
    num_rows, num_items = scores.shape
    sentinel = num_items
    if num_rows == 0 or num_items == 0:
        return scores.new_full((num_rows, k), sentinel, dtype=torch.long)

    # One extra column tells whether a tie crosses the k-boundary.
    vals, idx = scores.topk(min(k + 1, num_items), dim=1, sorted=True)
    if vals[:, 0].isnan().any():  # topk ranks NaN first
        raise ValueError("'scores' contains NaN values")

    if num_items > k:
        cross = (vals[:, k] == vals[:, k - 1]) & (vals[:, k - 1] > -math.inf)
        vals, idx = vals[:, :k], idx[:, :k]
        rows = cross.nonzero().view(-1)
        # In groups whose working memory (a copy of their scores and the
        # masks of _fix_boundary_ties) stays below the size of `scores`.
        size = scores.element_size()
        step = max(1, num_rows * size // (size + _TIE_BYTES_PER_SCORE))
        for group in rows.split(step):
            idx[group] = _fix_boundary_ties(scores[group], vals[group], idx[group], k)

    # Only rows with a tie inside the list need reordering; few, in practice.
    rows = (vals[:, 1:] == vals[:, :-1]).any(dim=1).nonzero().view(-1)
    if rows.numel() > 0:
        idx[rows] = _sort_inner_ties(vals[rows], idx[rows])

    # Empty slots (-inf) sit at the end of a row: only those rows are touched.
    rows = (vals[:, -1] == -math.inf).nonzero().view(-1)
    if rows.numel() > 0:
        idx[rows] = idx[rows].masked_fill(vals[rows] == -math.inf, sentinel)
    if idx.size(1) < k:  # k > num_items
        pad = idx.new_full((num_rows, k - idx.size(1)), sentinel)
        idx = torch.cat([idx, pad], dim=1)
    return idx


def _check_pairs(index: Tensor, num_rows: int, num_items: int, name: str) -> None:
    if index.dim() != 2 or index.size(0) != 2:
        raise ValueError(f"'{name}' must have shape [2, n] (got {list(index.size())})")
    if index.numel() > 0:
        if int(index[0].min()) < 0 or int(index[0].max()) >= num_rows:
            raise ValueError(f"'{name}' has row ids outside [0, {num_rows})")
        if int(index[1].min()) < 0 or int(index[1].max()) >= num_items:
            raise ValueError(f"'{name}' has item ids outside [0, {num_items})")


def topk_items(scores: Tensor, k: int, exclude_index: Tensor | None = None) -> Tensor:
    r"""The ranked top-:math:`k` items of every row, with MMRec's exclusion
    and this module's deterministic tie rule.

    Items are ordered by ``(-score, item id)``; items in ``exclude_index`` and
    items scored :math:`-\infty` are never ranked. ``scores`` is not modified.

    Args:
        scores (torch.Tensor): Scores of shape :obj:`[num_rows, num_items]`.
        k (int): Length of the ranked lists (may exceed :obj:`num_items`).
        exclude_index (torch.Tensor, optional): :obj:`(row, item)` pairs of
            shape :obj:`[2, num_excluded]` that must not be ranked.

    Returns:
        torch.Tensor: Item ids of shape :obj:`[num_rows, k]`, best first;
        empty slots hold :obj:`num_items`.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"'k' must be a positive integer (got {k!r})")
    if exclude_index is not None and exclude_index.numel() > 0:
        exclude_index = exclude_index.to(scores.device)
        _check_pairs(exclude_index, *scores.shape, 'exclude_index')
        scores = scores.index_put(
            (exclude_index[0], exclude_index[1]),
            scores.new_full((), -math.inf),
        )
    return _masked_topk(scores, k)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------
def _make_collection(ks: Sequence[int]) -> LinkPredMetricCollection:
    ks = tuple(ks)
    if len(ks) == 0 or any(k <= 0 for k in ks):
        raise ValueError(f"'ks' must be a non-empty list of positive ints (got {ks})")
    return LinkPredMetricCollection(
        {f'{name}@{k}': cls(k) for k in ks for name, cls in _METRIC_CLASSES.items()}
    )


def _collect(collection: LinkPredMetricCollection, ks: Sequence[int]) -> dict[str, float]:
    out = collection.compute()
    return {f'{name}@{k}': float(out[f'{name}@{k}']) for name in METRICS for k in ks}


@torch.no_grad()
def _rank_labelled_rows(
    scores: Tensor,
    label_index: Tensor,
    exclude_index: Tensor | None,
    ks: Sequence[int],
) -> tuple[LinkPredMetricCollection, Tensor, Tensor, int]:
    r"""Checks the inputs of :func:`topk_metrics` / :func:`mmssl_metrics` and
    ranks the rows that have a label (only they count): returns the metric
    collection of :obj:`ks`, the top-:math:`\max` ``ks`` items of those rows
    (:obj:`[R, max(ks)]`), their deduplicated labels with rows renumbered
    :obj:`0..R-1`, and :math:`R`."""
    if scores.dim() != 2:
        raise ValueError(f"'scores' must be 2-dimensional (got {scores.dim()})")
    num_rows, num_items = scores.shape
    label_index = label_index.to(scores.device)
    _check_pairs(label_index, num_rows, num_items, 'label_index')
    collection = _make_collection(ks).to(scores.device)
    label_index = coalesce(label_index, num_nodes=max(num_rows, num_items))

    rows = torch.unique_consecutive(label_index[0])
    pos = torch.full((num_rows,), -1, dtype=torch.long, device=scores.device)
    pos[rows] = torch.arange(rows.numel(), device=scores.device)
    sub = scores[rows]  # a copy: masking in place is safe
    if exclude_index is not None and exclude_index.numel() > 0:
        exclude_index = exclude_index.to(scores.device)
        _check_pairs(exclude_index, num_rows, num_items, 'exclude_index')
        row = pos[exclude_index[0]]
        keep = row >= 0
        sub.index_put_((row[keep], exclude_index[1, keep]), sub.new_full((), -math.inf))
    pred = _masked_topk(sub, max(ks))
    return collection, pred, torch.stack([pos[label_index[0]], label_index[1]]), rows.numel()


def topk_metrics(
    scores: Tensor,
    label_index: Tensor,
    exclude_index: Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    r"""Recall, NDCG, Precision and MAP at every :math:`K` of ``ks``.

    Each metric is the mean over the rows that have at least one label (see
    the module docstring for the formulas and the ranking rules: ties go to
    the lower item id, excluded items are never ranked, duplicated labels
    are removed).

    Args:
        scores (torch.Tensor): Scores of shape :obj:`[num_rows, num_items]`;
            not modified.
        label_index (torch.Tensor): Relevant :obj:`(row, item)` pairs of
            shape :obj:`[2, num_labels]`.
        exclude_index (torch.Tensor, optional): :obj:`(row, item)` pairs of
            shape :obj:`[2, num_excluded]` never ranked, e.g. training items.
        ks (Sequence[int]): Cut-offs. (default: :obj:`(5, 10, 20, 50)`)

    Returns:
        dict[str, float]: Keys ``recall@K``, ``ndcg@K``, ``precision@K`` and
        ``map@K``; all zero if no row has a label.

    Example:
        >>> scores = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.3, 0.1]])
        >>> labels = torch.tensor([[0, 1], [0, 2]])  # (0, 0) and (1, 2)
        >>> out = topk_metrics(scores, labels, ks=[1, 2])
        >>> out['recall@1'], out['recall@2']  # row 1 ranks [1, 0, 2]
        (0.5, 0.5)
    """
    collection, pred, labels, _ = _rank_labelled_rows(scores, label_index, exclude_index, ks)
    collection.update(pred, labels)
    return _collect(collection, ks)


def _mmssl_sums(
    pred: Tensor, label_row: Tensor, label_col: Tensor, num_labels: Tensor, ks: Sequence[int]
) -> dict[str, Tensor]:
    r"""Per-metric sums over the rows of ranked lists :obj:`pred`
    :obj:`[n, max(ks)]` (see :func:`mmssl_metrics`)."""
    n, max_k = pred.shape
    width = int(pred.max()) + 1 if pred.numel() else 1
    width = max(width, int(label_col.max()) + 1 if label_col.numel() else 1)
    keys = (label_row * width + label_col).unique()
    rows = torch.arange(n, device=pred.device).view(-1, 1)
    hits = torch.isin(rows * width + pred, keys).to(torch.float64)  # [n, max_k]
    discount = 1.0 / torch.log2(torch.arange(2, max_k + 2, device=pred.device, dtype=torch.float64))
    ideal = cumsum(discount)  # ideal[h] = DCG of h hits at the top
    in_list = hits.sum(dim=1).long()  # hits in the top max(ks)
    out = {}
    for k in ks:
        found = hits[:, :k].sum(dim=1)
        dcg = (hits[:, :k] * discount[:k]).sum(dim=1)
        idcg = ideal[in_list.clamp(max=k)]
        out[f'recall@{k}'] = (found / num_labels).sum()
        out[f'precision@{k}'] = found.sum() / k
        out[f'hit_ratio@{k}'] = (found > 0).to(torch.float64).sum()
        out[f'ndcg@{k}'] = torch.where(idcg > 0, dcg / idcg.clamp(min=1e-12), 0.0).sum()
    return out


@torch.no_grad()
def mmssl_metrics(
    scores: Tensor,
    label_index: Tensor,
    exclude_index: Tensor | None = None,
    ks: Sequence[int] = (10, 20, 50),
) -> dict[str, float]:
    r"""Recall, NDCG, Precision and HitRatio at every :math:`K` of ``ks``,
    as MMSSL's release computes them (``utility/metrics.py``, inherited from
    NGCF/LATTICE).

    With :math:`\mathbf{r}_u \in \{0, 1\}^{K_{max}}` the hits of the
    top-:math:`K_{max}` list (:math:`K_{max} = \max` ``ks``, 50 in the
    release) and :math:`h_u = \sum_{i \le K_{max}} r_{u,i}`:

    .. math::
        \mathrm{Recall@K} = \frac{\sum_{i \le K} r_{u,i}}{|P_u|}, \quad
        \mathrm{Precision@K} = \frac{\sum_{i \le K} r_{u,i}}{K}, \quad
        \mathrm{HitRatio@K} = \mathbb{1}\Big[\sum_{i \le K} r_{u,i} > 0
        \Big]

        \mathrm{NDCG@K} = \frac{\sum_{i \le K} r_{u,i} / \log_2(i + 1)}
             {\sum_{i \le \min(h_u, K)} 1 / \log_2(i + 1)}
        \quad (0 \text{ if } h_u = 0),

    averaged over the rows with a label. The IDCG counts the hits *found in
    the top* :math:`K_{max}`, not :math:`\min(|P_u|, K)` as MMRec (and
    :func:`topk_metrics`): a user with more held-out items than hits gets a
    higher NDCG than under the standard definition. Ranking (candidates, tie
    rule, exclusion) is that of :func:`topk_metrics`.

    Args:
        scores (torch.Tensor): Scores :obj:`[num_rows, num_items]`.
        label_index (torch.Tensor): Relevant :obj:`(row, item)` pairs
            :obj:`[2, num_labels]`.
        exclude_index (torch.Tensor, optional): :obj:`(row, item)` pairs never
            ranked, e.g. training items.
        ks (Sequence[int]): Cut-offs. (default: :obj:`(10, 20, 50)`)

    Returns:
        dict[str, float]: Keys ``recall@K``, ``ndcg@K``, ``precision@K`` and
        ``hit_ratio@K``.
    """
    _, pred, labels, num_ranked = _rank_labelled_rows(scores, label_index, exclude_index, ks)
    label_row = labels[0]
    num_labels = torch.bincount(label_row, minlength=num_ranked).to(torch.float64)
    sums = _mmssl_sums(pred, label_row, labels[1], num_labels, ks)
    count = max(num_ranked, 1)
    return {f'{name}@{k}': float(sums[f'{name}@{k}']) / count for name in MMSSL_METRICS for k in ks}


# ---------------------------------------------------------------------------
# Sums and counts
# ---------------------------------------------------------------------------
@dataclass
class MetricSums:
    r"""The metrics of a set of users before the mean over them: per metric,
    the sum of the users' values, and the number of users. Sums over disjoint
    sets of users add up (:obj:`a + b`, :meth:`all_reduce`), so that shards of
    the users evaluated apart (e.g. one per process) give the metrics of all
    of them: :meth:`means` of the total, not an average of the shards' means.

    Args:
        sums (dict[str, float]): ``{'recall@20': sum over the users, ...}``.
        count (int): The number of users (each has at least one label).
        protocol (str): ``'mmrec'`` or ``'mmssl'`` (:class:`Evaluator`): how
            :meth:`means` divides.
    """

    sums: dict[str, float]
    count: int
    protocol: str = 'mmrec'

    def __add__(self, other: MetricSums) -> MetricSums:
        if list(self.sums) != list(other.sums) or self.protocol != other.protocol:
            raise ValueError('MetricSums of other metrics or protocols cannot be added')
        sums = {key: value + other.sums[key] for key, value in self.sums.items()}
        return MetricSums(sums, self.count + other.count, self.protocol)

    def means(self) -> dict[str, float]:
        r"""The mean of every metric over the users. For ``'mmrec'`` the
        arithmetic of :class:`torch_geometric.metrics.LinkPredMetric`'s
        :meth:`compute` (the float32 sum divided by the count, 0 without
        users); for ``'mmssl'`` the float64 sum divided by the count (at least
        1)."""
        if self.protocol == 'mmssl':
            return {key: value / max(self.count, 1) for key, value in self.sums.items()}
        if self.count == 0:
            return dict.fromkeys(self.sums, 0.0)
        count = torch.tensor(self.count)
        return {
            key: float(torch.tensor(value, dtype=torch.float32) / count)
            for key, value in self.sums.items()
        }

    def all_reduce(self, group: Any = None) -> MetricSums:
        r"""The sums and counts of every process of :obj:`group`
        (:mod:`torch.distributed`, one float64 all-reduce)."""
        import torch.distributed as dist

        from pyg_mentor.distributed import collective_device

        values = torch.tensor(
            [*self.sums.values(), float(self.count)],
            dtype=torch.float64,
            device=collective_device(group),
        )
        dist.all_reduce(values, group=group)
        total = values.tolist()
        return MetricSums(dict(zip(self.sums, total[:-1])), int(total[-1]), self.protocol)


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------
#: The share of the available memory one evaluation chunk may use
#: (:obj:`batch_size='auto'`).
EVAL_MEMORY_FRACTION: float = 0.25
#: The users of one evaluation chunk at most with :obj:`batch_size='auto'`
#: (MMRec's 4096): larger chunks were not faster on the CPU (Baby-sized data).
AUTO_MAX_ROWS: int = 4096
#: Bytes of evaluator memory per score of a chunk, in units of the score's
#: size: the scores themselves and, at most as large, the re-selection of the
#: rows whose top-k ends in a tie (:func:`_masked_topk`).
SCORE_COPIES: int = 2


def available_memory(device: str | torch.device = 'cpu') -> int:
    r"""The memory an evaluation on :obj:`device` may count on, in bytes: on
    a CUDA device its free memory plus what PyTorch's allocator holds unused;
    on the CPU ``MemAvailable`` (Linux; the physical memory elsewhere) shared
    by the processes this machine runs for one training (``LOCAL_WORLD_SIZE``
    of ``--nproc`` / torchrun)."""
    device = torch.device(device)
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + unused)
    return _host_available() // max(1, int(os.environ.get('LOCAL_WORLD_SIZE', '1')))


def _host_available() -> int:
    r"""``MemAvailable`` of ``/proc/meminfo`` in bytes; the physical memory
    where there is none."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def auto_batch_size(
    num_items: int,
    element_size: int = 4,
    memory_budget: int | None = None,
    device: str | torch.device = 'cpu',
    max_rows: int = AUTO_MAX_ROWS,
) -> int:
    r"""The users an evaluation chunk may hold: as many as fit in the budget
    with :obj:`SCORE_COPIES` scores of :obj:`element_size` bytes per item,

    .. math::
        \min\left(\text{max\_rows},\ \max\left(1, \left\lfloor
        \frac{\text{budget}}{I \cdot \text{SCORE\_COPIES} \cdot
        \text{element\_size}} \right\rfloor\right)\right),

    where the budget is :obj:`memory_budget`, or
    :obj:`EVAL_MEMORY_FRACTION` of :func:`available_memory` on :obj:`device`.

    Args:
        num_items (int): Items scored per user :math:`I`.
        element_size (int): Bytes per score (4 for float32).
        memory_budget (int, optional): Bytes one chunk may use.
        device (str or torch.device): Where the scores live.
        max_rows (int): The largest chunk. (default: :obj:`AUTO_MAX_ROWS`)
    """
    if memory_budget is None:
        memory_budget = int(EVAL_MEMORY_FRACTION * available_memory(device))
    per_user = max(1, num_items) * SCORE_COPIES * element_size
    return max(1, min(max_rows, memory_budget // per_user))


# ---------------------------------------------------------------------------
# Full-ranking evaluator
# ---------------------------------------------------------------------------
class Evaluator:
    r"""Full-ranking evaluation of one split over all of its users, as MMRec.

    The evaluated users are the distinct users of the split's label pairs
    ``data['user', 'rates', 'item'].<split>_label_index``. Each ranks all
    ``data['item'].num_nodes`` items minus their **training** items
    (``data['user', 'rates', 'item'].edge_index``); items of the other
    held-out split are *not* masked (at test time valid items are candidates).
    Labels and exclusions are precomputed once, as CSR (``ptr``/``col``) over
    the evaluated users, so a batch's mask is one ``index_put_``. Results
    equal one :func:`topk_metrics` call over all users at once (metrics are
    accumulated per user, not averaged per batch).

    **Memory.** The users are scored in chunks, and a chunk's scores are
    masked and reduced to the top-:math:`\max K` lists before the next chunk
    is scored: the :math:`U \times I` score matrix never exists. With
    :obj:`batch_size='auto'` a chunk holds as many users as fit in
    :obj:`EVAL_MEMORY_FRACTION` of the available memory
    (:func:`auto_batch_size`: :obj:`SCORE_COPIES` scores per user and item,
    the scores and the tie re-selection), at most :obj:`AUTO_MAX_ROWS`, decided
    at every evaluation on the device and dtype of the scores (the first user
    is scored alone to learn them). Besides a chunk, the evaluator holds the
    ranked lists of :obj:`metric_rows` users (:math:`8 \max K` bytes each).

    **Shards.** :meth:`metric_sums` evaluates a shard of the users and returns
    the metrics' sums and user count (:class:`MetricSums`); with a
    :obj:`process_group`, :meth:`evaluate` has every process rank its shard
    and all-reduces the sums and counts, so the metrics are those of all
    users, exactly as one process computes them (up to the order of the
    float32 additions).

    Args:
        data (HeteroData): The user-item graph (see :mod:`pyg_mentor.typing`).
        split (str): ``'valid'`` or ``'test'``.
        ks (Sequence[int]): Cut-offs. (default: :obj:`(5, 10, 20, 50)`)
        batch_size (int or str): Users scored at once, or ``'auto'`` (from
            the available memory, see above). Results do not depend on it.
            (default: :obj:`'auto'`)
        mask_train (bool): Exclude each user's training items.
            (default: :obj:`True`)
        protocol (str): ``'mmrec'`` (:func:`topk_metrics`: Recall, NDCG,
            Precision, MAP) or ``'mmssl'`` (:func:`mmssl_metrics`: MMSSL's
            release, Recall, NDCG with the in-list IDCG, Precision,
            HitRatio). Both rank all items of every user of the split (the
            release samples no test users either). (default: :obj:`'mmrec'`)
        memory_budget (int, optional): With :obj:`batch_size='auto'`, the
            bytes a chunk may use instead of :obj:`EVAL_MEMORY_FRACTION` of
            the available memory.

    Example:
        >>> evaluator = Evaluator(data, 'valid')
        >>> evaluator.evaluate(lambda users: model.scores(users))
        {'recall@5': 0.0312, ..., 'map@50': 0.0154}
    """

    #: Ranked lists buffered before a metric update (memory: 8 * max(ks) B
    #: per row); results do not depend on it.
    metric_rows: int = 1 << 16

    def __init__(
        self,
        data: HeteroData,
        split: str,
        *,
        ks: Sequence[int] = DEFAULT_KS,
        batch_size: int | Literal['auto'] = 'auto',
        mask_train: bool = True,
        protocol: str = 'mmrec',
        memory_budget: int | None = None,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"'protocol' must be one of {PROTOCOLS} (got {protocol!r})")
        self.protocol = protocol
        if batch_size != 'auto' and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0
        ):
            raise ValueError(
                f"'batch_size' must be a positive integer or 'auto' (got {batch_size!r})"
            )
        _make_collection(ks)  # validates `ks`
        self.split = split
        self.ks = tuple(ks)
        self.batch_size = batch_size
        self.memory_budget = memory_budget
        self.mask_train = mask_train
        self.num_users = int(data[USER].num_nodes)
        self.num_items = int(data[ITEM].num_nodes)
        store = data[RATES]
        label_index = store[label_key(split)]
        _check_pairs(label_index, self.num_users, self.num_items, label_key(split))
        label_index = coalesce(label_index, num_nodes=max(self.num_users, self.num_items))

        #: The evaluated users, ascending: shape [num_eval_users].
        self.users = torch.unique_consecutive(label_index[0])
        pos = torch.full((self.num_users,), -1, dtype=torch.long)
        pos = pos.to(self.users.device)
        pos[self.users] = torch.arange(self.users.numel(), device=self.users.device)
        self._label_row = pos[label_index[0]]
        self._label_col = label_index[1]
        self._label_ptr = self._ptr(self._label_row)

        train_index = store.edge_index if mask_train else label_index[:, :0]
        _check_pairs(train_index, self.num_users, self.num_items, 'edge_index')
        row = pos[train_index[0]]
        keep = row >= 0
        exclude = torch.stack([row[keep], train_index[1, keep]])
        exclude = coalesce(exclude, num_nodes=max(self.users.numel(), self.num_items))
        self._exclude_row, self._exclude_col = exclude[0], exclude[1]
        self._exclude_ptr = self._ptr(self._exclude_row)

    def _ptr(self, row: Tensor) -> Tensor:
        count = torch.bincount(row, minlength=self.users.numel())
        return cumsum(count)  # [num_eval_users + 1], starts at 0

    @property
    def num_eval_users(self) -> int:
        r"""The number of evaluated users."""
        return self.users.numel()

    def _to(self, device: torch.device) -> None:
        for name in ('_label_row', '_label_col', '_exclude_row', '_exclude_col'):
            setattr(self, name, getattr(self, name).to(device))

    def shard_range(self, shard: int = 0, num_shards: int = 1) -> tuple[int, int]:
        r"""The evaluated users (positions in :attr:`users`) of shard
        :obj:`shard` of :obj:`num_shards`: contiguous ranges, in order,
        whose sizes differ by at most one."""
        if not 0 <= shard < num_shards:
            raise ValueError(f'shard must be in [0, {num_shards}), got {shard}')
        n = self.num_eval_users
        return shard * n // num_shards, (shard + 1) * n // num_shards

    def chunk_size(self, scores: Tensor) -> int:
        r"""The users scored at once for scores like :obj:`scores` (their
        device and dtype): :obj:`batch_size`, or with ``'auto'``
        :func:`auto_batch_size`."""
        if self.batch_size != 'auto':
            return int(self.batch_size)
        return auto_batch_size(
            self.num_items, scores.element_size(), self.memory_budget, scores.device
        )

    @torch.no_grad()
    def evaluate(
        self, score_fn: Callable[[Tensor], Tensor], *, process_group: Any = None
    ) -> dict[str, float]:
        r"""Ranks all items for every user of the split and returns the metrics.

        Args:
            score_fn (Callable): Maps user ids of shape :obj:`[batch]` to scores
                of shape :obj:`[batch, num_items]`. The evaluator masks the
                returned tensor **in place** (unless it is a view, which is
                cloned first), so return a fresh tensor, e.g. a matmul.
            process_group (optional): A :mod:`torch.distributed` process
                group: every process ranks its shard of the users
                (:meth:`shard_range`) and the metrics' sums and counts are
                all-reduced (:class:`MetricSums`); every process gets the
                metrics of all users. Every process must call it.

        Returns:
            dict[str, float]: See :func:`topk_metrics`.
        """
        from pyg_mentor.distributed import get_rank, get_world_size

        world = get_world_size(process_group)
        if world <= 1:
            return self.metric_sums(score_fn).means()
        sums = self.metric_sums(score_fn, get_rank(process_group), world)
        return sums.all_reduce(process_group).means()

    @torch.no_grad()
    def metric_sums(
        self, score_fn: Callable[[Tensor], Tensor], shard: int = 0, num_shards: int = 1
    ) -> MetricSums:
        r"""The metrics' sums and user count over shard :obj:`shard` of
        :obj:`num_shards` of the users (:meth:`shard_range`); the sums of the
        shards add up to those of all users.

        Args:
            score_fn (Callable): As in :meth:`evaluate`.
            shard (int): Which shard. (default: :obj:`0`)
            num_shards (int): Into how many shards the users are cut.
                (default: :obj:`1`, all users)
        """
        collection = _make_collection(self.ks)
        sums: dict[str, float] = {}  # protocol 'mmssl'
        max_k = max(self.ks)
        # CSR offsets stay on the CPU: slicing needs Python ints.
        label_ptr, exclude_ptr = self._label_ptr.tolist(), self._exclude_ptr.tolist()
        # Ranked lists are buffered and scored in few large metric updates:
        # many small ops are slow on a busy CPU (thread synchronisation).
        preds: list[Tensor] = []
        lo, hi = self.shard_range(shard, num_shards)
        first = lo  # the first user of the buffered lists
        # 'auto': the first user alone tells the device and dtype of the scores.
        rows = None if self.batch_size == 'auto' else int(self.batch_size)
        start = lo
        while start < hi:
            end = min(start + (rows or 1), hi)
            scores = score_fn(self.users[start:end])
            if scores.shape != (end - start, self.num_items):
                raise ValueError(
                    f"'score_fn' returned shape {list(scores.shape)} "
                    f'(expected {[end - start, self.num_items]})'
                )
            if rows is None:
                rows = self.chunk_size(scores)
            if scores._base is not None:
                scores = scores.clone()
            if self._label_row.device != scores.device:
                self._to(scores.device)
                collection = collection.to(scores.device)

            a, b = exclude_ptr[start], exclude_ptr[end]
            scores.index_put_(
                (self._exclude_row[a:b] - start, self._exclude_col[a:b]),
                scores.new_full((), -math.inf),
            )
            preds.append(_masked_topk(scores, max_k))
            del scores

            if end - first >= self.metric_rows or end == hi:
                a, b = label_ptr[first], label_ptr[end]
                label_row = self._label_row[a:b] - first
                if self.protocol == 'mmssl':
                    num_labels = torch.tensor(
                        label_ptr[first + 1 : end + 1], dtype=torch.float64
                    ) - torch.tensor(label_ptr[first:end], dtype=torch.float64)
                    batch_sums = _mmssl_sums(
                        torch.cat(preds),
                        label_row,
                        self._label_col[a:b],
                        num_labels.to(label_row.device),
                        self.ks,
                    )
                    for key, value in batch_sums.items():
                        sums[key] = sums.get(key, 0.0) + float(value)
                else:
                    collection.update(
                        torch.cat(preds), torch.stack([label_row, self._label_col[a:b]])
                    )
                preds, first = [], end
            start = end
        if self.protocol == 'mmssl':
            keys = [f'{name}@{k}' for name in MMSSL_METRICS for k in self.ks]
            return MetricSums({key: sums.get(key, 0.0) for key in keys}, hi - lo, 'mmssl')
        keys = [f'{name}@{k}' for name in METRICS for k in self.ks]
        total = int(collection[keys[0]].total)
        return MetricSums({key: float(collection[key].accum) for key in keys}, total)

    def evaluate_embeddings(self, user_emb: Tensor, item_emb: Tensor) -> dict[str, float]:
        r"""Evaluates a dot-product model, :math:`s_{u,i} = e_u^\top e_i`.

        Args:
            user_emb (torch.Tensor): Shape :obj:`[num_users, d]`.
            item_emb (torch.Tensor): Shape :obj:`[num_items, d]`.
        """
        item_t = item_emb.t()

        def score_fn(users: Tensor) -> Tensor:
            return user_emb[users.to(user_emb.device)] @ item_t

        return self.evaluate(score_fn)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(split={self.split!r}, '
            f'num_eval_users={self.num_eval_users}, ks={self.ks}, '
            f'batch_size={self.batch_size!r}, mask_train={self.mask_train}, '
            f'protocol={self.protocol!r})'
        )


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def round_metrics(metrics: Mapping[str, float], ndigits: int = 4) -> dict[str, float]:
    r"""Rounds every value, as MMRec does before early stopping and display."""
    return {key: round(float(value), ndigits) for key, value in metrics.items()}


def format_metrics_table(
    results: Mapping[str, Mapping[str, float]],
    ks: Sequence[int] = (10, 20),
    metrics: Sequence[str] = ('recall', 'ndcg'),
    ndigits: int = 4,
) -> str:
    r"""A markdown table: one row per split, one column per ``metric@K``.

    Args:
        results (Mapping): ``{split_name: {'recall@20': value, ...}}``, e.g.
            ``{'valid': ..., 'test': ...}``.
        ks (Sequence[int]): Cut-offs shown. (default: :obj:`(10, 20)`, the
            ones MENTOR reports)
        metrics (Sequence[str]): Metric names shown.
            (default: :obj:`('recall', 'ndcg')`)
        ndigits (int): Decimals. (default: :obj:`4`)

    Returns:
        str: The table; missing values are shown as ``-``.
    """
    columns = [f'{name}@{k}' for name in metrics for k in ks]
    lines = [
        '| split | ' + ' | '.join(columns) + ' |',
        '|---|' + '---:|' * len(columns),
    ]
    for split, values in results.items():
        cells = [f'{values[c]:.{ndigits}f}' if c in values else '-' for c in columns]
        lines.append(f'| {split} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
