r"""Maps from the item ids of a user's own catalogue to MMRec's item ids.

MMRec numbers items ``0 .. num_items - 1`` and row :obj:`i` of every
``<modality>_feat.npy`` belongs to item :obj:`i`. Raw item data (texts, image
files) is keyed by the *original* ids, so feature extraction needs the map
original id -> MMRec id. Two sources are read:

* a two-column file with a header, such as MMRec's ``i_id_mapping.csv``
  (``asin<TAB>itemID``): :func:`read_id_map`;
* two row-aligned ``.inter`` files, one with the original ids and one with
  MMRec's (as data sets ship them, e.g. ``lfm2k_og_ids.inter`` beside
  ``lfm2k.inter``): :func:`id_map_from_inter`.

Original ids are compared as strings with surrounding white space removed, so
``80`` in a ``.inter`` file and ``"80"`` in a JSON lines file are the same item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyg_mentor.datasets.mmrec import DataFormatError
from pyg_mentor.features._table import read_delimited

#: The item id column of MMRec's files.
MMREC_ITEM_COLUMN = 'itemID'


@dataclass(frozen=True)
class IdMap:
    r"""A one-to-one map from original item ids to MMRec item ids.

    Args:
        to_mmrec (dict[str, int]): Original id -> MMRec id (non-negative; no MMRec
            id appears twice).
        source (str): Where the map comes from, for messages.
    """

    to_mmrec: dict[str, int]
    source: str

    def __len__(self) -> int:
        return len(self.to_mmrec)

    @property
    def num_items(self) -> int:
        r"""``max MMRec id + 1`` (MMRec's item count), 0 for an empty map."""
        return max(self.to_mmrec.values(), default=-1) + 1

    def original_ids(self, num_items: int | None = None) -> list[str | None]:
        r"""The original id of every MMRec id ``0 .. num_items - 1`` (:obj:`None`
        where the map has no entry).

        Args:
            num_items (int, optional): The number of MMRec ids (default:
                :attr:`num_items`).

        Returns:
            list[str | None]: Entry :obj:`i` is the original id of MMRec item
            :obj:`i`.
        """
        out: list[str | None] = [None] * (self.num_items if num_items is None else num_items)
        for original, mmrec in self.to_mmrec.items():
            if mmrec < len(out):
                out[mmrec] = original
        return out

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({len(self)} items, source={self.source!r})'


class _Builder:
    r"""Collects (original, MMRec) pairs and rejects an id given two partners."""

    def __init__(self) -> None:
        self.to_mmrec: dict[str, int] = {}
        self.where_original: dict[str, str] = {}
        self.where_mmrec: dict[int, tuple[str, str]] = {}

    def add(self, original: str, mmrec: int, where: str) -> None:
        known = self.to_mmrec.get(original)
        if known is not None:
            if known != mmrec:
                raise DataFormatError(
                    f"{where}: original item id '{original}' maps to MMRec id {mmrec}, "
                    f'but to {known} at {self.where_original[original]}'
                )
            return
        other = self.where_mmrec.get(mmrec)
        if other is not None:
            raise DataFormatError(
                f"{where}: MMRec item id {mmrec} is given to original id '{original}', "
                f"but to '{other[0]}' at {other[1]}"
            )
        self.to_mmrec[original] = mmrec
        self.where_original[original] = where
        self.where_mmrec[mmrec] = (original, where)


def _mmrec_id(field: str, where: str, column: str) -> int:
    try:
        value = int(field.strip())
    except ValueError:
        raise DataFormatError(
            f"{where}: column '{column}' must be a non-negative integer MMRec id, got '{field}'"
        ) from None
    if value < 0:
        raise DataFormatError(
            f"{where}: column '{column}' must be a non-negative integer MMRec id, got {value}"
        )
    return value


def _original_id(field: str, where: str, column: str) -> str:
    original = field.strip()
    if not original:
        raise DataFormatError(f"{where}: column '{column}' (original item id) is empty")
    return original


def read_id_map(
    path: str | Path,
    original_column: str | None = None,
    mmrec_column: str | None = None,
) -> IdMap:
    r"""Reads a map original item id -> MMRec item id from a file with a header.

    The file is tab- or comma-separated (a tab in the header line selects tabs),
    e.g. MMRec's ``i_id_mapping.csv`` (``asin<TAB>itemID``). Without column names
    the file must have exactly two columns: the MMRec id is the column named
    ``itemID`` if there is one, else the second column, and the original id is
    the other one.

    Args:
        path (str or pathlib.Path): The file.
        original_column (str, optional): Name of the original id column.
        mmrec_column (str, optional): Name of the MMRec id column.

    Returns:
        IdMap: The map.

    Raises:
        DataFormatError: On a missing column, a row with the wrong number of
            fields, an empty original id, an MMRec id that is not a non-negative
            integer, or an id that appears twice (the message names the file,
            the line and, for a repeated id, the line where it appeared first).
    """
    path = Path(path)
    columns, rows = read_delimited(path)
    if (original_column is None) != (mmrec_column is None):
        raise ValueError('read_id_map: give both original_column and mmrec_column, or neither')
    if original_column is None or mmrec_column is None:
        if len(columns) != 2:
            raise DataFormatError(
                f'{path}, line 1: an id map without column names must have exactly two '
                f'columns (original id, MMRec id), found {columns}; name the columns'
            )
        mmrec_column = MMREC_ITEM_COLUMN if MMREC_ITEM_COLUMN in columns else columns[1]
        original_column = columns[1 - columns.index(mmrec_column)]
    for column in (original_column, mmrec_column):
        if column not in columns:
            raise DataFormatError(f"{path}, line 1: no column '{column}' in the header {columns}")
    o, m = columns.index(original_column), columns.index(mmrec_column)
    builder = _Builder()
    for line, fields in rows:
        where = f'{path}, line {line}'
        builder.add(
            _original_id(fields[o], where, original_column),
            _mmrec_id(fields[m], where, mmrec_column),
            where,
        )
    if not builder.to_mmrec:
        raise DataFormatError(f'{path}: the id map has no rows')
    return IdMap(builder.to_mmrec, str(path))


def id_map_from_inter(
    original: str | Path,
    mmrec: str | Path,
    column: str = MMREC_ITEM_COLUMN,
    check_columns: Sequence[str] = ('userID',),
) -> IdMap:
    r"""Derives the item id map from two row-aligned interaction files: row
    :obj:`k` of :obj:`original` is row :obj:`k` of :obj:`mmrec` with original
    ids (e.g. ``raw/lfm2k_og_ids.inter`` and ``lfm2k.inter``).

    The files are tab-separated with a header (MMRec's ``.inter`` layout, gzip
    if the name ends in ``.gz``). Every row pairs its original item id with its
    MMRec item id; the pairs must agree across rows. As a check that the rows
    really are aligned, every column in :obj:`check_columns` present in both
    files must also pair its ids one-to-one (e.g. users), and every other column
    present in both (``rating``, ``x_label``, ...) must hold equal values.

    Args:
        original (str or pathlib.Path): The file with the original ids.
        mmrec (str or pathlib.Path): The same rows with MMRec ids.
        column (str, optional): The item id column of both files.
            (default: :obj:`'itemID'`)
        check_columns (Sequence[str], optional): Other id columns whose
            one-to-one pairing is checked. (default: :obj:`('userID',)`)

    Returns:
        IdMap: The map.

    Raises:
        DataFormatError: If a file lacks :obj:`column`, the files have different
            numbers of rows, or a row contradicts another (an id paired with two
            different ids, or a shared column with different values); the
            message names both files and the lines.
    """
    original, mmrec = Path(original), Path(mmrec)
    cols_o, rows_o = read_delimited(original)
    cols_m, rows_m = read_delimited(mmrec)
    for path, cols in ((original, cols_o), (mmrec, cols_m)):
        if column not in cols:
            raise DataFormatError(f"{path}, line 1: no column '{column}' in the header {cols}")
    if len(rows_o) != len(rows_m):
        raise DataFormatError(
            f'{original} has {len(rows_o)} data rows but {mmrec} has {len(rows_m)}: the '
            'files must hold the same interactions row by row'
        )
    id_columns = [column] + [
        c for c in check_columns if c != column and c in cols_o and c in cols_m
    ]
    equal_columns = [
        c for c in cols_o if c in cols_m and c not in id_columns and c not in check_columns
    ]
    index = {c: (cols_o.index(c), cols_m.index(c)) for c in id_columns + equal_columns}
    builders = {c: _Builder() for c in id_columns}
    for (line_o, fields_o), (line_m, fields_m) in zip(rows_o, rows_m):
        where = f'{original}, line {line_o} / {mmrec}, line {line_m}'
        for c in id_columns:
            i, j = index[c]
            builders[c].add(
                _original_id(fields_o[i], f'{original}, line {line_o}', c),
                _mmrec_id(fields_m[j], f'{mmrec}, line {line_m}', c),
                where,
            )
        for c in equal_columns:
            i, j = index[c]
            a, b = fields_o[i].strip(), fields_m[j].strip()
            if a != b:
                raise DataFormatError(
                    f"{where}: column '{c}' differs ('{a}' vs '{b}'): the files are not row-aligned"
                )
    if not builders[column].to_mmrec:
        raise DataFormatError(f'{original}: no data rows')
    return IdMap(builders[column].to_mmrec, f'{original} + {mmrec}')
