r"""One entry point for every dataset the CLI and the examples know by name."""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path

from torch_geometric.data import HeteroData

from pyg_mentor.config import DataConfig

log = logging.getLogger(__name__)

SYNTHETIC = 'synthetic'


def default_root() -> Path:
    r"""``$PYG_MENTOR_DATA`` if set, else ``./datasets``."""
    return Path(os.environ.get('PYG_MENTOR_DATA', 'datasets'))


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    scale: float = 1.0,
    seed: int = 0,
    surrogate: str | None = None,
    allow_sparse_ids: bool = False,
) -> HeteroData:
    r"""Loads a dataset by name.

    * ``'synthetic'``: the small planted dataset of
      :func:`~pyg_mentor.datasets.synthetic.make_planted` (default sizes);
    * ``'synthetic-<shape>'`` (``baby``, ``sports``, ``clothing``): planted data
      with that real set's numbers of users, items and interactions, times
      :obj:`scale`;
    * anything else: MMRec's atomic files ``<root>/<name>/<name>.inter[.gz]``
      and ``<modality>_feat.npy`` via
      :class:`~pyg_mentor.datasets.mmrec.MMRecDataset`.

    Args:
        name (str): Dataset name.
        root (str or Path, optional): Folder holding ``<name>/``
            (default: :func:`default_root`).
        scale (float, optional): Size factor of ``synthetic-<shape>``.
        seed (int, optional): Seed of the synthetic generator.
        surrogate (str, optional): ``'interactions'`` or ``'random'``: add
            surrogate features (with a WARNING) for the image/text modalities
            the dataset lacks; see :mod:`pyg_mentor.datasets.surrogate`.
        allow_sparse_ids (bool, optional): Accept MMRec files whose max id is
            far above their number of distinct ids (see
            :func:`~pyg_mentor.datasets.mmrec.check_id_range`).
    """
    from pyg_mentor.datasets.mmrec import MMRecDataset
    from pyg_mentor.datasets.synthetic import make_planted, make_planted_like

    if name == SYNTHETIC:
        data = make_planted(seed=seed)
    elif name.startswith(SYNTHETIC + '-'):
        data = make_planted_like(name[len(SYNTHETIC) + 1 :], scale=scale, seed=seed)
    else:
        root = Path(root) if root is not None else default_root()
        data = MMRecDataset(root, name, allow_sparse_ids=allow_sparse_ids)[0]
    if surrogate is not None:
        from pyg_mentor.datasets.surrogate import add_surrogate_features

        data = add_surrogate_features(data, kind=surrogate)
    return data


def item_graph_cache_dir(name: str, root: str | Path | None = None) -> Path | None:
    r"""Where the FAISS item graphs of an MMRec dataset are cached
    (``<root>/<name>/processed/knn``); :obj:`None` for synthetic data."""
    if name == SYNTHETIC or name.startswith(SYNTHETIC + '-'):
        return None
    root = Path(root) if root is not None else default_root()
    return root / name / 'processed' / 'knn'


def prepare_data(
    data: HeteroData,
    config: DataConfig | None = None,
    *,
    item_graph: bool = False,
    cache_dir: str | Path | None = None,
) -> HeteroData:
    r"""Prepares a dataset for a model with PyG transforms, as
    :obj:`config` says:

    1. :class:`~pyg_mentor.transforms.SelectModalities` keeps the requested
       item modalities (all by default);
    2. if :obj:`item_graph`, :class:`~pyg_mentor.transforms.ModalityKNNGraph`
       adds each modality's FAISS cosine :math:`k`-NN graph
       :obj:`('item', 'similar_<m>', 'item')` (cached in :obj:`cache_dir`) and
       :class:`~pyg_mentor.transforms.FuseItemGraphs` fuses them into
       :obj:`('item', 'similar', 'item')` with
       :meth:`DataConfig.graph_weights <pyg_mentor.config.DataConfig.graph_weights>`.

    Args:
        data (HeteroData): The dataset (not modified).
        config (DataConfig, optional): The data options (defaults if
            :obj:`None`).
        item_graph (bool): Build the fused item graph (models with
            :obj:`needs_item_graph`).
        cache_dir (str or Path, optional): Cache folder of the item graphs.

    Returns:
        HeteroData: The prepared data (a shallow copy).
    """
    import torch_geometric.transforms as T

    from pyg_mentor.transforms import FuseItemGraphs, ModalityKNNGraph, SelectModalities
    from pyg_mentor.typing import modalities

    config = config or DataConfig()
    transforms = []
    names = modalities(data)
    if config.modalities is not None:
        transforms.append(SelectModalities(config.modalities))
        names = config.modalities
    if item_graph and names:
        transforms += [
            ModalityKNNGraph(config.knn_k, names, method=config.knn_method, cache_dir=cache_dir),
            FuseItemGraphs(config.graph_weights(names)),
        ]
    if not transforms:
        return data
    return T.Compose(transforms)(copy.copy(data))
