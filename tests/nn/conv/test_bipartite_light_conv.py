import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import HeteroConv, to_hetero
from torch_geometric.nn.conv import MessagePassing

from pyg_mentor.nn.conv import BipartiteLightConv, bipartite_norm


def random_bipartite(num_src=7, num_dst=5, num_edges=14, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.stack(
        [
            torch.randint(num_src, (num_edges,), generator=gen),
            torch.randint(num_dst, (num_edges,), generator=gen),
        ]
    ).unique(dim=1)
    return edge_index


def dense_norm_adj(edge_index, num_users, num_items):
    r"""D^-1/2 A D^-1/2 of the symmetric (U+I) x (U+I) graph, written densely."""
    n = num_users + num_items
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edge_index[0], num_users + edge_index[1]] = 1.0
    a[num_users + edge_index[1], edge_index[0]] = 1.0
    deg = a.sum(1)
    d = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return d.view(-1, 1) * a * d.view(1, -1)


def test_bipartite_norm_values():
    # Users 0,1; items 0,1,2. User 0 rated items 0,1; user 1 rated item 1.
    edge_index = torch.tensor([[0, 0, 1], [0, 1, 1]])
    w = bipartite_norm(edge_index, 2, 3)
    # deg_u = [2, 1], deg_i = [1, 2, 0]
    expected = torch.tensor([1 / (2**0.5 * 1), 1 / (2**0.5 * 2**0.5), 1 / (1 * 2**0.5)])
    assert torch.allclose(w, expected)


@pytest.mark.parametrize('cached', [False, True])
def test_hetero_conv_equals_symmetric_dense_product(cached):
    num_users, num_items = 7, 5
    edge_index = random_bipartite(num_users, num_items)
    x_user = torch.randn(num_users, 3, dtype=torch.float64, requires_grad=True)
    x_item = torch.randn(num_items, 3, dtype=torch.float64, requires_grad=True)
    conv = HeteroConv(
        {
            ('user', 'rates', 'item'): BipartiteLightConv(cached=cached),
            ('item', 'rated_by', 'user'): BipartiteLightConv(cached=cached),
        },
        aggr='sum',
    )
    edge_index_dict = {
        ('user', 'rates', 'item'): edge_index,
        ('item', 'rated_by', 'user'): edge_index.flip(0),
    }
    for _ in range(2):  # The second call uses the cache when cached=True.
        out = conv({'user': x_user, 'item': x_item}, edge_index_dict)
        out = torch.cat([out['user'], out['item']])
        x = torch.cat([x_user, x_item])
        expected = dense_norm_adj(edge_index, num_users, num_items) @ x
        assert torch.allclose(out, expected)

    grad = torch.randn_like(out)
    g_user, g_item = torch.autograd.grad(out, (x_user, x_item), grad)
    e_user, e_item = torch.autograd.grad(expected, (x_user, x_item), grad)
    assert torch.allclose(g_user, e_user)
    assert torch.allclose(g_item, e_item)


def test_isolated_destinations_get_zeros():
    edge_index = torch.tensor([[0, 1], [0, 0]])  # Items 1 and 2 have no edge.
    out = BipartiteLightConv()((torch.randn(2, 4), torch.randn(3, 4)), edge_index)
    assert out.shape == (3, 4)
    assert torch.equal(out[1:], torch.zeros(2, 4))


def test_homogeneous_matches_lgconv_and_dense():
    from torch_geometric.nn import LGConv
    from torch_geometric.utils import to_undirected

    edge_index = to_undirected(random_bipartite(9, 9, 20, seed=3), num_nodes=9)
    x = torch.randn(9, 6, requires_grad=True)
    out = BipartiteLightConv()(x, edge_index)
    assert torch.allclose(out, LGConv()(x, edge_index), atol=1e-6)
    a = torch.zeros(9, 9)
    a[edge_index[0], edge_index[1]] = 1
    deg = a.sum(0)
    d = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    assert torch.allclose(out, (d.view(-1, 1) * a.t() * d.view(1, -1)) @ x, atol=1e-6)


def test_edge_weight_and_no_normalisation():
    edge_index = random_bipartite(6, 4, 10, seed=1)
    w = torch.rand(edge_index.size(1))
    x_src, x_dst = torch.randn(6, 2), torch.randn(4, 2)
    out = BipartiteLightConv(normalize=False)((x_src, x_dst), edge_index, w)
    dense = torch.zeros(4, 6)
    dense[edge_index[1], edge_index[0]] = w
    assert torch.allclose(out, dense @ x_src, atol=1e-6)


@pytest.mark.parametrize('weight_grad', [False, True])
def test_gradients_equal_the_dense_product(weight_grad):
    # Inputs through the CSR pair (A^T forward, A backward); weights that
    # require a gradient through PyG's fused EdgeIndex product. Duplicate
    # edges add up.
    edge_index = random_bipartite(6, 4, 10, seed=2)
    edge_index = torch.cat([edge_index, edge_index[:, :1]], dim=1)  # a duplicate
    w = torch.rand(edge_index.size(1), dtype=torch.float64, requires_grad=weight_grad)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    out = BipartiteLightConv(normalize=False)((x, torch.zeros(4, 3)), edge_index, w)
    dense = torch.zeros(4, 6, dtype=torch.float64)
    dense = dense.index_put((edge_index[1], edge_index[0]), w, accumulate=True)
    expected = dense @ x
    g = torch.randn(4, 3, dtype=torch.float64)
    inputs = (x, w) if weight_grad else (x,)
    grads = torch.autograd.grad((out * g).sum(), inputs)
    expected_grads = torch.autograd.grad((expected * g).sum(), inputs)
    assert torch.allclose(out, expected, atol=1e-12)
    for got, want in zip(grads, expected_grads):
        assert torch.allclose(got, want, atol=1e-12)


def test_deepcopy_drops_the_cache_and_rebuilds_it():
    import copy

    edge_index = random_bipartite()
    x = torch.randn(7, 3)
    conv = BipartiteLightConv(cached=True)
    out = conv((x, torch.zeros(5, 3)), edge_index)
    twin = copy.deepcopy(conv)
    assert conv._cached_adj is not None and twin._cached_adj is None
    assert torch.equal(twin((x, torch.zeros(5, 3)), edge_index), out)


def test_sparse_adjacency_input():
    edge_index = random_bipartite()
    x_src, x_dst = torch.randn(7, 3), torch.randn(5, 3)
    w = bipartite_norm(edge_index, 7, 5)
    adj_t = torch.sparse_coo_tensor(edge_index.flip(0), w, (5, 7)).coalesce()
    conv = BipartiteLightConv()
    expected = conv((x_src, x_dst), edge_index)
    assert torch.allclose(conv((x_src, x_dst), adj_t), expected, atol=1e-6)
    assert torch.allclose(conv((x_src, x_dst), adj_t.to_sparse_csr()), expected, atol=1e-6)


def test_sparse_tensor_input():
    torch_sparse = pytest.importorskip('torch_sparse')
    edge_index = random_bipartite()
    x_src, x_dst = torch.randn(7, 3), torch.randn(5, 3)
    w = bipartite_norm(edge_index, 7, 5)
    adj_t = torch_sparse.SparseTensor(
        row=edge_index[1], col=edge_index[0], value=w, sparse_sizes=(5, 7)
    )
    conv = BipartiteLightConv()
    assert torch.allclose(conv((x_src, x_dst), adj_t), conv((x_src, x_dst), edge_index), atol=1e-6)


def test_cache_is_kept_for_the_same_graph_and_rebuilt_for_another():
    edge_index = random_bipartite()
    conv = BipartiteLightConv(cached=True)
    x = (torch.randn(7, 3), torch.randn(5, 3))
    dense = dense_norm_adj(edge_index, 7, 5).float()[7:, :7]  # item <- user block
    first = conv(x, edge_index)
    assert torch.allclose(first, dense @ x[0], atol=1e-6)
    adj = conv._cached_adj[0]
    assert torch.allclose(conv(x, edge_index), first) and conv._cached_adj[0] is adj
    # Another graph (a view, a subgraph) is never propagated with the cached
    # adjacency: it is rebuilt from the new tensor and cached in its place.
    sub = edge_index[:, :3].clone()
    dense_sub = dense_norm_adj(sub, 7, 5).float()[7:, :7]
    assert torch.allclose(conv(x, sub), dense_sub @ x[0], atol=1e-6)
    assert conv._cached_adj[0] is not adj
    # So is the same tensor modified in place.
    sub[1, 0] = (sub[1, 0] + 1) % 5
    dense_sub = dense_norm_adj(sub, 7, 5).float()[7:, :7]
    assert torch.allclose(conv(x, sub), dense_sub @ x[0], atol=1e-6)
    # And inputs of other sizes.
    x8 = (torch.randn(8, 3), torch.randn(5, 3))
    assert torch.allclose(conv(x8, edge_index), dense @ x8[0][:7], atol=1e-6)
    conv.reset_parameters()
    assert conv._cached_adj is None


def test_repr_and_is_message_passing():
    conv = BipartiteLightConv(cached=True)
    assert isinstance(conv, MessagePassing)
    assert repr(conv) == 'BipartiteLightConv(normalize=True, cached=True)'


def test_to_hetero():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = BipartiteLightConv()

        def forward(self, x, edge_index):
            return self.conv(x, edge_index)

    data = HeteroData()
    data['user'].x = torch.randn(7, 4)
    data['item'].x = torch.randn(5, 4)
    edge_index = random_bipartite()
    data['user', 'rates', 'item'].edge_index = edge_index
    data['item', 'rated_by', 'user'].edge_index = edge_index.flip(0)
    model = to_hetero(Net(), data.metadata(), aggr='sum')
    out = model(data.x_dict, data.edge_index_dict)
    expected = dense_norm_adj(edge_index, 7, 5).float() @ torch.cat(
        [data['user'].x, data['item'].x]
    )
    assert torch.allclose(torch.cat([out['user'], out['item']]), expected, atol=1e-6)
