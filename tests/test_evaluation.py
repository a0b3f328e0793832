"""Tests of :mod:`pyg_mentor.evaluation`.

Expected values are derived by hand in the comments (D_i = 1 / log2(i + 1) is
the discount of rank i: D_1 = 1, D_2 = 0.63093, D_3 = 0.5, D_4 = 0.43068) or
by an independent brute-force implementation written below in plain Python.
"""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch_geometric.data import HeteroData

import pyg_mentor.evaluation as evaluation
from pyg_mentor.evaluation import (
    Evaluator,
    MetricSums,
    auto_batch_size,
    format_metrics_table,
    round_metrics,
    topk_items,
    topk_metrics,
)

D2 = 1 / math.log2(3)  # 0.63093
D3 = 1 / math.log2(4)  # 0.5
D4 = 1 / math.log2(5)  # 0.43068

NEG_INF = float('-inf')


def pairs(*rows_items: tuple[int, int]) -> torch.Tensor:
    return torch.tensor(rows_items, dtype=torch.long).view(-1, 2).t()


def check(out: dict[str, float], expected: dict[str, float]) -> None:
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-6), key


# ---------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------
def test_keys():
    out = topk_metrics(torch.rand(2, 6), pairs((0, 1)), ks=(1, 3))
    assert list(out) == [
        'recall@1', 'recall@3', 'ndcg@1', 'ndcg@3',
        'precision@1', 'precision@3', 'map@1', 'map@3',
    ]  # fmt: skip
    assert all(isinstance(v, float) for v in out.values())


def test_perfect_ranking():
    # Ranking [0, 1, 2, 3, 4], P = {0, 1}: rel = [1, 1, 0, ...].
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    out = topk_metrics(scores, pairs((0, 0), (0, 1)), ks=(1, 2, 3))
    check(out, {
        # K=1: 1 hit of |P|=2; IDCG over min(2,1)=1 slot; MAP 1*1/min(2,1).
        'recall@1': 0.5, 'precision@1': 1.0, 'ndcg@1': 1.0, 'map@1': 1.0,
        # K=2: both hits; MAP = (1/1 + 2/2) / 2.
        'recall@2': 1.0, 'precision@2': 1.0, 'ndcg@2': 1.0, 'map@2': 1.0,
        # K=3: still 2 hits; precision 2/3; MAP = (1 + 1) / min(2, 3).
        'recall@3': 1.0, 'precision@3': 2 / 3, 'ndcg@3': 1.0, 'map@3': 1.0,
    })  # fmt: skip


def test_no_hits():
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    out = topk_metrics(scores, pairs((0, 4)), ks=(1, 2, 3))
    assert all(v == 0.0 for v in out.values())


def test_more_positives_than_k():
    # Ranking [0, 1, 2, 3, 4, 5], P = {1, 2, 3}.
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    out = topk_metrics(scores, pairs((0, 1), (0, 2), (0, 3)), ks=(2, 4))
    check(out, {
        # K=2: rel = [0, 1]. DCG = D2; IDCG over min(3, 2) = 2: 1 + D2.
        # MAP = Prec@2 * 1 / min(3, 2) = (1/2) / 2.
        'recall@2': 1 / 3, 'precision@2': 1 / 2,
        'ndcg@2': D2 / (1 + D2),  # 0.386853
        'map@2': 0.25,
        # K=4: rel = [0, 1, 1, 1]. DCG = D2 + D3 + D4; IDCG = 1 + D2 + D3.
        # MAP = (1/2 + 2/3 + 3/4) / min(3, 4).
        'recall@4': 1.0, 'precision@4': 3 / 4,
        'ndcg@4': (D2 + D3 + D4) / (1 + D2 + D3),  # 0.732835
        'map@4': (1 / 2 + 2 / 3 + 3 / 4) / 3,  # 0.638889
    })  # fmt: skip


def test_rows_without_labels_are_not_averaged():
    # Row 0: ranking [0, 1, 2], P = {0, 1} -> recall@1 = 1/2, ndcg@1 = 1.
    # Row 1 has no label: the mean is over row 0 only (0.5, not 0.25).
    scores = torch.tensor([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    out = topk_metrics(scores, pairs((0, 0), (0, 1)), ks=(1,))
    check(out, {'recall@1': 0.5, 'ndcg@1': 1.0, 'precision@1': 1.0, 'map@1': 1.0})
    # No labels at all: every metric is 0.
    out = topk_metrics(scores, pairs(), ks=(1,))
    assert all(v == 0.0 for v in out.values())


def test_mean_over_two_rows():
    # Row 0: ranking [0, 1, 2], P = {1}: recall@2 = 1, ndcg@2 = D2, map@2 = 1/2.
    # Row 1: ranking [2, 1, 0], P = {2}: recall@2 = 1, ndcg@2 = 1, map@2 = 1.
    scores = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    out = topk_metrics(scores, pairs((0, 1), (1, 2)), ks=(2,))
    check(out, {
        'recall@2': 1.0, 'precision@2': 0.5,
        'ndcg@2': (D2 + 1) / 2, 'map@2': (0.5 + 1) / 2,
    })  # fmt: skip


def test_excluded_items_are_skipped():
    # Items 0 and 1 score highest but are excluded: ranking [2, 3].
    scores = torch.tensor([[9.0, 8.0, 1.0, 0.0]])
    label = pairs((0, 2))
    out = topk_metrics(scores, label, pairs((0, 0), (0, 1)), ks=(1,))
    check(out, {'recall@1': 1.0, 'ndcg@1': 1.0, 'precision@1': 1.0, 'map@1': 1.0})
    assert topk_metrics(scores, label, ks=(1,))['recall@1'] == 0.0
    # `scores` itself is not modified.
    assert scores[0, 0] == 9.0


def test_excluded_label_is_never_a_hit():
    # Item 0 is a label and excluded: ranking [1, 2]; P = {0, 1}, |P| = 2.
    scores = torch.tensor([[9.0, 1.0, 0.0]])
    out = topk_metrics(scores, pairs((0, 0), (0, 1)), pairs((0, 0)), ks=(1, 2))
    check(out, {
        # K=1: rel = [1]; IDCG over min(2, 1) = 1.
        'recall@1': 0.5, 'precision@1': 1.0, 'ndcg@1': 1.0, 'map@1': 1.0,
        # K=2: rel = [1, 0]; DCG = 1, IDCG = 1 + D2; MAP = 1 / min(2, 2).
        'recall@2': 0.5, 'precision@2': 0.5, 'ndcg@2': 1 / (1 + D2), 'map@2': 0.5,
    })  # fmt: skip


def test_fewer_admissible_items_than_k():
    # 3 items; 0 and 1 excluded; only item 2 can be ranked: [2, -, -, -, -].
    # Item 0 is a label: with MMRec's -1e10 mask it would fill slot 2 and hit.
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    label, exclude = pairs((0, 0), (0, 2)), pairs((0, 0), (0, 1))
    assert topk_items(scores, 5, exclude).tolist() == [[2, 3, 3, 3, 3]]
    out = topk_metrics(scores, label, exclude, ks=(2, 5))
    check(out, {
        # K=2: rel = [1, 0]; |P| = 2; IDCG = 1 + D2; MAP = 1 / min(2, 2).
        'recall@2': 0.5, 'precision@2': 0.5, 'ndcg@2': 1 / (1 + D2), 'map@2': 0.5,
        # K=5 > num_items: precision still divides by K.
        'recall@5': 0.5, 'precision@5': 0.2, 'ndcg@5': 1 / (1 + D2), 'map@5': 0.5,
    })  # fmt: skip


def test_k_larger_than_num_items():
    # Ranking [0, 1, 2], P = {0, 1, 2}, K = 5: 3 hits.
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    out = topk_metrics(scores, pairs((0, 0), (0, 1), (0, 2)), ks=(5,))
    check(out, {'recall@5': 1.0, 'precision@5': 3 / 5, 'ndcg@5': 1.0, 'map@5': 1.0})
    assert topk_items(scores, 5).tolist() == [[0, 1, 2, 3, 3]]


def test_neg_inf_scores_are_never_ranked():
    scores = torch.tensor([[NEG_INF, 1.0, NEG_INF, 0.0]])
    assert topk_items(scores, 3).tolist() == [[1, 3, 4]]


def test_nan_scores_raise():
    with pytest.raises(ValueError, match='NaN'):
        topk_metrics(torch.tensor([[0.0, float('nan')]]), pairs((0, 0)), ks=(1,))


def test_duplicate_labels_are_removed():
    # P = {0, 1} whatever the duplicates: same as test_perfect_ranking.
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    label = pairs((0, 1), (0, 0), (0, 1), (0, 0))
    check(topk_metrics(scores, label, ks=(1,)), {'recall@1': 0.5, 'map@1': 1.0})


def test_invalid_inputs():
    with pytest.raises(ValueError, match='item ids'):
        topk_metrics(torch.rand(1, 3), pairs((0, 3)))
    with pytest.raises(ValueError, match='row ids'):
        topk_metrics(torch.rand(1, 3), pairs((1, 0)))
    with pytest.raises(ValueError, match='shape'):
        topk_metrics(torch.rand(1, 3), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match='ks'):
        topk_metrics(torch.rand(1, 3), pairs((0, 0)), ks=(0,))


# ---------------------------------------------------------------------------
# Ties: equal scores, the lower item id ranks first
# ---------------------------------------------------------------------------
def test_tie_across_k_boundary():
    # Items 1, 2, 3 tie at 5 for two slots: ranking [1, 2].
    scores = torch.tensor([[1.0, 5.0, 5.0, 5.0, 0.0]])
    assert topk_items(scores, 2).tolist() == [[1, 2]]
    assert topk_metrics(scores, pairs((0, 2)), ks=(2,))['recall@2'] == 1.0
    assert topk_metrics(scores, pairs((0, 3)), ks=(2,))['recall@2'] == 0.0
    # All 1000 scores equal: the top-5 are items 0..4.
    flat = torch.zeros(3, 1000)
    assert topk_items(flat, 5).tolist() == [[0, 1, 2, 3, 4]] * 3
    label = pairs(*[(r, i) for r in range(3) for i in (995, 996, 997, 998, 999)])
    assert topk_metrics(flat, label, ks=(5,))['recall@5'] == 0.0
    label = pairs(*[(r, i) for r in range(3) for i in (0, 1, 2, 3, 4)])
    assert topk_metrics(flat, label, ks=(5,))['recall@5'] == 1.0


def test_tie_with_excluded_item():
    # Items 0, 1, 2 tie; 0 is excluded: ranking [1, 2].
    scores = torch.tensor([[5.0, 5.0, 5.0]])
    assert topk_items(scores, 2, pairs((0, 0))).tolist() == [[1, 2]]


def test_tie_inside_top_k_orders_ndcg_and_map():
    # Items 1 and 2 tie inside the top-2 (no boundary tie): ranking [1, 2].
    scores = torch.tensor([[2.0, 7.0, 7.0, 1.0]])
    assert topk_items(scores, 2).tolist() == [[1, 2]]
    # P = {2}: rel = [0, 1]: DCG = D2, IDCG = 1; MAP = (1/2) / 1.
    out = topk_metrics(scores, pairs((0, 2)), ks=(2,))
    check(out, {'recall@2': 1.0, 'ndcg@2': D2, 'map@2': 0.5, 'precision@2': 0.5})
    # P = {1}: rel = [1, 0]: NDCG = 1, MAP = 1.
    out = topk_metrics(scores, pairs((0, 1)), ks=(2,))
    check(out, {'recall@2': 1.0, 'ndcg@2': 1.0, 'map@2': 1.0})


def test_tie_inside_and_across_boundary():
    # Items 1..4 tie at 3: ranking [1, 2]; P = {2}: rel = [0, 1].
    scores = torch.tensor([[0.0, 3.0, 3.0, 3.0, 3.0]])
    out = topk_metrics(scores, pairs((0, 2)), ks=(1, 2))
    check(out, {'recall@1': 0.0, 'recall@2': 1.0, 'ndcg@2': D2, 'map@2': 0.5})


def test_ties_are_independent_of_row_order():
    # A tied row gives the same ranking alone or among other rows.
    torch.manual_seed(0)
    scores = torch.randint(0, 3, (50, 40)).float()
    full = topk_items(scores, 10)
    for r in (0, 17, 49):
        assert torch.equal(topk_items(scores[r : r + 1], 10)[0], full[r])


# ---------------------------------------------------------------------------
# Brute-force reference on random inputs with many ties
# ---------------------------------------------------------------------------
def reference_ranking(scores, exclude, k):
    """Plain-Python ranking: full stable sort by (-score, item id)."""
    num_rows, num_items = len(scores), len(scores[0])
    excluded = {(r, i) for r, i in exclude}
    ranking = []
    for r in range(num_rows):
        items = [
            i for i in range(num_items)
            if (r, i) not in excluded and scores[r][i] != NEG_INF
        ]  # fmt: skip
        items.sort(key=lambda i, r=r: (-scores[r][i], i))
        ranking.append(items[:k])
    return ranking


def reference_metrics(scores, label, exclude, ks):
    """Plain-Python MMRec metrics, mean over rows with at least one label."""
    ranking = reference_ranking(scores, exclude, max(ks))
    positives: dict[int, set[int]] = {}
    for r, i in label:
        positives.setdefault(r, set()).add(i)
    out = {}
    for k in ks:
        sums = {'recall': 0.0, 'ndcg': 0.0, 'precision': 0.0, 'map': 0.0}
        for r, pos in positives.items():
            rel = [1 if i in pos else 0 for i in ranking[r][:k]]
            hits = sum(rel)
            dcg = sum(x / math.log2(j + 2) for j, x in enumerate(rel))
            idcg = sum(1 / math.log2(j + 2) for j in range(min(len(pos), k)))
            ap, seen = 0.0, 0
            for j, x in enumerate(rel):
                seen += x
                ap += x * seen / (j + 1)
            sums['recall'] += hits / len(pos)
            sums['precision'] += hits / k
            sums['ndcg'] += dcg / idcg
            sums['map'] += ap / min(len(pos), k)
        for name, value in sums.items():
            out[f'{name}@{k}'] = value / max(len(positives), 1)
    return out


def random_problem(seed, num_rows, num_items, num_levels):
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    # Integer-valued scores: many ties, inside and across the top-K boundary.
    scores = torch.randint(0, num_levels, (num_rows, num_items), generator=gen).float()
    scores[torch.rand(num_rows, num_items, generator=gen) < 0.05] = NEG_INF
    label, exclude = [], []
    for r in range(num_rows):
        if rng.random() < 0.15:
            continue  # a row without labels
        label += [(r, rng.randrange(num_items)) for _ in range(rng.randint(1, 6))]
    for r in range(num_rows):
        # Some rows lose almost every item (fewer admissible items than K).
        n = num_items - 1 if rng.random() < 0.1 else rng.randint(0, num_items // 2)
        exclude += [(r, i) for i in rng.sample(range(num_items), n)]
    return scores, label, exclude


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('num_items,num_levels', [(7, 3), (40, 4), (300, 20)])
def test_matches_brute_force(seed, num_items, num_levels):
    ks = (1, 3, 5, 10)
    scores, label, exclude = random_problem(seed, 30, num_items, num_levels)
    label_index = pairs(*label)
    exclude_index = pairs(*exclude)

    expected_ranking = reference_ranking(scores.tolist(), exclude, 10)
    ranking = topk_items(scores, 10, exclude_index).tolist()
    for row, expected_row in zip(ranking, expected_ranking, strict=True):
        assert row == expected_row + [num_items] * (10 - len(expected_row))

    expected = reference_metrics(scores.tolist(), label, exclude, ks)
    check(topk_metrics(scores, label_index, exclude_index, ks), expected)


# ---------------------------------------------------------------------------
# Evaluator
# ---------------------------------------------------------------------------
def make_data(num_users=40, num_items=30, seed=0):
    rng = random.Random(seed)
    train, valid, test = [], [], []
    for u in range(num_users):
        if u % 7 == 3:
            continue  # users without any interaction
        items = rng.sample(range(num_items), rng.randint(3, 12))
        cut1, cut2 = len(items) * 6 // 10, len(items) * 8 // 10
        train += [(u, i) for i in items[:cut1]]
        if u % 5 != 1:  # some users only in one held-out split
            valid += [(u, i) for i in items[cut1:cut2]]
        test += [(u, i) for i in items[cut2:]]
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    data['user', 'rates', 'item'].edge_index = pairs(*train)
    data['user', 'rates', 'item'].valid_label_index = pairs(*valid)
    data['user', 'rates', 'item'].test_label_index = pairs(*test)
    return data


def test_evaluator_users_and_masks():
    data = make_data()
    store = data['user', 'rates', 'item']
    evaluator = Evaluator(data, 'valid')
    assert evaluator.users.tolist() == sorted(set(store.valid_label_index[0].tolist()))
    assert 'valid' in repr(evaluator)
    with pytest.raises(ValueError, match='split'):
        Evaluator(data, 'train')


@pytest.mark.parametrize('split', ['valid', 'test'])
@pytest.mark.parametrize('batch_size', [1, 3, 7, 4096])
def test_evaluator_equals_single_call(split, batch_size):
    data = make_data()
    store = data['user', 'rates', 'item']
    # Integer-valued scores, so ties matter too.
    scores = torch.randint(0, 5, (40, 30), generator=torch.Generator().manual_seed(1))
    scores = scores.float()
    evaluator = Evaluator(data, split, ks=(1, 5, 10), batch_size=batch_size)
    out = evaluator.evaluate(lambda users: scores[users])
    # The same metrics from one call over all 40 users: users without labels
    # do not count, train pairs are excluded.
    expected = topk_metrics(scores, store[f'{split}_label_index'], store.edge_index,
                            ks=(1, 5, 10))  # fmt: skip
    assert out == expected  # the same ranked lists in one metric update: exact
    # Metric updates in chunks of 4 users: a sum in another order.
    evaluator.metric_rows = 4
    check(evaluator.evaluate(lambda users: scores[users]), expected)
    # ... and from the brute-force reference.
    label = [tuple(p) for p in store[f'{split}_label_index'].t().tolist()]
    exclude = [tuple(p) for p in store.edge_index.t().tolist()]
    check(out, reference_metrics(scores.tolist(), label, exclude, (1, 5, 10)))


def test_evaluator_masks_only_train_items():
    # One user; item 0 is train, item 1 valid, item 2 test.
    # Scores rank 0 > 1 > 2 > 3.
    data = HeteroData()
    data['user'].num_nodes = 1
    data['item'].num_nodes = 4
    store = data['user', 'rates', 'item']
    store.edge_index = pairs((0, 0))
    store.valid_label_index = pairs((0, 1))
    store.test_label_index = pairs((0, 2))
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0]])

    # Test: train item 0 is masked, valid item 1 is NOT: ranking [1, 2, 3].
    test = Evaluator(data, 'test', ks=(1, 2))
    check(test.evaluate(lambda u: scores[u]), {'recall@1': 0.0, 'recall@2': 1.0})
    # Valid: ranking [1, 2, 3]: the valid item is first.
    valid = Evaluator(data, 'valid', ks=(1,))
    check(valid.evaluate(lambda u: scores[u]), {'recall@1': 1.0})
    # Without masking, the train item 0 takes the first slot.
    unmasked = Evaluator(data, 'valid', ks=(1, 2), mask_train=False)
    check(unmasked.evaluate(lambda u: scores[u]), {'recall@1': 0.0, 'recall@2': 1.0})


def test_evaluate_embeddings():
    data = make_data()
    gen = torch.Generator().manual_seed(2)
    user_emb, item_emb = (
        torch.randn(40, 8, generator=gen),
        torch.randn(30, 8, generator=gen),
    )
    evaluator = Evaluator(data, 'test', batch_size=9)
    out = evaluator.evaluate_embeddings(user_emb, item_emb)
    expected = evaluator.evaluate(lambda u: user_emb[u] @ item_emb.t())
    assert out == expected
    assert out['recall@50'] == pytest.approx(1.0)  # 50 > 30 items: all found


def test_evaluator_does_not_modify_views():
    data = make_data()
    scores = torch.rand(40, 30)
    before = scores.clone()
    # A contiguous slice is a view of `scores`: it must be cloned, not masked.
    Evaluator(data, 'test', batch_size=8).evaluate(lambda u: scores[u[0] : u[0] + len(u)])
    assert torch.equal(scores, before)


def test_evaluator_checks_shape():
    evaluator = Evaluator(make_data(), 'test')
    with pytest.raises(ValueError, match='shape'):
        evaluator.evaluate(lambda u: torch.rand(len(u), 29))


# ---------------------------------------------------------------------------
# Shards: sums and counts
# ---------------------------------------------------------------------------
def tied_scores(num_users=40, num_items=30, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (num_users, num_items), generator=gen).float()


@pytest.mark.parametrize('protocol', ['mmrec', 'mmssl'])
def test_metric_sums_of_shards_add_up(protocol):
    data = make_data()
    store = data['user', 'rates', 'item']
    scores = tied_scores()
    evaluator = Evaluator(data, 'test', ks=(1, 5, 10), batch_size=4, protocol=protocol)
    whole = evaluator.evaluate(lambda u: scores[u])
    # One shard is the one-process evaluation itself.
    assert evaluator.metric_sums(lambda u: scores[u]).means() == whole
    ranges = [evaluator.shard_range(s, 3) for s in range(3)]
    assert ranges[0][0] == 0 and ranges[-1][1] == evaluator.num_eval_users
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    parts = [evaluator.metric_sums(lambda u: scores[u], s, 3) for s in range(3)]
    assert [p.count for p in parts] == [hi - lo for lo, hi in ranges]
    total = parts[0] + parts[1] + parts[2]
    assert total.count == evaluator.num_eval_users
    for key, value in total.means().items():  # float32 sums in another order
        assert value == pytest.approx(whole[key], rel=1e-6, abs=1e-9), key
    if protocol == 'mmrec':
        # Every shard's sums: the brute-force mean of its users times their number.
        exclude = [tuple(p) for p in store.edge_index.t().tolist()]
        for part, (lo, hi) in zip(parts, ranges):
            users = set(evaluator.users[lo:hi].tolist())
            label = [tuple(p) for p in store.test_label_index.t().tolist() if p[0] in users]
            expected = reference_metrics(scores.tolist(), label, exclude, (1, 5, 10))
            for key, value in expected.items():
                assert part.sums[key] == pytest.approx(value * len(users), abs=1e-5), key
    # More shards than users: empty shards count nothing.
    empty = evaluator.metric_sums(lambda u: scores[u], 0, 10 * evaluator.num_eval_users)
    assert empty.count == 0 and set(empty.means().values()) == {0.0}


def test_metric_sums_means_and_checks():
    sums = MetricSums({'recall@1': 1.5, 'ndcg@1': 0.25}, 3)
    assert sums.means() == pytest.approx({'recall@1': 0.5, 'ndcg@1': 0.25 / 3})
    assert MetricSums({'recall@1': 0.0}, 0).means() == {'recall@1': 0.0}
    assert MetricSums({'hit_ratio@1': 2.0}, 4, 'mmssl').means() == {'hit_ratio@1': 0.5}
    with pytest.raises(ValueError, match='cannot be added'):
        sums + MetricSums({'recall@1': 1.0}, 1)


# ---------------------------------------------------------------------------
# Memory: chunks sized from the available memory
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_auto_chunks_fit_the_memory_budget(monkeypatch, dtype):
    data = make_data(num_users=40, num_items=30)
    scores = tied_scores().to(dtype)
    size = scores.element_size()
    # A chunk may hold 3 users: 2 score copies of 30 items each.
    budget = 3 * 30 * 2 * size + size
    monkeypatch.setattr(
        evaluation, 'available_memory', lambda device='cpu': 4 * budget + 3
    )  # EVAL_MEMORY_FRACTION = 1/4 of it is the budget
    assert evaluation.EVAL_MEMORY_FRACTION == 0.25
    chunks: list[int] = []

    def score_fn(users):
        chunks.append(len(users))
        return scores[users]

    evaluator = Evaluator(data, 'test', ks=(1, 5, 10))  # batch_size='auto'
    out = evaluator.evaluate(score_fn)
    # The first user alone (it tells the dtype), then chunks of 3 users.
    n = evaluator.num_eval_users
    assert chunks == [1] + [3] * ((n - 1) // 3) + ([(n - 1) % 3] if (n - 1) % 3 else [])
    assert max(chunks) * 30 * 2 * size <= budget
    assert out == Evaluator(data, 'test', ks=(1, 5, 10), batch_size=n).evaluate(lambda u: scores[u])
    # An explicit budget instead of the available memory; a cap on the rows.
    chunks.clear()
    Evaluator(data, 'test', ks=(1,), memory_budget=5 * 30 * 2 * size).evaluate(score_fn)
    assert set(chunks[1:-1]) == {5}
    assert auto_batch_size(30, size, memory_budget=10**12) == evaluation.AUTO_MAX_ROWS
    assert auto_batch_size(30, size, memory_budget=0) == 1


def test_available_memory_is_shared_by_local_processes(monkeypatch):
    monkeypatch.setattr(evaluation, '_host_available', lambda: 8 * 2**30)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    assert evaluation.available_memory('cpu') == 8 * 2**30
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '4')  # 4 processes of --nproc on this host
    assert evaluation.available_memory('cpu') == 2 * 2**30
    assert 0 < evaluation._host_available()  # the real one


def test_tie_reselection_in_groups():
    # Every row ties across the boundary: re-selected in several groups,
    # each the lowest ids.
    scores = torch.zeros(64, 40)
    scores[:, 7] = 1.0  # one item above the tie
    top = topk_items(scores, 5)
    assert top.tolist() == [[7, 0, 1, 2, 3]] * 64


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def test_round_metrics():
    assert round_metrics({'recall@20': 0.123456, 'ndcg@20': 0.1}) == {
        'recall@20': 0.1235,
        'ndcg@20': 0.1,
    }
    assert round_metrics({'recall@20': 0.123456}, ndigits=2) == {'recall@20': 0.12}


def test_format_metrics_table():
    results = {
        'valid': {'recall@10': 0.1, 'recall@20': 0.2, 'ndcg@10': 0.05},
        'test': {
            'recall@10': 0.11111,
            'recall@20': 0.2,
            'ndcg@10': 0.06,
            'ndcg@20': 0.07,
        },
    }
    table = format_metrics_table(results, ks=(10, 20), metrics=('recall', 'ndcg'))
    assert table.splitlines() == [
        '| split | recall@10 | recall@20 | ndcg@10 | ndcg@20 |',
        '|---|---:|---:|---:|---:|',
        '| valid | 0.1000 | 0.2000 | 0.0500 | - |',
        '| test | 0.1111 | 0.2000 | 0.0600 | 0.0700 |',
    ]
