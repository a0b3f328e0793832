"""Tests of the MENTOR losses in :mod:`pyg_mentor.nn.functional`.

Expected values come from independent re-derivations written here: float64
NumPy formulas (with hand-derived gradients) for InfoNCE, hand arithmetic for
the others."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from pyg_mentor.nn.functional import align_loss, info_nce, masked_cosine_loss, reg_loss

# InfoNCE ######################################################################


def reference_info_nce(
    a: np.ndarray, b: np.ndarray, tau: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Float64 InfoNCE and its gradients w.r.t. the raw ``a`` and ``b``,
    derived by hand:

    L = 1/N sum_i [ -<a_i, b_i>/tau + log sum_j exp(<a_i, b_j>/tau) ] on unit
    rows, so with P = softmax of each row of S = A B^T / tau,
    dL/dA_hat = (P B_hat - B_hat) / (N tau),
    dL/dB_hat = (P^T A_hat - A_hat) / (N tau),
    and through x_hat = x / |x|: dL/dx = (g - x_hat <x_hat, g>) / |x|.
    """
    a, b = a.astype(np.float64), b.astype(np.float64)
    n = a.shape[0]
    a_norm = np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b_norm = np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    ah, bh = a / a_norm, b / b_norm
    s = ah @ bh.T / tau
    row_max = s.max(axis=1, keepdims=True)
    lse = np.log(np.exp(s - row_max).sum(axis=1)) + row_max[:, 0]
    loss = float(np.mean(lse - np.diag(s)))
    p = np.exp(s - lse[:, None])
    g_ah = (p @ bh - bh) / (n * tau)
    g_bh = (p.T @ ah - ah) / (n * tau)
    g_a = (g_ah - ah * (ah * g_ah).sum(axis=1, keepdims=True)) / a_norm
    g_b = (g_bh - bh * (bh * g_bh).sum(axis=1, keepdims=True)) / b_norm
    return loss, g_a, g_b


def random_views(n: int, d: int, seed: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=gen, dtype=torch.float64)
    b = a + 0.7 * torch.randn(n, d, generator=gen, dtype=torch.float64)
    return 3 * a.to(dtype), b.to(dtype)  # rows of norm ~12, ~15


def loss_and_grads(
    a: Tensor, b: Tensor, tau: float, chunk_size: int | None
) -> tuple[float, np.ndarray, np.ndarray]:
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = info_nce(a, b, tau, chunk_size)
    loss.backward()
    return loss.item(), a.grad.double().numpy(), b.grad.double().numpy()


def assert_grad_close(actual: np.ndarray, expected: np.ndarray, rtol: float) -> None:
    """Elementwise, relative to the largest entry (entries near 0 have no
    meaningful relative error)."""
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


CHUNK_SIZES = [7, 64, 300, 1000, None]


@pytest.mark.parametrize('chunk_size', CHUNK_SIZES)
@pytest.mark.parametrize('tau', [0.2, 0.6, 0.05, 0.02, 1.0])  # 0.02 takes the row-max path
def test_info_nce_float64_matches_reference(chunk_size: int | None, tau: float) -> None:
    a, b = random_views(300, 16, seed=0, dtype=torch.float64)
    loss, g_a, g_b = loss_and_grads(a, b, tau, chunk_size)
    ref_loss, ref_a, ref_b = reference_info_nce(a.numpy(), b.numpy(), tau)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    assert_grad_close(g_a, ref_a, rtol=1e-9)
    assert_grad_close(g_b, ref_b, rtol=1e-9)


@pytest.mark.parametrize('chunk_size', CHUNK_SIZES)
@pytest.mark.parametrize('tau', [0.2, 0.4, 0.6])
def test_info_nce_float32_matches_reference(chunk_size: int | None, tau: float) -> None:
    a, b = random_views(300, 16, seed=1, dtype=torch.float32)
    loss, g_a, g_b = loss_and_grads(a, b, tau, chunk_size)
    ref_loss, ref_a, ref_b = reference_info_nce(a.numpy(), b.numpy(), tau)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert_grad_close(g_a, ref_a, rtol=1e-5)
    assert_grad_close(g_b, ref_b, rtol=1e-5)


def test_info_nce_chunked_equals_dense_float32() -> None:
    a, b = random_views(1500, 64, seed=2, dtype=torch.float32)
    dense = loss_and_grads(a, b, 0.2, None)
    for chunk_size in (100, 512, 1500):
        chunked = loss_and_grads(a, b, 0.2, chunk_size)
        assert chunked[0] == pytest.approx(dense[0], rel=1e-6)
        assert_grad_close(chunked[1], dense[1], rtol=1e-5)
        assert_grad_close(chunked[2], dense[2], rtol=1e-5)


@pytest.mark.parametrize('chunk_size', [5, 64, None])
def test_info_nce_identical_rows(chunk_size: int | None) -> None:
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    # duplicated rows (and scaled copies, identical once normalised) on both
    # sides, and one pair of views that are exactly equal
    a = torch.cat([base, base[:4], 2.5 * base[:3]])
    b = torch.cat([base[3:], base[:3], base[:4], base[5:8]])
    for x, y in ((a, b), (a, a.clone())):
        loss, g_a, g_b = loss_and_grads(x, y, 0.3, chunk_size)
        ref_loss, ref_a, ref_b = reference_info_nce(x.numpy(), y.numpy(), 0.3)
        assert loss == pytest.approx(ref_loss, rel=1e-10)
        assert_grad_close(g_a, ref_a, rtol=1e-9)
        assert_grad_close(g_b, ref_b, rtol=1e-9)
    # every row equal on both sides: uniform softmax, L = log N exactly
    same = base[:1].repeat(17, 1)
    assert info_nce(same, same, 0.2, chunk_size).item() == pytest.approx(np.log(17), rel=1e-12)


@pytest.mark.parametrize('chunk_size', [8, None])
@pytest.mark.parametrize('tau', [0.02, 0.025, 0.03])
def test_info_nce_small_tau_opposite_views_float32(chunk_size: int | None, tau: float) -> None:
    # every <a_i, b_j> is close to -1: exp(S_ij) ~ exp(-1/tau), at the edge of
    # float32 for the unshifted path (tau >= 0.025) and underflowing with a
    # shift by 1/tau; tau = 0.02 takes the row-max shift
    gen = torch.Generator().manual_seed(8)
    a = torch.tensor([1.0, 0.0]) + 0.1 * torch.randn(40, 2, generator=gen)
    b = torch.tensor([-1.0, 0.0]) + 0.1 * torch.randn(40, 2, generator=gen)
    loss, g_a, g_b = loss_and_grads(a, b, tau, chunk_size)
    ref_loss, ref_a, ref_b = reference_info_nce(a.numpy(), b.numpy(), tau)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_grad_close(g_a, ref_a, rtol=1e-4)
    assert_grad_close(g_b, ref_b, rtol=1e-4)


def test_info_nce_upstream_grad_and_partial_requires_grad() -> None:
    a, b = random_views(50, 6, seed=4, dtype=torch.float64)
    _, ref_a, ref_b = reference_info_nce(a.numpy(), b.numpy(), 0.2)
    # scaled upstream gradient, only one input requiring grad at a time
    a1 = a.clone().requires_grad_()
    (2.5 * info_nce(a1, b, 0.2, 16)).backward()
    assert_grad_close(a1.grad.numpy(), 2.5 * ref_a, rtol=1e-9)
    b1 = b.clone().requires_grad_()
    (-info_nce(a, b1, 0.2, 16)).backward()
    assert_grad_close(b1.grad.numpy(), -ref_b, rtol=1e-9)
    # a retained graph gives the same gradient on every backward pass
    b2 = b.clone().requires_grad_()
    loss = info_nce(a, b2, 0.2, 16)
    loss.backward(retain_graph=True)
    loss.backward()
    assert_grad_close(b2.grad.numpy(), 2 * ref_b, rtol=1e-9)
    # same tensor as both views, used twice in a graph
    x = a.clone().requires_grad_()
    (info_nce(x, x, 0.5, 16) + info_nce(x, x, 0.5, None)).backward()
    ref_loss, ref_xa, ref_xb = reference_info_nce(a.numpy(), a.numpy(), 0.5)
    assert_grad_close(x.grad.numpy(), 2 * (ref_xa + ref_xb), rtol=1e-9)


def test_info_nce_no_grad_path() -> None:
    a, b = random_views(40, 5, seed=5, dtype=torch.float64)
    ref_loss = reference_info_nce(a.numpy(), b.numpy(), 0.4)[0]
    a.requires_grad_()
    with torch.no_grad():
        loss = info_nce(a, b, 0.4, 8)
    assert loss.grad_fn is None
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    assert info_nce(a.detach(), b, 0.4, 8).item() == pytest.approx(ref_loss, rel=1e-10)


class LargestAllocation(TorchDispatchMode):
    """Records the largest tensor produced by any aten operator."""

    def __init__(self) -> None:
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, Tensor):
                self.max_numel = max(self.max_numel, t.numel())
        return out


def test_info_nce_chunked_never_holds_n_by_n() -> None:
    n, d, chunk = 400, 8, 50
    a, b = (t.requires_grad_() for t in random_views(n, d, seed=6, dtype=torch.float32))
    with LargestAllocation() as chunked:
        info_nce(a, b, 0.2, chunk).backward()
    assert chunked.max_numel == chunk * n  # one [chunk, N] block, nothing bigger
    with LargestAllocation() as dense:
        info_nce(a, b, 0.2, None).backward()
    assert dense.max_numel == n * n


def test_info_nce_validates_arguments() -> None:
    a = torch.randn(4, 3)
    with pytest.raises(ValueError, match='same shape'):
        info_nce(a, torch.randn(5, 3), 0.2)
    with pytest.raises(ValueError, match='same shape'):
        info_nce(a[0], a[0], 0.2)
    with pytest.raises(ValueError, match='tau'):
        info_nce(a, a, 0.0)
    with pytest.raises(ValueError, match='chunk_size'):
        info_nce(a, a, 0.2, 0)


# align_loss ###################################################################

# g: entries 0 0 0 4   -> mean 1,   unbiased var (1+1+1+9)/3 = 4
# r: entries 1 2 3 4   -> mean 2.5, unbiased var (2.25+.25+.25+2.25)/3 = 5/3
# v: entries 2 2 2 2   -> mean 2,   var 0
# t: entries -1 1      -> mean 0,   var (1+1)/1 = 2
ALIGN_REPS = {
    'guide': torch.tensor([[0.0, 0.0], [0.0, 4.0]]),
    'fused': torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
    'visual': torch.tensor([[2.0, 2.0, 2.0, 2.0]]),
    'textual': torch.tensor([[-1.0], [1.0]]),
}
# |var_a - var_b| + |mean_a - mean_b| per pair:
# (g,r) 7/3 + 3/2 = 23/6   (g,v) 4 + 1 = 5       (g,t) 2 + 1 = 3
# (r,v) 5/3 + 1/2 = 13/6   (r,t) 1/3 + 5/2 = 17/6  (v,t) 2 + 2 = 4
# total 23/6 + 13/6 + 17/6 + 12 = 125/6
ALIGN_TOTAL = 125 / 6


def test_align_loss_hand_computed() -> None:
    assert align_loss(ALIGN_REPS).item() == pytest.approx(ALIGN_TOTAL, rel=1e-6)
    assert align_loss(list(ALIGN_REPS.values())).item() == pytest.approx(ALIGN_TOTAL, rel=1e-6)
    assert align_loss(tuple(ALIGN_REPS.values())[:2]).item() == pytest.approx(23 / 6, rel=1e-6)
    pairs = [('guide', 'fused'), ('visual', 'textual')]
    assert align_loss(ALIGN_REPS, pairs).item() == pytest.approx(23 / 6 + 4, rel=1e-6)
    assert align_loss(list(ALIGN_REPS.values()), [(2, 3)]).item() == pytest.approx(4, rel=1e-6)


def test_align_loss_gradient() -> None:
    gen = torch.Generator().manual_seed(7)
    reps = [torch.randn(5, 4, generator=gen, dtype=torch.float64) * s + s for s in (1, 2, 3)]
    reps = [r.requires_grad_() for r in reps]
    assert torch.autograd.gradcheck(lambda *r: align_loss(r), reps)


def test_align_loss_parts_are_taken_together() -> None:
    # (users, items) parts: the statistics of their concatenation, hand-computed
    # above (guide = rows [0 0] and [0 4]; fused = [1 2 3] and [4]).
    parts = dict(ALIGN_REPS)
    parts['guide'] = (torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 4.0]]))
    parts['fused'] = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[4.0]])]
    assert align_loss(parts).item() == pytest.approx(ALIGN_TOTAL, rel=1e-6)
    # values and gradients equal those of torch.var_mean on the concatenation
    gen = torch.Generator().manual_seed(3)
    users = [torch.randn(6, 4, generator=gen, dtype=torch.float64) * s + s for s in (1, 2)]
    items = [torch.randn(3, 4, generator=gen, dtype=torch.float64) - s for s in (1, 2)]
    leaves = [t.requires_grad_() for t in users + items]
    got = align_loss([(users[0], items[0]), (users[1], items[1])])
    (va, ma), (vb, mb) = (torch.var_mean(torch.cat([u, i])) for u, i in zip(users, items))
    want = (va - vb).abs() + (ma - mb).abs()
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    for g, w in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, leaves)):
        assert torch.allclose(g, w, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *t: align_loss([t[:2], t[2:]]), leaves)


def test_align_loss_validates_arguments() -> None:
    with pytest.raises(ValueError, match='two entries'):
        align_loss([torch.ones(1), torch.ones(3)])
    with pytest.raises(TypeError, match='sequence of tensors'):
        align_loss([torch.ones(3), [1.0, 2.0]])
    with pytest.raises(ValueError, match='at least two'):
        align_loss({'fused': ALIGN_REPS['fused']})
    with pytest.raises(ValueError, match='pair'):
        align_loss(ALIGN_REPS, [])
    with pytest.raises(KeyError, match='image'):
        align_loss(ALIGN_REPS, [('fused', 'image')])


# masked_cosine_loss and reg_loss ##############################################


def test_masked_cosine_loss() -> None:
    # cos([1,0],[0,1]) = 0, cos([1,1],[2,2]) = 1 -> 1 - 1/2
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert masked_cosine_loss(x, y).item() == pytest.approx(0.5, abs=1e-7)
    # opposite rows: cos = -1 -> 2; a zero row: 0 / (max(0, eps) * 1) = 0 -> 1
    assert masked_cosine_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[-2.0, -4.0]])).item() == (
        pytest.approx(2.0, abs=1e-7)
    )
    assert masked_cosine_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]])).item() == 1.0
    # gradient of 1 - mean cos w.r.t. x_0 at x_0 = [1,0], y_0 = [0,1]:
    # d cos / dx = y/(|x||y|) - cos * x/|x|^2 = [0, 1]; mean over 2 rows, negated
    x.requires_grad_()
    masked_cosine_loss(x, y).backward()
    assert torch.allclose(x.grad[0], torch.tensor([0.0, -0.5]))


def test_reg_loss() -> None:
    # (1+4+9+16)/4 = 7.5, 3^2 = 9, 0.5^2 = 0.25
    tensors = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([3.0]), torch.tensor([[0.5]])
    assert reg_loss(*tensors).item() == pytest.approx(16.75)
    assert reg_loss(tensors[0]).item() == pytest.approx(7.5)
    w = torch.tensor([[1.0, -2.0]], requires_grad=True)
    reg_loss(w).backward()  # d/dw mean(w^2) = 2w / 2
    assert torch.equal(w.grad, torch.tensor([[1.0, -2.0]]))
    with pytest.raises(ValueError):
        reg_loss()
    # `shared` tensors (not rows of the batch) come after: the same terms.
    assert reg_loss(tensors[0], shared=tensors[1:]).item() == pytest.approx(16.75)
    assert reg_loss(shared=[tensors[1]]).item() == pytest.approx(9.0)


def test_batch_reductions_in_one_process() -> None:
    # Outside pyg_mentor.distributed.global_batch (one process): plain means
    # and norms, bit for bit.
    from pyg_mentor.distributed import global_batch
    from pyg_mentor.nn.functional import batch_mean, bpr_loss, embedding_norm_loss

    x = torch.tensor([[1.0, -2.0], [0.5, 3.0], [2.0, 0.0]])
    assert torch.equal(batch_mean(x), x.mean())
    pos, neg = x[:, 0], x[:, 1]
    with global_batch(None):  # no group: one process
        assert torch.equal(bpr_loss(pos, neg), torch.nn.functional.softplus(neg - pos).mean())
        expected = (x.norm() + pos.norm()) / 3  # sum of Frobenius norms / B (B of the last)
        assert torch.equal(embedding_norm_loss(x, pos.view(3, 1)), expected)


def test_info_nce_auto_chunk_size() -> None:
    # Largest power of two <= 2048 whose [chunk, N] block holds <= 48 * 2**20
    # entries: worked out by hand for the shapes of MMRec's datasets.
    from pyg_mentor.nn.functional import auto_chunk_size

    assert auto_chunk_size(7050) == 2048  # Baby items
    assert auto_chunk_size(19445) == 2048  # Baby users: 2588 rows fit
    assert auto_chunk_size(35598) == 1024  # Sports users: 1413 rows fit
    assert auto_chunk_size(39387) == 1024  # Clothing users: 1277 rows fit
    assert auto_chunk_size(48 * 2**20) == 1
    assert auto_chunk_size(10**9) == 1
    a, b = torch.randn(40, 8, dtype=torch.float64), torch.randn(40, 8, dtype=torch.float64)
    assert torch.equal(info_nce(a, b, 0.2), info_nce(a, b, 0.2, 2048))


@pytest.mark.parametrize('chunk_size', [0, -3, 'big', 2.5])
def test_info_nce_rejects_bad_chunk_size(chunk_size) -> None:
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match='chunk_size'):
        info_nce(x, x, 0.2, chunk_size)
