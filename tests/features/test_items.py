import json
import logging

import pytest

from pyg_mentor.datasets.mmrec import DataFormatError
from pyg_mentor.features import IdMap, align_items, read_items


def test_read_tsv_csv_and_jsonl(tmp_path):
    tsv = tmp_path / 'items.tsv'
    tsv.write_text('artistID\ttext\timage\n7\trock,pop\ta.png\n\n3\t\tb.png\n')
    table = read_items(tsv, ['text', 'image'])
    assert table.id_column == 'artistID'
    assert table.ids == ['7', '3'] and table.lines == [2, 4]
    assert table.columns == {'text': ['rock,pop', ''], 'image': ['a.png', 'b.png']}

    csv_path = tmp_path / 'items.csv'  # Quoted commas, quotes and line breaks.
    csv_path.write_text('text,id\n"a, b ""c""",x1\n"two\nlines",x2\n')
    table = read_items(csv_path, ['text'], id_column='id')
    assert table.ids == ['x1', 'x2'] and table.lines == [2, 3]
    assert table.columns['text'] == ['a, b "c"', 'two\nlines']

    jsonl = tmp_path / 'items.jsonl'
    jsonl.write_text(
        '\n'.join(
            json.dumps(o)
            for o in [{'item': 5, 'text': 'five'}, {'item': 'B06', 'text': None}, {'item': ' 9 '}]
        )
        + '\n'
    )
    table = read_items(jsonl, ['text'])
    assert table.id_column == 'item'
    assert table.ids == ['5', 'B06', '9'] and table.lines == [1, 2, 3]
    assert table.columns['text'] == ['five', None, None]


@pytest.mark.parametrize(
    'name, text, message',
    [
        (
            'a.tsv',
            'id\ttext\n1\tx\n2\ty\n1\tz\n',
            r"a.tsv, line 4: duplicate item id '1' \(first at line 2\)",
        ),
        (
            'a.jsonl',
            '{"id": "q"}\n\n{"id": "q"}\n',
            r"a.jsonl, line 3: duplicate item id 'q' \(first at line 1\)",
        ),
        (
            'a.tsv',
            'id\ttext\n1\tx\n2\n',
            r'a.tsv, line 3: expected 2 tab-separated fields '
            r'\(id, text\), found 1',
        ),
        (
            'a.tsv',
            'id\tdescription\n1\tx\n',
            r"a.tsv, line 1: no column 'text' in the header "
            r"\['id', 'description'\]",
        ),
        ('a.tsv', 'id\ttext\n\tx\n', r"a.tsv, line 2: item id column 'id' is empty"),
        (
            'a.jsonl',
            '{"id": 1, "text": "x"}\n{"id": 2, "text": \n',
            r'a.jsonl, line 2: invalid JSON',
        ),
        ('a.jsonl', '[1, 2]\n', r'a.jsonl, line 1: expected a JSON object, got list'),
        ('a.jsonl', '{"id": 1, "text": 3}\n', r"a.jsonl, line 1: 'text' must be a string or null"),
        ('a.jsonl', '{"id": 1}\n{"text": "x"}\n', r"a.jsonl, line 2: no key 'id'"),
        (
            'a.jsonl',
            '{"id": 1.5}\n',
            r"a.jsonl, line 1: item id 'id' must be a string or an "
            r'integer, got 1.5',
        ),
    ],
)
def test_read_items_errors_name_file_and_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataFormatError, match=message):
        read_items(path, ['text'])


def test_align_items(tmp_path, caplog):
    path = tmp_path / 'items.tsv'
    path.write_text('id\ttext\na\tAA\nzz\tunknown\nb\t  \nc\tCC\nyy\tmore\n')
    table = read_items(path, ['text'])
    id_map = IdMap({'a': 2, 'b': 0, 'c': 1, 'd': 3}, 'map')
    with caplog.at_level(logging.WARNING):
        values, unknown = align_items(table, 'text', id_map)
    # 'b' has only white space: no value (the caller's missing item), like 'd'.
    assert values == {2: 'AA', 1: 'CC'}
    assert unknown == ['zz', 'yy']
    assert '2 of 5 items of' in caplog.text and "'zz', 'yy'" in caplog.text
    with pytest.raises(
        DataFormatError,
        match=r"items.tsv, line 3: item id 'zz' is not in "
        r'the id map; 2 of 5 items',
    ):
        align_items(table, 'text', id_map, unknown='error')
    with pytest.raises(KeyError, match="column 'image' was not read"):
        align_items(table, 'image', id_map)
