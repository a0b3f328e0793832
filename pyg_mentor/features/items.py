r"""A user's item table (item id + text and/or image path) and its alignment with
MMRec's item ids.

Supported files:

* delimited text with a header line: tab-separated if the header holds a tab,
  else comma-separated (``.tsv``, ``.csv``, ...; fields may be quoted as
  :mod:`csv` and pandas write them);
* JSON lines (``.jsonl`` / ``.ndjson``): one object per line, e.g.
  ``{"id": "B0001", "text": "...", "image": "img/B0001.jpg"}``.

A gzipped file (name ending in ``.gz``) is read as well.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyg_mentor.datasets.mmrec import DataFormatError
from pyg_mentor.features._table import is_jsonl, iter_jsonl, read_delimited
from pyg_mentor.features.id_map import IdMap

log = logging.getLogger(__name__)

#: How many ids a message lists before it says "and N more".
SHOW_IDS = 20


def format_ids(ids: Sequence[object], limit: int = SHOW_IDS) -> str:
    r"""``'a', 'b', ... (and N more)`` for messages."""
    shown = ', '.join(repr(i) if isinstance(i, str) else str(i) for i in ids[:limit])
    return shown + (f' (and {len(ids) - limit} more)' if len(ids) > limit else '')


@dataclass(frozen=True)
class ItemTable:
    r"""The rows of an item file.

    Args:
        path (pathlib.Path): The file.
        id_column (str): The column (or JSON key) of the item ids.
        ids (list[str]): The item id of each row (stripped, unique).
        lines (list[int]): The 1-based line of each row.
        columns (dict[str, list[str | None]]): The requested value columns; an
            entry is :obj:`None` where a JSON object lacks the key or holds
            :obj:`null`.
    """

    path: Path
    id_column: str
    ids: list[str]
    lines: list[int]
    columns: dict[str, list[str | None]]

    def __len__(self) -> int:
        return len(self.ids)


def _id_of(value: object, where: str, column: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataFormatError(
            f"{where}: item id '{column}' must be a string or an integer, got {value!r}"
        )
    out = str(value).strip()
    if not out:
        raise DataFormatError(f"{where}: item id column '{column}' is empty")
    return out


def read_items(
    path: str | Path,
    columns: Sequence[str],
    id_column: str | None = None,
) -> ItemTable:
    r"""Reads an item file: one row per item, an id and value columns.

    Args:
        path (str or pathlib.Path): A tab/comma-separated file with a header, or
            a JSON lines file (``.jsonl`` / ``.ndjson``).
        columns (Sequence[str]): The value columns to read (e.g. :obj:`['text']`).
        id_column (str, optional): The id column (default: the first column of
            the header, or the first key of the first JSON object).

    Returns:
        ItemTable: The rows in file order.

    Raises:
        DataFormatError: On a missing column, a row with the wrong number of
            fields, an empty id, invalid JSON, a non-string value, or an item id
            that appears twice (naming the file, the line and the line of its
            first appearance).
    """
    path = Path(path)
    ids: list[str] = []
    lines: list[int] = []
    values: dict[str, list[str | None]] = {c: [] for c in columns}
    first_line: dict[str, int] = {}

    def add(item: str, line: int) -> None:
        if item in first_line:
            raise DataFormatError(
                f"{path}, line {line}: duplicate item id '{item}' "
                f'(first at line {first_line[item]})'
            )
        first_line[item] = line
        ids.append(item)
        lines.append(line)

    if is_jsonl(path):
        for line, obj in iter_jsonl(path):
            where = f'{path}, line {line}'
            if id_column is None:
                if not obj:
                    raise DataFormatError(f'{where}: empty JSON object (no id key)')
                id_column = next(iter(obj))
            if id_column not in obj:
                raise DataFormatError(
                    f"{where}: no key '{id_column}' (the item id) in {sorted(obj)}"
                )
            add(_id_of(obj[id_column], where, id_column), line)
            for c in columns:
                value = obj.get(c)
                if value is not None and not isinstance(value, str):
                    raise DataFormatError(
                        f"{where}: '{c}' must be a string or null, got {type(value).__name__}"
                    )
                values[c].append(value)
        if id_column is None:
            raise DataFormatError(f'{path}: no items (the file has no JSON objects)')
    else:
        header, rows = read_delimited(path)
        id_column = header[0] if id_column is None else id_column
        for c in [id_column, *columns]:
            if c not in header:
                raise DataFormatError(f"{path}, line 1: no column '{c}' in the header {header}")
        i = header.index(id_column)
        index = [header.index(c) for c in columns]
        for line, fields in rows:
            add(_id_of(fields[i], f'{path}, line {line}', id_column), line)
            for c, j in zip(columns, index):
                values[c].append(fields[j])
    return ItemTable(path, id_column, ids, lines, values)


def align_items(
    table: ItemTable,
    column: str,
    id_map: IdMap,
    unknown: Literal['warn', 'error'] = 'warn',
) -> tuple[dict[int, str], list[str]]:
    r"""Keys the values of one column by MMRec item id.

    Rows whose value is empty (or only white space, or :obj:`None`) give no
    value; the items of :obj:`id_map` left without a value are the caller's
    "missing" items. Rows whose id is not in :obj:`id_map` are *unknown*: they
    are logged (:obj:`unknown='warn'`) or rejected (:obj:`unknown='error'`).

    Args:
        table (ItemTable): The item rows.
        column (str): The value column (one of :obj:`table.columns`).
        id_map (IdMap): Original id -> MMRec id.
        unknown (str, optional): :obj:`'warn'` or :obj:`'error'`.
            (default: :obj:`'warn'`)

    Returns:
        (dict[int, str], list[str]): MMRec id -> value, and the unknown original
        ids in file order.

    Raises:
        DataFormatError: If :obj:`unknown='error'` and some id is not in the map
            (naming the file and the line of the first such id).
    """
    if unknown not in ('warn', 'error'):
        raise ValueError(f"unknown must be 'warn' or 'error', got '{unknown}'")
    if column not in table.columns:
        raise KeyError(
            f"column '{column}' was not read from {table.path} (read: {sorted(table.columns)})"
        )
    out: dict[int, str] = {}
    unknown_ids: list[str] = []
    first_unknown_line = 0
    for item, line, value in zip(table.ids, table.lines, table.columns[column]):
        mmrec = id_map.to_mmrec.get(item)
        if mmrec is None:
            if not unknown_ids:
                first_unknown_line = line
            unknown_ids.append(item)
        elif value is not None and value.strip():
            out[mmrec] = value
    if unknown_ids:
        msg = (
            f'{len(unknown_ids)} of {len(table)} items of {table.path} are not in the '
            f'id map ({id_map.source}): {format_ids(unknown_ids)}'
        )
        if unknown == 'error':
            raise DataFormatError(
                f'{table.path}, line {first_unknown_line}: item id '
                f"'{unknown_ids[0]}' is not in the id map; {msg}"
            )
        log.warning('%s; they are skipped', msg)
    return out, unknown_ids
