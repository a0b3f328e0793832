r"""MMRec's atomic interaction files as a :class:`~torch_geometric.data.HeteroData`.

MMRec (and MENTOR, which uses MMRec's data code) stores a data set ``<name>`` as a
folder::

    <root>/<name>/<name>.inter       # TSV: userID, itemID, x_label (+ ignored columns)
    <root>/<name>/image_feat.npy     # [num_items, d_image], row i = item id i
    <root>/<name>/text_feat.npy      # [num_items, d_text]   (any <modality>_feat.npy)

This module reads that folder into the layout of :mod:`pyg_mentor.typing` and applies
MMRec's own rules (``RecDataset``): node counts are ``max id + 1`` over the whole file,
``x_label`` 0/1/2 selects train/valid/test, valid/test rows of users without a train
row are dropped ("cold-start users"), and no item is filtered. Input is validated:
every problem raises one :class:`DataFormatError` that names the file (and line), and
every row that is dropped is logged with its count.

Nothing read from a data set folder can run code: ``.npy`` files are opened with
``allow_pickle=False``, and the processed cache is this module's own format (tensors,
numbers and strings only), loaded with ``torch.load(weights_only=True)`` and no
fallback; PyG's ``processed/pre_transform.pt`` / ``pre_filter.pt`` are never read.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os.path as osp
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData, InMemoryDataset

from pyg_mentor.typing import RATED_BY, RATES, feature_key, label_key
from pyg_mentor.utils.io import atomic_torch_save, file_digest, safe_torch_load

log = logging.getLogger(__name__)

#: Columns of a ``.inter`` file that are read; any other column is ignored.
REQUIRED_COLUMNS = ('userID', 'itemID', 'x_label')
#: ``x_label`` value -> split name (MMRec's convention).
SPLIT_OF_LABEL = {0: 'train', 1: 'valid', 2: 'test'}
#: A file ``<modality>_feat.npy`` in the data set folder holds item features.
FEATURE_SUFFIX = '_feat.npy'

# Bump when the processed layout or the processing rules change, so that caches
# written by an older version of this module are not used.
_PROCESS_VERSION = 2
#: The processed cache's own format tag (a dict of tensors, numbers, strings).
_CACHE_FORMAT = 'pyg_mentor.mmrec'
#: An id column whose max id + 1 exceeds both this many nodes and
#: :obj:`SPARSE_ID_RATIO` times its number of distinct ids is refused (unless
#: :obj:`allow_sparse_ids`): MMRec's ids are 0..N-1, and one stray large id
#: would allocate embeddings for every id below it.
SPARSE_ID_MIN_NODES = 1_000_000
SPARSE_ID_RATIO = 10
# Orphan temporary files of the cache older than this are removed.
_STALE_TMP_SECONDS = 3600
# Rows of a feature matrix converted (and checked) per step; bounds the memory
# used on top of the float32 result.
_FEATURE_CHUNK_ELEMENTS = 1 << 24


class DataFormatError(ValueError):
    r"""A data set file is missing or does not have the expected format.

    The message names the file and, where it applies, the 1-based line number.
    """


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------
def find_inter_file(root: str | Path, name: str) -> Path:
    r"""The interaction file of data set :obj:`name`: ``<root>/<name>/<name>.inter``,
    or ``<root>/<name>/<name>.inter.gz`` when the plain file is absent.

    Raises:
        DataFormatError: If the folder or both files are missing.
    """
    folder = Path(root) / name
    candidates = [folder / f'{name}.inter', folder / f'{name}.inter.gz']
    looked_for = ' or '.join(str(p) for p in candidates)
    if not folder.is_dir():
        raise DataFormatError(
            f"Data set folder '{folder}' does not exist (looked for {looked_for})"
        )
    for path in candidates:
        if path.is_file():
            return path
    raise DataFormatError(
        f"No interaction file for data set '{name}' in '{folder}' (looked for {looked_for})"
    )


def find_feature_files(root: str | Path, name: str) -> dict[str, Path]:
    r"""Every ``<modality>_feat.npy`` in ``<root>/<name>``, as
    ``{modality: path}`` sorted by modality name."""
    folder = Path(root) / name
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        if not (path.name.endswith(FEATURE_SUFFIX) and path.is_file()):
            continue
        modality = path.name[: -len(FEATURE_SUFFIX)]
        if not modality.isidentifier():
            raise DataFormatError(
                f"{path}: feature files must be named '<modality>{FEATURE_SUFFIX}' "
                f"with <modality> a Python identifier (e.g. 'image{FEATURE_SUFFIX}'),"
                f" got modality '{modality}'"
            )
        out[modality] = path
    return out


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith('.gz'):
            with gzip.open(path, 'rb') as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # e.g. a truncated or non-gzip '.gz' file
        raise DataFormatError(f'{path}: cannot be read ({e})') from None


def _parse_int_column(fields: list[bytes], path: Path, column: str, what: str) -> np.ndarray:
    r"""Parses one column (byte strings of data lines 2, 3, ...) to int64; on
    failure reports the first field that is not an integer, with its line."""
    try:
        return np.array(fields, dtype=np.bytes_).astype(np.int64)
    except (ValueError, OverflowError):
        pass
    for i, field in enumerate(fields):
        try:
            value = int(field)
            if not -(2**63) <= value < 2**63:
                raise OverflowError
        except (ValueError, OverflowError):
            text = field.decode('utf-8', errors='replace')
            raise DataFormatError(
                f"{path}, line {i + 2}: column '{column}' {what}, got '{text}'"
            ) from None
    raise AssertionError('unreachable')  # pragma: no cover


def read_mmrec_inter(path: str | Path) -> dict[str, np.ndarray]:
    r"""Reads an MMRec atomic interaction file (``.inter``, or gzipped ``.inter.gz``).

    The file is tab-separated with a header line that holds at least the columns
    ``userID``, ``itemID`` and ``x_label`` in any order; other columns (e.g.
    ``rating``, ``timestamp``) are ignored. ``x_label`` is 0 (train), 1 (valid) or
    2 (test). Trailing blank lines and ``\r\n`` line ends are accepted.

    Args:
        path: The file; a name ending in ``.gz`` is read as gzip.

    Returns:
        :obj:`{'userID': [N], 'itemID': [N], 'x_label': [N]}` int64 arrays in the
        order of the file's rows.

    Raises:
        DataFormatError: On an empty file, a missing or duplicate column in the
            header, a line with the wrong number of fields, a non-integer or
            negative id, or an ``x_label`` other than 0/1/2. The message names the
            file and the 1-based line.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if b'\r' in raw:
        raw = raw.replace(b'\r\n', b'\n')
    raw = raw.rstrip(b'\n')
    header, _, body = raw.partition(b'\n')
    header = header.removeprefix(b'\xef\xbb\xbf')  # UTF-8 byte order mark
    if not header.strip():
        raise DataFormatError(
            f'{path}, line 1: expected a tab-separated header with the columns '
            f'{", ".join(REQUIRED_COLUMNS)}, found an empty '
            f'{"file" if not raw else "line"}'
        )

    columns = [c.strip() for c in header.decode('utf-8', errors='replace').split('\t')]
    if not set(REQUIRED_COLUMNS) & set(columns) and all(
        re.fullmatch(r'[+-]?\d+(\.\d*)?', c) for c in columns
    ):
        raise DataFormatError(
            f'{path}, line 1: missing header: the file must start with a '
            f'tab-separated header naming the columns {", ".join(REQUIRED_COLUMNS)}, '
            f'but line 1 holds data {columns}'
        )
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            raise DataFormatError(
                f"{path}, line 1: duplicate column '{column}' in the header {columns}"
            )
        seen.add(column)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise DataFormatError(
            f'{path}, line 1: missing column(s) {missing} in the tab-separated '
            f'header {columns} (expected at least {list(REQUIRED_COLUMNS)})'
        )
    num_columns = len(columns)

    if not body:
        return {c: np.zeros(0, dtype=np.int64) for c in REQUIRED_COLUMNS}

    # Vectorised check that every line has `num_columns` fields (data line k,
    # 0-based, is line k + 2 of the file):
    buf = np.frombuffer(body, dtype=np.uint8)
    line_ends = np.flatnonzero(buf == ord('\n'))
    num_lines = line_ends.size + 1
    tabs = np.flatnonzero(buf == ord('\t'))
    tabs_per_line = np.bincount(np.searchsorted(line_ends, tabs), minlength=num_lines)
    bad = np.flatnonzero(tabs_per_line != num_columns - 1)
    if bad.size > 0:
        k = int(bad[0])
        starts = np.concatenate([[0], line_ends + 1])
        stops = np.concatenate([line_ends, [len(body)]])
        line = body[starts[k] : stops[k]]
        found = 'an empty line' if not line.strip() else f'{tabs_per_line[k] + 1} field(s)'
        raise DataFormatError(
            f'{path}, line {k + 2}: expected {num_columns} tab-separated fields '
            f'({", ".join(columns)}), found {found} '
            f'({bad.size} such line(s) in the file)'
        )

    fields = body.replace(b'\n', b'\t').split(b'\t')
    out: dict[str, np.ndarray] = {}
    for column in REQUIRED_COLUMNS:
        if column == 'x_label':
            what = 'must be 0 (train), 1 (valid) or 2 (test)'
        else:
            what = 'must be a non-negative integer id'
        j = columns.index(column)
        values = _parse_int_column(fields[j::num_columns], path, column, what)
        if column == 'x_label':
            bad = np.flatnonzero((values < 0) | (values > 2))
        else:
            bad = np.flatnonzero(values < 0)
        if bad.size > 0:
            raise DataFormatError(
                f"{path}, line {int(bad[0]) + 2}: column '{column}' {what}, got "
                f'{int(values[bad[0]])} ({bad.size} such line(s) in the file)'
            )
        out[column] = values
    return out


def read_mmrec_features(path: str | Path, num_items: int) -> Tensor:
    r"""Reads and checks one ``<modality>_feat.npy`` file.

    The file is opened with :obj:`np.load(mmap_mode='r', allow_pickle=False)` and
    converted to float32 in chunks of rows.

    Args:
        path: The ``.npy`` file; row :obj:`i` holds the features of item :obj:`i`.
        num_items: The expected number of rows.

    Returns:
        A float32 tensor of shape :obj:`[num_items, d]`.

    Raises:
        DataFormatError: If the file is not a plain numeric ``.npy`` array (e.g.
            pickled objects), is not a 2-D floating array, has a number of rows
            other than :obj:`num_items` or no columns, or holds NaN/inf values
            (also values out of float32's range).
    """
    path = Path(path)
    expected = (
        f'expected a 2-D floating array of shape [num_items={num_items}, dim] saved with np.save'
    )
    try:
        with open(path, 'rb') as f:
            head = f.read(8)
    except OSError as e:
        raise DataFormatError(f'{path}: cannot be read ({e})') from None
    if not head.startswith(b'\x93NUMPY') and not head.startswith(b'PK'):
        raise DataFormatError(f'{path}: is not a .npy file ({_describe_head(head)}); {expected}')
    try:
        arr = np.load(path, mmap_mode='r', allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        if 'Object arrays cannot be loaded' in str(e) or 'Python objects' in str(e):
            raise DataFormatError(
                f'{path}: holds Python objects (a pickled object array), which are '
                f'refused because loading them can run code; {expected}'
            ) from None
        raise DataFormatError(f'{path}: cannot be read as a .npy array ({e}); {expected}') from None
    if not isinstance(arr, np.ndarray):  # e.g. an .npz archive
        raise DataFormatError(f'{path}: is not a single .npy array; {expected}')
    if arr.ndim != 2:
        raise DataFormatError(f'{path}: has shape {tuple(arr.shape)} ({arr.ndim}-D); {expected}')
    if arr.dtype.kind != 'f':
        raise DataFormatError(f'{path}: has dtype {arr.dtype}; {expected}')
    if arr.shape[0] != num_items:
        raise DataFormatError(
            f'{path}: has {arr.shape[0]} rows but the interaction file has '
            f'{num_items} items (max itemID + 1); row i must hold the features of '
            f'item i'
        )
    if arr.shape[1] == 0:
        raise DataFormatError(f'{path}: has no columns; {expected}')

    out = np.empty(arr.shape, dtype=np.float32)
    step = max(1, _FEATURE_CHUNK_ELEMENTS // arr.shape[1])
    num_bad, bad_rows, first_bad = 0, 0, -1
    with np.errstate(over='ignore'):  # float64 beyond float32's range -> inf
        for start in range(0, arr.shape[0], step):
            block = out[start : start + step]
            block[...] = arr[start : start + step]
            finite = np.isfinite(block)
            if not finite.all():
                rows = ~finite.all(axis=1)
                num_bad += int((~finite).sum())
                bad_rows += int(rows.sum())
                if first_bad < 0:
                    first_bad = start + int(np.flatnonzero(rows)[0])
    if num_bad > 0:
        raise DataFormatError(
            f'{path}: {num_bad} non-finite value(s) (NaN or inf, after casting to '
            f'float32) in {bad_rows} row(s); the first is row {first_bad} '
            f'(item id {first_bad})'
        )
    return torch.from_numpy(out)


def _describe_head(head: bytes) -> str:
    r"""What the first bytes of a file that is not a ``.npy`` array look like."""
    if not head:
        return 'the file is empty'
    if head[:1] == b'\x80':
        return 'it is a Python pickle, which is refused because loading it can run code'
    if head[:2] == b'\x1f\x8b':
        return 'it is gzip-compressed'
    try:
        text = head.decode('ascii')
    except UnicodeDecodeError:
        return f'it starts with the bytes {head!r}'
    if all(c.isprintable() or c in '\t\r\n' for c in text):
        return f'it starts with the text {text!r}, e.g. a text file'
    return f'it starts with the bytes {head!r}'


def check_id_range(
    ids: np.ndarray, path: str | Path, column: str, allow_sparse_ids: bool = False
) -> None:
    r"""Refuses an id column whose largest id is far above its number of
    distinct ids, before any per-node memory is allocated.

    MMRec's ids are remapped to :math:`0, \ldots, N - 1`, and node counts are
    max id + 1, so one stray id such as 50,000,000 in a file of a few thousand
    users would allocate embeddings (and masks) for 50 M nodes. The column is
    refused if max id + 1 exceeds both :obj:`SPARSE_ID_MIN_NODES` (1 M) and
    :obj:`SPARSE_ID_RATIO` (10) times the number of distinct ids.

    Args:
        ids: The column's ids (int64), in file order (data line :obj:`k` is
            line :obj:`k + 2` of the file).
        path: The file, for the message.
        column: The column name, for the message.
        allow_sparse_ids: Accept such a column anyway.

    Raises:
        DataFormatError: Naming the file, the line of the largest id and the id.
    """
    if ids.size == 0 or allow_sparse_ids:
        return
    num_nodes = int(ids.max()) + 1
    if num_nodes <= SPARSE_ID_MIN_NODES:
        return
    distinct = np.unique(ids).size
    if num_nodes <= SPARSE_ID_RATIO * distinct:
        return
    line = int(ids.argmax()) + 2
    raise DataFormatError(
        f"{path}, line {line}: column '{column}' has the id {num_nodes - 1}, but the "
        f'file holds only {distinct:,} distinct {column} values: node counts are max '
        f'id + 1, so this would allocate {num_nodes:,} nodes. MMRec ids must be '
        f'0..N-1 (remap them, e.g. with `pyg-mentor prepare`), or accept it with '
        f'allow_sparse_ids=True (`--allow-sparse-ids`)'
    )


def read_id_mapping(path: str | Path) -> dict[int, str]:
    r"""Reads one of MMRec's id maps (``u_id_mapping.csv`` /
    ``i_id_mapping.csv``): tab-separated with a header line, the original id in
    the first column and the MMRec id (an integer) in the second.

    Returns:
        :obj:`{mmrec_id: original_id}`.

    Raises:
        DataFormatError: On a missing header, a line with fewer than two
            fields, a non-integer or repeated MMRec id (file and line named).
    """
    path = Path(path)
    text = _read_bytes(path).decode('utf-8', errors='replace').removeprefix('\ufeff')
    lines = text.splitlines()
    if not lines or len(lines[0].split('\t')) < 2:
        raise DataFormatError(
            f'{path}, line 1: expected a tab-separated header with two columns '
            '(original id, MMRec id)'
        )
    out: dict[int, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split('\t')
        if len(fields) < 2:
            raise DataFormatError(
                f'{path}, line {number}: expected 2 tab-separated fields '
                f'(original id, MMRec id), found {len(fields)}'
            )
        try:
            mmrec_id = int(fields[1])
        except ValueError:
            raise DataFormatError(
                f"{path}, line {number}: the MMRec id must be an integer, got '{fields[1]}'"
            ) from None
        if mmrec_id in out:
            raise DataFormatError(f'{path}, line {number}: MMRec id {mmrec_id} repeated')
        out[mmrec_id] = fields[0]
    return out


# --------------------------------------------------------------------------------------
# Building the HeteroData object
# --------------------------------------------------------------------------------------
def _pair_ids(user: np.ndarray, item: np.ndarray) -> np.ndarray:
    r"""One int64 id per (user, item) pair, equal iff the pairs are equal."""
    if user.size == 0:
        return np.zeros(0, dtype=np.int64)
    num_items = int(item.max()) + 1
    if (int(user.max()) + 1) * num_items < 2**62:
        return user * num_items + item
    return np.unique(np.stack([user, item], axis=1), axis=0, return_inverse=True)[1].reshape(-1)


def _first_occurrences(ids: np.ndarray) -> np.ndarray:
    r"""Boolean mask that keeps the first row of each distinct id."""
    keep = np.zeros(ids.size, dtype=bool)
    keep[np.unique(ids, return_index=True)[1]] = True
    return keep


def build_hetero_data(
    num_users: int,
    num_items: int,
    train: Tensor,
    valid: Tensor,
    test: Tensor,
    features: Mapping[str, Tensor] | None = None,
) -> HeteroData:
    r"""Assembles the :mod:`pyg_mentor.typing` layout from the three splits.

    Args:
        num_users: Number of users :math:`U`.
        num_items: Number of items :math:`I`.
        train: Train (user, item) pairs, shape :obj:`[2, E_train]`.
        valid: Valid pairs, shape :obj:`[2, E_valid]`.
        test: Test pairs, shape :obj:`[2, E_test]`.
        features: :obj:`{modality: [I, d_m] float32}`, stored as
            :obj:`data['item'].x_<modality>`.
    """
    data = HeteroData()
    data['user'].num_nodes = num_users
    data['item'].num_nodes = num_items
    for modality, x in (features or {}).items():
        data['item'][feature_key(modality)] = x
    data[RATES].edge_index = train
    data[RATES][label_key('valid')] = valid
    data[RATES][label_key('test')] = test
    data[RATED_BY].edge_index = train.flip(0)
    return data


def load_mmrec(root: str | Path, name: str, *, allow_sparse_ids: bool = False) -> HeteroData:
    r"""Reads the MMRec data set ``<root>/<name>`` (no processed cache).

    Applies MMRec's rules: :math:`U` / :math:`I` = max user / item id + 1 over the
    whole file; train edges from ``x_label == 0``; valid/test rows of users without
    a train row are dropped (logged warning); no item is filtered. Repeated
    (user, item) pairs inside a split are dropped (logged warning); rows keep their
    file order inside each split. Every ``<modality>_feat.npy`` of the folder
    becomes :obj:`data['item'].x_<modality>`.

    Args:
        root: The folder that holds the data set folders.
        name: The data set name, e.g. :obj:`'baby'`.
        allow_sparse_ids: Accept id columns whose max id is far above their
            number of distinct ids (see :func:`check_id_range`).

    Returns:
        :class:`~torch_geometric.data.HeteroData` in the layout of
        :mod:`pyg_mentor.typing`.

    Raises:
        DataFormatError: On any problem with the files, see
            :func:`read_mmrec_inter`, :func:`read_mmrec_features` and
            :func:`check_id_range`, and if the train split is empty.
    """
    path = find_inter_file(root, name)
    feature_files = find_feature_files(root, name)
    cols = read_mmrec_inter(path)
    user, item, label = cols['userID'], cols['itemID'], cols['x_label']
    check_id_range(user, path, 'userID', allow_sparse_ids)
    check_id_range(item, path, 'itemID', allow_sparse_ids)
    if not (label == 0).any():
        raise DataFormatError(
            f'{path}: the train split is empty (no row with x_label 0 among {label.size} row(s))'
        )
    num_users = int(user.max()) + 1
    num_items = int(item.max()) + 1

    pair = _pair_ids(user, item)
    splits: dict[str, np.ndarray] = {}  # split name -> row indices into the file
    for value, split in SPLIT_OF_LABEL.items():
        rows = np.flatnonzero(label == value)
        # A repeated pair carries no new information, and in the train split it
        # would double an edge (its weight in the normalised adjacency and in BPR
        # sampling); in valid/test it would count one hit twice. Keep the first.
        keep = _first_occurrences(pair[rows])
        if not keep.all():
            log.warning(
                '%s: dropped %d duplicate (user, item) row(s) from the %s split '
                '(kept the first occurrence of each pair)',
                path,
                int((~keep).sum()),
                split,
            )
        splits[split] = rows[keep]

    # MMRec's `filter_out_cod_start_users`: its evaluation needs each user's train
    # items, so valid/test rows of users without a train row are dropped.
    has_train = np.zeros(num_users, dtype=bool)
    has_train[user[splits['train']]] = True
    for split in ('valid', 'test'):
        rows = splits[split]
        cold = ~has_train[user[rows]]
        if cold.any():
            log.warning(
                '%s: dropped %d %s row(s) of %d cold-start user(s) without a train '
                'row (as MMRec does)',
                path,
                int(cold.sum()),
                split,
                np.unique(user[rows[cold]]).size,
            )
        splits[split] = rows[~cold]

    # Kept as MMRec keeps them, but worth knowing:
    train_pairs = pair[splits['train']]
    for split in ('valid', 'test'):
        overlap = int(np.isin(pair[splits[split]], train_pairs).sum())
        if overlap > 0:
            log.warning(
                '%s: %d %s pair(s) also appear in the train split (kept)',
                path,
                overlap,
                split,
            )
    items_with_train = np.unique(item[splits['train']]).size
    if items_with_train < num_items:
        log.info(
            '%s: %d of %d item(s) have no train row (kept, as MMRec does)',
            path,
            num_items - items_with_train,
            num_items,
        )

    features = {m: read_mmrec_features(p, num_items) for m, p in feature_files.items()}

    def edges(rows: np.ndarray) -> Tensor:
        return torch.from_numpy(np.stack([user[rows], item[rows]]))

    data = build_hetero_data(
        num_users,
        num_items,
        edges(splits['train']),
        edges(splits['valid']),
        edges(splits['test']),
        features,
    )
    log.info(
        '%s: %d users, %d items, %d train / %d valid / %d test pairs, modalities %s',
        path,
        num_users,
        num_items,
        splits['train'].size,
        splits['valid'].size,
        splits['test'].size,
        list(features),
    )
    return data


# --------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------
class MMRecDataset(InMemoryDataset):
    r"""A multimodal recommendation data set in MMRec's atomic format, as used by
    `MMRec <https://github.com/enoche/MMRec>`_ and MENTOR (e.g. the Amazon *Baby*,
    *Sports* and *Clothing* sets of the `"MENTOR: Multi-level Self-supervised
    Learning for Multimodal Recommendation" <https://arxiv.org/abs/2402.19407>`_
    paper).

    The folder ``<root>/<name>`` holds ``<name>.inter`` (or ``<name>.inter.gz``), a
    tab-separated file with the columns ``userID``, ``itemID`` and ``x_label``
    (0 train, 1 valid, 2 test; other columns are ignored), and optionally item
    features ``<modality>_feat.npy`` (row :obj:`i` = item :obj:`i`). The data set
    holds one :class:`~torch_geometric.data.HeteroData` with node types
    :obj:`"user"` and :obj:`"item"`, the train interactions as the edge types
    :obj:`("user", "rates", "item")` and :obj:`("item", "rated_by", "user")`, the
    held-out pairs as :obj:`valid_label_index` / :obj:`test_label_index` of
    :obj:`("user", "rates", "item")`, and :obj:`data["item"].x_<modality>`
    (float32). MMRec's rules are applied, see :func:`load_mmrec`. Nothing is
    downloaded.

    The processed object is cached in ``<root>/<name>/processed/data_<key>.pt``,
    where the key hashes the raw files' names and **contents** (not their
    modification times), :obj:`repr(pre_transform)` and :obj:`allow_sparse_ids`,
    so any change to them re-processes. The cache is written atomically, in this
    class's own format (tensors, numbers and strings), and read with
    :obj:`torch.load(weights_only=True)` and no fallback: a damaged, foreign or
    code-carrying cache file is reported (a warning) and rebuilt. PyG's
    ``pre_transform.pt`` / ``pre_filter.pt`` files are never read. A
    :obj:`pre_transform` whose :func:`repr` is not stable (e.g. a lambda, whose
    repr is a memory address) is applied but not cached; give it a
    :meth:`__repr__` that shows its arguments (as every PyG transform does) to
    cache it. A folder that cannot be written is processed in memory (a
    warning).

    **STATS (Baby, shipped in** ``datasets/baby/baby.inter.gz`` **):**

    .. list-table::
        :widths: 20 10 10 10
        :header-rows: 1

        * - Node/Edge Type
          - #nodes/#edges
          - #features
          - split
        * - User
          - 19,445
          - 0
          -
        * - Item
          - 7,050
          - 0 (no features shipped)
          -
        * - User-Item
          - 118,551
          -
          - train
        * - User-Item
          - 20,559
          -
          - valid
        * - User-Item
          - 21,682
          -
          - test

    Args:
        root: Root directory that holds the data set folders.
        name: The data set's folder and file name, e.g. :obj:`"baby"`.
        transform: A function/transform that takes in an
            :class:`torch_geometric.data.HeteroData` object and returns a
            transformed version. The data object will be transformed before
            every access. (default: :obj:`None`)
        pre_transform: A function/transform that takes in an
            :class:`torch_geometric.data.HeteroData` object and returns a
            transformed version. The data object will be transformed before
            being saved to disk (e.g.
            :class:`~pyg_mentor.transforms.ModalityKNNGraph` and
            :class:`~pyg_mentor.transforms.FuseItemGraphs` in a
            :class:`~torch_geometric.transforms.Compose`). (default: :obj:`None`)
        force_reload: Whether to re-process the dataset. (default: :obj:`False`)
        allow_sparse_ids: Accept id columns whose max id is far above their
            number of distinct ids (see :func:`check_id_range`).
            (default: :obj:`False`)

    Raises:
        DataFormatError: If the files are missing or malformed.
    """

    def __init__(
        self,
        root: str | Path,
        name: str,
        transform: Callable | None = None,
        pre_transform: Callable | None = None,
        force_reload: bool = False,
        allow_sparse_ids: bool = False,
    ) -> None:
        self.name = name
        self.allow_sparse_ids = allow_sparse_ids
        self._key: str | None = None
        self._processed: HeteroData | None = None
        super().__init__(str(root), transform, pre_transform, force_reload=force_reload, log=False)
        assert self._processed is not None
        self._data, self.slices = self._processed, None
        self._processed = None

    @property
    def raw_dir(self) -> str:
        return osp.join(self.root, self.name)

    @property
    def processed_dir(self) -> str:
        return osp.join(self.root, self.name, 'processed')

    @property
    def raw_file_names(self) -> list[str]:
        inter = find_inter_file(self.root, self.name)
        feats = find_feature_files(self.root, self.name)
        return [inter.name] + [p.name for p in feats.values()]

    @property
    def cache_key(self) -> str | None:
        r"""The key of the processed cache, ``'<raw>_<params>'``: a SHA-256 of
        the raw files' names and contents, and one of every processing
        parameter (:obj:`repr(pre_transform)`, :obj:`allow_sparse_ids`);
        :obj:`None` if the :obj:`pre_transform` has no stable :func:`repr`
        (not cached)."""
        if self._key is None:
            transform = _stable_repr(self.pre_transform)
            if transform is None:
                return None
            version = f'{_CACHE_FORMAT}:v{_PROCESS_VERSION};'
            raw = hashlib.sha256(f'{version}raw={file_digest(self.raw_paths)};'.encode())
            params = hashlib.sha256(
                f'{version}pre_transform={transform};'
                f'allow_sparse_ids={bool(self.allow_sparse_ids)};'.encode()
            )
            self._key = f'{raw.hexdigest()}_{params.hexdigest()}'
        return self._key

    @property
    def processed_file_names(self) -> str:
        key = self.cache_key
        if key is None:
            return 'data_uncached.pt'
        raw, params = key.split('_')
        return f'data_{raw[:16]}_{params[:16]}.pt'

    def _process(self) -> None:
        # Replaces PyG's `Dataset._process`, which reads `pre_transform.pt` /
        # `pre_filter.pt` with `torch.load(weights_only=False)` (code execution
        # from a data set folder) and keys the cache by file names only.
        if self.cache_key is None:
            log.info(
                'pre_transform %r has no stable repr (e.g. a lambda): the data set '
                'is processed in memory and not cached',
                self.pre_transform,
            )
            self._processed = self._build()
            return
        path = Path(self.processed_paths[0])
        if not self.force_reload and path.exists():
            self._processed = self._read_cache(path)
            if self._processed is not None:
                return
        self.process()

    def _build(self) -> HeteroData:
        data = load_mmrec(self.root, self.name, allow_sparse_ids=self.allow_sparse_ids)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        return data

    def process(self) -> None:
        data = self._build()
        self._processed = data
        target = Path(self.processed_paths[0])
        problem = _unstorable(data.to_dict(), 'data')
        if problem is not None:
            log.warning(
                '%s: not cached: the processed data holds %s, which the cache does not '
                'store (tensors, numbers and strings only)',
                target,
                problem,
            )
            return
        payload = {
            'format': _CACHE_FORMAT,
            'version': _PROCESS_VERSION,
            'key': self.cache_key,
            'data': data.to_dict(),
        }
        try:
            atomic_torch_save(payload, target)
        except OSError as e:
            log.warning(
                'Cannot write the processed cache %s (%s): the data set is processed '
                'again on every load',
                target,
                e.strerror or e,
            )
            return
        self._remove_stale(target)

    def _read_cache(self, path: Path) -> HeteroData | None:
        r"""The cached data, or :obj:`None` (with a warning) if the file is
        damaged, foreign, or would run code."""
        try:
            obj = safe_torch_load(path, what='processed cache')
            if not (
                isinstance(obj, dict)
                and obj.get('format') == _CACHE_FORMAT
                and obj.get('version') == _PROCESS_VERSION
                and obj.get('key') == self.cache_key
                and isinstance(obj.get('data'), dict)
            ):
                raise ValueError(
                    f'{path}: not a processed cache of this data set (unexpected content)'
                )
            return HeteroData.from_dict(obj['data'])
        except Exception as e:  # noqa: BLE001  Any unusable cache is rebuilt.
            log.warning('Ignoring the processed cache (%s); rebuilding it', e)
            return None

    def _remove_stale(self, target: Path) -> None:
        r"""Removes the caches of earlier raw files (caches of the same raw
        files with other parameters stay), caches of earlier versions, PyG's
        ``pre_transform.pt`` / ``pre_filter.pt`` (never read), and orphan
        temporary files of interrupted writes."""
        now = time.time()
        raw = target.name.split('_')[1]
        for path in Path(self.processed_dir).iterdir():
            name = path.name
            cache = re.fullmatch(r'data_([0-9a-f]{16})(_[0-9a-f]{16})?\.pt', name)
            stale = (cache is not None and (cache.group(1) != raw or not cache.group(2))) or (
                name in ('pre_transform.pt', 'pre_filter.pt')
            )
            orphan = re.fullmatch(r'\.data_[0-9a-f_]+\.pt\..+\.tmp', name)
            try:
                if orphan and now - path.stat().st_mtime < _STALE_TMP_SECONDS:
                    continue  # Maybe another process writing right now.
                if stale or orphan:
                    log.info('Removing stale processed file %s', path)
                    path.unlink()
            except OSError:
                pass

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.name})'


def _stable_repr(obj: object) -> str | None:
    r"""The :func:`repr` of a transform, or :obj:`None` if it holds a memory
    address (and so would not identify the transform across runs)."""
    if obj is None:
        return 'None'
    text = repr(obj)
    if re.search(r' at 0x[0-9a-fA-F]+', text):
        return None
    return text


def _unstorable(value: object, where: str) -> str | None:
    r"""Where :obj:`value` holds something other than plain tensors, numbers,
    strings and containers (what the cache stores), or :obj:`None`."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if type(value) is torch.Tensor:
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _unstorable(v, f'{where}[{i}]')
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int, tuple)):
                return f'a key of type {type(k).__name__} in {where}'
            found = _unstorable(v, f'{where}[{k!r}]')
            if found is not None:
                return found
        return None
    return f'a {type(value).__name__} at {where}'
