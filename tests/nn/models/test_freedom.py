r"""FREEDOM against a dense re-derivation of MMRec's FREEDOM written here."""

import pytest
import torch
import torch.nn.functional as F

from pyg_mentor.datasets import user_item_data
from pyg_mentor.nn.models import FREEDOM, get_model_spec

U, I, D = 6, 5, 4  # noqa: E741

EDGES = torch.tensor([[0, 0, 1, 2, 2, 3, 4, 5, 5, 1, 3], [0, 1, 1, 2, 3, 0, 4, 3, 1, 2, 2]])


def tiny_inputs(num_modalities=2):
    g = torch.Generator().manual_seed(0)
    names = ['image', 'text', 'audio'][:num_modalities]
    features = {m: torch.randn(I, 3 + j, generator=g) for j, m in enumerate(names)}
    # A weighted item graph, sources in row 0: S[i, j] = w(j -> i).
    graph_index = torch.tensor([[0, 1, 2, 3, 4, 1, 0], [0, 0, 1, 2, 3, 4, 4]])
    graph_weight = torch.rand(graph_index.size(1), generator=g)
    return features, (graph_index, graph_weight)


def make_model(num_modalities=2, **kwargs):
    features, graph = tiny_inputs(num_modalities)
    torch.manual_seed(0)
    kwargs = {'embedding_dim': D, **kwargs}
    data = user_item_data(U, I, EDGES, features, graph)
    return FREEDOM.from_data(data, **kwargs), data, features, graph


def dense_forward(model, edge_index, graph, num_layers=2):
    r"""LightGCN over D^-1/2 A D^-1/2 of `edge_index` (degrees counted in it),
    mean of the layers, items plus S E_I."""
    a = torch.zeros(U + I, U + I, dtype=torch.float64)
    a[edge_index[0], U + edge_index[1]] = 1
    a[U + edge_index[1], edge_index[0]] = 1
    deg = a.sum(1)
    d = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    a_hat = d.view(-1, 1) * a * d.view(1, -1)
    e = torch.cat([model.user_emb, model.item_emb]).double()
    layers = [e]
    for _ in range(num_layers):
        layers.append(a_hat @ layers[-1])
    out = torch.stack(layers).mean(0)
    s = torch.zeros(I, I, dtype=torch.float64)
    s[graph[0][1], graph[0][0]] = graph[1].double()
    return out[:U], out[U:] + s @ model.item_emb.double()


@pytest.mark.parametrize('num_modalities', [1, 2, 3])
def test_forward_and_scores_on_the_given_graph(num_modalities):
    model, data, _, graph = make_model(num_modalities)
    model.eval()
    user, item = model(data)
    exp_user, exp_item = dense_forward(model, EDGES, graph)
    assert torch.allclose(user.double(), exp_user, atol=1e-6)
    assert torch.allclose(item.double(), exp_item, atol=1e-6)
    scores = model.scorer(data)(torch.tensor([4, 0]))
    assert torch.allclose(scores.double(), exp_user[[4, 0]] @ exp_item.t(), atol=1e-6)


def test_epochs_train_on_a_fresh_pruned_view():
    model, data, _, graph = make_model(dropout=0.5)
    full_user, _ = dense_forward(model, EDGES, graph)
    for seed in (0, 1, 2):  # resampled graphs must not be served from a stale cache
        view = model.on_epoch_start(data, seed, torch.Generator().manual_seed(seed))
        pruned = view['user', 'rates', 'item'].edge_index
        assert pruned.size(1) == int(EDGES.size(1) * 0.5)
        assert torch.equal(
            view['item', 'rated_by', 'user'].edge_index.sort(dim=1)[0],
            pruned.flip(0).sort(dim=1)[0],
        )
        kept = set(map(tuple, pruned.t().tolist()))
        assert kept <= set(map(tuple, EDGES.t().tolist())) and len(kept) == pruned.size(1)
        user, item = model(view)
        exp_user, exp_item = dense_forward(model, pruned, graph)
        assert torch.allclose(user.double(), exp_user, atol=1e-6)
        assert torch.allclose(item.double(), exp_item, atol=1e-6)
        assert not torch.allclose(user.double(), full_user, atol=1e-4)
        # The full graph right after a view is not served from its cache.
        assert torch.allclose(model(data)[0].double(), full_user, atol=1e-6)
    # Same generator state, same graph (reproducible epochs); the data is untouched.
    first = model.on_epoch_start(data, 0, torch.Generator().manual_seed(7))
    again = model.on_epoch_start(data, 0, torch.Generator().manual_seed(7))
    assert torch.equal(
        first['user', 'rates', 'item'].edge_index, again['user', 'rates', 'item'].edge_index
    )
    assert torch.equal(data['user', 'rates', 'item'].edge_index, EDGES)


def test_no_dropout_trains_on_the_full_graph():
    model, data, _, graph = make_model(dropout=0.0)
    view = model.on_epoch_start(data, 0, torch.Generator().manual_seed(0))
    assert view is data
    user, _ = model(view)
    assert torch.allclose(user.double(), dense_forward(model, EDGES, graph)[0], atol=1e-6)


@pytest.mark.parametrize('num_modalities', [1, 2])
def test_loss_equals_dense(num_modalities):
    model, data, features, graph = make_model(num_modalities, reg_weight=0.3)
    view = model.on_epoch_start(data, 0, torch.Generator().manual_seed(3))
    batch = torch.tensor([[0, 5, 5], [1, 3, 0], [4, 4, 2]])  # repeated items
    terms = model.loss(view, batch)
    user, item = dense_forward(model, view['user', 'rates', 'item'].edge_index, graph)
    u = user[batch[0]]

    def bpr(p, n):
        return -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()

    expected = bpr(item[batch[1]], item[batch[2]])
    assert torch.allclose(terms['bpr'].double(), expected, atol=1e-6)
    for m, x in features.items():
        lin = model.projections[m]
        f = x.double() @ lin.weight.double().t() + lin.bias.double()
        term = 0.3 * bpr(f[batch[1]], f[batch[2]])
        assert torch.allclose(terms[f'bpr_{m}'].double(), term, atol=1e-6)
        expected = expected + term
    assert torch.allclose(terms['loss'].double(), expected, atol=1e-6)

    terms['loss'].backward()
    assert model.item_emb.grad.abs().sum() > 0
    # (The bias cancels in a BPR difference: its gradient is zero.)
    assert all(lin.weight.grad.abs().sum() > 0 for lin in model.projections.values())


def test_trainable_feature_copies_as_mmrec():
    model, data, features, _ = make_model(reg_weight=0.1)
    assert not any(k.startswith('feat_') for k, _ in model.named_parameters())
    assert not any(k.startswith('feat_') for k in model.state_dict())
    model, data, features, _ = make_model(reg_weight=0.1, train_features=True)
    model.loss(data, torch.tensor([[0], [1], [2]]))['loss'].backward()
    grad = model.feat_text.grad
    assert grad[[1, 2]].abs().sum() > 0 and grad[[0, 3, 4]].abs().sum() == 0
    assert torch.equal(model.feat_text.detach(), features['text'])  # a copy
    assert 'feat_text' in model.state_dict()


def test_registry_and_clear_errors():
    spec = get_model_spec('freedom')
    assert spec.cls is FREEDOM and FREEDOM.multimodal
    assert spec.grid == {'dropout': [0.8, 0.9], 'reg_weight': [0.0, 1e-5, 1e-4, 1e-3]}
    for key, value in {
        'embedding_dim': 64,
        'num_layers': 2,
        'num_mm_layers': 1,
        'dropout': 0.8,
        'reg_weight': 1e-4,
    }.items():
        assert spec.model_defaults[key] == value
    assert spec.defaults == {'lr': 1e-3}
    with pytest.raises(ValueError, match='at least one modality'):
        FREEDOM(U, I, {})
    with pytest.raises(ValueError, match='dropout'):
        FREEDOM(U, I, {'text': 3}, dropout=1.0)


def test_from_data_takes_the_frozen_item_graph_prepared_with_faiss():
    from pyg_mentor.config import DataConfig
    from pyg_mentor.datasets.load import prepare_data
    from pyg_mentor.datasets.synthetic import make_planted

    data = prepare_data(
        make_planted(num_users=60, num_items=30, seed=0), DataConfig(knn_k=3), item_graph=True
    )
    model = FREEDOM.from_data(data, embedding_dim=8)
    assert model.modalities == ['image', 'text']
    # Every item receives k edges from each modality graph, weights 0.1/k and
    # 0.9/k (summed where both hold the edge): rows sum to 1.
    graph = data['item', 'similar', 'item']
    row_sum = torch.zeros(30).index_add_(0, graph.edge_index[1], graph.edge_weight)
    assert torch.allclose(row_sum, torch.ones(30), atol=1e-6)
    assert torch.isfinite(model(data)[1]).all()
    del data['item'].x_image, data['item'].x_text
    with pytest.raises(ValueError, match='surrogate-features'):
        FREEDOM.from_data(data)


def test_freedom_beats_mf_and_popularity_on_planted_data(popularity_and_random):
    from pyg_mentor.datasets.synthetic import make_planted
    from pyg_mentor.train import train_model

    data = make_planted(num_users=400, num_items=200, seed=0)
    options = {
        'epochs': 15,
        'progress': False,
        'lr': 0.01,
        'batch_size': 256,
        'patience': 100,
        'checkpoint': False,
        'tensorboard': False,
    }
    valid = {
        model: train_model(model, data, options)['valid']['recall@20']
        for model in ('mf_bpr', 'freedom')
    }
    pop, random = popularity_and_random(data)
    # Measured: freedom 0.311, mf_bpr 0.191, popularity 0.248, random 0.124.
    assert valid['freedom'] > max(pop, random) + 0.04, (valid, pop, random)
    assert valid['freedom'] > valid['mf_bpr'] + 0.05, (valid, pop, random)
