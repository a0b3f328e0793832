import math

import torch
import torch.nn.functional as F

from pyg_mentor.datasets import user_item_data
from pyg_mentor.nn.functional import bpr_loss, embedding_norm_loss
from pyg_mentor.nn.models import MFBPR, LightGCN, get_model_spec


def tiny_graph():
    edge_index = torch.tensor([[0, 0, 1, 2, 2, 3], [0, 1, 1, 2, 3, 0]])
    return 4, 5, edge_index  # Item 4 has no training edge.


def dense_norm_adj(edge_index, num_users, num_items):
    n = num_users + num_items
    a = torch.zeros(n, n)
    a[edge_index[0], num_users + edge_index[1]] = 1
    a[num_users + edge_index[1], edge_index[0]] = 1
    deg = a.sum(1)
    d = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return d.view(-1, 1) * a * d.view(1, -1)


def test_bpr_loss_values():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    expected = -(math.log(1 / (1 + math.exp(-1))) + math.log(1 / (1 + math.exp(1)))) / 2
    assert math.isclose(bpr_loss(pos, neg).item(), expected, rel_tol=1e-6)
    assert math.isclose(bpr_loss(pos, neg, base=2).item(), expected / math.log(2), rel_tol=1e-6)


def test_embedding_norm_loss_is_mmrec_emb_loss():
    a, b = torch.ones(2, 3), 2 * torch.ones(2, 3)
    # (||a||_F + ||b||_F) / batch = (sqrt(6) + sqrt(24)) / 2
    assert math.isclose(embedding_norm_loss(a, b).item(), (6**0.5 + 24**0.5) / 2, rel_tol=1e-6)


def test_lightgcn_forward_equals_dense_layer_mean():
    num_users, num_items, edge_index = tiny_graph()
    torch.manual_seed(0)
    model = LightGCN(num_users, num_items, embedding_dim=4, num_layers=3)
    data = user_item_data(num_users, num_items, edge_index)
    user_out, item_out = model(data)
    # Independent re-derivation: dense normalised symmetric adjacency.
    a_hat = dense_norm_adj(edge_index, num_users, num_items)
    e = torch.cat([model.user_emb, model.item_emb]).detach()
    layers = [e]
    for _ in range(3):
        layers.append(a_hat @ layers[-1])
    expected = torch.stack(layers).mean(0)
    assert torch.allclose(torch.cat([user_out, item_out]).detach(), expected, atol=1e-6)


def test_lightgcn_takes_the_graph():
    # The same model object on the full graph and on a subgraph (another graph
    # with the same users and items): each matches its own dense re-derivation.
    num_users, num_items, edge_index = tiny_graph()
    torch.manual_seed(0)
    model = LightGCN(num_users, num_items, embedding_dim=4, num_layers=2)
    e = torch.cat([model.user_emb, model.item_emb]).detach()
    for edges in (edge_index, edge_index[:, [0, 2, 4]], edge_index):
        a_hat = dense_norm_adj(edges, num_users, num_items)
        expected = (e + a_hat @ e + a_hat @ a_hat @ e) / 3
        user_out, item_out = model(user_item_data(num_users, num_items, edges))
        assert torch.allclose(torch.cat([user_out, item_out]).detach(), expected, atol=1e-6)


def test_lightgcn_loss_and_gradient():
    num_users, num_items, edge_index = tiny_graph()
    model = LightGCN(num_users, num_items, embedding_dim=4, num_layers=2, reg_weight=0.1)
    data = user_item_data(num_users, num_items, edge_index)
    batch = torch.tensor([[0, 2], [1, 3], [4, 0]])
    terms = model.loss(data, batch)
    u, i = model(data)
    pos = (u[[0, 2]] * i[[1, 3]]).sum(-1)
    neg = (u[[0, 2]] * i[[4, 0]]).sum(-1)
    bpr = -F.logsigmoid(pos - neg).mean()
    reg = (
        0.1
        * (
            model.user_emb[[0, 2]].norm()
            + model.item_emb[[1, 3]].norm()
            + model.item_emb[[4, 0]].norm()
        )
        / 2
    )
    assert torch.allclose(terms['bpr'], bpr)
    assert torch.allclose(terms['reg'], reg)
    assert torch.allclose(terms['loss'], bpr + reg)
    terms['loss'].backward()
    assert model.user_emb.grad is not None and model.user_emb.grad.abs().sum() > 0


def test_mf_bpr_loss_and_scores():
    model = MFBPR(4, 5, embedding_dim=3, reg_weight=0.5)
    batch = torch.tensor([[0, 1], [2, 3], [4, 4]])
    u, i = model.user_emb.weight, model.item_emb.weight
    pos = (u[[0, 1]] * i[[2, 3]]).sum(-1)
    neg = (u[[0, 1]] * i[[4, 4]]).sum(-1)
    expected = (
        -F.logsigmoid(pos - neg).mean()
        + 0.5 * (u[[0, 1]].norm() + i[[2, 3]].norm() + i[[4, 4]].norm()) / 2
    )
    assert torch.allclose(model.loss(None, batch)['loss'], expected)
    scores = model.scorer(None)(torch.tensor([3]))
    assert torch.allclose(scores, (u[3] @ i.t()).view(1, -1))


def test_recommend_excludes_pairs():
    model = MFBPR(2, 4, embedding_dim=2)
    with torch.no_grad():
        model.user_emb.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model.item_emb.weight.copy_(torch.tensor([[4.0, 0], [3, 0.5], [2, 1], [1, 2]]))
    exclude = torch.tensor([[0, 1], [0, 3]])  # User 0 never gets item 0, user 1 item 3.
    top = model.recommend(None, torch.tensor([0, 1]), k=2, exclude_index=exclude)
    assert top.tolist() == [[1, 2], [2, 1]]


def test_registry():
    spec = get_model_spec('lightgcn')
    assert spec.cls is LightGCN
    assert spec.grid['num_layers'] == [1, 2, 3, 4]
    assert len(spec.grid['reg_weight']) == 5
    assert get_model_spec('mf_bpr').cls is MFBPR
