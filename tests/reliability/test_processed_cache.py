r"""Issue 14, case 2: the processed cache is keyed by the raw files' contents
and every processing parameter, written atomically, and a damaged cache is
reported and rebuilt."""

import logging
import os

import numpy as np
import torch
import torch_geometric.transforms as T

from pyg_mentor.datasets import mmrec
from pyg_mentor.datasets.mmrec import MMRecDataset
from pyg_mentor.transforms import FuseItemGraphs, ModalityKNNGraph

EDGES = ('user', 'rates', 'item')


def test_edit_keeping_size_and_mtime_is_seen(toy):
    root, _ = toy
    path = root / 'toy' / 'toy.inter'
    before = MMRecDataset(root, 'toy')[0]
    stat = path.stat()
    lines = path.read_text().splitlines()
    # Flip the label of the first train row to test (same size), restore mtime.
    i = next(i for i, line in enumerate(lines[1:], 1) if line.endswith('\t0'))
    user, item, _ = lines[i].split('\t')
    lines[i] = f'{user}\t{item}\t2'
    path.write_text('\n'.join(lines) + '\n')
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert path.stat().st_mtime_ns == stat.st_mtime_ns

    after = MMRecDataset(root, 'toy')[0]
    assert after[EDGES].edge_index.size(1) == before[EDGES].edge_index.size(1) - 1
    test = after[EDGES].test_label_index.t().tolist()
    assert [int(user), int(item)] in test


def test_truncated_cache_is_reported_and_rebuilt(toy, caplog):
    root, data = toy
    MMRecDataset(root, 'toy')
    cache = next((root / 'toy' / 'processed').glob('data_*.pt'))
    cache.write_bytes(cache.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again = MMRecDataset(root, 'toy')[0]
    assert torch.equal(again[EDGES].edge_index, data[EDGES].edge_index)
    assert str(cache) in caplog.text and 'truncated or damaged' in caplog.text
    # Rebuilt in place: the next load reads it without a warning.
    caplog.clear()
    MMRecDataset(root, 'toy')
    assert 'Ignoring' not in caplog.text
    assert cache.stat().st_size > 100


def test_pre_transform_repr_keys_the_cache(toy, tmp_path, monkeypatch):
    # MENTOR's item graphs as a pre_transform: cached, and a different k is a
    # different cache (not the stale graph of the first k).
    root, data = toy
    x = torch.randn(data['item'].num_nodes, 8, generator=torch.Generator().manual_seed(0))
    np.save(root / 'toy' / 'image_feat.npy', x.numpy())

    def pre(k):
        return T.Compose([ModalityKNNGraph(k), FuseItemGraphs({'image': 1.0})])

    first = MMRecDataset(root, 'toy', pre_transform=pre(3))[0]
    assert first['item', 'similar', 'item'].edge_index.size(1) == 60 * 3
    other = MMRecDataset(root, 'toy', pre_transform=pre(5))[0]
    assert other['item', 'similar', 'item'].edge_index.size(1) == 60 * 5

    def fail(*args, **kwargs):
        raise AssertionError('processed again')

    monkeypatch.setattr(mmrec, 'load_mmrec', fail)
    # Both variants stay cached (a grid over k does not rebuild every time).
    assert len(list((root / 'toy' / 'processed').glob('data_*.pt'))) == 2
    for k, expected in ((5, other), (3, first)):
        cached = MMRecDataset(root, 'toy', pre_transform=pre(k))[0]
        assert torch.equal(
            cached['item', 'similar', 'item'].edge_index,
            expected['item', 'similar', 'item'].edge_index,
        )
        assert torch.equal(
            cached['item', 'similar', 'item'].edge_weight,
            expected['item', 'similar', 'item'].edge_weight,
        )


def test_read_only_dataset_folder_is_processed_in_memory(toy, read_only, caplog):
    root, data = toy
    read_only(root)
    with caplog.at_level(logging.WARNING):
        got = MMRecDataset(root, 'toy')[0]
    assert torch.equal(got[EDGES].edge_index, data[EDGES].edge_index)
    assert 'Cannot write the processed cache' in caplog.text
