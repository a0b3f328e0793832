r"""The per-modality item semantic graphs of MENTOR, as a transform."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

import faiss
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from pyg_mentor.typing import ITEM, feature_key, select_modalities, similar_edge_type
from pyg_mentor.utils.io import atomic_torch_save, safe_torch_load, tensor_digest
from pyg_mentor.utils.knn import KNN_METHODS, knn_item_graph

logger = logging.getLogger(__name__)


class ModalityKNNGraph(BaseTransform):
    r"""Adds, for every item modality :math:`m`, the normalised cosine
    :math:`k`-NN graph :math:`\mathbf{S}_m` of the item features
    :obj:`data['item'].x_<m>` as the edge type
    :obj:`('item', 'similar_<m>', 'item')` with :obj:`edge_index` and
    :obj:`edge_weight` (see :func:`~pyg_mentor.utils.knn.knn_item_graph`):

    .. math::
        \mathbf{S}_m = \mathbf{D}^{-1/2} \mathbf{A}_m \mathbf{D}^{-1/2},
        \qquad (\mathbf{A}_m)_{ij} = [j \in \mathcal{N}_k^m(i)],

    where :math:`\mathcal{N}_k^m(i)` are the :math:`k` items most similar to
    :math:`i` in modality :math:`m` (:math:`i` itself included), so every
    edge weight is :math:`1/k`. This is MENTOR's item semantic graph, built
    once from the raw features.

    The graphs are placed on the device of the features. If :obj:`cache_dir`
    is set, each graph is stored there in a file whose name hashes the
    features (:func:`~pyg_mentor.utils.io.tensor_digest`) and every argument
    that changes the result, and is loaded from it on later calls.

    Args:
        k (int, optional): The number of neighbours per item, self included.
            (default: :obj:`10`)
        modalities (Sequence[str], optional): The modalities to build graphs
            for. If :obj:`None`, uses every modality with features in
            :obj:`data['item']`. (default: :obj:`None`)
        method (str, optional): :obj:`"exact"` or :obj:`"ivf"` search.
            (default: :obj:`"exact"`)
        nlist (int, optional): The number of IVF lists (:obj:`"ivf"` only;
            :obj:`None` picks one from the number of items).
            (default: :obj:`None`)
        nprobe (int, optional): The number of IVF lists visited per query
            (:obj:`"ivf"` only). (default: :obj:`16`)
        train_size (int, optional): Train the IVF k-means on a sample of
            about this many items (:obj:`"ivf"` only; see
            :func:`~pyg_mentor.utils.knn_item_graph`). (default: :obj:`None`)
        cache_dir (str or pathlib.Path, optional): A folder to cache the
            graphs in. (default: :obj:`None`)

    Example:
        >>> import torch_geometric.transforms as T
        >>> transform = T.Compose([
        ...     ModalityKNNGraph(k=10, cache_dir='cache/knn'),
        ...     FuseItemGraphs({'image': 0.1, 'text': 0.9}),
        ... ])
        >>> data = transform(data)
        >>> data['item', 'similar_text', 'item'].edge_index.shape
        torch.Size([2, 70500])
    """

    #: Bump when the stored content or the graph construction changes, so
    #: that stale cache files are not loaded.
    CACHE_FORMAT_VERSION = 1

    def __init__(
        self,
        k: int = 10,
        modalities: Sequence[str] | None = None,
        *,
        method: str = 'exact',
        nlist: int | None = None,
        nprobe: int = 16,
        train_size: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"'k' must be a positive integer (got {k!r})")
        if method not in KNN_METHODS:
            raise ValueError(f"Unknown method '{method}' (expected one of {KNN_METHODS})")
        if isinstance(modalities, str):
            modalities = [modalities]
        self.k = k
        self.modalities = None if modalities is None else list(modalities)
        self.method = method
        self.nlist = nlist
        self.nprobe = nprobe
        self.train_size = train_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir)

    def forward(self, data: HeteroData) -> HeteroData:
        names = select_modalities(data, self.modalities, self.__class__.__name__)
        store = data[ITEM]
        for name in names:
            key = feature_key(name)
            x = store[key]
            if 'num_nodes' in store and store.num_nodes != x.size(0):
                raise ValueError(
                    f"data['{ITEM}'].{key} has {x.size(0)} rows "
                    f"but data['{ITEM}'].num_nodes is "
                    f'{store.num_nodes}'
                )
            edge_index, edge_weight = self._item_graph(name, x)
            edge_store = data[similar_edge_type(name)]
            edge_store.edge_index = edge_index.to(x.device)
            edge_store.edge_weight = edge_weight.to(x.device)
        return data

    def cache_path(self, modality: str, x: Tensor) -> Path | None:
        r"""The cache file of the graph of :obj:`modality` with features
        :obj:`x`, or :obj:`None` if caching is off."""
        if self.cache_dir is None:
            return None
        safe_name = re.sub(r'[^A-Za-z0-9_.-]', '_', modality)
        return self.cache_dir / f'item_knn_{safe_name}_{self._cache_key(x)}.pt'

    def _cache_key(self, x: Tensor) -> str:
        params: dict[str, object] = {
            'format': self.CACHE_FORMAT_VERSION,
            'k': self.k,
            'method': self.method,
            'features': tensor_digest(x),
        }
        if self.method == 'ivf':  # They do not change exact graphs.
            params.update(
                nlist=self.nlist,
                nprobe=self.nprobe,
                train_size=self.train_size,
                faiss=faiss.__version__,
            )
        text = json.dumps(params, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def _item_graph(self, modality: str, x: Tensor) -> tuple[Tensor, Tensor]:
        start = time.perf_counter()
        path = self.cache_path(modality, x)
        if path is not None and path.exists():
            graph = self._load(path, num_edges=x.size(0) * self.k)
            if graph is not None:
                logger.info(
                    "Loaded the '%s' item graph (%d items, k=%d) from '%s' in %.2fs",
                    modality,
                    x.size(0),
                    self.k,
                    path,
                    time.perf_counter() - start,
                )
                return graph

        edge_index, edge_weight = knn_item_graph(
            x,
            self.k,
            method=self.method,
            nlist=self.nlist,
            nprobe=self.nprobe,
            train_size=self.train_size,
        )
        if path is not None:
            try:
                atomic_torch_save({'edge_index': edge_index, 'edge_weight': edge_weight}, path)
            except OSError as e:  # e.g. a read-only data set folder
                logger.warning(
                    "Cannot cache the '%s' item graph in '%s' (%s): it is built again on every run",
                    modality,
                    path,
                    e.strerror or e,
                )
                path = None
        logger.info(
            "Built the '%s' item graph (%d items, k=%d, method=%s) in %.2fs%s",
            modality,
            x.size(0),
            self.k,
            self.method,
            time.perf_counter() - start,
            '' if path is None else f"; saved to '{path}'",
        )
        return edge_index, edge_weight

    @staticmethod
    def _load(path: Path, num_edges: int) -> tuple[Tensor, Tensor] | None:
        try:
            obj = safe_torch_load(path, what='item graph cache')
            edge_index, edge_weight = obj['edge_index'], obj['edge_weight']
            if tuple(edge_index.shape) != (2, num_edges) or tuple(edge_weight.shape) != (
                num_edges,
            ):
                raise ValueError('unexpected shapes')
        except Exception as e:  # Unreadable or foreign file: rebuild it.
            logger.warning("Ignoring invalid item graph cache file '%s' (%s)", path, e)
            return None
        return edge_index, edge_weight

    def __repr__(self) -> str:
        cache_dir = None if self.cache_dir is None else str(self.cache_dir)
        return (
            f'{self.__class__.__name__}(k={self.k}, '
            f'modalities={self.modalities}, method={self.method!r}, '
            f'nlist={self.nlist}, nprobe={self.nprobe}, '
            f'train_size={self.train_size}, '
            f'cache_dir={cache_dir!r})'
        )
