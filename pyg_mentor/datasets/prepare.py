r"""Raw interactions -> an MMRec data set folder (``pyg-mentor prepare``).

This module turns a raw interaction file into the folder that
:class:`~pyg_mentor.datasets.mmrec.MMRecDataset` reads, following MMRec's own
preprocessing notebooks (``preprocessing/0rating2inter.ipynb`` and
``1splitting.ipynb``) step by step:

1. **Read** (:func:`read_interactions`) a generic CSV/TSV file (columns user, item
   and optionally rating and timestamp, chosen by name or position) or Amazon review
   JSON lines (2014/2018: ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``
   in seconds; 2023: ``user_id``, ``parent_asin``, ``rating``, ``timestamp`` in
   milliseconds; lines that are Python literals, as in some 2014 dumps, are accepted
   too). Gzipped files are recognised by their content. A bad row raises
   :class:`~pyg_mentor.datasets.mmrec.DataFormatError` naming the file and line (or
   is skipped and counted with :obj:`on_bad_row='skip'`).
2. **Rating threshold** (:func:`filter_min_rating`, optional): keep rows with
   ``rating >= min_rating``. MMRec applies none (every rating is a positive).
3. **Duplicates** (:func:`drop_duplicate_interactions`). The default ``'mmrec'`` is
   MMRec's rule: ``drop_duplicates`` on (user, item, timestamp), first row kept, so
   the same pair at two different times stays twice (without a timestamp column:
   on (user, item)). ``'first'`` / ``'last'`` keep one row per (user, item): the
   earliest / latest by timestamp (ties, or no timestamp: the first / last in the
   file).
4. **k-core** (:func:`k_core_mask`): repeatedly drop every row of a user with fewer
   than :obj:`user_k` rows or of an item with fewer than :obj:`item_k` rows, both
   counted on the current rows, until nothing changes (MMRec: 5 and 5).
5. **Re-index** (:func:`first_appearance_ids`): MMRec ids ``0, 1, ...`` in order of
   first appearance (``pd.unique``) in the kept rows, which keep the file's order.
6. **Split** (:func:`mmrec_split`): MMRec's per-user random split, see there.
7. **Write** (:func:`write_mmrec_dataset`), atomically: a temporary folder that is
   renamed to ``<root>/<name>`` when complete; an existing folder is replaced only
   with :obj:`force=True`.

:func:`prepare_dataset` runs all steps and returns what each one removed.

Files written to ``<root>/<name>/``:

``<name>.inter``
    Tab-separated, header ``userID<TAB>itemID<TAB>x_label`` (0 train, 1 valid,
    2 test), one row per interaction, grouped by user in id order and, inside a
    user, train rows, then valid rows, then test rows (MMRec's ``-v4.inter`` order).
``u_id_mapping.csv`` / ``i_id_mapping.csv``
    The id maps, exactly as MMRec ships them: **tab-separated** despite the name,
    header ``user_id<TAB>userID`` (users) and ``asin<TAB>itemID`` (items; the column
    is called ``asin`` whatever the source), one row per id in MMRec-id order
    (row ``k`` holds MMRec id ``k``); the original id is text, quoted as CSV quotes
    (only if it holds a tab, a quote or a line break). ``i_id_mapping.csv`` is the
    item id map that item-feature tools take: row ``k`` names the original item of
    feature row ``k``. Read them back with
    :func:`pyg_mentor.datasets.mmrec.read_id_mapping` or
    :func:`pyg_mentor.features.read_id_map`, or with pandas:
    ``pd.read_csv(path, sep='\t', dtype=str)`` (``dtype=str`` keeps the leading
    zeros of ids such as ``0000031852``).
``prepare.json``
    Provenance: the input file, every option, the seed and the statistics.
"""

from __future__ import annotations

import array
import ast
import csv
import gzip
import json
import logging
import math
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pyg_mentor.datasets.mmrec import DataFormatError
from pyg_mentor.utils.io import _fsync_dir

log = logging.getLogger(__name__)

Format = Literal['auto', 'csv', 'tsv', 'json']
Duplicates = Literal['mmrec', 'first', 'last']
OnBadRow = Literal['error', 'skip']
Column = str | int | None

#: Header of the user id map (MMRec's ``u_id_mapping.csv``).
USER_MAP_HEADER = ('user_id', 'userID')
#: Header of the item id map (MMRec's ``i_id_mapping.csv``).
ITEM_MAP_HEADER = ('asin', 'itemID')
USER_MAP_FILE = 'u_id_mapping.csv'
ITEM_MAP_FILE = 'i_id_mapping.csv'

#: Field names of the Amazon review JSON dumps: (user, item, rating, timestamp).
AMAZON_SCHEMAS: dict[str, tuple[str, str, str, str]] = {
    'amazon-2014/2018': ('reviewerID', 'asin', 'overall', 'unixReviewTime'),
    'amazon-2023': ('user_id', 'parent_asin', 'rating', 'timestamp'),
}
# Header names recognised (case-insensitively) in a delimited file.
_KNOWN_NAMES: dict[str, tuple[str, ...]] = {
    'user': ('userid', 'user_id', 'user', 'reviewerid', 'uid'),
    'item': ('itemid', 'item_id', 'item', 'parent_asin', 'asin', 'iid'),
    'rating': ('rating', 'overall', 'score'),
    'timestamp': ('timestamp', 'unixreviewtime', 'time', 'ts'),
}
_ROLES = ('user', 'item', 'rating', 'timestamp')
_MAX_LOGGED_BAD_ROWS = 5


# --------------------------------------------------------------------------------------
# The interactions
# --------------------------------------------------------------------------------------
@dataclass
class Interactions:
    r"""Raw interactions with their original ids factorised to integer codes.

    Args:
        user: User codes, int64 :obj:`[N]`; :obj:`user_ids[user[r]]` is the
            original id of row :obj:`r`.
        item: Item codes, int64 :obj:`[N]`.
        user_ids: Original user ids, in order of first appearance in the file.
        item_ids: Original item ids, in order of first appearance in the file.
        rating: Ratings, float64 :obj:`[N]`, or :obj:`None` without a rating column.
        timestamp: Timestamps (units of the source), float64 :obj:`[N]`, or
            :obj:`None` without a timestamp column.
        line: 1-based line of each row in :obj:`source`, int64 :obj:`[N]`.
        source: The file the rows were read from.
        bad_rows: Rows skipped as malformed while reading.
    """

    user: np.ndarray
    item: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    rating: np.ndarray | None = None
    timestamp: np.ndarray | None = None
    line: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    source: str = '<memory>'
    bad_rows: int = 0

    def __len__(self) -> int:
        return int(self.user.size)

    def select(self, rows: np.ndarray) -> Interactions:
        r"""The rows :obj:`rows` (a boolean mask or indices), same id tables.

        Args:
            rows: Boolean mask of shape :obj:`[N]` or integer row indices.

        Returns:
            A new :class:`Interactions`.
        """

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return Interactions(
            self.user[rows],
            self.item[rows],
            self.user_ids,
            self.item_ids,
            pick(self.rating),
            pick(self.timestamp),
            self.line[rows],
            self.source,
            self.bad_rows,
        )

    @property
    def num_users(self) -> int:
        r"""Distinct users among the rows."""
        return int(np.unique(self.user).size)

    @property
    def num_items(self) -> int:
        r"""Distinct items among the rows."""
        return int(np.unique(self.item).size)

    def pairs(self) -> list[tuple[str, str]]:
        r"""The rows as (original user id, original item id), in row order."""
        return [
            (self.user_ids[u], self.item_ids[i])
            for u, i in zip(self.user.tolist(), self.item.tolist())
        ]


class _Builder:
    r"""Collects rows while reading, factorising ids in order of first appearance."""

    def __init__(self, path: Path, on_bad_row: OnBadRow) -> None:
        if on_bad_row not in ('error', 'skip'):
            raise ValueError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
        self.path = path
        self.on_bad_row = on_bad_row
        self.user_codes: dict[str, int] = {}
        self.item_codes: dict[str, int] = {}
        self.user = array.array('q')
        self.item = array.array('q')
        self.rating = array.array('d')
        self.timestamp = array.array('d')
        self.line = array.array('q')
        self.bad_rows = 0

    def bad(self, line: int, message: str) -> None:
        text = f'{self.path}, line {line}: {message}'
        if self.on_bad_row == 'error':
            raise DataFormatError(text)
        self.bad_rows += 1
        if self.bad_rows <= _MAX_LOGGED_BAD_ROWS:
            log.warning('Skipped bad row: %s', text)

    def add(self, line: int, user: str, item: str, rating: float | None, ts: float | None) -> None:
        self.user.append(self.user_codes.setdefault(user, len(self.user_codes)))
        self.item.append(self.item_codes.setdefault(item, len(self.item_codes)))
        if rating is not None:
            self.rating.append(rating)
        if ts is not None:
            self.timestamp.append(ts)
        self.line.append(line)

    def build(self, has_rating: bool, has_timestamp: bool) -> Interactions:
        if self.bad_rows > _MAX_LOGGED_BAD_ROWS:
            log.warning(
                '%s: skipped %d bad row(s) in all (the first %d are logged above)',
                self.path,
                self.bad_rows,
                _MAX_LOGGED_BAD_ROWS,
            )
        return Interactions(
            user=np.frombuffer(self.user, dtype=np.int64).copy(),
            item=np.frombuffer(self.item, dtype=np.int64).copy(),
            user_ids=list(self.user_codes),
            item_ids=list(self.item_codes),
            rating=np.frombuffer(self.rating, dtype=np.float64).copy() if has_rating else None,
            timestamp=np.frombuffer(self.timestamp, dtype=np.float64).copy()
            if has_timestamp
            else None,
            line=np.frombuffer(self.line, dtype=np.int64).copy(),
            source=str(self.path),
            bad_rows=self.bad_rows,
        )


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------
def _is_gzip(path: Path) -> bool:
    with open(path, 'rb') as f:
        return f.read(2) == b'\x1f\x8b'


def _lines(path: Path) -> Iterator[bytes]:
    r"""The raw lines of a (possibly gzipped) file; read errors name the file."""
    opener = gzip.open if _is_gzip(path) else open
    num = 0
    try:
        with opener(path, 'rb') as f:
            for num, raw in enumerate(f, 1):
                yield raw.removeprefix(b'\xef\xbb\xbf') if num == 1 else raw
    except (OSError, EOFError, zlib.error) as e:  # e.g. a truncated gzip file
        raise DataFormatError(f'{path}: cannot be read after line {num} ({e})') from None


def _decoded(path: Path) -> Iterator[str]:
    for num, raw in enumerate(_lines(path), 1):
        try:
            yield raw.decode('utf-8')
        except UnicodeDecodeError as e:
            raise DataFormatError(f'{path}, line {num}: not valid UTF-8 ({e})') from None


def _number(value: Any) -> float | None:
    r"""A finite float from a JSON number or a numeric string, else :obj:`None`."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _id_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def detect_format(path: str | Path) -> Literal['csv', 'tsv', 'json']:
    r"""The format of an interaction file: by its name (``.csv``, ``.tsv``/``.tab``,
    ``.json``/``.jsonl``/``.ndjson``, each optionally ``.gz``), else by its first
    non-blank line (``{`` -> JSON lines, a tab -> TSV, otherwise CSV).

    Args:
        path: The file.

    Returns:
        :obj:`'csv'`, :obj:`'tsv'` or :obj:`'json'`.
    """
    path = Path(path)
    name = path.name.lower().removesuffix('.gz')
    suffix = Path(name).suffix
    if suffix in ('.json', '.jsonl', '.ndjson'):
        return 'json'
    if suffix in ('.tsv', '.tab'):
        return 'tsv'
    if suffix == '.csv':
        return 'csv'
    for raw in _lines(path):
        text = raw.strip()
        if text:
            if text.startswith(b'{'):
                return 'json'
            return 'tsv' if b'\t' in text else 'csv'
    return 'csv'


def read_interactions(
    path: str | Path,
    *,
    format: Format = 'auto',
    sep: str | None = None,
    header: bool | Literal['auto'] = 'auto',
    user_col: Column = None,
    item_col: Column = None,
    rating_col: Column = None,
    time_col: Column = None,
    on_bad_row: OnBadRow = 'error',
) -> Interactions:
    r"""Reads raw interactions from a CSV/TSV file or Amazon review JSON lines.

    **Delimited files.** A column is chosen by header name or by 0-based position
    (an :obj:`int`, or a string of digits). Without a choice, a header is searched
    (case-insensitively) for ``userID``/``user_id``/``user``/``reviewerID``/``uid``,
    ``itemID``/``item_id``/``item``/``parent_asin``/``asin``/``iid``,
    ``rating``/``overall``/``score`` and ``timestamp``/``unixReviewTime``/``time``/
    ``ts``; a file without a header is read by position: user, item, and then
    rating and timestamp if the file has a third and fourth column (McAuley's
    "ratings only" files). With :obj:`header='auto'` the first line is a header if
    a column was chosen by name or if one of its fields is a recognised name. Fields
    are quoted as in CSV; every row must have as many fields as the first; blank
    lines are skipped; ids are stripped of surrounding blanks and kept as text.

    **JSON lines.** One object per line. Without a choice of fields, the first
    object decides between Amazon 2014/2018 (``reviewerID``, ``asin``, ``overall``,
    ``unixReviewTime``) and Amazon 2023 (``user_id``, ``parent_asin``, ``rating``,
    ``timestamp``); the rating and timestamp fields are used when the first object
    has them, and then every object must. Chosen fields (:obj:`user_col` etc.) are
    object keys.

    Args:
        path: The file, optionally gzipped (recognised by its content).
        format: :obj:`'csv'`, :obj:`'tsv'`, :obj:`'json'` (JSON lines) or
            :obj:`'auto'` (:func:`detect_format`).
        sep: Field separator of a delimited file (default: ``,`` for CSV, a tab for
            TSV).
        header: Whether the first line of a delimited file is a header
            (:obj:`'auto'`: see above).
        user_col: The user column (name or position) or JSON key.
        item_col: The item column or JSON key.
        rating_col: The rating column or JSON key (optional).
        time_col: The timestamp column or JSON key (optional).
        on_bad_row: :obj:`'error'` raises on the first malformed row;
            :obj:`'skip'` skips malformed rows, logs the first few and counts them
            in :obj:`Interactions.bad_rows`.

    Returns:
        :class:`Interactions`, rows in file order.

    Raises:
        DataFormatError: On a malformed row (with :obj:`on_bad_row='error'`), an
            unreadable file or a header/schema that does not name the columns;
            the message names the file and line.
        FileNotFoundError: If :obj:`path` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: interaction file not found')
    if format == 'auto':
        format = detect_format(path)
    builder = _Builder(path, on_bad_row)
    if format == 'json':
        if sep is not None or header != 'auto':
            raise ValueError('sep and header apply to delimited files, not to JSON lines')
        has_rating, has_time = _read_json_lines(
            path, builder, (user_col, item_col, rating_col, time_col)
        )
    elif format in ('csv', 'tsv'):
        sep = sep if sep is not None else (',' if format == 'csv' else '\t')
        has_rating, has_time = _read_delimited(
            path, builder, sep, header, (user_col, item_col, rating_col, time_col)
        )
    else:
        raise ValueError(f"format must be 'auto', 'csv', 'tsv' or 'json', got {format!r}")
    inter = builder.build(has_rating, has_time)
    log.info(
        '%s: read %d interaction(s) of %d user(s) and %d item(s)%s',
        path,
        len(inter),
        len(inter.user_ids),
        len(inter.item_ids),
        f', skipped {inter.bad_rows} bad row(s)' if inter.bad_rows else '',
    )
    return inter


def _position(spec: Column) -> int | None:
    if isinstance(spec, bool):
        raise TypeError(f'a column must be a name or a position, got {spec!r}')
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f'column positions are 0-based and >= 0, got {spec}')
        return spec
    if isinstance(spec, str) and spec.isdigit():
        return int(spec)
    return None


def _resolve_columns(
    path: Path,
    specs: Sequence[Column],
    columns: list[str] | None,
    num_fields: int,
    line: int = 1,
) -> list[int | None]:
    r"""Column index of (user, item, rating, timestamp); :obj:`None` = absent."""
    out: list[int | None] = []
    lowered = [c.lower() for c in columns] if columns is not None else None
    for role, spec in zip(_ROLES, specs):
        pos = _position(spec)
        if pos is not None:
            if pos >= num_fields:
                raise DataFormatError(
                    f'{path}, line {line}: the {role} column is position {pos} (0-based), '
                    f'but the file has {num_fields} field(s) per row'
                )
            out.append(pos)
        elif spec is not None:  # A name.
            assert columns is not None
            if spec not in columns:
                raise DataFormatError(
                    f"{path}, line {line}: no column '{spec}' (the {role} column) in the "
                    f'header {columns}'
                )
            out.append(columns.index(spec))
        elif lowered is not None:
            found = [lowered.index(n) for n in _KNOWN_NAMES[role] if n in lowered]
            if not found and role in ('user', 'item'):
                raise DataFormatError(
                    f'{path}, line {line}: cannot tell the {role} column from the header '
                    f'{columns}; name it (e.g. --{role}-col NAME or position)'
                )
            out.append(found[0] if found else None)
        else:  # No header: McAuley's "ratings only" layout user,item,rating,timestamp.
            default = _ROLES.index(role)
            # Rating and timestamp by position only when user and item are too:
            layout = role in ('user', 'item') or (specs[0] is None and specs[1] is None)
            if default < num_fields and layout:
                out.append(default)
            elif role in ('user', 'item'):
                raise DataFormatError(
                    f'{path}, line {line}: found {num_fields} field(s); need at least a user '
                    'and an item column'
                )
            else:
                out.append(None)
    taken = [c for c in out if c is not None]
    if len(set(taken)) != len(taken):
        raise ValueError(
            f'{path}: two roles use the same column: '
            f'{dict((r, c) for r, c in zip(_ROLES, out) if c is not None)}'
        )
    return out


def _read_delimited(
    path: Path,
    builder: _Builder,
    sep: str,
    header: bool | Literal['auto'],
    specs: Sequence[Column],
) -> tuple[bool, bool]:
    if len(sep) != 1:
        raise ValueError(f'sep must be one character, got {sep!r}')
    reader = csv.reader(_decoded(path), delimiter=sep)
    first_line, first = 1, None
    try:
        last = 0
        for row in reader:
            first_line, last = last + 1, reader.line_num
            if any(f.strip() for f in row):
                first = row
                break
        if first is None:
            raise DataFormatError(f'{path}: no interaction in the file (it is empty)')

        by_name = any(s is not None and _position(s) is None for s in specs)
        if header == 'auto':
            known = {n for names in _KNOWN_NAMES.values() for n in names}
            has_header = by_name or any(f.strip().lower() in known for f in first)
        else:
            has_header = bool(header)
            if by_name and not has_header:
                raise ValueError(
                    'columns chosen by name need a header line (header=True); '
                    'choose columns by 0-based position otherwise'
                )
        columns = [f.strip() for f in first] if has_header else None
        if columns is not None and len(set(columns)) != len(columns):
            raise DataFormatError(
                f'{path}, line {first_line}: duplicate column names in the header {columns}'
            )
        num_fields = len(first)
        cols = _resolve_columns(path, specs, columns, num_fields, first_line)
        names = columns or [f'field {j}' for j in range(num_fields)]
        u_col, i_col, r_col, t_col = cols
        assert u_col is not None and i_col is not None

        def parse(line: int, row: list[str]) -> None:
            if len(row) != num_fields:
                builder.bad(
                    line,
                    f'expected {num_fields} field(s) separated by {sep!r} (as on line '
                    f'{first_line}), found {len(row)}',
                )
                return
            user, item = row[u_col].strip(), row[i_col].strip()
            if not user or not item:
                builder.bad(line, f'empty {"user" if not user else "item"} id')
                return
            values: list[float | None] = []
            for role, c in (('rating', r_col), ('timestamp', t_col)):
                if c is None:
                    values.append(None)
                    continue
                x = _number(row[c])
                if x is None:
                    hint = (
                        f' (is line {first_line} a header? pass header=True / --header)'
                        if line == first_line
                        else ''
                    )
                    builder.bad(
                        line,
                        f"{role} column '{names[c]}' must be a finite number, got '{row[c]}'{hint}",
                    )
                    return
                values.append(x)
            builder.add(line, user, item, values[0], values[1])

        if not has_header:
            parse(first_line, first)
        for row in reader:
            line, last = last + 1, reader.line_num
            if row and any(f.strip() for f in row):
                parse(line, row)
            elif len(row) > 1:  # Separators only: a row of empty fields.
                parse(line, row)
    except csv.Error as e:
        raise DataFormatError(f'{path}, line {reader.line_num}: {e}') from None
    return r_col is not None, t_col is not None


def _read_json_lines(path: Path, builder: _Builder, specs: Sequence[Column]) -> tuple[bool, bool]:
    for role, spec in zip(_ROLES, specs):
        if spec is not None and not isinstance(spec, str):
            raise ValueError(f'the {role} field of JSON lines is a key (a string), got {spec!r}')
    keys: list[str | None] | None = None
    schema = 'chosen fields'
    for line, raw in enumerate(_lines(path), 1):
        text = raw.strip()
        if not text:
            continue
        try:
            decoded = text.decode('utf-8')
        except UnicodeDecodeError as e:
            builder.bad(line, f'not valid UTF-8 ({e})')
            continue
        try:
            rec = json.loads(decoded)
        except json.JSONDecodeError as e:
            try:  # Some Amazon 2014 dumps hold Python literals ({'a': 1, ...}).
                rec = ast.literal_eval(decoded)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                builder.bad(line, f'not a JSON object ({e.msg}, column {e.colno})')
                continue
        if not isinstance(rec, dict):
            builder.bad(line, f'expected a JSON object {{...}}, got {type(rec).__name__}')
            continue
        if keys is None:
            keys, schema = _json_keys(path, line, rec, specs)
            log.info('%s: JSON fields %s (%s)', path, keys, schema)
        values: list[Any] = []
        for role, key in zip(_ROLES, keys):
            if key is None:
                values.append(None)
                continue
            if key not in rec:
                builder.bad(line, f"missing the {role} field '{key}' ({schema})")
                break
            value = _id_text(rec[key]) if role in ('user', 'item') else _number(rec[key])
            if value is None:
                what = 'a non-empty string' if role in ('user', 'item') else 'a finite number'
                builder.bad(line, f"the {role} field '{key}' must be {what}, got {rec[key]!r}")
                break
            values.append(value)
        else:
            builder.add(line, values[0], values[1], values[2], values[3])
    if keys is None:
        if builder.bad_rows:
            raise DataFormatError(f'{path}: no readable JSON object in the file')
        raise DataFormatError(f'{path}: no interaction in the file (it is empty)')
    return keys[2] is not None, keys[3] is not None


def _json_keys(
    path: Path, line: int, rec: dict, specs: Sequence[Column]
) -> tuple[list[str | None], str]:
    r"""The keys of (user, item, rating, timestamp) from the first object."""
    detected: tuple[str, str, str, str] | None = None
    schema = 'chosen fields'
    if 'reviewerID' in rec:
        schema = 'amazon-2014/2018'
        detected = AMAZON_SCHEMAS[schema]
    elif 'user_id' in rec:
        schema = 'amazon-2023'
        u, i, r, t = AMAZON_SCHEMAS[schema]
        detected = (u, i if i in rec else 'asin', r, t)
    keys: list[str | None] = []
    for j, (role, spec) in enumerate(zip(_ROLES, specs)):
        if spec is not None:
            keys.append(str(spec))
        elif detected is None:
            if role in ('user', 'item'):
                raise DataFormatError(
                    f'{path}, line {line}: cannot tell the {role} field of this JSON '
                    f'object (keys {sorted(map(str, rec))}); known layouts: reviewerID/asin '
                    f'(Amazon 2014/2018), user_id/parent_asin (Amazon 2023); name '
                    f'the fields (e.g. --user-col KEY --item-col KEY)'
                )
            keys.append(None)
        elif role in ('user', 'item') or detected[j] in rec:
            keys.append(detected[j])
        else:
            keys.append(None)
    return keys, schema


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------
def filter_min_rating(inter: Interactions, min_rating: float) -> Interactions:
    r"""Keeps the rows with :obj:`rating >= min_rating`.

    Args:
        inter: The interactions; they must have ratings.
        min_rating: The threshold.

    Returns:
        The kept rows.

    Raises:
        ValueError: If :obj:`inter` has no rating column.
    """
    if inter.rating is None:
        raise ValueError(
            f'{inter.source}: a rating threshold needs a rating column, and none was '
            'found (name it with rating_col / --rating-col)'
        )
    kept = inter.select(inter.rating >= min_rating)
    log.info(
        'rating >= %g: dropped %d of %d row(s)', min_rating, len(inter) - len(kept), len(inter)
    )
    return kept


def _group_ids(*columns: np.ndarray) -> np.ndarray:
    r"""One int64 id per row, equal iff the rows are equal in every column (ids
    ``0 .. G-1`` in lexicographic order of the rows)."""
    n = columns[0].size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(columns[::-1])  # The first column is the primary key.
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    for column in columns:
        c = column[order]
        new_group[1:] |= c[1:] != c[:-1]
    out = np.empty(n, dtype=np.int64)
    out[order] = np.cumsum(new_group) - 1
    return out


def drop_duplicate_interactions(inter: Interactions, keep: Duplicates = 'mmrec') -> Interactions:
    r"""Drops repeated interactions; the kept rows stay in file order.

    Args:
        inter: The interactions.
        keep: :obj:`'mmrec'`: MMRec's ``drop_duplicates(subset=[user, item,
            timestamp])``: rows equal in user, item and timestamp (user and item
            without timestamps) keep the first; the same pair at different times
            stays. :obj:`'first'` / :obj:`'last'`: one row per (user, item), the one
            with the earliest / latest timestamp; ties and files without
            timestamps keep the first / last row in the file.

    Returns:
        The kept rows (counts logged).
    """
    if keep not in ('mmrec', 'first', 'last'):
        raise ValueError(f"keep must be 'mmrec', 'first' or 'last', got {keep!r}")
    n = len(inter)
    if n == 0:
        return inter
    ts = inter.timestamp
    if keep == 'mmrec':
        cols = [inter.user, inter.item]
        if ts is not None:
            cols.append(ts.view(np.int64))  # Exact equality of the float64 values.
        group = _group_ids(*cols)
        mask = np.zeros(n, dtype=bool)
        mask[np.unique(group, return_index=True)[1]] = True
        rule = 'same user, item and timestamp' if ts is not None else 'same user and item'
    else:
        group = _group_ids(inter.user, inter.item)
        pos = np.arange(n)
        time = ts if ts is not None else np.zeros(n)
        order = np.lexsort((pos, time, group))  # By group, then time, then file order.
        sorted_group = group[order]
        if keep == 'first':
            boundary = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
        else:
            boundary = np.r_[sorted_group[1:] != sorted_group[:-1], True]
        mask = np.zeros(n, dtype=bool)
        mask[order[boundary]] = True
        rule = f'same user and item, kept the {"earliest" if keep == "first" else "latest"}'
    dropped = int(n - mask.sum())
    if dropped:
        example = int(np.flatnonzero(~mask)[0])
        log.info(
            'duplicates (%s): dropped %d of %d row(s), e.g. line %d',
            rule,
            dropped,
            n,
            int(inter.line[example]) if inter.line.size else example + 1,
        )
    return inter.select(mask)


def k_core_mask(user: np.ndarray, item: np.ndarray, user_k: int = 5, item_k: int = 5) -> np.ndarray:
    r"""The rows that survive MMRec's iterated k-core filter.

    Each pass counts the rows of every user and item among the rows kept so far
    and drops every row whose user has fewer than :obj:`user_k` rows **or** whose
    item has fewer than :obj:`item_k` rows; passes repeat until one drops nothing.
    The result is the largest set of rows in which every user has at least
    :obj:`user_k` and every item at least :obj:`item_k` rows (repeated rows count
    separately, as in MMRec), so it does not depend on the order of removals.

    Args:
        user: Non-negative user codes, shape :obj:`[N]`.
        item: Non-negative item codes, shape :obj:`[N]`.
        user_k: Minimum rows per user (:obj:`<= 1`: no user filter).
        item_k: Minimum rows per item (:obj:`<= 1`: no item filter).

    Returns:
        Boolean mask of shape :obj:`[N]`.
    """
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    if user.shape != item.shape or user.ndim != 1:
        raise ValueError(
            f'user and item must be 1-D of equal length, got {user.shape} and {item.shape}'
        )
    if user_k < 0 or item_k < 0:
        raise ValueError(f'user_k and item_k must be >= 0, got {user_k} and {item_k}')
    keep = np.ones(user.size, dtype=bool)
    if user.size == 0:
        return keep
    num_users, num_items = int(user.max()) + 1, int(item.max()) + 1
    passes = 0
    while True:
        user_count = np.bincount(user[keep], minlength=num_users)
        item_count = np.bincount(item[keep], minlength=num_items)
        drop = keep & ((user_count[user] < user_k) | (item_count[item] < item_k))
        if not drop.any():
            break
        keep &= ~drop
        passes += 1
        log.debug('k-core pass %d: dropped %d row(s)', passes, int(drop.sum()))
    log.info(
        'k-core (user %d, item %d): %d pass(es), kept %d of %d row(s)',
        user_k,
        item_k,
        passes,
        int(keep.sum()),
        user.size,
    )
    return keep


def first_appearance_ids(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Re-indexes codes ``0, 1, ...`` in order of first appearance (``pd.unique``).

    Args:
        codes: Integer codes, shape :obj:`[N]`.

    Returns:
        :obj:`(new, old)`: :obj:`new[r]` is the new id of row :obj:`r`, and
        :obj:`old[k]` is the code that got new id :obj:`k`.
    """
    codes = np.asarray(codes)
    uniq, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind='stable')
    rank = np.empty(uniq.size, dtype=np.int64)
    rank[order] = np.arange(uniq.size)
    return rank[inverse.reshape(-1)], uniq[order]


# --------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------
def mmrec_split_sizes(n: int) -> tuple[int, int, int]:
    r"""(train, valid, test) sizes of a user with :obj:`n` interactions in MMRec's
    split (``1splitting.ipynb``): :obj:`n < 10`: :obj:`(n - 2, 1, 1)`; otherwise
    :obj:`vt = int(0.2 * n)` (:obj:`= n // 5`) and :obj:`(n - vt, vt // 2,
    vt - vt // 2)`.

    Raises:
        ValueError: If :obj:`n < 2`.
    """
    if n < 2:
        raise ValueError(f'MMRec split needs at least 2 interactions per user, got {n}')
    if n < 10:
        return n - 2, 1, 1
    vt = n // 5
    return n - vt, vt // 2, vt - vt // 2


def mmrec_split(user: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""MMRec's per-user random split (``preprocessing/1splitting.ipynb``).

    MMRec shuffles all rows (``df.sample(frac=1)``, unseeded), sorts them by
    userID, and labels each user's rows in that order: the first
    :obj:`train` rows 0, the next :obj:`valid` rows 1, the last :obj:`test` rows 2,
    with the sizes of :func:`mmrec_split_sizes`. Here the shuffle is seeded and
    is the permutation :obj:`np.random.RandomState(seed).permutation(N)` (the
    one pandas' ``df.sample(frac=1, random_state=seed)`` draws); the sort by user
    is **stable**, so a user's rows keep their shuffled order. (pandas'
    ``sort_values`` default is an unstable quicksort whose tie order numpy may
    implement differently per CPU; a stable sort keeps the within-user order
    uniformly random and makes the split the same on every machine.)

    Args:
        user: User ids of the rows, shape :obj:`[N]`; every user must have at
            least 2 rows.
        seed: Seed of the shuffle.

    Returns:
        :obj:`(x_label, order)`: :obj:`x_label[r]` in {0, 1, 2} is the label of
        row :obj:`r`; :obj:`order` is the row order of MMRec's file (users
        ascending; inside a user, train, valid and test rows in shuffled order).

    Raises:
        ValueError: If a user has fewer than 2 rows.
    """
    user = np.asarray(user, dtype=np.int64)
    n = user.size
    perm = np.random.RandomState(seed).permutation(n)
    order = perm[np.argsort(user[perm], kind='stable')]
    sorted_user = user[order]
    if n == 0:
        return np.zeros(0, dtype=np.int64), order
    starts = np.r_[0, np.flatnonzero(sorted_user[1:] != sorted_user[:-1]) + 1]
    counts = np.diff(np.r_[starts, n])
    few = np.flatnonzero(counts < 2)
    if few.size:
        raise ValueError(
            f'MMRec split needs at least 2 interactions per user (3 for a train row); '
            f'{few.size} user(s) have 1, e.g. user {int(sorted_user[starts[few[0]]])}'
        )
    vt = np.where(counts < 10, 2, counts // 5)
    num_train = counts - vt
    num_valid = np.where(counts < 10, 1, vt // 2)
    rank = np.arange(n) - np.repeat(starts, counts)
    label_sorted = np.where(
        rank < np.repeat(num_train, counts),
        0,
        np.where(rank < np.repeat(num_train + num_valid, counts), 1, 2),
    )
    x_label = np.empty(n, dtype=np.int64)
    x_label[order] = label_sorted
    return x_label, order


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------
def _check_name(name: str) -> None:
    if not name or name in ('.', '..') or '/' in name or os.sep in name or '\0' in name:
        raise ValueError(f'the data set name must be a plain folder name, got {name!r}')


def _write_id_map(path: Path, header: tuple[str, str], ids: Sequence[str]) -> None:
    with open(path, 'w', encoding='utf-8', newline='') as f:
        writer = csv.writer(f, delimiter='\t', lineterminator='\n')
        writer.writerow(header)
        writer.writerows((orig, k) for k, orig in enumerate(ids))
        f.flush()
        os.fsync(f.fileno())


def write_mmrec_dataset(
    root: str | Path,
    name: str,
    user: np.ndarray,
    item: np.ndarray,
    x_label: np.ndarray,
    user_ids: Sequence[str],
    item_ids: Sequence[str],
    *,
    force: bool = False,
    metadata: dict[str, Any] | None = None,
) -> Path:
    r"""Writes an MMRec data set folder ``<root>/<name>`` atomically.

    Everything is written into a temporary folder next to the target, flushed to
    disk, and renamed to ``<root>/<name>`` at the end, so the target holds either
    the complete new data set or what it held before. With :obj:`force`, an
    existing target (with everything in it, e.g. feature files of old item ids) is
    moved aside just before the rename and deleted after it. See the module
    docstring for the files.

    Args:
        root: The folder of data set folders (created if missing).
        name: The data set name: folder ``<root>/<name>``, file ``<name>.inter``.
        user: MMRec user ids of the rows, int :obj:`[N]`, written in this order.
        item: MMRec item ids of the rows, int :obj:`[N]`.
        x_label: 0 (train), 1 (valid), 2 (test), int :obj:`[N]`.
        user_ids: :obj:`user_ids[k]` is the original id of MMRec user :obj:`k`.
        item_ids: :obj:`item_ids[k]` is the original id of MMRec item :obj:`k`.
        force: Replace an existing ``<root>/<name>``.
        metadata: Written as ``prepare.json`` when given.

    Returns:
        The data set folder.

    Raises:
        FileExistsError: If ``<root>/<name>`` exists and :obj:`force` is false.
        ValueError: On ids outside the id maps or labels outside {0, 1, 2}.
    """
    _check_name(name)
    root = Path(root)
    target = root / name
    user, item, x_label = (np.asarray(a, dtype=np.int64) for a in (user, item, x_label))
    if not (user.shape == item.shape == x_label.shape) or user.ndim != 1:
        raise ValueError('user, item and x_label must be 1-D of equal length')
    for what, ids, table in (('user', user, user_ids), ('item', item, item_ids)):
        if ids.size and (ids.min() < 0 or ids.max() >= len(table)):
            raise ValueError(f'{what} ids must lie in [0, {len(table)}), the size of its id map')
    if x_label.size and (x_label.min() < 0 or x_label.max() > 2):
        raise ValueError('x_label must be 0, 1 or 2')
    if (target.exists() or target.is_symlink()) and not force:
        raise FileExistsError(f'{target}: already exists (pass force=True / --force to replace it)')

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{name}.', suffix='.tmp', dir=root))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private.
        with open(tmp / f'{name}.inter', 'w', encoding='utf-8', newline='') as f:
            f.write('userID\titemID\tx_label\n')
            np.savetxt(f, np.stack([user, item, x_label], axis=1), fmt='%d', delimiter='\t')
            f.flush()
            os.fsync(f.fileno())
        _write_id_map(tmp / USER_MAP_FILE, USER_MAP_HEADER, user_ids)
        _write_id_map(tmp / ITEM_MAP_FILE, ITEM_MAP_HEADER, item_ids)
        if metadata is not None:
            with open(tmp / 'prepare.json', 'w', encoding='utf-8') as f:
                json.dump(metadata, f, indent=2, default=str)
                f.write('\n')
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if target.exists() or target.is_symlink():
            if not force:  # Appeared while we were writing.
                raise FileExistsError(
                    f'{target}: already exists (pass force=True / --force to replace it)'
                )
            old = Path(tempfile.mkdtemp(prefix=f'.{name}.', suffix='.old', dir=root))
            aside = old / name
            os.rename(target, aside)
            os.rename(tmp, target)
            if aside.is_dir() and not aside.is_symlink():
                shutil.rmtree(old)
            else:
                aside.unlink()
                old.rmdir()
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    return target


# --------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------
@dataclass
class PrepareStats:
    r"""What :func:`prepare_dataset` read, removed and wrote (row counts unless
    said otherwise)."""

    rows_read: int = 0
    users_read: int = 0
    items_read: int = 0
    bad_rows_skipped: int = 0
    below_min_rating: int = 0
    duplicates: int = 0
    k_core_rows: int = 0
    k_core_users: int = 0
    k_core_items: int = 0
    users: int = 0
    items: int = 0
    interactions: int = 0
    train: int = 0
    valid: int = 0
    test: int = 0
    users_without_train: int = 0
    items_without_train: int = 0
    repeated_pairs: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class PrepareResult:
    r"""The output of :func:`prepare_dataset`."""

    folder: Path
    stats: PrepareStats
    options: dict[str, Any]


def prepare_dataset(
    input: str | Path,
    root: str | Path,
    name: str,
    *,
    format: Format = 'auto',
    sep: str | None = None,
    header: bool | Literal['auto'] = 'auto',
    user_col: Column = None,
    item_col: Column = None,
    rating_col: Column = None,
    time_col: Column = None,
    min_rating: float | None = None,
    duplicates: Duplicates = 'mmrec',
    user_k: int = 5,
    item_k: int = 5,
    seed: int = 0,
    on_bad_row: OnBadRow = 'error',
    force: bool = False,
) -> PrepareResult:
    r"""Raw interactions -> the MMRec data set ``<root>/<name>``, as MMRec's
    preprocessing does it: read, rating threshold, duplicates, k-core, re-index,
    split, write (see the module docstring).

    Args:
        input: The raw file, see :func:`read_interactions`.
        root: The folder of data set folders.
        name: The data set name.
        format: See :func:`read_interactions`.
        sep: See :func:`read_interactions`.
        header: See :func:`read_interactions`.
        user_col: See :func:`read_interactions`.
        item_col: See :func:`read_interactions`.
        rating_col: See :func:`read_interactions`.
        time_col: See :func:`read_interactions`.
        min_rating: Keep rows with a rating of at least this (default: all rows).
        duplicates: See :func:`drop_duplicate_interactions`.
        user_k: Minimum interactions per user (MMRec: 5; at least 2, which MMRec's
            split needs; 3 gives every user a train row).
        item_k: Minimum interactions per item (MMRec: 5).
        seed: Seed of the split's shuffle, see :func:`mmrec_split`.
        on_bad_row: See :func:`read_interactions`.
        force: Replace an existing ``<root>/<name>``.

    Returns:
        :class:`PrepareResult`: the folder, the statistics and the options.

    Raises:
        FileExistsError: If ``<root>/<name>`` exists and :obj:`force` is false
            (checked before reading and again before the final rename).
        DataFormatError: On a malformed input file (file and line named).
        ValueError: On invalid options or if no interaction survives the filters.
    """
    _check_name(name)
    if user_k < 2:
        raise ValueError(
            f"user_k must be >= 2: MMRec's split gives every user 1 valid and 1 test "
            f'interaction (3 or more gives every user a train row), got {user_k}'
        )
    if item_k < 0:
        raise ValueError(f'item_k must be >= 0, got {item_k}')
    target = Path(root) / name
    if (target.exists() or target.is_symlink()) and not force:
        raise FileExistsError(f'{target}: already exists (pass force=True / --force to replace it)')
    options: dict[str, Any] = {
        'input': str(Path(input).resolve()),
        'format': format,
        'sep': sep,
        'header': header,
        'user_col': user_col,
        'item_col': item_col,
        'rating_col': rating_col,
        'time_col': time_col,
        'min_rating': min_rating,
        'duplicates': duplicates,
        'user_k': user_k,
        'item_k': item_k,
        'seed': seed,
        'on_bad_row': on_bad_row,
    }
    stats = PrepareStats()
    inter = read_interactions(
        input,
        format=format,
        sep=sep,
        header=header,
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
        time_col=time_col,
        on_bad_row=on_bad_row,
    )
    stats.rows_read, stats.bad_rows_skipped = len(inter), inter.bad_rows
    stats.users_read, stats.items_read = inter.num_users, inter.num_items
    if min_rating is not None:
        before = len(inter)
        inter = filter_min_rating(inter, min_rating)
        stats.below_min_rating = before - len(inter)
    before = len(inter)
    inter = drop_duplicate_interactions(inter, duplicates)
    stats.duplicates = before - len(inter)

    before_rows, before_users, before_items = len(inter), inter.num_users, inter.num_items
    inter = inter.select(k_core_mask(inter.user, inter.item, user_k, item_k))
    stats.k_core_rows = before_rows - len(inter)
    stats.k_core_users = before_users - inter.num_users
    stats.k_core_items = before_items - inter.num_items
    if len(inter) == 0:
        raise ValueError(
            f'{inter.source}: no interaction survives the filters (rows read '
            f'{stats.rows_read}, below the rating threshold {stats.below_min_rating}, '
            f'duplicates {stats.duplicates}, k-core (user {user_k}, item {item_k}) '
            f'{stats.k_core_rows})'
        )

    user, user_codes = first_appearance_ids(inter.user)
    item, item_codes = first_appearance_ids(inter.item)
    x_label, order = mmrec_split(user, seed)
    stats.users, stats.items, stats.interactions = (
        int(user_codes.size),
        int(item_codes.size),
        len(inter),
    )
    stats.train, stats.valid, stats.test = (int((x_label == v).sum()) for v in range(3))
    train_users = np.zeros(stats.users, dtype=bool)
    train_users[user[x_label == 0]] = True
    train_items = np.zeros(stats.items, dtype=bool)
    train_items[item[x_label == 0]] = True
    stats.users_without_train = int((~train_users).sum())
    stats.items_without_train = int((~train_items).sum())
    stats.repeated_pairs = stats.interactions - int(_group_ids(user, item).max()) - 1
    if stats.repeated_pairs:
        log.warning(
            "%d row(s) repeat a (user, item) pair at another time (MMRec's duplicates "
            "rule keeps them; pyg_mentor's loader keeps one row per pair and split; "
            "duplicates='first' or 'last' keeps one row per pair here)",
            stats.repeated_pairs,
        )
    if stats.users_without_train:
        log.warning(
            "%d user(s) have only 2 interactions and so no train row; MMRec's loader "
            'drops their valid/test rows (use user_k >= 3 to avoid them)',
            stats.users_without_train,
        )

    from pyg_mentor import __version__

    metadata = {
        'pyg_mentor': __version__,
        'options': options,
        'stats': stats.to_dict(),
    }
    folder = write_mmrec_dataset(
        root,
        name,
        user[order],
        item[order],
        x_label[order],
        [inter.user_ids[c] for c in user_codes.tolist()],
        [inter.item_ids[c] for c in item_codes.tolist()],
        force=force,
        metadata=metadata,
    )
    log.info('Wrote %s', folder)
    return PrepareResult(folder, stats, options)


def format_stats(stats: PrepareStats, user_k: int, item_k: int) -> str:
    r"""The statistics of :func:`prepare_dataset` as a small text table.

    Args:
        stats: The statistics.
        user_k: The user k of the k-core filter (for the label).
        item_k: The item k of the k-core filter.

    Returns:
        One line per step: what was read, what each filter removed, what was kept
        and the sizes of the three splits.
    """

    def n(x: int) -> str:
        return f'{x:,}'

    bad = f' ({n(stats.bad_rows_skipped)} bad rows skipped)' if stats.bad_rows_skipped else ''
    rows = [
        (
            'read',
            f'{n(stats.rows_read)} rows, {n(stats.users_read)} users, '
            f'{n(stats.items_read)} items{bad}',
        ),
        ('rating filter', f'-{n(stats.below_min_rating)} rows'),
        ('duplicates', f'-{n(stats.duplicates)} rows'),
        (
            f'k-core {user_k}/{item_k}',
            f'-{n(stats.k_core_rows)} rows, '
            f'-{n(stats.k_core_users)} users, '
            f'-{n(stats.k_core_items)} items',
        ),
        (
            'kept',
            f'{n(stats.users)} users, {n(stats.items)} items, {n(stats.interactions)} interactions',
        ),
        ('split', f'train {n(stats.train)}, valid {n(stats.valid)}, test {n(stats.test)}'),
    ]
    if stats.repeated_pairs:
        rows.append(('repeated pairs', f'{n(stats.repeated_pairs)} rows (same pair, other time)'))
    if stats.users_without_train or stats.items_without_train:
        rows.append(
            (
                'no train row',
                f'{n(stats.users_without_train)} users, {n(stats.items_without_train)} items',
            )
        )
    width = max(len(label) for label, _ in rows)
    return '\n'.join(f'{label:<{width}}  {text}' for label, text in rows)
