from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor, PairTensor, SparseTensor
from torch_geometric.utils import degree, is_sparse, spmm


def bipartite_norm(
    edge_index: Tensor,
    num_src: int,
    num_dst: int,
    dtype: torch.dtype | None = None,
) -> Tensor:
    r"""Symmetric LightGCN edge weights of a (bipartite) edge set.

    .. math::
        w_{j \to i} = \frac{1}{\sqrt{\deg_{\mathrm{src}}(j)}\,
        \sqrt{\deg_{\mathrm{dst}}(i)}}

    where :math:`\deg_{\mathrm{src}}(j)` is the number of edges leaving
    :math:`j` and :math:`\deg_{\mathrm{dst}}(i)` the number entering
    :math:`i`, both counted in :obj:`edge_index`.
    For the two directions of an undirected graph, these are the node degrees.

    Args:
        edge_index (torch.Tensor): Edges :obj:`[2, E]`, sources in row 0.
        num_src (int): Number of source nodes.
        num_dst (int): Number of destination nodes.
        dtype (torch.dtype, optional): Weight dtype.

    Returns:
        torch.Tensor: Weights :obj:`[E]`.
    """
    src, dst = edge_index
    deg_src = degree(src, num_src, dtype=dtype)
    deg_dst = degree(dst, num_dst, dtype=dtype)
    # Every node that appears in an edge has degree >= 1, so no inf arises.
    return deg_src[src].rsqrt() * deg_dst[dst].rsqrt()


def to_fused_adj(
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_src: int,
    num_dst: int,
) -> tuple[EdgeIndex, Tensor | None]:
    r"""Turns source-to-destination edges into the transposed adjacency
    :math:`\mathbf{A}^{\top}` (:obj:`[num_dst, num_src]`) as a row-sorted
    :class:`~torch_geometric.EdgeIndex` with its CSR and CSC pointers built, so
    that forward and backward are one fused sparse-dense product each. This is
    the path for edge weights that require a gradient (see :func:`to_csr_pair`
    for the others).

    Returns:
        (EdgeIndex, torch.Tensor or None): The adjacency and the edge weights
        permuted to its order.
    """
    dst, src = edge_index[1], edge_index[0]
    perm = (dst * num_src + src).argsort()
    adj_t = EdgeIndex(
        torch.stack([dst[perm], src[perm]]),
        sparse_size=(num_dst, num_src),
        sort_order='row',
    )
    adj_t.get_csr()
    adj_t.get_csc()  # Used by the backward pass.
    return adj_t, None if edge_weight is None else edge_weight[perm]


def _csr(row: Tensor, col: Tensor, value: Tensor, size: tuple[int, int]) -> Tensor:
    # A torch.sparse CSR matrix from (row, col, value), any order (duplicates
    # summed), by torch's own COO -> CSR conversion.
    coo = torch.sparse_coo_tensor(torch.stack([row, col]), value, size, check_invariants=False)
    with warnings.catch_warnings():  # "CSR support is in beta state"
        warnings.filterwarnings('ignore', 'Sparse CSR tensor support', UserWarning)
        return coo.to_sparse_csr()


def to_csr_pair(
    edge_index: Tensor,
    edge_weight: Tensor | None,
    num_src: int,
    num_dst: int,
    dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    r"""The transposed adjacency :math:`\mathbf{A}^{\top}`
    (:obj:`[num_dst, num_src]`, :math:`A^{\top}_{ij} = w_{j \to i}`) and the
    adjacency :math:`\mathbf{A}` itself, both as :obj:`torch.sparse` CSR
    matrices (weights, or ones, as values).

    Propagation is :math:`\mathbf{X}^{\prime} = \mathbf{A}^{\top}
    \mathbf{X}` and its gradient :math:`\partial \mathcal{L} / \partial
    \mathbf{X} = \mathbf{A} \, \partial \mathcal{L} / \partial
    \mathbf{X}^{\prime}`: with both matrices at hand each pass is one
    row-parallel CSR product (no transposition, no atomic scatter in the
    backward pass). On the Baby graph this is the fastest of PyG's and
    :obj:`torch.sparse`'s products forward+backward, also when other
    processes compete for the cores (``benchmarks/results/propagation.md``).
    """
    src, dst = edge_index[0], edge_index[1]
    if edge_weight is None:
        edge_weight = torch.ones(src.numel(), dtype=dtype, device=src.device)
    return (
        _csr(dst, src, edge_weight, (num_dst, num_src)),
        _csr(src, dst, edge_weight, (num_src, num_dst)),
    )


class _CSRPairMatmul(torch.autograd.Function):
    r""":math:`\mathbf{A}^{\top}\mathbf{X}` with the precomputed CSR
    :math:`\mathbf{A}` for the backward pass (no gradient for the values)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, adj_t: Tensor, adj: Tensor) -> Tensor:
        ctx.adj = adj
        return torch.sparse.mm(adj_t, x)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return torch.sparse.mm(ctx.adj, grad_out), None, None


class BipartiteLightConv(MessagePassing):
    r"""Parameter-free LightGCN propagation on a (bipartite) edge set, from
    `"LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation" <https://arxiv.org/abs/2002.02126>`_.

    .. math::
        \mathbf{x}^{\prime}_i = \sum_{j \in \mathcal{N}(i)}
        \frac{1}{\sqrt{\deg_{\mathrm{src}}(j)}\sqrt{\deg_{\mathrm{dst}}(i)}}
        \mathbf{x}_j

    Degrees are counted in the given edge set; nodes without incoming edges
    get zeros.
    On the two directions of a user-item graph, a
    :class:`~torch_geometric.nn.conv.HeteroConv` over
    :obj:`('user', 'rates', 'item')` and :obj:`('item', 'rated_by', 'user')`
    with one :class:`BipartiteLightConv` each equals one product with
    :math:`\mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` of the symmetric
    :math:`(U + I) \times (U + I)` graph.

    The layer normalises a plain :obj:`edge_index` once, builds the
    transposed adjacency :math:`\mathbf{A}^{\top}` and :math:`\mathbf{A}` as
    :obj:`torch.sparse` CSR matrices (:func:`to_csr_pair`) and propagates with
    one row-parallel CSR product forward (:math:`\mathbf{A}^{\top}
    \mathbf{X}`) and one backward (:math:`\mathbf{A}\,\partial\mathcal{L} /
    \partial\mathbf{X}^{\prime}`); edge weights that require a gradient take
    PyG's fused :class:`~torch_geometric.EdgeIndex` product instead, which
    also differentiates the weights (:func:`to_fused_adj`). With
    :obj:`cached=True` the adjacency is kept for later calls
    on the same graph, as in :class:`~torch_geometric.nn.conv.GCNConv`, but
    only while the layer is called with the same :obj:`edge_index` (and
    :obj:`edge_weight`) tensor objects, unmodified: a call on another graph
    (a subgraph, an augmented view) rebuilds and re-caches it, so a cached
    layer is never silently applied to the wrong graph. Measured on the Baby
    graph this is ~10-20x faster than per-edge messages with degrees
    recomputed on every call, and within a few percent of the fastest raw
    sparse product, with or without competing processes
    (``benchmarks/results/propagation.md``).
    A :class:`torch_sparse.SparseTensor` or :obj:`torch.sparse` adjacency
    :obj:`adj_t` (:obj:`[num_dst, num_src]`) is used as given, already
    normalised.

    Args:
        normalize (bool, optional): Apply the symmetric normalisation above;
            otherwise propagate :obj:`edge_weight` (or ones) as given.
            (default: :obj:`True`)
        cached (bool, optional): Cache the normalised adjacency of the last
            graph seen, reused while the same tensors are passed.
            (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)` or a pair
          :math:`((|\mathcal{V_s}|, F), (|\mathcal{V_t}|, F))`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** :math:`(|\mathcal{V}|, F)` or :math:`(|\mathcal{V}_t|, F)`

    Example:
        >>> conv = BipartiteLightConv(cached=True)
        >>> x_user, x_item = torch.randn(3, 8), torch.randn(4, 8)
        >>> edge_index = torch.tensor([[0, 1, 2], [0, 0, 3]])  # user -> item
        >>> conv((x_user, x_item), edge_index).size()
        torch.Size([4, 8])
    """

    _cached_adj: tuple[Tensor, Tensor | None] | None

    def __init__(self, normalize: bool = True, cached: bool = False, **kwargs):
        kwargs.setdefault('aggr', 'add')
        super().__init__(**kwargs)
        self.normalize = normalize
        self.cached = cached
        self._cached_adj = None
        self._cached_key: tuple | None = None

    def reset_parameters(self):
        super().reset_parameters()
        self._cached_adj = None
        self._cached_key = None

    def __getstate__(self) -> dict:
        # Copies and pickles leave the cached adjacency behind (a CSR matrix
        # cannot be deep-copied; the copy rebuilds it on its first call).
        state = super().__getstate__()
        state['_cached_adj'] = state['_cached_key'] = None
        return state

    @staticmethod
    def _graph_key(
        edge_index: Tensor, edge_weight: OptTensor, size: tuple[int, int], x: Tensor
    ) -> tuple:
        # The tensors themselves (held, so their memory cannot be reused by
        # another graph) and their in-place version counters.
        return (
            edge_index,
            edge_index._version,
            edge_weight,
            None if edge_weight is None else edge_weight._version,
            None if edge_weight is None else edge_weight.requires_grad,
            size,
            x.dtype,
            x.device,
        )

    def _cache_hit(self, key: tuple) -> bool:
        old = self._cached_key
        return (
            old is not None
            and old[0] is key[0]
            and old[2] is key[2]
            and old[1:2] == key[1:2]
            and old[3:] == key[3:]
        )

    def forward(
        self,
        x: Tensor | PairTensor,
        edge_index: Adj,
        edge_weight: OptTensor = None,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        if isinstance(x, Tensor):
            x = (x, x)
        if size is None:
            size = (x[0].size(0), x[1].size(0))

        if not is_sparse(edge_index) and torch.compiler.is_compiling():
            # Dynamo cannot trace the backward of EdgeIndex's fused product
            # (PyG 2.8); compiled, per-edge messages become one fused
            # gather-scatter kernel instead.
            edge_index = edge_index.as_subclass(Tensor)
            edge_weight = self._edge_weight(edge_index, edge_weight, size, x[0])
            return self.propagate(edge_index, x=x, edge_weight=edge_weight, size=size)

        if not is_sparse(edge_index):
            key = self._graph_key(edge_index, edge_weight, size, x[0])
            if self._cached_adj is not None and self._cache_hit(key):
                adj_t, weight = self._cached_adj
            else:
                adj_t, weight = self._prepare(edge_index, edge_weight, size, x[0])
                if self.cached:
                    self._cached_adj, self._cached_key = (adj_t, weight), key
            if not isinstance(adj_t, EdgeIndex):  # (A^T, A) as CSR
                return _CSRPairMatmul.apply(x[0], adj_t, weight)
            # The fused path of `propagate` for an `EdgeIndex` expects it
            # sorted by destination in (src, dst) orientation, whose transposed
            # product has no bipartite backward in PyG 2.8; we call the fused
            # kernel on our row-sorted transpose directly:
            return self.message_and_aggregate(adj_t, x, weight)

        # `SparseTensor` / `torch.sparse` adjacency `adj_t`, already normalised:
        return self.propagate(edge_index, x=x, edge_weight=None, size=None)

    def _prepare(
        self,
        edge_index: Tensor,
        edge_weight: OptTensor,
        size: tuple[int, int],
        x: Tensor,
    ) -> tuple[Tensor, Tensor | None]:
        # (A^T, A) as CSR, or (A^T as EdgeIndex, weights) for weights that
        # require a gradient.
        edge_index = edge_index.as_subclass(Tensor)
        edge_weight = self._edge_weight(edge_index, edge_weight, size, x)
        if edge_weight is not None and edge_weight.requires_grad:
            return to_fused_adj(edge_index, edge_weight, size[0], size[1])
        return to_csr_pair(edge_index, edge_weight, size[0], size[1], dtype=x.dtype)

    def _edge_weight(
        self, edge_index: Tensor, edge_weight: OptTensor, size: tuple[int, int], x: Tensor
    ) -> OptTensor:
        # The given weights (in the dtype of x), times the normalisation.
        if edge_weight is not None:
            edge_weight = edge_weight.to(x.dtype)
        if self.normalize:
            norm = bipartite_norm(edge_index, size[0], size[1], dtype=x.dtype)
            edge_weight = norm if edge_weight is None else edge_weight * norm
        return edge_weight

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(
        self,
        edge_index: Adj,
        x: PairTensor,
        edge_weight: OptTensor = None,
    ) -> Tensor:
        if isinstance(edge_index, EdgeIndex):  # Row-sorted A^T from `_prepare`.
            return edge_index.matmul(x[0], input_value=edge_weight, reduce=self.aggr)
        assert isinstance(edge_index, (Tensor, SparseTensor))
        return spmm(edge_index, x[0], reduce=self.aggr)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(normalize={self.normalize}, cached={self.cached})'
