import torch
from torch_geometric.nn import HeteroConv

from pyg_mentor.nn.conv import ItemGraphConv


def test_item_graph_conv_equals_dense_product_and_gradient():
    gen = torch.Generator().manual_seed(0)
    num_items = 8
    edge_index = torch.stack(
        [
            torch.randint(num_items, (20,), generator=gen),
            torch.randint(num_items, (20,), generator=gen),
        ]
    )
    edge_index = edge_index.unique(dim=1)
    weight = torch.rand(edge_index.size(1), generator=gen, dtype=torch.float64)
    x = torch.randn(num_items, 5, dtype=torch.float64, requires_grad=True)
    # S[i, j] = weight of the edge j -> i.
    s = torch.zeros(num_items, num_items, dtype=torch.float64)
    s[edge_index[1], edge_index[0]] = weight
    conv = ItemGraphConv()
    for _ in range(2):
        out = conv(x, edge_index, weight)
        assert torch.allclose(out, s @ x)
    grad = torch.randn_like(out)
    assert torch.allclose(torch.autograd.grad(out, x, grad)[0], s.t() @ grad)
    assert repr(conv) == 'ItemGraphConv(cached=True)'


def test_item_graph_conv_in_hetero_conv():
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 0]])
    weight = torch.tensor([0.5, 2.0, 1.0])
    conv = HeteroConv({('item', 'similar', 'item'): ItemGraphConv()})
    x = torch.eye(3)
    out = conv(
        {'item': x},
        {('item', 'similar', 'item'): edge_index},
        edge_weight_dict={('item', 'similar', 'item'): weight},
    )['item']
    expected = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert torch.allclose(out, expected)
