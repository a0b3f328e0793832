r"""Self-supervised augmentations of MENTOR: the functional twins of
:class:`~pyg_mentor.transforms.DropInteractions`,
:class:`~pyg_mentor.transforms.MaskFeatures` and
:class:`~pyg_mentor.nn.noise.EmbeddingNoise`.

* :func:`drop_interactions` -- drops user-item pairs (graph view), built on
  :func:`torch_geometric.utils.dropout_edge`.
* :func:`mask_features` -- inverted dropout on representations (MENTOR's
  feature-mask view).
* :func:`embedding_noise` -- SimGCL-style perturbation of propagated
  embeddings (MENTOR's graph-perturbation views).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import dropout_edge


def _check_probability(p: float, name: str = 'p') -> float:
    r"""Returns :obj:`p` as a float if :math:`0 \le p < 1`, else raises."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"'{name}' must be a float in [0, 1) (got {type(p).__name__})")
    p = float(p)
    if not 0.0 <= p < 1.0:  # False for NaN too.
        raise ValueError(f"'{name}' must be in [0, 1) (got {p})")
    return p


def _check_eps(eps: float) -> float:
    r"""Returns :obj:`eps` as a float if it is finite and :math:`\ge 0`,
    else raises."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"'eps' must be a float (got {type(eps).__name__})")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"'eps' must be finite and non-negative (got {eps})")
    return float(eps)


def drop_interactions(
    edge_index: Tensor,
    p: float,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Randomly drops user-item interactions, each independently with
    probability :math:`p`:

    .. math::
        \mathcal{E}' = \{ (u, i) \in \mathcal{E} : m_{ui} = 1 \},
        \qquad m_{ui} \sim \mathrm{Bernoulli}(1 - p),

    with the same semantics as :func:`torch_geometric.utils.dropout_edge`
    (a pair is kept iff a :math:`\mathcal{U}[0, 1)` draw is :math:`\ge p`).
    The pairs are directed :obj:`(user, item)`; to keep the reverse edge type
    in sync, index it with the returned mask (as
    :class:`~pyg_mentor.transforms.DropInteractions` does).

    :func:`~torch_geometric.utils.dropout_edge` draws from the global random
    number generator and takes no :obj:`generator` argument. Without
    :obj:`generator` this function calls it, so a global
    :func:`torch.manual_seed` reproduces it; with a :obj:`generator` the mask is
    drawn here with the same expression
    (:obj:`torch.rand(E, generator=generator) >= p`), so that a seeded
    generator reproduces it without touching the global state.

    Args:
        edge_index (torch.Tensor): The :obj:`(user, item)` pairs of shape
            :obj:`[2, E]`.
        p (float): The drop probability, :math:`0 \le p < 1` (:math:`p = 1`
            would leave no interaction at all).
        training (bool, optional): If :obj:`False`, nothing is dropped.
            (default: :obj:`True`)
        generator (torch.Generator, optional): The random number generator,
            on the device of :obj:`edge_index`. (default: :obj:`None`)

    Returns:
        (torch.Tensor, torch.Tensor): The kept pairs of shape :obj:`[2, E']`
        (in their original order) and the boolean mask of kept pairs of shape
        :obj:`[E]`.

    Example:
        >>> edge_index = torch.tensor([[0, 0, 1, 2], [0, 1, 1, 2]])
        >>> g = torch.Generator().manual_seed(0)
        >>> kept, mask = drop_interactions(edge_index, 0.5, generator=g)
        >>> torch.equal(kept, edge_index[:, mask])
        True
    """
    p = _check_probability(p)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, E] (got {list(edge_index.shape)})")
    if generator is None or not training or p == 0.0:
        return dropout_edge(edge_index, p=p, training=training)
    edge_mask = torch.rand(edge_index.size(1), generator=generator, device=edge_index.device) >= p
    return edge_index[:, edge_mask], edge_mask


def mask_features(x: Tensor, p: float, *, training: bool = True) -> Tensor:
    r"""MENTOR's feature-view masking: dropout on representations, with
    survivors rescaled ("inverted dropout", as :func:`torch.nn.functional.dropout`):

    .. math::
        \tilde{\mathbf{x}} = \frac{\mathbf{m} \odot \mathbf{x}}{1 - p},
        \qquad m_j \sim \mathrm{Bernoulli}(1 - p),

    drawn independently for every entry, so that
    :math:`\mathbb{E}[\tilde{\mathbf{x}}] = \mathbf{x}`. The identity if not
    :obj:`training`. Gradients flow to the kept entries (scaled by
    :math:`1/(1-p)`).

    Args:
        x (torch.Tensor): The representations, of any shape, e.g.
            :obj:`[N, d]`.
        p (float): The masking probability, :math:`0 \le p < 1` (:math:`p = 1`
            would erase every entry).
        training (bool, optional): If :obj:`False`, returns :obj:`x`
            unchanged. (default: :obj:`True`)

    Returns:
        torch.Tensor: The masked representations, of the shape of :obj:`x`.
    """
    p = _check_probability(p)
    return F.dropout(x, p=p, training=training)


def embedding_noise(
    h: Tensor,
    eps: float,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""SimGCL-style perturbation of embeddings, as applied by MENTOR's
    noise views after each propagation layer:

    .. math::
        \tilde{\mathbf{h}}_n = \mathbf{h}_n + \epsilon \cdot
        \mathrm{sign}(\mathbf{h}_n) \odot
        \frac{\boldsymbol{\delta}_n}{\lVert \boldsymbol{\delta}_n \rVert_2},
        \qquad \boldsymbol{\delta}_n \sim \mathcal{U}[0, 1)^d,

    for every row :math:`n`. The noise points into the orthant of
    :math:`\mathbf{h}_n` (a small deviation in a random direction that keeps
    the signs of the entries) and has row L2 norm exactly
    :math:`\epsilon` where :math:`\mathbf{h}_n` has no zero entry; entries
    with :math:`h_{nj} = 0` get no noise (:math:`\mathrm{sign}(0) = 0`). The
    noise carries no gradient: :math:`\partial\tilde{\mathbf{h}} /
    \partial\mathbf{h}` is the identity. The noise is drawn on the device and
    in the dtype of :obj:`h`.

    Args:
        h (torch.Tensor): The embeddings of shape :obj:`[N, d]` (any
            floating-point tensor; rows are taken along the last dimension).
        eps (float): The noise magnitude :math:`\epsilon \ge 0` (MENTOR:
            :obj:`0.1`).
        generator (torch.Generator, optional): The random number generator,
            on the device of :obj:`h`. (default: :obj:`None`)

    Returns:
        torch.Tensor: The perturbed embeddings, of the shape of :obj:`h`.
    """
    eps = _check_eps(eps)
    if not h.is_floating_point():
        raise TypeError(f"'h' must be a floating-point tensor (got {h.dtype})")
    noise = torch.rand(h.shape, generator=generator, device=h.device, dtype=h.dtype)
    # The perturbation is a constant for autograd (d sign(h) / dh = 0): built
    # without a graph, so the backward pass is the identity, not four passes
    # over zeros. Same values as sign(h) * normalize(noise) * eps.
    with torch.no_grad():
        delta = F.normalize(noise, dim=-1).mul_(eps).mul_(torch.sign(h))
    return h + delta


def degree_sensitive_pruning(
    edge_index: Tensor,
    p: float,
    num_users: int | None = None,
    num_items: int | None = None,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""FREEDOM's degree-sensitive edge pruning of a user-item graph
    (`"A Tale of Two Graphs" <https://arxiv.org/abs/2211.06924>`_, Zhou and
    Shen, ACM MM 2023): keeps :math:`n = \lfloor (1 - p) |\mathcal{E}|
    \rfloor` pairs (computed as MMRec does, :obj:`int(E * (1 - p))` in
    floating point, so e.g. 79 of 400 at :math:`p = 0.8`), drawn one after
    another without replacement, each draw
    choosing among the remaining pairs with probability proportional to

    .. math::
        w_{ui} = \frac{1}{\sqrt{d_u}\sqrt{d_i}},

    where :math:`d_u` and :math:`d_i` are the degrees of user :math:`u` and
    item :math:`i` in :obj:`edge_index`. Pairs between high-degree nodes,
    the likelier noise, are dropped more often. This is the distribution of
    MMRec's :obj:`torch.multinomial(w, n)` (without replacement); it is
    sampled here with the equivalent Efraimidis-Spirakis keys
    :math:`\log(r_{ui}) / w_{ui}`, :math:`r_{ui} \sim \mathcal{U}(0, 1)`, of
    which the :math:`n` largest are kept (no size limit, and reproducible with
    :obj:`generator`). With :math:`n = 1` an edge is kept with probability
    exactly :math:`w_{ui} / \sum w`; for larger :math:`n` the inclusion
    probability increases with :math:`w_{ui}` but is not proportional to it.

    The pairs are directed :obj:`(user, item)`; to keep the reverse edge type
    in sync, index it with the returned mask (as
    :class:`~pyg_mentor.transforms.DegreeSensitivePruning` does). Normalise
    the kept graph afterwards (FREEDOM propagates over the kept pairs with
    their own LightGCN normalisation).

    Args:
        edge_index (torch.Tensor): The :obj:`(user, item)` pairs of shape
            :obj:`[2, E]`.
        p (float): The drop rate, :math:`0 \le p < 1` (FREEDOM's
            :obj:`dropout`, 0.8 or 0.9).
        num_users (int, optional): The number of users (inferred if
            :obj:`None`).
        num_items (int, optional): The number of items (inferred if
            :obj:`None`).
        training (bool, optional): If :obj:`False`, nothing is dropped.
            (default: :obj:`True`)
        generator (torch.Generator, optional): The random number generator,
            on the device of :obj:`edge_index`. (default: :obj:`None`)

    Returns:
        (torch.Tensor, torch.Tensor): The kept pairs of shape :obj:`[2, n]`
        (in their original order) and the boolean mask of kept pairs of shape
        :obj:`[E]`.

    Example:
        >>> edge_index = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 2]])
        >>> g = torch.Generator().manual_seed(0)
        >>> kept, mask = degree_sensitive_pruning(edge_index, 0.5, generator=g)
        >>> kept.size(1)
        2
    """
    p = _check_probability(p)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"'edge_index' must have shape [2, E] (got {list(edge_index.shape)})")
    num_edges = edge_index.size(1)
    mask = torch.ones(num_edges, dtype=torch.bool, device=edge_index.device)
    num_keep = int(num_edges * (1.0 - p))
    if not training or p == 0.0 or num_keep == num_edges:
        return edge_index, mask
    user, item = edge_index
    deg_user = torch.bincount(user, minlength=num_users or 0).double()
    deg_item = torch.bincount(item, minlength=num_items or 0).double()
    weight = (deg_user[user] * deg_item[item]).rsqrt()
    # Efraimidis-Spirakis: the n largest keys log(r) / w are a sample without
    # replacement with probabilities proportional to w, draw after draw.
    r = torch.rand(num_edges, generator=generator, device=edge_index.device, dtype=torch.float64)
    keys = r.clamp_min(torch.finfo(torch.float64).tiny).log() / weight
    mask.zero_()
    mask[keys.topk(num_keep, sorted=False).indices] = True
    return edge_index[:, mask], mask
