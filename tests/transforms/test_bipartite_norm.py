import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from pyg_mentor.nn.conv import BipartiteLightConv
from pyg_mentor.transforms import BipartiteNorm
from pyg_mentor.typing import ITEM, RATED_BY, RATES, USER


def graph() -> HeteroData:
    data = HeteroData()
    data[USER].num_nodes = 3
    data[ITEM].num_nodes = 4
    edge_index = torch.tensor([[0, 0, 1, 2, 2, 2], [0, 1, 1, 1, 2, 3]])
    data[RATES].edge_index = edge_index
    data[RATED_BY].edge_index = edge_index.flip(0)
    return data


def test_weights_are_the_symmetric_normalisation():
    data = graph()
    out = BipartiteNorm()(data)
    # Dense re-derivation: A [U, I], w_ui = A_ui / sqrt(d_u d_i).
    adj = torch.zeros(3, 4)
    adj[data[RATES].edge_index[0], data[RATES].edge_index[1]] = 1
    norm = adj / adj.sum(1, keepdim=True).sqrt() / adj.sum(0, keepdim=True).sqrt()
    u, i = data[RATES].edge_index
    torch.testing.assert_close(out[RATES].edge_weight, norm[u, i])
    i, u = data[RATED_BY].edge_index
    torch.testing.assert_close(out[RATED_BY].edge_weight, norm[u, i])
    # A shallow copy: the input is unchanged.
    assert 'edge_weight' not in data[RATES] and 'edge_weight' not in data[RATED_BY]


def test_given_weights_equal_normalising_in_the_conv():
    data = graph()
    data[RATES].edge_weight = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 1.0])
    out = T.Compose([BipartiteNorm()])(data)
    x_user, x_item = torch.randn(3, 5), torch.randn(4, 5)
    store = data[RATES]
    expected = BipartiteLightConv(normalize=True)(
        (x_user, x_item), store.edge_index, store.edge_weight
    )
    given = BipartiteLightConv(normalize=False)(
        (x_user, x_item), out[RATES].edge_index, out[RATES].edge_weight
    )
    torch.testing.assert_close(given, expected)


def test_missing_edge_types_are_skipped():
    data = HeteroData()
    data[USER].num_nodes = 2
    data[ITEM].num_nodes = 2
    data[RATES].edge_index = torch.tensor([[0, 1], [1, 1]])
    out = BipartiteNorm()(data)
    torch.testing.assert_close(
        out[RATES].edge_weight, torch.tensor([1.0, 1.0]) / torch.tensor(2.0).sqrt()
    )
    assert RATED_BY not in out.edge_types
    assert 'RATES' not in repr(BipartiteNorm()) and 'rates' in repr(BipartiteNorm())
