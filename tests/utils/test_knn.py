from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from torch_geometric.nn import SimpleConv
from torch_geometric.utils import to_dense_adj

from pyg_mentor.utils.knn import fuse_item_graphs, knn_item_graph


def dense_knn_graph(x: np.ndarray, k: int) -> np.ndarray:
    r"""MENTOR's item graph, written densely and independently:
    S = D^-1/2 A D^-1/2, A[i, j] = 1 for the top-k cosine neighbours j of i
    (self included), D = diag(row sums of A)."""
    x = x.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    topk = np.argsort(-sim, axis=1, kind='stable')[:, :k]
    adj = np.zeros_like(sim)
    np.put_along_axis(adj, topk, 1.0, axis=1)
    d_inv_sqrt = adj.sum(axis=1) ** -0.5
    return d_inv_sqrt[:, None] * adj * d_inv_sqrt[None, :]


def dense_from_edges(
    edge_index: torch.Tensor, edge_weight: torch.Tensor, num_items: int
) -> torch.Tensor:
    r"""S[i, j] = weight of the edge j -> i (edge_index[0] = j, [1] = i)."""
    adj = to_dense_adj(edge_index, edge_attr=edge_weight, max_num_nodes=num_items)[0]
    return adj.t()


def random_features(num_items: int, dim: int, k: int, seed: int) -> np.ndarray:
    r"""Gaussian features whose k-th and (k+1)-th similarities are not near
    ties, so the top-k set is unambiguous (the first such draw from seed on,
    which keeps the test deterministic)."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        x = rng.standard_normal((num_items, dim))
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = np.sort(xn @ xn.T, axis=1)[:, ::-1]
        gaps = sim[:, :-1] - sim[:, 1:]  # gaps[:, 0]: self vs nearest other.
        if gaps[:, 0].min() > 1e-3 and (k == num_items or gaps[:, k - 1].min() > 1e-4):
            return x
    raise AssertionError('no draw without near-ties')


@pytest.mark.parametrize('method', ['exact', 'ivf'])
@pytest.mark.parametrize('k', [1, 4, 30])
def test_knn_item_graph_matches_dense(method, k):
    num_items = 30
    x_np = random_features(num_items, 8, k, seed=k)
    x = torch.from_numpy(x_np).float()

    if method == 'ivf':  # 3 lists, all probed: the exact top-k.
        with pytest.warns(UserWarning, match='fewer than 39'):
            edge_index, edge_weight = knn_item_graph(x, k, method='ivf', nlist=3, nprobe=3)
    else:
        edge_index, edge_weight = knn_item_graph(x, k)

    assert edge_index.dtype == torch.long and edge_index.device.type == 'cpu'
    assert edge_weight.dtype == torch.float32
    assert edge_index.shape == (2, num_items * k)
    assert edge_weight.shape == (num_items * k,)

    expected = dense_knn_graph(x_np, k)
    actual = dense_from_edges(edge_index, edge_weight, num_items)
    torch.testing.assert_close(actual.double(), torch.from_numpy(expected))


def test_knn_item_graph_weights_are_one_over_k():
    x = torch.from_numpy(random_features(25, 6, 7, seed=1)).float()
    _, edge_weight = knn_item_graph(x, 7)
    assert torch.equal(edge_weight, torch.full((25 * 7,), 1.0 / 7))


def test_knn_item_graph_self_loop_first_and_sorted():
    num_items, k = 40, 5
    x_np = random_features(num_items, 8, k, seed=2)
    edge_index, _ = knn_item_graph(torch.from_numpy(x_np).float(), k)
    src, dst = edge_index.view(2, num_items, k)

    # Sorted by target, k neighbours each, self first:
    assert torch.equal(dst, torch.arange(num_items).view(-1, 1).expand(-1, k))
    assert torch.equal(src[:, 0], torch.arange(num_items))
    # ... then by decreasing cosine similarity:
    xn = x_np / np.linalg.norm(x_np, axis=1, keepdims=True)
    sim = np.take_along_axis(xn @ xn.T, src.numpy(), axis=1)
    assert (np.diff(sim, axis=1) < 0).all()


def test_knn_item_graph_direction_convention():
    # Propagating with PyG (sum_j w_ji x_j into i) must equal S @ X.
    num_items, k = 30, 4
    x_np = random_features(num_items, 8, k, seed=3)
    edge_index, edge_weight = knn_item_graph(torch.from_numpy(x_np).float(), k)

    signal = torch.randn(num_items, 3, generator=torch.Generator().manual_seed(0))
    out = SimpleConv(aggr='sum')(signal, edge_index, edge_weight)
    expected = torch.from_numpy(dense_knn_graph(x_np, k)).float() @ signal
    torch.testing.assert_close(out, expected)


def test_knn_item_graph_asymmetric_direction():
    # Item 2 is the nearest neighbour of item 3, not the other way round
    # (k=2): S[3, 2] != 0 while S[2, 3] == 0.
    x = torch.tensor([[1.0, 0.0], [0.95, 0.31], [0.8, 0.6], [0.0, 1.0]])
    edge_index, edge_weight = knn_item_graph(x, 2)
    S = dense_from_edges(edge_index, edge_weight, 4)
    assert S[3, 2] == 0.5 and S[2, 3] == 0.0
    assert edge_index[:, -2:].tolist() == [[3, 2], [3, 3]]


def test_knn_item_graph_invariances():
    num_items, k = 35, 6
    x = torch.from_numpy(random_features(num_items, 10, k, seed=4))
    edge_index, edge_weight = knn_item_graph(x.float(), k)

    # float64 input, scaled rows, small batches, one thread: same graph.
    scale = torch.rand(num_items, 1, generator=torch.Generator().manual_seed(1))
    threads = faiss.omp_get_max_threads()
    for out in [
        knn_item_graph(x, k),
        knn_item_graph(x * (scale + 0.5), k),
        knn_item_graph(x.float(), k, batch_size=4),
        knn_item_graph(x.float(), k, num_threads=1),
    ]:
        assert torch.equal(out[0], edge_index)
        assert torch.equal(out[1], edge_weight)
    assert faiss.omp_get_max_threads() == threads  # Restored.


def test_knn_item_graph_duplicates_and_zero_rows():
    x = torch.tensor(
        [
            [1.0, 2.0, 3.0],
            [1.0, 2.0, 3.0],
            [1.0, 2.0, 3.0],
            [0.0, 0.0, 0.0],
            [-3.0, 1.0, 0.0],
        ]
    )
    edge_index, edge_weight = knn_item_graph(x, 2)
    src, dst = edge_index.view(2, 5, 2)
    # Ties with duplicates are broken in favour of the item itself; the zero
    # row still gets its self-loop, no NaN anywhere.
    assert torch.equal(src[:, 0], torch.arange(5))
    assert src[0, 1] in (1, 2) and src[1, 1] in (0, 2) and src[2, 1] in (0, 1)
    assert (src[:, 0] != src[:, 1]).all()
    assert torch.isfinite(edge_weight).all()
    assert torch.equal(edge_weight, torch.full((10,), 0.5))

    edge_index, _ = knn_item_graph(x, 1)
    assert torch.equal(edge_index, torch.arange(5).repeat(2, 1))


def test_knn_item_graph_complete_graph_when_k_is_num_items():
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(5))
    edge_index, edge_weight = knn_item_graph(x, 6)
    S = dense_from_edges(edge_index, edge_weight, 6)
    torch.testing.assert_close(S, torch.full((6, 6), 1 / 6))


def test_knn_item_graph_ivf_recall():
    num_items, k = 3000, 10
    x = torch.randn(num_items, 16, generator=torch.Generator().manual_seed(6))
    exact, _ = knn_item_graph(x, k)
    approx, _ = knn_item_graph(x, k, method='ivf', nprobe=64)  # nlist ~ 76.

    exact_nbrs = exact[0].view(num_items, k).tolist()
    approx_nbrs = approx[0].view(num_items, k).tolist()
    hits = sum(len(set(a) & set(b)) for a, b in zip(exact_nbrs, approx_nbrs, strict=True))
    assert hits / (num_items * k) >= 0.9
    assert torch.equal(approx[1], exact[1])  # Still sorted by target.
    assert torch.equal(approx[0].view(num_items, k)[:, 0], torch.arange(num_items))  # Self-loops.


def test_knn_item_graph_ivf_train_size():
    # k-means on a sample of ~800 of 3000 items (40 per list for nlist=20):
    # every item is still indexed and gets its neighbours, the graph is
    # reproducible, and recall against exact search stays high.
    import numpy as np

    from pyg_mentor.utils.knn import _build_index

    num_items, k = 3000, 10
    x = torch.randn(num_items, 16, generator=torch.Generator().manual_seed(6))
    exact, _ = knn_item_graph(x, k)
    approx, _ = knn_item_graph(x, k, method='ivf', nlist=20, nprobe=8, train_size=800)
    again, _ = knn_item_graph(x, k, method='ivf', nlist=20, nprobe=8, train_size=800)
    assert torch.equal(approx, again)
    exact_nbrs = exact[0].view(num_items, k).tolist()
    approx_nbrs = approx[0].view(num_items, k).tolist()
    hits = sum(len(set(a) & set(b)) for a, b in zip(exact_nbrs, approx_nbrs, strict=True))
    assert hits / (num_items * k) >= 0.9
    feats = np.ascontiguousarray(torch.nn.functional.normalize(x, dim=1).numpy())
    index, _ = _build_index(feats, 'ivf', 20, 8, 800)
    assert index.cp.max_points_per_centroid == 40 and index.ntotal == num_items
    index, _ = _build_index(feats, 'ivf', 20, 8, 100)  # at least 39 per list
    assert index.cp.max_points_per_centroid == 39
    with pytest.raises(ValueError, match='train_size'):
        knn_item_graph(x, k, method='ivf', train_size=0)


def test_knn_item_graph_ivf_fills_short_lists():
    # 200 items in 40 lists and nprobe=1: most probed lists hold fewer than
    # k=10 items; those queries are redone over all lists.
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(7))
    with pytest.warns(UserWarning, match='nlist=40'):
        edge_index, _ = knn_item_graph(x, 10, method='ivf', nlist=40, nprobe=1)
    nbrs = edge_index[0].view(200, 10)
    assert (nbrs >= 0).all() and (nbrs < 200).all()
    assert all(len(set(row)) == 10 for row in nbrs.tolist())
    assert torch.equal(nbrs[:, 0], torch.arange(200))


def test_knn_item_graph_ivf_after_faiss_torch_utils():
    # PyG's MIPSKNNIndex imports faiss.contrib.torch_utils, which replaces
    # Index.search (for the whole process) by one without `params=`.
    pytest.importorskip('faiss.contrib.torch_utils')
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(7))
    with pytest.warns(UserWarning, match='nlist=40'):
        edge_index, _ = knn_item_graph(x, 10, method='ivf', nlist=40, nprobe=1)
    nbrs = edge_index[0].view(200, 10)
    assert all(len(set(row)) == 10 for row in nbrs.tolist())
    assert torch.equal(nbrs[:, 0], torch.arange(200))


def test_knn_item_graph_bad_inputs():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match='2-D'):
        knn_item_graph(torch.randn(5), 2)
    with pytest.raises(ValueError, match='2-D'):
        knn_item_graph(torch.randn(2, 5, 3), 2)
    with pytest.raises(ValueError, match='floating-point'):
        knn_item_graph(torch.ones(5, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match='at least one item'):
        knn_item_graph(torch.randn(0, 3), 1)
    bad = x.clone()
    bad[3, 1] = float('nan')
    with pytest.raises(ValueError, match=r'NaN or infinite .* row 3'):
        knn_item_graph(bad, 2)
    bad[3, 1] = float('inf')
    with pytest.raises(ValueError, match='NaN or infinite'):
        knn_item_graph(bad, 2)
    with pytest.raises(ValueError, match=r'1 <= k <= num_items = 5 \(got k=0\)'):
        knn_item_graph(x, 0)
    with pytest.raises(ValueError, match=r'got k=6'):
        knn_item_graph(x, 6)
    with pytest.raises(TypeError, match="'k' must be an integer"):
        knn_item_graph(x, 2.5)
    with pytest.raises(ValueError, match="Unknown method 'hnsw'"):
        knn_item_graph(x, 2, method='hnsw')
    with pytest.raises(ValueError, match="'nlist'"):
        knn_item_graph(x, 2, method='ivf', nlist=6)
    with pytest.raises(ValueError, match="'nprobe'"):
        knn_item_graph(x, 2, nprobe=0)
    with pytest.raises(ValueError, match="'batch_size'"):
        knn_item_graph(x, 2, batch_size=0)
    with pytest.raises(ValueError, match="'num_threads'"):
        knn_item_graph(x, 2, num_threads=0)


def test_fuse_item_graphs_matches_dense():
    num_items = 20
    x1 = random_features(num_items, 6, 3, seed=8)
    x2 = random_features(num_items, 5, 4, seed=9)
    g1 = knn_item_graph(torch.from_numpy(x1).float(), 3)
    g2 = knn_item_graph(torch.from_numpy(x2).float(), 4)
    g3 = (torch.tensor([[0], [1]]), torch.tensor([5.0]))  # Not weighted.

    edge_index, edge_weight = fuse_item_graphs(
        {'image': g1, 'text': g2, 'other': g3}, {'image': 0.1, 'text': 0.9}, num_items
    )

    expected = 0.1 * dense_knn_graph(x1, 3) + 0.9 * dense_knn_graph(x2, 4)
    actual = dense_from_edges(edge_index, edge_weight, num_items)
    torch.testing.assert_close(actual.double(), torch.from_numpy(expected))

    # Coalesced: no duplicate edges, exactly the non-zeros, sorted by target.
    assert edge_index.size(1) == int((expected != 0).sum())
    key = edge_index[1] * num_items + edge_index[0]
    assert (key[1:] > key[:-1]).all()
    # Self-loops are in both graphs: 0.1 / 3 + 0.9 / 4.
    self_loops = edge_index[0] == edge_index[1]
    torch.testing.assert_close(edge_weight[self_loops], torch.full((num_items,), 0.1 / 3 + 0.9 / 4))


def test_fuse_item_graphs_bad_inputs():
    g = (torch.tensor([[0, 1], [1, 0]]), torch.ones(2))
    with pytest.raises(ValueError, match=r"No graph named \['audio'\]"):
        fuse_item_graphs({'image': g}, {'image': 1.0, 'audio': 1.0}, 2)
    with pytest.raises(ValueError, match='empty'):
        fuse_item_graphs({'image': g}, {}, 2)
    with pytest.raises(ValueError, match='outside'):
        fuse_item_graphs({'image': g}, {'image': 1.0}, 1)
    with pytest.raises(ValueError, match='finite'):
        fuse_item_graphs({'image': g}, {'image': float('nan')}, 2)
    with pytest.raises(ValueError, match="'edge_weight' of graph 'image'"):
        fuse_item_graphs({'image': (g[0], torch.ones(3))}, {'image': 1.0}, 2)
