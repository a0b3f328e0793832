"""Functional helpers: kNN item graphs, sampling, atomic I/O."""

from pyg_mentor.utils.augment import (
    degree_sensitive_pruning,
    drop_interactions,
    embedding_noise,
    mask_features,
)
from pyg_mentor.utils.io import atomic_torch_save, tensor_digest
from pyg_mentor.utils.knn import fuse_item_graphs, knn_item_graph
from pyg_mentor.utils.sampling import NegativeSampler, train_batches

__all__ = [
    'knn_item_graph',
    'fuse_item_graphs',
    'NegativeSampler',
    'train_batches',
    'atomic_torch_save',
    'tensor_digest',
    'drop_interactions',
    'mask_features',
    'embedding_noise',
    'degree_sensitive_pruning',
]
