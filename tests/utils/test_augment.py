from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.utils import dropout_edge

from pyg_mentor.utils.augment import drop_interactions, embedding_noise, mask_features


def random_pairs(num_edges: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            torch.randint(0, 500, (num_edges,), generator=g),
            torch.randint(0, 300, (num_edges,), generator=g),
        ]
    )


# drop_interactions ###########################################################


def test_drop_interactions_kept_fraction_and_mask():
    edge_index = random_pairs(20000)
    g = torch.Generator().manual_seed(1)
    kept, mask = drop_interactions(edge_index, 0.3, generator=g)
    assert mask.dtype == torch.bool and mask.shape == (20000,)
    assert torch.equal(kept, edge_index[:, mask])  # Order preserved.
    # Binomial(20000, 0.7): std ~ 0.0032 of the fraction; allow 5 sigma.
    assert abs(mask.float().mean().item() - 0.7) < 0.017


def test_drop_interactions_generator_reproducible_and_independent():
    edge_index = random_pairs(1000)
    kept1, mask1 = drop_interactions(edge_index, 0.5, generator=torch.Generator().manual_seed(7))
    kept2, mask2 = drop_interactions(edge_index, 0.5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(mask1, mask2) and torch.equal(kept1, kept2)
    # Same semantics as dropout_edge: keep iff a U[0, 1) draw is >= p.
    expected = torch.rand(1000, generator=torch.Generator().manual_seed(7)) >= 0.5
    assert torch.equal(mask1, expected)
    _, mask3 = drop_interactions(edge_index, 0.5, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(mask1, mask3)


def test_drop_interactions_without_generator_matches_dropout_edge():
    edge_index = random_pairs(1000)
    torch.manual_seed(3)
    kept, mask = drop_interactions(edge_index, 0.4)
    torch.manual_seed(3)
    expected_kept, expected_mask = dropout_edge(edge_index, p=0.4)
    assert torch.equal(mask, expected_mask)
    assert torch.equal(kept, expected_kept)


@pytest.mark.parametrize('kwargs', [{'p': 0.0}, {'p': 0.9, 'training': False}])
def test_drop_interactions_keeps_everything(kwargs):
    edge_index = random_pairs(100)
    g = torch.Generator().manual_seed(0)
    kept, mask = drop_interactions(edge_index, generator=g, **kwargs)
    assert torch.equal(kept, edge_index)
    assert mask.all() and mask.shape == (100,)


def test_drop_interactions_empty():
    edge_index = torch.empty(2, 0, dtype=torch.long)
    kept, mask = drop_interactions(edge_index, 0.5, generator=torch.Generator().manual_seed(0))
    assert kept.shape == (2, 0) and mask.shape == (0,)


@pytest.mark.parametrize('p', [-0.1, 1.0, 1.5, math.nan])
def test_drop_interactions_bad_p(p):
    with pytest.raises(ValueError, match="'p'"):
        drop_interactions(random_pairs(10), p)


def test_drop_interactions_bad_types():
    with pytest.raises(TypeError):
        drop_interactions(random_pairs(10), True)
    with pytest.raises(ValueError, match=r'\[2, E\]'):
        drop_interactions(torch.zeros(3, 4, dtype=torch.long), 0.5)


# mask_features ###############################################################


def test_mask_features_fraction_and_scale():
    torch.manual_seed(0)
    x = torch.rand(200, 100) + 0.5  # No zeros in the input.
    out = mask_features(x, 0.3)
    zeros = out == 0
    # Binomial(20000, 0.3): std ~ 0.0032 of the fraction; allow 5 sigma.
    assert abs(zeros.float().mean().item() - 0.3) < 0.017
    torch.testing.assert_close(out[~zeros], x[~zeros] / 0.7)
    assert x.min() >= 0.5  # The input is not modified.


def test_mask_features_gradient_and_eval():
    torch.manual_seed(0)
    x = torch.randn(8, 5, requires_grad=True)
    out = mask_features(x, 0.5)
    out.sum().backward()
    kept = (out != 0).float()
    torch.testing.assert_close(x.grad, kept / 0.5)

    assert mask_features(x, 0.5, training=False) is x
    assert torch.equal(mask_features(x, 0.0), x)


@pytest.mark.parametrize('p', [-0.5, 1.0, math.inf])
def test_mask_features_bad_p(p):
    with pytest.raises(ValueError, match="'p'"):
        mask_features(torch.ones(3, 3), p)


# embedding_noise #############################################################


def test_embedding_noise_norm_and_sign():
    torch.manual_seed(0)
    h = torch.randn(50, 16)
    out = embedding_noise(h, 0.1)
    delta = out - h
    # Row L2 norm exactly eps (h has no zeros), direction in h's orthant.
    torch.testing.assert_close(delta.norm(dim=-1), torch.full((50,), 0.1))
    assert (torch.sign(delta) == torch.sign(h)).all()
    assert delta.abs().max() <= 0.1 + 1e-6


def test_embedding_noise_zero_entries_get_no_noise():
    torch.manual_seed(0)
    h = torch.randn(20, 8)
    h[:, :3] = 0.0
    delta = embedding_noise(h, 0.5) - h
    assert (delta[:, :3] == 0).all()
    assert (torch.sign(delta[:, 3:]) == torch.sign(h[:, 3:])).all()
    assert (delta.norm(dim=-1) < 0.5).all()  # Part of the noise was zeroed.


def test_embedding_noise_matches_independent_formula_with_generator():
    h = torch.randn(10, 4, generator=torch.Generator().manual_seed(5))
    out1 = embedding_noise(h, 0.2, generator=torch.Generator().manual_seed(9))
    out2 = embedding_noise(h, 0.2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(out1, out2)

    u = torch.rand(10, 4, generator=torch.Generator().manual_seed(9))
    unit = u / u.pow(2).sum(dim=1, keepdim=True).sqrt()
    torch.testing.assert_close(out1, h + 0.2 * torch.sign(h) * unit)

    out3 = embedding_noise(h, 0.2, generator=torch.Generator().manual_seed(10))
    assert not torch.equal(out1, out3)


def test_embedding_noise_dtype_gradient_and_eps_zero():
    h = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    out = embedding_noise(h, 0.1)
    assert out.dtype == torch.float64 and out.device == h.device
    out.sum().backward()
    torch.testing.assert_close(h.grad, torch.ones_like(h))  # Noise: no grad.
    assert torch.equal(embedding_noise(h, 0.0), h)


@pytest.mark.parametrize('eps', [-0.1, math.inf, math.nan])
def test_embedding_noise_bad_eps(eps):
    with pytest.raises(ValueError, match="'eps'"):
        embedding_noise(torch.ones(2, 2), eps)


def test_embedding_noise_needs_floats():
    with pytest.raises(TypeError, match='floating-point'):
        embedding_noise(torch.ones(2, 2, dtype=torch.long), 0.1)
