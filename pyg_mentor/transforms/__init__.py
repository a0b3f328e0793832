"""PyG transforms on the user-item HeteroData; they compose with ``T.Compose``."""
from pyg_mentor.transforms.degree_sensitive_pruning import DegreeSensitivePruning
from pyg_mentor.transforms.drop_interactions import DropInteractions
from pyg_mentor.transforms.fuse_item_graphs import FuseItemGraphs
from pyg_mentor.transforms.mask_features import MaskFeatures
from pyg_mentor.transforms.modality_knn_graph import ModalityKNNGraph

__all__ = ['ModalityKNNGraph', 'FuseItemGraphs', 'DropInteractions', 'MaskFeatures',
           'DegreeSensitivePruning']
