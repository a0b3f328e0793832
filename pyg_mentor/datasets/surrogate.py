r"""Surrogate item features for datasets whose real modality features are missing.

The real Amazon Baby / Sports / Clothing image (4096-d CNN) and text (384-d MiniLM)
features of MMRec are not available offline. Multimodal models still need *some*
item features to run; this module makes them, explicitly and loudly:

* ``kind='interactions'`` — *collaborative* surrogates: a rank-:math:`r` truncated SVD of
  the symmetrically normalised TRAIN interaction matrix,
  :math:`\mathbf{D}_I^{-1/2}\mathbf{R}^{\top}\mathbf{D}_U^{-1/2} \approx
  \mathbf{U}\boldsymbol{\Sigma}\mathbf{V}^{\top}`, item embedding
  :math:`\mathbf{U}\boldsymbol{\Sigma}^{1/2}`, lifted to each modality's width by a
  fixed random Gaussian projection plus independent noise per modality (so the
  modalities differ, as real ones do). They carry item-item co-interaction signal
  from the training split only (no valid/test leakage), NOT image or text content.
* ``kind='random'`` — i.i.d. Gaussian features: no signal at all; only the cost of the
  computation is realistic.

Results obtained with either are not comparable with papers that use the real features.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch_geometric.data import HeteroData

from pyg_mentor.typing import ITEM, RATES, USER, feature_key

log = logging.getLogger(__name__)

#: The widths of MMRec's features: 4096-d image (CaffeNet FC7), 384-d text (MiniLM).
MMREC_DIMS = {'image': 4096, 'text': 384}
KINDS = ('interactions', 'random')


def surrogate_features(
    data: HeteroData,
    dims: Mapping[str, int] | None = None,
    kind: str = 'interactions',
    rank: int = 64,
    noise: float = 0.5,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    r"""Surrogate item features per modality (see the module documentation).

    Args:
        data (HeteroData): The dataset (TRAIN edges are used).
        dims (Mapping[str, int], optional): Width per modality
            (default: :obj:`MMREC_DIMS`).
        kind (str): ``'interactions'`` or ``'random'``.
        rank (int): SVD rank of the ``'interactions'`` kind.
        noise (float): Std of the per-modality noise relative to the signal.
        seed (int): Seed of the projections and noise.

    Returns:
        dict[str, torch.Tensor]: ``{modality: [I, dims[modality]]}`` float32.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got '{kind}'")
    dims = dict(dims or MMREC_DIMS)
    num_users, num_items = data[USER].num_nodes, data[ITEM].num_nodes
    gen = torch.Generator().manual_seed(seed)
    if kind == 'random':
        return {m: torch.randn(num_items, d, generator=gen) for m, d in dims.items()}

    user, item = data[RATES].edge_index
    deg_u = torch.bincount(user, minlength=num_users).clamp(min=1).float()
    deg_i = torch.bincount(item, minlength=num_items).clamp(min=1).float()
    value = deg_i[item].rsqrt() * deg_u[user].rsqrt()
    matrix = torch.sparse_coo_tensor(
        torch.stack([item, user]), value, (num_items, num_users)
    ).coalesce()
    rank = min(rank, num_items - 1, num_users - 1)
    torch.manual_seed(seed)  # svd_lowrank draws its sketch from the global RNG.
    u, s, _ = torch.svd_lowrank(matrix, q=rank, niter=4)
    base = u * s.sqrt()
    base = base / base.std().clamp(min=1e-12)
    out = {}
    for m, d in dims.items():
        proj = torch.randn(rank, d, generator=gen) / rank**0.5
        x = base @ proj
        out[m] = x + noise * x.std() * torch.randn(num_items, d, generator=gen)
    return out


def add_surrogate_features(data: HeteroData, **kwargs) -> HeteroData:
    r"""Returns a copy of :obj:`data` with surrogate features for every modality
    of :obj:`dims` that has no real features, logging a WARNING naming them."""
    dims = dict(kwargs.pop('dims', None) or MMREC_DIMS)
    missing = {m: d for m, d in dims.items() if feature_key(m) not in data[ITEM]}
    if not missing:
        return data
    kind = kwargs.get('kind', 'interactions')
    log.warning(
        'No real features for modalities %s: using SURROGATE %s features '
        '(%s). Results are not comparable with papers that use real features.',
        sorted(missing),
        kind,
        'derived from the train interactions' if kind == 'interactions' else 'random, no signal',
    )
    data = data.clone()
    for m, x in surrogate_features(data, missing, **kwargs).items():
        data[ITEM][feature_key(m)] = x
    return data
