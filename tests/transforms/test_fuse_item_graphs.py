from __future__ import annotations

import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_dense_adj

from pyg_mentor.transforms.fuse_item_graphs import FuseItemGraphs
from pyg_mentor.transforms.modality_knn_graph import ModalityKNNGraph

NUM_ITEMS = 6


def dense(edge_index, edge_weight=None):
    r"""S[i, j] = weight of the edge j -> i."""
    return to_dense_adj(edge_index, edge_attr=edge_weight, max_num_nodes=NUM_ITEMS)[0].t()


def make_data() -> HeteroData:
    data = HeteroData()
    data['item'].num_nodes = NUM_ITEMS
    data['item', 'similar_image', 'item'].edge_index = torch.tensor(
        [[0, 1, 2, 3, 4, 5, 1], [0, 1, 2, 3, 4, 5, 0]]
    )
    data['item', 'similar_image', 'item'].edge_weight = torch.tensor(
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    )
    data['item', 'similar_text', 'item'].edge_index = torch.tensor([[0, 5, 3, 1], [0, 0, 2, 0]])
    data['item', 'similar_text', 'item'].edge_weight = torch.tensor([0.5, 0.25, 1.5, 2.0])
    return data


def test_fuse_item_graphs_equals_weighted_dense_sum():
    data = make_data()
    out = FuseItemGraphs({'image': 0.1, 'text': 0.9})(data)

    image = data['item', 'similar_image', 'item']
    text = data['item', 'similar_text', 'item']
    expected = 0.1 * dense(image.edge_index, image.edge_weight) + 0.9 * dense(
        text.edge_index, text.edge_weight
    )
    fused = out['item', 'similar', 'item']
    torch.testing.assert_close(dense(fused.edge_index, fused.edge_weight), expected)
    # Coalesced: one edge per non-zero, sorted by target then source.
    assert fused.edge_index.size(1) == int((expected != 0).sum())
    key = fused.edge_index[1] * NUM_ITEMS + fused.edge_index[0]
    assert (key[1:] > key[:-1]).all()
    # The per-modality graphs are kept, the input is not modified.
    assert ('item', 'similar_text', 'item') in out.edge_types
    assert ('item', 'similar', 'item') not in data.edge_types


def test_fuse_item_graphs_relation_subset_and_missing_weights():
    data = make_data()
    del data['item', 'similar_text', 'item'].edge_weight  # Counts as ones.
    out = FuseItemGraphs({'text': 2.0}, relation='semantic')(data)
    fused = out['item', 'semantic', 'item']
    text = data['item', 'similar_text', 'item']
    torch.testing.assert_close(
        dense(fused.edge_index, fused.edge_weight), 2.0 * dense(text.edge_index)
    )
    assert ('item', 'similar', 'item') not in out.edge_types


def test_fuse_item_graphs_errors():
    with pytest.raises(ValueError, match=r"'audio'.*similar_audio"):
        FuseItemGraphs({'image': 0.5, 'audio': 0.5})(make_data())
    with pytest.raises(ValueError, match='empty'):
        FuseItemGraphs({})
    with pytest.raises(ValueError, match='finite'):
        FuseItemGraphs({'image': float('inf')})
    with pytest.raises(TypeError):
        FuseItemGraphs()  # No default weights.


def test_fuse_item_graphs_repr():
    assert repr(FuseItemGraphs({'image': 0.1, 'text': 0.9})) == (
        "FuseItemGraphs(weights={'image': 0.1, 'text': 0.9}, relation='similar')"
    )


def test_fuse_item_graphs_compose_with_knn():
    gen = torch.Generator().manual_seed(0)
    data = HeteroData()
    data['item'].num_nodes = 15
    data['item'].x_image = torch.randn(15, 8, generator=gen)
    data['item'].x_text = torch.randn(15, 4, generator=gen)

    transform = T.Compose(
        [
            ModalityKNNGraph(k=3),
            FuseItemGraphs({'image': 0.1, 'text': 0.9}),
        ]
    )
    out = transform(data)

    fused = out['item', 'similar', 'item']
    image = out['item', 'similar_image', 'item']
    text = out['item', 'similar_text', 'item']

    def to_dense(store):
        return to_dense_adj(store.edge_index, edge_attr=store.edge_weight, max_num_nodes=15)[0]

    torch.testing.assert_close(to_dense(fused), 0.1 * to_dense(image) + 0.9 * to_dense(text))
    # Every item keeps its self-loop with weight 0.1 / 3 + 0.9 / 3.
    torch.testing.assert_close(to_dense(fused).diagonal(), torch.full((15,), 1 / 3))
