r"""Property test of the ``.inter`` parser (:func:`read_mmrec_inter`) against
an independent, line-by-line reader written here: on any file hypothesis
builds (columns in any order, extra columns, CRLF, a byte order mark, trailing
blank lines, corrupted fields, wrong field counts, bad labels), both agree on
the parsed columns, or on the line of the first error."""

import re

import numpy as np
import pytest

hypothesis = pytest.importorskip('hypothesis')
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pyg_mentor.datasets.mmrec import DataFormatError, read_mmrec_inter  # noqa: E402

REQUIRED = ('userID', 'itemID', 'x_label')


class Bad(Exception):
    def __init__(self, line):
        self.line = line


def reference_reader(raw: bytes):
    r"""The format, as the README and MMRec describe it: a tab-separated
    header with at least userID, itemID, x_label; one row per line with as many
    fields as the header; ids are non-negative integers, x_label is 0, 1 or 2.
    ``\r\n`` and a leading byte order mark are accepted, blank lines at the end
    are ignored. Errors: fields counts first (any column), then, column by
    column in the order userID, itemID, x_label, the first non-integer, then
    the first out-of-range value."""
    text = raw.decode('utf-8', errors='replace')
    if text.startswith('\ufeff'):
        text = text[1:]
    lines = text.replace('\r\n', '\n').split('\n')
    while lines and lines[-1] == '':
        lines.pop()
    if not lines or not lines[0].strip():
        raise Bad(1)
    header = [c.strip() for c in lines[0].split('\t')]
    if any(c not in header for c in REQUIRED) or len(set(header)) != len(header):
        raise Bad(1)
    rows = [line.split('\t') for line in lines[1:]]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise Bad(number)
    out = {}
    for column in REQUIRED:
        j = header.index(column)
        values = []
        for number, row in enumerate(rows, start=2):
            try:
                values.append(int(row[j]))
            except ValueError:
                raise Bad(number) from None
        for number, value in enumerate(values, start=2):
            if value < 0 or (column == 'x_label' and value > 2):
                raise Bad(number)
        out[column] = values
    return out


@st.composite
def inter_files(draw):
    extra = draw(
        st.lists(st.sampled_from(['rating', 'timestamp', 'note']), unique=True, max_size=2)
    )
    header = draw(st.permutations([*REQUIRED, *extra]))
    num_rows = draw(st.integers(0, 30))
    rows = []
    for _ in range(num_rows):
        row = {c: str(draw(st.integers(0, 40))) for c in header}
        row['x_label'] = str(draw(st.integers(0, 2)))
        rows.append([row[c] for c in header])
    # Damage: none, a field, a label, a field count.
    kind = draw(st.sampled_from(['none', 'none', 'field', 'label', 'count']))
    if rows and kind != 'none':
        i = draw(st.integers(0, len(rows) - 1))
        if kind == 'field':
            j = draw(st.integers(0, len(header) - 1))
            rows[i][j] = draw(st.sampled_from(['', 'x', '1.5', '-3', '1e3', '0x1', '7a']))
        elif kind == 'label':
            rows[i][header.index('x_label')] = draw(st.sampled_from(['3', '-1', '9']))
        else:
            rows[i] = rows[i][:-1] if draw(st.booleans()) else rows[i] + ['5']
    newline = draw(st.sampled_from(['\n', '\r\n']))
    text = newline.join(['\t'.join(header), *('\t'.join(r) for r in rows)])
    text += newline * draw(st.integers(0, 3))
    raw = text.encode()
    if draw(st.booleans()):
        raw = b'\xef\xbb\xbf' + raw
    return raw


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=inter_files())
def test_parser_agrees_with_an_independent_reader(tmp_path, raw):
    path = tmp_path / 'x.inter'
    path.write_bytes(raw)
    try:
        expected = reference_reader(raw)
    except Bad as bad:
        with pytest.raises(DataFormatError) as e:
            read_mmrec_inter(path)
        line = re.search(r', line (\d+):', str(e.value))
        assert line is not None and int(line.group(1)) == bad.line, (str(e.value), bad.line)
        assert str(e.value).startswith(str(path))
        return
    got = read_mmrec_inter(path)
    for column in REQUIRED:
        assert got[column].dtype == np.int64
        assert got[column].tolist() == expected[column]
