from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_mentor.datasets.mmrec import MMRecDataset, build_hetero_data, load_mmrec
from pyg_mentor.datasets.synthetic import (
    SHAPES,
    make_planted,
    make_planted_like,
    write_mmrec,
)

RATES = ('user', 'rates', 'item')
SPLIT_KEYS = ('edge_index', 'valid_label_index', 'test_label_index')


def assert_hetero_equal(a: HeteroData, b: HeteroData) -> None:
    assert set(a.node_types) == set(b.node_types)
    assert set(a.edge_types) == set(b.edge_types)
    for key in a.node_types + a.edge_types:
        sa, sb = a[key], b[key]
        assert set(sa.keys()) == set(sb.keys()), key
        for attr in sa.keys():
            va, vb = sa[attr], sb[attr]
            if isinstance(va, torch.Tensor):
                assert va.dtype == vb.dtype, (key, attr)
                assert torch.equal(va, vb), (key, attr)
            else:
                assert va == vb, (key, attr)


def mmrec_split_sizes(n: int) -> tuple[int, int, int]:
    r"""(train, valid, test) for a user with n interactions, MMRec's rule."""
    if n < 10:
        return n - 2, 1, 1
    vt = int(0.2 * n)
    return n - vt, vt // 2, vt - vt // 2


def all_pairs(data: HeteroData) -> torch.Tensor:
    return torch.cat([data[RATES][k] for k in SPLIT_KEYS], dim=1)


@pytest.fixture(scope='module')
def planted():
    return make_planted(return_factors=True)


def test_shapes_and_layout(planted):
    data, U, V = planted
    assert data['user'].num_nodes == 2000
    assert data['item'].num_nodes == 800
    assert set(data.edge_types) == {RATES, ('item', 'rated_by', 'user')}
    assert sorted(data['item'].keys()) == ['num_nodes', 'x_image', 'x_text']
    assert data['item'].x_image.shape == (800, 64)
    assert data['item'].x_text.shape == (800, 32)
    assert data['item'].x_image.dtype == torch.float32
    for key in SPLIT_KEYS:
        assert data[RATES][key].dtype == torch.long
        assert data[RATES][key].dim() == 2 and data[RATES][key].size(0) == 2
    assert torch.equal(data['item', 'rated_by', 'user'].edge_index, data[RATES].edge_index.flip(0))
    assert U.shape == (2000, 16) and V.shape == (800, 16)
    assert U.dtype == V.dtype == torch.float32

    pairs = all_pairs(data)
    assert pairs.size(1) == 16000  # exactly num_users * avg_interactions
    user_degree = torch.bincount(pairs[0], minlength=2000)
    item_degree = torch.bincount(pairs[1], minlength=800)
    assert user_degree.min() >= 5  # min_interactions
    assert user_degree.max() < 800
    assert item_degree.min() >= 1  # every item is used
    assert torch.unique(pairs[0] * 800 + pairs[1]).numel() == pairs.size(1)
    # Heavy-tailed user activity, like Baby (~30% of users at the minimum):
    assert 0.15 < (user_degree == 5).float().mean() < 0.5
    assert user_degree.max() > 5 * 8


def test_split_rule_per_user(planted):
    data, _, _ = planted
    sizes = [torch.bincount(data[RATES][k][0], minlength=2000) for k in SPLIT_KEYS]
    total = sizes[0] + sizes[1] + sizes[2]
    for u in range(2000):
        expected = mmrec_split_sizes(int(total[u]))
        got = tuple(int(s[u]) for s in sizes)
        assert got == expected, (u, got, expected)
    # Pairs are grouped by user in id order inside each split, as in MMRec files:
    for key in SPLIT_KEYS:
        users = data[RATES][key][0]
        assert bool((users[1:] >= users[:-1]).all()), key


def test_deterministic_given_seed():
    a = make_planted(300, 100, 7.0, seed=5)
    b = make_planted(300, 100, 7.0, seed=5)
    c = make_planted(300, 100, 7.0, seed=6)
    assert_hetero_equal(a, b)
    assert not torch.equal(a[RATES].edge_index, c[RATES].edge_index)
    assert not torch.equal(a['item'].x_image, c['item'].x_image)


def test_held_out_items_follow_planted_factors(planted):
    data, U, V = planted
    gen = torch.Generator().manual_seed(0)
    for key in ('valid_label_index', 'test_label_index'):
        users, items = data[RATES][key]
        held_out = (U[users] * V[items]).sum(-1)
        random_items = torch.randint(0, V.size(0), items.shape, generator=gen)
        random = (U[users] * V[random_items]).sum(-1)
        # The affinity has unit variance over random pairs:
        assert held_out.mean() - random.mean() > 1.0
        assert (held_out > random).float().mean() > 0.8


def recall_at_k(scores: torch.Tensor, data: HeteroData, k: int = 20) -> float:
    train = data[RATES].edge_index
    test = data[RATES].test_label_index
    scores = scores.clone()
    scores[train[0], train[1]] = -float('inf')
    top = scores.topk(k, dim=1).indices
    is_test = torch.zeros_like(scores, dtype=torch.bool)
    is_test[test[0], test[1]] = True
    hits = is_test.gather(1, top).sum(1).float()
    return (hits / is_test.sum(1).float()).mean().item()


def test_factors_beat_popularity(planted):
    data, U, V = planted
    num_items = data['item'].num_nodes
    popularity = torch.bincount(data[RATES].edge_index[1], minlength=num_items)
    pop = recall_at_k(popularity.float().expand(U.size(0), -1), data)
    oracle = recall_at_k(U @ V.T, data)
    assert oracle > 2 * pop
    assert pop > 2 * 20 / num_items  # the popularity prior is there, too


def r2(x: torch.Tensor, V: torch.Tensor) -> float:
    r"""Share of the variance of x explained by a linear map of V."""
    x = x.double() - x.double().mean(0)
    V = V.double() - V.double().mean(0)
    W = torch.linalg.lstsq(V, x).solution
    return 1 - ((x - V @ W) ** 2).sum().item() / (x**2).sum().item()


def test_features_carry_item_factors(planted):
    data, _, V = planted
    perm = torch.randperm(V.size(0), generator=torch.Generator().manual_seed(0))
    for key in ('x_image', 'x_text'):
        x = data['item'][key]
        # unit-variance signal + noise of std 0.5: R^2 ~ 1 / 1.25
        assert r2(x, V) > 0.7
        assert r2(x, V[perm]) < 0.1


def test_feature_noise_per_modality():
    data, _, V = make_planted(
        300,
        150,
        8.0,
        modalities={'image': 8, 'audio': 8},
        feature_noise={'image': 0.05, 'audio': 20.0},
        return_factors=True,
    )
    assert r2(data['item'].x_image, V) > 0.99
    assert r2(data['item'].x_audio, V) < 0.2
    assert sorted(data['item'].keys()) == ['num_nodes', 'x_audio', 'x_image']


def test_no_modalities():
    data = make_planted(100, 50, 6.0, modalities={})
    assert list(data['item'].keys()) == ['num_nodes']


def test_shapes_table():
    assert SHAPES == {
        'baby': (19445, 7050, 160792),
        'sports': (35598, 18357, 296337),
        'clothing': (39387, 23033, 278677),
    }


@pytest.mark.parametrize(
    'name,expected',
    [
        ('baby', (389, 141, 3216)),  # round(19445 * .02), round(7050 * .02), ...
        ('sports', (712, 367, 5927)),
        ('Clothing', (788, 461, 5574)),
    ],
)
def test_make_planted_like(name, expected):
    data = make_planted_like(name, scale=0.02, modalities={'text': 4}, seed=1)
    num_users, num_items, num_interactions = expected
    assert data['user'].num_nodes == num_users
    assert data['item'].num_nodes == num_items
    assert all_pairs(data).size(1) == num_interactions
    assert data['item'].x_text.shape == (num_items, 4)


def test_invalid_arguments():
    with pytest.raises(ValueError, match='min_interactions'):
        make_planted(100, 50, 6.0, min_interactions=2)
    with pytest.raises(ValueError, match='avg_interactions'):
        make_planted(100, 50, 4.0)
    with pytest.raises(ValueError, match='cannot cover'):
        make_planted(10, 100, 5.0)
    with pytest.raises(ValueError, match='feature_noise'):
        make_planted(100, 50, 6.0, feature_noise={'image': 1.0})
    with pytest.raises(ValueError, match='Modality'):
        make_planted(100, 50, 6.0, modalities={'my-image': 4})
    with pytest.raises(ValueError, match="Unknown data set 'movielens'"):
        make_planted_like('movielens')


# ------------------------------------------------------------------------------
# write_mmrec -> MMRecDataset
# ------------------------------------------------------------------------------
def test_round_trip_exact(tmp_path):
    data = make_planted(300, 120, 8.0, seed=3)
    folder = write_mmrec(data, tmp_path, 'syn')
    assert folder == tmp_path / 'syn'
    assert sorted(p.name for p in folder.iterdir()) == [
        'image_feat.npy',
        'syn.inter',
        'text_feat.npy',
    ]

    lines = (folder / 'syn.inter').read_text().splitlines()
    assert lines[0] == 'userID\titemID\tx_label'
    rows = np.array([[int(v) for v in line.split('\t')] for line in lines[1:]])
    assert len(rows) == all_pairs(data).size(1)
    # Grouped by user, then train / valid / test rows:
    order = np.lexsort((rows[:, 2], rows[:, 0]))
    assert np.array_equal(order, np.arange(len(rows)))

    loaded = MMRecDataset(tmp_path, 'syn')[0]
    assert_hetero_equal(data, loaded)
    assert_hetero_equal(data, MMRecDataset(tmp_path, 'syn')[0])  # from the cache


def test_write_mmrec_overwrite(tmp_path):
    first = make_planted(100, 50, 6.0, seed=0)
    second = make_planted(120, 60, 6.0, modalities={'audio': 3}, seed=1)
    write_mmrec(first, tmp_path, 'syn')
    with pytest.raises(FileExistsError, match='syn.inter'):
        write_mmrec(second, tmp_path, 'syn')
    write_mmrec(second, tmp_path, 'syn', overwrite=True)
    assert sorted(p.name for p in (tmp_path / 'syn').iterdir()) == [
        'audio_feat.npy',
        'syn.inter',
    ]
    assert_hetero_equal(second, load_mmrec(tmp_path, 'syn'))


def test_write_mmrec_refuses_unrepresentable(tmp_path):
    pairs = torch.tensor([[0, 1], [0, 1]])
    empty = torch.zeros(2, 0, dtype=torch.long)
    data = build_hetero_data(2, 5, pairs, empty, empty)  # items 2..4 unused
    with pytest.raises(ValueError, match='item 4 has no pair'):
        write_mmrec(data, tmp_path, 'bad')
