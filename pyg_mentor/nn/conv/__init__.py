"""Message-passing layers, usable on their own in any PyG model."""

from pyg_mentor.nn.conv.bipartite_light_conv import BipartiteLightConv, bipartite_norm
from pyg_mentor.nn.conv.item_graph_conv import ItemGraphConv

__all__ = ['BipartiteLightConv', 'ItemGraphConv', 'bipartite_norm']
