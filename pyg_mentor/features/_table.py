r"""Readers of small delimited / JSON-lines files that keep 1-based line numbers,
so that every error can name the file and the line."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyg_mentor.datasets.mmrec import DataFormatError

#: File name endings read as JSON lines (one object per line).
JSONL_SUFFIXES = ('.jsonl', '.ndjson', '.jsonl.gz', '.ndjson.gz')


def read_text(path: Path) -> str:
    r"""The whole file as text (UTF-8, an optional byte order mark dropped; a name
    ending in ``.gz`` is read as gzip).

    Raises:
        FileNotFoundError: If the file does not exist.
        DataFormatError: If it cannot be read or is not UTF-8.
    """
    if not path.is_file():
        raise FileNotFoundError(f'{path}: file not found')
    try:
        if path.name.endswith('.gz'):
            with gzip.open(path, 'rb') as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataFormatError(f'{path}: cannot be read ({e})') from None
    try:
        return raw.decode('utf-8-sig')
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b'\n') + 1
        raise DataFormatError(f'{path}, line {line}: not valid UTF-8 ({e.reason})') from None


def is_jsonl(path: Path) -> bool:
    r"""Whether :obj:`path` is read as JSON lines (by its name)."""
    return path.name.lower().endswith(JSONL_SUFFIXES)


def read_delimited(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    r"""Reads a delimited text file with a header line.

    The delimiter is a tab if the header line holds a tab, else a comma (MMRec
    writes tab-separated files named ``.csv``, e.g. ``i_id_mapping.csv``). Fields
    may be quoted as Python's :mod:`csv` (and pandas) write them. Blank lines are
    skipped; every other line must have as many fields as the header.

    Returns:
        The header's column names (stripped) and the data rows as
        ``(1-based line number, fields)``.

    Raises:
        DataFormatError: On an empty file, an empty or duplicate column name, a
            row with a different number of fields, or unparsable quoting; the
            message names the file and the line.
    """
    text = read_text(path)
    first = text.split('\n', 1)[0]
    if not first.strip():
        raise DataFormatError(
            f'{path}, line 1: expected a header line, found an empty '
            f'{"file" if not text.strip() else "line"}'
        )
    delimiter = '\t' if '\t' in first else ','
    shown = 'tab' if delimiter == '\t' else 'comma'
    reader = csv.reader(io.StringIO(text, newline=''), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    columns: list[str] | None = None
    try:
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            if columns is None:
                columns = [c.strip() for c in fields]
                for i, c in enumerate(columns):
                    if not c:
                        raise DataFormatError(
                            f'{path}, line 1: column {i + 1} of the {shown}-separated '
                            f'header {columns} has no name'
                        )
                    if c in columns[:i]:
                        raise DataFormatError(
                            f"{path}, line 1: duplicate column '{c}' in the header {columns}"
                        )
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # A blank line.
            if len(fields) != len(columns):
                raise DataFormatError(
                    f'{path}, line {start}: expected {len(columns)} {shown}-separated '
                    f'fields ({", ".join(columns)}), found {len(fields)}'
                )
            rows.append((start, fields))
    except csv.Error as e:
        raise DataFormatError(f'{path}, line {reader.line_num}: {e}') from None
    assert columns is not None
    return columns, rows


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    r"""Yields ``(1-based line number, object)`` for each non-blank line of a JSON
    lines file.

    Raises:
        DataFormatError: On a line that is not valid JSON or not a JSON object.
    """
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(
                f'{path}, line {number}: invalid JSON ({e.msg} at column {e.colno})'
            ) from None
        if not isinstance(obj, dict):
            raise DataFormatError(
                f'{path}, line {number}: expected a JSON object, got {type(obj).__name__}'
            )
        yield number, obj
