r"""Synthetic MMRec-shaped data with a *planted* low-rank structure.

Real multimodal benchmarks cannot tell a broken model from a weak one, and the real
image/text features are not available offline. This generator plants a known
structure, so tests and examples can check that a model *learns* (beats popularity,
approaches the planted oracle) and that it *uses the features*:

1. **Latent factors.** Users :math:`\mathbf{U} \in \mathbb{R}^{U \times r}` and items
   :math:`\mathbf{V} \in \mathbb{R}^{I \times r}` with i.i.d.
   :math:`\mathcal{N}(0, r^{-1/2})` entries, so that the true affinity
   :math:`\mathbf{u}_u^\top \mathbf{v}_i` has unit variance for any rank :math:`r`.
2. **Item popularity.** A Zipf-like prior :math:`\log p_i = -\tfrac{1}{2}\log
   \mathrm{rank}_i` over a random order of the items (centred), scaled by
   :obj:`popularity`. With the defaults and Baby's shape the item-degree
   distribution resembles Baby's (long tail; the top 1% of items hold ~9% of the
   interactions, Baby 12%; the most popular item ~700 rows, Baby 780).
3. **How many interactions per user.** :math:`n_u = \texttt{min\_interactions} +
   \lfloor X_u \rfloor`, :math:`X_u` log-normal with :math:`\sigma = 1.2` (fitted to
   Baby: ~30% of users at the 5-core minimum, a heavy tail), capped at
   :math:`I - 1`, then nudged by :math:`\pm 1` on random users so that the total is
   exactly :obj:`round(num_users * avg_interactions)`.
4. **Which items.** Each user draws :math:`n_u` distinct items, without
   replacement, from

   .. math::
       P(i \mid u) \propto \exp\left(\mathbf{u}_u^\top \mathbf{v}_i / T
       + \texttt{popularity} \cdot \log p_i\right),

   with Gumbel-top-:math:`k` sampling (vectorised over chunks of users). Items
   nobody drew are then swapped in (for the user who likes them most, replacing
   that user's least-liked item that others also have), so that every item has an
   interaction, as in a 5-core data set and as the MMRec file format requires
   (:math:`I` = max item id + 1).
5. **Split.** Per user exactly as MMRec's ``1splitting.ipynb``: shuffle the user's
   rows; :math:`n < 10` gives 1 valid and 1 test row, otherwise
   :math:`vt = \lfloor 0.2 n \rfloor`, valid :math:`= \lfloor vt/2 \rfloor`,
   test :math:`= vt -` valid; the rest is train.
6. **Features.** Per modality :math:`m` with dimension :math:`d_m`:
   :math:`\mathbf{X}_m = \mathbf{V}\mathbf{A}_m + \sigma_m \boldsymbol{\epsilon}`,
   :math:`\mathbf{A}_m \in \mathbb{R}^{r \times d_m}` random with
   :math:`\mathcal{N}(0, r^{-1/2})` entries (so every coordinate of
   :math:`\mathbf{V}\mathbf{A}_m` has unit variance), :math:`\boldsymbol{\epsilon}`
   standard normal and :math:`\sigma_m` = :obj:`feature_noise`. The features carry
   the item factors (and nothing of the popularity prior), so a model that reads
   them can recover :math:`\mathbf{V}` for cold or rare items.

Knobs: :obj:`temperature` :math:`T` sets how strongly the factors decide (smaller =
more predictable users; at the default 0.5 a per-user softmax over the affinity has
a logit standard deviation of 2), :obj:`popularity` how much the popularity prior
competes with the factors (0 = none), :obj:`feature_noise` how informative each
modality is (a mapping gives one value per modality, e.g. an uninformative
modality with a large value), :obj:`rank` the factors' dimension,
:obj:`avg_interactions` / :obj:`min_interactions` the density.

What it gives: with the defaults (2,000 users, 800 items) ranking by the planted
:math:`\mathbf{U}\mathbf{V}^\top` reaches Recall@20 ~0.45 on the test split,
popularity ~0.10 and random ~0.02; at Baby's shape
(:obj:`make_planted_like('baby')`) 0.20, 0.04 and 0.003. A linear map of
:math:`\mathbf{V}` explains ~80% of each modality's feature variance at the
default noise. Time: well under a second for the defaults, ~3-4 s at Baby's shape
and ~15-20 s at Sports'/Clothing's on two CPU cores (the scores are
:math:`O(U \cdot I)`, computed in chunks).

The result has exactly the layout of :class:`~pyg_mentor.datasets.mmrec.MMRecDataset`
(see :mod:`pyg_mentor.typing`); :func:`write_mmrec` writes it as MMRec files, so
the real loading path can be exercised on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_mentor.datasets.mmrec import (
    FEATURE_SUFFIX,
    build_hetero_data,
    find_feature_files,
)
from pyg_mentor.typing import ITEM, RATES, USER, feature_key, label_key
from pyg_mentor.typing import modalities as data_modalities

#: (users, items, interactions) of the MMRec data sets used by MENTOR.
SHAPES: dict[str, tuple[int, int, int]] = {
    'baby': (19445, 7050, 160792),
    'sports': (35598, 18357, 296337),
    'clothing': (39387, 23033, 278677),
}

DEFAULT_MODALITIES: dict[str, int] = {'image': 64, 'text': 32}

# Shape of the per-user count distribution (log-normal sigma), fitted to Baby.
_COUNT_SIGMA = 1.2
# Scores computed per chunk of users in the Gumbel-top-k step.
_CHUNK_ELEMENTS = 1 << 22


def _interaction_counts(
    rng: np.random.Generator, num_users: int, total: int, low: int, high: int
) -> np.ndarray:
    r"""Heavy-tailed per-user counts in :obj:`[low, high]` that sum to
    :obj:`total` exactly."""
    extra_mean = total / num_users - low
    counts = np.full(num_users, low, dtype=np.int64)
    if extra_mean > 0:
        # E[floor(X)] ~ E[X] - 1/2 for a spread-out X; the rest is fixed below.
        mu = math.log(extra_mean + 0.5) - _COUNT_SIGMA**2 / 2
        extra = np.floor(rng.lognormal(mu, _COUNT_SIGMA, num_users))
        counts += np.minimum(extra, high - low).astype(np.int64)
    diff = total - int(counts.sum())
    while diff != 0:
        step = 1 if diff > 0 else -1
        free = np.flatnonzero(counts < high) if step > 0 else np.flatnonzero(counts > low)
        pick = rng.choice(free, size=min(abs(diff), free.size), replace=False)
        counts[pick] += step
        diff -= step * pick.size
    return counts


def _sample_items(
    rng: np.random.Generator,
    U: np.ndarray,
    V: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    counts: np.ndarray,
) -> np.ndarray:
    r"""For each user :obj:`u`, :obj:`counts[u]` distinct items drawn without
    replacement with probabilities :obj:`softmax(U[u] @ V.T / T + bias)`
    (Gumbel-top-k). Returns the items, grouped by user in user order."""
    num_users, num_items = U.shape[0], V.shape[0]
    U = (U / temperature).astype(np.float32)
    V, bias = V.astype(np.float32), bias.astype(np.float32)
    tiny = np.finfo(np.float32).tiny
    step = max(1, _CHUNK_ELEMENTS // num_items)
    out = []
    for start in range(0, num_users, step):
        k = counts[start : start + step]
        kmax = int(k.max())
        logits = U[start : start + step] @ V.T
        logits += bias
        # Gumbel-top-k: the k largest of logits + Gumbel noise are a draw without
        # replacement. With G = -log(E), E ~ Exp(1): the k smallest log(E) - logits.
        key = rng.standard_exponential(logits.shape, dtype=np.float32)
        np.log(np.maximum(key, tiny, out=key), out=key)
        key -= logits
        top = np.argpartition(key, kmax - 1, axis=1)[:, :kmax]
        order = np.argsort(np.take_along_axis(key, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        out.append(top[np.arange(kmax) < k[:, None]])  # row-major: user order
    return np.concatenate(out)


def _cover_all_items(
    rng: np.random.Generator,
    U: np.ndarray,
    V: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    rowptr: np.ndarray,
    item: np.ndarray,
) -> None:
    r"""Swaps every item that nobody drew into the list of the user with the
    highest affinity for it who holds an item also held by someone else; that
    item (the one the user likes least) leaves the list. In place; keeps every
    user's count and the total."""
    degree = np.bincount(item, minlength=V.shape[0])
    missing = np.flatnonzero(degree == 0)
    rng.shuffle(missing)
    for j in missing:
        for u in np.argsort(-(U @ V[j])):
            own = item[rowptr[u] : rowptr[u + 1]]
            shared = np.flatnonzero(degree[own] >= 2)
            if shared.size == 0:
                continue
            score = V[own[shared]] @ U[u] / temperature + bias[own[shared]]
            pos = rowptr[u] + shared[np.argmin(score)]
            degree[item[pos]] -= 1
            item[pos] = j
            degree[j] = 1
            break


def _mmrec_split(
    rng: np.random.Generator, user: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    r"""MMRec's per-user random split of rows grouped by user.

    Returns a permutation of the rows (each user's rows shuffled, users kept in
    order) and the x_label (0/1/2) of each permuted row.
    """
    perm = np.lexsort((rng.random(user.size), user))
    rowptr = np.concatenate([[0], np.cumsum(counts)])
    n = counts[user]
    pos = np.arange(user.size) - rowptr[user]  # position in the shuffled order
    vt = np.where(n < 10, 2, (0.2 * n).astype(np.int64))
    num_valid = np.where(n < 10, 1, vt // 2)
    num_train = n - vt
    label = (pos >= num_train).astype(np.int64) + (pos >= num_train + num_valid)
    return perm, label


@overload
def make_planted(
    num_users: int = ...,
    num_items: int = ...,
    avg_interactions: float = ...,
    *,
    modalities: Mapping[str, int] | None = ...,
    rank: int = ...,
    feature_noise: float | Mapping[str, float] = ...,
    popularity: float = ...,
    temperature: float = ...,
    min_interactions: int = ...,
    seed: int = ...,
    return_factors: Literal[False] = ...,
) -> HeteroData: ...


@overload
def make_planted(
    num_users: int = ...,
    num_items: int = ...,
    avg_interactions: float = ...,
    *,
    modalities: Mapping[str, int] | None = ...,
    rank: int = ...,
    feature_noise: float | Mapping[str, float] = ...,
    popularity: float = ...,
    temperature: float = ...,
    min_interactions: int = ...,
    seed: int = ...,
    return_factors: Literal[True],
) -> tuple[HeteroData, Tensor, Tensor]: ...


def make_planted(
    num_users: int = 2000,
    num_items: int = 800,
    avg_interactions: float = 8.0,
    *,
    modalities: Mapping[str, int] | None = None,
    rank: int = 16,
    feature_noise: float | Mapping[str, float] = 0.5,
    popularity: float = 1.0,
    temperature: float = 0.5,
    min_interactions: int = 5,
    seed: int = 0,
    return_factors: bool = False,
) -> HeteroData | tuple[HeteroData, Tensor, Tensor]:
    r"""Generates MMRec-shaped interactions and item features with a planted
    low-rank structure (see the module documentation for the model).

    Args:
        num_users: Number of users :math:`U`.
        num_items: Number of items :math:`I`; every item gets an interaction.
        avg_interactions: Mean interactions per user; the total is exactly
            :obj:`round(num_users * avg_interactions)`.
        modalities: :obj:`{name: dimension}` of the item features
            (default: :obj:`{'image': 64, 'text': 32}`; :obj:`{}` for none).
        rank: Dimension :math:`r` of the latent factors.
        feature_noise: Noise standard deviation of the features, relative to the
            unit-variance signal; one value, or one per modality.
        popularity: Weight of the item-popularity prior (0 = none).
        temperature: Softmax temperature :math:`T` of the factor affinity.
        min_interactions: Fewest interactions per user (at least 3, so that
            MMRec's split leaves a train row).
        seed: Seed of the generator; equal arguments give equal data.
        return_factors: Also return the planted factors.

    Returns:
        :class:`~torch_geometric.data.HeteroData` in the layout of
        :mod:`pyg_mentor.typing`; with :obj:`return_factors=True` the tuple
        :obj:`(data, user_factors [U, r], item_factors [I, r])` (float32).
    """
    dims = dict(DEFAULT_MODALITIES if modalities is None else modalities)
    noise = (
        dict(feature_noise)
        if isinstance(feature_noise, Mapping)
        else {m: float(feature_noise) for m in dims}
    )
    total = round(num_users * avg_interactions)
    cap = num_items - 1
    if num_users < 1 or num_items < 2:
        raise ValueError(f'Need num_users >= 1 and num_items >= 2, got {num_users} and {num_items}')
    if not 3 <= min_interactions <= cap:
        raise ValueError(
            f'min_interactions must lie in [3, num_items - 1 = {cap}], got {min_interactions}'
        )
    if not num_users * min_interactions <= total <= num_users * cap:
        raise ValueError(
            f'avg_interactions={avg_interactions} must lie in '
            f'[min_interactions={min_interactions}, num_items - 1 = {cap}]'
        )
    if total < num_items:
        raise ValueError(
            f'{total} interactions cannot cover {num_items} items; '
            f'raise avg_interactions or lower num_items'
        )
    if rank < 1 or temperature <= 0:
        raise ValueError(f'Need rank >= 1 and temperature > 0, got {rank} and {temperature}')
    for m, d in dims.items():
        if not (isinstance(m, str) and m.isidentifier()) or d < 1:
            raise ValueError(
                f"Modality '{m}' needs an identifier name and a dimension >= 1, got {d}"
            )
    if set(noise) != set(dims) or any(s < 0 for s in noise.values()):
        raise ValueError(
            f'feature_noise needs a value >= 0 for each modality {sorted(dims)}, got {noise}'
        )

    rng = np.random.default_rng(seed)
    scale = rank**-0.25  # entries N(0, r^-1/2): u.v and V @ A have unit variance
    U = rng.standard_normal((num_users, rank)) * scale
    V = rng.standard_normal((num_items, rank)) * scale
    rank_of_item = rng.permutation(num_items) + 1
    log_pop = -0.5 * np.log(rank_of_item)
    bias = popularity * (log_pop - log_pop.mean())

    counts = _interaction_counts(rng, num_users, total, min_interactions, cap)
    item = _sample_items(rng, U, V, bias, temperature, counts)
    rowptr = np.concatenate([[0], np.cumsum(counts)])
    _cover_all_items(rng, U, V, bias, temperature, rowptr, item)
    user = np.repeat(np.arange(num_users), counts)
    perm, label = _mmrec_split(rng, user, counts)
    user, item = user[perm], item[perm]

    features = {}
    for m, d in dims.items():
        A = rng.standard_normal((rank, d)) * scale
        x = V @ A + noise[m] * rng.standard_normal((num_items, d))
        features[m] = torch.from_numpy(x.astype(np.float32))

    def edges(value: int) -> Tensor:
        mask = label == value
        return torch.from_numpy(np.stack([user[mask], item[mask]]))

    data = build_hetero_data(num_users, num_items, edges(0), edges(1), edges(2), features)
    if return_factors:
        return (
            data,
            torch.from_numpy(U.astype(np.float32)),
            torch.from_numpy(V.astype(np.float32)),
        )
    return data


def make_planted_like(
    name: str,
    scale: float = 1.0,
    **kwargs,
) -> HeteroData | tuple[HeteroData, Tensor, Tensor]:
    r"""A planted data set with the shape of a real one (see :obj:`SHAPES`).

    Args:
        name: :obj:`'baby'`, :obj:`'sports'` or :obj:`'clothing'`.
        scale: Multiplies the numbers of users, items and interactions (each
            rounded), e.g. :obj:`0.1` for a tenth of the size.
        **kwargs: Passed on to :func:`make_planted` (not the three sizes).
    """
    if name.lower() not in SHAPES:
        raise ValueError(f"Unknown data set '{name}' (expected one of {sorted(SHAPES)})")
    if scale <= 0:
        raise ValueError(f'scale must be > 0, got {scale}')
    num_users, num_items, num_interactions = SHAPES[name.lower()]
    num_users = max(1, round(num_users * scale))
    num_items = max(2, round(num_items * scale))
    num_interactions = round(num_interactions * scale)
    return make_planted(num_users, num_items, num_interactions / num_users, **kwargs)


def write_mmrec(data: HeteroData, root: str | Path, name: str, *, overwrite: bool = False) -> Path:
    r"""Writes :obj:`data` as an MMRec data set ``<root>/<name>``.

    Writes ``<name>.inter`` (tab-separated, header ``userID itemID x_label``, rows
    grouped by user in id order, then train, valid, test; each split in its order
    in :obj:`data`) and one ``<modality>_feat.npy`` (float32) per
    :obj:`data['item'].x_<modality>`. Reading the folder with
    :class:`~pyg_mentor.datasets.mmrec.MMRecDataset` gives :obj:`data` back
    exactly when :obj:`data`'s pairs are already grouped by user (as
    :func:`make_planted` and MMRec files give them), hold no duplicates and no
    valid/test pair of a user without train pairs.

    Args:
        data: In the layout of :mod:`pyg_mentor.typing`.
        root: Folder for the data set folder.
        name: The data set name.
        overwrite: Replace an existing data set of that name (its ``.inter``,
            ``.inter.gz`` and every ``*_feat.npy``); otherwise such files raise.

    Returns:
        The data set folder ``<root>/<name>``.

    Raises:
        ValueError: If the last user or item has no pair, which the format
            cannot express (it derives the counts from the largest ids).
        FileExistsError: If the data set exists and :obj:`overwrite` is false.
    """
    store = data[RATES]
    parts = [store.edge_index, store[label_key('valid')], store[label_key('test')]]
    pairs = torch.cat(parts, dim=1).cpu().numpy()
    label = np.repeat(np.arange(3), [p.size(1) for p in parts])
    for node_type, ids in ((USER, pairs[0]), (ITEM, pairs[1])):
        num_nodes = data[node_type].num_nodes
        largest = int(ids.max()) if ids.size > 0 else -1
        if largest >= num_nodes:
            raise ValueError(f'{node_type} id {largest} is out of range (num_nodes={num_nodes})')
        if largest + 1 < num_nodes:
            raise ValueError(
                f'The MMRec format takes the number of {node_type}s from the largest '
                f'id; {node_type} {num_nodes - 1} has no pair (num_nodes={num_nodes})'
            )

    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    existing = [
        p for p in (folder / f'{name}.inter', folder / f'{name}.inter.gz') if p.exists()
    ] + list(find_feature_files(root, name).values())
    if existing and not overwrite:
        raise FileExistsError(
            f'Data set files exist (pass overwrite=True): {[str(p) for p in existing]}'
        )
    for path in existing:
        path.unlink()

    order = np.lexsort((label, pairs[0]))  # stable: keeps the order in a split
    table = np.stack([pairs[0][order], pairs[1][order], label[order]], axis=1)
    path = folder / f'{name}.inter'
    with open(path, 'w') as f:
        f.write('userID\titemID\tx_label\n')
        np.savetxt(f, table, fmt='%d', delimiter='\t')
    for modality in data_modalities(data):
        x = data[ITEM][feature_key(modality)]
        np.save(
            folder / f'{modality}{FEATURE_SUFFIX}',
            x.detach().cpu().numpy().astype(np.float32),
        )
    return folder
