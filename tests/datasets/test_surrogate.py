import logging

import pytest
import torch
import torch.nn.functional as F

from pyg_mentor.datasets.surrogate import add_surrogate_features, surrogate_features
from pyg_mentor.datasets.synthetic import make_planted


@pytest.fixture(scope='module')
def data():
    data = make_planted(num_users=400, num_items=150, seed=0)
    for key in ('x_image', 'x_text'):
        del data['item'][key]
    return data


def test_shapes_and_determinism(data):
    a = surrogate_features(data, {'image': 40, 'text': 12}, seed=3)
    b = surrogate_features(data, {'image': 40, 'text': 12}, seed=3)
    assert a['image'].shape == (150, 40) and a['text'].shape == (150, 12)
    assert torch.equal(a['image'], b['image']) and torch.equal(a['text'], b['text'])
    r = surrogate_features(data, {'image': 8}, kind='random')
    assert r['image'].shape == (150, 8)
    with pytest.raises(ValueError, match='kind'):
        surrogate_features(data, kind='clip')


def test_interaction_surrogates_carry_co_interaction_signal(data):
    x = F.normalize(surrogate_features(data, {'image': 64}, noise=0.1)['image'], dim=1)
    user, item = data['user', 'rates', 'item'].edge_index
    r = torch.zeros(400, 150)
    r[user, item] = 1
    co = r.t() @ r  # Items rated by the same users.
    co.fill_diagonal_(0)
    sim = x @ x.t()
    together = sim[co > 0].mean()
    apart = sim[(co == 0) & ~torch.eye(150, dtype=torch.bool)].mean()
    assert together > apart + 0.1


def test_add_surrogate_features_warns_and_keeps_real_ones(data, caplog):
    real = data.clone()
    real['item'].x_text = torch.ones(150, 5)
    with caplog.at_level(logging.WARNING):
        out = add_surrogate_features(real, dims={'image': 16, 'text': 7})
    assert 'SURROGATE' in caplog.text and "['image']" in caplog.text
    assert out['item'].x_image.shape == (150, 16)
    assert torch.equal(out['item'].x_text, torch.ones(150, 5))  # Real text kept.
    assert 'x_image' not in real['item']  # Input not modified.
