r"""The layers under ``torch.compile`` (PyG convention): same output and
gradient as eager. The default suite traces them with the ``aot_eager``
backend (Dynamo + AOTAutograd, seconds); the full Inductor build is a slow test."""

import pytest
import torch

from pyg_mentor.nn.conv import BipartiteLightConv, ItemGraphConv


def inputs():
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.tensor([[0, 1, 2, 2, 3, 4], [1, 0, 2, 3, 3, 0]])
    weight = torch.rand(edge_index.size(1), generator=gen)
    x_src = torch.randn(5, 8, generator=gen, requires_grad=True)
    x_dst = torch.randn(4, 8, generator=gen)
    return edge_index, weight, x_src, x_dst


def check(backend):
    edge_index, weight, x_src, x_dst = inputs()
    for conv, call in [
        (BipartiteLightConv(), lambda c, x: c((x, x_dst), edge_index)),
        (ItemGraphConv(cached=False), lambda c, x: c(x, edge_index, weight)),
    ]:
        expected = call(conv, x_src)
        (grad,) = torch.autograd.grad(expected.square().sum(), x_src)
        compiled = torch.compile(conv, backend=backend)
        out = call(compiled, x_src)
        (grad_c,) = torch.autograd.grad(out.square().sum(), x_src)
        assert torch.allclose(out, expected, atol=1e-6), type(conv).__name__
        assert torch.allclose(grad_c, grad, atol=1e-6), type(conv).__name__


def test_convs_compile_aot_eager():
    torch._dynamo.reset()
    check('aot_eager')


@pytest.mark.slow
def test_convs_compile_inductor():
    torch._dynamo.reset()
    check('inductor')
