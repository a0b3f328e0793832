r"""MMSSL's evaluation protocol (reference part A.10) against hand-computed
values, and its relation to MMRec's on the same rankings."""

import json
import math

import pytest
import torch
from torch_geometric.data import HeteroData

from pyg_mentor.evaluation import Evaluator, mmssl_metrics, topk_metrics
from pyg_mentor.typing import ITEM, RATES, USER


def log2(x):
    return math.log(x, 2)


def test_hand_computed():
    # Row 0 ranks items [0, 1, 2, 3, 4, 5] (item 0 excluded as training item):
    # top-3 = [1, 2, 3]; labels {2, 4, 5}: hits r = [0, 1, 0].
    # Row 1 ranks [5, 4, 3, ...]; labels {5}: r = [1, 0, 0].
    scores = torch.tensor([[9.0, 8.0, 7.0, 6.0, 5.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    labels = torch.tensor([[0, 0, 0, 1], [2, 4, 5, 5]])
    exclude = torch.tensor([[0], [0]])
    out = mmssl_metrics(scores, labels, exclude, ks=[1, 3])
    assert out['recall@1'] == pytest.approx((0 + 1) / 2)
    assert out['recall@3'] == pytest.approx((1 / 3 + 1) / 2)
    assert out['precision@1'] == pytest.approx((0 + 1) / 2)
    assert out['precision@3'] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert out['hit_ratio@1'] == pytest.approx(0.5)
    assert out['hit_ratio@3'] == pytest.approx(1.0)
    # Row 0: one hit in the top-3 list (K_max = 3), at rank 2.
    #   NDCG@1: DCG 0, IDCG over min(1 hit, 1) = 1 -> 0.
    #   NDCG@3: DCG 1/log2(3), IDCG (1 in-list hit) 1/log2(2) = 1.
    # Row 1: hit at rank 1: 1 at both cut-offs.
    assert out['ndcg@1'] == pytest.approx((0 + 1) / 2)
    assert out['ndcg@3'] == pytest.approx((1 / log2(3) + 1) / 2)
    # MMRec's IDCG counts min(|P_u|, K) = 3 labels for row 0.
    mmrec = topk_metrics(scores, labels, exclude, ks=[1, 3])
    idcg = 1 + 1 / log2(3) + 1 / log2(4)
    assert mmrec['ndcg@3'] == pytest.approx((1 / log2(3) / idcg + 1) / 2)
    assert out['ndcg@3'] > mmrec['ndcg@3']
    assert out['recall@3'] == pytest.approx(mmrec['recall@3'])


def test_no_hits_and_the_k_max_list():
    # The IDCG counts the hits of the top-max(ks) list: with ks = [1, 2] the
    # hit at rank 3 is not seen (NDCG 0); with ks = [1, 3] it is.
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    labels = torch.tensor([[0, 0], [2, 3]])
    assert mmssl_metrics(scores, labels, ks=[1, 2])['ndcg@2'] == 0.0
    out = mmssl_metrics(scores, labels, ks=[1, 3])
    assert out['ndcg@3'] == pytest.approx((1 / log2(4)) / 1.0)
    assert out['hit_ratio@1'] == 0.0


def _data():
    gen = torch.Generator().manual_seed(0)
    num_users, num_items = 9, 12
    data = HeteroData()
    data[USER].num_nodes = num_users
    data[ITEM].num_nodes = num_items
    pairs = torch.randperm(num_users * num_items, generator=gen)[:60]
    pairs = torch.stack([pairs // num_items, pairs % num_items])
    data[RATES].edge_index = pairs[:, :30]
    data[RATES].valid_label_index = pairs[:, 30:45]
    data[RATES].test_label_index = pairs[:, 45:]
    return data


def test_evaluator_protocol_equals_function_and_batching():
    data = _data()
    scores = torch.randn(9, 12, generator=torch.Generator().manual_seed(1))
    expected = mmssl_metrics(
        scores, data[RATES].test_label_index, data[RATES].edge_index, ks=[2, 5]
    )
    for batch_size in (2, 100):
        evaluator = Evaluator(data, 'test', ks=[2, 5], batch_size=batch_size, protocol='mmssl')
        evaluator.metric_rows = 3  # several metric flushes
        got = evaluator.evaluate(lambda users: scores[users].clone())
        assert got.keys() == expected.keys()
        for key in expected:
            assert got[key] == pytest.approx(expected[key]), key
    # The default protocol is unchanged: MMRec's metrics.
    default = Evaluator(data, 'test', ks=[2, 5]).evaluate(lambda u: scores[u].clone())
    assert default == pytest.approx(
        topk_metrics(scores, data[RATES].test_label_index, data[RATES].edge_index, ks=[2, 5])
    )
    assert 'map@2' in default and 'hit_ratio@2' not in default


def test_rejects_unknown_protocol():
    with pytest.raises(ValueError, match='protocol'):
        Evaluator(_data(), 'test', protocol='ngcf')


def test_cli_evaluates_a_trained_mmssl_with_its_protocol(tmp_path, capsys):
    # `evaluate --protocol mmssl` rebuilds MMSSL from the run folder, restores
    # its generated graphs from the checkpoint and ranks as the trainer did:
    # Recall@K has the same definition in both protocols, so the printed
    # MMSSL-protocol test recall is the trainer's at the best epoch.
    from pyg_mentor.cli import main
    from pyg_mentor.datasets.synthetic import make_planted, write_mmrec

    write_mmrec(make_planted(num_users=200, num_items=80, seed=1), tmp_path, 'toy')
    out = tmp_path / 'run'
    assert (
        main(
            [
                'train',
                '--model',
                'mmssl',
                '--dataset',
                'toy',
                '--root',
                str(tmp_path),
                '--out',
                str(out),
                '--set',
                'epochs=2',
                'progress=false',
                'batch_size=256',
                'lr=0.01',
                'graph_topk_rate=0.05',
            ]
        )
        == 0
    )
    metrics = json.loads((out / 'metrics.json').read_text())
    capsys.readouterr()
    assert main(['evaluate', '--run', str(out), '--split', 'test', '--protocol', 'mmssl']) == 0
    printed = capsys.readouterr().out
    assert 'mmssl protocol' in printed
    header = next(line for line in printed.splitlines() if 'recall@20' in line)
    row = next(line for line in printed.splitlines() if line.startswith('| test |'))
    cells = dict(zip([c.strip() for c in header.split('|')], [c.strip() for c in row.split('|')]))
    assert cells['recall@20'] == f'{metrics["test"]["recall@20"]:.4f}'
    # The in-list IDCG is at most MMRec's: MMSSL's NDCG is never lower.
    assert float(cells['ndcg@20']) >= round(metrics['test']['ndcg@20'], 4)
