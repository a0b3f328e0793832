"""PyG transforms on the user-item HeteroData; they compose with ``T.Compose``."""

from pyg_mentor.transforms.bipartite_norm import BipartiteNorm
from pyg_mentor.transforms.degree_sensitive_pruning import DegreeSensitivePruning
from pyg_mentor.transforms.drop_interactions import DropInteractions
from pyg_mentor.transforms.fuse_item_graphs import FuseItemGraphs
from pyg_mentor.transforms.mask_features import MaskFeatures
from pyg_mentor.transforms.modality_knn_graph import ModalityKNNGraph
from pyg_mentor.transforms.select_modalities import SelectModalities

__all__ = [
    'ModalityKNNGraph',
    'FuseItemGraphs',
    'DropInteractions',
    'MaskFeatures',
    'DegreeSensitivePruning',
    'SelectModalities',
    'BipartiteNorm',
]
