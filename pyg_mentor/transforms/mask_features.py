r"""Random masking of item features (feature-view augmentation), as a
transform."""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch_geometric.data import HeteroData
from torch_geometric.transforms import BaseTransform

from pyg_mentor.typing import ITEM, feature_key, select_modalities
from pyg_mentor.utils.augment import _check_probability, mask_features


class MaskFeatures(BaseTransform):
    r"""Masks the item features :obj:`data['item'].x_<m>` of every modality
    :math:`m` with inverted dropout (see
    :func:`~pyg_mentor.utils.augment.mask_features`):

    .. math::
        \tilde{\mathbf{X}}_m = \frac{\mathbf{M}_m \odot \mathbf{X}_m}{1 - p},
        \qquad (\mathbf{M}_m)_{ij} \sim \mathrm{Bernoulli}(1 - p),

    drawn independently for every entry and modality. Everything else in the
    data is left as it is.

    This is the data-level form of MENTOR's feature view. MENTOR itself masks
    the fused *representations* inside the model, with the functional twin
    :func:`~pyg_mentor.utils.augment.mask_features`.

    Returns a shallow copy of the data (:func:`copy.copy`); the input is never
    modified. Draws from the global random number generator (seed it with
    :func:`torch.manual_seed`).

    Args:
        p (float): The masking probability, :math:`0 \le p < 1`.
        modalities (Sequence[str], optional): The modalities to mask. If
            :obj:`None`, masks every modality with features in
            :obj:`data['item']`. (default: :obj:`None`)

    Example:
        >>> import torch_geometric.transforms as T
        >>> transform = T.Compose([DropInteractions(0.2), MaskFeatures(0.5)])
        >>> view = transform(data)  # data itself is unchanged
    """

    def __init__(self, p: float, modalities: Sequence[str] | None = None) -> None:
        self.p = _check_probability(p)
        if isinstance(modalities, str):
            modalities = [modalities]
        self.modalities = None if modalities is None else list(modalities)

    def forward(self, data: HeteroData) -> HeteroData:
        names = select_modalities(data, self.modalities, self.__class__.__name__)
        # BaseTransform.__call__ copies too; copying here keeps a direct
        # `forward` call from modifying its input. Shallow copies are cheap.
        data = copy.copy(data)
        store = data[ITEM]
        for name in names:
            key = feature_key(name)
            store[key] = mask_features(store[key], self.p)
        return data

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(p={self.p}, modalities={self.modalities})'
