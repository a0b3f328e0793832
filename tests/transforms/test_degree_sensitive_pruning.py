r"""Degree-sensitive pruning (FREEDOM) against probabilities derived here from the
definition: draws without replacement, each proportional to 1 / sqrt(d_u d_i)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from pyg_mentor.transforms import DegreeSensitivePruning, MaskFeatures
from pyg_mentor.utils import degree_sensitive_pruning

RATES = ('user', 'rates', 'item')
RATED_BY = ('item', 'rated_by', 'user')

# User 0 is a hub (4 items), item 0 is popular (3 users); user 3 - item 3 is a
# pair of leaves.
EDGES = torch.tensor([[0, 0, 0, 0, 1, 2, 3], [0, 1, 2, 4, 0, 0, 3]])


def weights(edge_index: torch.Tensor) -> list[float]:
    du = {u: int((edge_index[0] == u).sum()) for u in edge_index[0].tolist()}
    di = {i: int((edge_index[1] == i).sum()) for i in edge_index[1].tolist()}
    return [1 / math.sqrt(du[u] * di[i]) for u, i in edge_index.t().tolist()]


def exact_inclusion(w: list[float], n: int) -> list[float]:
    r"""P(edge kept) for n successive draws without replacement, by enumerating
    every ordered sequence of draws."""
    incl = [0.0] * len(w)
    for seq in itertools.permutations(range(len(w)), n):
        prob, left = 1.0, sum(w)
        for e in seq:
            prob *= w[e] / left
            left -= w[e]
        for e in seq:
            incl[e] += prob
    return incl


def frequencies(p: float, trials: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(EDGES.size(1))
    for _ in range(trials):
        _, mask = degree_sensitive_pruning(EDGES, p, generator=g)
        counts += mask
    return counts / trials


def test_single_draw_is_proportional_to_inverse_sqrt_degrees():
    # 7 edges, p = 0.8: int(7 * 0.2) = 1 edge kept, P = w / sum(w).
    w = torch.tensor(weights(EDGES))
    freq = frequencies(0.8, 20000)
    expected = w / w.sum()
    sigma = (expected * (1 - expected) / 20000).sqrt()
    assert (freq - expected).abs().max() < 5 * sigma.max(), (freq, expected)
    # The leaf pair (3, 3) has the largest weight, the hub-popular (0, 0) the
    # smallest.
    assert freq.argmax() == 6 and freq.argmin() == 0


@pytest.mark.parametrize('p', [0.5, 0.3])
def test_several_draws_match_sampling_without_replacement(p):
    n = int(EDGES.size(1) * (1 - p))
    expected = torch.tensor(exact_inclusion(weights(EDGES), n), dtype=torch.float64)
    assert math.isclose(float(expected.sum()), n, rel_tol=1e-9)
    freq = frequencies(p, 10000).double()
    sigma = (expected * (1 - expected) / 10000).sqrt().clamp_min(1e-3)
    assert ((freq - expected).abs() / sigma).max() < 5, (freq, expected)


def test_keep_count_order_and_reproducibility():
    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 50, (2, 1000), generator=g)
    for p in (0.0, 0.1, 0.8, 0.9):
        kept, mask = degree_sensitive_pruning(
            edge_index, p, generator=torch.Generator().manual_seed(1)
        )
        # MMRec's count, int(E * (1 - p)) in floating point.
        assert kept.size(1) == int(1000 * (1 - p)) == int(mask.sum())
        assert torch.equal(kept, edge_index[:, mask])  # original order
        again, _ = degree_sensitive_pruning(
            edge_index, p, generator=torch.Generator().manual_seed(1)
        )
        assert torch.equal(kept, again)
    kept, mask = degree_sensitive_pruning(edge_index, 0.9, training=False)
    assert torch.equal(kept, edge_index) and bool(mask.all())


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r'\[0, 1\)'):
        degree_sensitive_pruning(EDGES, 1.0)
    with pytest.raises(ValueError, match=r'\[2, E\]'):
        degree_sensitive_pruning(EDGES[0], 0.5)
    with pytest.raises(ValueError, match='does not reverse'):
        DegreeSensitivePruning(0.5, rev_edge_type=('user', 'x', 'item'))
    with pytest.raises(TypeError, match='HeteroData'):
        DegreeSensitivePruning(0.5)(EDGES)
    with pytest.raises(ValueError, match='no edge type'):
        DegreeSensitivePruning(0.5)(HeteroData())


def make_data(num_users=40, num_items=30, num_edges=400) -> HeteroData:
    g = torch.Generator().manual_seed(0)
    keys = torch.randperm(num_users * num_items, generator=g)[:num_edges]
    edge_index = torch.stack([keys // num_items, keys % num_items])
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['item'].x_text = torch.randn(num_items, 4, generator=g)
    data[RATES].edge_index = edge_index
    data[RATES].edge_weight = keys.float()
    data[RATES].valid_label_index = edge_index[:, :num_edges]  # Not per edge.
    order = torch.randperm(num_edges, generator=g)  # Reverse in another order.
    data[RATED_BY].edge_index = edge_index.flip(0)[:, order]
    data[RATED_BY].edge_weight = keys.float()[order] + 0.5
    return data


def test_transform_keeps_the_reverse_in_sync():
    data = make_data()
    out = T.Compose(
        [DegreeSensitivePruning(0.8, generator=torch.Generator().manual_seed(0)), MaskFeatures(0.0)]
    )(data)
    fwd, rev = out[RATES], out[RATED_BY]
    # int(400 * (1 - 0.8)) = 79 in floating point, as MMRec computes it.
    assert fwd.edge_index.size(1) == rev.edge_index.size(1) == int(400 * (1 - 0.8))
    assert set(map(tuple, fwd.edge_index.t().tolist())) == set(
        map(tuple, rev.edge_index.flip(0).t().tolist())
    )
    assert torch.equal(fwd.edge_weight, (fwd.edge_index[0] * 30 + fwd.edge_index[1]).float())
    assert torch.equal(rev.edge_weight, (rev.edge_index[1] * 30 + rev.edge_index[0]).float() + 0.5)
    # Labels and the input stay untouched.
    assert fwd.valid_label_index.size(1) == 400
    assert data[RATES].edge_index.size(1) == 400
    assert 'DegreeSensitivePruning(p=0.8' in repr(DegreeSensitivePruning(0.8))


def test_transform_equals_functional_and_prefers_low_degree_edges():
    data = make_data(num_users=60, num_items=40, num_edges=900)
    edge_index = data[RATES].edge_index
    w = torch.tensor(weights(edge_index))
    high = w > w.median()
    kept_high = kept_low = 0.0
    for seed in range(20):
        out = DegreeSensitivePruning(0.8, generator=torch.Generator().manual_seed(seed))(data)
        _, mask = degree_sensitive_pruning(
            edge_index, 0.8, 60, 40, generator=torch.Generator().manual_seed(seed)
        )
        assert torch.equal(out[RATES].edge_index, edge_index[:, mask])
        kept_high += float(mask[high].float().mean())
        kept_low += float(mask[~high].float().mean())
    # Uniform dropping would keep ~20% of both halves (std of the difference of
    # the two means over 20 draws ~0.006).
    assert kept_high / 20 > kept_low / 20 + 0.02, (kept_high, kept_low)
