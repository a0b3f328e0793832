from __future__ import annotations

from pyg_mentor.nn.conv.bipartite_light_conv import BipartiteLightConv


class ItemGraphConv(BipartiteLightConv):
    r"""Weighted propagation over a fixed item-item graph, e.g. MENTOR's fused
    semantic graph :math:`\mathbf{S} = \sum_m w_m \mathbf{S}_m`.

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)} w_{j \to i}\,
        \mathbf{x}_j \qquad\text{i.e.}\qquad
        \mathbf{X}^{\prime} = \mathbf{S}\mathbf{X},\;
        \mathbf{S}_{ij} = w_{j \to i}

    The weights are used as given (no normalisation; the kNN graphs of
    :func:`pyg_mentor.utils.knn_item_graph` are already normalised).
    Like :class:`BipartiteLightConv`, it builds :math:`\mathbf{S}` and
    :math:`\mathbf{S}^{\top}` as CSR matrices once (:obj:`cached=True` by
    default, since semantic graphs are frozen) and propagates with one CSR
    product forward and one backward.

    Args:
        cached (bool, optional): Keep the sorted adjacency of the first call.
            (default: :obj:`True`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional, ones if omitted)*
        - **output:** node features :math:`(|\mathcal{V}|, F)`
    """

    def __init__(self, cached: bool = True, **kwargs):
        super().__init__(normalize=False, cached=cached, **kwargs)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(cached={self.cached})'
