r"""Loss functions of the recommenders, as pure functions with shapes and math.

**Batch reductions.** :func:`bpr_loss`, :func:`embedding_norm_loss`,
:func:`batch_mean` and the batch tensors of :func:`reg_loss` reduce over the rows
of a training batch. In one process they are plain means and norms. In
multi-process training, inside :func:`pyg_mentor.distributed.global_batch`, each
process holds a shard of the global batch and these functions reduce over the
global batch instead (their sums go through
:func:`pyg_mentor.distributed.batch_sum`, a differentiable all-reduce), so that
the loss and its gradient are those of one process on the whole batch. The other
losses here (:func:`align_loss`, :func:`info_nce`, ...) reduce over whatever they
are given and are never all-reduced.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from pyg_mentor.distributed import batch_group, batch_sum


def bpr_loss(pos_score: Tensor, neg_score: Tensor, base: float = math.e) -> Tensor:
    r"""Bayesian personalised ranking loss.

    .. math::
        \mathcal{L}_{\mathrm{BPR}} = -\frac{1}{B} \sum_{b=1}^{B}
        \log_{\beta} \sigma(s^{+}_b - s^{-}_b)

    computed stably as :math:`\mathrm{softplus}(s^{-} - s^{+}) / \ln \beta`.
    MMRec's baselines use the natural log (:math:`\beta = e`, up to the
    :math:`10^{-10}` it adds inside the log, which only matters once
    :math:`\sigma < 10^{-8}`); MENTOR's release uses :math:`\beta = 2`.
    A batch reduction (see the module's note): the mean runs over the global
    batch in multi-process training.

    Args:
        pos_score (torch.Tensor): Scores of the positive pairs :obj:`[B]`.
        neg_score (torch.Tensor): Scores of the negative pairs :obj:`[B]`.
        base (float, optional): Base :math:`\beta` of the logarithm.
            (default: :obj:`math.e`)
    """
    loss = batch_mean(F.softplus(neg_score - pos_score))
    return loss if base == math.e else loss / math.log(base)


def batch_mean(x: Tensor) -> Tensor:
    r"""The mean of all entries of :obj:`x`, a tensor of the batch's rows
    (e.g. :obj:`[B]` or :obj:`[B, d]`): :obj:`x.mean()` in one process; in
    multi-process training (:func:`pyg_mentor.distributed.global_batch`) the
    mean over the entries of every process's shard,
    :math:`\sum_r \mathrm{sum}(x_r) / \sum_r |x_r|`.

    Args:
        x (torch.Tensor): The batch's values, of any shape.
    """
    if batch_group() is None:
        return x.mean()
    total = batch_sum(torch.stack([x.sum(), x.new_tensor(float(x.numel()))]))
    return total[0] / total[1]


def embedding_norm_loss(*embeddings: Tensor) -> Tensor:
    r"""MMRec's ``EmbLoss``: the sum of the Frobenius norms (not squared) of
    the batch embeddings, divided by the batch size.

    .. math::
        \mathcal{L}_{\mathrm{reg}} = \frac{1}{B} \sum_{k} \lVert \mathbf{E}_k
        \rVert_F

    A batch reduction (see the module's note): in multi-process training the
    norms and :math:`B` are those of the global batch.

    Args:
        *embeddings (torch.Tensor): Matrices :obj:`[B, d]` of the batch.
    """
    if batch_group() is None:
        return torch.stack([emb.norm(p=2) for emb in embeddings]).sum() / embeddings[-1].size(0)
    last = embeddings[-1]
    squares = [emb.square().sum() for emb in embeddings]
    total = batch_sum(torch.stack([*squares, last.new_tensor(float(last.size(0)))]))
    return total[:-1].sqrt().sum() / total[-1]


def reg_loss(*tensors: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
    r"""Sum of the mean squares of the given tensors, MENTOR's ``REG`` term
    (before its weight :math:`10^{-3}`).

    .. math::
        \mathcal{L}_{\mathrm{reg}} = \sum_{k} \frac{1}{|\mathbf{T}_k|}
        \sum_{x \in \mathbf{T}_k} x^2

    MENTOR passes the batch users' rows of the per-modality user preferences
    and, as :obj:`shared`, the user modality weights:
    :math:`\mathrm{mean}(\mathbf{P}_v[u]^2) + \mathrm{mean}(\mathbf{P}_t[u]^2)
    + \mathrm{mean}(\mathbf{W}^2)`.

    Args:
        *tensors (torch.Tensor): Tensors of the batch's rows, of any shape: a
            batch reduction (:func:`batch_mean`, see the module's note).
        shared (Sequence[torch.Tensor]): Tensors that are not rows of the
            batch (e.g. a whole parameter), the same in every process; their
            terms come after those of :obj:`tensors`.

    Returns:
        torch.Tensor: A scalar.
    """
    if not tensors and not shared:
        raise ValueError('reg_loss needs at least one tensor')
    means = [batch_mean(t.square()) for t in tensors] + [t.square().mean() for t in shared]
    return torch.stack(means).sum()


def masked_cosine_loss(x_masked: Tensor, x_mapped: Tensor) -> Tensor:
    r"""One minus the mean row-wise cosine similarity, MENTOR's feature-mask
    loss for one side (users or items).

    .. math::
        \mathcal{L}_{\mathrm{mask}} = 1 - \frac{1}{N} \sum_{n=1}^{N}
        \frac{\langle \tilde{\mathbf{x}}_n, \hat{\mathbf{x}}_n \rangle}
        {\max(\lVert \tilde{\mathbf{x}}_n \rVert_2, \epsilon)
        \max(\lVert \hat{\mathbf{x}}_n \rVert_2, \epsilon)},
        \qquad \epsilon = 10^{-8},

    with the semantics of :func:`torch.nn.functional.cosine_similarity`.
    The caller builds both views: :math:`\tilde{\mathbf{x}}` = dropout of the
    representation, :math:`\hat{\mathbf{x}}` = a linear map of it (the release
    computes both under :func:`torch.no_grad`).

    Args:
        x_masked (torch.Tensor): The masked (dropped-out) view :obj:`[N, D]`.
        x_mapped (torch.Tensor): The mapped view :obj:`[N, D]`.

    Returns:
        torch.Tensor: A scalar in :math:`[0, 2]`.
    """
    return 1 - F.cosine_similarity(x_masked, x_mapped, dim=-1, eps=1e-8).mean()


class _VarMeanAll(torch.autograd.Function):
    r"""Unbiased variance and mean over every entry of several tensors taken
    together, as :func:`torch.var_mean` of their concatenation, without
    concatenating them: two passes forward (:math:`\mu`, then the centred
    entries :math:`c`, kept for the backward pass), one backward
    (:math:`\partial/\partial x = 2 c\, g_{\sigma^2} / (n - 1) + g_\mu / n`)."""

    @staticmethod
    def forward(ctx: Any, *parts: Tensor) -> tuple[Tensor, Tensor]:
        n = sum(p.numel() for p in parts)
        mean = torch.stack([p.sum() for p in parts]).sum() / n
        centred = [p - mean for p in parts]
        sq = torch.stack([c.square().sum() for c in centred]).sum()
        ctx.save_for_backward(*centred)
        ctx.n = n
        return sq / max(n - 1, 1), mean

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_var: Tensor, grad_mean: Tensor) -> tuple[Tensor | None, ...]:
        n = ctx.n
        scale, shift = grad_var * (2.0 / max(n - 1, 1)), grad_mean / n
        return tuple(
            c.mul(scale).add_(shift) if need else None
            for c, need in zip(ctx.saved_tensors, ctx.needs_input_grad)
        )


def _var_mean(rep: Tensor | Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    parts = (rep,) if isinstance(rep, Tensor) else tuple(rep)
    if not parts or not all(isinstance(p, Tensor) for p in parts):
        raise TypeError('align_loss: a representation is a tensor or a sequence of tensors')
    if sum(p.numel() for p in parts) < 2:
        raise ValueError('align_loss: every representation needs at least two entries')
    return _VarMeanAll.apply(*parts)


def align_loss(
    reps: Mapping[Any, Tensor | Sequence[Tensor]] | Sequence[Tensor | Sequence[Tensor]],
    pairs: Iterable[tuple[Any, Any]] | None = None,
) -> Tensor:
    r"""MENTOR's multilevel cross-modal alignment: matches the global mean and
    variance of whole representation matrices, pair by pair.

    .. math::
        \mathcal{L}_{\mathrm{align}} = \sum_{(a, b) \in \mathcal{P}}
        \lvert \sigma^2_a - \sigma^2_b \rvert + \lvert \mu_a - \mu_b \rvert,

    where :math:`\mu_a` and :math:`\sigma^2_a` are the scalar mean and the
    unbiased variance over *all* entries of :math:`\mathbf{R}_a`. By default
    :math:`\mathcal{P}` holds every unordered pair; for MENTOR's guide
    :math:`g`, fused :math:`r`, visual :math:`v` and textual :math:`t`
    representations (users and items stacked, :obj:`[U + I, 2d]` each) these
    are the six pairs :math:`(g,r), (g,v), (g,t), (r,v), (r,t), (v,t)` (the
    paper's four alignment levels). The weight (0.1) is the caller's.

    Args:
        reps (Mapping or Sequence): Two or more representations, keyed by name
            or by position; each a tensor (any shape, at least two entries) or
            a sequence of tensors whose entries are taken together, as if
            concatenated (e.g. :obj:`(users, items)`, which saves the
            concatenation and its backward pass).
        pairs (Iterable[tuple], optional): The pairs of keys (names, or
            positions for a sequence) to align. (default: all unordered pairs,
            in the order of :func:`itertools.combinations`)

    Returns:
        torch.Tensor: A scalar.
    """
    tensors = dict(reps) if isinstance(reps, Mapping) else dict(enumerate(reps))
    if len(tensors) < 2:
        raise ValueError(f'align_loss needs at least two representations (got {len(tensors)})')
    pairs = list(itertools.combinations(tensors, 2) if pairs is None else pairs)
    if not pairs:
        raise ValueError('align_loss needs at least one pair')
    needed = {key for pair in pairs for key in pair}
    missing = needed - tensors.keys()
    if missing:
        raise KeyError(f'align_loss: unknown representations {sorted(map(str, missing))}')
    stats = {key: _var_mean(tensors[key]) for key in tensors if key in needed}
    terms = [
        (stats[a][0] - stats[b][0]).abs() + (stats[a][1] - stats[b][1]).abs() for a, b in pairs
    ]
    return torch.stack(terms).sum()


def _check_views(name: str, a: Tensor, b: Tensor, tau: float) -> None:
    r"""The inputs of a contrastive loss: two :obj:`[N, d]` views and
    :math:`\tau > 0`."""
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f'{name} expects two [N, d] matrices of the same shape '
            f'(got {tuple(a.shape)} and {tuple(b.shape)})'
        )
    if not tau > 0:
        raise ValueError(f'{name} needs a temperature tau > 0 (got {tau})')


def info_nce(
    a: Tensor, b: Tensor, tau: float, chunk_size: int | Literal['auto'] | None = 'auto'
) -> Tensor:
    r"""InfoNCE between matched rows of two views, every other row of
    :obj:`b` being a negative (MENTOR's graph-perturbation loss).

    With row-normalised :math:`\hat{\mathbf{a}}_i = \mathbf{a}_i / \max(\lVert
    \mathbf{a}_i \rVert_2, 10^{-12})` (likewise :math:`\hat{\mathbf{b}}_j`),

    .. math::
        \mathcal{L}_{\mathrm{NCE}} = \frac{1}{N} \sum_{i=1}^{N} \left(
        -\frac{\langle \hat{\mathbf{a}}_i, \hat{\mathbf{b}}_i \rangle}{\tau}
        + \log \sum_{j=1}^{N} \exp \frac{\langle \hat{\mathbf{a}}_i,
        \hat{\mathbf{b}}_j \rangle}{\tau} \right)
        = -\frac{1}{N} \sum_{i=1}^{N} \log \frac{\exp(\langle
        \hat{\mathbf{a}}_i, \hat{\mathbf{b}}_i \rangle / \tau)}
        {\sum_{j} \exp(\langle \hat{\mathbf{a}}_i, \hat{\mathbf{b}}_j \rangle
        / \tau)}.

    It is computed over whatever rows it is given: all users (or items) as in
    the release, or e.g. the unique rows of a batch.

    With :obj:`chunk_size=None` it is the plain dense formula, which holds the
    :math:`N \times N` similarity matrix, 1.5 GB for Baby's 19,445 users in
    float32 and 5 GB for Sports' 35,598; its forward and backward passes
    together peak at four such matrices. Otherwise the log-sum-exp term is
    computed :obj:`chunk_size` rows of :math:`\hat{\mathbf{a}}` at a time by
    a custom autograd function that never holds more than a
    :obj:`[chunk_size, N]` block. As each block holds complete rows, its
    softmax :math:`P_{ij} = \exp(S_{ij}) / \sum_k \exp(S_{ik})`,
    :math:`S = \hat{\mathbf{A}} \hat{\mathbf{B}}^{\top} / \tau`, is known in
    the forward pass, which therefore also accumulates the gradients
    :math:`\partial \mathcal{L} / \partial \hat{\mathbf{A}} = P
    \hat{\mathbf{B}} / (N\tau)` and :math:`\partial \mathcal{L} / \partial
    \hat{\mathbf{B}} = P^{\top} \hat{\mathbf{A}} / (N\tau)` (:obj:`[N, d]`
    each; skipped when no gradient is needed): three :math:`N \times N
    \times d` matrix products in all, as for the dense forward and backward,
    and one :math:`\exp` per entry. Since the rows are unit vectors,
    :math:`\lvert S_{ij} \rvert \le 1/\tau`, so :math:`\exp(S_{ij})` needs
    no log-sum-exp shift in float32 for :math:`\tau \ge 0.025`; smaller
    :math:`\tau` fall back to a per-row maximum. The value
    equals the dense one to float rounding, and so do the gradients (the
    normalisation and the positive term are plain autograd). On a 2-core CPU
    the chunked version is ~4x faster than the dense one forward+backward
    (~2.4x forward only) at the shape of Baby's users, see
    ``benchmarks/info_nce.py``. The result is not twice differentiable.

    Args:
        a (torch.Tensor): Anchor view :obj:`[N, d]`.
        b (torch.Tensor): Positive view :obj:`[N, d]`; row :obj:`i` is the
            positive of :obj:`a[i]`, the other rows its negatives.
        tau (float): The temperature :math:`\tau > 0`.
        chunk_size (int or str, optional): Rows of :obj:`a` per chunk,
            :obj:`"auto"`, or :obj:`None` for the dense formula. 2048 to 8192
            run equally fast at Baby's and Sports' shapes on a 2-core CPU;
            much smaller chunks are slower (the :obj:`[N, d]` gradient is
            updated once per chunk). :obj:`"auto"` takes the largest power of
            two up to 2048 whose :obj:`[chunk_size, N]` block holds at most
            48M entries (192 MB in float32): 2048 for Baby's users, 1024 for
            Sports' and Clothing's, which keeps the whole call under 300 MB
            there (see :func:`auto_chunk_size`). (default: :obj:`"auto"`)

    Returns:
        torch.Tensor: A scalar.
    """
    _check_views('info_nce', a, b, tau)
    if chunk_size == 'auto':
        chunk_size = auto_chunk_size(b.size(0))
    elif chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(
            f"chunk_size must be a positive integer, 'auto' or None (got {chunk_size!r})"
        )
    a_hat, b_hat = F.normalize(a, dim=1, eps=1e-12), F.normalize(b, dim=1, eps=1e-12)
    pos = (a_hat * b_hat).sum(dim=1).mean() / tau
    if chunk_size is None:
        return torch.logsumexp(a_hat @ b_hat.t() / tau, dim=1).mean() - pos
    if torch.is_grad_enabled() and (a_hat.requires_grad or b_hat.requires_grad):
        lse = _ChunkedLogSumExpMean.apply(a_hat, b_hat, tau, chunk_size)
    else:
        lse = _chunked_logsumexp_mean(a_hat, b_hat, tau, chunk_size, False, False)[0]
    return lse - pos


#: Largest block :func:`info_nce` holds with ``chunk_size='auto'`` (entries).
AUTO_BLOCK_ENTRIES = 48 * 2**20
#: Largest chunk ``'auto'`` picks; larger ones are no faster on a CPU.
AUTO_MAX_CHUNK = 2048


def auto_chunk_size(num_columns: int) -> int:
    r"""The chunk size :func:`info_nce` uses with :obj:`chunk_size="auto"`
    for :obj:`num_columns` candidate rows: the largest power of two
    :math:`c \le 2048` with :math:`c \cdot N \le 48 \cdot 2^{20}`, at least 1.

    Example:
        >>> auto_chunk_size(19445), auto_chunk_size(35598)
        (2048, 1024)
    """
    if num_columns < 1:
        return AUTO_MAX_CHUNK
    fit = max(1, AUTO_BLOCK_ENTRIES // num_columns)
    return min(AUTO_MAX_CHUNK, 1 << (fit.bit_length() - 1))


# Without a shift, exp(S) with |S| <= 1/tau stays within float32's range
# (exp(+-40) ~ 2e17, 4e-18; a row sum of up to 1e12 such terms is finite)
# while 1/tau <= 40. Smaller temperatures shift each row by its maximum.
_MAX_UNSHIFTED_LOGIT = 40.0


def _chunked_logsumexp_mean(
    a: Tensor, b: Tensor, tau: float, chunk_size: int, grad_a: bool, grad_b: bool
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    r"""For unit rows :obj:`a` :obj:`[N, d]`, :obj:`b` :obj:`[M, d]`: the mean
    over :math:`i` of :math:`\log \sum_j \exp(\langle a_i, b_j \rangle / \tau)`
    and, on request, its gradients w.r.t. :obj:`a` and :obj:`b`, computed
    :obj:`chunk_size` rows of :obj:`a` at a time."""
    n, d = a.shape
    m = b.size(0)
    chunk = min(chunk_size, n)
    row_max = 1.0 / tau > _MAX_UNSHIFTED_LOGIT
    # The three products keep the inner width d: an extra column (e.g. for a
    # shift or the row sums) costs ~20% in every GEMM, more than a row sum.
    a_scaled = a * (1.0 / tau)
    block = a.new_empty(chunk, m)
    prod = a.new_empty(chunk, d) if grad_a else None
    lse = a.new_empty(n)
    out_a = a.new_empty(n, d) if grad_a else None
    out_b = b.new_zeros(m, d) if grad_b else None
    for start in range(0, n, chunk):
        end = min(start + chunk, n)
        e = block[: end - start]
        torch.mm(a_scaled[start:end], b.t(), out=e)  # S
        if row_max:
            offset = e.amax(dim=1, keepdim=True)
            e.sub_(offset)
        e.exp_()
        z = e.sum(dim=1)
        torch.log(z, out=lse[start:end])
        if row_max:
            lse[start:end] += offset.squeeze(1)
        if grad_a or grad_b:
            # softmax P = e / z; both gradients carry 1 / (N tau)
            scale = z.mul(tau * n).reciprocal_().unsqueeze(1)
            if out_a is not None and prod is not None:
                p = prod[: end - start]
                torch.mm(e, b, out=p)
                torch.mul(p, scale, out=out_a[start:end])
            if out_b is not None:
                out_b.addmm_(e.t(), a[start:end] * scale)
    return lse.mean(), out_a, out_b


class _ChunkedLogSumExpMean(torch.autograd.Function):
    r"""Chunked :math:`\frac{1}{N} \sum_i \log \sum_j \exp(\langle a_i, b_j
    \rangle / \tau)` for unit rows, with the gradients computed in the
    forward pass (see :func:`info_nce`)."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, tau: float, chunk_size: int) -> Tensor:
        grad_a, grad_b = ctx.needs_input_grad[:2]
        out, ctx.grad_a, ctx.grad_b = _chunked_logsumexp_mean(a, b, tau, chunk_size, grad_a, grad_b)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad_a = None if ctx.grad_a is None else ctx.grad_a * grad_out
        grad_b = None if ctx.grad_b is None else ctx.grad_b * grad_out
        return grad_a, grad_b, None, None


def grace_nce(
    anchor: Tensor,
    positive: Tensor,
    tau: float,
    chunk_size: int | None = 1024,
    eps: float = 1e-8,
) -> Tensor:
    r"""One-directional GRACE-style contrastive loss with intra- and
    inter-view negatives (MMSSL's cross-modal contrastive loss).

    With cosine similarities :math:`c(\mathbf{x}, \mathbf{y})` of the
    row-normalised views (:math:`\max(\lVert\cdot\rVert_2, 10^{-12})`, so an
    all-zero row has similarity 0 to everything) and
    :math:`f(x) = \exp(x / \tau)`,

    .. math::
        \mathcal{L} = -\frac{1}{N} \sum_{b=1}^{N} \log \left(
        \frac{f(c(\mathbf{a}_b, \mathbf{p}_b))}
        {\sum_{j} f(c(\mathbf{a}_b, \mathbf{a}_j)) + \sum_{j}
        f(c(\mathbf{a}_b, \mathbf{p}_j)) - f(c(\mathbf{a}_b, \mathbf{a}_b))}
        + \epsilon \right)

    Only :obj:`anchor` rows are anchors (no symmetric term). The self term is
    left out of the sum rather than subtracted (no cancellation), and
    numerator and denominator are both scaled by :math:`\exp(-s_b)`, with
    :math:`s_b` the row's largest remaining logit (same ratio, no overflow or
    0/0 for small :math:`\tau`). With :obj:`chunk_size` the rows are
    processed :obj:`chunk_size` anchors at a time under activation
    checkpointing, so neither the forward nor the backward pass ever holds
    more than a :obj:`[chunk_size, N]` block of similarities.

    Args:
        anchor (torch.Tensor): Anchor view :obj:`[N, d]`.
        positive (torch.Tensor): Second view :obj:`[N, d]`; row :obj:`b` is
            the positive of :obj:`anchor[b]`.
        tau (float): Temperature :math:`\tau > 0`.
        chunk_size (int, optional): Anchors per chunk, or :obj:`None` for the
            dense :math:`N \times N` formula. (default: :obj:`1024`)
        eps (float, optional): :math:`\epsilon` inside the logarithm.
            (default: :obj:`1e-8`)

    Returns:
        torch.Tensor: A scalar.
    """
    _check_views('grace_nce', anchor, positive, tau)
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f'chunk_size must be a positive integer or None (got {chunk_size})')
    a = F.normalize(anchor, dim=1, eps=1e-12)
    p = F.normalize(positive, dim=1, eps=1e-12)
    n = a.size(0)
    chunk = n if chunk_size is None else min(chunk_size, n)

    def rows(start: int, a: Tensor, p: Tensor) -> Tensor:
        a_rows = a[start : start + chunk]
        diag = torch.arange(a_rows.size(0), device=a.device)
        self_mask = torch.zeros(a_rows.size(0), n, dtype=torch.bool, device=a.device)
        self_mask[diag, diag + start] = True
        intra = (a_rows @ a.t() / tau).masked_fill(self_mask, float('-inf'))
        inter = a_rows @ p.t() / tau  # [chunk, N]
        shift = torch.maximum(intra.amax(1), inter.amax(1)).detach().view(-1, 1)
        denom = (intra - shift).exp().sum(1) + (inter - shift).exp().sum(1)
        num = (inter[diag, diag + start] - shift.view(-1)).exp()
        return -torch.log(num / denom + eps).sum()

    checkpoint = (
        chunk_size is not None and torch.is_grad_enabled() and (a.requires_grad or p.requires_grad)
    )
    total = a.new_zeros(())
    for start in range(0, n, chunk):
        if checkpoint:
            from torch.utils.checkpoint import checkpoint as ckpt

            total = total + ckpt(rows, start, a, p, use_reentrant=False)
        else:
            total = total + rows(start, a, p)
    return total / n
