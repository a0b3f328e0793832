from __future__ import annotations

import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.transforms.drop_interactions import DropInteractions
from pyg_mentor.transforms.mask_features import MaskFeatures

RATES = ('user', 'rates', 'item')
RATED_BY = ('item', 'rated_by', 'user')
NUM_USERS, NUM_ITEMS = 300, 200


def make_data(num_edges: int = 5000, reverse_order=None) -> HeteroData:
    r"""Unique random pairs with a weight per edge on both edge types."""
    g = torch.Generator().manual_seed(0)
    keys = torch.randperm(NUM_USERS * NUM_ITEMS, generator=g)[:num_edges]
    edge_index = torch.stack([keys // NUM_ITEMS, keys % NUM_ITEMS])
    data = HeteroData()
    data['user'].num_nodes = NUM_USERS
    data['item'].num_nodes = NUM_ITEMS
    data['item'].x_text = torch.randn(NUM_ITEMS, 4, generator=g)
    data[RATES].edge_index = edge_index
    data[RATES].edge_weight = keys.float()  # Identifies its pair.
    data[RATES].edge_attr = torch.stack([keys, -keys], dim=1)
    data[RATES].valid_label_index = edge_index[:, :num_edges]  # Same size.
    order = torch.arange(num_edges) if reverse_order is None else reverse_order
    data[RATED_BY].edge_index = edge_index.flip(0)[:, order]
    data[RATED_BY].edge_weight = keys.float()[order] + 0.5
    return data


def pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.t().tolist()))


def check_in_sync(out: HeteroData) -> None:
    fwd, rev = out[RATES], out[RATED_BY]
    assert pairs(fwd.edge_index) == pairs(rev.edge_index.flip(0))
    assert rev.edge_index.size(1) == fwd.edge_index.size(1)
    # Attributes follow their pairs (recomputed independently from the pairs).
    fwd_keys = fwd.edge_index[0] * NUM_ITEMS + fwd.edge_index[1]
    rev_keys = rev.edge_index[1] * NUM_ITEMS + rev.edge_index[0]
    assert torch.equal(fwd.edge_weight, fwd_keys.float())
    assert torch.equal(fwd.edge_attr, torch.stack([fwd_keys, -fwd_keys], 1))
    assert torch.equal(rev.edge_weight, rev_keys.float() + 0.5)


def test_drop_interactions_in_sync_and_fraction():
    data = make_data()
    torch.manual_seed(0)
    out = DropInteractions(0.25)(data)
    num_kept = out[RATES].edge_index.size(1)
    # Binomial(5000, 0.75): std ~ 0.0061 of the fraction; allow 5 sigma.
    assert abs(num_kept / 5000 - 0.75) < 0.031
    check_in_sync(out)
    assert pairs(out[RATES].edge_index) <= pairs(data[RATES].edge_index)
    # Label pairs, node stores and features are untouched (and shared).
    assert out[RATES].valid_label_index is data[RATES].valid_label_index
    assert out['item'].x_text is data['item'].x_text
    assert out['user'].num_nodes == NUM_USERS


def test_drop_interactions_does_not_mutate_input():
    data = make_data()
    before = {
        key: value.clone() for key, value in data[RATES].items() if isinstance(value, torch.Tensor)
    }
    before_rev = data[RATED_BY].edge_index.clone()
    torch.manual_seed(0)
    transform = DropInteractions(0.5)
    out = transform(data)
    out_direct = transform.forward(data)  # Also safe without __call__.
    assert out is not data and out_direct is not data
    for key, value in before.items():
        assert torch.equal(data[RATES][key], value)
    assert torch.equal(data[RATED_BY].edge_index, before_rev)
    assert out[RATES].edge_index.size(1) < 5000


def test_drop_interactions_reverse_in_another_order():
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(1))
    data = make_data(reverse_order=order)
    torch.manual_seed(0)
    out = DropInteractions(0.5)(data)
    assert out[RATES].edge_index.size(1) < 4000
    check_in_sync(out)


def test_drop_interactions_p_zero_keeps_everything():
    data = make_data()
    out = DropInteractions(0.0)(data)
    for edge_type in (RATES, RATED_BY):
        for key, value in data[edge_type].items():
            assert torch.equal(out[edge_type][key], value)


def test_drop_interactions_without_reverse():
    data = make_data()
    del data[RATED_BY]
    torch.manual_seed(0)
    out = DropInteractions(0.5)(data)
    assert RATED_BY not in out.edge_types
    assert out[RATES].edge_index.size(1) < 4000
    fwd = out[RATES]
    keys = fwd.edge_index[0] * NUM_ITEMS + fwd.edge_index[1]
    assert torch.equal(fwd.edge_weight, keys.float())

    # An explicit `rev_edge_type=None` leaves the reverse alone.
    data = make_data()
    out = DropInteractions(0.5, rev_edge_type=None)(data)
    assert out[RATED_BY].edge_index is data[RATED_BY].edge_index


def test_drop_interactions_is_random_and_seedable():
    data = make_data()
    transform = DropInteractions(0.5)
    torch.manual_seed(4)
    a = transform(data)[RATES].edge_index
    b = transform(data)[RATES].edge_index
    torch.manual_seed(4)
    c = transform(data)[RATES].edge_index
    assert not torch.equal(a, b)
    assert torch.equal(a, c)


def test_drop_interactions_custom_edge_types():
    data = HeteroData()
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 1, 0, 2]])
    data['u', 'clicks', 'i'].edge_index = edge_index
    data['i', 'clicked_by', 'u'].edge_index = edge_index.flip(0)
    torch.manual_seed(0)
    out = DropInteractions(0.5, ('u', 'clicks', 'i'), ('i', 'clicked_by', 'u'))(data)
    assert pairs(out['u', 'clicks', 'i'].edge_index) == pairs(
        out['i', 'clicked_by', 'u'].edge_index.flip(0)
    )


def test_drop_interactions_errors():
    for p in (-0.1, 1.0, float('nan')):
        with pytest.raises(ValueError, match="'p'"):
            DropInteractions(p)
    with pytest.raises(ValueError, match='does not reverse'):
        DropInteractions(0.1, rev_edge_type=('user', 'rates', 'item'))
    with pytest.raises(ValueError, match='no edge type'):
        DropInteractions(0.1, edge_type=('user', 'likes', 'item'))(make_data())
    with pytest.raises(TypeError, match='HeteroData'):
        DropInteractions(0.1)(object())

    data = make_data()
    data[RATED_BY].edge_index = data[RATED_BY].edge_index[:, 1:]
    with pytest.raises(ValueError, match='not those of'):
        DropInteractions(0.1)(data)
    data = make_data()
    data[RATED_BY].edge_index = data[RATED_BY].edge_index.clone()
    data[RATED_BY].edge_index[0, 0] = (data[RATED_BY].edge_index[0, 0] + 1) % NUM_ITEMS
    with pytest.raises(ValueError, match='not those of'):
        DropInteractions(0.1)(data)


def test_drop_interactions_repr():
    assert repr(DropInteractions(0.2)) == (
        "DropInteractions(p=0.2, edge_type=('user', 'rates', 'item'), "
        "rev_edge_type=('item', 'rated_by', 'user'))"
    )


def test_compose_with_mask_features_on_planted_data():
    data = make_planted(num_users=200, num_items=80)
    transform = T.Compose([DropInteractions(0.2), MaskFeatures(0.5)])
    torch.manual_seed(0)
    out = transform(data)

    num_edges = data[RATES].edge_index.size(1)
    num_kept = out[RATES].edge_index.size(1)
    assert 0 < num_kept < num_edges
    assert pairs(out[RATES].edge_index) == pairs(out[RATED_BY].edge_index.flip(0))
    assert pairs(out[RATES].edge_index) <= pairs(data[RATES].edge_index)
    names = [key for key in data['item'].keys() if key.startswith('x_')]
    assert names
    for key in names:
        x, masked = data['item'][key], out['item'][key]
        assert masked.shape == x.shape
        kept = masked != 0
        assert 0.3 < 1 - kept.float().mean().item() < 0.7
        torch.testing.assert_close(masked[kept], x[kept] / 0.5)
    # The input keeps all its interactions and features.
    assert data[RATES].edge_index.size(1) == num_edges
    assert (data['item'][names[0]] != 0).float().mean() > 0.99


def test_drop_interactions_leaves_label_pairs_alone():
    # Two training pairs and two validation pairs: `valid_label_index` has
    # shape [2, 2], the same leading size as a per-edge attribute would have.
    data = HeteroData()
    data[RATES].edge_index = torch.tensor([[0, 1], [0, 1]])
    data[RATES].edge_weight = torch.tensor([1.0, 2.0])
    data[RATES].valid_label_index = torch.tensor([[0, 1], [2, 3]])
    data[RATED_BY].edge_index = torch.tensor([[0, 1], [0, 1]])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
        out = DropInteractions(0.5)(data)
        assert out[RATES].valid_label_index is data[RATES].valid_label_index
        kept = out[RATES].edge_index[0]
        assert torch.equal(out[RATES].edge_weight, kept.float() + 1.0)
