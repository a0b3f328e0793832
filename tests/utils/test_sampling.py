import pytest
import torch

from pyg_mentor.utils.sampling import NegativeSampler, train_batches


def make_edges():
    # 3 users, 6 items; item 5 appears only in valid/test (not in train).
    return torch.tensor([[0, 0, 0, 1, 1, 2], [0, 1, 2, 2, 3, 4]])


def test_negatives_are_train_items_outside_the_users_history():
    edge_index = make_edges()
    sampler = NegativeSampler(edge_index, num_items=6)
    users = torch.tensor([0, 1, 2]).repeat(2000)
    neg = sampler.sample(users, torch.Generator().manual_seed(0))
    history = {0: {0, 1, 2}, 1: {2, 3}, 2: {4}}
    train_items = {0, 1, 2, 3, 4}
    for u, i in zip(users.tolist(), neg.tolist()):
        assert i in train_items and i not in history[u]
    # Uniform over the admissible items: user 0 can only get 3 or 4.
    counts = torch.bincount(neg[users == 0], minlength=6).float()
    assert counts[[0, 1, 2, 5]].sum() == 0
    assert abs(counts[3] / counts[[3, 4]].sum() - 0.5) < 0.05
    counts = torch.bincount(neg[users == 2], minlength=6).float()[:4]
    assert (counts / counts.sum() - 0.25).abs().max() < 0.05


def test_user_without_negative_raises():
    edge_index = torch.tensor([[0, 0, 1], [0, 1, 0]])  # User 0 rated every item.
    with pytest.raises(ValueError, match=r'1 user\(s\) \(e.g. \[0\]\): they rated all 2'):
        NegativeSampler(edge_index, num_items=2, max_rounds=20)
    # Drawn from all items (MMSSL's sampler), item 2 is a negative for user 0:
    NegativeSampler(edge_index, num_items=3, candidates=torch.arange(3))


def test_train_batches_cover_every_interaction_once_per_epoch():
    edge_index = torch.stack([torch.arange(10) % 4, torch.arange(10)])
    sampler = NegativeSampler(edge_index, num_items=10)
    gen = torch.Generator().manual_seed(1)
    batches = list(train_batches(edge_index, sampler, batch_size=4, generator=gen))
    assert [b.size(1) for b in batches] == [4, 4, 2]
    pairs = torch.cat(batches, dim=1)[:2]
    assert sorted(map(tuple, pairs.t().tolist())) == sorted(map(tuple, edge_index.t().tolist()))
    assert not sampler.is_positive(torch.cat(batches, 1)[0], torch.cat(batches, 1)[2]).any()
    # Same generator state -> same epoch; another epoch -> another order.
    again = list(train_batches(edge_index, sampler, 4, torch.Generator().manual_seed(1)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    other = torch.cat(list(train_batches(edge_index, sampler, 4, gen)), 1)
    assert not torch.equal(other, torch.cat(batches, 1))
