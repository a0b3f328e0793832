"""Datasets: MMRec's atomic files as HeteroData, planted synthetic data, raw
interactions to MMRec files (``prepare``), and the graph layout from tensors."""

from pyg_mentor.datasets.graph import user_item_data
from pyg_mentor.datasets.load import load_dataset, prepare_data
from pyg_mentor.datasets.mmrec import (
    DataFormatError,
    MMRecDataset,
    build_hetero_data,
    load_mmrec,
    read_mmrec_features,
    read_mmrec_inter,
)
from pyg_mentor.datasets.synthetic import (
    SHAPES,
    make_planted,
    make_planted_like,
    write_mmrec,
)

__all__ = [
    'MMRecDataset',
    'DataFormatError',
    'load_mmrec',
    'read_mmrec_inter',
    'read_mmrec_features',
    'build_hetero_data',
    'make_planted',
    'make_planted_like',
    'write_mmrec',
    'SHAPES',
    'load_dataset',
    'prepare_data',
    'user_item_data',
]
