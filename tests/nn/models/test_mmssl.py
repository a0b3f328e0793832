r"""MMSSL against dense re-derivations written here from the reference
(shared/reference/MMSSL_AND_EVAL_PROTOCOL.md, part A), not from the model's
helpers; the fixed and the release-compatible variants both, and where the
release is wrong a test that shows the difference."""

import copy
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from pyg_mentor.nn.functional import grace_nce
from pyg_mentor.nn.models import MMSSL
from pyg_mentor.nn.models.mmssl_modules import Discriminator, GeneratedGraph
from pyg_mentor.typing import ITEM, RATED_BY, RATES, USER

U, I, D = 6, 8, 8  # noqa: E741  (users, items, width); I / 8 = 1 keeps D valid
EDGE_INDEX = torch.tensor([[0, 0, 1, 2, 2, 3, 4, 5, 5, 1], [0, 1, 1, 2, 3, 0, 4, 3, 1, 5]])


def tiny_data(edge_index=EDGE_INDEX):
    r"""The tiny graph: training pairs both ways and two modalities."""
    gen = torch.Generator().manual_seed(0)
    data = HeteroData()
    data[USER].num_nodes = U
    data[ITEM].num_nodes = I
    data[ITEM].x_image = torch.randn(I, 5, generator=gen)
    data[ITEM].x_text = torch.randn(I, 3, generator=gen)
    data[RATES].edge_index = edge_index
    data[RATED_BY].edge_index = edge_index.flip(0)
    return data


def tiny(seed=0, **kwargs):
    r"""The tiny model and its data; :obj:`seed` changes the initialisation
    only. The generated graphs are not set up yet."""
    data = tiny_data()
    torch.manual_seed(seed)
    options = dict(embedding_dim=D, num_heads=2, graph_topk_rate=0.25)  # k = 2
    options.update(kwargs)
    return MMSSL.from_data(data, **options), data


def features_of(data):
    return {'image': data[ITEM].x_image, 'text': data[ITEM].x_text}


def dense_r(edge_index):
    r = torch.zeros(U, I, dtype=torch.float64)
    r[edge_index[0], edge_index[1]] = 1
    return r


def dense_norm(a, one_sided):
    r"""(item -> user, user -> item) propagation matrices of a weighted A."""
    du, di = a.sum(1), a.sum(0)
    if one_sided:  # csr_norm(mean_flag=True): D_row^{-1/2} M with 1e-8
        return a / (du + 1e-8).sqrt().view(-1, 1), a.t() / (di + 1e-8).sqrt().view(-1, 1)
    inv_u = torch.where(du > 0, du.pow(-0.5), torch.zeros_like(du))
    inv_i = torch.where(di > 0, di.pow(-0.5), torch.zeros_like(di))
    ui = inv_u.view(-1, 1) * a * inv_i.view(1, -1)
    return ui, ui.t()


def dense_generated(model, m):
    edge_index, weight = model.generated.graph(m)
    g = torch.zeros(U, I, dtype=torch.float64)
    g.index_put_((edge_index[0], edge_index[1]), weight.double(), accumulate=True)
    return g


def dense_attention(model, s, release):
    r"""s: [M, N, d]. Loops over nodes and heads."""
    num_mod, n, d = s.shape
    h = model.num_heads
    dh = d // h
    w_q, w_k, w_cat = (model.w_q.double(), model.w_k.double(), model.w_cat.double())
    out = torch.zeros_like(s)
    for node in range(n):
        x = s[:, node]  # [M, d]
        heads = []
        for head in range(h):
            cols = slice(head * dh, (head + 1) * dh)
            q = x @ w_q[:, cols]
            k = q if release else x @ w_k[:, cols]  # release: K taken from Q
            att = torch.softmax(q @ k.t() / math.sqrt(dh), dim=1)  # [a, b]
            if release:  # V broadcast on the query axis: sum_b att[a, b] x[a]
                heads.append(att.sum(1, keepdim=True) * x)
            else:
                heads.append(att @ x)
        out[:, node] = torch.cat(heads, dim=1) @ w_cat
    return out


def dense_forward(model, edge_index, features, release=False, symmetric=False):
    r"""Eval-mode forward pass (no dropout), float64, on the training pairs
    :obj:`edge_index` and the model's generated graphs."""
    a_ui, a_iu = dense_norm(dense_r(edge_index), not symmetric)
    e_u, e_i = model.user_emb.double(), model.item_emb.double()
    out = {'h_u': {}, 'h_i': {}, 'p_u': {}, 'p_i': {}}
    for m in model.modalities:
        lin = model.proj[m]
        f = features[m].double() @ lin.weight.double().t() + lin.bias.double()
        h_i = f
        for _ in range(model.num_feature_layers):
            h_u = a_ui @ (f if release else h_i)
            h_i = a_iu @ h_u
        out['h_u'][m], out['h_i'][m] = h_u, h_i
        g_ui, g_iu = dense_norm(dense_generated(model, m), not symmetric)
        out['p_u'][m], out['p_i'][m] = g_ui @ e_i, g_iu @ e_u
    mods = model.modalities
    z_u = dense_attention(model, torch.stack([out['p_u'][m] for m in mods]), release)
    z_i = dense_attention(model, torch.stack([out['p_i'][m] for m in mods]), release)
    u0 = e_u + model.id_cat_rate * F.normalize(z_u.mean(0), dim=1)
    i0 = e_i + model.id_cat_rate * F.normalize(z_i.mean(0), dim=1)
    u1 = a_ui @ i0
    i1 = a_iu @ u1
    u2 = torch.softmax(a_ui @ i1, dim=1)
    i2 = torch.softmax(a_iu @ u2, dim=1)
    user, item = (u0 + u1 + u2) / 3, (i0 + i1 + i2) / 3
    for m in mods:
        user = user + model.model_cat_rate * F.normalize(out['h_u'][m], dim=1)
        item = item + model.model_cat_rate * F.normalize(out['h_i'][m], dim=1)
    out['user'], out['item'] = user, item
    return out


def u_sim(user, item, rows):
    s = (user @ item.t()) * (1 - rows)
    return s / s.norm(dim=1, keepdim=True).clamp(min=1e-12)


def dense_disc(disc, x, slope):
    r"""The discriminator in eval mode, from its weights."""
    lin = [m for m in disc.net if isinstance(m, torch.nn.Linear)]
    bns = [m for m in disc.net if isinstance(m, torch.nn.BatchNorm1d)]
    for j in range(2):
        x = x @ lin[j].weight.double().t() + lin[j].bias.double()
        x = torch.where(x > 0, x, slope * x)
        bn = bns[j]
        x = (x - bn.running_mean.double()) / (
            bn.running_var.double() + bn.eps
        ).sqrt() * bn.weight.double() + bn.bias.double()
    x = x @ lin[2].weight.double().t() + lin[2].bias.double()
    return 100 * torch.sigmoid(x).view(-1)


def dense_grace(a, p, tau, eps=1e-8):
    a, p = F.normalize(a, dim=1), F.normalize(p, dim=1)
    f = lambda x: torch.exp(x / tau)  # noqa: E731
    refl, between = f(a @ a.t()), f(a @ p.t())
    ratio = between.diag() / (refl.sum(1) + between.sum(1) - refl.diag())
    return -torch.log(ratio + eps).mean()


# Graph normalisation and construction #########################################


@pytest.mark.parametrize('one_sided', [False, True])
def test_graph_weights_match_dense(one_sided):
    from pyg_mentor.nn.models.mmssl import graph_weights

    edge_index = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 0, 3]])
    weight = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0], dtype=torch.float64)
    a = torch.zeros(U, I, dtype=torch.float64)
    a[edge_index[0], edge_index[1]] = weight
    ui, iu = dense_norm(a, one_sided)
    w_ui, w_iu = graph_weights(edge_index, weight, U, I, one_sided)
    assert torch.allclose(w_ui, ui[edge_index[0], edge_index[1]])
    assert torch.allclose(w_iu, iu[edge_index[1], edge_index[0]])


def test_generated_graph_is_every_users_topk():
    model, data = tiny()
    assert model.topk == 2
    assert not model.generated.initialized
    model.eval()
    model(data)  # The first call sets the graphs up from `data`.
    assert model.generated.initialized
    ref = dense_forward(model, EDGE_INDEX, features_of(data))  # H: base graph only
    rows = dense_r(EDGE_INDEX)
    for m in model.modalities:
        scores = u_sim(ref['h_u'][m], ref['h_i'][m], rows)
        graph = dense_generated(model, m)
        assert torch.equal(graph.sum(1), torch.full((U,), 2.0, dtype=torch.float64))
        for u in range(U):
            expected = set(scores[u].topk(2).indices.tolist())
            assert set(graph[u].nonzero().view(-1).tolist()) == expected
    # reset_parameters() forgets them; the next call sets them up again.
    model.reset_parameters()
    assert not model.generated.initialized
    assert model.generated.graph('image')[0].size(1) == 0
    model(data)
    assert model.generated.graph('image')[0].size(1) == U * 2


def test_release_pairing_scrambles_pairs():
    users = torch.tensor([3, 0, 5])
    scores = torch.tensor(
        [
            [0.9, 0.8, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.9, 0.8, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.9, 0.8, 0.0, 0.0],
        ]
    )
    top = {3: {0, 1}, 0: {2, 3}, 5: {4, 5}}
    # Release: tile(users, k) against the row-major top-k, pair j is
    # (users[j % 3], flat[j]) with flat = [0, 1, 2, 3, 4, 5].
    scrambled = {3: {0, 3}, 0: {1, 4}, 5: {2, 5}}
    for release, expected in ((False, top), (True, scrambled)):
        model, data = tiny(release_pairing=release)
        model.reset_generated_graphs(data)
        model.generated.update(users, {m: scores for m in model.modalities})
        g = dense_generated(model, 'image')
        got = {u: set(g[u].nonzero().view(-1).tolist()) for u in (3, 0, 5)}
        assert got == expected
    # Where the release is wrong: user 3's edges are not its top-2 items.
    assert scrambled[3] != top[3]


def test_release_schedule_empties_the_graph_and_fixed_one_does_not():
    scores = torch.rand(U, I)
    users = torch.arange(U)
    release, data = tiny(release_graph_schedule=True)
    fixed, _ = tiny()
    sizes = {'release': [], 'fixed': []}
    for model, key in ((release, 'release'), (fixed, 'fixed')):
        model.reset_generated_graphs(data)
        assert model.on_epoch_start(data, 0, torch.Generator()) is data
        sizes[key].append(model.generated.graph('text')[0].size(1))
        for _ in range(4):
            model.generated.update(users, {m: scores for m in model.modalities})
            sizes[key].append(model.generated.graph('text')[0].size(1))
    # Release (T = 1): the training graph (10 pairs), idx 0 accumulates,
    # idx 1 installs idx 0's U * k pairs, every later batch installs nothing.
    assert sizes['release'] == [10, 10, U * 2, 0, 0]
    assert sizes['fixed'] == [U * 2] * 5
    # An empty graph makes the modality-ID embeddings zero and the
    # contrastive term a constant log(2B - 1) without gradient.
    out = release.embed(data)
    assert out.gen_user['text'].abs().sum() == 0
    anchor = out.gen_user['text'][:4]
    positive = out.user[:4]
    cl = grace_nce(anchor, positive, 0.5)
    assert cl.item() == pytest.approx(math.log(2 * 4 - 1), abs=1e-5)


def test_topk_is_zero_on_baby_in_the_release_only():
    # k = int(7050 * 1e-4) = 0 on Baby: the release builds empty graphs.
    for release, k in ((True, 0), (False, 1)):
        model, _ = tiny(graph_topk_rate=1e-4, release_graph_schedule=release)
        assert model.topk == k


# Forward pass #################################################################


@pytest.mark.parametrize(
    'release,symmetric', [(False, False), (False, True), (True, False), (True, True)]
)
def test_forward_matches_dense(release, symmetric):
    model, data = tiny(release_compat=release, symmetric_norm=symmetric)
    if release:  # a non-trivial (scrambled) generated graph
        model.reset_generated_graphs(data)
        model.on_epoch_start(data, 0, torch.Generator())
        for _ in range(2):
            model.generated.update(torch.arange(U), {m: torch.rand(U, I) for m in model.modalities})
    model.eval()
    out = model.embed(data)
    ref = dense_forward(model, EDGE_INDEX, features_of(data), release, symmetric)
    assert torch.allclose(out.user.double(), ref['user'], atol=1e-5)
    assert torch.allclose(out.item.double(), ref['item'], atol=1e-5)
    for m in model.modalities:
        assert torch.allclose(out.feat_user[m].double(), ref['h_u'][m], atol=1e-5)
        assert torch.allclose(out.gen_item[m].double(), ref['p_i'][m], atol=1e-5)
    user, item = model(data)
    assert torch.equal(model.scorer(data)(torch.tensor([1, 4])), (user @ item.t())[[1, 4]])


def test_the_graph_is_an_argument():
    # The same model on the training graph, on a subgraph and on the training
    # graph again: each is the dense forward of its graph (the propagation
    # caches follow the graph), and nothing of the graph is in the model.
    model, data = tiny()
    model.eval()
    model(data)
    keep = torch.tensor([0, 1, 2, 4, 6, 7, 8])
    sub = tiny_data(EDGE_INDEX[:, keep])
    for graph, edge_index in ((data, EDGE_INDEX), (sub, EDGE_INDEX[:, keep]), (data, EDGE_INDEX)):
        user, item = model(graph)
        ref = dense_forward(model, edge_index, features_of(graph))
        assert torch.allclose(user.double(), ref['user'], atol=1e-5)
        assert torch.allclose(item.double(), ref['item'], atol=1e-5)
    assert not torch.allclose(model(sub)[0], model(data)[0], atol=1e-3)
    keys = model.state_dict().keys()
    assert not [k for k in keys if k.endswith('edge_index') and 'generated' not in k]
    assert not [k for k in keys if 'feat_' in k or k.startswith('x_')]


def test_feature_layers_chain_except_in_the_release():
    for release in (False, True):
        model, data = tiny(num_feature_layers=2, release_feature_layers=release)
        model.eval()
        h = model.embed(data).feat_item['image'].double()
        ref = dense_forward(model, EDGE_INDEX, features_of(data), release=False)
        one_layer, _ = tiny(release_feature_layers=release)
        one_layer.eval()
        one_layer(data)
        one = dense_forward(one_layer, EDGE_INDEX, features_of(data))['h_i']['image']
        if release:  # restarts from F: 2 layers = 1 layer
            assert torch.allclose(h, one, atol=1e-5)
        else:
            assert torch.allclose(h, ref['h_i']['image'], atol=1e-5)
            assert not torch.allclose(h, one, atol=1e-3)


def test_release_attention_collapses_to_one_linear_map():
    model, _ = tiny()
    s = torch.randn(2, 5, D)
    # The release: Z = S W', W' = sum of W_cat's row blocks, whatever W_q.
    w_prime = model.w_cat.view(model.num_heads, D, D).sum(0)
    model.release['attention'] = True
    released = model.attention(s)
    assert torch.allclose(released, s @ w_prime, atol=1e-5)
    assert torch.allclose(released.double(), dense_attention(model, s.double(), True), atol=1e-5)
    with torch.no_grad():
        model.w_q.mul_(3)
    assert torch.allclose(model.attention(s), released, atol=1e-5)
    # Fixed: a real attention over modalities, which depends on W_q and W_k.
    model.release['attention'] = False
    fixed = model.attention(s)
    assert torch.allclose(fixed.double(), dense_attention(model, s.double(), False), atol=1e-5)
    assert not torch.allclose(fixed, released, atol=1e-3)


# Losses #######################################################################


@pytest.mark.parametrize('chunk_size', [None, 3, 64])
def test_grace_nce_matches_dense_with_gradients(chunk_size):
    a = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    ours = grace_nce(a, p, 0.5, chunk_size)
    ref = dense_grace(a, p, 0.5)
    assert torch.allclose(ours, ref)
    g_ours = torch.autograd.grad(ours, (a, p))
    g_ref = torch.autograd.grad(ref, (a, p))
    for x, y in zip(g_ours, g_ref):
        assert torch.allclose(x, y)
    # Small temperatures do not overflow (both sides scaled by exp(-1/tau)).
    assert torch.isfinite(grace_nce(a.float(), p.float(), 0.005, chunk_size))


@pytest.mark.parametrize('slope', [0.01, 1.0])
def test_discriminator_matches_dense(slope):
    torch.manual_seed(0)
    disc = Discriminator(I, negative_slope=slope)
    disc.train()
    disc(torch.randn(16, I))  # non-trivial running statistics
    disc.eval()
    x = torch.randn(5, I, dtype=torch.float64)
    assert torch.allclose(disc.double()(x), dense_disc(disc, x, slope))
    if slope == 1.0:  # the release's LeakyReLU(True): the net is affine
        a, b = torch.randn(1, I, dtype=torch.float64), torch.randn(1, I, dtype=torch.float64)
        logit = lambda z: torch.logit(disc(z) / 100)  # noqa: E731
        mid = logit((a + b) / 2)
        assert torch.allclose(mid, (logit(a) + logit(b)) / 2, atol=1e-6)


@pytest.mark.parametrize('release', [False, True])
def test_discriminator_loss_matches_dense(release):
    model, data = tiny(release_compat=release)
    model.eval()  # no dropout; D's batch norm on running statistics
    model.reset_generated_graphs(data)
    users = torch.tensor([0, 2, 5])
    torch.manual_seed(1)
    ours = model.discriminator_loss(data, users)

    ref = dense_forward(model, EDGE_INDEX, features_of(data), release)
    rows = dense_r(EDGE_INDEX)[users]
    fused = u_sim(ref['user'][users], ref['item'], rows)
    fake = torch.cat([u_sim(ref['h_u'][m][users], ref['h_i'][m], rows) for m in model.modalities])
    torch.manual_seed(1)
    noise = torch.rand(3, I).double()
    alpha = torch.rand(6, 1).double()
    gumbel = -torch.log(-torch.log(noise + 1e-8) + 1e-8)
    r = torch.softmax((rows + 1e-5 * gumbel) / 0.005, dim=1) + 100 * fused
    r = r / r.norm(dim=1, keepdim=True)
    real = torch.cat([r, r])
    slope = 1.0 if release else 0.01
    disc = model.discriminator.double()
    x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(dense_disc(disc, x, slope).sum(), x)
    gp = ((grad.norm(dim=1) - 1) ** 2).mean()
    expected = (
        -dense_disc(disc, real, slope).mean() + dense_disc(disc, fake, slope).mean() + 0.3 * gp
    )
    assert ours.item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize('release', [False, True])
def test_recommender_loss_matches_dense(release):
    model, data = tiny(release_compat=release)
    model.eval()
    batch = torch.tensor([[0, 2, 2, 5], [1, 3, 2, 3], [4, 6, 7, 0]])
    terms = model.loss(data, batch)

    ref = dense_forward(model, EDGE_INDEX, features_of(data), release)
    users, pos, neg = batch
    u, ip, ineg = ref['user'][users], ref['item'][pos], ref['item'][neg]
    bpr = -torch.log(torch.sigmoid((u * ip).sum(1) - (u * ineg).sum(1))).mean()
    emb = 1e-5 * 0.5 * (u.pow(2).sum() + ip.pow(2).sum() + ineg.pow(2).sum()) / 4
    feat = (
        1e-5
        * 0.5
        * sum(ref['h_u'][m].pow(2).sum() + ref['h_i'][m].pow(2).sum() for m in model.modalities)
        / I
    )
    distinct = torch.tensor([0, 2, 5])
    rows = dense_r(EDGE_INDEX)[distinct]
    gen = torch.cat([u_sim(ref['h_u'][m][distinct], ref['h_i'][m], rows) for m in model.modalities])
    adv = -dense_disc(model.discriminator.double(), gen, 1.0 if release else 0.01).mean()
    cl = sum(
        dense_grace(ref['p_u'][m][distinct], ref['user'][distinct], 0.5) for m in model.modalities
    )
    expected = {
        'bpr': bpr,
        'emb': emb,
        'feat': feat,
        'cl': cl,
        'adv': adv,
        'loss': bpr + emb + feat + 0.03 * cl + 1e-4 * adv,
    }
    for key, value in expected.items():
        assert terms[key].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-9), key


# Training step ################################################################

BATCH = torch.tensor([[0, 2, 2, 5, 1], [1, 3, 2, 3, 5], [4, 6, 7, 0, 2]])


def _seed(s):
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s)


class HandDecayAdam(torch.optim.Adam):
    r"""The package's former recommender update, written out: Adam after
    :math:`\theta \leftarrow \theta(1 - \eta\lambda)` on every parameter with a
    gradient (``MMSSL.train_step`` before the trainer owned the optimisers)."""

    def __init__(self, params, lr, decay):
        super().__init__(params, lr=lr)
        self.decay = decay

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is not None:
                    p.mul_(1 - group['lr'] * self.decay)
        return super().step(closure)


def recommender_parameters(model):
    return [p for n, p in model.named_parameters() if not n.startswith('discriminator.')]


def test_configure_optimizers_is_the_release_adamw_and_its_adam_for_d():
    model, _ = tiny(d_lr=2e-4)
    optimizer, d_optimizer = model.configure_optimizers(1e-2)
    recommender = recommender_parameters(model)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [p for g in optimizer.param_groups for p in g['params']] == recommender
    assert optimizer.defaults['lr'] == 1e-2
    assert optimizer.defaults['weight_decay'] == 0.01  # PyTorch's AdamW default
    assert type(d_optimizer) is torch.optim.Adam
    assert [p for g in d_optimizer.param_groups for p in g['params']] == list(
        model.discriminator.parameters()
    )
    assert d_optimizer.defaults['lr'] == 2e-4
    assert d_optimizer.defaults['betas'] == (0.5, 0.9)
    assert d_optimizer.defaults['weight_decay'] == 0
    # A coupled decay is Adam's, and only without the decoupled one.
    with pytest.raises(ValueError, match='decoupled_weight_decay=0'):
        model.configure_optimizers(1e-2, weight_decay=1e-3)
    model, _ = tiny(decoupled_weight_decay=0.0)
    optimizer = model.configure_optimizers(1e-2, weight_decay=1e-3)[0]
    assert type(optimizer) is torch.optim.Adam
    assert optimizer.defaults['weight_decay'] == 1e-3
    with pytest.raises(ValueError, match='two optimisers'):
        model.train_step(tiny_data(), BATCH, [optimizer])


@pytest.mark.parametrize('release', [False, True])
def test_train_step_with_adamw_equals_the_hand_written_decay(release):
    # Bit for bit: AdamW(weight_decay=0.01) decays before its Adam update,
    # exactly as the former hand-written decay did.
    model, data = tiny(release_compat=release)
    twin = copy.deepcopy(model)
    model.train()
    twin.train()
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    optimizers = model.configure_optimizers(1e-2)
    twin_optimizers = [
        HandDecayAdam(recommender_parameters(twin), 1e-2, 0.01),
        torch.optim.Adam(twin.discriminator.parameters(), lr=3e-4, betas=(0.5, 0.9)),
    ]
    for step in range(3):
        _seed(step)
        terms = model.train_step(data, BATCH, optimizers)
        _seed(step)
        twin_terms = twin.train_step(data, BATCH, twin_optimizers)
        assert {k: v.item() for k, v in terms.items()} == {
            k: v.item() for k, v in twin_terms.items()
        }
    assert set(terms) >= {'loss', 'bpr', 'cl', 'adv', 'disc'}
    for (name, p), q in zip(model.state_dict().items(), twin.state_dict().values()):
        if isinstance(p, torch.Tensor):
            assert torch.equal(p, q), name
    # D moved (its own step) and never received the recommender's update.
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))
    assert all(p not in optimizers[0].state for p in model.discriminator.parameters())
    assert len(optimizers[1].state) == len(list(model.discriminator.parameters()))


def test_train_step_discriminator_gradient_is_its_own_loss_only():
    # After a step, D's gradients are those of its WGAN-GP loss alone (the
    # recommender's adversarial term adds nothing to them), and D's weights
    # are trainable again for the next step.
    model, data = tiny()
    model.reset_generated_graphs(data)
    twin = copy.deepcopy(model)
    model.train()
    twin.train()
    params = list(twin.discriminator.parameters())
    _seed(0)
    expected = torch.autograd.grad(twin.discriminator_loss(data, BATCH[0].unique()), params)
    _seed(0)
    model.train_step(data, BATCH, model.configure_optimizers(1e-2))
    for p, g in zip(model.discriminator.parameters(), expected):
        assert p.requires_grad
        assert torch.allclose(p.grad, g, atol=1e-6)


@pytest.mark.parametrize('release', [False, True])
def test_state_dict_resumes_exactly(release):
    model, data = tiny(release_compat=release)
    model.train()
    optimizers = model.configure_optimizers(1e-2)
    _seed(0)
    model.train_step(data, BATCH, optimizers)
    state = copy.deepcopy(model.state_dict())
    opt_states = copy.deepcopy([o.state_dict() for o in optimizers])
    _seed(1)
    model.train_step(data, BATCH, optimizers)
    model.train_step(data, BATCH, optimizers)

    other, _ = tiny(seed=5, release_compat=release)  # other init, no graphs yet
    other.load_state_dict(state)  # resizes the generated-graph buffers
    assert other.generated.initialized
    other.train()
    other_optimizers = other.configure_optimizers(1e-2)
    for o, s in zip(other_optimizers, opt_states):
        o.load_state_dict(s)
    _seed(1)
    other.train_step(data, BATCH, other_optimizers)
    other.train_step(data, BATCH, other_optimizers)
    for (name, p), q in zip(model.state_dict().items(), other.state_dict().values()):
        if isinstance(p, torch.Tensor):
            assert torch.equal(p, q), name
    assert model.generated.get_extra_state() == other.generated.get_extra_state()
    for m in model.modalities:
        for a, b in zip(model.generated.graph(m), other.generated.graph(m)):
            assert torch.equal(a, b)


def test_generated_graph_state_is_in_the_state_dict():
    model, data = tiny(release_compat=True)
    model.reset_generated_graphs(data)
    model.generated.update(torch.arange(U), {m: torch.rand(U, I) for m in model.modalities})
    state = model.state_dict()
    for m in model.modalities:
        edge_index, weight = model.generated.graph(m)
        assert torch.equal(state[f'generated.graphs.{m}.edge_index'], edge_index)
        assert torch.equal(state[f'generated.graphs.{m}.weight'], weight)
        # Release schedule, idx 0: U * k pairs accumulated for the next rebuild.
        assert state[f'generated.graphs.{m}.pending'].shape == (2, U * 2)
    assert state['generated._extra_state'] == {
        'initialized': True,
        'epoch_batch': 1,
        'num_steps': 0,
    }
    # A lone graph loads buffers of any size, in its own dtype.
    graph = GeneratedGraph(U).double()
    graph.load_state_dict(
        {
            'edge_index': torch.tensor([[0, 1], [2, 3]]),
            'weight': torch.tensor([1.0, 2.0]),
            'memory': torch.zeros(U, 3, dtype=torch.long),
            'pending': torch.empty(2, 0, dtype=torch.long),
        }
    )
    assert graph.weight.dtype == torch.float64 and graph.weight.tolist() == [1.0, 2.0]
    assert graph.memory.shape == (U, 3)


DEVICES = [
    'cpu',
    pytest.param(
        'cuda',
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA is not available'),
    ),
]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('release', [False, True])
def test_moves_to_another_device_and_dtype(device, release):
    model, data = tiny(release_compat=release)
    model(data)  # Graphs set up in float32 on the CPU, then moved.
    model.to(device, torch.float64)
    data = data.to(device)

    def check_state():
        for name, t in model.generated.state_dict().items():
            if isinstance(t, torch.Tensor):
                assert t.device.type == device, name
                assert t.dtype in (torch.float64, torch.long), (name, t.dtype)
        for m in model.modalities:
            assert model.generated.graph(m)[1].dtype == torch.float64
            graph = model.generated_graph(m)
            assert graph.w_ui.dtype == torch.float64 and graph.w_ui.device.type == device
        graph = model.training_graph(data)
        assert graph.w_ui.dtype == torch.float64 and graph.w_ui.device.type == device

    check_state()
    user, item = model(data)
    assert user.dtype == item.dtype == torch.float64 and user.device.type == device
    model.train()
    optimizers = model.configure_optimizers(1e-2)
    for _ in range(2):  # the second step uses the graphs installed by the first
        terms = model.train_step(data, BATCH.to(device), optimizers)
        assert torch.isfinite(terms['loss']) and terms['loss'].dtype == torch.float64
    check_state()
    for p in model.parameters():
        assert p.dtype == torch.float64 and p.device.type == device
    # And back to the CPU: in float64 the forward is the dense one to 1e-10.
    model.to('cpu').eval()
    data = data.to('cpu')
    out = model.embed(data)
    ref = dense_forward(model, EDGE_INDEX, features_of(data), release)
    assert torch.allclose(out.user, ref['user'], atol=1e-10)
    assert torch.allclose(out.item, ref['item'], atol=1e-10)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match='at least one modality'):
        MMSSL(U, I, {})
    with pytest.raises(ValueError, match='divisible'):
        MMSSL(U, I, {'image': 3}, embedding_dim=6, num_heads=4)
    data = tiny_data()
    with pytest.raises(ValueError, match=r"'image' must be \[8, 4\]"):
        MMSSL(U, I, {'image': 4}, embedding_dim=D, num_heads=2)(data)
    with pytest.raises(ValueError, match="modality 'audio'"):
        MMSSL(U, I, {'audio': 4}, embedding_dim=D, num_heads=2)(data)
    model, data = tiny()
    with pytest.raises(RuntimeError, match='reset_generated_graphs'):
        model.generated.update(torch.arange(U), {m: torch.rand(U, I) for m in model.modalities})


def test_registered_with_release_defaults():
    from pyg_mentor.config import TRAIN_FIELDS
    from pyg_mentor.nn.models import get_model_spec

    spec = get_model_spec('mmssl')
    assert spec.cls is MMSSL
    assert spec.defaults['lr'] == 0.00055 and spec.defaults['batch_size'] == 1024
    assert set(spec.defaults) <= TRAIN_FIELDS  # the model's own: its signature
    assert spec.model_defaults['cl_weight'] == 0.03 and spec.model_defaults['g_weight'] == 1e-4
    assert spec.model_defaults['graph_topk_rate'] == 1e-4
    assert spec.model_defaults['graph_period'] == 1
    assert spec.model_defaults['decoupled_weight_decay'] == 0.01


# Training #####################################################################


def test_training_beats_random_and_popularity_and_resumes(tmp_path):
    from pyg_mentor.datasets.synthetic import make_planted
    from pyg_mentor.evaluation import Evaluator
    from pyg_mentor.train import load_checkpoint, train_model

    # Without planted popularity, so that beating popularity needs the
    # planted user/item factors.
    data = make_planted(num_users=400, num_items=300, popularity=0.0, seed=0)
    options = {
        'epochs': 6,
        'progress': False,
        'tensorboard': False,
        'lr': 0.01,
        'batch_size': 256,
        'patience': 100,
        'graph_topk_rate': 0.02,
    }
    full = train_model('mmssl', data, options, tmp_path / 'full')
    ours = full['valid']['recall@20']
    count = torch.bincount(data[RATES].edge_index[1], minlength=data[ITEM].num_nodes)
    evaluator = Evaluator(data, 'valid', ks=(20,))
    popularity = evaluator.evaluate(lambda users: count.float().expand(users.numel(), -1).clone())[
        'recall@20'
    ]
    chance = 20 / data[ITEM].num_nodes
    assert ours > 1.5 * popularity and ours > 3 * chance, (ours, popularity, chance)

    # Exact resume: 3 epochs, then continue to 6.
    train_model('mmssl', data, {**options, 'epochs': 3}, tmp_path / 'part')
    # The trainer checkpointed both optimisers and the generated graphs.
    state = load_checkpoint(tmp_path / 'part' / 'last.pt')
    recommender, disc = state['optimizers']
    assert recommender['param_groups'][0]['weight_decay'] == 0.01
    assert disc['param_groups'][0]['betas'] == (0.5, 0.9)
    # Discriminator: 3 linear layers and 2 batch norms, 2 tensors each.
    assert len(disc['state']) == len(disc['param_groups'][0]['params']) == 10
    assert state['model']['generated.graphs.image.memory'].shape == (400, 6)
    resumed = train_model('mmssl', data, options, tmp_path / 'part', resume=True)
    assert resumed['valid'] == full['valid'] and resumed['test'] == full['test']


def test_user_batches_sample_like_the_release():
    from pyg_mentor.train import train_model
    from pyg_mentor.utils.sampling import user_batches

    edge_index = torch.tensor([[0, 0, 1, 2, 2, 2, 4], [0, 1, 1, 0, 2, 3, 4]])
    train = set(map(tuple, edge_index.t().tolist()))
    gen = torch.Generator().manual_seed(0)
    batches = list(user_batches(edge_index, 7, batch_size=3, generator=gen))
    assert len(batches) == 7 // 3 + 1
    negatives = set()
    for users, pos, neg in batches:
        assert users.numel() == 3 and users.unique().numel() == 3
        assert set(users.tolist()) <= {0, 1, 2, 4}  # users with training pairs
        assert all((u, i) in train for u, i in zip(users.tolist(), pos.tolist()))
        assert all((u, i) not in train for u, i in zip(users.tolist(), neg.tolist()))
        negatives |= set(neg.tolist())
    assert negatives & {5, 6}  # items without training pairs are negatives too

    from pyg_mentor.datasets.synthetic import make_planted

    data = make_planted(num_users=60, num_items=30, seed=0)
    out = train_model(
        'mmssl',
        data,
        {'epochs': 1, 'progress': False, 'checkpoint': False, 'sampler': 'users', 'batch_size': 32},
    )
    assert out['status'] == 'max_epochs' and out['train_config']['sampler'] == 'users'
