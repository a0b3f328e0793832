from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data, HeteroData
from torch_geometric.utils import to_dense_adj

import pyg_mentor.transforms.modality_knn_graph as module
from pyg_mentor.transforms.fuse_item_graphs import FuseItemGraphs
from pyg_mentor.transforms.modality_knn_graph import ModalityKNNGraph

NUM_ITEMS = 24


def dense_knn_graph(x: np.ndarray, k: int) -> np.ndarray:
    r"""S = D^-1/2 A D^-1/2 with A the top-k cosine neighbours of each row
    (self included) and D its row sums, computed densely."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    adj = np.zeros_like(sim)
    np.put_along_axis(adj, np.argsort(-sim, axis=1)[:, :k], 1.0, axis=1)
    d_inv_sqrt = adj.sum(axis=1) ** -0.5
    return d_inv_sqrt[:, None] * adj * d_inv_sqrt[None, :]


def dense_from_store(store, num_items: int) -> np.ndarray:
    adj = to_dense_adj(store.edge_index, edge_attr=store.edge_weight, max_num_nodes=num_items)[0]
    return adj.t().double().numpy()  # S[i, j]: weight of the edge j -> i.


def no_near_ties(x: np.ndarray, k: int) -> bool:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = np.sort(xn @ xn.T, axis=1)[:, ::-1]
    return bool((sim[:, 0] - sim[:, 1]).min() > 1e-3 and (sim[:, k - 1] - sim[:, k]).min() > 1e-4)


def make_data(k: int = 4, seed: int = 0) -> HeteroData:
    rng = np.random.default_rng(seed)
    feats = {}
    for name, dim in [('image', 12), ('text', 6)]:
        x = rng.standard_normal((NUM_ITEMS, dim))
        while not no_near_ties(x, k):
            x = rng.standard_normal((NUM_ITEMS, dim))
        feats[name] = torch.from_numpy(x).float()
    data = HeteroData()
    data['user'].num_nodes = 5
    data['item'].num_nodes = NUM_ITEMS
    data['item'].x_image = feats['image']
    data['item'].x_text = feats['text']
    data['user', 'rates', 'item'].edge_index = torch.tensor([[0, 1], [2, 3]])
    return data


def test_modality_knn_graph_all_modalities():
    data = make_data(k=4)
    out = ModalityKNNGraph(k=4)(data)

    for name in ['image', 'text']:
        store = out['item', f'similar_{name}', 'item']
        assert store.edge_index.shape == (2, NUM_ITEMS * 4)
        assert torch.equal(store.edge_weight, torch.full((NUM_ITEMS * 4,), 0.25))
        expected = dense_knn_graph(data['item'][f'x_{name}'].double().numpy(), 4)
        np.testing.assert_allclose(dense_from_store(store, NUM_ITEMS), expected, atol=1e-6)
        # Self-loops, first for every item:
        assert torch.equal(store.edge_index.view(2, NUM_ITEMS, 4)[0, :, 0], torch.arange(NUM_ITEMS))

    # The input is not modified; other attributes are kept.
    assert ('item', 'similar_text', 'item') not in data.edge_types
    assert torch.equal(
        out['user', 'rates', 'item'].edge_index, data['user', 'rates', 'item'].edge_index
    )


def test_modality_knn_graph_selected_and_missing_modalities():
    data = make_data()
    out = ModalityKNNGraph(k=3, modalities=['text'])(data)
    assert ('item', 'similar_text', 'item') in out.edge_types
    assert ('item', 'similar_image', 'item') not in out.edge_types

    with pytest.raises(ValueError, match=r"'audio'.*x_audio is missing"):
        ModalityKNNGraph(k=3, modalities=['text', 'audio'])(data)

    empty = HeteroData()
    empty['item'].num_nodes = 3
    with pytest.raises(ValueError, match='no item features'):
        ModalityKNNGraph(k=3)(empty)

    data['item'].num_nodes = NUM_ITEMS + 1
    with pytest.raises(ValueError, match='num_nodes'):
        ModalityKNNGraph(k=3)(data)

    with pytest.raises(TypeError, match='HeteroData'):
        ModalityKNNGraph(k=3)(Data(x=torch.randn(4, 2)))
    with pytest.raises(ValueError, match="'k'"):
        ModalityKNNGraph(k=0)
    with pytest.raises(ValueError, match='Unknown method'):
        ModalityKNNGraph(method='annoy')


def test_modality_knn_graph_ivf():
    data = make_data(k=4)
    out = ModalityKNNGraph(k=4, method='ivf', nprobe=4)(data)  # One list.
    expected = ModalityKNNGraph(k=4)(data)
    for name in ['image', 'text']:
        edge_type = ('item', f'similar_{name}', 'item')
        assert torch.equal(out[edge_type].edge_index, expected[edge_type].edge_index)


def test_modality_knn_graph_cache(tmp_path, caplog, monkeypatch):
    data = make_data(k=4)
    transform = ModalityKNNGraph(k=4, cache_dir=tmp_path / 'cache')

    with caplog.at_level(logging.INFO, logger=module.__name__):
        first = transform(data)
    assert sum('Built' in r.getMessage() for r in caplog.records) == 2
    files = sorted(os.listdir(tmp_path / 'cache'))
    assert len(files) == 2 and all(f.endswith('.pt') for f in files)
    assert not any(f.startswith('.') or 'tmp' in f for f in files)
    path = transform.cache_path('text', data['item'].x_text)
    assert path.name in files

    # The second call loads, never builds:
    def fail(*args, **kwargs):
        raise AssertionError('graph rebuilt instead of loaded')

    monkeypatch.setattr(module, 'knn_item_graph', fail)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=module.__name__):
        second = transform(data)
    assert sum('Loaded' in r.getMessage() for r in caplog.records) == 2
    for name in ['image', 'text']:
        edge_type = ('item', f'similar_{name}', 'item')
        for key in ['edge_index', 'edge_weight']:
            assert torch.equal(first[edge_type][key], second[edge_type][key])
    assert sorted(os.listdir(tmp_path / 'cache')) == files


def test_modality_knn_graph_cache_key(tmp_path):
    x = make_data()['item'].x_text

    def path(**kwargs):
        return ModalityKNNGraph(cache_dir=tmp_path, **kwargs).cache_path('text', x)

    base = path(k=4)
    assert path(k=4) == base
    assert path(k=5) != base
    assert path(k=4, method='ivf') != base
    assert path(k=4, method='ivf', nprobe=8) != path(k=4, method='ivf')
    assert path(k=4, method='ivf', nlist=2) != path(k=4, method='ivf')
    # nlist/nprobe do not change exact graphs, so they share the file:
    assert path(k=4, nprobe=8) == base

    changed = x.clone()
    changed[0, 0] += 1e-3
    assert ModalityKNNGraph(k=4, cache_dir=tmp_path).cache_path('text', changed) != base
    assert ModalityKNNGraph(k=4).cache_path('text', x) is None


def test_modality_knn_graph_rebuilds_invalid_cache(tmp_path, caplog):
    data = make_data(k=4)
    transform = ModalityKNNGraph(k=4, modalities=['text'], cache_dir=tmp_path)
    path = transform.cache_path('text', data['item'].x_text)
    path.write_bytes(b'not a torch file')

    with caplog.at_level(logging.INFO, logger=module.__name__):
        out = transform(data)
    assert any('Ignoring invalid' in r.getMessage() for r in caplog.records)
    assert out['item', 'similar_text', 'item'].edge_index.shape == (2, NUM_ITEMS * 4)
    loaded = torch.load(path, weights_only=True)  # Rewritten.
    assert torch.equal(loaded['edge_index'], out['item', 'similar_text', 'item'].edge_index)


def test_modality_knn_graph_repr_and_compose(tmp_path):
    transform = ModalityKNNGraph(
        k=4, modalities=['image'], method='ivf', nprobe=8, cache_dir=tmp_path
    )
    assert repr(transform) == (
        f"ModalityKNNGraph(k=4, modalities=['image'], method='ivf', "
        f'nlist=None, nprobe=8, train_size=None, cache_dir={str(tmp_path)!r})'
    )
    assert repr(ModalityKNNGraph()) == (
        "ModalityKNNGraph(k=10, modalities=None, method='exact', nlist=None, "
        'nprobe=16, train_size=None, cache_dir=None)'
    )

    data = make_data(k=4)
    out = T.Compose([ModalityKNNGraph(k=4), FuseItemGraphs({'image': 0.5, 'text': 0.5})])(data)
    assert {
        ('item', 'similar_image', 'item'),
        ('item', 'similar_text', 'item'),
        ('item', 'similar', 'item'),
    } <= set(out.edge_types)
