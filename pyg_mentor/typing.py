"""Names shared by every part of the package: node types, edge types, feature keys.

The user-item data is a :class:`~torch_geometric.data.HeteroData` with this layout::

    data['user'].num_nodes                          # U  (max user id + 1, as MMRec)
    data['item'].num_nodes                          # I  (max item id + 1, as MMRec)
    data['item'].x_<modality>                       # [I, d_m] float32, e.g. x_image, x_text
    data['user', 'rates', 'item'].edge_index        # [2, E_train]  (user, item) TRAIN pairs
    data['item', 'rated_by', 'user'].edge_index     # [2, E_train]  the same pairs flipped
    data['user', 'rates', 'item'].valid_label_index # [2, E_valid]  (user, item) valid pairs
    data['user', 'rates', 'item'].test_label_index  # [2, E_test]   (user, item) test pairs
    data['item', 'similar_<modality>', 'item']      # kNN item graphs (edge_index, edge_weight)
"""

from __future__ import annotations

from collections.abc import Sequence

from torch_geometric.data import HeteroData

USER = 'user'
ITEM = 'item'
RATES = (USER, 'rates', ITEM)
RATED_BY = (ITEM, 'rated_by', USER)
#: The fused item semantic graph (see :class:`~pyg_mentor.transforms.FuseItemGraphs`).
SIMILAR = (ITEM, 'similar', ITEM)
FEATURE_PREFIX = 'x_'
SPLITS = ('valid', 'test')


def feature_key(modality: str) -> str:
    r"""The attribute of ``data['item']`` that holds a modality's features."""
    return f'{FEATURE_PREFIX}{modality}'


def similar_edge_type(modality: str) -> tuple[str, str, str]:
    r"""The item-item edge type of a modality's semantic graph."""
    return (ITEM, f'similar_{modality}', ITEM)


def label_key(split: str) -> str:
    r"""The attribute of ``data[RATES]`` that holds a split's label pairs."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split '{split}' (expected one of {SPLITS})")
    return f'{split}_label_index'


def modalities(data: HeteroData) -> list[str]:
    r"""The modalities whose item features ``data`` holds, sorted by name."""
    store = data[ITEM]
    return sorted(
        key[len(FEATURE_PREFIX) :] for key in store.keys() if key.startswith(FEATURE_PREFIX)
    )


def select_modalities(data: HeteroData, requested: Sequence[str] | None, owner: str) -> list[str]:
    r"""The modalities a transform works on: :obj:`requested`, or every modality
    of :obj:`data`; a clear error naming :obj:`owner` if :obj:`data` is not a
    :class:`HeteroData`, has no features, or lacks a requested modality."""
    if not isinstance(data, HeteroData):
        raise TypeError(f"'{owner}' expects a HeteroData object (got {type(data).__name__})")
    found = modalities(data)
    names = found if requested is None else list(requested)
    if len(names) == 0:
        raise ValueError(
            f"'{owner}' found no item features: expected data['{ITEM}'].{feature_key('<modality>')}"
        )
    for name in names:
        if name not in found:
            raise ValueError(
                f"No features for modality '{name}': "
                f"data['{ITEM}'].{feature_key(name)} is missing "
                f'(found modalities: {found})'
            )
    return names
