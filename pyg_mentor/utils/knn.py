r"""Item-item :math:`k`-nearest-neighbour graphs built with FAISS, and their
weighted fusion."""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Mapping

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import coalesce, degree

from pyg_mentor.config import KNN_METHODS  # the search strategies of knn_item_graph

#: Rows whose L2 norm is below this are treated as zero vectors when
#: normalising (see :func:`torch.nn.functional.normalize`).
NORMALIZE_EPS = 1e-12

# FAISS' k-means warns when it gets fewer training points than this per
# centroid; the default number of IVF lists is clipped to respect it.
_MIN_POINTS_PER_CENTROID = 39


def knn_item_graph(
    x: Tensor,
    k: int,
    *,
    method: str = 'exact',
    nlist: int | None = None,
    nprobe: int = 16,
    train_size: int | None = None,
    batch_size: int = 65536,
    num_threads: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Builds the normalised cosine :math:`k`-NN graph of items, as MENTOR's
    item semantic graph, with `FAISS <https://github.com/facebookresearch/faiss>`_.

    Every item :math:`i` is connected to the set :math:`\mathcal{N}_k(i)` of the
    :math:`k` items whose features have the highest cosine similarity with its
    own, **itself included** (:math:`\cos(\mathbf{x}_i, \mathbf{x}_i) = 1` is
    the largest similarity, and ties with duplicates are broken in favour of
    :math:`i`). With the binary adjacency
    :math:`\mathbf{A}_{ij} = [j \in \mathcal{N}_k(i)]` and the diagonal matrix
    of its *row* sums :math:`\mathbf{D}_{ii} = \sum_j \mathbf{A}_{ij}`, the
    graph is

    .. math::
        \mathbf{S} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2},
        \qquad
        \mathbf{S}_{ij} = \frac{\mathbf{A}_{ij}}
        {\sqrt{\mathbf{D}_{ii}} \sqrt{\mathbf{D}_{jj}}} = \frac{1}{k}
        \quad \text{for } j \in \mathcal{N}_k(i),

    since every row of :math:`\mathbf{A}` holds exactly :math:`k` ones, so
    :math:`\mathbf{D} = k \mathbf{I}` (note that :math:`\mathbf{D}_{jj}` is the
    row sum of item :math:`j`, not the in-degree of :math:`j`). The weights are
    evaluated from this formula in double precision, which gives :math:`1/k`
    exactly (rounded once to :obj:`float32`).

    The returned graph follows PyG's :obj:`"source_to_target"` flow: an edge
    :math:`j \to i` (:obj:`edge_index[0] = j`, :obj:`edge_index[1] = i`) with
    weight :math:`\mathbf{S}_{ij}` makes message passing
    :math:`\mathbf{x}'_i = \sum_{j} \mathbf{S}_{ij} \mathbf{x}_j` compute
    :math:`\mathbf{S} \mathbf{X}`. Every item is the target of exactly
    :math:`k` edges; edges are sorted by target, then by rank (decreasing
    similarity, the self-loop first).

    Rows are L2-normalised in :obj:`float32` (norms are clamped below at
    :obj:`NORMALIZE_EPS`), so inner products are cosine similarities. An
    all-zero row stays zero: its similarity with every item is :math:`0`, so
    it gets its self-loop plus :math:`k - 1` arbitrary neighbours among the
    tied items, and it can be a neighbour of an item whose other similarities
    are not positive. Queries run in batches of :obj:`batch_size` rows; no
    :math:`I \times I` matrix is ever formed.

    Args:
        x (torch.Tensor): Item features :math:`\mathbf{X}` of shape
            :obj:`[num_items, num_features]`, any floating dtype and device
            (computed on CPU in :obj:`float32`).
        k (int): The number of neighbours per item, self included,
            :obj:`1 <= k <= num_items`.
        method (str, optional): :obj:`"exact"` for brute-force search
            (:class:`faiss.IndexFlatIP`), or :obj:`"ivf"` for approximate
            search with an inverted file (:class:`faiss.IndexIVFFlat`, inner
            product metric, spherical k-means) for very large :obj:`num_items`.
            (default: :obj:`"exact"`)
        nlist (int, optional): The number of IVF lists (:obj:`"ivf"` only).
            If :obj:`None`, uses :math:`\lfloor 4 \sqrt{I} \rceil`, clipped so
            that k-means gets at least 39 points per list (and at least one
            list). An explicit value must not exceed :obj:`num_items`; fewer
            than 39 points per list only warns. (default: :obj:`None`)
        nprobe (int, optional): The number of IVF lists visited per query
            (:obj:`"ivf"` only; capped at :obj:`nlist`). A query whose probed
            lists hold fewer than :obj:`k` items is searched again over all
            lists. (default: :obj:`16`)
        train_size (int, optional): Train the IVF k-means on a random sample
            of about this many items (:obj:`"ivf"` only): FAISS samples
            :math:`\max(39, \lceil \text{train\_size} / \text{nlist}
            \rceil)` items per list (seeded, so the graph is reproducible).
            All items are still indexed and queried. If :obj:`None`, FAISS'
            default of up to 256 items per list, i.e. all items whenever
            :math:`I \le 256 \cdot \text{nlist}`; at a million items, a
            sample of 200,000 trains in seconds instead of minutes with no
            loss of recall (see ``benchmarks/knn.py``). (default: :obj:`None`)
        batch_size (int, optional): The number of items queried at once.
            (default: :obj:`65536`)
        num_threads (int, optional): The number of OpenMP threads FAISS uses
            during this call (restored afterwards). If :obj:`None`, keeps
            FAISS' current setting. (default: :obj:`None`)

    Returns:
        (torch.Tensor, torch.Tensor): :obj:`edge_index` of shape
        :obj:`[2, num_items * k]` (:obj:`int64`, CPU; sources in row 0,
        targets in row 1) and :obj:`edge_weight` of shape
        :obj:`[num_items * k]` (:obj:`float32`, CPU, all equal to :math:`1/k`).

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> edge_index, edge_weight = knn_item_graph(x, k=2)
        >>> edge_index
        tensor([[0, 1, 1, 0, 2, 1],
                [0, 0, 1, 1, 2, 2]])
        >>> edge_weight
        tensor([0.5000, 0.5000, 0.5000, 0.5000, 0.5000, 0.5000])
    """
    k = _check_knn_args(x, k, method, nlist, nprobe, batch_size, num_threads)
    if train_size is not None and _as_int('train_size', train_size) < 1:
        raise ValueError(f"'train_size' must be positive (got {train_size})")
    num_items = x.size(0)

    x = x.detach().to(device='cpu', dtype=torch.float32)
    x = F.normalize(x, p=2.0, dim=-1, eps=NORMALIZE_EPS)
    feats = np.ascontiguousarray(x.numpy())

    prev_num_threads = faiss.omp_get_max_threads()
    if num_threads is not None:
        faiss.omp_set_num_threads(num_threads)
    try:
        index, full_params = _build_index(feats, method, nlist, nprobe, train_size)
        # `faiss.contrib.torch_utils` (imported by PyG's `MIPSKNNIndex`)
        # replaces `Index.search` by one without `params=`; the NumPy search it
        # keeps as `search_numpy` has it.
        search = getattr(index, 'search_numpy', index.search)
        nbrs = torch.empty((num_items, k), dtype=torch.long)
        for start in range(0, num_items, batch_size):
            end = min(start + batch_size, num_items)
            query = feats[start:end]
            _, labels = search(query, k)
            if full_params is not None:  # IVF: too few items in probed lists.
                short = np.flatnonzero((labels < 0).any(axis=1))
                if short.size > 0:
                    _, labels[short] = search(query[short], k, params=full_params)
            ids = torch.arange(start, end)
            nbrs[start:end] = _self_first(torch.from_numpy(labels), ids, k)
    finally:
        if num_threads is not None:
            faiss.omp_set_num_threads(prev_num_threads)

    row = nbrs.view(-1)  # Source: the neighbour j.
    col = torch.arange(num_items).repeat_interleave(k)  # Target: the item i.
    edge_index = torch.stack([row, col], dim=0)

    # D_ii = sum_j A_ij: the number of neighbours of item i (its in-degree
    # here), which is k for every item. S_ij = D_ii^-1/2 D_jj^-1/2 = 1/k.
    deg = degree(col, num_items, dtype=torch.float64)
    edge_weight = (1.0 / torch.sqrt(deg[col] * deg[row])).to(torch.float32)
    return edge_index, edge_weight


def fuse_item_graphs(
    graphs: Mapping[str, tuple[Tensor, Tensor]],
    weights: Mapping[str, float],
    num_items: int,
) -> tuple[Tensor, Tensor]:
    r"""Fuses weighted item-item graphs into one, as MENTOR fuses its
    per-modality semantic graphs:

    .. math::
        \mathbf{S} = \sum_{m} w_m \mathbf{S}_m.

    Edges present in several graphs are merged into one whose weight is the
    sum (:func:`torch_geometric.utils.coalesce` with :obj:`reduce="sum"`).
    Only the graphs named in :obj:`weights` are used; other entries of
    :obj:`graphs` are ignored.

    Args:
        graphs (Mapping[str, (torch.Tensor, torch.Tensor)]): For each name
            (e.g. a modality), :obj:`(edge_index, edge_weight)` of shapes
            :obj:`[2, num_edges_m]` and :obj:`[num_edges_m]`.
        weights (Mapping[str, float]): The weight :math:`w_m` of each graph to
            fuse, e.g. MENTOR's :obj:`{'image': 0.1, 'text': 0.9}`.
        num_items (int): The number of items :math:`I`.

    Returns:
        (torch.Tensor, torch.Tensor): :obj:`edge_index` of shape
        :obj:`[2, num_edges]` without duplicates, sorted by target (row 1) then
        source, and :obj:`edge_weight` of shape :obj:`[num_edges]`.

    Example:
        >>> S_image = knn_item_graph(x_image, k=10)
        >>> S_text = knn_item_graph(x_text, k=10)
        >>> edge_index, edge_weight = fuse_item_graphs(
        ...     {'image': S_image, 'text': S_text},
        ...     {'image': 0.1, 'text': 0.9}, num_items=x_text.size(0))
    """
    if len(weights) == 0:
        raise ValueError("'weights' is empty; give the weight of at least one graph to fuse")
    missing = [name for name in weights if name not in graphs]
    if missing:
        raise ValueError(
            f'No graph named {missing} to fuse (weights were given '
            f'for {list(weights)}, graphs exist for '
            f'{sorted(graphs)})'
        )

    edge_indices: list[Tensor] = []
    edge_weights: list[Tensor] = []
    for name, w in weights.items():
        w = float(w)
        if not math.isfinite(w):
            raise ValueError(f"The weight of graph '{name}' must be finite (got {w})")
        edge_index, edge_weight = graphs[name]
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(
                f"The 'edge_index' of graph '{name}' must have "
                f'shape [2, num_edges] (got '
                f'{tuple(edge_index.shape)})'
            )
        if edge_weight.dim() != 1 or edge_weight.numel() != edge_index.size(1):
            raise ValueError(
                f"The 'edge_weight' of graph '{name}' must have "
                f'shape [{edge_index.size(1)}] (got '
                f'{tuple(edge_weight.shape)})'
            )
        if edge_index.numel() > 0 and (
            int(edge_index.min()) < 0 or int(edge_index.max()) >= num_items
        ):
            raise ValueError(
                f"Graph '{name}' has node indices outside [0, {num_items}) (num_items={num_items})"
            )
        if not edge_weight.is_floating_point():
            edge_weight = edge_weight.to(torch.float32)
        edge_indices.append(edge_index.long())
        edge_weights.append(w * edge_weight)

    edge_index = torch.cat(edge_indices, dim=1)
    edge_weight = torch.cat(edge_weights, dim=0)
    return coalesce(edge_index, edge_weight, num_nodes=num_items, reduce='sum', sort_by_row=False)


def _check_knn_args(
    x: Tensor,
    k: int,
    method: str,
    nlist: int | None,
    nprobe: int,
    batch_size: int,
    num_threads: int | None,
) -> int:
    if not isinstance(x, Tensor):
        raise TypeError(f"'x' must be a torch.Tensor (got {type(x).__name__})")
    if x.dim() != 2:
        raise ValueError(
            f"'x' must be a 2-D tensor of shape "
            f'[num_items, num_features] (got shape '
            f'{tuple(x.shape)})'
        )
    if not x.is_floating_point():
        raise ValueError(f"'x' must be a floating-point tensor (got dtype {x.dtype})")
    if x.size(0) == 0 or x.size(1) == 0:
        raise ValueError(
            f"'x' must hold at least one item and one feature (got shape {tuple(x.shape)})"
        )
    bad_rows = (~torch.isfinite(x)).any(dim=1).nonzero().view(-1)
    if bad_rows.numel() > 0:
        raise ValueError(
            f"'x' holds NaN or infinite values in "
            f'{bad_rows.numel()} row(s), e.g. row '
            f'{int(bad_rows[0])}'
        )
    k = _as_int('k', k)
    if not 1 <= k <= x.size(0):
        raise ValueError(f"'k' must satisfy 1 <= k <= num_items = {x.size(0)} (got k={k})")
    if method not in KNN_METHODS:
        raise ValueError(f"Unknown method '{method}' (expected one of {KNN_METHODS})")
    if nlist is not None and not 1 <= _as_int('nlist', nlist) <= x.size(0):
        raise ValueError(
            f"'nlist' must satisfy 1 <= nlist <= num_items = {x.size(0)} (got nlist={nlist})"
        )
    if _as_int('nprobe', nprobe) < 1:
        raise ValueError(f"'nprobe' must be positive (got {nprobe})")
    if _as_int('batch_size', batch_size) < 1:
        raise ValueError(f"'batch_size' must be positive (got {batch_size})")
    if num_threads is not None and _as_int('num_threads', num_threads) < 1:
        raise ValueError(f"'num_threads' must be positive (got {num_threads})")
    return k


def _as_int(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"'{name}' must be an integer (got {value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"'{name}' must be an integer (got {type(value).__name__} {value!r})"
        ) from None


def _default_nlist(num_items: int) -> int:
    # ~4 sqrt(I) lists, but no more than k-means can train well.
    # NOTE: changing this changes IVF graphs; bump the cache format version of
    # `ModalityKNNGraph` when you do.
    nlist = round(4 * math.sqrt(num_items))
    return max(1, min(nlist, num_items // _MIN_POINTS_PER_CENTROID))


def _build_index(
    feats: np.ndarray,
    method: str,
    nlist: int | None,
    nprobe: int,
    train_size: int | None = None,
) -> tuple[faiss.Index, faiss.SearchParametersIVF | None]:
    r"""Returns the filled index and, for IVF, search parameters that visit
    every list."""
    num_items, dim = feats.shape
    if method == 'exact':
        index = faiss.IndexFlatIP(dim)
        index.add(feats)
        return index, None

    explicit_nlist = nlist is not None
    if nlist is None:
        nlist = _default_nlist(num_items)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    # Centroids on the unit sphere suit inner-product search on unit vectors.
    index.cp.spherical = True
    if train_size is not None:
        # FAISS' k-means trains on a seeded random sample of this many points
        # per list when it is given more.
        index.cp.max_points_per_centroid = max(
            _MIN_POINTS_PER_CENTROID, math.ceil(train_size / nlist)
        )
    if num_items < _MIN_POINTS_PER_CENTROID * nlist:
        # Only an explicit `nlist` or a single list (which needs no
        # clustering) gets here. Warn in Python rather than let FAISS print.
        index.cp.min_points_per_centroid = 1
        if explicit_nlist and nlist > 1:
            warnings.warn(
                f'IVF training with {num_items} items for nlist={nlist} '
                f'lists (fewer than {_MIN_POINTS_PER_CENTROID} per list); '
                f"clustering may be poor. Consider a smaller 'nlist' or "
                f"method='exact'.",
                stacklevel=3,
            )
    index.train(feats)
    index.add(feats)
    index.nprobe = min(nprobe, nlist)
    full_params = faiss.SearchParametersIVF()
    full_params.nprobe = nlist
    return index, full_params


def _self_first(labels: Tensor, ids: Tensor, k: int) -> Tensor:
    r"""Puts every query item first in its own neighbour list: moved to the
    front if FAISS returned it, else inserted there in place of the last
    neighbour; the order of the other neighbours is kept."""
    cand = torch.cat([ids.view(-1, 1), labels], dim=1)  # [B, k + 1]
    drop = torch.zeros(cand.shape, dtype=torch.uint8)
    drop[:, 1:] = labels == ids.view(-1, 1)
    order = torch.sort(drop, dim=1, stable=True).indices[:, :k]
    return cand.gather(1, order)
