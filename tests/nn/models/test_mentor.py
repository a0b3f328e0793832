r"""MENTOR against a dense re-derivation written here from the reference
(shared/reference/MENTOR_REFERENCE.md, sections 2-4), not from the model's helpers."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from pyg_mentor.datasets import user_item_data
from pyg_mentor.nn.models import MENTOR

U, I, D = 6, 5, 4  # noqa: E741  (users, items, width)


def tiny_inputs(num_modalities=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.tensor([[0, 0, 1, 2, 2, 3, 4, 5, 5], [0, 1, 1, 2, 3, 0, 4, 3, 1]])
    names = ['image', 'text', 'audio'][:num_modalities]
    features = {m: torch.randn(I, 3 + j, generator=gen) for j, m in enumerate(names)}
    # A small weighted item graph, sources in row 0: S[i, j] = w(j -> i).
    graph_index = torch.tensor([[0, 1, 2, 3, 4, 1, 0], [0, 0, 1, 2, 3, 4, 4]])
    graph_weight = torch.rand(graph_index.size(1), generator=gen)
    return edge_index, features, (graph_index, graph_weight)


def dense_a_hat(edge_index):
    a = torch.zeros(U + I, U + I, dtype=torch.float64)
    a[edge_index[0], U + edge_index[1]] = 1
    a[U + edge_index[1], edge_index[0]] = 1
    deg = a.sum(1)
    d = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return d.view(-1, 1) * a * d.view(1, -1)


def dense_encoder(enc, item_input, a_hat):
    w1, b1 = enc.mlp[0].weight.double(), enc.mlp[0].bias.double()
    w2, b2 = enc.mlp[2].weight.double(), enc.mlp[2].bias.double()
    mlp = F.leaky_relu(item_input.double() @ w1.t() + b1, 0.01) @ w2.t() + b2
    x = torch.cat([enc.preference.double(), mlp])
    x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-12)
    h1 = a_hat @ x
    h2 = a_hat @ h1
    out = x + h1 + h2
    return out[:U], out[U:]


def dense_views(model, edge_index, features, graph):
    a_hat = dense_a_hat(edge_index)
    s = torch.zeros(I, I, dtype=torch.float64)
    s[graph[0][1], graph[0][0]] = graph[1].double()
    names = sorted(features)
    z = {'id': dense_encoder(model.encoders['id'], model.item_id, a_hat)}
    for m in names:
        for view in (m, f'{m}_n1', f'{m}_n2'):
            z[view] = dense_encoder(model.encoders[view], features[m], a_hat)
    w = model.user_modality_weight.double()

    def fuse(suffix=''):
        user = torch.cat([w[:, j : j + 1] * z[m + suffix][0] for j, m in enumerate(names)], 1)
        item = torch.cat([z[m + suffix][1] for m in names], 1)
        return user, item + s @ item

    def repeat(view):
        user, item = z[view]
        user, item = user.repeat(1, len(names)), item.repeat(1, len(names))
        return user, item + s @ item

    out = {'fused': fuse(), 'guide': repeat('id'), 'noise1': fuse('_n1'), 'noise2': fuse('_n2')}
    out.update({m: repeat(m) for m in names})
    return out


def dense_info_nce(a, b, tau):
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    logits = a @ b.t() / tau
    return (-logits.diag() + logits.logsumexp(dim=1)).mean()


def make_model(num_modalities=2, **kwargs):
    edge_index, features, graph = tiny_inputs(num_modalities)
    torch.manual_seed(0)
    kwargs = {'embedding_dim': D, 'noise_eps': 0.0, 'dropout': 0.0, **kwargs}
    dims = {m: x.size(1) for m, x in features.items()}
    model = MENTOR(U, I, dims, **kwargs)
    return model, user_item_data(U, I, edge_index, features, graph), edge_index, features, graph


@pytest.mark.parametrize('num_modalities', [1, 2, 3])
def test_forward_equals_dense_rederivation(num_modalities):
    model, data, edge_index, features, graph = make_model(num_modalities)
    assert len(model.encoders) == 1 + 3 * num_modalities
    user, item = model(data)
    expected = dense_views(model, edge_index, features, graph)['fused']
    assert user.shape == (U, D * num_modalities)
    assert torch.allclose(user.double(), expected[0], atol=1e-5)
    assert torch.allclose(item.double(), expected[1], atol=1e-5)
    reps = model.representations(data)
    dense = dense_views(model, edge_index, features, graph)
    for key in dense:
        assert torch.allclose(reps[key][0].double(), dense[key][0], atol=1e-5), key
        assert torch.allclose(reps[key][1].double(), dense[key][1], atol=1e-5), key


@pytest.mark.parametrize('num_modalities', [1, 2, 3])
def test_loss_terms_equal_dense_rederivation(num_modalities):
    model, data, edge_index, features, graph = make_model(
        num_modalities,
        reg_weight=0.3,
        align_weight=0.2,
        mask_weight=1.5,
        cl_weight=0.7,
        temperature=0.4,
        cl_chunk_size=2,
    )
    batch = torch.tensor([[0, 2, 5], [1, 3, 3], [4, 0, 2]])
    terms = model.loss(data, batch)
    dense = dense_views(model, edge_index, features, graph)
    names = sorted(features)

    user, item = dense['fused']
    u = user[batch[0]]
    diff = (u * item[batch[1]]).sum(1) - (u * item[batch[2]]).sum(1)
    bpr = -(torch.sigmoid(diff).log() / math.log(2)).mean()
    assert torch.allclose(terms['bpr'].double(), bpr, rtol=1e-5)

    reg = sum(model.encoders[m].preference[batch[0]].double().pow(2).mean() for m in names)
    reg = 0.3 * (reg + model.user_modality_weight.double().pow(2).mean())
    assert torch.allclose(terms['reg'].double(), reg, rtol=1e-5)

    full = {k: torch.cat(dense[k]) for k in ['guide', 'fused', *names]}
    align = sum(
        abs(full[a].var() - full[b].var()) + abs(full[a].mean() - full[b].mean())
        for a, b in itertools.combinations(full, 2)
    )
    assert torch.allclose(terms['align'].double(), 0.2 * align, rtol=1e-5)

    m_w, m_b = model.mask_map.weight.double(), model.mask_map.bias.double()
    mask = sum(1 - F.cosine_similarity(x, x @ m_w.t() + m_b, dim=1).mean() for x in dense['fused'])
    assert torch.allclose(terms['mask'].double(), 1.5 * mask, rtol=1e-5)

    cl = 0.7 * (
        dense_info_nce(dense['noise1'][0], dense['noise2'][0], 0.4)
        + dense_info_nce(dense['noise1'][1], dense['noise2'][1], 0.4)
    )
    assert torch.allclose(terms['cl'].double(), cl, rtol=1e-5)
    total = terms['bpr'] + terms['reg'] + terms['align'] + terms['mask'] + terms['cl']
    assert torch.allclose(terms['loss'], total)


def test_feature_mask_gradient_flag():
    batch = torch.tensor([[0, 2], [1, 3], [4, 0]])
    model, data, *_ = make_model(feature_mask_grad=True)
    model.loss(data, batch)['loss'].backward()
    assert model.mask_map.weight.grad is not None
    assert model.mask_map.weight.grad.abs().sum() > 0

    release, *_ = make_model()  # The default, as the release.
    terms = release.loss(data, batch)
    terms['loss'].backward()
    assert release.mask_map.weight.grad is None  # The release never trains M.
    assert not terms['mask'].requires_grad
    assert torch.allclose(terms['mask'], model.loss(data, batch)['mask'])


def test_cl_scope_batch_uses_batch_rows_only():
    model, data, edge_index, features, graph = make_model(cl_scope='batch', cl_weight=1.0)
    batch = torch.tensor([[0, 2, 2], [1, 3, 3], [4, 0, 1]])
    dense = dense_views(model, edge_index, features, graph)
    users, items = torch.tensor([0, 2]), torch.tensor([0, 1, 3, 4])
    expected = dense_info_nce(
        dense['noise1'][0][users], dense['noise2'][0][users], 0.2
    ) + dense_info_nce(dense['noise1'][1][items], dense['noise2'][1][items], 0.2)
    assert torch.allclose(model.loss(data, batch)['cl'].double(), expected, rtol=1e-5)


def test_noise_views_are_perturbed_only_in_training():
    model, data, *_ = make_model(noise_eps=0.1)
    z = model.encode(data, ['image_n1'])['image_n1'][0]
    clean = model.encoders['image_n1'].noise
    assert clean is not None and clean.eps == 0.1
    model.eval()
    z_eval = model.encode(data, ['image_n1'])['image_n1'][0]
    assert not torch.allclose(z, z_eval)
    assert torch.allclose(z_eval, model.encode(data, ['image_n1'])['image_n1'][0])


def test_eval_scores_recomputed_or_cached_as_released():
    batch = torch.tensor([[0, 2], [1, 3], [4, 0]])
    for cached in (False, True):
        model, data, *_ = make_model(eval_cached_embeddings=cached)
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        model.loss(data, batch)['loss'].backward()
        stale_user, stale_item = (t.detach().clone() for t in model(data))
        opt.step()
        model.eval()
        scores = model.scorer(data)(torch.arange(U))
        fresh_user, fresh_item = model(data)
        expected = (stale_user @ stale_item.t()) if cached else fresh_user @ fresh_item.t()
        assert torch.allclose(scores, expected, atol=1e-6)


def test_from_data_takes_the_item_graph_prepared_with_faiss():
    from pyg_mentor.config import DataConfig
    from pyg_mentor.datasets.load import prepare_data
    from pyg_mentor.datasets.synthetic import make_planted

    raw = make_planted(num_users=60, num_items=30, seed=0)
    with pytest.raises(ValueError, match='prepare_data'):
        MENTOR.from_data(raw, embedding_dim=8)(raw)
    data = prepare_data(raw, DataConfig(knn_k=3), item_graph=True)
    model = MENTOR.from_data(data, embedding_dim=8)
    assert model.modalities == ['image', 'text']
    # Every item receives k edges from each of two modality graphs, weights 0.1/k
    # and 0.9/k (summed where both graphs hold the edge): rows sum to 1.
    graph = data['item', 'similar', 'item']
    row_sum = torch.zeros(30).index_add_(0, graph.edge_index[1], graph.edge_weight)
    assert torch.allclose(row_sum, torch.ones(30), atol=1e-6)
    loss = model.loss(
        data,
        torch.stack(
            [
                data['user', 'rates', 'item'].edge_index[0, :8],
                data['user', 'rates', 'item'].edge_index[1, :8],
                torch.arange(8),
            ]
        ),
    )['loss']
    assert torch.isfinite(loss)


def test_rejects_bad_inputs():
    edge_index, features, graph = tiny_inputs()
    with pytest.raises(ValueError, match='at least one modality'):
        MENTOR(U, I, {})
    with pytest.raises(ValueError, match='cl_scope'):
        MENTOR(U, I, {'image': 3}, cl_scope='users')
    model = MENTOR(U, I, {'image': 3})
    bad = user_item_data(U, I, edge_index, {'image': torch.randn(I + 1, 3)}, graph)
    with pytest.raises(ValueError, match="'image'"):
        model(bad)
    with pytest.raises(ValueError, match='item graph'):
        model(user_item_data(U, I, edge_index, {'image': torch.randn(I, 3)}))


def test_mentor_beats_lightgcn_and_mf_on_planted_data():
    r"""The planted features carry item-factor signal that only MENTOR uses."""
    from pyg_mentor.datasets.synthetic import make_planted
    from pyg_mentor.train import train_model

    data = make_planted(num_users=400, num_items=200, seed=0)
    options = {
        'epochs': 12,
        'progress': False,
        'lr': 0.01,
        'batch_size': 256,
        'patience': 100,
        'checkpoint': False,
        'valid_metric': 'recall@20',
    }
    valid = {
        model: train_model(model, data, options)['valid']['recall@20']
        for model in ('mf_bpr', 'lightgcn', 'mentor')
    }
    assert valid['mentor'] > valid['lightgcn'] + 0.01, valid
    assert valid['mentor'] > valid['mf_bpr'] + 0.01, valid
