import logging

import numpy as np
import pytest

from pyg_mentor.config import DataConfig, expand_grid
from pyg_mentor.datasets.load import prepare_data
from pyg_mentor.datasets.synthetic import make_planted
from pyg_mentor.nn.models import MENTOR
from pyg_mentor.typing import ITEM, feature_key


def dense_topk_neighbours(x: np.ndarray, k: int) -> list[set[int]]:
    r"""Each item's k most cosine-similar items (itself included), by a dense
    float64 similarity matrix."""
    x = x.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    return [set(np.argsort(-row, kind='stable')[:k].tolist()) for row in sim]


@pytest.mark.parametrize('method', ['exact', 'ivf'])
def test_prepare_data_item_graph_by_method(tmp_path, caplog, method):
    data = make_planted(200, 300, 6.0, modalities={'text': 16}, seed=1)
    config = DataConfig(knn_k=4, knn_method=method)
    with caplog.at_level(logging.INFO, logger='pyg_mentor'):
        out = prepare_data(data, config, item_graph=True, cache_dir=tmp_path)
    assert f'k=4, method={method})' in caplog.text  # the transform used the method

    edge_index = out[ITEM, 'similar_text', ITEM].edge_index
    got = [set() for _ in range(300)]
    for j, i in edge_index.t().tolist():  # row 0: the neighbour, row 1: the item
        got[i].add(j)
    x = data[ITEM][feature_key('text')].numpy()
    # 300 items make 7 IVF lists, all probed (nprobe=16): the search is exact.
    assert got == dense_topk_neighbours(x, 4)
    assert out[ITEM, 'similar', ITEM].edge_index.size(1) > 0


def test_knn_method_option():
    with pytest.raises(ValueError, match="knn_method must be one of \\['exact', 'ivf'\\]"):
        DataConfig(knn_method='hnsw')
    # A data option of every trial, not a model argument (`--set knn_method=ivf`).
    (trial,) = expand_grid(MENTOR, {'knn_method': 'ivf'})
    assert trial.data.knn_method == 'ivf'
    assert 'knn_method' not in trial.model_kwargs
    assert DataConfig().knn_method == 'exact'
