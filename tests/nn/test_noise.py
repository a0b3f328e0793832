from __future__ import annotations

import pytest
import torch

from pyg_mentor.nn.noise import EmbeddingNoise


def test_embedding_noise_module_train_mode():
    torch.manual_seed(0)
    module = EmbeddingNoise(eps=0.2)
    assert module.training
    h = torch.randn(30, 8)
    delta = module(h) - h
    torch.testing.assert_close(delta.norm(dim=-1), torch.full((30,), 0.2))
    assert (torch.sign(delta) == torch.sign(h)).all()
    # Fresh noise on every call, reproducible with the global seed.
    assert not torch.equal(module(h), module(h))
    torch.manual_seed(1)
    a = module(h)
    torch.manual_seed(1)
    assert torch.equal(module(h), a)


def test_embedding_noise_module_eval_is_identity():
    module = EmbeddingNoise().eval()
    h = torch.randn(5, 4)
    assert module(h) is h


def test_embedding_noise_module_between_layers():
    # Two propagation steps with the perturbation after each, as in MENTOR.
    torch.manual_seed(0)
    adj = torch.rand(6, 6)
    x = torch.randn(6, 4, requires_grad=True)
    module = EmbeddingNoise(0.1)
    h1 = module(adj @ x)
    h2 = module(adj @ h1)
    (x + h1 + h2).sum().backward()
    # The noise has no gradient: d/dx sum(x + Ax + A^2 x) = 1 + A^T 1 + (A^2)^T 1.
    ones = torch.ones(6, 4)
    expected = ones + adj.t() @ ones + (adj @ adj).t() @ ones
    torch.testing.assert_close(x.grad, expected)


def test_embedding_noise_module_repr_and_errors():
    assert repr(EmbeddingNoise(0.1)) == 'EmbeddingNoise(eps=0.1)'
    assert EmbeddingNoise().eps == 0.1
    with pytest.raises(ValueError, match="'eps'"):
        EmbeddingNoise(-1.0)
