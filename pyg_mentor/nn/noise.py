r"""Augmentations of representations inside a model, as modules (identity in
eval mode): SimGCL-style embedding noise between propagation layers and
MENTOR's feature masking."""

from __future__ import annotations

from torch import Tensor
from torch.nn import Module

from pyg_mentor.utils.augment import _check_eps, _check_probability, embedding_noise, mask_features


class EmbeddingNoise(Module):
    r"""Perturbs embeddings with random noise of fixed norm, pointing into
    their orthant (see :func:`~pyg_mentor.utils.augment.embedding_noise`):

    .. math::
        \tilde{\mathbf{h}}_n = \mathbf{h}_n + \epsilon \cdot
        \mathrm{sign}(\mathbf{h}_n) \odot
        \frac{\boldsymbol{\delta}_n}{\lVert \boldsymbol{\delta}_n \rVert_2},
        \qquad \boldsymbol{\delta}_n \sim \mathcal{U}[0, 1)^d,

    freshly drawn on every call in training mode; the identity in eval mode.

    MENTOR's noise views apply it after *each* propagation layer, so the next
    layer propagates the perturbed embeddings:

    .. code-block:: python

        noise = EmbeddingNoise(eps=0.1)
        h1 = noise(conv(x, edge_index))
        h2 = noise(conv(h1, edge_index))
        out = x + h1 + h2

    The noise views only feed the training loss (the graph-perturbation
    InfoNCE); scores and evaluation use the noise-free views. The released
    MENTOR perturbs whenever a noise view is computed; being the identity in
    eval mode here changes no training step and no evaluated score, and lets
    the same module sit in a model that is evaluated with :meth:`eval`.

    Args:
        eps (float, optional): The noise magnitude :math:`\epsilon \ge 0`, the
            L2 norm of the noise added to each row. (default: :obj:`0.1`)

    Shapes:
        - **input:** embeddings :math:`(N, d)` (rows along the last dimension)
        - **output:** perturbed embeddings :math:`(N, d)`
    """

    def __init__(self, eps: float = 0.1) -> None:
        super().__init__()
        self.eps = _check_eps(eps)

    def forward(self, h: Tensor) -> Tensor:
        if not self.training:
            return h
        return embedding_noise(h, self.eps)

    def extra_repr(self) -> str:
        return f'eps={self.eps}'


class FeatureMask(Module):
    r"""Masks representations with inverted dropout (see
    :func:`~pyg_mentor.utils.augment.mask_features`), MENTOR's feature view:

    .. math::
        \tilde{\mathbf{x}} = \frac{\mathbf{m} \odot \mathbf{x}}{1 - p},
        \qquad m_j \sim \mathrm{Bernoulli}(1 - p),

    freshly drawn on every call in training mode; the identity in eval mode.
    It is the twin of the :class:`~pyg_mentor.transforms.MaskFeatures`
    transform for what is not data: representations computed inside a model.

    Args:
        p (float, optional): The masking probability, :math:`0 \le p < 1`.
            (default: :obj:`0.5`)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_probability(p)

    def forward(self, x: Tensor) -> Tensor:
        return mask_features(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f'p={self.p}'
